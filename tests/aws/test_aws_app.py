"""`photosearch aws app deploy | status | pause | resume | undeploy` against the loopback moto
server, and static checks of infra/app-hosting.yaml (cfn-lint; the secret stays out of it).

moto's CloudFormation emulates the ECS, ELBv2, EC2, IAM and Logs resources of the hosting stack;
CloudFront and Secrets Manager are called through their own APIs, as on AWS.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from aws_server import REGION, aws_env, moto_endpoint  # noqa: F401  (fixtures)
from click.testing import CliRunner

from photosearch.aws.app_hosting import HOSTING_TEMPLATE
from photosearch.cli.main import main

boto3 = pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
PASSWORD = "owner-password-on-aws"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["aws", *args], catch_exceptions=False, env=env)


def test_hosting_template_lints_clean_and_holds_no_secret() -> None:
    api = pytest.importorskip("cfnlint.api", reason="cfn-lint is not installed")
    config = api.ManualArgs(regions=[REGION])
    assert [str(m) for m in api.lint_file(HOSTING_TEMPLATE, config=config)] == []
    text = HOSTING_TEMPLATE.read_text()
    assert "PHOTOSEARCH_APP_PASSWORD\n" not in text.replace("- Name: PHOTOSEARCH_APP_PASSWORD", "")
    # The password reaches the task only as a Secrets Manager reference, never as a value.
    assert "ValueFrom: !Ref PasswordSecretArn" in text


def test_deploy_status_pause_resume_undeploy(aws_env) -> None:  # noqa: F811
    assert run("provision").exit_code == 0
    env = {"PHOTOSEARCH_APP_PASSWORD": PASSWORD}
    deployed = run(
        "app",
        "deploy",
        "--album",
        "s3://album/photos",
        "--index",
        "s3://embeddings/index",
        "--json",
        env=env,
    )
    assert deployed.exit_code == 0, deployed.output
    hosting = json.loads(deployed.stdout.strip().splitlines()[-1])
    assert hosting["address"].startswith("https://") and hosting["address"].endswith(
        ".cloudfront.net"
    )
    assert hosting["desired"] == 1 and hosting["per_hour"] > 0
    assert PASSWORD not in deployed.output

    session = boto3.Session(region_name=REGION)
    cloudformation = session.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName="photosearch-app")["Stacks"][0]
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert PASSWORD not in json.dumps(stack, default=str)
    template = cloudformation.get_template(StackName="photosearch-app")["TemplateBody"]
    assert PASSWORD not in str(template)
    secret = session.client("secretsmanager").get_secret_value(
        SecretId=parameters["PasswordSecretArn"]
    )
    assert secret["SecretString"] == PASSWORD
    assert parameters["PeopleUrl"].endswith("/saved-people")
    assert parameters["UsersUrl"].endswith("/app/users.json")
    ecs = session.client("ecs")
    task = ecs.describe_task_definition(taskDefinition="photosearch-app")["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert PASSWORD not in json.dumps(task, default=str)
    assert [s["name"] for s in container.get("secrets", [])] == ["PHOTOSEARCH_APP_PASSWORD"]
    assert container["command"][:3] == ["photosearch", "app", "--public"]
    # The storage stack's least-privilege app role is the task role (moto's task definitions
    # drop taskRoleArn, so the parameter and the template's mapping are checked).
    assert parameters["AppRoleArn"] == stack_output("photosearch", "AppRoleArn")
    assert "TaskRoleArn: !Ref AppRoleArn" in HOSTING_TEMPLATE.read_text()
    distribution = session.client("cloudfront").list_distributions()["DistributionList"]["Items"]
    (front,) = distribution
    assert front["Origins"]["Items"][0]["DomainName"] == stack_output(
        "photosearch-app", "LoadBalancerDns"
    )

    status = run("app", "status")
    assert status.exit_code == 0, status.output
    assert hosting["address"] in status.output and "cost/hour: $" in status.output

    paused = run("app", "pause")
    assert paused.exit_code == 0 and "state:     paused" in paused.output, paused.output
    desired = ecs.describe_services(cluster="photosearch-app", services=["photosearch-app"])
    assert desired["services"][0]["desiredCount"] == 0
    resumed = run("app", "resume")
    assert resumed.exit_code == 0 and " of 1 tasks running)" in resumed.output, resumed.output

    # Deploying again keeps the origin secret (CloudFront and the load balancer agree).
    again = run(
        "app",
        "deploy",
        "--album",
        "s3://album/photos",
        "--index",
        "s3://embeddings/index",
        env=env,
    )
    assert again.exit_code == 0, again.output
    assert len(session.client("cloudfront").list_distributions()["DistributionList"]["Items"]) == 1

    # No Docker engine here: the image is built in CodeBuild from a bundle of the tracked files.
    built = run("app", "build", "--no-wait", "--codebuild")
    assert built.exit_code == 0, built.output
    assert parameters["ImageUri"] in built.output  # deploy pointed at the tag build pushes
    artifacts = stack_output("photosearch", "ArtifactsBucketName")
    bundle = session.client("s3").get_object(Bucket=artifacts, Key="app-build/source.zip")
    with zipfile.ZipFile(io.BytesIO(bundle["Body"].read())) as archive:
        names = set(archive.namelist())
    assert {"Dockerfile", "pyproject.toml", "src/photosearch/app/page.py"} <= names
    assert not any(name.startswith((".venv/", "test-artifacts/")) for name in names)
    (project,) = session.client("codebuild").batch_get_projects(names=["photosearch-app"])[
        "projects"
    ]
    assert project["serviceRole"] == stack_output("photosearch-app", "BuildRoleArn")
    assert project["environment"]["privilegedMode"] is True

    gone = run("app", "undeploy")
    assert gone.exit_code == 0, gone.output
    assert "stack photosearch-app" in gone.output
    assert run("app", "status").exit_code == 1
    listed = session.client("cloudfront").list_distributions()["DistributionList"]
    assert not listed.get("Items")


def test_deploy_refuses_bad_input_before_touching_aws(aws_env) -> None:  # noqa: F811
    env = {"PHOTOSEARCH_APP_PASSWORD": PASSWORD}
    local = run("app", "deploy", "--album", "/home/me/photos", "--index", "s3://x/i", env=env)
    assert local.exit_code == 2 and "must be an s3:// URL" in local.output
    half = run(
        "app",
        "deploy",
        "--album",
        "s3://a/p",
        "--index",
        "s3://x/i",
        "--domain",
        "x.example",
        env=env,
    )
    assert half.exit_code == 2 and "--domain and --certificate-arn go together" in half.output
    no_stack = run("app", "deploy", "--album", "s3://a/p", "--index", "s3://x/i", env=env)
    assert no_stack.exit_code == 1 and "photosearch aws provision" in no_stack.output


def stack_output(stack: str, key: str) -> str:
    cloudformation = boto3.Session(region_name=REGION).client("cloudformation")
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    return next(o["OutputValue"] for o in outputs if o["OutputKey"] == key)
