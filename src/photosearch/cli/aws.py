"""`photosearch aws ...`: provision, status, teardown, upload, package, index, deploy,
undeploy, serve-local, cost: a thin shell over photosearch.aws.

Registered on the main CLI by cli/main.py. boto3 is imported only when a command runs, so the
rest of the CLI neither needs the `aws` extra nor pays for importing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

from photosearch.cli import options
from photosearch.cli.options import max_side_option, say

__all__ = ["aws"]

DEFAULT_NAME_PREFIX = "photosearch"  # = photosearch.aws.stack.DEFAULT_NAME_PREFIX
# An AWS call or job that failed: nothing done, exit 2 as every command's fail() (README, "Exit
# status"); a run that went on past failed photos (upload) exits EXIT_PARTIAL.
EXIT_AWS_FAILED = options.EXIT_BAD_INPUT


def fail(message: str) -> NoReturn:
    options.fail(message, status=EXIT_AWS_FAILED)


def name_prefix_option(function):
    return click.option(
        "--name-prefix",
        default=DEFAULT_NAME_PREFIX,
        show_default=True,
        help="Stack name and prefix of every resource name (lowercase, 3-20 characters).",
    )(function)


def region_option(function):
    return click.option(
        "--region",
        default=None,
        help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile's region).",
    )(function)


def json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(function)


def load_aws():
    """The boto3-backed modules, or a one-line error when the `aws` extra is missing."""
    try:
        from photosearch.aws import clients, stack, upload
    except ImportError as exc:
        fail(f"the aws commands need boto3 ({exc}); install with: pip install 'photosearch[aws]'")
    return clients, stack, upload


def parse_parameters(values: tuple[str, ...]) -> dict[str, str]:
    parameters = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--parameter")
        parameters[key] = setting
    return parameters


def print_outputs(outputs: dict[str, str]) -> None:
    width = max((len(key) for key in outputs), default=0)
    for key in sorted(outputs):
        click.echo(f"  {key:<{width}}  {outputs[key]}")


@click.group(name="aws")
def aws() -> None:
    """Photosearch's AWS resources (CloudFormation stack) and album upload to S3.

    Uses the standard AWS configuration: credentials chain, AWS_PROFILE, AWS_REGION,
    AWS_ENDPOINT_URL (e.g. a local moto server), AWS_MAX_ATTEMPTS.
    """


@aws.command()
@name_prefix_option
@region_option
@click.option(
    "--parameter",
    "parameters",
    multiple=True,
    metavar="KEY=VALUE",
    help="A template parameter (repeatable), e.g. AppAssumableFromAccount=true. "
    "Parameters not given keep their current value on update.",
)
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CloudFormation template (default: infra/photosearch.yaml).",
)
@json_option
def provision(name_prefix, region, parameters, template, as_json) -> None:
    """Create the stack, or update it to the template; waits, printing each stack event.

    Running it again with nothing changed is a success that changes nothing.
    """
    clients, stack, _ = load_aws()
    values = parse_parameters(parameters)
    try:
        session = clients.make_session(region)
        cloudformation = clients.make_client(session, "cloudformation")
        result = stack.provision(
            cloudformation,
            name_prefix=name_prefix,
            parameters=values,
            template_body=stack.read_template(template),
            on_event=say,
        )
    except clients.AwsError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({"action": result.action, **result.stack.to_json()}))
        return
    verb = {"created": "created", "updated": "updated", "unchanged": "already up to date"}
    click.echo(f"stack {result.stack.name} ({session.region_name}): {verb[result.action]}")
    print_outputs(result.stack.outputs)


@aws.command()
@name_prefix_option
@region_option
@json_option
def status(name_prefix, region, as_json) -> None:
    """The stack's status and outputs (bucket names, role ARNs). Exit status 2 if there is none."""
    clients, stack, _ = load_aws()
    try:
        session = clients.make_session(region)
        cloudformation = clients.make_client(session, "cloudformation")
        info = stack.require_stack(
            cloudformation, stack.stack_name_for(name_prefix), session.region_name
        )
    except clients.AwsError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(info.to_json()))
        return
    click.echo(f"stack {info.name} ({session.region_name}): {info.status}")
    if info.status_reason:
        click.echo(f"  reason: {info.status_reason}")
    print_outputs(info.outputs)


@aws.command()
@name_prefix_option
@region_option
@click.option(
    "--force",
    is_flag=True,
    help="Also delete every photo, index file and model package in the stack's buckets "
    "(all versions). Without it, buckets holding anything stop the teardown.",
)
def teardown(name_prefix, region, force) -> None:
    """Delete the stack: its buckets, roles and policies."""
    from photosearch.progress import progress_bar

    clients, stack, _ = load_aws()
    try:
        session = clients.make_session(region)
        cloudformation = clients.make_client(session, "cloudformation")
        s3 = clients.make_client(session, "s3")
        with progress_bar("deleting", total=None, disable=not force, unit="objects") as advance:
            contents = stack.teardown(
                cloudformation,
                s3,
                name_prefix,
                session.region_name,
                force=force,
                on_event=say,
                on_deleted=advance,
            )
    except clients.AwsError as exc:
        fail(str(exc))
    emptied = sum(bucket.versions for bucket in contents)
    tail = f", {emptied} object versions deleted" if emptied else ""
    click.echo(f"stack {stack.stack_name_for(name_prefix)} ({session.region_name}): deleted{tail}")


@aws.command()
@click.argument(
    "album_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="ALBUM_DIR"
)
@click.option("--bucket", default=None, help="Upload to the top of this bucket.")
@click.option(
    "--to",
    "destination_url",
    default=None,
    metavar="s3://BUCKET/PREFIX",
    help="Upload under this prefix.",
)
@name_prefix_option
@region_option
@click.option(
    "--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel uploads."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
def upload(
    album_dir, bucket, destination_url, name_prefix, region, workers, no_progress, as_json
) -> None:
    """Upload the photos in ALBUM_DIR (recursively) to S3, keeping their relative paths.

    Without --bucket or --to, the album bucket of the stack named by --name-prefix. Photos
    already there with the same content are skipped, so an interrupted upload resumes by
    running it again. Exit status 1 if any photo failed.
    """
    from photosearch.progress import progress_bar

    clients, stack, uploads = load_aws()
    if bucket and destination_url:
        raise click.UsageError("give --bucket or --to, not both")
    try:
        if destination_url:
            destination = uploads.S3Location.parse(destination_url)
        elif bucket:
            destination = uploads.S3Location(bucket)
        else:
            destination = None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None

    try:
        session = clients.make_session(region)
        if destination is None:
            cloudformation = clients.make_client(session, "cloudformation")
            info = stack.require_stack(
                cloudformation, stack.stack_name_for(name_prefix), session.region_name
            )
            if "AlbumBucketName" not in info.outputs:
                fail(f"stack {info.name} has no AlbumBucketName output; pass --bucket")
            destination = uploads.S3Location(info.outputs["AlbumBucketName"])
        s3 = clients.make_client(session, "s3", mode="adaptive", pool_size=workers + 2)
        uploader = uploads.AlbumUploader(s3, destination, workers=workers)
        photos = uploader.plan(album_dir)
        if not photos:
            suffixes = ", ".join(sorted(uploads.IMAGE_SUFFIXES))
            fail(f"no photos under {album_dir} (looked for {suffixes})")
        present = uploader.existing()  # before the bar: a missing bucket fails here
        with progress_bar(
            "uploading", total=len(photos), disable=no_progress or as_json
        ) as advance:
            report = uploader.run(photos, on_done=advance, present=present)
    except clients.AwsError as exc:
        fail(str(exc))

    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        megabytes = report.bytes_uploaded / 1e6
        click.echo(
            f"{destination}: {len(report.uploaded)} uploaded ({megabytes:.1f} MB), "
            f"{len(report.skipped)} already there, {len(report.failed)} failed"
        )
        for key, reason in sorted(report.failed.items()):
            click.echo(f"error: {key}: {reason}", err=True)
    sys.exit(options.EXIT_PARTIAL if report.failed else options.EXIT_OK)


# ----------------------------------------------------------------------------------------------
# SageMaker: package, index, deploy, undeploy, serve-local, cost (docs/sagemaker.md)


def load_sagemaker():
    """The modules every SageMaker command uses (boto3-backed), or a one-line error without the
    `aws` extra. Each command then imports the SageMaker modules it needs (jobs, endpoint,
    endpoint_client, sagemaker_common): they import `clients`, so boto3 is there by then."""
    try:
        from photosearch.aws import clients, package, stack
    except ImportError as exc:
        fail(f"the aws commands need boto3 ({exc}); install with: pip install 'photosearch[aws]'")
    return clients, package, stack


def stack_outputs(clients, stack, session, name_prefix: str, *needed: str) -> dict[str, str]:
    """The stack's outputs, failing with one line when one of `needed` is missing."""
    cloudformation = clients.make_client(session, "cloudformation")
    info = stack.require_stack(
        cloudformation, stack.stack_name_for(name_prefix), session.region_name
    )
    missing = [name for name in needed if name not in info.outputs]
    if missing:
        names = ", ".join(missing)
        fail(f"stack {info.name} has no {names} output (run `photosearch aws provision`)")
    return info.outputs


def ensure_package(clients, package, session, bucket: str, output: Path | None = None):
    """Build the model package and upload it unless the same one is there: its s3:// URI."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="photosearch-package-") as temporary:
        target = output or Path(temporary) / "model.tar.gz"
        say("building the model package (weights + code)")
        built = package.build_package(target)
        s3 = clients.make_client(session, "s3")
        uploaded = package.upload_package(s3, built, bucket)
    verb = "uploaded" if uploaded.uploaded else "already there"
    say(f"model package {built.package_version} ({built.size / 1e6:.1f} MB): {verb} {uploaded.uri}")
    return built, uploaded


@aws.command(name="package")
@name_prefix_option
@region_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also keep the archive here (default: a temporary file).",
)
@click.option("--bucket", default=None, help="Upload here instead of the stack's artifacts bucket.")
@click.option("--no-upload", is_flag=True, help="Only build (needs --output).")
@json_option
def package_command(name_prefix, region, output, bucket, no_upload, as_json) -> None:
    """Build model.tar.gz (parsed weights, inference and processing code, requirements) and
    upload it to the artifacts bucket under packages/<model id>/<package version>/.

    The version is photosearch's plus a digest of the content: unchanged code and weights give
    the same key, and the upload is skipped.
    """
    clients, package, stack = load_sagemaker()
    if no_upload:
        if output is None:
            raise click.UsageError("--no-upload needs --output")
        built = package.build_package(output)
        payload = built.to_json()
        click.echo(json.dumps(payload) if as_json else f"{output}: {built.package_version}")
        return
    try:
        session = clients.make_session(region)
        if bucket is None:
            bucket = stack_outputs(clients, stack, session, name_prefix, "ArtifactsBucketName")[
                "ArtifactsBucketName"
            ]
        built, uploaded = ensure_package(clients, package, session, bucket, output)
    except clients.AwsError as exc:
        fail(str(exc))
    if as_json:
        click.echo(
            json.dumps({**built.to_json(), "uri": uploaded.uri, "uploaded": uploaded.uploaded})
        )
    else:
        click.echo(uploaded.uri)


@aws.command(name="index")
@click.argument("album_url", metavar="ALBUM_S3_URL")
@click.option("--index", "index_url", required=True, metavar="INDEX_S3_URL", help="The index.")
@click.option(
    "--instances",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Processing instances; the photos are sharded over them by key.",
)
@click.option(
    "--instance-type",
    default="ml.g4dn.xlarge",
    show_default=True,
    help="Processing instance type (ml.g*/ml.p*: GPU image; others: CPU image).",
)
@click.option(
    "--local-instances",
    type=click.IntRange(1, 64),
    default=None,
    help="Run the job here instead, as this many simulated instances (no SageMaker needed; "
    "S3 is whatever the AWS variables name).",
)
@click.option("--package-uri", default=None, help="Model package to run (default: build/upload).")
@click.option("--image-uri", default=None, help="Container image (default: AWS PyTorch image).")
@click.option("--role-arn", default=None, help="Execution role (default: the stack's).")
@click.option("--job-name", default=None, help="Default: <prefix>-index-<UTC time>.")
@max_side_option
@click.option("--retry-errors", is_flag=True, help="Send unreadable photos again.")
@click.option(
    "--max-runtime-hours",
    type=options.FiniteFloat(0.1, 120),
    default=24,
    show_default=True,
    help="SageMaker stops the job after this long.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@name_prefix_option
@region_option
@json_option
def index_command(
    album_url,
    index_url,
    instances,
    instance_type,
    local_instances,
    package_uri,
    image_uri,
    role_arn,
    job_name,
    max_side,
    retry_errors,
    max_runtime_hours,
    no_progress,
    name_prefix,
    region,
    as_json,
) -> None:
    """Index an S3 album with a SageMaker Processing job: only photos not indexed yet are sent,
    sharded over the instances; the results are merged into the index at INDEX_S3_URL.

    Shows the job's status and progress; a failed job prints its failure reason and where its
    logs are, with exit status 2.
    """
    from photosearch.progress import progress_bar

    clients, package, stack = load_sagemaker()
    from photosearch.aws import jobs, sagemaker_common

    name = job_name or sagemaker_common.timestamped(f"{name_prefix}-index")
    try:
        session = clients.make_session(region)
        s3 = clients.make_client(session, "s3")
        client = None
        if not local_instances:
            outputs = stack_outputs(
                clients,
                stack,
                session,
                name_prefix,
                "SageMakerExecutionRoleArn",
                "ArtifactsBucketName",
            )
            role_arn = role_arn or outputs["SageMakerExecutionRoleArn"]
            if package_uri is None:
                package_uri = ensure_package(
                    clients, package, session, outputs["ArtifactsBucketName"]
                )[1].uri
            client = clients.make_client(session, "sagemaker")
        with progress_bar(
            "indexing", total=None, disable=no_progress or as_json or bool(local_instances)
        ) as advance:
            shown = [0]

            def on_progress(done: int, total: int) -> None:
                if done > shown[0]:
                    advance(done - shown[0])
                    shown[0] = done

            run = jobs.run_index_job(
                album_url,
                index_url,
                s3=s3,
                region=session.region_name,
                job_name=name,
                sagemaker=client,
                role_arn=role_arn or "",
                package_uri=package_uri,
                image_uri=image_uri,
                instances=instances,
                instance_type=instance_type,
                local_instances=local_instances,
                max_side=max_side,
                retry_errors=retry_errors,
                max_runtime_seconds=int(max_runtime_hours * 3600),
                report=say,
                on_progress=on_progress,
            )
    except clients.AwsError as exc:
        fail(str(exc))
    except Exception as exc:  # album/index problems (AlbumError, IndexStoreError): one line
        from photosearch.index.album import AlbumError
        from photosearch.index.store import IndexStoreError

        if isinstance(exc, AlbumError | IndexStoreError | ValueError):
            fail(str(exc))
        raise
    if as_json:
        click.echo(json.dumps(run.to_json()))
        return
    merge = run.merge
    click.echo(
        f"{run.listed} photos in the album: {run.planned} sent to job {run.job_name} "
        f"({run.status.lower()}), {run.unchanged} unchanged; merged {merge.merged} "
        f"({merge.faces} faces, {merge.unreadable} unreadable), {merge.deleted} deleted, "
        f"{len(merge.missing)} without result, in {run.seconds:.1f} s"
    )


def endpoint_name_option(function):
    return click.option(
        "--endpoint-name",
        default=None,
        help="Endpoint name [default: <name prefix>-search; the app role may only invoke "
        "endpoints named <name prefix>-*].",
    )(function)


@aws.command()
@click.option(
    "--mode",
    type=click.Choice(["serverless", "async", "realtime-gpu"]),
    required=True,
    help="serverless: CPU, billed per request, nothing idle. async: GPU, scales to zero "
    "between sessions. realtime-gpu: GPU, billed every hour it exists.",
)
@click.option("--index", "index_url", required=True, metavar="INDEX_S3_URL", help="The index.")
@endpoint_name_option
@click.option(
    "--instance-type", default="ml.g4dn.xlarge", show_default=True, help="async/realtime."
)
@click.option(
    "--memory-mb",
    type=click.Choice(["1024", "2048", "3072", "4096", "5120", "6144"]),
    default="6144",
    show_default=True,
    help="Serverless memory.",
)
@click.option("--max-concurrency", type=click.IntRange(1, 200), default=None, help="Per endpoint.")
@click.option("--package-uri", default=None, help="Model package (default: build/upload).")
@click.option("--image-uri", default=None, help="Container image (default: AWS PyTorch image).")
@click.option("--role-arn", default=None, help="Execution role (default: the stack's).")
@click.option("--no-wait", is_flag=True, help="Return once the endpoint is being created.")
@name_prefix_option
@region_option
@json_option
def deploy(
    mode,
    index_url,
    endpoint_name,
    instance_type,
    memory_mb,
    max_concurrency,
    package_uri,
    image_uri,
    role_arn,
    no_wait,
    name_prefix,
    region,
    as_json,
) -> None:
    """Deploy (or switch) the search endpoint for the index at INDEX_S3_URL."""
    clients, package, stack = load_sagemaker()
    from photosearch.aws import endpoint, endpoint_client, sagemaker_common

    name = endpoint_name or f"{name_prefix}-search"
    if not name.startswith(f"{name_prefix}-"):
        say(f"warning: the app role may only invoke endpoints named {name_prefix}-*")
    try:
        session = clients.make_session(region)
        outputs = stack_outputs(
            clients,
            stack,
            session,
            name_prefix,
            "SageMakerExecutionRoleArn",
            "ArtifactsBucketName",
            "EmbeddingsBucketName",
        )
        if package_uri is None:
            package_uri = ensure_package(clients, package, session, outputs["ArtifactsBucketName"])[
                1
            ].uri
        deployment = endpoint.deploy(
            clients.make_client(session, "sagemaker"),
            endpoint_name=name,
            mode=mode,
            role_arn=role_arn or outputs["SageMakerExecutionRoleArn"],
            package_uri=package_uri,
            index_uri=sagemaker_common.require_s3_url(index_url, "the index"),
            region=session.region_name,
            image_uri=image_uri,
            instance_type=instance_type,
            memory_mb=int(memory_mb),
            max_concurrency=max_concurrency,
            async_output_uri=endpoint_client.async_location_for(
                outputs["EmbeddingsBucketName"], name
            ),
            autoscaling=clients.make_client(session, "application-autoscaling"),
            cloudwatch=clients.make_client(session, "cloudwatch"),
            wait=not no_wait,
            on_status=lambda status: say(f"endpoint {name}: {status}"),
        )
    except clients.AwsError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(deployment.to_json()))
        return
    click.echo(f"endpoint {name} ({mode}): {deployment.action}, {deployment.status}")
    if mode == "realtime-gpu":
        click.echo("  billed every hour it exists: `photosearch aws undeploy` when done")


@aws.command()
@endpoint_name_option
@name_prefix_option
@region_option
def undeploy(endpoint_name, name_prefix, region) -> None:
    """Delete the search endpoint, its configuration and model: nothing left to bill."""
    clients, _, _ = load_sagemaker()
    from photosearch.aws import endpoint

    name = endpoint_name or f"{name_prefix}-search"
    try:
        session = clients.make_session(region)
        deleted = endpoint.undeploy(
            clients.make_client(session, "sagemaker"),
            name,
            autoscaling=clients.make_client(session, "application-autoscaling"),
            cloudwatch=clients.make_client(session, "cloudwatch"),
        )
    except clients.AwsError as exc:
        fail(str(exc))
    click.echo(f"deleted {', '.join(deleted)}")


@aws.command(name="serve-local")
@click.option("--index", "index_url", required=True, metavar="INDEX", help="s3://... or a folder.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--endpoint-name", default=None, help="Answer only this runtime endpoint name.")
@click.option(
    "--package",
    "package_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Use this model.tar.gz's weights (as the endpoint would).",
)
def serve_local(index_url, port, host, endpoint_name, package_path) -> None:
    """Serve the endpoint's handler here: GET /ping, POST /invocations, and the runtime API's
    POST /endpoints/NAME/invocations, so boto3's sagemaker-runtime client (and
    `photosearch search --endpoint`) reach it with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME.
    """
    import os
    import tempfile

    from photosearch.aws import inference
    from photosearch.aws.local import LocalEndpoint

    with tempfile.TemporaryDirectory(prefix="photosearch-model-") as model_dir:
        if package_path is not None:
            from photosearch.aws.package import unpack_package

            unpack_package(package_path, Path(model_dir))
        os.environ[inference.INDEX_ENV] = index_url
        try:
            model = inference.model_fn(model_dir if package_path is not None else None)
        except inference.InferenceError as exc:
            fail(exc.message)
        endpoint = LocalEndpoint(model, host=host, port=port, endpoint_name=endpoint_name, log=say)
        say(f"serving {model.location} at {endpoint.url}")
        say(f"  export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={endpoint.url}")
        try:
            endpoint.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            endpoint.server.server_close()
            model.close()


@aws.command()
@click.option("--photos", type=click.IntRange(min=0), required=True, help="Photos in the album.")
@click.option("--searches", type=click.IntRange(min=0), required=True, help="Searches in all.")
@click.option("--days", type=options.FiniteFloat(min=0.01), required=True, help="Over this period.")
@click.option(
    "--sessions",
    type=click.IntRange(min=1),
    default=None,
    help="Bursts of searching (cold starts) [default: one a day].",
)
@click.option("--instances", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--instance-type", default="ml.g4dn.xlarge", show_default=True, help="Indexing.")
@click.option(
    "--gpu-photos-per-second",
    type=options.FiniteFloat(min=0.01),
    default=None,
    help="Indexing throughput of one GPU instance (e.g. from a job's log) instead of the table's.",
)
@json_option
def cost(
    photos, searches, days, sessions, instances, instance_type, gpu_photos_per_second, as_json
):
    """Estimated cost of each deployment choice (and of AWS Rekognition) for this use."""
    from photosearch.aws import cost as costs

    usage = costs.Usage(
        photos=photos,
        searches=searches,
        days=days,
        sessions=sessions or costs.default_sessions(days),
        processing_instance=instance_type,
        instances=instances,
        gpu_photos_per_second=gpu_photos_per_second,
    )
    try:
        result = costs.estimate(usage)
    except (KeyError, ValueError) as exc:
        fail(f"cannot estimate: {exc} (known instance types are in photosearch/aws/prices.json)")
    click.echo(json.dumps(result.to_json()) if as_json else costs.format_estimate(result))
