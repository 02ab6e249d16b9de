"""SageMaker control plane against moto, the model package, and the cost estimate.

moto's SageMaker runs nothing: here it only checks request shapes (botocore also validates
every request against the real API model before sending it) and stores what it was sent,
which the tests read back. What the job's inputs and outputs touch is also checked against
the SageMaker role of infra/photosearch.yaml. The package is built for real and its inference
and processing entry points run from the unpacked archive in a separate Python process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator

import aws_server
import pytest
from aws_server import (
    REGION,
    TemplateResolver,
    as_list,
    load_template,
    point_boto_at,
    policy_decision,
)
from click.testing import CliRunner

boto3 = pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")

from botocore.exceptions import ClientError  # noqa: E402

import photosearch  # noqa: E402
from photosearch.aws import (  # noqa: E402
    cost,
    endpoint,
    jobs,
    package,
    processing,
    sagemaker_common,
    stack,
)
from photosearch.aws.clients import make_client, make_session  # noqa: E402
from photosearch.cli.aws import aws  # noqa: E402
from photosearch.faces.engine import FaceEngine  # noqa: E402
from photosearch.faces.models import registry  # noqa: E402

# moto's CloudFormation skips what it cannot model (bucket policies, groups): expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")

moto_endpoint = aws_server.moto_endpoint

ACCOUNT = "123456789012"
LFW = "multires/lfw_funneled_250_vs_150"


@pytest.fixture(scope="module")
def provisioned(moto_endpoint: str, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The project's stack in moto (buckets, roles); its outputs."""
    with pytest.MonkeyPatch.context() as patch:
        aws_server.reset_moto(moto_endpoint)
        point_boto_at(patch, moto_endpoint, tmp_path_factory.mktemp("aws"))
        cloudformation = make_client(make_session(), "cloudformation")
        result = stack.provision(cloudformation, poll_seconds=0.05)
        yield result.stack.outputs


def sagemaker_role_statements() -> list[dict]:
    role = TemplateResolver(load_template()).resource("SageMakerExecutionRole")["Properties"]
    return [
        statement
        for policy in role["Policies"]
        for statement in as_list(policy["PolicyDocument"]["Statement"])
    ]


def object_arn(uri: str) -> str:
    return "arn:aws:s3:::" + uri.removeprefix("s3://")


def capture(client, operation: str) -> list[dict]:
    """The exact parameters of each `operation` call the client sends."""
    sent: list[dict] = []

    def keep(params, **kwargs) -> None:
        sent.append(json.loads(json.dumps(params, default=str)))

    client.meta.events.register(f"provide-client-params.sagemaker.{operation}", keep)
    return sent


# ----------------------------------------------------------------------------------------------
# The indexing job


def test_processing_job_request_shards_the_planned_photos(provisioned, shared_data) -> None:
    session = make_session()
    s3 = make_client(session, "s3")
    album_bucket = provisioned["AlbumBucketName"]
    embeddings = provisioned["EmbeddingsBucketName"]
    for key in ("Rob_Lowe_0001_250px.jpg", "Teresa_Williams_0001_150px.jpg"):
        s3.upload_file(str(shared_data / "photos" / LFW / key), album_bucket, f"album/{key}")
    client = make_client(session, "sagemaker")
    sent = capture(client, "CreateProcessingJob")
    index = f"s3://{embeddings}/indexes/family"
    package_uri = f"s3://{provisioned['ArtifactsBucketName']}/packages/m/v/model.tar.gz"
    lines: list[str] = []

    run = jobs.run_index_job(
        f"s3://{album_bucket}/album",
        index,
        s3=s3,
        region=REGION,
        job_name="photosearch-index-shape",
        sagemaker=client,
        role_arn=provisioned["SageMakerExecutionRoleArn"],
        package_uri=package_uri,
        instances=3,
        instance_type="ml.g4dn.xlarge",
        report=lines.append,
        poll_seconds=0,
        keep_job_files=True,
    )

    (request,) = sent
    assert request["RoleArn"] == provisioned["SageMakerExecutionRoleArn"]
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 3,
        "InstanceType": "ml.g4dn.xlarge",
        "VolumeSizeInGB": jobs.DEFAULT_VOLUME_GB,
    }
    app = request["AppSpecification"]
    assert app["ImageUri"] == sagemaker_common.default_image_uri(REGION, gpu=True)
    assert "-gpu-" in app["ImageUri"] and app["ImageUri"].startswith("763104351884.dkr.ecr.")
    assert app["ContainerEntrypoint"][:2] == ["/bin/bash", "-c"]
    assert "python3 -m photosearch.aws.processing" in app["ContainerEntrypoint"][2]
    inputs = {item["InputName"]: item["S3Input"] for item in request["ProcessingInputs"]}
    job_root = f"{index}/_jobs/photosearch-index-shape"
    assert inputs["album"] == {
        "S3Uri": f"{job_root}/input/album.manifest",
        "LocalPath": "/opt/ml/processing/input/album",
        "S3DataType": "ManifestFile",
        "S3InputMode": "File",
        "S3DataDistributionType": "ShardedByS3Key",
    }
    assert inputs["plan"]["S3DataDistributionType"] == "FullyReplicated"
    assert inputs["package"]["S3Uri"] == package_uri
    outputs = {
        item["OutputName"]: item["S3Output"]
        for item in request["ProcessingOutputConfig"]["Outputs"]
    }
    assert outputs["shards"]["S3Uri"] == f"{job_root}/output/shards"
    assert outputs["shards"]["S3UploadMode"] == "EndOfJob"
    assert outputs["progress"]["S3UploadMode"] == "Continuous"
    # moto kept what it was sent.
    stored = client.describe_processing_job(ProcessingJobName="photosearch-index-shape")
    assert stored["RoleArn"] == request["RoleArn"]
    assert stored["ProcessingInputs"] == request["ProcessingInputs"]
    # The manifest file names exactly the planned photos under the album prefix.
    manifest = json.loads(
        s3.get_object(
            Bucket=embeddings,
            Key="indexes/family/_jobs/photosearch-index-shape/input/album.manifest",
        )["Body"].read()
    )
    assert manifest == [
        {"prefix": f"s3://{album_bucket}/album/"},
        "Rob_Lowe_0001_250px.jpg",
        "Teresa_Williams_0001_150px.jpg",
    ]
    plan = processing.JobPlan.from_json(
        json.loads(
            s3.get_object(Bucket=embeddings, Key=inputs["plan"]["S3Uri"].split("/", 3)[3])[
                "Body"
            ].read()
        )
    )
    assert plan.model_id == FaceEngine(device="cpu").model_id
    assert plan.detection_side == FaceEngine(device="cpu").detection_side  # every instance's
    assert processing.JobPlan.from_json(plan.to_json()) == plan
    assert sorted(plan.photos) == manifest[1:]
    # moto ran nothing: the job "completed" without results, so nothing was merged.
    assert run.status == "Completed" and run.merge.merged == 0
    assert run.merge.missing == manifest[1:]
    assert any("2 planned photos have no result" in line for line in lines)
    # The SageMaker role may read every input and write every output of the job.
    role = sagemaker_role_statements()
    for uri in (inputs["album"]["S3Uri"], inputs["plan"]["S3Uri"], package_uri):
        assert policy_decision(role, "s3:GetObject", object_arn(uri)) == "allow", uri
    for key in manifest[1:]:
        photo = f"s3://{album_bucket}/album/{key}"
        assert policy_decision(role, "s3:GetObject", object_arn(photo)) == "allow"
    for output in outputs.values():
        part = f"{output['S3Uri']}/part-algo-1.parquet"
        assert policy_decision(role, "s3:PutObject", object_arn(part)) == "allow", part


def test_cpu_instances_get_the_cpu_image() -> None:
    layout = processing.JobLayout("s3://e/i", "job")
    request = jobs.processing_job_request(
        job_name="job",
        role_arn="arn:aws:iam::123456789012:role/r",
        image_uri=sagemaker_common.default_image_uri(
            "eu-west-1", gpu=sagemaker_common.is_gpu_instance("ml.m5.xlarge")
        ),
        layout=layout,
        package_uri=None,
        instance_count=2,
        instance_type="ml.m5.xlarge",
    )
    assert "-cpu-" in request["AppSpecification"]["ImageUri"]
    assert [item["InputName"] for item in request["ProcessingInputs"]] == ["album", "plan"]
    is_gpu = sagemaker_common.is_gpu_instance
    assert is_gpu("ml.p3.2xlarge") and not is_gpu("ml.c5.xlarge")


# ----------------------------------------------------------------------------------------------
# The endpoint


@pytest.mark.parametrize("mode", endpoint.MODES)
def test_deploy_and_undeploy_each_mode(provisioned, mode) -> None:
    session = make_session()
    client = make_client(session, "sagemaker")
    scaling = make_client(session, "application-autoscaling")
    alarms = make_client(session, "cloudwatch")
    name = f"photosearch-{mode}"
    index = f"s3://{provisioned['EmbeddingsBucketName']}/indexes/family"
    package_uri = f"s3://{provisioned['ArtifactsBucketName']}/packages/m/v/model.tar.gz"
    async_uri = f"s3://{provisioned['EmbeddingsBucketName']}/async/{name}"

    deployment = endpoint.deploy(
        client,
        endpoint_name=name,
        mode=mode,
        role_arn=provisioned["SageMakerExecutionRoleArn"],
        package_uri=package_uri,
        index_uri=index,
        region=REGION,
        async_output_uri=async_uri,
        autoscaling=scaling,
        cloudwatch=alarms,
        poll_seconds=0,
    )

    assert (deployment.action, deployment.status) == ("created", "InService")
    model = client.describe_model(ModelName=deployment.model_name)
    assert model["ExecutionRoleArn"] == provisioned["SageMakerExecutionRoleArn"]
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == package_uri
    assert container["Image"] == sagemaker_common.default_image_uri(
        REGION, gpu=mode != "serverless"
    )
    environment = container["Environment"]
    assert environment["PHOTOSEARCH_INDEX"] == index
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    limit = 4 * 1024 * 1024 if mode == "serverless" else 6 * 1024 * 1024
    assert environment["PHOTOSEARCH_MAX_REQUEST_BYTES"] == str(limit)
    config = client.describe_endpoint_config(EndpointConfigName=deployment.config_name)
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == deployment.model_name
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    if mode == "serverless":
        assert variant["ServerlessConfig"] == {"MemorySizeInMB": 6144, "MaxConcurrency": 2}
        assert "InstanceType" not in variant and "AsyncInferenceConfig" not in config
    else:
        assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g4dn.xlarge", 1)
        assert "ServerlessConfig" not in variant
    if mode == "async":
        output = config["AsyncInferenceConfig"]["OutputConfig"]
        assert output["S3OutputPath"] == f"{async_uri}/output"
        role = sagemaker_role_statements()  # the endpoint writes its answers there
        assert (
            policy_decision(role, "s3:PutObject", object_arn(f"{async_uri}/output/a.out"))
            == "allow"
        )
        (target,) = [t for t in targets if t["ResourceId"] == f"endpoint/{name}/variant/AllTraffic"]
        assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 1)  # scales to zero
        (alarm,) = alarms.describe_alarms(AlarmNames=[f"{name}-backlog-without-capacity"])[
            "MetricAlarms"
        ]
        assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["AlarmActions"]
    else:
        assert not [t for t in targets if name in t["ResourceId"]]
        assert "AsyncInferenceConfig" not in config

    deleted = endpoint.undeploy(client, name, autoscaling=scaling, cloudwatch=alarms)

    assert deleted == [
        f"endpoint {name}",
        f"endpoint config {deployment.config_name}",
        f"model {deployment.model_name}",
    ]
    for call, argument in (
        (client.describe_endpoint, {"EndpointName": name}),
        (client.describe_endpoint_config, {"EndpointConfigName": deployment.config_name}),
        (client.describe_model, {"ModelName": deployment.model_name}),
    ):
        with pytest.raises(ClientError):
            call(**argument)
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert not [t for t in targets if name in t["ResourceId"]]


def test_cli_deploy_and_undeploy_use_the_stack(provisioned) -> None:
    index = f"s3://{provisioned['EmbeddingsBucketName']}/indexes/family"
    package_uri = f"s3://{provisioned['ArtifactsBucketName']}/packages/m/v/model.tar.gz"
    runner = CliRunner()

    result = runner.invoke(
        aws,
        [
            "deploy",
            "--mode",
            "serverless",
            "--index",
            index,
            "--package-uri",
            package_uri,
            "--json",
        ],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    deployment = json.loads(result.stdout)
    assert deployment["endpoint"] == "photosearch-search"  # invocable by the app role
    client = make_client(make_session(), "sagemaker")
    model = client.describe_model(ModelName=deployment["model"])
    assert model["ExecutionRoleArn"] == provisioned["SageMakerExecutionRoleArn"]
    result = runner.invoke(aws, ["undeploy"], catch_exceptions=False)
    assert result.exit_code == 0 and "endpoint photosearch-search" in result.stdout
    result = runner.invoke(aws, ["undeploy"])
    assert result.exit_code == 2
    assert "no endpoint named 'photosearch-search': nothing to undeploy" in result.output


# ----------------------------------------------------------------------------------------------
# The model package


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> package.PackageInfo:
    target = tmp_path_factory.mktemp("package") / "model.tar.gz"
    return package.build_package(target, compresslevel=1)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_package_holds_weights_code_and_requirements(built) -> None:
    with tarfile.open(built.path, "r:gz") as archive:
        members = {member.name: member for member in archive.getmembers() if member.isfile()}
        manifest = json.loads(archive.extractfile(package.MANIFEST_NAME).read())
        contents = {name: archive.extractfile(name).read() for name in members}
    assert manifest["model_id"] == built.model_id == FaceEngine(device="cpu").model_id
    assert manifest["package_version"] == built.package_version
    assert built.package_version.startswith(f"{photosearch.__version__}-")
    # Every file is listed with its checksum, and the version is a digest of that list.
    assert set(manifest["files"]) == set(members) - {package.MANIFEST_NAME}
    for name, digest in manifest["files"].items():
        assert _sha256(contents[name]) == digest, name
    listing = "".join(f"{name}\0{manifest['files'][name]}\n" for name in sorted(manifest["files"]))
    assert built.package_version.endswith(_sha256(listing.encode())[:12])
    assert all(member.mtime == 0 and member.uid == 0 for member in members.values())
    # The pinned weight files, and their parsed arrays under the registry's cache names.
    for spec in registry.MODELS.values():
        assert _sha256(contents[f"models/{spec.filename}"]) == spec.sha256
    for key, _, version in package._parsers():
        assert f"cache/{key}-{registry.MODELS[key].sha256[:16]}-p{version}.npz" in members
    # Code: the entry points, the package (not the web app), requirements without torch.
    assert b"from photosearch.aws.inference import" in contents["code/inference.py"]
    assert b"from photosearch.aws.processing import main" in contents["code/processing.py"]
    assert "code/photosearch/aws/inference.py" in members
    assert "code/photosearch/faces/engine.py" in members
    assert not [name for name in members if name.startswith("code/photosearch/app/")]
    requirements = contents["code/requirements.txt"].decode().split()
    assert any(line.startswith("pyarrow") for line in requirements)
    assert not [line for line in requirements if line.startswith(("torch", "face_recognition"))]


def test_package_upload_is_versioned_and_idempotent(provisioned, built) -> None:
    s3 = make_client(make_session(), "s3")
    bucket = provisioned["ArtifactsBucketName"]

    first = package.upload_package(s3, built, bucket)
    again = package.upload_package(s3, built, bucket)

    slug = package.model_slug(built.model_id)
    assert first.uri == f"s3://{bucket}/packages/{slug}/{built.package_version}/model.tar.gz"
    assert (first.uploaded, again.uploaded, again.uri) == (True, False, first.uri)
    head = s3.head_object(Bucket=bucket, Key=first.uri.split("/", 3)[3])
    assert head["ContentLength"] == built.size
    assert head["Metadata"]["package-version"] == built.package_version


ENTRY_POINTS = """
import json, runpy, sys
from pathlib import Path
model_dir, opt_ml, reference = sys.argv[1:4]
import inference, photosearch
from photosearch.faces.models import registry
assert photosearch.__file__.startswith(model_dir), photosearch.__file__
model = inference.model_fn(model_dir)
request = inference.input_fn(Path(reference).read_bytes(), "image/jpeg")
answer = json.loads(inference.output_fn(inference.predict_fn(request, model), "application/json"))
sys.argv = ["processing.py", "--opt-ml", opt_ml, "--device", "cpu"]
try:
    runpy.run_path(f"{model_dir}/code/processing.py", run_name="__main__")
except SystemExit as exit:
    answer["processing_exit"] = exit.code
answer["models_dir"] = str(registry.models_dir())
print(json.dumps(answer))
"""


def test_package_entry_points_run_from_the_unpacked_archive(built, shared_data, tmp_path) -> None:
    """As the containers run them: code/ first on the path, weights from the archive."""
    from photosearch.index.indexer import index_album

    model_dir = tmp_path / "model"
    package.unpack_package(built.path, model_dir)
    album = tmp_path / "album"
    album.mkdir()
    (album / "rob.jpg").write_bytes(
        (shared_data / "photos" / LFW / "Rob_Lowe_0002_150px.jpg").read_bytes()
    )
    index_album(album, tmp_path / "index", device="cpu", report=lambda line: None)
    opt_ml = tmp_path / "opt_ml"  # a processing instance that received no photos
    (opt_ml / "config").mkdir(parents=True)
    (opt_ml / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    plan = processing.JobPlan("job", "s3://a/b", "s3://c/d", built.model_id, 2000, "auto", True, {})
    (opt_ml / processing.PLAN_INPUT).mkdir(parents=True)
    (opt_ml / processing.PLAN_INPUT / "plan.json").write_text(json.dumps(plan.to_json()))
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("PHOTOSEARCH_")
    }
    environment.update(
        PYTHONPATH=str(model_dir / "code"),
        PHOTOSEARCH_INDEX=str(tmp_path / "index"),
    )
    reference = shared_data / "photos" / LFW / "Rob_Lowe_0001_150px.jpg"

    result = subprocess.run(
        [sys.executable, "-c", ENTRY_POINTS, str(model_dir), str(opt_ml), str(reference)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["models_dir"] == str(model_dir / "models")
    assert [match["photo"] for match in answer["matches"]] == ["rob.jpg"]
    assert answer["processing_exit"] == 0
    assert (opt_ml / processing.SHARDS_OUTPUT / "part-algo-1.parquet").is_file()


# ----------------------------------------------------------------------------------------------
# Cost


def test_cost_command_prices_each_choice() -> None:
    prices = cost.load_prices()
    result = CliRunner().invoke(
        aws,
        ["cost", "--photos", "20000", "--searches", "70", "--days", "3", "--json"],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)
    assert estimate["prices_date"] == prices["date"]
    options = {option["option"].split(" (")[0]: option for option in estimate["options"]}
    serverless = options["SageMaker: GPU indexing job + serverless search"]
    asynchronous = options["SageMaker: GPU indexing job + async GPU endpoint scaled to zero"]
    realtime = options["SageMaker: GPU indexing job + realtime GPU endpoint"]
    rekognition = options["AWS Rekognition"]
    gpu_hour = prices["sagemaker"]["hosting_per_hour"]["ml.g4dn.xlarge"]
    assert realtime["lines"][1]["dollars"] == pytest.approx(3 * 24 * gpu_hour, abs=1e-3)
    assert rekognition["lines"][0]["dollars"] == pytest.approx(20000 * 0.001)
    for option in estimate["options"]:
        assert option["total"] == pytest.approx(
            sum(line["dollars"] for line in option["lines"]), abs=1e-3
        )
    # Sparse use: paying per request beats keeping a GPU, and beats Rekognition's per photo fee.
    assert serverless["total"] < asynchronous["total"] < realtime["total"]
    assert serverless["total"] < rekognition["total"]
    text = CliRunner().invoke(aws, ["cost", "--photos", "20000", "--searches", "70", "--days", "3"])
    assert "<- cheapest" in text.output and prices["date"] in text.output
    assert "estimate, not measured" in text.output  # unmeasured figures say so


def test_cost_adds_the_app_hosting_line() -> None:
    from photosearch.aws.hosting_cost import hosting_lines, hosting_rates

    prices = cost.load_prices()
    result = CliRunner().invoke(
        aws, ["cost", "--photos", "20000", "--searches", "70", "--days", "3", "--json"]
    )
    estimate = json.loads(result.stdout)
    paused, always = hosting_lines(70, 3, 3, prices)
    rates = hosting_rates(prices)
    table = prices["hosting"]
    # The task bills only while sessions run; the load balancer all 72 hours.
    assert paused[0][1] == pytest.approx(3 * table["hours_per_session"] * rates.task_per_hour)
    assert always[0][1] == pytest.approx(72 * rates.task_per_hour)
    assert paused[1][1] == always[1][1] == pytest.approx(72 * rates.load_balancer_per_hour)
    for option in estimate["options"]:
        (line,) = [li for li in option["lines"] if li["item"].startswith("app hosting")]
        assert line["dollars"] == pytest.approx(sum(d for _, d, _ in paused), abs=1e-3)
    assert rates.running_per_hour > rates.paused_per_hour > 0
    assert any("/h running" in figure for figure in estimate["figures"])
