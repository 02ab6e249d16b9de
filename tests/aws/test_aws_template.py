"""Static checks of infra/photosearch.yaml: what cfn-lint and moto cannot tell us.

moto ignores public access blocks, encryption, bucket policies, versioning and IAM conditions,
and does not enforce non-S3 resource ARNs, so those are read straight from the template here.
"""

from __future__ import annotations

import re

import pytest
from aws_server import (
    ACCOUNT,
    REGION,
    TEMPLATE_PATH,
    TemplateResolver,
    as_list,
    load_template,
    policy_decision,
)

BUCKETS = ("AlbumBucket", "SavedEmbeddings", "SageMakerArtifacts")
ROLES = ("SageMakerExecutionRole", "AppRole")
# The only Allow statements that may name Resource "*": actions without a resource type.
RESOURCE_STAR_EXCEPTIONS = {("SageMakerExecutionRole", "ecr:GetAuthorizationToken")}
S3_OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
S3_BUCKET_ACTIONS = {"s3:ListBucket"}


@pytest.fixture(scope="module")
def resolver() -> TemplateResolver:
    return TemplateResolver(load_template())


def bucket_names(resolver: TemplateResolver) -> dict[str, str]:
    return {name: resolver.ref(name) for name in BUCKETS}


def identity_policies(resolver: TemplateResolver) -> dict[str, list[dict]]:
    """Statements of every identity policy, by the resource that carries it."""
    found: dict[str, list[dict]] = {}
    for name in ROLES:
        properties = resolver.resource(name)["Properties"]
        found[name] = [
            statement
            for policy in properties["Policies"]
            for statement in as_list(policy["PolicyDocument"]["Statement"])
        ]
    uploader = resolver.resource("UploaderPolicy")["Properties"]["PolicyDocument"]
    found["UploaderPolicy"] = as_list(uploader["Statement"])
    return found


def all_statements(resolver: TemplateResolver) -> list[tuple[str, dict]]:
    statements = [(owner, s) for owner, group in identity_policies(resolver).items() for s in group]
    for name, policy in resolver.resources_of_type("AWS::S3::BucketPolicy").items():
        statements += [(name, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    for name in ROLES:
        trust = resolver.resource(name)["Properties"]["AssumeRolePolicyDocument"]
        statements += [(f"{name} trust", s) for s in as_list(trust["Statement"])]
    return statements


def test_cfn_lint_finds_nothing_and_would_catch_a_misspelt_action() -> None:
    api = pytest.importorskip("cfnlint.api", reason="cfn-lint is not installed")
    config = api.ManualArgs(regions=[REGION])
    assert [str(m) for m in api.lint_file(TEMPLATE_PATH, config=config)] == []
    # The same linter on a one-character mistake: proves it really checks IAM actions.
    broken = TEMPLATE_PATH.read_text().replace("s3:AbortMultipartUpload", "s3:AbortMultipartUplod")
    assert any(
        "AbortMultipartUplod".lower() in str(m).lower() for m in api.lint(broken, None, [REGION])
    )


def test_three_buckets_private_encrypted_versioned_with_lifecycle(resolver) -> None:
    buckets = resolver.resources_of_type("AWS::S3::Bucket")
    assert sorted(buckets) == sorted(BUCKETS)
    for name, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        rules = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
        assert properties["OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerEnforced"}
        ], name
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, name
        lifecycle = properties["LifecycleConfiguration"]["Rules"]
        assert all(rule["Status"] == "Enabled" for rule in lifecycle), name
        abort = [
            r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            for r in lifecycle
            if "AbortIncompleteMultipartUpload" in r
        ]
        noncurrent = [
            r["NoncurrentVersionExpiration"]["NoncurrentDays"]
            for r in lifecycle
            if "NoncurrentVersionExpiration" in r
        ]
        assert len(abort) == 1 and int(abort[0]) >= 1, name
        assert len(noncurrent) == 1 and int(noncurrent[0]) >= 1, name
        # A replacement (e.g. a renamed bucket) must not delete the old bucket's data.
        assert bucket["UpdateReplacePolicy"] == "Retain", name
    # Originals cannot be recomputed: kept longest.
    album_days = resolver.parameters["AlbumNoncurrentVersionExpirationDays"]
    assert int(album_days) >= int(resolver.parameters["NoncurrentVersionExpirationDays"])


def test_every_bucket_denies_plain_http_and_old_tls(resolver) -> None:
    policies = resolver.resources_of_type("AWS::S3::BucketPolicy").values()
    by_bucket = {policy["Properties"]["Bucket"]: policy for policy in policies}
    names = bucket_names(resolver)
    assert sorted(by_bucket) == sorted(names.values())
    for bucket in names.values():
        statements = by_bucket[bucket]["Properties"]["PolicyDocument"]["Statement"]
        everything = {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        conditions = []
        for statement in statements:
            # Bucket policies here only deny: all access comes from identity policies.
            assert statement["Effect"] == "Deny"
            assert statement["Principal"] == "*"
            assert statement["Action"] == "s3:*"
            assert set(statement["Resource"]) == everything
            conditions.append(statement["Condition"])
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions, bucket
        assert {"NumericLessThan": {"s3:TlsVersion": "1.2"}} in conditions, bucket


def test_no_wildcard_or_negated_actions_in_allow_statements(resolver) -> None:
    for owner, statement in all_statements(resolver):
        assert "NotAction" not in statement and "NotResource" not in statement, owner
        assert "NotPrincipal" not in statement, owner
        actions = as_list(statement["Action"])
        if statement["Effect"] == "Allow":
            assert not [a for a in actions if "*" in a], (owner, actions)
        else:
            # The only wildcard: the TLS-only denies, which must cover every S3 action.
            assert owner.endswith("Policy") and actions == ["s3:*"], owner
            assert "aws:SecureTransport" in str(statement["Condition"]) or "TlsVersion" in str(
                statement["Condition"]
            )


def test_resource_star_only_where_aws_requires_it(resolver) -> None:
    star = set()
    for owner, statements in identity_policies(resolver).items():
        for statement in statements:
            assert statement["Effect"] == "Allow", owner  # deny-by-default, nothing to undo
            if "*" in as_list(statement["Resource"]):
                assert len(as_list(statement["Resource"])) == 1
                star |= {(owner, action) for action in as_list(statement["Action"])}
    assert star == RESOURCE_STAR_EXCEPTIONS


def test_s3_permissions_name_project_buckets_and_the_right_arn_kind(resolver) -> None:
    names = set(bucket_names(resolver).values())
    for owner, statements in identity_policies(resolver).items():
        for statement in statements:
            actions = set(as_list(statement["Action"]))
            s3_actions = {a for a in actions if a.startswith("s3:")}
            if not s3_actions:
                continue
            # Object and bucket actions never share a statement: each names its ARN kind.
            assert s3_actions <= S3_OBJECT_ACTIONS or s3_actions <= S3_BUCKET_ACTIONS, owner
            for resource in as_list(statement["Resource"]):
                match = re.fullmatch(r"arn:aws:s3:::([a-z0-9.-]+)(/.*)?", resource)
                assert match and match.group(1) in names, (owner, resource)
                if s3_actions <= S3_BUCKET_ACTIONS:
                    assert match.group(2) is None, (owner, resource)
                else:
                    assert match.group(2) and match.group(2).endswith("/*"), (owner, resource)


def test_trust_policies_name_the_right_principals_with_conditions() -> None:
    for flag in ("false", "true"):
        resolver = TemplateResolver(load_template(), {"AppAssumableFromAccount": flag})
        sagemaker = resolver.resource("SageMakerExecutionRole")["Properties"]
        (statement,) = sagemaker["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole"
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}

        app = resolver.resource("AppRole")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        ecs = [s for s in app if s["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}]
        assert len(ecs) == 1
        assert ecs[0]["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
        assert ecs[0]["Condition"]["ArnLike"] == {
            "aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"
        }
        accounts = [s for s in app if "AWS" in s["Principal"]]
        if flag == "true":
            assert [s["Principal"]["AWS"] for s in accounts] == [f"arn:aws:iam::{ACCOUNT}:root"]
        else:
            assert accounts == []
        for trust in [statement, *app]:
            assert trust["Effect"] == "Allow" and trust["Principal"] != "*"


def test_app_may_invoke_only_its_own_endpoints(resolver) -> None:
    app = identity_policies(resolver)["AppRole"]
    endpoint = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/"
    assert policy_decision(app, "sagemaker:InvokeEndpoint", endpoint + "photosearch-search") == (
        "allow"
    )
    denied = [
        ("sagemaker:InvokeEndpoint", endpoint + "other-search"),
        ("sagemaker:InvokeEndpoint", endpoint + "photosearchx"),
        (
            "sagemaker:InvokeEndpoint",
            f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/photosearch-a",
        ),
        (
            "sagemaker:InvokeEndpoint",
            f"arn:aws:sagemaker:{REGION}:999999999999:endpoint/photosearch-a",
        ),
        ("sagemaker:CreateEndpoint", endpoint + "photosearch-search"),
        ("sagemaker:DeleteEndpoint", endpoint + "photosearch-search"),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/photosearch-sagemaker-{REGION}"),
    ]
    for action, resource in denied:
        assert policy_decision(app, action, resource) == "implicit-deny", (action, resource)


def test_sagemaker_role_logs_and_images_are_scoped(resolver) -> None:
    role = identity_policies(resolver)["SageMakerExecutionRole"]
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    ecr = f"arn:aws:ecr:{REGION}:"
    allowed = [
        ("logs:CreateLogGroup", logs + "/aws/sagemaker/ProcessingJobs"),
        ("logs:CreateLogStream", logs + "/aws/sagemaker/Endpoints/photosearch-search"),
        ("logs:PutLogEvents", logs + "/aws/sagemaker/ProcessingJobs:log-stream:job/algo-1"),
        ("ecr:BatchGetImage", ecr + "763104351884:repository/pytorch-inference"),
        ("ecr:GetDownloadUrlForLayer", ecr + "763104351884:repository/pytorch-training"),
        ("ecr:GetAuthorizationToken", "*"),
    ]
    denied = [
        ("logs:PutLogEvents", logs + "/aws/lambda/anything:log-stream:x"),
        ("logs:DeleteLogGroup", logs + "/aws/sagemaker/ProcessingJobs"),
        ("ecr:BatchGetImage", ecr + "111111111111:repository/pytorch-inference"),
        ("ecr:BatchGetImage", ecr + "763104351884:repository/tensorflow-inference"),
        ("ecr:PutImage", ecr + "763104351884:repository/pytorch-inference"),
        ("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/x"),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/photosearch-app-{REGION}"),
        ("cloudwatch:PutMetricData", "*"),
    ]
    for action, resource in allowed:
        assert policy_decision(role, action, resource) == "allow", (action, resource)
    for action, resource in denied:
        assert policy_decision(role, action, resource) == "implicit-deny", (action, resource)


def test_uploader_reads_only_its_own_stack(resolver) -> None:
    uploader = identity_policies(resolver)["UploaderPolicy"]
    own = resolver.pseudo["AWS::StackId"]
    other = own.replace("stack/photosearch/", "stack/other/")
    assert policy_decision(uploader, "cloudformation:DescribeStacks", own) == "allow"
    assert policy_decision(uploader, "cloudformation:DescribeStacks", other) == "implicit-deny"
    assert policy_decision(uploader, "cloudformation:DeleteStack", own) == "implicit-deny"
    group = resolver.resource("UploaderGroup")["Properties"]
    assert group["ManagedPolicyArns"] == [resolver.ref("UploaderPolicy")]


def test_outputs_name_buckets_and_roles(resolver) -> None:
    outputs = {
        name: resolver.resolve(o["Value"]) for name, o in resolver.template["Outputs"].items()
    }
    names = bucket_names(resolver)
    assert outputs["AlbumBucketName"] == names["AlbumBucket"]
    assert outputs["EmbeddingsBucketName"] == names["SavedEmbeddings"]
    assert outputs["ArtifactsBucketName"] == names["SageMakerArtifacts"]
    assert outputs["SageMakerExecutionRoleArn"] == resolver.get_att("SageMakerExecutionRole", "Arn")
    assert outputs["AppRoleArn"] == resolver.get_att("AppRole", "Arn")
    assert outputs["UploaderPolicyArn"] == resolver.ref("UploaderPolicy")


def test_longest_allowed_prefix_gives_valid_names_everywhere() -> None:
    template = load_template()
    pattern = template["Parameters"]["NamePrefix"]["AllowedPattern"]
    longest = "p" * 20
    assert re.fullmatch(pattern, longest) and not re.fullmatch(pattern, longest + "p")
    assert not re.fullmatch(pattern, "Photos")  # S3 and endpoint ARNs want lowercase
    resolver = TemplateResolver(template, {"NamePrefix": longest}, region="ap-southeast-4")
    for name in BUCKETS:
        bucket = resolver.ref(name)
        assert len(bucket) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", bucket), bucket
    for name in ROLES:
        assert len(resolver.ref(name)) <= 64
