"""Least privilege, enforced: the template's own policies, loaded into moto with IAM auth on.

The roles are created through the IAM API from the policy documents read out of
infra/photosearch.yaml (moto stores CloudFormation-made roles unusably), the uploader policy is
attached to a group holding a user, and every S3 request below is signed with the role's (or
user's) own credentials. Trust policies are replaced by one naming the test caller, since a
test cannot be sagemaker.amazonaws.com; the real trust policies are checked statically in
test_aws_template.py, as are the non-S3 permissions moto cannot scope (it checks them
against Resource "*").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_server import (
    ACCOUNT,
    REGION,
    TemplateResolver,
    create_bucket,
    load_template,
    point_boto_at,
    set_moto_auth,
    start_moto_server,
)

boto3 = pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
from botocore.exceptions import ClientError  # noqa: E402

SEED_OBJECTS = {
    "album": ["photos/a.jpg"],
    "embeddings": [
        "index/shard-0.npz",
        "saved-people/alice.json",
        "saved-people/old.json",
        "saved-people/bob/0123456789ab/person.json",
        "app/users.json",
    ],
    "artifacts": ["models/model.tar.gz"],
}
BUCKET_RESOURCES = {"album": "AlbumBucket", "embeddings": "SavedEmbeddings"}
BUCKET_RESOURCES["artifacts"] = "SageMakerArtifacts"


@dataclass
class World:
    buckets: dict[str, str]  # "album" | "embeddings" | "artifacts" -> bucket name
    sessions: dict[str, Any]  # "sagemaker" | "app" | "uploader" -> boto3.Session


def caller_trust(caller_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": caller_arn}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def create_role_from_template(iam: Any, resolver: TemplateResolver, logical_id: str, trust: str):
    properties = resolver.resource(logical_id)["Properties"]
    role = iam.create_role(RoleName=properties["RoleName"], AssumeRolePolicyDocument=trust)
    for policy in properties["Policies"]:
        iam.put_role_policy(
            RoleName=properties["RoleName"],
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    return role["Role"]["Arn"]


def keys_session(key: dict) -> Any:
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        aws_session_token=key.get("SessionToken"),
        region_name=REGION,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server, endpoint = start_moto_server()
    resolver = TemplateResolver(load_template())
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_boto_at(monkeypatch, endpoint, tmp_path_factory.mktemp("aws"))
        try:
            # Set up as the unrestricted default identity, with auth still off.
            s3, iam = boto3.client("s3"), boto3.client("iam")
            buckets = {kind: resolver.ref(name) for kind, name in BUCKET_RESOURCES.items()}
            for kind, bucket in buckets.items():
                create_bucket(s3, bucket)
                for key in SEED_OBJECTS[kind]:
                    s3.put_object(Bucket=bucket, Key=key, Body=f"seed {key}".encode())

            iam.create_user(UserName="tester")
            caller_arn = f"arn:aws:iam::{ACCOUNT}:user/tester"
            role_arns = {
                "sagemaker": create_role_from_template(
                    iam, resolver, "SageMakerExecutionRole", caller_trust(caller_arn)
                ),
                "app": create_role_from_template(
                    iam, resolver, "AppRole", caller_trust(caller_arn)
                ),
            }
            iam.put_user_policy(
                UserName="tester",
                PolicyName="assume-project-roles",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "sts:AssumeRole",
                                "Resource": list(role_arns.values()),
                            }
                        ],
                    }
                ),
            )
            tester_key = iam.create_access_key(UserName="tester")["AccessKey"]

            uploader = resolver.resource("UploaderPolicy")["Properties"]
            policy_arn = iam.create_policy(
                PolicyName=uploader["ManagedPolicyName"],
                PolicyDocument=json.dumps(uploader["PolicyDocument"]),
            )["Policy"]["Arn"]
            group = resolver.resource("UploaderGroup")["Properties"]
            assert group["ManagedPolicyArns"] == [policy_arn]
            iam.create_group(GroupName=group["GroupName"])
            iam.attach_group_policy(GroupName=group["GroupName"], PolicyArn=policy_arn)
            iam.create_user(UserName="laptop")
            iam.add_user_to_group(GroupName=group["GroupName"], UserName="laptop")
            laptop_key = iam.create_access_key(UserName="laptop")["AccessKey"]

            set_moto_auth(endpoint, enabled=True)
            sts = keys_session(tester_key).client("sts")
            sessions = {"uploader": keys_session(laptop_key)}
            for who, arn in role_arns.items():
                credentials = sts.assume_role(RoleArn=arn, RoleSessionName=f"test-{who}")
                sessions[who] = keys_session(credentials["Credentials"])
            yield World(buckets, sessions)
        finally:
            set_moto_auth(endpoint, enabled=False)  # process-wide setting: restore it
            server.stop()


def multipart(s3: Any, bucket: str, key: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 100)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )


def abort(s3: Any, bucket: str, key: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)


OPERATIONS: dict[str, Callable[[Any, str, str], Any]] = {
    "list": lambda s3, b, k: s3.list_objects_v2(Bucket=b, Prefix=k),
    "get": lambda s3, b, k: s3.get_object(Bucket=b, Key=k)["Body"].read(),
    "head": lambda s3, b, k: s3.head_object(Bucket=b, Key=k),
    "put": lambda s3, b, k: s3.put_object(Bucket=b, Key=k, Body=b"new"),
    "delete": lambda s3, b, k: s3.delete_object(Bucket=b, Key=k),
    "multipart": multipart,
    "abort": abort,
    "list-versions": lambda s3, b, k: s3.list_object_versions(Bucket=b),
    "delete-bucket": lambda s3, b, k: s3.delete_bucket(Bucket=b),
    "put-bucket-policy": lambda s3, b, k: s3.put_bucket_policy(Bucket=b, Policy="{}"),
    "list-all-buckets": lambda s3, b, k: s3.list_buckets(),
}

ALLOW, DENY = True, False
MATRIX = [
    # SageMaker jobs/endpoints: read album and artifacts, read/write embeddings, no deletes.
    ("sagemaker", "list", "album", "", ALLOW),
    ("sagemaker", "list", "embeddings", "index/", ALLOW),
    ("sagemaker", "list", "artifacts", "models/", ALLOW),
    ("sagemaker", "get", "album", "photos/a.jpg", ALLOW),
    ("sagemaker", "get", "embeddings", "index/shard-0.npz", ALLOW),
    ("sagemaker", "put", "embeddings", "index/shard-1.npz", ALLOW),
    ("sagemaker", "multipart", "embeddings", "index/big.npz", ALLOW),
    ("sagemaker", "abort", "embeddings", "index/abandoned.npz", ALLOW),
    ("sagemaker", "get", "artifacts", "models/model.tar.gz", ALLOW),
    ("sagemaker", "put", "album", "photos/new.jpg", DENY),
    ("sagemaker", "delete", "album", "photos/a.jpg", DENY),
    ("sagemaker", "delete", "embeddings", "index/shard-0.npz", DENY),
    ("sagemaker", "put", "artifacts", "models/evil.tar.gz", DENY),
    ("sagemaker", "list-versions", "album", "", DENY),
    ("sagemaker", "delete-bucket", "artifacts", "", DENY),
    ("sagemaker", "put-bucket-policy", "embeddings", "", DENY),
    ("sagemaker", "list-all-buckets", "", "", DENY),
    # Web app: photos by key, the index, its own saved-people/ prefix; nothing else.
    ("app", "get", "album", "photos/a.jpg", ALLOW),
    ("app", "get", "embeddings", "index/shard-0.npz", ALLOW),
    ("app", "get", "embeddings", "saved-people/alice.json", ALLOW),
    ("app", "list", "embeddings", "", ALLOW),
    ("app", "put", "embeddings", "saved-people/bob.json", ALLOW),
    ("app", "delete", "embeddings", "saved-people/old.json", ALLOW),
    ("app", "list", "album", "", DENY),
    ("app", "put", "album", "photos/new.jpg", DENY),
    ("app", "delete", "album", "photos/a.jpg", DENY),
    ("app", "get", "artifacts", "models/model.tar.gz", DENY),
    ("app", "list", "artifacts", "", DENY),
    ("app", "put", "embeddings", "index/shard-9.npz", DENY),
    ("app", "put", "embeddings", "saved-people-x/bob.json", DENY),
    ("app", "put", "embeddings", "saved-people", DENY),
    ("app", "delete", "embeddings", "index/shard-0.npz", DENY),
    ("app", "multipart", "embeddings", "index/big.npz", DENY),
    # Per-user saved people (saved-people/<user>/<id>/): the app writes each user's own prefix
    # (the gateway-vouched user picks it; one task role serves every user, so IAM bounds the
    # app to saved-people/ and the app keeps users apart). It reads the users file, never
    # writes it: a compromised app cannot add an account.
    ("app", "put", "embeddings", "saved-people/alice/0123456789ab/person.json", ALLOW),
    ("app", "get", "embeddings", "saved-people/bob/0123456789ab/person.json", ALLOW),
    ("app", "delete", "embeddings", "saved-people/alice/0123456789ab/face.jpg", ALLOW),
    ("app", "get", "embeddings", "app/users.json", ALLOW),
    ("app", "put", "embeddings", "app/users.json", DENY),
    ("app", "delete", "embeddings", "app/users.json", DENY),
    ("app", "put", "embeddings", "saved-peoplex/alice/0123456789ab/person.json", DENY),
    ("uploader", "put", "embeddings", "app/users.json", ALLOW),
    ("app", "list-all-buckets", "", "", DENY),
    # Uploader on a laptop: list and write album and embeddings; never delete, no artifacts.
    ("uploader", "list", "album", "", ALLOW),
    ("uploader", "list", "embeddings", "", ALLOW),
    ("uploader", "head", "album", "photos/a.jpg", ALLOW),
    ("uploader", "put", "album", "photos/b.jpg", ALLOW),
    ("uploader", "multipart", "album", "photos/pano.jpg", ALLOW),
    ("uploader", "abort", "album", "photos/cancelled.jpg", ALLOW),
    ("uploader", "put", "embeddings", "index/shard-2.npz", ALLOW),
    ("uploader", "get", "embeddings", "index/shard-0.npz", ALLOW),
    ("uploader", "delete", "album", "photos/a.jpg", DENY),
    ("uploader", "delete", "embeddings", "index/shard-0.npz", DENY),
    ("uploader", "get", "artifacts", "models/model.tar.gz", DENY),
    ("uploader", "put", "artifacts", "models/evil.tar.gz", DENY),
    ("uploader", "list", "artifacts", "", DENY),
    ("uploader", "list-versions", "album", "", DENY),
    ("uploader", "delete-bucket", "album", "", DENY),
    ("uploader", "list-all-buckets", "", "", DENY),
]


@pytest.mark.parametrize(
    ("who", "operation", "bucket", "key", "allowed"),
    MATRIX,
    ids=[f"{w}-{o}-{b}-{k}-{'allow' if a else 'deny'}" for w, o, b, k, a in MATRIX],
)
def test_access_matrix(world: World, who, operation, bucket, key, allowed) -> None:
    s3 = world.sessions[who].client("s3")
    target = world.buckets.get(bucket, "")
    if allowed:
        OPERATIONS[operation](s3, target, key)
        return
    with pytest.raises(ClientError) as denied:
        OPERATIONS[operation](s3, target, key)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_album_photos_survive_every_principal(world: World) -> None:
    """After the matrix (whatever order it ran in), nobody could have removed the seed photo."""
    for who in ("sagemaker", "uploader"):
        s3 = world.sessions[who].client("s3")
        assert s3.get_object(Bucket=world.buckets["album"], Key="photos/a.jpg")["Body"].read()


def test_uploader_policy_is_enough_for_photosearch_upload(world: World, tmp_path: Path) -> None:
    """The real upload code, signed as the uploader: first run uploads, second skips (HEAD)."""
    from photosearch.aws.clients import make_client
    from photosearch.aws.upload import AlbumUploader, S3Location

    album = tmp_path / "album"
    (album / "2024").mkdir(parents=True)
    (album / "2024" / "one.jpg").write_bytes(b"\xff\xd8 first photo")
    (album / "two.png").write_bytes(b"\x89PNG second photo")
    s3 = make_client(world.sessions["uploader"], "s3", mode="adaptive")
    uploader = AlbumUploader(s3, S3Location(world.buckets["album"], "upload-test/"), workers=2)
    first = uploader.run(uploader.plan(album))
    assert first.failed == {}
    assert first.uploaded == ["upload-test/2024/one.jpg", "upload-test/two.png"]
    second = uploader.run(uploader.plan(album))
    assert (second.uploaded, second.failed) == ([], {})
    assert second.skipped == first.uploaded
