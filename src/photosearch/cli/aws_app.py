"""`photosearch aws app build | deploy | status | pause | resume | undeploy`: the web app on AWS.

A thin shell over photosearch.aws.app_hosting (the hosting stack, CloudFront, the password
secret) and photosearch.aws.app_image (the container image). Registered on `photosearch aws`
by cli/aws.py.
"""

from __future__ import annotations

import json
import os

import click

from photosearch.cli import options
from photosearch.cli.options import say

__all__ = ["app_group"]

EXIT_AWS_FAILED = 1


def _fail(message: str, status: int = EXIT_AWS_FAILED):
    options.fail(message, status=status)


def _common(function):
    function = click.option(
        "--region", default=None, help="AWS region (default: AWS_REGION / the profile's region)."
    )(function)
    return click.option(
        "--name-prefix",
        default="photosearch",
        show_default=True,
        help="The storage stack's prefix; the app stack is <prefix>-app.",
    )(function)


def _clients(region):
    try:
        from photosearch.aws import clients
    except ImportError as exc:
        _fail(f"the aws commands need boto3 ({exc}); install with: pip install 'photosearch[aws]'")
    session = clients.make_session(region)
    made: dict[str, object] = {}

    def client(service: str):
        if service not in made:
            made[service] = clients.make_client(session, service)
        return made[service]

    return clients, client


def _password() -> str:
    password = os.environ.get("PHOTOSEARCH_APP_PASSWORD")
    if password:
        return password
    if not click.get_text_stream("stdin").isatty():
        _fail("no password: set PHOTOSEARCH_APP_PASSWORD or run this on a terminal", status=2)
    return click.prompt("Owner's password for the app", hide_input=True, confirmation_prompt=True)


def _show(hosting, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(hosting.to_json()))
        return
    click.echo(f"address:   {hosting.address or '(no HTTPS front yet)'}")
    click.echo(f"state:     {hosting.state} ({hosting.running} of {hosting.desired} tasks running)")
    click.echo(f"cost/hour: ${hosting.per_hour:.4f} (USD, list prices; `aws cost` for a use)")


@click.group(name="app")
def app_group() -> None:
    """The web app on AWS: one link for your friends (docs/deploy.md)."""


@app_group.command()
@click.option("--album", required=True, metavar="S3_URL", help="The album (s3://...).")
@click.option("--index", "index_url", required=True, metavar="S3_URL", help="Its index.")
@click.option("--image-uri", default=None, help="Default: the tag `aws app build` pushes.")
@click.option(
    "--flavour",
    type=click.Choice(["full", "slim"]),
    default="full",
    show_default=True,
    help="Which image tag to run: full (engine inside) or slim (needs --endpoint).",
)
@click.option(
    "--endpoint",
    "endpoint_name",
    default=None,
    help="Search through this SageMaker endpoint (e.g. <prefix>-search from `aws deploy`).",
)
@click.option("--domain", default=None, help="Serve on your domain (needs --certificate-arn).")
@click.option("--certificate-arn", default=None, help="ACM certificate for --domain.")
@click.option("--vpc", default=None, help="Default: the default VPC.")
@click.option("--subnet", "subnets", multiple=True, help="Public subnets (default: the VPC's).")
@click.option("--cpu", type=click.Choice(["512", "1024", "2048", "4096"]), default="1024")
@click.option("--memory", type=click.Choice(["2048", "3072", "4096", "8192"]), default="4096")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_common
def deploy(
    album,
    index_url,
    image_uri,
    flavour,
    endpoint_name,
    domain,
    certificate_arn,
    vpc,
    subnets,
    cpu,
    memory,
    as_json,
    name_prefix,
    region,
) -> None:
    """Create or update the app's hosting (Fargate task, load balancer, HTTPS front). The
    owner's password comes from PHOTOSEARCH_APP_PASSWORD or a prompt, into Secrets Manager."""
    if bool(domain) != bool(certificate_arn):
        _fail("--domain and --certificate-arn go together", status=2)
    if flavour == "slim" and not endpoint_name:
        _fail("the slim image has no face engine: give --endpoint", status=2)
    if endpoint_name and not endpoint_name.startswith(f"{name_prefix}-"):
        _fail(f"the app role may only call endpoints named {name_prefix}-*", status=2)
    for name, url in (("--album", album), ("--index", index_url)):
        if not url.startswith("s3://"):
            _fail(f"{name} must be an s3:// URL on AWS, got {url!r}", status=2)
    password = _password()
    clients, client = _clients(region)
    from photosearch.aws import app_hosting

    try:
        hosting = app_hosting.deploy(
            client,
            name_prefix=name_prefix,
            password=password,
            album=album,
            index=index_url,
            image_uri=image_uri,
            flavour=flavour,
            endpoint_name=endpoint_name,
            domain=domain,
            certificate_arn=certificate_arn,
            vpc=vpc,
            subnets=list(subnets) or None,
            cpu=cpu,
            memory=memory,
            on_event=say,
        )
    except clients.AwsError as exc:
        _fail(str(exc))
    _show(hosting, as_json)
    if not as_json and domain:
        click.echo(f"point {domain} (CNAME) at {hosting.load_balancer}")


@app_group.command()
@click.option("--domain", default=None, help="The domain it was deployed on, if any.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_common
def status(domain, as_json, name_prefix, region) -> None:
    """The app's https:// address, its state and what it costs per hour now."""
    clients, client = _clients(region)
    from photosearch.aws import app_hosting

    try:
        hosting = app_hosting.hosting_status(client, name_prefix, domain=domain)
    except clients.AwsError as exc:
        _fail(str(exc))
    if hosting is None:
        _fail(f"the app is not deployed ({app_hosting.hosting_stack_name(name_prefix)})")
    _show(hosting, as_json)


def _set_running(name_prefix, region, running: bool) -> None:
    clients, client = _clients(region)
    from photosearch.aws import app_hosting

    try:
        if app_hosting.hosting_status(client, name_prefix) is None:
            _fail(f"the app is not deployed ({app_hosting.hosting_stack_name(name_prefix)})")
        app_hosting.set_running(client("ecs"), name_prefix, running)
        hosting = app_hosting.hosting_status(client, name_prefix)
    except clients.AwsError as exc:
        _fail(str(exc))
    _show(hosting, False)


@app_group.command()
@_common
def pause(name_prefix, region) -> None:
    """Stop the task for the days between sessions (the load balancer and secret still bill)."""
    _set_running(name_prefix, region, False)


@app_group.command()
@_common
def resume(name_prefix, region) -> None:
    """Start the task again (a minute or two until it answers)."""
    _set_running(name_prefix, region, True)


@app_group.command()
@_common
def undeploy(name_prefix, region) -> None:
    """Delete the HTTPS front, the hosting stack and the password secret: nothing bills."""
    clients, client = _clients(region)
    from photosearch.aws import app_hosting

    try:
        deleted = app_hosting.undeploy(client, name_prefix, on_event=say)
    except clients.AwsError as exc:
        _fail(str(exc))
    click.echo("deleted " + "; ".join(deleted) if deleted else "nothing was deployed")


@app_group.command()
@click.option(
    "--flavour",
    type=click.Choice(["full", "slim"]),
    default="full",
    show_default=True,
    help="full: the face engine inside; slim: no torch.",
)
@click.option("--codebuild", "force_codebuild", is_flag=True, help="Even when Docker runs here.")
@click.option("--no-wait", is_flag=True, help="Return once the CodeBuild build has started.")
@_common
def build(flavour, force_codebuild, no_wait, name_prefix, region) -> None:
    """Build the app image and push it to ECR: with Docker here when an engine runs, else in
    CodeBuild from a source bundle in the artifacts bucket (needs `aws app deploy` first, for
    its build role). Pushes <account>.dkr.ecr.<region>.amazonaws.com/<prefix>-app:FLAVOUR."""
    clients, client = _clients(region)
    from photosearch.aws import app_hosting, app_image
    from photosearch.aws import stack as stacks

    try:
        repository = app_image.ensure_repository(
            client("ecr"), app_image.repository_name(name_prefix)
        )
        image_uri = f"{repository}:{flavour}"
        if app_image.docker_available() and not force_codebuild:
            say(f"building {image_uri} with the local Docker engine")
            app_image.build_with_docker(client("ecr"), image_uri, flavour)
            click.echo(f"pushed {image_uri}")
            return
        cloudformation = client("cloudformation")
        storage = stacks.require_stack(cloudformation, stacks.stack_name_for(name_prefix), "")
        hosting = stacks.describe_stack(cloudformation, app_hosting.hosting_stack_name(name_prefix))
        if hosting is None or "BuildRoleArn" not in hosting.outputs:
            _fail("no Docker engine here: run `photosearch aws app deploy` first (its build role)")
        result = app_image.build_with_codebuild(
            client,
            name_prefix=name_prefix,
            image_uri=image_uri,
            flavour=flavour,
            bucket=storage.outputs["ArtifactsBucketName"],
            role_arn=hosting.outputs["BuildRoleArn"],
            wait=not no_wait,
            on_status=say,
        )
    except clients.AwsError as exc:
        _fail(str(exc))
    click.echo(f"{result['image']}: build {result['id']} {result['status']}")
