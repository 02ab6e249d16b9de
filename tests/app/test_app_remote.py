"""The app searching through an endpoint (`photosearch aws serve-local`'s handler, in this
process) gives the local search's results: automatic with strictness, fixed distance, face
choice in a group photo, saved descriptors and "not me". Real photos, real engine, real index.
"""

from __future__ import annotations

import pytest
from app_album import OBAMA_REFERENCE, PHOTOS, TWO_FACES_REFERENCE, shared_album

from photosearch.app import logic

pytest.importorskip("boto3", reason="boto3 (the aws extra) is not installed")
from photosearch.aws import inference
from photosearch.aws.local import LocalEndpoint

ENDPOINT = "photosearch-search"


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return shared_album(tmp_path_factory)


@pytest.fixture(scope="module")
def reader():
    return logic.ReferenceReader()


@pytest.fixture(scope="module")
def remote(album, reader, tmp_path_factory):
    folder = tmp_path_factory.mktemp("aws")
    model = inference.SearchModel(str(album.index), engine=reader.engine, recheck_seconds=0)
    with (
        pytest.MonkeyPatch.context() as patch,
        LocalEndpoint(model, endpoint_name=ENDPOINT) as server,
    ):
        for name, value in {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": server.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_CONFIG_FILE": str(folder / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
        }.items():
            patch.setenv(name, value)
        yield logic.EndpointSearch(ENDPOINT)
    model.close()


@pytest.fixture(scope="module")
def library(album):
    return logic.Library(str(album.album), str(album.index))


def pairs(matches):
    return [(m.photo, m.face_index) for m in matches]


def test_endpoint_reads_references_like_the_engine(remote, reader):
    for name in (OBAMA_REFERENCE, TWO_FACES_REFERENCE):
        data = (PHOTOS / name).read_bytes()
        here, there = reader.read(data, name), remote.read(data, name)
        assert there.boxes == here.boxes and there.chosen == here.chosen
        assert abs(there.descriptors - here.descriptors).max() < 1e-6
        assert len(there.face_thumbnails) == there.face_count
    with pytest.raises(logic.ReferencePhotoError, match="can't be used: not an image"):
        remote.read(b"milk, eggs\n", "notes.txt")


def test_endpoint_search_gives_the_local_results(remote, reader, library, tmp_path):
    store = logic.PeopleStore(tmp_path / "people")
    album = library.album.location
    group = reader.read((PHOTOS / TWO_FACES_REFERENCE).read_bytes(), "two.jpg")
    obama = reader.read((PHOTOS / OBAMA_REFERENCE).read_bytes(), "obama.jpg")
    session = logic.SearchSession()
    session.uploads = {"a": obama, "b": group}
    checked = 0
    for face in range(group.face_count):  # each face of the group photo in turn
        session.choose_face("b", face)
        for automatic, strictness, threshold in (
            (True, None, 0.6),
            (True, 0.05, 0.6),
            (True, 0.25, 0.6),
            (False, None, 0.5),
            (False, None, 0.62),
        ):
            session.automatic, session.strictness, session.threshold = (
                automatic,
                strictness,
                threshold,
            )
            local = session.matches(library, store)
            there = session.matches(library, store, remote)
            assert pairs(there) == pairs(local), (face, automatic, strictness, threshold)
            for a, b in zip(there, local, strict=True):
                assert a.distance == pytest.approx(b.distance, abs=1e-5)
            checked += bool(local)
    assert checked >= 5
    # "Not me" and a saved person's descriptors go to the endpoint too.
    session.choose_face("b", 0)
    session.automatic, session.strictness = True, None
    worst = session.matches(library, store)[-1]
    session.mark_not_me(worst, store, album)
    person = session.save_person("Both", store, album, "m")
    fresh = logic.SearchSession(person_id=person.id)
    local = fresh.matches(library, store)
    assert worst.photo not in {m.photo for m in local}
    assert pairs(fresh.matches(library, store, remote)) == pairs(local)


def test_endpoint_requests_take_strictness_and_descriptors():
    import json

    def parse(payload):
        return inference.input_fn(json.dumps(payload), "application/json")

    row = [0.01] * 128
    request = parse({"descriptors": [row], "strictness": 0.1})
    assert request.images == [] and request.strictness == 0.1 and len(request.descriptors) == 1
    for payload, wording in (
        ({"descriptors": [row], "strictness": 0.1, "threshold": 0.5}, "send one of them"),
        ({"descriptors": [row], "strictness": 5}, '"strictness" must be from 0 to'),
        ({"descriptors": [row], "strictness": "high"}, '"strictness" must be a number'),
        ({"descriptors": [[0.1] * 127]}, "each a list of 128 numbers"),
        ({"descriptors": [[float("nan")] * 128]}, "each a list of 128 numbers"),
        ({}, '"images" must be a non-empty list'),
    ):
        with pytest.raises(inference.RequestError, match=wording) as refused:
            parse(payload)
        assert refused.value.status_code == 400


def test_the_slim_image_needs_no_torch(album, tmp_path):
    """What the slim image runs (the CLI, the gateway, the page's logic with an endpoint)
    imports and reads the index with torch unavailable."""
    import subprocess
    import sys

    script = tmp_path / "slim.py"
    script.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'dlib'):\n"
        "            raise ImportError('not in the slim image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from photosearch.cli.main import main\n"
        "import photosearch.app.gateway.serve, photosearch.app.streamlit_main\n"
        "from photosearch.app import logic\n"
        "library = logic.Library(sys.argv[1], sys.argv[2])\n"
        "assert library.status().indexed and library.searchable() is not None\n"
        "logic.EndpointSearch('photosearch-search')\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(album.album), str(album.index)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
