"""SageMaker control plane: the indexing job, the search endpoint, and searching through it.

Every request is built by a pure function (`processing_job_request`, `model_request`,
`endpoint_config_request`) so tests can check its exact shape; the functions around them send
it, wait, and turn failures into one line with the failure reason and where the logs are.

Containers are AWS's prebuilt PyTorch images (no image to build or push): the model package
(`photosearch.aws.package`) brings the code and weights.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from photosearch.aws.clients import AwsError, explained
from photosearch.aws.processing import (
    ALBUM_INPUT,
    PACKAGE_INPUT,
    PLAN_INPUT,
    PROGRESS_OUTPUT,
    SHARDS_OUTPUT,
    JobLayout,
)
from photosearch.storage.s3 import error_code, error_message

# AWS Deep Learning Containers: PyTorch inference images (they also serve as the processing
# image: torch + CUDA, Python, pip). Override with --image-uri.
DLC_ACCOUNT = "763104351884"
PYTORCH_VERSION = "2.6.0"
PYTHON_TAG = "py312"
CUDA_TAG = "cu124"
UBUNTU_TAG = "ubuntu22.04"

MODES = ("serverless", "async", "realtime-gpu")
DEFAULT_GPU_INSTANCE = "ml.g4dn.xlarge"
DEFAULT_SERVERLESS_MEMORY_MB = 6144  # the most serverless offers: the engine wants the RAM
DEFAULT_SERVERLESS_CONCURRENCY = 2
DEFAULT_ASYNC_CONCURRENCY = 4
# Payload limits of SageMaker itself, passed on to the handler so it says so clearly.
PAYLOAD_LIMITS = {"serverless": 4 * 1024 * 1024, "async": 6 * 1024 * 1024}
REALTIME_PAYLOAD_LIMIT = 6 * 1024 * 1024
VARIANT = "AllTraffic"
DEFAULT_VOLUME_GB = 30
DEFAULT_MAX_RUNTIME_SECONDS = 24 * 3600
POLL_SECONDS = 15.0
ASYNC_TIMEOUT_SECONDS = 900.0  # covers an instance starting from zero
ASYNC_POLL_SECONDS = 2.0
# Async endpoints scale in to zero after this long without a backlog.
ASYNC_SCALE_IN_COOLDOWN_SECONDS = 600
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
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


def is_gpu_instance(instance_type: str) -> bool:
    """ml.g4dn.xlarge, ml.g5..., ml.p3...: instances with an NVIDIA GPU."""
    family = instance_type.removeprefix("ml.").split(".", 1)[0]
    return family[:1] in {"g", "p"}


def default_image_uri(region: str, gpu: bool) -> str:
    """The AWS PyTorch inference container for this region, CPU or GPU build."""
    device = f"gpu-{PYTHON_TAG}-{CUDA_TAG}" if gpu else f"cpu-{PYTHON_TAG}"
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return (
        f"{DLC_ACCOUNT}.dkr.ecr.{region}.{domain}/pytorch-inference:"
        f"{PYTORCH_VERSION}-{device}-{UBUNTU_TAG}-sagemaker"
    )


def timestamped(prefix: str, suffix: str = "") -> str:
    """A SageMaker resource name: prefix-YYYYmmdd-HHMMSS[-suffix], at most 63 characters."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = "-".join(part for part in (prefix, stamp, suffix) if part)
    name = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-")
    return name[:63].rstrip("-")


def tags(extra: dict[str, str] | None = None) -> list[dict[str, str]]:
    return [
        {"Key": key, "Value": value}
        for key, value in {"project": "photosearch", **(extra or {})}.items()
    ]


def log_pointer(region: str, log_group: str, stream_prefix: str) -> str:
    """Where a job's or endpoint's logs are: the console page and the CLI command."""
    encoded = quote(quote(log_group, safe=""), safe="").replace("%", "$")
    console = (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{encoded}"
    )
    if stream_prefix:
        console += "/log-events$3FlogStreamNameFilter$3D" + quote(stream_prefix, safe="")
    command = f"aws logs tail {log_group} --region {region}"
    if stream_prefix:
        command += f" --log-stream-name-prefix {stream_prefix}"
    return f"logs: {console} (or `{command}`)"


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
# The search endpoint


def model_request(
    *,
    model_name: str,
    role_arn: str,
    image_uri: str,
    package_uri: str,
    index_uri: str,
    region: str,
    max_request_bytes: int,
) -> dict[str, Any]:
    """The CreateModel request: the prebuilt PyTorch image, our package, the index to search."""
    return {
        "ModelName": model_name,
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {
            "Image": image_uri,
            "ModelDataUrl": package_uri,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                "SAGEMAKER_REGION": region,
                "PHOTOSEARCH_INDEX": index_uri,
                "PHOTOSEARCH_INDEX_RECHECK_SECONDS": "10",
                "PHOTOSEARCH_MAX_REQUEST_BYTES": str(max_request_bytes),
            },
        },
        "Tags": tags({"photosearch:index": index_uri[:256]}),
    }


def endpoint_config_request(
    *,
    config_name: str,
    model_name: str,
    mode: str,
    instance_type: str = DEFAULT_GPU_INSTANCE,
    memory_mb: int = DEFAULT_SERVERLESS_MEMORY_MB,
    max_concurrency: int | None = None,
    async_output_uri: str | None = None,
) -> dict[str, Any]:
    """The CreateEndpointConfig request of a deployment mode.

    serverless: CPU, billed per request-second, nothing while idle (SageMaker serverless has no
    GPU). async: a GPU instance behind a queue that scales in to zero when idle (the first
    request after that waits for an instance). realtime-gpu: a GPU instance, billed while the
    endpoint exists.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": model_name}
    request: dict[str, Any] = {"EndpointConfigName": config_name, "Tags": tags({"mode": mode})}
    if mode == "serverless":
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": memory_mb,
            "MaxConcurrency": max_concurrency or DEFAULT_SERVERLESS_CONCURRENCY,
        }
    else:
        variant["InstanceType"] = instance_type
        variant["InitialInstanceCount"] = 1
    if mode == "async":
        if not async_output_uri:
            raise ValueError("async endpoints need an S3 location for their answers")
        request["AsyncInferenceConfig"] = {
            "OutputConfig": {
                "S3OutputPath": f"{async_output_uri.rstrip('/')}/output",
                "S3FailurePath": f"{async_output_uri.rstrip('/')}/failure",
            },
            "ClientConfig": {
                "MaxConcurrentInvocationsPerInstance": max_concurrency or DEFAULT_ASYNC_CONCURRENCY
            },
        }
    request["ProductionVariants"] = [variant]
    return request


def async_scaling_requests(endpoint_name: str) -> dict[str, Any]:
    """Application Auto Scaling for an async endpoint: 0..1 instances, out on any backlog, in
    after ASYNC_SCALE_IN_COOLDOWN_SECONDS without one (AWS's documented scale-to-zero recipe)."""
    resource = f"endpoint/{endpoint_name}/variant/{VARIANT}"
    dimension = "sagemaker:variant:DesiredInstanceCount"
    return {
        "target": {
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": dimension,
            "MinCapacity": 0,
            "MaxCapacity": 1,
        },
        "backlog_policy": {
            "PolicyName": f"{endpoint_name}-backlog",
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": dimension,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 2.0,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name}],
                    "Statistic": "Average",
                },
                "ScaleInCooldown": ASYNC_SCALE_IN_COOLDOWN_SECONDS,
                "ScaleOutCooldown": 60,
            },
        },
        "wake_policy": {
            "PolicyName": f"{endpoint_name}-wake-from-zero",
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": dimension,
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": "Average",
                "Cooldown": 60,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        },
        "wake_alarm": {
            "AlarmName": f"{endpoint_name}-backlog-without-capacity",
            "MetricName": "HasBacklogWithoutCapacity",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name}],
            "Statistic": "Average",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "missing",
        },
    }


@dataclass
class Deployment:
    endpoint_name: str
    mode: str
    model_name: str
    config_name: str
    status: str = ""
    action: str = ""  # "created" | "updated"
    replaced: list[str] = field(default_factory=list)  # old configs/models removed

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint_name,
            "mode": self.mode,
            "model": self.model_name,
            "endpoint_config": self.config_name,
            "status": self.status,
            "action": self.action,
        }


def _describe_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        # AWS (and moto) answer ValidationException "Could not find endpoint ...".
        missing = "Could not find" in error_message(exc)
        if error_code(exc) in {"ValidationException", "ValidationError"} and missing:
            return None
        raise


def wait_for_endpoint(
    sagemaker: Any,
    name: str,
    region: str,
    *,
    on_status: Callable[[str], None] = lambda status: None,
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float = 3600.0,
) -> str:
    """Poll until the endpoint is InService; a failure raises with its reason and logs."""
    deadline = time.monotonic() + timeout_seconds
    last = None
    while True:
        with explained(f"describing endpoint {name}"):
            description = _describe_endpoint(sagemaker, name)
        if description is None:
            raise AwsError(f"endpoint {name} disappeared while deploying")
        status = description["EndpointStatus"]
        if status != last:
            on_status(status)
            last = status
        if status == "InService":
            return status
        if status == "Failed":
            reason = description.get("FailureReason") or "no reason given"
            raise AwsError(
                f"endpoint {name} failed: {reason}; "
                + log_pointer(region, ENDPOINT_LOG_GROUP.format(name=name), "")
            )
        if time.monotonic() > deadline:
            raise AwsError(f"endpoint {name} still {status} after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def deploy(
    sagemaker: Any,
    *,
    endpoint_name: str,
    mode: str,
    role_arn: str,
    package_uri: str,
    index_uri: str,
    region: str,
    image_uri: str | None = None,
    instance_type: str = DEFAULT_GPU_INSTANCE,
    memory_mb: int = DEFAULT_SERVERLESS_MEMORY_MB,
    max_concurrency: int | None = None,
    async_output_uri: str | None = None,
    autoscaling: Any = None,
    cloudwatch: Any = None,
    wait: bool = True,
    on_status: Callable[[str], None] = lambda status: None,
    poll_seconds: float = POLL_SECONDS,
) -> Deployment:
    """Create the model and endpoint config, then create the endpoint or switch it over."""
    gpu = mode != "serverless"
    image = image_uri or default_image_uri(region, gpu=gpu)
    limit = PAYLOAD_LIMITS.get(mode, REALTIME_PAYLOAD_LIMIT)
    model_name = timestamped(endpoint_name, mode)
    config_name = model_name
    deployment = Deployment(endpoint_name, mode, model_name, config_name)
    with explained(f"deploying endpoint {endpoint_name}"):
        sagemaker.create_model(
            **model_request(
                model_name=model_name,
                role_arn=role_arn,
                image_uri=image,
                package_uri=package_uri,
                index_uri=index_uri,
                region=region,
                max_request_bytes=limit,
            )
        )
        sagemaker.create_endpoint_config(
            **endpoint_config_request(
                config_name=config_name,
                model_name=model_name,
                mode=mode,
                instance_type=instance_type,
                memory_mb=memory_mb,
                max_concurrency=max_concurrency,
                async_output_uri=async_output_uri,
            )
        )
        current = _describe_endpoint(sagemaker, endpoint_name)
        previous_config = current["EndpointConfigName"] if current else None
        if current is None:
            sagemaker.create_endpoint(
                EndpointName=endpoint_name,
                EndpointConfigName=config_name,
                Tags=tags({"mode": mode}),
            )
            deployment.action = "created"
        else:
            sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
            deployment.action = "updated"
    if not wait:
        deployment.status = "Creating" if deployment.action == "created" else "Updating"
        return deployment
    deployment.status = wait_for_endpoint(
        sagemaker, endpoint_name, region, on_status=on_status, poll_seconds=poll_seconds
    )
    with explained(f"configuring endpoint {endpoint_name}"):
        if mode == "async" and autoscaling is not None:
            enable_scale_to_zero(autoscaling, cloudwatch, endpoint_name)
        elif autoscaling is not None:
            disable_autoscaling(autoscaling, endpoint_name)
        if previous_config and previous_config != config_name:
            deployment.replaced = _delete_config_and_models(sagemaker, previous_config)
    return deployment


def enable_scale_to_zero(autoscaling: Any, cloudwatch: Any, endpoint_name: str) -> None:
    requests = async_scaling_requests(endpoint_name)
    autoscaling.register_scalable_target(**requests["target"])
    autoscaling.put_scaling_policy(**requests["backlog_policy"])
    wake = autoscaling.put_scaling_policy(**requests["wake_policy"])
    if cloudwatch is not None:
        cloudwatch.put_metric_alarm(**requests["wake_alarm"], AlarmActions=[wake["PolicyARN"]])


def disable_autoscaling(autoscaling: Any, endpoint_name: str) -> None:
    try:
        autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{endpoint_name}/variant/{VARIANT}",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        )
    except ClientError as exc:
        if error_code(exc) not in {"ObjectNotFoundException", "ValidationException"}:
            raise


def _delete_config_and_models(sagemaker: Any, config_name: str) -> list[str]:
    removed = []
    try:
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError:
        return removed
    models = [variant["ModelName"] for variant in config.get("ProductionVariants", [])]
    sagemaker.delete_endpoint_config(EndpointConfigName=config_name)
    removed.append(f"endpoint config {config_name}")
    for model in models:
        try:
            sagemaker.delete_model(ModelName=model)
            removed.append(f"model {model}")
        except ClientError as exc:
            if "Could not find" not in error_message(exc):
                raise
    return removed


def undeploy(
    sagemaker: Any,
    endpoint_name: str,
    *,
    autoscaling: Any = None,
    cloudwatch: Any = None,
) -> list[str]:
    """Delete the endpoint, its config and model (and async scaling): nothing left to bill.

    Returns what was deleted; an endpoint that does not exist raises AwsError.
    """
    with explained(f"deleting endpoint {endpoint_name}"):
        current = _describe_endpoint(sagemaker, endpoint_name)
        if current is None:
            raise AwsError(f"no endpoint named {endpoint_name!r}: nothing to undeploy")
        deleted = []
        if autoscaling is not None:
            disable_autoscaling(autoscaling, endpoint_name)
        if cloudwatch is not None:
            cloudwatch.delete_alarms(AlarmNames=[f"{endpoint_name}-backlog-without-capacity"])
        sagemaker.delete_endpoint(EndpointName=endpoint_name)
        deleted.append(f"endpoint {endpoint_name}")
        deleted += _delete_config_and_models(sagemaker, current["EndpointConfigName"])
    return deleted


# ----------------------------------------------------------------------------------------------
# Searching through an endpoint


class EndpointSearchError(AwsError):
    """The endpoint answered with an error: `status` is the handler's HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def search_payload(
    reference_images: Sequence[bytes],
    threshold: float | None = None,
    face: int | Sequence[int | None] | None = None,
    exclude: Sequence[tuple[str, int]] = (),
) -> bytes:
    """The JSON request the handler reads (photosearch.aws.inference.input_fn)."""
    payload: dict[str, Any] = {
        "images": [base64.b64encode(image).decode("ascii") for image in reference_images]
    }
    if threshold is not None:
        payload["threshold"] = threshold
    if face is not None:
        payload["face"] = face if isinstance(face, int) else list(face)
    if exclude:
        payload["exclude"] = [[photo, int(number)] for photo, number in exclude]
    return json.dumps(payload).encode()


def runtime_client(region: str | None = None) -> Any:
    """A sagemaker-runtime client (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME is honoured by boto3).

    The read timeout covers a serverless cold start (container start and model load)."""
    from botocore.config import Config

    from photosearch.aws.clients import make_session

    session = make_session(region)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=10,
        read_timeout=180,
    )
    return session.client("sagemaker-runtime", config=config)


def async_location_for(embeddings_bucket: str, endpoint_name: str) -> str:
    """Where an async endpoint's requests and answers live (what `deploy` configures)."""
    return f"s3://{embeddings_bucket}/async/{endpoint_name}"


def _refused(endpoint_name: str, original: str, status: int | None) -> EndpointSearchError:
    # The serving toolkit appends a traceback after the first line.
    first_line = original.strip().splitlines()[0] if original.strip() else original
    return EndpointSearchError(
        f"endpoint {endpoint_name} refused the search"
        + (f" ({status})" if status else "")
        + f": {first_line}",
        status,
    )


def invoke_search(
    endpoint_name: str,
    reference_images: Sequence[bytes],
    threshold: float | None = None,
    *,
    face: int | Sequence[int | None] | None = None,
    exclude: Sequence[tuple[str, int]] = (),
    runtime: Any = None,
    region: str | None = None,
    async_location: str | None = None,
    s3: Any = None,
    timeout_seconds: float = ASYNC_TIMEOUT_SECONDS,
    poll_seconds: float = ASYNC_POLL_SECONDS,
) -> dict[str, Any]:
    """The handler's whole answer: matches, the faces found in each reference, index info.

    With `async_location` (an async endpoint's s3://... from `async_location_for`), the
    request goes through S3 and InvokeEndpointAsync, and the answer is awaited in S3.
    """
    runtime = runtime or runtime_client(region)
    body = search_payload(reference_images, threshold, face, exclude)
    if async_location is not None:
        return _invoke_async(
            runtime, s3, endpoint_name, body, async_location, timeout_seconds, poll_seconds
        )
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=body,
        )
    except ClientError as exc:
        if error_code(exc) == "ModelError":
            status = exc.response.get("OriginalStatusCode")
            original = exc.response.get("OriginalMessage") or error_message(exc)
            raise _refused(endpoint_name, original, int(status) if status else None) from exc
        with explained(f"searching through endpoint {endpoint_name}"):
            raise
    except Exception as exc:
        with explained(f"searching through endpoint {endpoint_name}"):
            raise exc
    return json.loads(response["Body"].read())


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _read_if_there(s3: Any, uri: str) -> bytes | None:
    bucket, key = _split_s3(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise


def _invoke_async(
    runtime: Any,
    s3: Any,
    endpoint_name: str,
    body: bytes,
    async_location: str,
    timeout_seconds: float,
    poll_seconds: float,
) -> dict[str, Any]:
    from photosearch.aws.clients import make_client, make_session

    s3 = s3 or make_client(make_session(), "s3")
    request_id = uuid.uuid4().hex
    bucket, prefix = _split_s3(async_location.rstrip("/"))
    key = f"{prefix}/requests/{request_id}.json"
    action = f"searching through async endpoint {endpoint_name}"
    leftovers = [f"s3://{bucket}/{key}"]
    with explained(action):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        try:
            response = runtime.invoke_endpoint_async(
                EndpointName=endpoint_name,
                InputLocation=f"s3://{bucket}/{key}",
                ContentType="application/json",
                Accept="application/json",
                InferenceId=request_id,
            )
            output = response["OutputLocation"]
            failure = response.get("FailureLocation")
            leftovers += [output, *([failure] if failure else [])]
            # The first request after a scale-in to zero waits for an instance (minutes).
            deadline = time.monotonic() + timeout_seconds
            while True:
                answer = _read_if_there(s3, output)
                if answer is not None:
                    return json.loads(answer)
                problem = _read_if_there(s3, failure) if failure else None
                if problem is not None:
                    text = problem.decode("utf-8", "replace")
                    found = re.search(r"\((\d{3})\)", text)
                    message = text.split('message "', 1)[-1].rstrip('"') if found else text
                    raise _refused(endpoint_name, message, int(found.group(1)) if found else None)
                if time.monotonic() > deadline:
                    raise AwsError(
                        f"{action}: no answer after {timeout_seconds:.0f} s (still scaling out "
                        f"from zero?); it will appear at {output}"
                    )
                time.sleep(poll_seconds)
        finally:
            # Best effort: a leftover request or answer is a few kB, harmless.
            for leftover in leftovers:
                leftover_bucket, leftover_key = _split_s3(leftover)
                with contextlib.suppress(ClientError):
                    s3.delete_object(Bucket=leftover_bucket, Key=leftover_key)


def search_via_endpoint(
    endpoint_name: str,
    reference_images: list[bytes],
    threshold: float | None = None,
    *,
    face: int | Sequence[int | None] | None = None,
    exclude: Sequence[tuple[str, int]] = (),
    runtime: Any = None,
    region: str | None = None,
    async_location: str | None = None,
    s3: Any = None,
) -> list[dict[str, Any]]:
    """Every matching photo, best first, as the local search's match dicts:
    ``{"photo", "distance", "box": [left, top, right, bottom], "face_index", "score"}``.

    `async_location`: for an async endpoint (see `invoke_search`). Raises EndpointSearchError
    (with the handler's status and message) for a refused request, AwsError for anything else.
    """
    return invoke_search(
        endpoint_name,
        reference_images,
        threshold,
        face=face,
        exclude=exclude,
        runtime=runtime,
        region=region,
        async_location=async_location,
        s3=s3,
    )["matches"]


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


def require_s3_url(url: str, what: str) -> str:
    if not url.startswith("s3://") or len(url.rstrip("/")) <= len("s3://"):
        raise AwsError(f"{what} must be an s3://BUCKET/PREFIX URL for SageMaker, not {url!r}")
    return url.rstrip("/")


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
    engine: Any = None,
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
    from photosearch.aws import processing
    from photosearch.faces.engine import resolve_max_side

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
            from photosearch.aws.local import run_processing_job

            local = run_processing_job(
                request, s3=s3, instance_count=local_instances, engine=engine, report=report
            )
            outcome = JobOutcome(
                job_name, local.status, local.failure_reason, local.exit_message, local.seconds
            )
            run.instances = local.instances
        else:
            if sagemaker is None:
                raise ValueError("a SageMaker client is needed unless local_instances is set")
            with explained(f"starting processing job {job_name}"):
                sagemaker.create_processing_job(**request)

            def poll() -> None:
                done, total = processing.read_progress(layout.progress_uri)
                on_progress(done, total or len(plan.photos))

            outcome = wait_for_job(
                sagemaker,
                job_name,
                on_status=lambda status: report(f"job {job_name}: {status}"),
                on_poll=poll,
                poll_seconds=poll_seconds,
            )
        run.status = outcome.status
        if outcome.status != "Completed":
            raise AwsError(job_failure(outcome, region))
    else:
        report(f"all {plan.listed} photos are indexed already")
    run.merge = processing.merge_results(plan, layout.shards_uri, planned.present, report=report)
    if run.merge.missing:
        shown = ", ".join(run.merge.missing[:5])
        more = f" and {len(run.merge.missing) - 5} more" if len(run.merge.missing) > 5 else ""
        report(
            f"{len(run.merge.missing)} planned photos have no result (the next run tries them "
            f"again): {shown}{more}"
        )
    if plan.photos and not keep_job_files:
        processing.remove_job_files(layout)
    run.seconds = time.monotonic() - started
    return run
