"""The app's container image: built with a local Docker engine when one runs, else in
CodeBuild from a source bundle in the artifacts bucket; pushed to the app's ECR repository.

The bundle is the repository's tracked files (`git ls-files`), so what is built is what is
committed plus local edits, never build outputs or a virtual environment. The CodeBuild project
runs with the hosting stack's BuildRole (read the bundle, push one repository, write logs).
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from photosearch.aws.clients import AwsError, explained
from photosearch.storage.s3 import error_code

__all__ = [
    "BUILD_IMAGE",
    "BUNDLE_KEY",
    "FLAVOURS",
    "REPOSITORY_ROOT",
    "build_with_codebuild",
    "build_with_docker",
    "buildspec",
    "docker_available",
    "ensure_repository",
    "repository_name",
    "source_bundle",
]

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
BUNDLE_KEY = "app-build/source.zip"
FLAVOURS = ("full", "slim")
BUILD_IMAGE = "aws/codebuild/amazonlinux2-x86_64-standard:5.0"


def repository_name(name_prefix: str) -> str:
    return f"{name_prefix}-app"


def source_bundle(root: Path = REPOSITORY_ROOT) -> bytes:
    """A zip of the repository's tracked files (what `docker build` needs)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise AwsError(f"cannot list the source files of {root} (a git checkout?): {exc}") from exc
    names = [name for name in listed.decode().split("\0") if name]
    if "Dockerfile" not in names:
        raise AwsError(f"{root} has no committed Dockerfile")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            path = root / name
            if path.is_file():
                archive.write(path, name)
    return buffer.getvalue()


def buildspec(image_uri: str, flavour: str) -> str:
    registry = image_uri.split("/", 1)[0]
    return "\n".join(
        [
            "version: 0.2",
            "phases:",
            "  pre_build:",
            "    commands:",
            "      - aws ecr get-login-password --region $AWS_DEFAULT_REGION"
            f" | docker login --username AWS --password-stdin {registry}",
            "  build:",
            "    commands:",
            f"      - docker build --target {flavour} -t {image_uri} .",
            "  post_build:",
            "    commands:",
            f"      - docker push {image_uri}",
            "",
        ]
    )


def docker_available() -> bool:
    """True when a Docker engine answers (the client alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def ensure_repository(ecr: Any, name: str) -> str:
    """The repository's URI (created with scan-on-push when missing)."""
    with explained(f"finding the ECR repository {name}"):
        try:
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0][
                "repositoryUri"
            ]
        except ClientError as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
        return ecr.create_repository(
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            tags=[{"Key": "project", "Value": "photosearch"}],
        )["repository"]["repositoryUri"]


def build_with_docker(ecr: Any, image_uri: str, flavour: str, root: Path = REPOSITORY_ROOT) -> None:
    """`docker build --target FLAVOUR`, log in to ECR, `docker push`."""
    token = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    steps = [
        (["docker", "build", "--target", flavour, "-t", image_uri, str(root)], None),
        (
            ["docker", "login", "--username", user, "--password-stdin", token["proxyEndpoint"]],
            password,
        ),
        (["docker", "push", image_uri], None),
    ]
    for command, given in steps:
        done = subprocess.run(command, input=given, text=True, check=False)
        if done.returncode != 0:
            raise AwsError(f"`{' '.join(command[:2])}` failed (exit status {done.returncode})")


def build_with_codebuild(
    clients: Callable[[str], Any],
    *,
    name_prefix: str,
    image_uri: str,
    flavour: str,
    bucket: str,
    role_arn: str,
    wait: bool = True,
    on_status: Callable[[str], None] = lambda line: None,
    poll_seconds: float = 15.0,
    bundle: bytes | None = None,
) -> dict[str, Any]:
    """Upload the source bundle, create or update the project, start a build; returns the
    build's id and status (its final status when `wait`)."""
    project = f"{name_prefix}-app"
    data = bundle if bundle is not None else source_bundle()
    with explained(f"uploading the source bundle to s3://{bucket}/{BUNDLE_KEY}"):
        clients("s3").put_object(Bucket=bucket, Key=BUNDLE_KEY, Body=data)
    settings = {
        "source": {
            "type": "S3",
            "location": f"{bucket}/{BUNDLE_KEY}",
            "buildspec": buildspec(image_uri, flavour),
        },
        "artifacts": {"type": "NO_ARTIFACTS"},
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": BUILD_IMAGE,
            "computeType": "BUILD_GENERAL1_MEDIUM",
            "privilegedMode": True,  # docker build inside the build container
        },
        "serviceRole": role_arn,
        "timeoutInMinutes": 60,
    }
    codebuild = clients("codebuild")
    with explained(f"starting the CodeBuild project {project}"):
        known = codebuild.batch_get_projects(names=[project]).get("projects", [])
        if known:
            codebuild.update_project(name=project, **settings)
        else:
            codebuild.create_project(name=project, **settings)
        build = codebuild.start_build(projectName=project)["build"]
    on_status(f"build {build['id']}: {build.get('buildStatus', 'IN_PROGRESS')}")
    while wait and build.get("buildStatus", "IN_PROGRESS") == "IN_PROGRESS":
        time.sleep(poll_seconds)
        with explained("reading the build's status"):
            build = codebuild.batch_get_builds(ids=[build["id"]])["builds"][0]
        on_status(f"build {build['id']}: {build.get('currentPhase')} {build['buildStatus']}")
    status = build.get("buildStatus", "IN_PROGRESS")
    if status not in ("IN_PROGRESS", "SUCCEEDED"):
        raise AwsError(f"the image build {build['id']} ended {status}: see its CloudWatch log")
    return {"id": build["id"], "status": status, "image": image_uri}
