"""`photosearch aws provision|status|teardown|upload` against a local moto server.

moto creates the stack's buckets and roles from the real template (it ignores versioning,
public access blocks and bucket policies: those are checked in test_aws_template.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
from pathlib import Path

import aws_server
import pytest
from aws_server import REGION, create_bucket
from click.testing import CliRunner

boto3 = pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
from botocore.stub import Stubber  # noqa: E402
from PIL import Image  # noqa: E402

from photosearch.aws import stack  # noqa: E402
from photosearch.aws.clients import make_client, make_session  # noqa: E402
from photosearch.aws.upload import AlbumUploader, S3Location  # noqa: E402
from photosearch.cli.aws import aws  # noqa: E402

# moto's CloudFormation skips what it cannot model (bucket policies, groups): expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")

# The local moto server fixtures (assigned, not imported, so the names read as fixtures).
moto_endpoint = aws_server.moto_endpoint
aws_env = aws_server.aws_env

ACCOUNT = "123456789012"
ALBUM_BUCKET = f"photosearch-album-{ACCOUNT}-{REGION}"
BUCKETS = {
    f"photosearch-{kind}-{ACCOUNT}-{REGION}" for kind in ("album", "embeddings", "artifacts")
}


def run(*args: str):
    return CliRunner().invoke(aws, list(args), catch_exceptions=False)


def image_bytes(colour: tuple[int, int, int], fmt: str = "JPEG", size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """Five real images in nested folders, plus files an upload must leave alone."""
    root = tmp_path / "album"
    (root / "2023" / "summer").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    (root / "2023" / "summer" / "beach.jpg").write_bytes(image_bytes((200, 180, 90)))
    (root / "2023" / "summer" / "sea.JPEG").write_bytes(image_bytes((20, 90, 200)))
    (root / "2023" / "party.png").write_bytes(image_bytes((250, 20, 20), "PNG"))
    (root / "portrait.webp").write_bytes(image_bytes((90, 90, 90), "WEBP"))
    (root / "scan.bmp").write_bytes(image_bytes((1, 2, 3), "BMP"))
    (root / "notes.txt").write_text("not a photo")
    (root / "clip.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  ")
    (root / "._beach.jpg").write_bytes(b"AppleDouble resource fork")
    (root / ".thumbnails" / "beach.jpg").write_bytes(image_bytes((0, 0, 0)))
    return root


ALBUM_KEYS = [
    "2023/party.png",
    "2023/summer/beach.jpg",
    "2023/summer/sea.JPEG",
    "portrait.webp",
    "scan.bmp",
]


def object_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


# ----------------------------------------------------------------------------------------------
# provision / status / teardown
# ----------------------------------------------------------------------------------------------


def test_provision_is_idempotent_updates_parameters_and_feeds_status_and_upload(
    aws_env, album
) -> None:
    created = run("provision", "--region", REGION)
    assert created.exit_code == 0, created.output
    assert f"stack photosearch ({REGION}): created" in created.stdout
    assert ALBUM_BUCKET in created.stdout
    assert "CREATE_COMPLETE" in created.stderr  # stack events, as they came
    s3 = boto3.client("s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= BUCKETS
    iam = boto3.client("iam")
    assert iam.get_role(RoleName=f"photosearch-app-{REGION}")["Role"]["Arn"]

    again = run("provision")
    assert again.exit_code == 0, again.output
    assert "already up to date" in again.stdout

    changed = run("provision", "--parameter", "NoncurrentVersionExpirationDays=45", "--json")
    assert changed.exit_code == 0, changed.output
    report = json.loads(changed.stdout)
    assert report["action"] == "updated" and report["status"] == "UPDATE_COMPLETE"
    assert report["parameters"]["NoncurrentVersionExpirationDays"] == "45"
    assert report["parameters"]["AlbumNoncurrentVersionExpirationDays"] == "90"  # kept
    same_again = run("provision", "--parameter", "NoncurrentVersionExpirationDays=45")
    assert "already up to date" in same_again.stdout

    status = run("status", "--json")
    assert status.exit_code == 0, status.output
    outputs = json.loads(status.stdout)["outputs"]
    assert {
        outputs[k] for k in ("AlbumBucketName", "EmbeddingsBucketName", "ArtifactsBucketName")
    } == BUCKETS
    assert outputs["AppRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/photosearch-app-{REGION}"

    # Without --bucket/--to, upload finds the album bucket in the stack's outputs.
    uploaded = run("upload", str(album), "--no-progress")
    assert uploaded.exit_code == 0, uploaded.output
    assert object_keys(s3, ALBUM_BUCKET) == ALBUM_KEYS


def test_provision_treats_cloudformations_no_updates_answer_as_success() -> None:
    """Real CloudFormation (unlike moto) answers an update that changes nothing with a
    ValidationError; shaped here with botocore's Stubber, which validates it against the API."""
    cloudformation = boto3.client(
        "cloudformation", region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b"
    )
    stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/photosearch/guid"
    described = {
        "Stacks": [
            {
                "StackName": "photosearch",
                "StackId": stack_id,
                "StackStatus": "UPDATE_COMPLETE",
                "CreationTime": "2026-01-01T00:00:00Z",
                "Parameters": [{"ParameterKey": "NamePrefix", "ParameterValue": "photosearch"}],
            }
        ]
    }
    with Stubber(cloudformation) as stubber:
        stubber.add_response("describe_stacks", described, {"StackName": "photosearch"})
        stubber.add_response("get_template", {"TemplateBody": "# reformatted, same meaning"})
        stubber.add_response("describe_stack_events", {"StackEvents": []})
        stubber.add_client_error(
            "update_stack", "ValidationError", "No updates are to be performed.", 400
        )
        result = stack.provision(cloudformation, template_body=stack.read_template())
        stubber.assert_no_pending_responses()
    assert result.action == "unchanged" and result.stack.status == "UPDATE_COMPLETE"


def test_a_failed_creation_is_one_clear_line(aws_env) -> None:
    """Bucket names are global: one taken already makes the creation fail, and says why."""
    create_bucket(boto3.client("s3"), f"photosearch-embeddings-{ACCOUNT}-{REGION}")
    result = run("provision")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: provisioning stack photosearch: BucketAlreadyExists: ")


def test_teardown_refuses_buckets_with_data_and_force_deletes_every_version(aws_env) -> None:
    assert run("provision").exit_code == 0
    s3 = boto3.client("s3")
    # moto ignores the template's versioning; switch it on to get versions and delete markers.
    s3.put_bucket_versioning(Bucket=ALBUM_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=ALBUM_BUCKET, Key="a.jpg", Body=b"v1")
    s3.put_object(Bucket=ALBUM_BUCKET, Key="a.jpg", Body=b"v2")
    s3.put_object(Bucket=ALBUM_BUCKET, Key="b.jpg", Body=b"v1")
    s3.delete_object(Bucket=ALBUM_BUCKET, Key="b.jpg")  # leaves a delete marker
    s3.create_multipart_upload(Bucket=ALBUM_BUCKET, Key="unfinished.jpg")

    refused = run("teardown")
    assert refused.exit_code == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: refusing to delete buckets that hold data")
    assert f"{ALBUM_BUCKET} (4 object versions, 1 unfinished uploads)" in line
    assert "--force" in line
    assert run("status").exit_code == 0  # stack and data untouched
    assert len(s3.list_object_versions(Bucket=ALBUM_BUCKET)["Versions"]) == 3

    forced = run("teardown", "--force")
    assert forced.exit_code == 0, forced.output
    assert f"stack photosearch ({REGION}): deleted, 4 object versions deleted" in forced.stdout
    assert not BUCKETS & {b["Name"] for b in s3.list_buckets()["Buckets"]}
    gone = run("status")
    assert gone.exit_code == 2
    assert gone.stderr.strip() == (
        f"error: no stack named 'photosearch' in {REGION} "
        "(create it with `photosearch aws provision`)"
    )


def test_teardown_of_empty_buckets_needs_no_force(aws_env) -> None:
    assert run("provision", "--name-prefix", "ps-test").exit_code == 0
    result = run("teardown", "--name-prefix", "ps-test")
    assert result.exit_code == 0, result.output
    assert "DELETE_COMPLETE" in result.stderr
    assert run("teardown", "--name-prefix", "ps-test").exit_code == 2  # nothing left


def test_missing_credentials_is_one_clear_line(aws_env, album, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for args in (["status"], ["provision"], ["teardown"], ["upload", str(album), "--bucket", "b"]):
        result = run(*args)
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: no AWS credentials found"), line
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    result = run("status")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: loading the AWS configuration: "
        "The config profile (no-such-profile) could not be found\n"
    )


def test_unreachable_endpoint_is_one_clear_line(aws_env, album, monkeypatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # standard variable: no retry backoff here
    for args in (["status"], ["upload", str(album), "--bucket", "b"]):
        result = run(*args)
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and f"cannot reach http://127.0.0.1:{port}" in line


# ----------------------------------------------------------------------------------------------
# upload
# ----------------------------------------------------------------------------------------------


def test_upload_skips_same_content_and_resends_changed_photos(aws_env, album) -> None:
    s3 = boto3.client("s3")
    create_bucket(s3, "photos")
    first = run("upload", str(album), "--to", "s3://photos/trips/", "--no-progress")
    assert first.exit_code == 0, first.output
    assert "5 uploaded" in first.stdout and "0 already there" in first.stdout
    assert object_keys(s3, "photos") == [f"trips/{key}" for key in ALBUM_KEYS]
    for key in ALBUM_KEYS:
        data = (album / key).read_bytes()
        head = s3.head_object(Bucket="photos", Key=f"trips/{key}")
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert head["ContentType"].startswith("image/")
        assert s3.get_object(Bucket="photos", Key=f"trips/{key}")["Body"].read() == data

    again = run("upload", str(album), "--to", "s3://photos/trips", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {
        "destination": "s3://photos/trips/",
        "uploaded": 0,
        "skipped": 5,
        "failed": {},
        "bytes_uploaded": 0,
    }

    # Same size, different content: only the checksum can tell.
    party = album / "2023" / "party.png"
    data = bytearray(party.read_bytes())
    data[-20] ^= 0xFF
    party.write_bytes(bytes(data))
    (album / "portrait.webp").write_bytes(image_bytes((10, 200, 10), "WEBP", (80, 60)))
    changed = run("upload", str(album), "--to", "s3://photos/trips", "--json")
    report = json.loads(changed.stdout)
    assert (report["uploaded"], report["skipped"]) == (2, 3)
    stored = s3.get_object(Bucket="photos", Key="trips/2023/party.png")["Body"].read()
    assert stored == bytes(data)


def capture_headers(s3, operation: str) -> list[dict[str, str]]:
    """Headers of every `operation` request the client sends (botocore's event hooks)."""
    seen: list[dict[str, str]] = []

    def record(request, **_) -> None:
        headers = request.headers.items()
        seen.append({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in headers})

    s3.meta.events.register(f"before-send.s3.{operation}", record)
    return seen


def test_every_upload_carries_a_sha256_that_s3_verifies(aws_env, album) -> None:
    """moto accepts but does not check x-amz-checksum-sha256; real S3 rejects a body that does
    not match it (BadDigest). So check what is sent."""
    s3 = make_client(make_session(), "s3", mode="adaptive")
    create_bucket(s3, "photos")
    sent = capture_headers(s3, "PutObject")
    uploader = AlbumUploader(s3, S3Location("photos"), workers=3)
    assert uploader.run(uploader.plan(album)).uploaded == ALBUM_KEYS
    by_digest = {h["x-amz-checksum-sha256"]: h for h in sent}
    assert len(by_digest) == len(ALBUM_KEYS)
    for key in ALBUM_KEYS:
        digest = hashlib.sha256((album / key).read_bytes()).digest()
        headers = by_digest[base64.b64encode(digest).decode()]
        assert headers["x-amz-meta-sha256"] == digest.hex()


def test_upload_recognises_objects_put_by_other_tools(aws_env, album) -> None:
    """No sha256 metadata: a single-part ETag (MD5) decides."""
    s3 = boto3.client("s3")
    create_bucket(s3, "photos")
    beach = (album / "2023" / "summer" / "beach.jpg").read_bytes()
    s3.put_object(Bucket="photos", Key="2023/summer/beach.jpg", Body=beach)
    sea = (album / "2023" / "summer" / "sea.JPEG").read_bytes()
    s3.put_object(Bucket="photos", Key="2023/summer/sea.JPEG", Body=bytes(len(sea)))
    result = run("upload", str(album), "--bucket", "photos", "--json")
    report = json.loads(result.stdout)
    assert (report["uploaded"], report["skipped"]) == (4, 1)
    assert s3.get_object(Bucket="photos", Key="2023/summer/sea.JPEG")["Body"].read() == sea


def test_large_photos_go_up_in_checksummed_parts_and_are_skipped_next_time(
    aws_env, tmp_path
) -> None:
    s3 = make_client(make_session(), "s3", mode="adaptive")
    create_bucket(s3, "photos")
    album = tmp_path / "album"
    album.mkdir()
    panorama = album / "panorama.jpg"
    panorama.write_bytes(hashlib.sha256(b"seed").digest() * (11 * 1024 * 1024 // 32))
    chunk = 5 * 1024 * 1024  # S3's smallest part
    uploader = AlbumUploader(
        s3, S3Location("photos"), workers=2, multipart_threshold=chunk, multipart_chunk=chunk
    )
    created = capture_headers(s3, "CreateMultipartUpload")
    parts = capture_headers(s3, "UploadPart")
    first = uploader.run(uploader.plan(album))
    assert (first.uploaded, first.failed) == (["panorama.jpg"], {})
    head = s3.head_object(Bucket="photos", Key="panorama.jpg")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(panorama.read_bytes()).hexdigest()
    # Each part carries its SHA-256 for S3 to check.
    assert [h["x-amz-checksum-algorithm"] for h in created] == ["SHA256"]
    assert len(parts) == 3 and all(len(h["x-amz-checksum-sha256"]) == 44 for h in parts)
    second = uploader.run(uploader.plan(album))
    assert (second.uploaded, second.skipped) == ([], ["panorama.jpg"])


def test_upload_to_a_missing_bucket_is_one_clear_line(aws_env, album) -> None:
    result = run("upload", str(album), "--bucket", "no-such-bucket")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: bucket 'no-such-bucket' does not exist")


def test_a_photo_that_fails_fails_alone(aws_env, album) -> None:
    """A photo gone between listing and upload is reported; the others still go up."""
    s3 = make_client(make_session(), "s3")
    create_bucket(s3, "photos")
    uploader = AlbumUploader(s3, S3Location("photos"), workers=2)
    photos = uploader.plan(album)
    (album / "scan.bmp").unlink()
    report = uploader.run(photos)
    assert report.uploaded == [key for key in ALBUM_KEYS if key != "scan.bmp"]
    assert report.failed == {"scan.bmp": "No such file or directory"}
    assert object_keys(s3, "photos") == report.uploaded


def test_upload_argument_errors(aws_env, album, tmp_path) -> None:
    both = run("upload", str(album), "--bucket", "a", "--to", "s3://a/b")
    assert both.exit_code == 2 and "not both" in both.output
    bad = run("upload", str(album), "--to", "https://a/b")
    assert bad.exit_code == 2 and "s3://BUCKET[/PREFIX]" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("upload", str(empty), "--bucket", "photos")
    assert nothing.exit_code == 2 and "no photos under" in nothing.stderr


def test_clients_retry_with_backoff(aws_env, monkeypatch) -> None:
    session = make_session()
    s3 = make_client(session, "s3", mode="adaptive")
    assert s3.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 8}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert make_client(make_session(), "cloudformation").meta.config.retries == {
        "mode": "standard",
        "total_max_attempts": 3,
    }


def test_s3_location_parsing() -> None:
    assert S3Location.parse("s3://b") == S3Location("b", "")
    assert S3Location.parse("s3://b/") == S3Location("b", "")
    assert S3Location.parse("s3://b/x/y/") == S3Location("b", "x/y/")
    assert S3Location.parse("s3://b//x") == S3Location("b", "x/")
    for bad in ("b/x", "s3://", "s3:///x", "S3://b"):
        with pytest.raises(ValueError):
            S3Location.parse(bad)
