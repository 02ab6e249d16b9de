"""Deploying the search endpoint: model, endpoint config, endpoint, autoscaling; and undeploying.

Three modes (`MODES`): serverless (CPU, billed per request), async (a GPU instance behind a
queue that scales in to zero) and realtime-gpu (a GPU instance billed while it exists). Every
request is built by a pure function (`model_request`, `endpoint_config_request`,
`async_scaling_requests`) so tests can check its exact shape; `deploy` and `undeploy` send them,
wait, and turn a failure into one line with the failure reason and where the logs are. The
container is AWS's prebuilt PyTorch image running `photosearch.aws.inference`; searching through
a deployed endpoint is `photosearch.aws.endpoint_client`, kept apart so the search CLI loads no
deployment code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from photosearch.aws.clients import AwsError, explained
from photosearch.aws.sagemaker_common import (
    DEFAULT_GPU_INSTANCE,
    POLL_SECONDS,
    default_image_uri,
    log_pointer,
    tags,
    timestamped,
)
from photosearch.storage.s3 import error_code, error_message

__all__ = [
    "ASYNC_SCALE_IN_COOLDOWN_SECONDS",
    "DEFAULT_ASYNC_CONCURRENCY",
    "DEFAULT_SERVERLESS_CONCURRENCY",
    "DEFAULT_SERVERLESS_MEMORY_MB",
    "ENDPOINT_LOG_GROUP",
    "MODES",
    "PAYLOAD_LIMITS",
    "REALTIME_PAYLOAD_LIMIT",
    "VARIANT",
    "Deployment",
    "async_scaling_requests",
    "deploy",
    "disable_autoscaling",
    "enable_scale_to_zero",
    "endpoint_config_request",
    "model_request",
    "undeploy",
    "wait_for_endpoint",
]

MODES = ("serverless", "async", "realtime-gpu")
DEFAULT_SERVERLESS_MEMORY_MB = 6144  # the most serverless offers: the engine wants the RAM
DEFAULT_SERVERLESS_CONCURRENCY = 2
DEFAULT_ASYNC_CONCURRENCY = 4
# Payload limits of SageMaker itself, passed on to the handler so it says so clearly.
PAYLOAD_LIMITS = {"serverless": 4 * 1024 * 1024, "async": 6 * 1024 * 1024}
REALTIME_PAYLOAD_LIMIT = 6 * 1024 * 1024
VARIANT = "AllTraffic"
# Async endpoints scale in to zero after this long without a backlog.
ASYNC_SCALE_IN_COOLDOWN_SECONDS = 600
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"


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
