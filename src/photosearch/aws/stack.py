"""Create, update, inspect and delete the Photosearch CloudFormation stack (infra/photosearch.yaml).

The stack is named after its NamePrefix parameter, so one prefix = one stack per region.
Progress is reported through `on_event(line)` callbacks: one line per stack event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from photosearch.aws.clients import AwsError, explained
from photosearch.storage.s3 import error_code, error_message

__all__ = [
    "CAPABILITIES",
    "DEFAULT_NAME_PREFIX",
    "NO_UPDATES_MESSAGE",
    "POLL_SECONDS",
    "TEMPLATE_PATH",
    "UPDATABLE",
    "WAIT_TIMEOUT_SECONDS",
    "BucketContents",
    "EventSink",
    "ProvisionResult",
    "StackInfo",
    "bucket_contents",
    "describe_stack",
    "empty_bucket",
    "format_event",
    "ignore_event",
    "provision",
    "read_template",
    "require_stack",
    "stack_buckets",
    "stack_name_for",
    "teardown",
    "wait_for_stack",
]

DEFAULT_NAME_PREFIX = "photosearch"
# The template lives in the repository (infra/), next to src/.
TEMPLATE_PATH = Path(__file__).resolve().parents[3] / "infra" / "photosearch.yaml"
# The template names its roles, group and policy (predictable ARNs for the app's config).
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
POLL_SECONDS = 5.0
WAIT_TIMEOUT_SECONDS = 3600.0

# Stack statuses after which an update is possible.
UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
NO_UPDATES_MESSAGE = "No updates are to be performed"

EventSink = Callable[[str], None]


def ignore_event(line: str) -> None:
    del line


@dataclass
class StackInfo:
    name: str
    stack_id: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    status_reason: str = ""
    failures: list[str] = field(default_factory=list)  # resource failures seen while waiting

    def reason(self) -> str:
        return "; ".join(self.failures) or self.status_reason or "no reason given"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stack_id": self.stack_id,
            "status": self.status,
            "status_reason": self.status_reason,
            "outputs": self.outputs,
            "parameters": self.parameters,
        }


@dataclass
class ProvisionResult:
    action: str  # "created" | "updated" | "unchanged"
    stack: StackInfo


def stack_name_for(name_prefix: str) -> str:
    return name_prefix


def read_template(path: Path | None = None) -> str:
    path = path or TEMPLATE_PATH
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AwsError(f"cannot read the CloudFormation template {path}: {exc.strerror}") from exc


def _stack_info(raw: dict[str, Any]) -> StackInfo:
    return StackInfo(
        name=raw["StackName"],
        stack_id=raw["StackId"],
        status=raw["StackStatus"],
        status_reason=raw.get("StackStatusReason", ""),
        outputs={o["OutputKey"]: o["OutputValue"] for o in raw.get("Outputs", [])},
        parameters={
            p["ParameterKey"]: p.get("ParameterValue", "") for p in raw.get("Parameters", [])
        },
    )


def _is_missing_stack(exc: ClientError) -> bool:
    return error_code(exc) == "ValidationError" and "does not exist" in error_message(exc)


def describe_stack(cloudformation: Any, stack: str) -> StackInfo | None:
    """The stack by name or id; None when there is none (a deleted stack counts as none)."""
    try:
        raw = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as exc:
        if _is_missing_stack(exc):
            return None
        raise
    info = _stack_info(raw)
    return None if info.status == "DELETE_COMPLETE" else info


def require_stack(cloudformation: Any, name: str, region: str) -> StackInfo:
    with explained(f"describing stack {name}"):
        info = describe_stack(cloudformation, name)
    if info is None:
        raise AwsError(
            f"no stack named {name!r} in {region} (create it with `photosearch aws provision`)"
        )
    return info


# ----------------------------------------------------------------------------------------------
# Waiting, with one line per stack event
# ----------------------------------------------------------------------------------------------


def _newest_event_id(cloudformation: Any, stack: str) -> str | None:
    events = cloudformation.describe_stack_events(StackName=stack).get("StackEvents", [])
    return events[0]["EventId"] if events else None


def _events_since(cloudformation: Any, stack: str, last_seen: str | None) -> list[dict]:
    """Events newer than `last_seen`, oldest first (the API lists newest first, paginated)."""
    newer: list[dict] = []
    for page in cloudformation.get_paginator("describe_stack_events").paginate(StackName=stack):
        for event in page.get("StackEvents", []):
            if event["EventId"] == last_seen:
                return newer[::-1]
            newer.append(event)
    return newer[::-1]


def format_event(event: dict) -> str:
    stamp = event.get("Timestamp")
    clock = stamp.strftime("%H:%M:%S") if hasattr(stamp, "strftime") else ""
    reason = event.get("ResourceStatusReason") or ""
    line = (
        f"{clock} {event.get('LogicalResourceId', ''):<26} "
        f"{event.get('ResourceType', ''):<28} {event.get('ResourceStatus', '')}"
    )
    return f"{line}  {reason}" if reason else line


def wait_for_stack(
    cloudformation: Any,
    stack_id: str,
    last_seen_event: str | None,
    on_event: EventSink = ignore_event,
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float = WAIT_TIMEOUT_SECONDS,
) -> StackInfo:
    """Poll until the stack leaves its *_IN_PROGRESS state; report events as they come."""
    deadline = time.monotonic() + timeout_seconds
    failures: list[str] = []
    while True:
        # Status first, events second: every event up to a final status gets reported.
        info = _stack_info(cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0])
        for event in _events_since(cloudformation, stack_id, last_seen_event):
            last_seen_event = event["EventId"]
            on_event(format_event(event))
            if event.get("ResourceStatus", "").endswith("_FAILED"):
                reason = event.get("ResourceStatusReason") or "no reason given"
                if "cancelled" not in reason.lower():
                    failures.append(f"{event.get('LogicalResourceId')}: {reason}")
        if not info.status.endswith("_IN_PROGRESS"):
            info.failures = failures
            return info
        if time.monotonic() > deadline:
            raise AwsError(f"stack {info.name} still {info.status} after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


# ----------------------------------------------------------------------------------------------
# Provision
# ----------------------------------------------------------------------------------------------


def _parameters_for_create(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())]


def _parameters_for_update(values: dict[str, str], current: StackInfo) -> list[dict[str, Any]]:
    """Given values win; every other parameter the stack already has keeps its value.

    Current values are passed explicitly (moto's UsePreviousValue only knows parameters given
    at creation); only NoEcho values, which come back masked, need UsePreviousValue.
    """
    parameters = _parameters_for_create({**current.parameters, **values})
    return [
        {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
        if p["ParameterKey"] not in values and p["ParameterValue"] == "****"
        else p
        for p in parameters
    ]


def _current_template(cloudformation: Any, stack_id: str) -> Any:
    return cloudformation.get_template(StackName=stack_id, TemplateStage="Original")["TemplateBody"]


def provision(
    cloudformation: Any,
    name_prefix: str = DEFAULT_NAME_PREFIX,
    parameters: dict[str, str] | None = None,
    template_body: str | None = None,
    on_event: EventSink = ignore_event,
    poll_seconds: float = POLL_SECONDS,
    stack_name: str | None = None,
) -> ProvisionResult:
    """Create the stack, or update it; an unchanged template and parameters is a success.

    `stack_name` names another stack of the same prefix (e.g. the app's hosting stack)."""
    name = stack_name or stack_name_for(name_prefix)
    values = {"NamePrefix": name_prefix, **(parameters or {})}
    body = template_body if template_body is not None else read_template()
    with explained(f"provisioning stack {name}"):
        current = describe_stack(cloudformation, name)
        if current is not None and current.status == "ROLLBACK_COMPLETE":
            # A first creation that failed and rolled back holds no resources and cannot be
            # updated: delete it, then create afresh.
            on_event(f"stack {name} is ROLLBACK_COMPLETE from a failed creation: deleting it")
            _delete_and_wait(cloudformation, current, on_event, poll_seconds)
            current = None
        if current is not None and current.status.endswith("_IN_PROGRESS"):
            raise AwsError(f"stack {name} is busy ({current.status}); try again when it settles")
        if current is not None and current.status not in UPDATABLE:
            raise AwsError(
                f"stack {name} is {current.status} and cannot be updated: "
                "fix it in the CloudFormation console, or `photosearch aws teardown` it"
            )

        token = f"photosearch-{uuid.uuid4()}"
        if current is None:
            stack_id = cloudformation.create_stack(
                StackName=name,
                TemplateBody=body,
                Parameters=_parameters_for_create(values),
                Capabilities=CAPABILITIES,
                ClientRequestToken=token,
                Tags=[{"Key": "project", "Value": "photosearch"}],
            )["StackId"]
            final = wait_for_stack(cloudformation, stack_id, None, on_event, poll_seconds)
            if final.status != "CREATE_COMPLETE":
                raise AwsError(f"creating stack {name} failed ({final.status}): {final.reason()}")
            return ProvisionResult("created", final)

        same_parameters = all(current.parameters.get(k) == v for k, v in values.items())
        if same_parameters and _current_template(cloudformation, current.stack_id) == body:
            # Checked here rather than left to CloudFormation's "No updates are to be
            # performed" (handled below too): no empty update request, no event noise.
            return ProvisionResult("unchanged", current)
        last_seen = _newest_event_id(cloudformation, current.stack_id)
        try:
            cloudformation.update_stack(
                StackName=current.stack_id,
                TemplateBody=body,
                Parameters=_parameters_for_update(values, current),
                Capabilities=CAPABILITIES,
                ClientRequestToken=token,
                Tags=[{"Key": "project", "Value": "photosearch"}],
            )
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and NO_UPDATES_MESSAGE in error_message(exc):
                return ProvisionResult("unchanged", current)
            raise
        final = wait_for_stack(cloudformation, current.stack_id, last_seen, on_event, poll_seconds)
        if final.status != "UPDATE_COMPLETE":
            raise AwsError(f"updating stack {name} failed ({final.status}): {final.reason()}")
        return ProvisionResult("updated", final)


# ----------------------------------------------------------------------------------------------
# Teardown
# ----------------------------------------------------------------------------------------------


@dataclass
class BucketContents:
    bucket: str
    versions: int  # object versions + delete markers (all must go before the bucket can)
    uploads: int  # unfinished multipart uploads
    truncated: bool  # more than one listing page: `versions` is a lower bound

    @property
    def empty(self) -> bool:
        return self.versions == 0 and self.uploads == 0

    def describe(self) -> str:
        count = f"{self.versions}{'+' if self.truncated else ''} object versions"
        return f"{self.bucket} ({count}, {self.uploads} unfinished uploads)"


def stack_buckets(cloudformation: Any, stack_id: str) -> list[str]:
    buckets = []
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_id):
        for resource in page.get("StackResourceSummaries", []):
            if resource["ResourceType"] == "AWS::S3::Bucket" and resource.get("PhysicalResourceId"):
                buckets.append(resource["PhysicalResourceId"])
    return sorted(buckets)


def bucket_contents(s3: Any, bucket: str) -> BucketContents | None:
    """One page of versions and of multipart uploads; None when the bucket does not exist."""
    try:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
        uploads = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1000)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            return None
        raise
    versions = len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return BucketContents(
        bucket=bucket,
        versions=versions,
        uploads=len(uploads.get("Uploads", [])),
        truncated=bool(page.get("IsTruncated")),
    )


def empty_bucket(s3: Any, bucket: str, on_deleted: Callable[[int], None] = lambda n: None) -> int:
    """Delete every object version, delete marker and unfinished upload; returns the count."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        batch = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        # One page holds at most 1000 entries, DeleteObjects' limit.
        if batch:
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise AwsError(
                    f"emptying {bucket}: could not delete {len(errors)} objects, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                )
            deleted += len(batch)
            on_deleted(len(batch))
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return deleted


def _delete_and_wait(
    cloudformation: Any, stack: StackInfo, on_event: EventSink, poll_seconds: float
) -> StackInfo:
    last_seen = _newest_event_id(cloudformation, stack.stack_id)
    cloudformation.delete_stack(
        StackName=stack.stack_id, ClientRequestToken=f"photosearch-{uuid.uuid4()}"
    )
    final = wait_for_stack(cloudformation, stack.stack_id, last_seen, on_event, poll_seconds)
    if final.status != "DELETE_COMPLETE":
        raise AwsError(f"deleting stack {stack.name} failed ({final.status}): {final.reason()}")
    return final


def teardown(
    cloudformation: Any,
    s3: Any,
    name_prefix: str,
    region: str,
    force: bool = False,
    on_event: EventSink = ignore_event,
    on_deleted: Callable[[int], None] = lambda n: None,
    poll_seconds: float = POLL_SECONDS,
) -> list[BucketContents]:
    """Delete the stack. Buckets holding anything stop it unless `force`, which empties them.

    Returns what each bucket held before it was emptied.
    """
    name = stack_name_for(name_prefix)
    with explained(f"tearing down stack {name}"):
        stack = require_stack(cloudformation, name, region)
        if stack.status.endswith("_IN_PROGRESS"):
            raise AwsError(f"stack {name} is busy ({stack.status}); try again when it settles")
        contents = [
            found
            for bucket in stack_buckets(cloudformation, stack.stack_id)
            if (found := bucket_contents(s3, bucket)) is not None
        ]
        holding = [c for c in contents if not c.empty]
        if holding and not force:
            raise AwsError(
                "refusing to delete buckets that hold data: "
                + ", ".join(c.describe() for c in holding)
                + "; rerun with --force to delete all of it"
            )
        for bucket in holding:
            on_event(f"emptying {bucket.describe()}")
            empty_bucket(s3, bucket.bucket, on_deleted)
        _delete_and_wait(cloudformation, stack, on_event, poll_seconds)
        return contents
