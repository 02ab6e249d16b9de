"""Local runners for the two SageMaker container contracts: no AWS account needed.

- `LocalEndpoint` serves the search handler over HTTP the way the SageMaker inference
  containers do (``GET /ping``, ``POST /invocations``) and the way the SageMaker runtime API
  does (``POST /endpoints/NAME/invocations``, errors as ``ModelError``; and
  ``/async-invocations`` with the request and answer in S3), so
  ``boto3.client("sagemaker-runtime")`` reaches it through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
- `run_processing_job` takes the very CreateProcessingJob request `photosearch aws index`
  sends, and plays SageMaker: per simulated instance it remaps /opt/ml to a temp folder, writes
  the job's config files, downloads the inputs (``ShardedByS3Key`` inputs split by key), runs
  the processing entry point, and uploads the outputs, all against whatever S3 endpoint the
  standard AWS variables name (e.g. a local moto server).
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from photosearch.aws import processing
from photosearch.aws.inference import SearchModel, handle
from photosearch.faces.engine import FaceEngine

__all__ = [
    "DEFAULT_PORT",
    "HARD_BODY_LIMIT",
    "OPT_ML_PREFIX",
    "InputObject",
    "LocalEndpoint",
    "LocalJobResult",
    "Report",
    "list_input_objects",
    "remap",
    "run_processing_job",
    "shard_objects",
    "split_s3_uri",
]

OPT_ML_PREFIX = "/opt/ml/"
DEFAULT_PORT = 8080  # the port SageMaker inference containers listen on
# Bodies above this are refused without being read (the handler's own limit is lower).
HARD_BODY_LIMIT = 64 * 1024 * 1024
_RUNTIME_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<kind>async-)?invocations/?$")

Report = Callable[[str], None]


# ----------------------------------------------------------------------------------------------
# The endpoint


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, body: bytes, content_type: str, headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: dict, headers=None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/ping":
            self._send(200, b"{}", "application/json")
        else:
            self._send(404, b"not found: GET /ping, POST /invocations", "text/plain")

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > HARD_BODY_LIMIT:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        runtime = _RUNTIME_PATH.match(self.path)
        if self.path.rstrip("/") != "/invocations" and runtime is None:
            self._send(404, b"not found: POST /invocations", "text/plain")
            return
        body = self._body()
        content_type = self.headers.get("Content-Type")
        accept = self.headers.get("Accept")
        if runtime is None:  # the container contract: the handler's status and body as they are
            if body is None:
                self._send(413, b"request too large", "text/plain")
                return
            status, answer, answer_type = handle(self.server.model, body, content_type, accept)
            self._send(status, answer, answer_type)
            return
        if not self._known_endpoint(runtime.group("name")):
            return
        if runtime.group("kind"):
            self._runtime_async()
        else:
            self._runtime(body, content_type, accept)

    def _known_endpoint(self, name: str) -> bool:
        wanted = self.server.endpoint_name
        if wanted is not None and name != wanted:
            self._send_json(
                400,
                {"message": f"Endpoint {name} of account local not found."},
                {"x-amzn-ErrorType": "ValidationError"},
            )
            return False
        return True

    def _runtime_async(self) -> None:
        """InvokeEndpointAsync: the request is read from S3, the answer written to S3 later."""
        if self.server.async_output_uri is None or self.server.s3 is None:
            self._send_json(
                400,
                {"message": "This endpoint is not configured for asynchronous inference."},
                {"x-amzn-ErrorType": "ValidationError"},
            )
            return
        inference_id = self.headers.get("X-Amzn-SageMaker-Inference-Id") or uuid.uuid4().hex
        base = self.server.async_output_uri.rstrip("/")
        output = f"{base}/output/{inference_id}.out"
        failure = f"{base}/failure/{inference_id}-error.out"
        job = threading.Thread(
            target=_answer_async,
            args=(
                self.server,
                self.headers.get("X-Amzn-SageMaker-InputLocation", ""),
                self.headers.get("X-Amzn-SageMaker-Content-Type"),
                self.headers.get("X-Amzn-SageMaker-Accept"),
                output,
                failure,
            ),
            daemon=True,
        )
        job.start()
        self._send_json(
            202,
            {"InferenceId": inference_id},
            {
                "X-Amzn-SageMaker-OutputLocation": output,
                "X-Amzn-SageMaker-FailureLocation": failure,
            },
        )

    def _runtime(self, body: bytes | None, content_type, accept) -> None:
        """The SageMaker runtime API's InvokeEndpoint, as boto3 expects it."""
        if body is None:
            self._send_json(
                413,
                {"message": "Request payload is too large."},
                {"x-amzn-ErrorType": "ValidationError"},
            )
            return
        status, answer, answer_type = handle(self.server.model, body, content_type, accept)
        if status == 200:
            self._send(status, answer, answer_type, {"x-Amzn-Invoked-Production-Variant": "local"})
            return
        # SageMaker wraps a container's error answer in a ModelError (HTTP 424).
        message = answer.decode("utf-8", "replace")
        kind = "client" if status < 500 else "server"
        self._send_json(
            424,
            {
                "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
                "OriginalStatusCode": status,
                "OriginalMessage": message,
                "Message": f'Received {kind} error ({status}) from primary with message "'
                f'{message}". See the endpoint logs for more information.',
                "LogStreamArn": "local",
            },
            {"x-amzn-ErrorType": "ModelError"},
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model: SearchModel
    endpoint_name: str | None
    log: Report | None
    async_output_uri: str | None
    s3: Any


def _answer_async(
    server: _Server, input_uri: str, content_type, accept, output: str, failure: str
) -> None:
    """What an async endpoint does with one queued request: answer or failure, in S3."""
    try:
        bucket, key = split_s3_uri(input_uri)
        body = server.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        status, answer, _ = handle(server.model, body, content_type, accept)
    except Exception as exc:  # an unreadable input location is a failure of this request
        status, answer = 400, f"cannot read the input location {input_uri!r}: {exc}".encode()
    if status == 200:
        bucket, key = split_s3_uri(output)
    else:
        kind = "client" if status < 500 else "server"
        message = answer.decode("utf-8", "replace")
        answer = f'Received {kind} error ({status}) from model with message "{message}"'.encode()
        bucket, key = split_s3_uri(failure)
    server.s3.put_object(Bucket=bucket, Key=key, Body=answer)


class LocalEndpoint:
    """The search handler behind a local HTTP server (in a background thread by `start`)."""

    def __init__(
        self,
        model: SearchModel,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoint_name: str | None = None,
        log: Report | None = None,
        async_output_uri: str | None = None,
        s3: Any = None,
    ) -> None:
        """`async_output_uri` and an `s3` client make it answer InvokeEndpointAsync too."""
        self.server = _Server((host, port), _Handler)
        self.server.model = model
        self.server.endpoint_name = endpoint_name
        self.server.log = log
        self.server.async_output_uri = async_output_uri
        self.server.s3 = s3
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalEndpoint:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="photosearch-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------------
# The processing job


@dataclass
class LocalJobResult:
    """What DescribeProcessingJob would say about a locally run job."""

    job_name: str
    status: str  # "Completed" | "Failed"
    failure_reason: str = ""
    exit_message: str = ""
    instances: list[dict[str, Any]] = field(default_factory=list)  # each host's summary
    seconds: float = 0.0
    downloaded: dict[str, int] = field(default_factory=dict)  # host -> objects downloaded


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str  # path under the input's LocalPath


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def list_input_objects(s3: Any, s3_input: dict[str, Any]) -> list[InputObject]:
    """The objects one ProcessingS3Input names, in key order, with their local paths."""
    bucket, prefix = split_s3_uri(s3_input["S3Uri"])
    if s3_input["S3DataType"] == "ManifestFile":
        body = s3.get_object(Bucket=bucket, Key=prefix)["Body"].read()
        entries = json.loads(body)
        if not entries or not isinstance(entries[0], dict) or "prefix" not in entries[0]:
            raise ValueError(f"{s3_input['S3Uri']}: a manifest file starts with {{'prefix': ...}}")
        base_bucket, base_key = split_s3_uri(entries[0]["prefix"])
        return [
            InputObject(base_bucket, f"{base_key}{relative}", relative) for relative in entries[1:]
        ]
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # "folder" placeholder objects
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            objects.append(InputObject(bucket, key, relative))
    return sorted(objects, key=lambda item: item.key)


def shard_objects(objects: list[InputObject], count: int) -> list[list[InputObject]]:
    """ShardedByS3Key: each of `count` instances gets about 1/count of the objects.

    SageMaker documents only that; here instance i gets the i-th contiguous run of the
    key-ordered list (sizes differ by at most one). The entry point does not depend on which
    objects land where: every record is keyed by photo and merged by key.
    """
    total = len(objects)
    return [objects[i * total // count : (i + 1) * total // count] for i in range(count)]


def remap(local_path: str, opt_ml: Path) -> Path:
    """/opt/ml/... inside the container -> the simulated instance's folder."""
    if not local_path.startswith(OPT_ML_PREFIX):
        raise ValueError(f"LocalPath must be under /opt/ml/, got {local_path!r}")
    return opt_ml / local_path[len(OPT_ML_PREFIX) :]


def _upload_folder(s3: Any, folder: Path, uri: str) -> int:
    bucket, prefix = split_s3_uri(uri)
    uploaded = 0
    if not folder.is_dir():
        return 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            relative = path.relative_to(folder).as_posix()
            s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{relative}")
            uploaded += 1
    return uploaded


def run_processing_job(
    request: dict[str, Any],
    *,
    s3: Any,
    instance_count: int | None = None,
    engine: FaceEngine | None = None,
    work_dir: Path | None = None,
    report: Report = print,
) -> LocalJobResult:
    """Run a CreateProcessingJob request here, one simulated instance after the other.

    `engine` (a FaceEngine) is shared by the simulated instances so the models load once;
    each instance still runs the same entry point (`processing.main`) a container would.
    """
    started = time.monotonic()
    name = request["ProcessingJobName"]
    cluster = request["ProcessingResources"]["ClusterConfig"]
    count = instance_count or int(cluster["InstanceCount"])
    hosts = [f"algo-{number}" for number in range(1, count + 1)]
    result = LocalJobResult(job_name=name, status="Completed")
    arguments = list(request.get("AppSpecification", {}).get("ContainerArguments", []))

    # Which objects go to which host, input by input.
    placements: list[tuple[dict[str, Any], list[list[InputObject]]]] = []
    for processing_input in request.get("ProcessingInputs", []):
        s3_input = processing_input.get("S3Input")
        if s3_input is None:
            continue
        objects = list_input_objects(s3, s3_input)
        if s3_input.get("S3DataDistributionType") == "ShardedByS3Key":
            placements.append((s3_input, shard_objects(objects, count)))
        else:
            placements.append((s3_input, [objects] * count))

    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=work_dir) as temporary:
        for number, host in enumerate(hosts):
            opt_ml = Path(temporary) / host / "opt" / "ml"
            config = opt_ml / "config"
            config.mkdir(parents=True)
            (config / "resourceconfig.json").write_text(
                json.dumps({"current_host": host, "hosts": hosts})
            )
            job_config = {**request, "ProcessingResources": {"ClusterConfig": {**cluster}}}
            job_config["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = count
            (config / "processingjobconfig.json").write_text(json.dumps(job_config, default=str))
            downloaded = 0
            for s3_input, shards in placements:
                folder = remap(s3_input["LocalPath"], opt_ml)
                folder.mkdir(parents=True, exist_ok=True)
                for item in shards[number]:
                    target = folder / item.relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(item.bucket, item.key, str(target))
                    downloaded += 1
            result.downloaded[host] = downloaded
            outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
            for output in outputs:
                remap(output["S3Output"]["LocalPath"], opt_ml).mkdir(parents=True, exist_ok=True)
            report(f"{host}: {downloaded} input objects, running the entry point")

            def capture(line: str, _host: str = host) -> None:
                report(f"[{_host}] {line}")

            status = processing.main(
                [*arguments, "--opt-ml", str(opt_ml)], engine=engine, report=capture
            )
            if status != 0:
                message_file = opt_ml / "output" / "message"
                result.status = "Failed"
                result.exit_message = (
                    message_file.read_text("utf-8", "replace") if message_file.is_file() else ""
                )
                result.failure_reason = (
                    f"AlgorithmError: {result.exit_message or 'see the job logs'} "
                    f"(exit code {status} on {host})"
                )
                break
            summary = opt_ml / processing.SHARDS_OUTPUT / f"part-{host}.json"
            if summary.is_file():
                result.instances.append(json.loads(summary.read_text()))
            for output in outputs:
                folder = remap(output["S3Output"]["LocalPath"], opt_ml)
                _upload_folder(s3, folder, output["S3Output"]["S3Uri"])
    result.seconds = time.monotonic() - started
    return result
