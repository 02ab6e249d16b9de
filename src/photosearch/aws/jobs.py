"""Indexing an S3 album with a SageMaker Processing job: the request, the wait, the run.

`run_index_job` plans the job (only new and changed photos), runs it on SageMaker, or here with
the local runner of `photosearch.aws.local` (same request, same entry point), and merges the
results into the index. The CreateProcessingJob request is built by a pure function
(`processing_job_request`) so tests can check its exact shape; the functions around it send it,
wait, and turn a failure into one line with the failure reason and where the logs are. What
happens inside the container lives in `photosearch.aws.processing`; the search endpoint is
`photosearch.aws.endpoint`'s business, so the two share only `photosearch.aws.sagemaker_common`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from photosearch.aws import processing
from photosearch.aws.clients import AwsError, explained
from photosearch.aws.processing import (
    ALBUM_INPUT,
    PACKAGE_INPUT,
    PLAN_INPUT,
    PROGRESS_OUTPUT,
    SHARDS_OUTPUT,
    JobLayout,
)
from photosearch.aws.sagemaker_common import (
    DEFAULT_GPU_INSTANCE,
    POLL_SECONDS,
    default_image_uri,
    is_gpu_instance,
    log_pointer,
    require_s3_url,
    tags,
)
from photosearch.faces.engine import FaceEngine, resolve_max_side

__all__ = [
    "DEFAULT_MAX_RUNTIME_SECONDS",
    "DEFAULT_VOLUME_GB",
    "PACKAGE_TARGET",
    "PROCESSING_ENTRYPOINT",
    "PROCESSING_LOG_GROUP",
    "PROCESSING_SCRIPT",
    "IndexRun",
    "JobOutcome",
    "describe_job",
    "job_failure",
    "processing_job_request",
    "run_index_job",
    "wait_for_job",
]

DEFAULT_VOLUME_GB = 30
DEFAULT_MAX_RUNTIME_SECONDS = 24 * 3600
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
PACKAGE_TARGET = "/tmp/photosearch"

# The processing container's command: unpack the package, install what the image lacks, run
# the entry point with the job's ContainerArguments. A failure before Python starts still
# leaves an ExitMessage saying which step broke.
PROCESSING_SCRIPT = f"""set -uo pipefail
fail() {{ mkdir -p /opt/ml/output; echo "$1" > /opt/ml/output/message; echo "$1" >&2; exit 1; }}
mkdir -p {PACKAGE_TARGET}
tar -xzf /opt/ml/{PACKAGE_INPUT}/model.tar.gz -C {PACKAGE_TARGET} \\
  || fail "cannot unpack the model package (input 'package')"
python3 -m pip install --quiet --no-cache-dir -r {PACKAGE_TARGET}/code/requirements.txt \\
  || fail "pip could not install the package requirements (does the job have internet access?)"
export PYTHONPATH={PACKAGE_TARGET}/code${{PYTHONPATH:+:$PYTHONPATH}}
export PHOTOSEARCH_MODELS_DIR={PACKAGE_TARGET}/models PHOTOSEARCH_CACHE_DIR={PACKAGE_TARGET}/cache
exec python3 -m photosearch.aws.processing "$@"
"""
PROCESSING_ENTRYPOINT = ["/bin/bash", "-c", PROCESSING_SCRIPT, "photosearch-processing"]


# ----------------------------------------------------------------------------------------------
# The indexing job


def processing_job_request(
    *,
    job_name: str,
    role_arn: str,
    image_uri: str,
    layout: JobLayout,
    package_uri: str | None,
    instance_count: int,
    instance_type: str,
    volume_gb: int = DEFAULT_VOLUME_GB,
    max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS,
    device: str = "auto",
) -> dict[str, Any]:
    """The CreateProcessingJob request of one indexing job.

    Inputs: the planned photos as a manifest file, sharded by key over the instances; the plan
    and the model package, replicated. Outputs: each instance's Parquet part (uploaded at the
    end) and its progress file (uploaded continuously).
    """

    def s3_input(name: str, uri: str, local: str, data_type: str, distribution: str) -> dict:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": f"/opt/ml/{local}",
                "S3DataType": data_type,
                "S3InputMode": "File",
                "S3DataDistributionType": distribution,
            },
        }

    inputs = [
        s3_input("album", layout.album_manifest_uri, ALBUM_INPUT, "ManifestFile", "ShardedByS3Key"),
        s3_input("plan", layout.plan_uri, PLAN_INPUT, "S3Prefix", "FullyReplicated"),
    ]
    if package_uri:
        inputs.append(
            s3_input("package", package_uri, PACKAGE_INPUT, "S3Prefix", "FullyReplicated")
        )
    return {
        "ProcessingJobName": job_name,
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": image_uri,
            "ContainerEntrypoint": PROCESSING_ENTRYPOINT,
            "ContainerArguments": ["--device", device],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": instance_count,
                "InstanceType": instance_type,
                "VolumeSizeInGB": volume_gb,
            }
        },
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "shards",
                    "S3Output": {
                        "S3Uri": layout.shards_uri,
                        "LocalPath": f"/opt/ml/{SHARDS_OUTPUT}",
                        "S3UploadMode": "EndOfJob",
                    },
                },
                {
                    "OutputName": "progress",
                    "S3Output": {
                        "S3Uri": layout.progress_uri,
                        "LocalPath": f"/opt/ml/{PROGRESS_OUTPUT}",
                        "S3UploadMode": "Continuous",
                    },
                },
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
        "Environment": {"PYTHONUNBUFFERED": "1"},
        "Tags": tags({"photosearch:index": layout.index[:256]}),
    }


@dataclass
class JobOutcome:
    name: str
    status: str
    failure_reason: str = ""
    exit_message: str = ""
    seconds: float = 0.0


def describe_job(sagemaker: Any, name: str) -> dict[str, Any]:
    with explained(f"describing processing job {name}"):
        return sagemaker.describe_processing_job(ProcessingJobName=name)


def wait_for_job(
    sagemaker: Any,
    name: str,
    *,
    on_status: Callable[[str], None] = lambda status: None,
    on_poll: Callable[[], None] = lambda: None,
    poll_seconds: float = POLL_SECONDS,
) -> JobOutcome:
    """Poll until the job ends; `on_poll` runs between polls (e.g. reads progress files)."""
    started = time.monotonic()
    last_status = None
    while True:
        description = describe_job(sagemaker, name)
        status = description["ProcessingJobStatus"]
        if status != last_status:
            on_status(status)
            last_status = status
        on_poll()
        if status in {"Completed", "Failed", "Stopped"}:
            return JobOutcome(
                name=name,
                status=status,
                failure_reason=description.get("FailureReason", ""),
                exit_message=description.get("ExitMessage", ""),
                seconds=time.monotonic() - started,
            )
        time.sleep(poll_seconds)


def job_failure(outcome: JobOutcome, region: str) -> str:
    """One line: the job's failure reason, its exit message, and where its logs are."""
    parts = [f"processing job {outcome.name} {outcome.status.lower()}"]
    if outcome.failure_reason:
        parts.append(outcome.failure_reason.strip())
    if outcome.exit_message and outcome.exit_message.strip() not in outcome.failure_reason:
        parts.append(outcome.exit_message.strip())
    parts.append(log_pointer(region, PROCESSING_LOG_GROUP, f"{outcome.name}/"))
    return ": ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")


# ----------------------------------------------------------------------------------------------
# Indexing an S3 album: plan, run (on SageMaker or locally), merge


@dataclass
class IndexRun:
    job_name: str
    planned: int  # photos sent to the job
    unchanged: int
    listed: int
    status: str  # "Completed" | "Failed" | "Stopped" | "UpToDate"
    seconds: float = 0.0
    merge: Any = None  # processing.MergeStats
    instances: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job_name,
            "status": self.status,
            "listed": self.listed,
            "planned": self.planned,
            "unchanged": self.unchanged,
            "seconds": round(self.seconds, 3),
            "merge": self.merge.to_json() if self.merge is not None else None,
        }


def run_index_job(
    album_url: str,
    index_url: str,
    *,
    s3: Any,
    region: str,
    job_name: str,
    sagemaker: Any = None,
    role_arn: str = "",
    package_uri: str | None = None,
    image_uri: str | None = None,
    instances: int = 1,
    instance_type: str = DEFAULT_GPU_INSTANCE,
    local_instances: int | None = None,
    engine: FaceEngine | None = None,
    max_side: int | None = None,
    retry_errors: bool = False,
    device: str = "auto",
    volume_gb: int = DEFAULT_VOLUME_GB,
    max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS,
    report: Callable[[str], None] = print,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    poll_seconds: float = POLL_SECONDS,
    keep_job_files: bool = False,
) -> IndexRun:
    """Bring the index of an S3 album up to date with a Processing job (or its local runner).

    Only new and changed photos are sent; the results are merged into the index in one commit
    and photos gone from the album are dropped. Raises AwsError when the job fails.
    """
    started = time.monotonic()
    album_url = require_s3_url(album_url, "the album")
    index_url = require_s3_url(index_url, "the index")
    planned = processing.plan_job(
        album_url,
        index_url,
        job_name,
        max_side=resolve_max_side(max_side),
        retry_errors=retry_errors,
    )
    plan = planned.plan
    run = IndexRun(
        job_name=job_name,
        planned=len(plan.photos),
        unchanged=planned.unchanged,
        listed=plan.listed,
        status="UpToDate",
    )
    if planned.model_changed:
        report(f"the index holds another model's descriptors: re-indexing all {plan.listed}")
    layout = processing.JobLayout(plan.index, job_name)
    if plan.photos:
        report(
            f"{len(plan.photos)} of {plan.listed} photos to index "
            f"({planned.unchanged} unchanged); job {job_name}"
        )
        processing.write_job_inputs(plan, layout)
        count = local_instances or instances
        gpu = is_gpu_instance(instance_type)
        request = processing_job_request(
            job_name=job_name,
            role_arn=role_arn,
            image_uri=image_uri or default_image_uri(region, gpu=gpu),
            layout=layout,
            package_uri=package_uri,
            instance_count=count,
            instance_type=instance_type,
            volume_gb=volume_gb,
            max_runtime_seconds=max_runtime_seconds,
            device=device,
        )
        if local_instances:
            outcome, run.instances = _run_locally(
                request,
                job_name=job_name,
                s3=s3,
                instance_count=local_instances,
                engine=engine,
                report=report,
            )
        else:
            outcome = _run_on_sagemaker(
                sagemaker,
                request,
                job_name=job_name,
                layout=layout,
                photos=len(plan.photos),
                report=report,
                on_progress=on_progress,
                poll_seconds=poll_seconds,
            )
        run.status = outcome.status
        if outcome.status != "Completed":
            raise AwsError(job_failure(outcome, region))
    else:
        report(f"all {plan.listed} photos are indexed already")
    run.merge = _merge(planned, layout, report=report, keep_job_files=keep_job_files)
    run.seconds = time.monotonic() - started
    return run


def _run_locally(
    request: dict[str, Any],
    *,
    job_name: str,
    s3: Any,
    instance_count: int,
    engine: FaceEngine | None,
    report: Callable[[str], None],
) -> tuple[JobOutcome, list[dict[str, Any]]]:
    """The job run here by the local runner: its outcome and what each instance did."""
    from photosearch.aws.local import run_processing_job

    local = run_processing_job(
        request, s3=s3, instance_count=instance_count, engine=engine, report=report
    )
    outcome = JobOutcome(
        job_name, local.status, local.failure_reason, local.exit_message, local.seconds
    )
    return outcome, local.instances


def _run_on_sagemaker(
    sagemaker: Any,
    request: dict[str, Any],
    *,
    job_name: str,
    layout: JobLayout,
    photos: int,
    report: Callable[[str], None],
    on_progress: Callable[[int, int], None],
    poll_seconds: float,
) -> JobOutcome:
    """The job started on SageMaker and awaited, its progress files read between polls."""
    if sagemaker is None:
        raise ValueError("a SageMaker client is needed unless local_instances is set")
    with explained(f"starting processing job {job_name}"):
        sagemaker.create_processing_job(**request)

    def poll() -> None:
        done, total = processing.read_progress(layout.progress_uri)
        on_progress(done, total or photos)

    return wait_for_job(
        sagemaker,
        job_name,
        on_status=lambda status: report(f"job {job_name}: {status}"),
        on_poll=poll,
        poll_seconds=poll_seconds,
    )


def _merge(
    planned: processing.PlannedJob,
    layout: JobLayout,
    *,
    report: Callable[[str], None],
    keep_job_files: bool,
) -> processing.MergeStats:
    """The job's results merged into the index, and its files removed unless kept."""
    plan = planned.plan
    merge = processing.merge_results(plan, layout.shards_uri, planned.present, report=report)
    if merge.missing:
        shown = ", ".join(merge.missing[:5])
        more = f" and {len(merge.missing) - 5} more" if len(merge.missing) > 5 else ""
        report(
            f"{len(merge.missing)} planned photos have no result (the next run tries them "
            f"again): {shown}{more}"
        )
    if plan.photos and not keep_job_files:
        processing.remove_job_files(layout)
    return merge
