"""The web app on AWS: the hosting stack, its HTTPS front, the password secret, pause/resume.

`deploy` stores the owner's password in Secrets Manager (never in the template, the task's
plain environment or a log), creates or updates the hosting stack (infra/app-hosting.yaml:
one Fargate task behind a load balancer) and puts CloudFront in front of it for HTTPS on a
``*.cloudfront.net`` address (photosearch.aws.app_front, through CloudFront's own API).
With `domain` and an ACM certificate, the load balancer's own HTTPS listener serves your
domain instead.
"""

from __future__ import annotations

import secrets as secrets_module
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from photosearch.aws import stack as stacks
from photosearch.aws.app_front import (
    delete_distribution,
    ensure_distribution,
    find_distribution,
    origin_secret,
)
from photosearch.aws.clients import AwsError, explained
from photosearch.storage.s3 import error_code

__all__ = [
    "HOSTING_TEMPLATE",
    "Hosting",
    "default_image_uri",
    "default_subnets",
    "deploy",
    "hosting_stack_name",
    "hosting_status",
    "secret_name",
    "set_running",
    "store_password",
    "undeploy",
]

HOSTING_TEMPLATE = Path(__file__).resolve().parents[3] / "infra" / "app-hosting.yaml"


def hosting_stack_name(name_prefix: str) -> str:
    return f"{name_prefix}-app"


def secret_name(name_prefix: str) -> str:
    return f"{name_prefix}-app-password"


def default_image_uri(account: str, region: str, name_prefix: str, flavour: str = "full") -> str:
    """The tag `photosearch aws app build` pushes: deploy can point at it before a build."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{name_prefix}-app:{flavour}"


@dataclass
class Hosting:
    stack_status: str
    address: str | None  # https://...
    desired: int
    running: int
    load_balancer: str | None
    distribution_id: str | None
    per_hour: float  # what it costs per hour in its current state
    state: str  # "running", "starting", "paused", "stopping", or the stack's status

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def store_password(secretsmanager: Any, name_prefix: str, password: str) -> str:
    """The secret's ARN, holding `password` (created, or given a new version)."""
    name = secret_name(name_prefix)
    with explained(f"storing the app password in Secrets Manager ({name})"):
        try:
            arn = secretsmanager.describe_secret(SecretId=name)["ARN"]
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            return secretsmanager.create_secret(
                Name=name,
                Description="Photosearch web app: the owner's password",
                SecretString=password,
                Tags=[{"Key": "project", "Value": "photosearch"}],
            )["ARN"]
        secretsmanager.put_secret_value(SecretId=arn, SecretString=password)
        return arn


def default_subnets(ec2: Any) -> tuple[str, list[str]]:
    """The default VPC and its default subnets (public, one per zone): no NAT to pay for."""
    with explained("finding the default VPC"):
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise AwsError("no default VPC in this region: pass --vpc and --subnet")
        vpc = vpcs[0]["VpcId"]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    chosen = sorted(
        (s for s in subnets if s.get("DefaultForAz") or s.get("MapPublicIpOnLaunch")),
        key=lambda s: s["AvailabilityZone"],
    )
    if len(chosen) < 2:
        raise AwsError(f"the default VPC {vpc} has fewer than two public subnets: pass --subnet")
    return vpc, [s["SubnetId"] for s in chosen]


def deploy(
    clients: Callable[[str], Any],
    *,
    name_prefix: str,
    password: str,
    album: str,
    index: str,
    image_uri: str | None = None,
    flavour: str = "full",
    endpoint_name: str | None = None,
    domain: str | None = None,
    certificate_arn: str | None = None,
    vpc: str | None = None,
    subnets: list[str] | None = None,
    cpu: str = "1024",
    memory: str = "4096",
    on_event: Callable[[str], None] = stacks.ignore_event,
    poll_seconds: float = stacks.POLL_SECONDS,
) -> Hosting:
    """Create or update the hosting stack and its HTTPS front; `clients(service)` makes the
    boto3 clients. Works before the image is built (the task starts once it is pushed)."""
    cloudformation = clients("cloudformation")
    storage = stacks.require_stack(cloudformation, stacks.stack_name_for(name_prefix), "")
    for needed in ("AppRoleArn", "EmbeddingsBucketName", "ArtifactsBucketName"):
        if needed not in storage.outputs:
            raise AwsError(f"the storage stack {storage.name} has no {needed} output")
    embeddings = storage.outputs["EmbeddingsBucketName"]
    if image_uri is None:
        with explained("reading the account"):
            account = clients("sts").get_caller_identity()["Account"]
        image_uri = default_image_uri(
            account, clients("sts").meta.region_name, name_prefix, flavour
        )
    secret_arn = store_password(clients("secretsmanager"), name_prefix, password)
    if vpc is None or not subnets:
        vpc, subnets = default_subnets(clients("ec2"))
    cloudfront = None if certificate_arn else clients("cloudfront")
    found = find_distribution(cloudfront, name_prefix) if cloudfront is not None else None
    secret = (origin_secret(cloudfront, found["Id"]) if found else None) or (
        secrets_module.token_urlsafe(32)
    )
    parameters = {
        "ImageUri": image_uri,
        "AppRoleArn": storage.outputs["AppRoleArn"],
        "PasswordSecretArn": secret_arn,
        "AlbumUrl": album,
        "IndexUrl": index,
        "PeopleUrl": f"s3://{embeddings}/saved-people",
        "UsersUrl": f"s3://{embeddings}/app/users.json",
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
        "DesiredCount": "1",
        "Cpu": cpu,
        "Memory": memory,
        "OriginSecret": secret,
        "CertificateArn": certificate_arn or "",
        "EndpointName": endpoint_name or "",
        "ArtifactsBucket": storage.outputs["ArtifactsBucketName"],
    }
    result = stacks.provision(
        cloudformation,
        name_prefix,
        parameters,
        template_body=stacks.read_template(HOSTING_TEMPLATE),
        on_event=on_event,
        poll_seconds=poll_seconds,
        stack_name=hosting_stack_name(name_prefix),
    )
    if cloudfront is not None:
        ensure_distribution(
            cloudfront, name_prefix, result.stack.outputs["LoadBalancerDns"], secret
        )
    set_running(clients("ecs"), name_prefix, True)
    return hosting_status(clients, name_prefix, domain=domain)


def set_running(ecs: Any, name_prefix: str, running: bool) -> None:
    """Resume (one task) or pause (none: only the load balancer and the secret still bill)."""
    name = hosting_stack_name(name_prefix)
    with explained(f"{'resuming' if running else 'pausing'} the app service {name}"):
        ecs.update_service(cluster=name, service=name, desiredCount=1 if running else 0)


def hosting_status(
    clients: Callable[[str], Any], name_prefix: str, *, domain: str | None = None
) -> Hosting | None:
    """Where the app is, whether it runs, and what it costs per hour now; None: not deployed."""
    from photosearch.aws.cost import load_prices
    from photosearch.aws.hosting_cost import hosting_rates

    name = hosting_stack_name(name_prefix)
    with explained(f"describing the app stack {name}"):
        info = stacks.describe_stack(clients("cloudformation"), name)
    if info is None:
        return None
    desired = running = 0
    with explained(f"describing the app service {name}"):
        services = clients("ecs").describe_services(cluster=name, services=[name])["services"]
    if services:
        desired, running = services[0].get("desiredCount", 0), services[0].get("runningCount", 0)
    distribution = None
    if not info.parameters.get("CertificateArn"):
        distribution = find_distribution(clients("cloudfront"), name_prefix)
    if domain:
        address = f"https://{domain}"
    elif distribution is not None:
        address = f"https://{distribution['DomainName']}"
    else:
        address = None
    rates = hosting_rates(
        load_prices(),
        int(info.parameters.get("Cpu", "1024")) / 1024,
        int(info.parameters.get("Memory", "4096")) / 1024,
    )
    if info.status.endswith("_IN_PROGRESS") or not info.status.endswith("_COMPLETE"):
        state = info.status
    elif desired == 0:
        state = "paused" if running == 0 else "stopping"
    else:
        state = "running" if running >= desired else "starting"
    per_hour = rates.running_per_hour if desired or running else rates.paused_per_hour
    return Hosting(
        stack_status=info.status,
        address=address,
        desired=desired,
        running=running,
        load_balancer=info.outputs.get("LoadBalancerDns"),
        distribution_id=distribution["Id"] if distribution else None,
        per_hour=per_hour,
        state=state,
    )


def undeploy(
    clients: Callable[[str], Any],
    name_prefix: str,
    *,
    on_event: Callable[[str], None] = stacks.ignore_event,
    poll_seconds: float = stacks.POLL_SECONDS,
) -> list[str]:
    """Delete the distribution, the stack and the secret; returns what was deleted (or left
    to finish: a distribution must finish disabling before it can be deleted)."""
    done = delete_distribution(clients("cloudfront"), name_prefix)
    cloudformation = clients("cloudformation")
    name = hosting_stack_name(name_prefix)
    with explained(f"deleting the app stack {name}"):
        info = stacks.describe_stack(cloudformation, name)
        if info is not None:
            cloudformation.delete_stack(StackName=info.stack_id)
            final = stacks.wait_for_stack(
                cloudformation, info.stack_id, None, on_event, poll_seconds
            )
            if final.status != "DELETE_COMPLETE":
                raise AwsError(f"deleting stack {name} failed ({final.status}): {final.reason()}")
            done.append(f"stack {name}")
    with explained("deleting the app password secret"):
        try:
            clients("secretsmanager").delete_secret(
                SecretId=secret_name(name_prefix), RecoveryWindowInDays=7
            )
            done.append(f"secret {secret_name(name_prefix)} (recoverable for 7 days)")
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
    return done
