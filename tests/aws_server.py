"""AWS test support: a local moto server on loopback and helpers over infra/photosearch.yaml.

Product code needs no test hooks: tests point boto3 at the server with the standard variables
(AWS_ENDPOINT_URL, dummy credentials, AWS_DEFAULT_REGION). Import the fixtures you use:
`from aws_server import aws_env, moto_endpoint`.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / "infra" / "photosearch.yaml"
REGION = "eu-west-1"  # moto enforces region rules: buckets need a LocationConstraint here
ACCOUNT = "123456789012"  # moto's default account
STACK_GUID = "00000000-0000-0000-0000-000000000000"

# Variables that could send boto3 to real AWS or a real profile during a test.
AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_CLOUDFORMATION",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
)


def start_moto_server():
    # The server runs in this process: its request logs and "No Moto CloudFormation support
    # for AWS::IAM::Group" warnings would land in the stderr that CLI tests read.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def moto_post(endpoint: str, path: str, body: bytes = b"") -> dict:
    # Not urllib's default form content type: Flask would parse the body away as a form.
    request = urllib.request.Request(
        f"{endpoint}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def reset_moto(endpoint: str) -> None:
    moto_post(endpoint, "/moto-api/reset")


def set_moto_auth(endpoint: str, enabled: bool) -> None:
    """IAM enforcement on (every request authenticated and authorised) or off."""
    moto_post(endpoint, "/moto-api/reset-auth", b"0" if enabled else b"inf")


def point_boto_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_dir: Path) -> None:
    for name in AWS_VARIABLES_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # No real config or credentials file, no instance metadata lookups (slow timeouts).
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_dir / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_dir / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server per test process (~0.3 s to start), state wiped by `aws_env`."""
    server, endpoint = start_moto_server()
    yield endpoint
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A clean moto server and the standard AWS_* variables pointing at it; returns its URL."""
    reset_moto(moto_endpoint)
    point_boto_at(monkeypatch, moto_endpoint, tmp_path)
    return moto_endpoint


def create_bucket(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})


# ----------------------------------------------------------------------------------------------
# The template, with intrinsic functions resolved for one account/region/prefix
# ----------------------------------------------------------------------------------------------


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    """infra/photosearch.yaml (or another template) as plain data: '!Sub x' becomes
    {'Fn::Sub': 'x'}, '!Ref x' {'Ref': 'x'}, as CloudFormation reads it. (Plain PyYAML:
    importing cfn-lint costs ~2 s.)"""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

    class TemplateLoader(yaml.SafeLoader):
        pass

    def intrinsic(loader, tag_suffix, node):
        name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag_suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    TemplateLoader.add_multi_constructor("!", intrinsic)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=TemplateLoader)


NO_VALUE = object()


class TemplateResolver:
    """Resolves Ref/Fn::Sub/Fn::GetAtt/Fn::If/Fn::Equals the way CloudFormation would, for
    the few resource types the template uses. Unknown intrinsics raise, so a template change
    the tests do not understand fails loudly instead of passing unresolved."""

    def __init__(
        self,
        template: dict,
        parameters: dict[str, str] | None = None,
        account: str = ACCOUNT,
        region: str = REGION,
        stack_name: str = "photosearch",
    ) -> None:
        self.template = template
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()
        }
        self.parameters.update(parameters or {})
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/{STACK_GUID}"
            ),
            "AWS::URLSuffix": "amazonaws.com",
        }

    @property
    def account(self) -> str:
        return self.pseudo["AWS::AccountId"]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"][name]
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            return self.resolve(properties["BucketName"])
        if kind in ("AWS::IAM::Role", "AWS::IAM::Group"):
            return self.resolve(properties["RoleName" if kind.endswith("Role") else "GroupName"])
        if kind == "AWS::IAM::ManagedPolicy":
            policy_name = self.resolve(properties["ManagedPolicyName"])
            return f"arn:aws:iam::{self.account}:policy/{policy_name}"
        raise NotImplementedError(f"Ref to {kind}")

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        if (kind, attribute) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{self.ref(name)}"
        if (kind, attribute) == ("AWS::IAM::Role", "Arn"):
            return f"arn:aws:iam::{self.account}:role/{self.ref(name)}"
        raise NotImplementedError(f"Fn::GetAtt {name}.{attribute}")

    def substitute(self, text: str, variables: dict[str, Any]) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".")
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self.substitute(text, variables)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(side) for side in argument)
                return str(left) == str(right)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if key.startswith("Fn::") or key == "Condition":
                raise NotImplementedError(key)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def resource(self, name: str) -> dict:
        """A resource with its properties resolved (DeletionPolicy etc. left as they are)."""
        return self.resolve(self.template["Resources"][name])

    def resources_of_type(self, kind: str) -> dict[str, dict]:
        return {
            name: self.resource(name)
            for name, spec in self.template["Resources"].items()
            if spec["Type"] == kind
        }


# ----------------------------------------------------------------------------------------------
# A static reading of IAM policies, for what moto cannot enforce (non-S3 resource ARNs)
# ----------------------------------------------------------------------------------------------


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def iam_pattern_matches(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM wildcard matching: '*' any run of characters (colons included), '?' one character."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def policy_decision(statements: list[dict], action: str, resource: str) -> str:
    """'allow', 'deny' or 'implicit-deny' for an identity policy, Conditions ignored."""
    decision = "implicit-deny"
    for statement in statements:
        actions = as_list(statement.get("Action", []))
        resources = as_list(statement.get("Resource", []))
        if not any(iam_pattern_matches(a, action, case_sensitive=False) for a in actions):
            continue
        if not any(iam_pattern_matches(r, resource) for r in resources):
            continue
        if statement["Effect"] == "Deny":
            return "deny"
        decision = "allow"
    return decision
