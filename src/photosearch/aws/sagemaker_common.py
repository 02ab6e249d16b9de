"""What the SageMaker modules share: the prebuilt container images, names, tags, log pointers.

Both the indexing job (`photosearch.aws.jobs`) and the search endpoint
(`photosearch.aws.endpoint`) run AWS's prebuilt PyTorch images (no image to build or push: the
model package, `photosearch.aws.package`, brings the code and weights), name their resources with
a UTC timestamp, tag them, poll them at the same pace and point at their CloudWatch logs when
they fail; this module holds those small pieces so neither has to import the other. It talks to
no AWS service itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote

from photosearch.aws.clients import AwsError

__all__ = [
    "CUDA_TAG",
    "DEFAULT_GPU_INSTANCE",
    "DLC_ACCOUNT",
    "POLL_SECONDS",
    "PYTHON_TAG",
    "PYTORCH_VERSION",
    "UBUNTU_TAG",
    "default_image_uri",
    "is_gpu_instance",
    "log_pointer",
    "require_s3_url",
    "tags",
    "timestamped",
]

# AWS Deep Learning Containers: PyTorch inference images (they also serve as the processing
# image: torch + CUDA, Python, pip). Override with --image-uri.
DLC_ACCOUNT = "763104351884"
PYTORCH_VERSION = "2.6.0"
PYTHON_TAG = "py312"
CUDA_TAG = "cu124"
UBUNTU_TAG = "ubuntu22.04"

DEFAULT_GPU_INSTANCE = "ml.g4dn.xlarge"
POLL_SECONDS = 15.0


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


def require_s3_url(url: str, what: str) -> str:
    if not url.startswith("s3://") or len(url.rstrip("/")) <= len("s3://"):
        raise AwsError(f"{what} must be an s3://BUCKET/PREFIX URL for SageMaker, not {url!r}")
    return url.rstrip("/")
