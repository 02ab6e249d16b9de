"""`photosearch aws ...`: provision, status, teardown, upload.

Registered on the main CLI with `main.add_command(aws)`. boto3 is imported only when a command
runs, so the rest of the CLI neither needs the `aws` extra nor pays for importing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

DEFAULT_NAME_PREFIX = "photosearch"  # = photosearch.aws.stack.DEFAULT_NAME_PREFIX


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def note(line: str) -> None:
    click.echo(line, err=True)


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
            on_event=note,
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
    """The stack's status and outputs (bucket names, role ARNs). Exit status 1 if there is none."""
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
                on_event=note,
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
    sys.exit(1 if report.failed else 0)
