"""Albums and indexes on S3, end to end, against a real S3 protocol server on loopback (moto).

Everything goes through the product's own storage path (fsspec/s3fs) configured only by the
standard AWS variables (`aws_server.aws_env`). The album is six small shared photos; a real face
engine describes each decoded photo once per test module and remembers its answer by pixels,
so a run over S3 that computes nothing new proves the photos decoded from S3 are the very
pixels decoded from disk. Failures are real ones for the client: a loopback relay in front of
the server answers chosen requests with 5xx/throttling errors or stops listening.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import aws_server
import pytest
from aws_server import create_bucket, set_moto_auth
from click.testing import CliRunner
from remembering_engine import RememberingEngine

from photosearch.index.album import Album
from photosearch.index.indexer import Indexer
from photosearch.index.store import IndexReader

s3fs = pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")

# The local moto server fixtures (assigned, not imported, so the names read as fixtures).
moto_endpoint = aws_server.moto_endpoint
aws_env = aws_server.aws_env

LFW = "multires/lfw_funneled_250_vs_150"
# album key -> shared photo: small ones (the engine's time dominates), 6 faces in all
ALBUM = {
    "lfw/Rob_Lowe.jpg": f"{LFW}/Rob_Lowe_0001_250px.jpg",
    "lfw/Nathalie_Baye.jpg": f"{LFW}/Nathalie_Baye_0002_250px.jpg",
    "people/img12.jpg": "people/deepface/img12.jpg",
    "people/Tom_Hanks.png": "people/insightface/lfw_named/Tom_Hanks/Tom_Hanks_54745.png",
    "group/two.jpg": "group/dlib/2008_001009.jpg",
    "group/no_face.jpg": "group/compreface/017_0.jpg",
}
EXTRA = ("lfw/Teresa_Williams.jpg", f"{LFW}/Teresa_Williams_0001_250px.jpg")
ALBUM_BUCKET = "album-bucket"
INDEX_BUCKET = "embeddings-bucket"
S3_ALBUM = f"s3://{ALBUM_BUCKET}/photos"
S3_INDEX = f"s3://{INDEX_BUCKET}/indexes/family"


# ----------------------------------------------------------------------------------------------
# The engine: real, and each decoded photo described once per module


@pytest.fixture(scope="module")
def engine() -> RememberingEngine:
    return RememberingEngine()


def copy_album(root: Path, shared_data: Path, photos: dict[str, str]) -> Path:
    for key, source in photos.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / "photos" / source, root / key)
    return root


@pytest.fixture(scope="module")
def reference(engine, shared_data: Path, tmp_path_factory) -> tuple[dict, dict]:
    """Index contents of a local run over the album and the extra photo (all computed here)."""
    root = tmp_path_factory.mktemp("reference")
    album = copy_album(root / "album", shared_data, {**ALBUM, EXTRA[0]: EXTRA[1]})
    Indexer(Album(album), root / "index", engine, workers=2).run()
    return index_contents(str(root / "index"))


@pytest.fixture
def album_dir(tmp_path: Path, shared_data: Path) -> Path:
    return copy_album(tmp_path / "album", shared_data, ALBUM)


# ----------------------------------------------------------------------------------------------
# S3 (moto) and the commands


@pytest.fixture
def s3(aws_env: str, monkeypatch: pytest.MonkeyPatch, engine) -> Iterator:
    """Two empty buckets on a clean server; the CLI's FaceEngine is the module's engine."""
    import boto3

    # s3fs keeps one filesystem (and client) per option set per process: start from none, so
    # each test's AWS variables are the ones read.
    s3fs.S3FileSystem.clear_instance_cache()

    def engine_for_cli(
        device: str = "auto", max_side: object = None, mirror: bool = True, **settings: object
    ):
        # `index` passes --max-side (give 640); `search` leaves it to the engine's default.
        assert max_side in (None, engine.max_side) and mirror, "run index with --max-side 640"
        return engine

    monkeypatch.setattr("photosearch.faces.engine.FaceEngine", engine_for_cli)
    client = boto3.client("s3")
    create_bucket(client, ALBUM_BUCKET)
    create_bucket(client, INDEX_BUCKET)
    yield client
    s3fs.S3FileSystem.clear_instance_cache()


def run_cli(*args: str):
    from photosearch.cli.main import main

    return CliRunner().invoke(main, list(args))


def upload_album(album: Path, destination: str) -> None:
    """The album goes up with the project's own uploader (`photosearch aws upload`)."""
    result = run_cli("aws", "upload", str(album), "--to", destination, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["uploaded"] == len(list(album.rglob("*.*")))


def index_contents(location: str) -> tuple[dict, dict]:
    """(photo -> record, (photo, face) -> (face row, descriptor bytes)) of a fresh snapshot.

    The storage stamp (mtime locally, ETag on S3) is left out: everything else must be equal.
    """
    snapshot = IndexReader(location).snapshot()
    photos: dict[str, dict] = {}
    for row in snapshot.photos.to_pylist():
        del row["stamp"]
        key = row.pop("photo")
        assert key not in photos, f"{key} recorded twice"
        photos[key] = row
    faces: dict[tuple[str, int], tuple] = {}
    for number, row in enumerate(snapshot.faces.to_pylist()):
        key = (row.pop("photo"), row.pop("face"))
        assert key not in faces, f"{key} recorded twice"
        faces[key] = (row, snapshot.descriptors[number].tobytes())
    assert len(photos) == snapshot.manifest.stats.photos
    assert len(faces) == snapshot.manifest.stats.faces == len(snapshot.descriptors)
    return photos, faces


def restricted(contents: tuple[dict, dict], keys) -> tuple[dict, dict]:
    photos, faces = contents
    keys = set(keys)
    return (
        {key: row for key, row in photos.items() if key in keys},
        {key: row for key, row in faces.items() if key[0] in keys},
    )


def assert_well_formed_on_s3(client, location: str) -> dict:
    """manifest.json parses, every shard it names is there, and nothing local-only is."""
    bucket, prefix = location.removeprefix("s3://").split("/", 1)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    keys = {item["Key"].removeprefix(prefix + "/") for item in listed}
    manifest = json.loads(
        client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
    )
    assert {shard["path"] for shard in manifest["shards"]} <= keys
    assert f"manifests/{manifest['generation']:010d}.json" in keys
    assert "writer.lock" not in keys  # object stores get no lock file
    return manifest


def one_error_line(result) -> str:
    """The command failed with one line on stderr (the last), and no traceback anywhere."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------------------------
# The Bar: an index built from an S3 album into S3 equals the local run's


def test_s3_album_into_s3_index_equals_the_local_run(
    s3, engine, album_dir, tmp_path, shared_data
) -> None:
    local_index = str(tmp_path / "local-index")
    Indexer(Album(album_dir), local_index, engine, workers=2).run()
    local = index_contents(local_index)
    upload_album(album_dir, S3_ALBUM)

    computed = engine.computed
    result = run_cli("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640")
    assert result.exit_code == 0, result.output
    assert "6 photos in the album: 6 indexed (6 faces" in result.stdout
    # Nothing new for the engine: the photos read from S3 decoded to the very same pixels.
    assert engine.computed == computed
    assert sorted(engine.seen[-6:]) == sorted(ALBUM)

    assert index_contents(S3_INDEX) == local  # photos, boxes, landmarks, descriptors: exact
    manifest = assert_well_formed_on_s3(s3, S3_INDEX)
    assert manifest["album"] == S3_ALBUM

    info = run_cli("info", "--index", S3_INDEX, "--json")
    assert info.exit_code == 0, info.output
    summary = json.loads(info.stdout)
    assert (summary["photos"], summary["faces"], summary["photos_without_faces"]) == (6, 6, 1)
    assert summary["index"] == S3_INDEX and summary["album"] == S3_ALBUM

    again = run_cli("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640")
    assert again.exit_code == 0, again.output
    assert "0 indexed" in again.stdout and "6 unchanged" in again.stdout

    # The same matches: `photosearch search` with another photo of Rob Lowe, on both indexes.
    reference_photo = shared_data / "photos" / LFW / "Rob_Lowe_0002_250px.jpg"
    found = []
    for location in (local_index, S3_INDEX):
        result = run_cli("search", str(reference_photo), "--index", location, "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload.pop("index") == location
        found.append(payload)
    # Each names its own album (a local folder, the S3 prefix); the rest is the same.
    assert found[0].pop("album") == str(album_dir) and found[1].pop("album") == S3_ALBUM
    assert found[0] == found[1]
    assert [match["photo"] for match in found[1]["matches"]] == ["lfw/Rob_Lowe.jpg"]


def test_local_album_into_s3_index(s3, engine, album_dir, reference, monkeypatch) -> None:
    # "Create embeddings locally, upload them to SavedEmbeddings." And the S3-only endpoint
    # variable is enough.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ.pop("AWS_ENDPOINT_URL"))
    location = f"s3://{INDEX_BUCKET}/from-laptop"
    computed = engine.computed
    result = run_cli("index", str(album_dir), "--index", location, "--max-side", "640", "-q")
    assert result.exit_code == 0, result.output
    assert engine.computed == computed
    assert index_contents(location) == restricted(reference, ALBUM)
    assert assert_well_formed_on_s3(s3, location)["album"] == str(album_dir)
    summary = json.loads(run_cli("info", "--index", location, "--json").stdout)
    assert (summary["photos"], summary["faces"]) == (6, 6)


def test_incremental_reindex_on_s3(s3, engine, album_dir, reference, shared_data) -> None:
    upload_album(album_dir, S3_ALBUM)

    def run():
        engine.seen.clear()
        return Indexer(Album(S3_ALBUM), S3_INDEX, engine, workers=2, report=print).run()

    assert run().indexed == 6

    # A new photo: only it reaches the engine.
    key, source = EXTRA
    s3.put_object(
        Bucket=ALBUM_BUCKET,
        Key=f"photos/{key}",
        Body=(shared_data / "photos" / source).read_bytes(),
    )
    stats = run()
    assert (stats.indexed, stats.unchanged, stats.deleted) == (1, 6, 0)
    assert engine.seen == [key]
    assert index_contents(S3_INDEX) == restricted(reference, [*ALBUM, key])

    # A deleted photo: dropped, nothing re-embedded.
    s3.delete_object(Bucket=ALBUM_BUCKET, Key="photos/group/two.jpg")
    stats = run()
    assert (stats.indexed, stats.unchanged, stats.deleted) == (0, 6, 1)
    assert engine.seen == []
    remaining = [k for k in [*ALBUM, key] if k != "group/two.jpg"]
    assert index_contents(S3_INDEX) == restricted(reference, remaining)
    assert_well_formed_on_s3(s3, S3_INDEX)


def test_s3_storage_is_configured_by_the_standard_aws_settings(s3, monkeypatch) -> None:
    fs = Album(S3_ALBUM).fs
    assert fs.s3.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 8}
    assert fs.s3.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    fs = IndexReader(S3_INDEX).storage.fs
    assert fs.s3.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_the_least_privilege_identities_can_index_and_read(
    s3, aws_env, engine, album_dir, reference, monkeypatch
) -> None:
    """Signed as the template's uploader (no s3:DeleteObject), an S3 album is indexed into S3;
    signed as the app role (read-only), the index is read. Moto enforces IAM here."""
    import boto3
    from aws_server import TemplateResolver, load_template

    resolver = TemplateResolver(load_template())
    album_bucket, index_bucket = resolver.ref("AlbumBucket"), resolver.ref("SavedEmbeddings")
    album, index = f"s3://{album_bucket}/photos", f"s3://{index_bucket}/indexes/family"
    create_bucket(s3, album_bucket)
    create_bucket(s3, index_bucket)
    upload_album(album_dir, album)

    iam = boto3.client("iam")
    uploader = resolver.resource("UploaderPolicy")["Properties"]
    policy = iam.create_policy(
        PolicyName=uploader["ManagedPolicyName"],
        PolicyDocument=json.dumps(uploader["PolicyDocument"]),
    )["Policy"]["Arn"]
    iam.create_user(UserName="laptop")
    iam.attach_user_policy(UserName="laptop", PolicyArn=policy)
    laptop = iam.create_access_key(UserName="laptop")["AccessKey"]
    app = resolver.resource("AppRole")["Properties"]
    caller = iam.create_user(UserName="tester")["User"]["Arn"]
    trust = {"Effect": "Allow", "Principal": {"AWS": caller}, "Action": "sts:AssumeRole"}
    role = iam.create_role(
        RoleName=app["RoleName"],
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
    )["Role"]["Arn"]
    for statement in app["Policies"]:
        iam.put_role_policy(
            RoleName=app["RoleName"],
            PolicyName=statement["PolicyName"],
            PolicyDocument=json.dumps(statement["PolicyDocument"]),
        )
    assume = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role}
    iam.put_user_policy(
        UserName="tester",
        PolicyName="assume-app",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [assume]}),
    )
    tester = iam.create_access_key(UserName="tester")["AccessKey"]

    # Few kept manifest copies: every commit then tries to delete older ones, which is denied.
    monkeypatch.setattr("photosearch.index.store.writer.KEEP_MANIFESTS", 2)
    set_moto_auth(aws_env, True)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", laptop["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", laptop["SecretAccessKey"])
        s3fs.S3FileSystem.clear_instance_cache()
        arguments = ("index", album, "--index", index, "--max-side", "640", "--commit-every", "2")
        result = run_cli(*arguments, "-q")
        assert result.exit_code == 0, result.output
        manifests = IndexReader(index).storage.listdir("manifests")
        assert len(manifests) > 2  # the deletes were refused, and the run went on

        credentials = boto3.client(
            "sts",
            aws_access_key_id=tester["AccessKeyId"],
            aws_secret_access_key=tester["SecretAccessKey"],
        ).assume_role(RoleArn=role, RoleSessionName="app")["Credentials"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
        s3fs.S3FileSystem.clear_instance_cache()
        assert index_contents(index) == restricted(reference, ALBUM)
        info = run_cli("info", "--index", index, "--json")
        assert info.exit_code == 0 and json.loads(info.stdout)["faces"] == 6, info.output
        # The app may neither list the album nor write the index: one clear line each, and
        # the index is left as it was.
        line = one_error_line(run_cli(*arguments, "-q"))
        assert f"access denied to {album}" in line, line
        generation = IndexReader(index).manifest().generation
        line = one_error_line(run_cli("index", str(album_dir), *arguments[2:], "-q"))
        assert line.startswith("error: writing ") and f"access denied to {index}" in line, line
        assert IndexReader(index).manifest().generation == generation
    finally:
        set_moto_auth(aws_env, False)


# ----------------------------------------------------------------------------------------------
# Failures: a relay in front of the server injects them


class S3Relay:
    """A loopback HTTP relay to the S3 server that can answer chosen requests itself with an S3
    error (5xx, SlowDown) or stop listening altogether: real failures for the client, with no
    hook in the product code. `fault(method, path)` decides per request: None (relay it),
    "500", "503" or "down"."""

    HOP_HEADERS = frozenset(
        {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}
    )

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.fault: Callable[[str, str], str | None] = lambda method, path: None
        self.injected: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1: answers "Expect: 100-continue" (botocore sends it with file bodies;
            # aiohttp then waits for the 100 before sending the body).
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                relay.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """The endpoint goes away: connections are refused from now on."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        method, path = request.command, request.path
        body = self._body(request)
        with self.lock:
            fault = self.fault(method, path)
            if fault:
                self.injected.append((method, path, fault))
        request.close_connection = True
        if fault == "down":
            self.stop()  # and this request gets no answer at all
            return
        if fault:
            code = "SlowDown" if fault == "503" else "InternalError"
            self._answer(request, int(fault), [("Content-Type", "application/xml")], _error(code))
            return
        upstream = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            headers = {
                name: value
                for name, value in request.headers.items()
                if name.lower() not in self.HOP_HEADERS
            }
            headers["Content-Length"] = str(len(body))
            upstream.request(method, path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            passed = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in self.HOP_HEADERS | {"server", "date"}
            ]
            if method == "HEAD":  # no body, but the object's size
                passed.append(("Content-Length", response.getheader("Content-Length", "0")))
            self._answer(request, response.status, passed, data)
        finally:
            upstream.close()

    @staticmethod
    def _body(request: BaseHTTPRequestHandler) -> bytes:
        # botocore sends a Content-Length (and "Expect: 100-continue" with it) on every body.
        assert "chunked" not in request.headers.get("Transfer-Encoding", "")
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    @staticmethod
    def _answer(request, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        if request.command != "HEAD":
            request.send_header("Content-Length", str(len(data)))
        request.send_header("Connection", "close")
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)


def _error(code: str) -> bytes:
    message = "Please reduce your request rate." if code == "SlowDown" else "injected failure"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>relay</RequestId></Error>"
    ).encode()


@pytest.fixture
def relay(s3, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Relay]:
    """The AWS variables point at a relay to the server (set up the buckets directly)."""
    relay = S3Relay(aws_env)
    monkeypatch.setenv("AWS_ENDPOINT_URL", relay.url)
    s3fs.S3FileSystem.clear_instance_cache()
    yield relay
    relay.stop()


def index_path(location: str, name: str) -> str:
    return "/" + location.removeprefix("s3://") + "/" + name


@pytest.mark.parametrize(
    "failure",
    [
        "shard upload fails (HTTP 500)",
        "manifest switch fails (HTTP 500) after the shard is written",
        "the endpoint stops listening mid-upload",
    ],
)
def test_failed_upload_keeps_the_last_commit_and_a_rerun_completes(
    relay, s3, engine, album_dir, reference, monkeypatch, failure
) -> None:
    upload_album(album_dir, S3_ALBUM)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # standard variable: keeps the failing run short
    s3fs.S3FileSystem.clear_instance_cache()
    manifest_path = index_path(S3_INDEX, "manifest.json")
    shards_path = index_path(S3_INDEX, "shards/")
    commits = []
    shards_tried = set()

    def fault(method: str, path: str) -> str | None:
        # Armed by the first committed manifest: the next commit is the one that fails.
        if method == "PUT" and path == manifest_path and not commits:
            commits.append(path)
            return None
        if not commits or method != "PUT":
            return None
        if path.startswith(shards_path):
            shards_tried.add(path)
        if failure.startswith("shard") and path.startswith(shards_path):
            return "500"
        if failure.startswith("manifest") and path == manifest_path:
            return "500"
        if failure.startswith("the endpoint") and path.startswith(shards_path):
            return "down"
        return None

    relay.fault = fault
    arguments = ("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640", "--workers", "2")
    result = run_cli(*arguments, "--commit-every", "2", "-q")
    line = one_error_line(result)
    assert relay.injected, "no failure was injected"
    assert line.startswith("error: writing ") and S3_INDEX in line, line
    if failure.startswith("the endpoint"):
        assert f"cannot reach {relay.url}" in line, line
        relay.start()  # the server is back, at the same address
    else:
        assert "InternalError" in line, line
    relay.fault = lambda method, path: None
    # The failed commit was not tried again on the way out (each try writes a new shard name).
    assert len(shards_tried) == 1, shards_tried

    # What is there is the last commit, whole: its photos exactly as the local run has them.
    manifest = assert_well_formed_on_s3(s3, S3_INDEX)
    assert manifest["generation"] == 1
    committed, faces = index_contents(S3_INDEX)
    assert 2 <= len(committed) < len(ALBUM)
    assert (committed, faces) == restricted(reference, committed)

    # The re-run does what is missing, only that, and nothing is lost or duplicated.
    engine.seen.clear()
    rerun = run_cli(*arguments)
    assert rerun.exit_code == 0, rerun.output
    assert sorted(engine.seen) == sorted(key for key in ALBUM if key not in committed)
    assert index_contents(S3_INDEX) == restricted(reference, ALBUM)
    assert_well_formed_on_s3(s3, S3_INDEX)


def test_throttling_and_5xx_are_retried_with_backoff(relay, s3, engine, album_dir, reference):
    upload_album(album_dir, S3_ALBUM)
    s3fs.S3FileSystem.clear_instance_cache()
    attempts: dict[tuple[str, str], int] = {}

    def fault(method: str, path: str) -> str | None:
        # Every request fails the first time it is made: SlowDown for writes, 500 for the rest.
        attempts[method, path] = attempts.get((method, path), 0) + 1
        if attempts[method, path] > 1:
            return None
        return "503" if method == "PUT" else "500"

    relay.fault = fault
    result = run_cli("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640", "-q")
    assert result.exit_code == 0, result.output
    kinds = {status for _, _, status in relay.injected}
    assert kinds == {"500", "503"} and len(relay.injected) >= 10
    assert index_contents(S3_INDEX) == restricted(reference, ALBUM)


# ----------------------------------------------------------------------------------------------
# One clear line for what users get wrong


def test_missing_credentials_is_one_clear_line(s3, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3fs.S3FileSystem.clear_instance_cache()
    for arguments in (
        ("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640", "-q"),
        ("info", "--index", S3_INDEX),
    ):
        line = one_error_line(run_cli(*arguments))
        assert "no usable AWS credentials" in line and "AWS_PROFILE" in line, line
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    s3fs.S3FileSystem.clear_instance_cache()
    line = one_error_line(run_cli("info", "--index", S3_INDEX))
    assert "AWS profile 'no-such-profile' not found (check AWS_PROFILE)" in line, line


def test_missing_bucket_is_one_clear_line(s3, album_dir) -> None:
    quiet = ("--max-side", "640", "-q")
    for arguments, bucket in (
        (("index", "s3://no-such-album/photos", "--index", S3_INDEX, *quiet), "no-such-album"),
        (("index", str(album_dir), "--index", "s3://no-such-index/x", *quiet), "no-such-index"),
        (("info", "--index", "s3://no-such-index/x"), "no-such-index"),
    ):
        line = one_error_line(run_cli(*arguments))
        assert f"bucket '{bucket}' does not exist" in line, line
    # Nothing was created on the way (s3fs's makedirs would create a missing bucket).
    names = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert names == {ALBUM_BUCKET, INDEX_BUCKET}


def test_unreachable_endpoint_is_one_clear_line(s3, monkeypatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    for arguments in (
        ("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640", "-q"),
        ("info", "--index", S3_INDEX),
    ):
        line = one_error_line(run_cli(*arguments))
        assert f"cannot reach http://127.0.0.1:{port} (" in line and "AWS_ENDPOINT_URL" in line


def test_access_denied_is_one_clear_line(s3, aws_env, monkeypatch, album_dir) -> None:
    import boto3

    iam = boto3.client("iam")
    iam.create_user(UserName="no-s3")  # a user with no policy at all
    key = iam.create_access_key(UserName="no-s3")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    s3fs.S3FileSystem.clear_instance_cache()
    set_moto_auth(aws_env, True)
    try:
        for arguments, denied in (
            (("index", S3_ALBUM, "--index", S3_INDEX, "--max-side", "640", "-q"), S3_ALBUM),
            (("index", str(album_dir), "--index", S3_INDEX, "--max-side", "640"), S3_INDEX),
            (("info", "--index", S3_INDEX), S3_INDEX),
        ):
            line = one_error_line(run_cli(*arguments))
            bucket = denied.removeprefix("s3://").split("/")[0]
            assert f"access denied to {denied}" in line and f"bucket '{bucket}'" in line, line
    finally:
        set_moto_auth(aws_env, False)
