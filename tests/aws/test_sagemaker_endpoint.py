"""The search endpoint's handler, served locally and reached through boto3's sagemaker-runtime.

The index lives in (moto) S3 and was built by the local indexer; the handler runs behind
`LocalEndpoint` with the SageMaker container contract (/ping, /invocations) and the runtime
API's path, and `search_via_endpoint` reaches it through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME,
exactly as it would reach a SageMaker endpoint. Its answers are compared with a search run
here, in-process, on the same index.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aws_server
import numpy as np
import pytest
from aws_server import create_bucket, point_boto_at
from click.testing import CliRunner
from PIL import Image

boto3 = pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")

from botocore.exceptions import ClientError  # noqa: E402

from photosearch.aws import endpoint_client, inference  # noqa: E402
from photosearch.aws.clients import make_client, make_session  # noqa: E402
from photosearch.aws.local import LocalEndpoint  # noqa: E402
from photosearch.cli.aws import aws  # noqa: E402
from photosearch.faces.base import largest_face  # noqa: E402
from photosearch.faces.engine import FaceEngine  # noqa: E402
from photosearch.faces.images import load_image  # noqa: E402
from photosearch.index.indexer import index_album  # noqa: E402
from photosearch.index.store import IndexReader  # noqa: E402

moto_endpoint = aws_server.moto_endpoint

LFW = "multires/lfw_funneled_250_vs_150"
ALBUM = {
    "lfw/rob_1.jpg": f"{LFW}/Rob_Lowe_0001_250px.jpg",
    "lfw/rob_2.jpg": f"{LFW}/Rob_Lowe_0002_150px.jpg",
    "lfw/teresa.jpg": f"{LFW}/Teresa_Williams_0001_150px.jpg",
    "lfw/nathalie.jpg": f"{LFW}/Nathalie_Baye_0002_150px.jpg",
}
ALBUM_BUCKET = "ep-album"
INDEX_BUCKET = "ep-embeddings"
S3_ALBUM = f"s3://{ALBUM_BUCKET}/photos"
S3_INDEX = f"s3://{INDEX_BUCKET}/indexes/family"
ENDPOINT = "photosearch-search"
ASYNC_LOCATION = f"s3://{INDEX_BUCKET}/async/{ENDPOINT}"


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(device="cpu")


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> Path:
    return shared_data / "photos"


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str, photos: Path, engine, tmp_path_factory) -> Iterator[str]:
    """Album and index in S3, the handler served locally, boto3's runtime client sent to it."""
    with pytest.MonkeyPatch.context() as patch:
        point_boto_at(patch, moto_endpoint, tmp_path_factory.mktemp("aws"))
        s3 = make_client(make_session(), "s3")
        for bucket in (ALBUM_BUCKET, INDEX_BUCKET):
            create_bucket(s3, bucket)
        for key, source in ALBUM.items():
            s3.upload_file(str(photos / source), ALBUM_BUCKET, f"photos/{key}")
        index_album(S3_ALBUM, S3_INDEX, engine=engine, report=lambda line: None)
        model = inference.SearchModel(S3_INDEX, engine=engine, recheck_seconds=0)
        with LocalEndpoint(
            model, endpoint_name=ENDPOINT, async_output_uri=ASYNC_LOCATION, s3=s3
        ) as server:
            patch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
            yield server.url
        model.close()


def local_search(
    engine, references: list[bytes], threshold=None, exclude=(), faces=None
) -> list[dict]:
    """The same search run here: the engine on each reference, the index read directly."""
    descriptors = []
    for number, data in enumerate(references):
        found = engine.faces(load_image(data, max_side=engine.max_side))
        wanted = None if faces is None else faces[number]
        face = largest_face(found) if wanted is None else found[wanted]
        descriptors.append(face.descriptor)
    index = inference.LoadedIndex.from_snapshot(IndexReader(S3_INDEX).snapshot())
    matches = inference.find_matches(
        np.stack(descriptors), index, threshold=threshold, exclude=exclude
    )
    if threshold is None:  # the adaptive default: checked in tests/test_search.py
        return matches
    # Cross-check against plain distances: every photo with a face under the threshold.
    distances = np.linalg.norm(
        index.descriptors[:, None, :].astype(np.float64) - np.stack(descriptors)[None], axis=2
    ).min(axis=1)
    near = {
        photo
        for photo, number, distance in zip(
            index.face_photos, index.face_numbers, distances, strict=True
        )
        if distance <= threshold and (photo, number) not in set(exclude)
    }
    assert {match["photo"] for match in matches} == near
    return matches


def read(photos: Path, relative: str) -> bytes:
    return (photos / relative).read_bytes()


def runtime_error(body: bytes, content_type: str, accept: str = "application/json") -> ClientError:
    runtime = boto3.client("sagemaker-runtime")
    with pytest.raises(ClientError) as failure:
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT, Body=body, ContentType=content_type, Accept=accept
        )
    return failure.value


def test_search_through_boto3_returns_the_local_search(endpoint, engine, photos) -> None:
    reference = read(photos, f"{LFW}/Rob_Lowe_0001_150px.jpg")  # not in the album

    matches = endpoint_client.search_via_endpoint(ENDPOINT, [reference])

    assert matches == local_search(engine, [reference])
    assert {match["photo"] for match in matches} == {"lfw/rob_1.jpg", "lfw/rob_2.jpg"}
    assert matches[0]["photo"] == "lfw/rob_1.jpg"  # the same picture, larger: closest
    answer = endpoint_client.invoke_search(ENDPOINT, [reference])
    assert answer["matches"] == matches
    assert answer["references"][0]["chosen"] == 0 and len(answer["references"][0]["faces"]) == 1
    manifest = IndexReader(S3_INDEX).manifest()
    assert answer["index"]["generation"] == manifest.generation
    assert answer["index"]["photos"] == len(ALBUM) and answer["index"]["faces"] == len(ALBUM)


def test_options_threshold_exclusions_and_face_choice(endpoint, engine, photos) -> None:
    references = [
        read(photos, f"{LFW}/Rob_Lowe_0001_150px.jpg"),
        read(photos, f"{LFW}/Teresa_Williams_0001_250px.jpg"),
    ]
    exclude = [("lfw/rob_1.jpg", 0)]

    matches = endpoint_client.search_via_endpoint(
        ENDPOINT, references, 0.55, face=[0, None], exclude=exclude
    )

    assert matches == local_search(engine, references, 0.55, exclude, faces=[0, None])
    assert {match["photo"] for match in matches} >= {"lfw/teresa.jpg"}
    assert "lfw/rob_1.jpg" not in {match["photo"] for match in matches}
    with pytest.raises(endpoint_client.EndpointSearchError) as failure:
        endpoint_client.search_via_endpoint(ENDPOINT, references[:1], face=3)
    assert failure.value.status == 422
    assert "has 1 face: face 3 does not exist" in str(failure.value)


def test_a_new_commit_is_searched_without_a_restart(endpoint, engine, photos) -> None:
    reference = read(photos, f"{LFW}/Mary_Katherine_Smart_0001_250px.jpg")
    assert endpoint_client.search_via_endpoint(ENDPOINT, [reference]) == []
    s3 = make_client(make_session(), "s3")
    s3.upload_file(
        str(photos / LFW / "Mary_Katherine_Smart_0001_150px.jpg"), ALBUM_BUCKET, "photos/mary.jpg"
    )
    index_album(S3_ALBUM, S3_INDEX, engine=engine, report=lambda line: None)

    matches = endpoint_client.search_via_endpoint(ENDPOINT, [reference])

    assert [match["photo"] for match in matches] == ["mary.jpg"]
    assert matches == local_search(engine, [reference])


def test_async_invocation_goes_through_s3(endpoint, photos) -> None:
    """InvokeEndpointAsync: request and answer in S3, the same matches; failures too."""
    reference = read(photos, f"{LFW}/Rob_Lowe_0001_150px.jpg")
    s3 = make_client(make_session(), "s3")

    matches = endpoint_client.search_via_endpoint(
        ENDPOINT, [reference], async_location=ASYNC_LOCATION, s3=s3
    )

    assert matches == endpoint_client.search_via_endpoint(ENDPOINT, [reference])
    with pytest.raises(endpoint_client.EndpointSearchError) as failure:
        endpoint_client.invoke_search(
            ENDPOINT, [b"GIF89a broken"], async_location=ASYNC_LOCATION, s3=s3, poll_seconds=0.05
        )
    assert failure.value.status == 400 and "images[0] cannot be read as a photo" in str(
        failure.value
    )
    left = s3.list_objects_v2(Bucket=INDEX_BUCKET, Prefix="async/").get("Contents", [])
    assert left == []  # requests and answers are removed once read


def _shrunk_jpeg(path: Path, side: int = 160) -> bytes:
    with Image.open(path) as image:
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG")
        return buffer.getvalue()


def _json(payload) -> bytes:
    return json.dumps(payload).encode()


def test_bad_requests_get_4xx_with_clear_messages(endpoint, photos) -> None:
    photo = base64.b64encode(read(photos, f"{LFW}/Rob_Lowe_0001_150px.jpg")).decode()
    landscape = _shrunk_jpeg(photos / "people/photoprism/no_face_expected/7.jpg")
    cases = [
        # (body, content type, accept, status, words in the message)
        (b"%PDF-1.4 not a photo", "image/jpeg", None, 400, "cannot be read as a photo"),
        (landscape, "image/jpeg", None, 422, "no face found"),
        (b"\xff" * (7 * 1024 * 1024), "image/jpeg", None, 413, "request too large: 7.0 MiB"),
        (b"{not json", "application/json", None, 400, "not valid JSON"),
        (b"[1, 2]", "application/json", None, 400, "expected a JSON object"),
        (_json({"images": "abc"}), "application/json", None, 400, '"images" must be'),
        (_json({"images": ["!!"]}), "application/json", None, 400, "images[0] is not valid base64"),
        (
            _json({"images": [photo], "threshold": "high"}),
            "application/json",
            None,
            400,
            '"threshold" must be a number',
        ),
        (_json({"images": [photo], "threshold": 7}), "application/json", None, 400, "at most 2.0"),
        (
            _json({"images": [photo], "colour": "red"}),
            "application/json",
            None,
            400,
            "unknown field(s) colour",
        ),
        (
            _json({"images": [photo], "face": "first"}),
            "application/json",
            None,
            400,
            '"face" must be',
        ),
        (
            _json({"images": [photo], "exclude": ["x.jpg"]}),
            "application/json",
            None,
            400,
            '"exclude" must be',
        ),
        (b"", "image/jpeg", None, 400, "empty request"),
        (b"hello", "text/plain", None, 415, "unsupported Content-Type 'text/plain'"),
        (_json({"images": [photo]}), "application/json", "text/csv", 406, "the answer is JSON"),
    ]
    for body, content_type, accept, status, words in cases:
        error = runtime_error(body, content_type, accept or "application/json")
        assert error.response["Error"]["Code"] == "ModelError", words
        assert error.response["OriginalStatusCode"] == status, words
        assert words in error.response["OriginalMessage"], error.response["OriginalMessage"]
    # What `photosearch search --endpoint` shows: the status and the handler's sentence.
    with pytest.raises(endpoint_client.EndpointSearchError) as failure:
        endpoint_client.search_via_endpoint(ENDPOINT, [landscape])
    assert failure.value.status == 422
    assert str(failure.value).startswith(f"endpoint {ENDPOINT} refused the search (422): images[0]")


def test_container_contract_ping_and_invocations(endpoint, photos) -> None:
    with urllib.request.urlopen(f"{endpoint}/ping", timeout=10) as response:
        assert response.status == 200
    reference = read(photos, f"{LFW}/Rob_Lowe_0002_250px.jpg")
    request = urllib.request.Request(
        f"{endpoint}/invocations", data=reference, headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert answer["matches"][0]["photo"] == "lfw/rob_2.jpg"
    assert answer["matches"] == endpoint_client.search_via_endpoint(ENDPOINT, [reference])
    bad = urllib.request.Request(
        f"{endpoint}/invocations", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(bad, timeout=10)
    assert failure.value.code == 400
    assert b'"images" must be a non-empty list' in failure.value.read()
    # Another endpoint name: the runtime's own ValidationError, not the handler's.
    runtime = boto3.client("sagemaker-runtime")
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="other", Body=reference, ContentType="image/jpeg")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"


def test_serve_local_without_an_index_says_so(endpoint) -> None:
    result = CliRunner().invoke(
        aws, ["serve-local", "--index", f"s3://{INDEX_BUCKET}/indexes/none", "--port", "0"]
    )
    assert result.exit_code == 2
    assert f"no photosearch index at s3://{INDEX_BUCKET}/indexes/none yet" in result.output


def test_cli_search_through_the_endpoint_equals_the_local_cli_search(endpoint, photos, tmp_path):
    """`photosearch search REF --endpoint NAME` returns the photos a local search returns."""
    from photosearch.cli.main import main

    reference = tmp_path / "rob.jpg"
    reference.write_bytes(read(photos, f"{LFW}/Rob_Lowe_0001_150px.jpg"))
    runner = CliRunner()
    remote = runner.invoke(main, ["search", str(reference), "--endpoint", ENDPOINT, "--json"])
    local = runner.invoke(main, ["search", str(reference), "--index", S3_INDEX, "--json"])
    assert remote.exit_code == 0, remote.stderr
    assert local.exit_code == 0, local.stderr
    remote_matches = json.loads(remote.stdout)["matches"]
    assert remote_matches == json.loads(local.stdout)["matches"]
    assert "lfw/rob_2.jpg" in {m["photo"] for m in remote_matches}
    # A fixed distance goes through too, and a bad reference is a one-line error.
    fixed = runner.invoke(
        main, ["search", str(reference), "--endpoint", ENDPOINT, "--threshold", "0.6", "--json"]
    )
    assert fixed.exit_code == 0 and json.loads(fixed.stdout)["mode"] == "distance"
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    refused = runner.invoke(main, ["search", str(text), "--endpoint", ENDPOINT])
    assert refused.exit_code == 2 and "cannot be read as a photo" in refused.stderr
