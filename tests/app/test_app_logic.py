"""The web app's logic (photosearch.app.logic and the launcher) on a real, really indexed album.

Expected matches come from the dataset's labels (tests/app_album.py), never from our results.
"""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import aws_server
import numpy as np
import pytest
from app_album import (
    BROKEN_KEY,
    OBAMA_REFERENCE,
    PHOTOS,
    TWO_FACES_REFERENCE,
    album_keys_showing,
    shared_album,
)
from click.testing import CliRunner
from PIL import Image

from photosearch.app import launch, logic
from photosearch.faces.base import EngineWrapper

# The local S3 server fixtures (assigned, not imported, so the names read as fixtures).
moto_endpoint = aws_server.moto_endpoint
aws_env = aws_server.aws_env

OBAMA = "Barack_Obama"
BIDEN = "Joe_Biden"


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return shared_album(tmp_path_factory)


@pytest.fixture(scope="module")
def library(album):
    return logic.Library(str(album.album), str(album.index))


@pytest.fixture(scope="module")
def reader():
    return logic.ReferenceReader()


@pytest.fixture(scope="module")
def obama(reader):
    return reader.read((PHOTOS / OBAMA_REFERENCE).read_bytes(), "obama.jpg")


@pytest.fixture(scope="module")
def two_faces(reader):
    return reader.read((PHOTOS / TWO_FACES_REFERENCE).read_bytes(), "two.jpg")


@pytest.fixture
def people(tmp_path):
    return logic.PeopleStore(tmp_path / "people")


class Upload:
    """An uploaded file as the page hands it over (the shape of Streamlit's UploadedFile)."""

    def __init__(self, file_id: str, name: str, data: bytes) -> None:
        self.file_id, self.name, self.data = file_id, name, data

    def getvalue(self) -> bytes:
        return self.data


# -- status and search ---------------------------------------------------------------------------


def test_status_reports_the_index(library, album):
    status = library.status()
    photo_files = [p for p in album.album.rglob("*") if p.is_file()]
    assert status.indexed and status.album == str(album.album.resolve())
    assert status.photos == len(photo_files)
    assert status.no_face == 1  # nature/no_face.jpg
    assert status.faces == len(library.searchable().descriptors) > 0
    assert [photo for photo, _ in status.errors] == [BROKEN_KEY]
    assert "not an image" in status.errors[0][1]


def test_reference_finds_the_labelled_person(library, obama):
    index = library.searchable()
    matches = logic.find_matches(obama.descriptor[None], index)
    assert {m.photo for m in matches} == album_keys_showing(OBAMA)
    distances = [m.distance for m in matches]
    assert distances == sorted(distances)
    for match in matches:
        # Independently recomputed from the index: the box and distance of that face.
        rows = [
            i
            for i, (photo, face) in enumerate(
                zip(index.face_photos, index.face_numbers, strict=True)
            )
            if photo == match.photo and face == match.face_index
        ]
        assert len(rows) == 1
        expected = np.linalg.norm(index.descriptors[rows[0]].astype(np.float64) - obama.descriptor)
        assert match.distance == pytest.approx(expected, abs=1e-6)
        assert match.box == tuple(int(v) for v in index.boxes[rows[0]])
        assert match.distance <= logic.DEFAULT_THRESHOLD


def test_threshold_moves_the_results(library, obama):
    index = library.searchable()
    default = logic.find_matches(obama.descriptor[None], index)
    cut = (default[1].distance + default[2].distance) / 2  # between the 2nd and 3rd best
    stricter = logic.find_matches(obama.descriptor[None], index, threshold=cut)
    looser = logic.find_matches(obama.descriptor[None], index, threshold=logic.THRESHOLD_MAX)
    assert [m.photo for m in stricter] == [m.photo for m in default[:2]]
    assert {m.photo for m in default} <= {m.photo for m in looser}
    assert "Stricter" in logic.threshold_words(logic.THRESHOLD_MIN)
    assert "Looser" in logic.threshold_words(logic.THRESHOLD_MAX)
    assert "usual" in logic.threshold_words(logic.DEFAULT_THRESHOLD)


@pytest.mark.parametrize(
    ("options", "session_settings"),
    [
        ((), {}),  # both default to the automatic (adaptive) search
        (("--strictness", "0.2"), {"strictness": 0.2}),
        (("--threshold", "0.55"), {"automatic": False, "threshold": 0.55}),
    ],
    ids=["automatic", "stricter", "fixed-distance"],
)
def test_matches_equal_the_cli(library, album, obama, options, session_settings):
    """The app returns exactly what `photosearch search` returns with the same settings."""
    import json

    from photosearch.cli.main import main

    result = CliRunner().invoke(
        main,
        ["search", str(PHOTOS / OBAMA_REFERENCE), "--index", str(album.index), *options, "--json"],
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout.strip().splitlines()[-1])["matches"]
    session = logic.SearchSession(**session_settings)
    session.sync_uploads(
        [Upload("a", "obama.jpg", (PHOTOS / OBAMA_REFERENCE).read_bytes())], logic.ReferenceReader()
    )
    app = session.matches(library, logic.PeopleStore(Path(album.album).parent / "no-people"))
    assert cli, "the reference finds nobody: the comparison would prove nothing"
    assert [m["photo"] for m in cli] == [m.photo for m in app]
    assert [list(m["box"]) for m in cli] == [list(m.box) for m in app]
    assert [m["distance"] for m in cli] == pytest.approx([m.distance for m in app], abs=1e-5)


def test_strictness_words_and_default(library):
    default = logic.default_strictness(library.searchable())
    assert logic.STRICTNESS_MIN < default < logic.STRICTNESS_MAX
    assert default == logic.default_strictness(library.searchable())  # stable per album
    assert "usual" in logic.strictness_words(default, default)
    assert "Stricter" in logic.strictness_words(default + 0.1, default)
    assert "Looser" in logic.strictness_words(default - 0.1, default)


# -- references ----------------------------------------------------------------------------------


def test_reference_with_several_faces_lets_the_user_choose(library, two_faces):
    assert two_faces.face_count == 2
    areas = [(r - x + 1) * (b - y + 1) for x, y, r, b in two_faces.boxes]
    assert two_faces.chosen == int(np.argmax(areas))  # the largest face by default
    for thumbnail in two_faces.face_thumbnails:
        with Image.open(io.BytesIO(thumbnail)) as picture:
            assert picture.format == "JPEG" and max(picture.size) == logic.FACE_THUMBNAIL_SIDE
    index = library.searchable()
    found = {
        face: {m.photo for m in logic.find_matches(two_faces.descriptors[face][None], index)}
        for face in range(2)
    }
    # Each face finds its own person (the group photo itself shows both): Obama on the left.
    obama = min(range(2), key=lambda face: two_faces.boxes[face][0])
    assert found[obama] == album_keys_showing(OBAMA)
    assert found[1 - obama] == album_keys_showing(BIDEN)

    session = logic.SearchSession()
    session.uploads["x"] = logic.Reference(
        two_faces.name,
        two_faces.descriptors,
        two_faces.boxes,
        two_faces.face_thumbnails,
        two_faces.chosen,
    )
    session.choose_face("x", 1 - obama)
    assert {m.photo for m in session.matches(library, logic.PeopleStore("/nonexistent"))} == (
        album_keys_showing(BIDEN)
    )


def test_bad_references_get_a_clear_message(reader, album):
    with pytest.raises(logic.ReferencePhotoError, match=r"“notes.txt” can't be used: not an image"):
        reader.read(b"shopping list: milk, eggs\n", "notes.txt")
    no_face = (album.album / "nature" / "no_face.jpg").read_bytes()
    with pytest.raises(logic.ReferencePhotoError, match=r"No face found in “landscape\.jpg”"):
        reader.read(no_face, "landscape.jpg")
    session = logic.SearchSession()
    session.sync_uploads([Upload("t", "notes.txt", b"hello")], reader)
    assert session.references == [] and "not an image" in session.upload_errors[0]
    session.sync_uploads([], reader)  # removed from the uploader: forgotten
    assert session.uploads == {}


def test_phone_photos_sideways_and_heic(reader, library, obama):
    """A reference stored sideways with an EXIF orientation, and an iPhone HEIC, both work."""
    import pillow_heif

    with Image.open(PHOTOS / OBAMA_REFERENCE) as original:
        upright = original.convert("RGB")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned left...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90° clockwise to view"
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    turned = reader.read(buffer.getvalue(), "IMG_0001.JPG")
    assert turned.face_count == 1
    # Boxes are in upright coordinates: the face is where it is in the upright photo.
    assert np.allclose(turned.boxes[0], obama.boxes[0], atol=6)

    heif = pillow_heif.from_pillow(upright)
    buffer = io.BytesIO()
    heif.save(buffer, quality=95)
    heic = reader.read(buffer.getvalue(), "IMG_0002.HEIC")
    expected = {m.photo for m in logic.find_matches(obama.descriptor[None], library.searchable())}
    for reference in (turned, heic):
        found = logic.find_matches(reference.descriptor[None], library.searchable())
        assert {m.photo for m in found} == expected


# -- session, exclusions, saved people ----------------------------------------------------------


def test_not_me_stays_excluded_for_a_saved_person(library, obama, tmp_path):
    album = library.album.location
    store = logic.PeopleStore(tmp_path / "people")
    session = logic.SearchSession()
    session.uploads["a"] = obama
    before = session.matches(library, store)
    worst = before[-1]
    session.mark_not_me(worst, store, album)
    after = session.matches(library, store)
    assert [m.photo for m in after] == [m.photo for m in before[:-1]]

    person = session.save_person("Barack", store, album, "model-x")
    saved_files = sorted(p.name for p in (tmp_path / "people" / person.id).iterdir())
    assert saved_files == ["face.jpg", "person.json"]  # no photo is stored

    # A new browser session (and a new store object) searching the saved person.
    fresh = logic.SearchSession()
    fresh_store = logic.PeopleStore(tmp_path / "people")
    assert [p.name for p in fresh_store.list()] == ["Barack"]
    fresh.use_person(person.id)
    assert [m.photo for m in fresh.matches(library, fresh_store)] == [m.photo for m in after]
    np.testing.assert_array_equal(fresh_store.get(person.id).descriptors[0], obama.descriptor)

    second = after[-1]
    fresh.mark_not_me(second, fresh_store, album)  # saved straight into the person
    assert (second.photo, second.face_index) in fresh_store.get(person.id).exclusions_for(album)
    assert second.photo not in {m.photo for m in fresh.matches(library, fresh_store)}

    assert fresh_store.forget(person.id)
    assert not (tmp_path / "people" / person.id).exists()
    assert fresh_store.list() == [] and fresh.person(fresh_store) is None
    assert not fresh_store.forget(person.id)


# -- results -------------------------------------------------------------------------------------


def test_paging():
    matches = [logic.Match(f"p{i:03d}.jpg", i / 100, (0, 0, 9, 9), 0, 0.5) for i in range(50)]
    first = logic.page_of(matches, 1, per_page=24)
    last = logic.page_of(matches, 99, per_page=24)
    assert (first.pages, first.first, first.last, len(first.matches)) == (3, 1, 24, 24)
    assert (last.number, last.first, last.last, last.matches[-1].photo) == (3, 49, 50, "p049.jpg")
    assert logic.page_of([], 5).first == 0 and logic.page_of([], 5).pages == 1


def test_thumbnails_box_the_matched_face(library, obama):
    matches = logic.find_matches(obama.descriptor[None], library.searchable())
    for match in matches:
        data = library.thumbnails.get(match)
        assert isinstance(data, bytes)
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.size == logic.RESULT_THUMBNAIL_SIZE
            pixels = np.asarray(picture.convert("RGB"), dtype=np.int32)
        # The box colour appears around the face's position in the fitted photo.
        with Image.open(library.album.path_of(match.photo)) as photo:
            width, height = photo.size
        scale = min(logic.RESULT_THUMBNAIL_SIZE[0] / width, logic.RESULT_THUMBNAIL_SIZE[1] / height)
        offset_x = (logic.RESULT_THUMBNAIL_SIZE[0] - round(width * scale)) / 2
        offset_y = (logic.RESULT_THUMBNAIL_SIZE[1] - round(height * scale)) / 2
        left, top, _, bottom = match.box
        row = round(offset_y + (top + bottom) / 2 * scale)
        column = round(offset_x + left * scale)
        strip = pixels[row, max(0, column - 8) : column + 8]
        distance = np.abs(strip - np.array(logic.BOX_COLOUR)).sum(axis=1)
        assert distance.min() < 90, match.photo
    assert library.thumbnails.get(matches[0]) is library.thumbnails.get(matches[0])  # cached


def test_zip_and_copy(library, obama, tmp_path):
    matches = logic.find_matches(obama.descriptor[None], library.searchable())
    with zipfile.ZipFile(io.BytesIO(logic.zip_bytes(library.album, matches))) as archive:
        assert sorted(archive.namelist()) == sorted(m.photo for m in matches)
        for match in matches:
            assert archive.read(match.photo) == library.album.read(match.photo)
    assert logic.zip_name("Barack Obama") == "photos-of-Barack-Obama.zip"

    target = tmp_path / "copies"
    first = logic.copy_matches(library.album, matches, target)
    assert (first.copied, first.already_there, first.failed) == (len(matches), 0, [])
    for match in matches:
        assert (target / match.photo).read_bytes() == library.album.read(match.photo)
    again = logic.copy_matches(library.album, matches, target)
    assert (again.copied, again.already_there) == (0, len(matches))
    clash = target / matches[0].photo
    clash.write_bytes(b"another photo with the same name")
    third = logic.copy_matches(library.album, matches[:1], target)
    assert third.copied == 1 and clash.read_bytes() == b"another photo with the same name"
    renamed = clash.with_name(f"{clash.stem} (2){clash.suffix}")
    assert renamed.read_bytes() == library.album.read(matches[0].photo)


def test_s3_album_and_index_work_the_same(album, obama, aws_env):
    """An album and index on S3 (a real S3 protocol server on loopback): same page data."""
    pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")
    import boto3

    s3 = boto3.client("s3")
    for bucket, prefix, folder in (
        ("app-album", "photos", album.album),
        ("app-index", "idx", album.index),
    ):
        aws_server.create_bucket(s3, bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "writer.lock":
                key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    remote = logic.Library("s3://app-album/photos", "s3://app-index/idx")
    local = logic.Library(str(album.album), str(album.index))
    remote_status, local_status = remote.status(), local.status()
    assert remote_status.album == "s3://app-album/photos"
    assert (remote_status.photos, remote_status.faces, remote_status.errors) == (
        local_status.photos,
        local_status.faces,
        local_status.errors,
    )
    matches = logic.find_matches(obama.descriptor[None], remote.searchable())
    assert matches == logic.find_matches(obama.descriptor[None], local.searchable())
    # Thumbnails and downloads come through the server, read from the private bucket.
    for match in matches:
        assert remote.thumbnails.get(match) == local.thumbnails.get(match)
    with zipfile.ZipFile(io.BytesIO(logic.zip_bytes(remote.album, matches))) as archive:
        for match in matches:
            assert archive.read(match.photo) == (album.album / match.photo).read_bytes()


# -- background indexing -------------------------------------------------------------------------


class GatedEngine(EngineWrapper):
    """The real engine behind a gate, to hold an indexing run in the middle of its work."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.reached = threading.Event()
        self.release = threading.Event()

    def faces_for_images(self, images):
        self.reached.set()
        assert self.release.wait(120), "the test never released the gate"
        return self.engine.faces_for_images(images)


def test_background_indexing_does_not_block_search(album, obama, tmp_path):
    from photosearch.faces.engine import FaceEngine

    copy = album.copy_to(tmp_path)
    new_photo = "2017/obama-240p.jpg"
    gate = GatedEngine(FaceEngine(device="cpu", max_side=1000))
    library = logic.Library(str(copy.album), str(copy.index), engine_factory=lambda: gate)
    before = {m.photo for m in logic.find_matches(obama.descriptor[None], library.searchable())}
    assert before == album_keys_showing(OBAMA)
    # A copied album looks changed (new file times): the first run recognises every photo by
    # its content and re-uses its faces without the engine.
    gate.release.set()
    assert library.indexing.start() and library.indexing.wait(60)
    assert not gate.reached.is_set()
    message = library.indexing.progress().message
    assert message.startswith("No new photos") and "renamed or copied" in message

    (copy.album / "2017").mkdir()
    (copy.album / new_photo).write_bytes(
        (PHOTOS / "multires/face_recognition/obama-240p.jpg").read_bytes()
    )
    gate.release.clear()
    assert library.indexing.start()
    assert not library.indexing.start()  # one run at a time
    assert gate.reached.wait(60)
    progress = library.indexing.progress()
    assert (progress.state, progress.done, progress.total) == (logic.RUNNING, 0, 1)
    assert progress.label().startswith("Indexing 0 of 1 photos")
    # Mid-run, the committed index is searched as before.
    library.view.refresh()
    during = {m.photo for m in logic.find_matches(obama.descriptor[None], library.searchable())}
    assert during == before

    gate.release.set()
    assert library.indexing.wait(120)
    progress = library.indexing.progress()
    assert (progress.state, progress.done, progress.total) == (logic.DONE, 1, 1), progress
    assert progress.message.startswith("Indexed 1 new photo (1 face)")
    assert progress.rate is not None and progress.eta_seconds is None
    after = {m.photo for m in logic.find_matches(obama.descriptor[None], library.searchable())}
    assert after == before | {new_photo}
    # The new photo's record names the settings its faces were found with (the engine's).
    from photosearch.index.store import IndexReader

    photos = IndexReader(str(copy.index)).photos().to_pylist()
    assert {row["photo"]: row["detection"] for row in photos}[new_photo] == gate.detection_settings

    assert library.indexing.start()  # nothing new: a quick run that says so
    assert library.indexing.wait(60)
    assert library.indexing.progress().message == "No new photos: the index is up to date."


# -- login and launch ----------------------------------------------------------------------------


def test_passwords_are_hashed_and_checked():
    stored = logic.hash_password("correct horse")
    assert "correct horse" not in stored and logic.is_password_hash(stored)
    assert logic.verify_password("correct horse", stored)
    assert not logic.verify_password("correct hors", stored)
    assert not logic.verify_password("", stored) and not logic.verify_password("x", None)
    assert logic.hash_password("same") != logic.hash_password("same")  # salted

    from_env = logic.password_hash_from({logic.ENV_PASSWORD: "s3cret"}, None)
    assert logic.verify_password("s3cret", from_env)
    from_secrets = logic.password_hash_from({}, {"photosearch": {"password": "toml"}})
    assert logic.verify_password("toml", from_secrets)
    assert logic.password_hash_from({}, {"photosearch": {"password_hash": stored}}) == stored
    assert logic.password_hash_from({}, {}) is None
    with pytest.raises(logic.StartRefused, match="not in photosearch's format"):
        logic.password_hash_from({logic.ENV_PASSWORD_HASH: "plain"}, None)


def test_network_access_requires_a_password():
    assert logic.is_loopback("127.0.0.1") and logic.is_loopback("::1")
    assert logic.is_loopback("localhost") and logic.is_loopback("127.8.9.10")
    assert not logic.is_loopback("0.0.0.0") and not logic.is_loopback("192.168.1.5")
    assert not logic.is_loopback(None) and not logic.is_loopback("myhost")
    logic.check_startable(False, "127.0.0.1", None)
    for public, address in ((True, "0.0.0.0"), (False, "0.0.0.0"), (False, None)):
        with pytest.raises(logic.StartRefused, match="without a password"):
            logic.check_startable(public, address, None)
        logic.check_startable(public, address, logic.hash_password("x"))
    config = logic.AppConfig(album=None, index=None, public=False, password_hash=None)
    assert not config.login_required("127.0.0.1") and config.login_required("0.0.0.0")


def test_launch_refuses_public_without_password(tmp_path, monkeypatch):
    monkeypatch.delenv(logic.ENV_PASSWORD, raising=False)
    monkeypatch.delenv(logic.ENV_PASSWORD_HASH, raising=False)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml here
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PHOTOSEARCH_DATA_DIR", str(tmp_path / "data"))  # no users file
    for arguments in (["--public"], ["--address", "10.1.2.3"]):
        result = CliRunner().invoke(launch.app, [*arguments, "--album", str(tmp_path)])
        assert result.exit_code == 2  # bad configuration, nothing started
        assert "without a password" in result.output
    monkeypatch.setenv(logic.ENV_PASSWORD, "pw")
    no_album = CliRunner().invoke(launch.app, ["--public"])
    assert no_album.exit_code == 2 and "--public needs --album" in no_album.output
    missing = CliRunner().invoke(launch.app, ["--album", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "album folder not found" in missing.output


def test_launch_refuses_a_taken_port_before_printing_the_address(tmp_path, monkeypatch):
    import socket

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PHOTOSEARCH_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            launch.app, ["--album", str(tmp_path), "--port", str(port), "--no-browser"]
        )
    assert result.exit_code == 2  # nothing started
    assert f"port {port} on 127.0.0.1 is not free" in result.output
    assert "http://" not in result.output  # no address printed for someone else's server


def test_launch_refuses_a_damaged_secrets_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PHOTOSEARCH_DATA_DIR", str(tmp_path / "data"))
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('password = "unterminated\n')
    result = CliRunner().invoke(launch.app, ["--album", str(tmp_path), "--no-browser"])
    assert result.exit_code == 2  # bad configuration, nothing started
    assert f"cannot read {secrets}" in result.output
    assert "Traceback" not in result.output and "http://" not in result.output


def test_launch_command_and_environment():
    command = launch.streamlit_command("127.0.0.1", 8765, headless=True)
    assert command[1:5] == ["-m", "photosearch.app.streamlit_main", "run", str(launch.PAGE)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == "8765"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.maxUploadSize"] == str(launch.MAX_UPLOAD_MB)
    assert options["--server.maxMessageSize"] == str(launch.MAX_MESSAGE_MB)
    stored = logic.hash_password("pw")
    environment = launch.app_environment(
        "/photos", None, True, stored, base={logic.ENV_PASSWORD: "pw", logic.ENV_INDEX: "old"}
    )
    assert logic.ENV_PASSWORD not in environment  # the plain password never reaches the page
    assert environment[logic.ENV_PASSWORD_HASH] == stored
    assert environment[logic.ENV_ALBUM] == "/photos" and logic.ENV_INDEX not in environment
    assert environment[logic.ENV_PUBLIC] == "1"
    config = logic.AppConfig.from_environment(environment)
    assert config.public and config.album == "/photos" and config.password_hash == stored


# -- issue 12: undo "not me", copy destinations, per-user people, the shared reader --------------


def test_not_me_can_be_undone_and_is_listed(library, obama, tmp_path):
    album = library.album.location
    store = logic.PeopleStore(tmp_path / "people")
    session = logic.SearchSession()
    session.uploads["a"] = obama
    before = session.matches(library, store)
    worst = before[-1]
    session.mark_not_me(worst, store, album)
    assert session.hidden(store, album) == [(worst.photo, worst.face_index)]
    session.unhide(worst.photo, worst.face_index, store, album)
    assert session.hidden(store, album) == []
    assert [m.photo for m in session.matches(library, store)] == [m.photo for m in before]

    # A saved person: the exclusion is in storage, and undo removes it there.
    session.mark_not_me(worst, store, album)
    person = session.save_person("Barack", store, album, "model-x")
    assert store.get(person.id).exclusions_for(album) == [(worst.photo, worst.face_index)]
    fresh = logic.SearchSession(person_id=person.id)
    assert fresh.hidden(store, album) == [(worst.photo, worst.face_index)]
    fresh.unhide(worst.photo, worst.face_index, store, album)
    assert store.get(person.id).exclusions_for(album) == []
    assert [m.photo for m in fresh.matches(library, store)] == [m.photo for m in before]


def test_copy_to_a_relative_or_unwritable_folder(library, obama, tmp_path, monkeypatch):
    matches = logic.find_matches(obama.descriptor[None], library.searchable())[:2]
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the server's working directory: never written to
    report = logic.copy_to_folder(library.album, matches, "picked/obama", base=tmp_path / "home")
    assert not isinstance(report, str) and report.copied == 2
    assert report.destination == str((tmp_path / "home" / "picked" / "obama").resolve())
    assert list(elsewhere.iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    refused = logic.copy_to_folder(library.album, matches, str(blocker / "sub"))
    assert isinstance(refused, str) and refused.startswith(f"Cannot copy to {blocker / 'sub'}: ")
    assert "\n" not in refused


def test_each_user_has_their_own_people(obama, tmp_path, monkeypatch):
    monkeypatch.setenv(logic.people.ENV_PEOPLE, str(tmp_path / "saved-people"))
    alice = logic.PeopleStore(logic.people_location("alice"))
    bob = logic.PeopleStore(logic.people_location("bob"))
    saved = alice.create("Barack", obama.descriptors[:1], model_id="m")
    assert [p.name for p in alice.list()] == ["Barack"] and bob.list() == []
    assert bob.get(saved.id) is None and not bob.forget(saved.id)
    assert (tmp_path / "saved-people" / "alice" / saved.id / "person.json").exists()
    for bad in ("../alice", "Alice", "", "a/b"):
        with pytest.raises(ValueError):
            logic.people_location(bad)


def test_people_saved_before_accounts_move_to_the_owner(obama, tmp_path):
    legacy = logic.PeopleStore(tmp_path / "people")
    old = legacy.create("Barack", obama.descriptors[:1], model_id="m")
    owner = logic.PeopleStore(tmp_path / "saved-people" / "owner")
    assert logic.adopt_legacy_people(tmp_path / "people", owner) == 1
    assert [p.id for p in owner.list()] == [old.id] and legacy.list() == []
    assert logic.adopt_legacy_people(tmp_path / "people", owner) == 0


def test_people_on_s3_under_the_users_prefix(obama, aws_env):
    import boto3

    pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")
    s3 = boto3.client("s3")
    aws_server.create_bucket(s3, "app-people")
    environment = {logic.people.ENV_PEOPLE: "s3://app-people/saved-people"}
    store = logic.PeopleStore(logic.people_location("alice", environment))
    person = store.create("Barack", obama.descriptors[:1], model_id="m", face=b"jpeg")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="app-people")["Contents"])
    prefix = f"saved-people/alice/{person.id}/"
    assert keys == [prefix + "face.jpg", prefix + "person.json"]
    store.add_exclusion(person.id, "album", "a.jpg", 0)
    again = logic.PeopleStore("s3://app-people/saved-people/alice")
    assert again.get(person.id).exclusions_for("album") == [("a.jpg", 0)]
    assert again.get(person.id).face == b"jpeg"
    assert logic.PeopleStore("s3://app-people/saved-people/bob").list() == []
    assert again.forget(person.id) and again.list() == []


def test_decoding_an_upload_never_waits_for_another_users_search(reader):
    """The shared engine is locked only around the face search: while another session holds
    it, an upload is still decoded (here: found not to be an image) at once."""
    assert reader.model_id  # the engine is loaded
    answered = threading.Event()

    def read() -> None:
        with pytest.raises(logic.ReferencePhotoError, match="not an image"):
            reader.read(b"%PDF-1.7 not a photo", "doc.pdf")
        answered.set()

    with reader._lock:  # another session's search in progress
        worker = threading.Thread(target=read)
        worker.start()
        assert answered.wait(20), "decoding waited for the engine lock"
    worker.join()
