"""The Streamlit page, driven headlessly with streamlit.testing.v1.AppTest on a real album.

Runs the real page script (src/photosearch/app/page.py) with the real engine and index;
expected matches come from the dataset's labels (tests/app_album.py).
"""

from __future__ import annotations

import time

import pytest
from app_album import (
    BROKEN_KEY,
    OBAMA_REFERENCE,
    PHOTOS,
    TWO_FACES_REFERENCE,
    album_keys_showing,
    shared_album,
)

from photosearch.app import launch, logic

AppTest = pytest.importorskip("streamlit.testing.v1", reason="streamlit is not installed").AppTest
PAGE = str(launch.PAGE)  # src/photosearch/app/page.py, the script `photosearch app` runs
TIMEOUT = 120  # seconds per script run: the first one loads the face models


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return shared_album(tmp_path_factory)


@pytest.fixture
def environment(album, tmp_path, monkeypatch):
    """The page as `photosearch app --album ... --index ...` starts it, on loopback."""
    import streamlit.config

    for name in (logic.ENV_PASSWORD, logic.ENV_PASSWORD_HASH, logic.ENV_PUBLIC):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(logic.ENV_ALBUM, str(album.album))
    monkeypatch.setenv(logic.ENV_INDEX, str(album.index))
    monkeypatch.setenv("PHOTOSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml
    previous = streamlit.config.get_option("server.address")
    streamlit.config.set_option("server.address", "127.0.0.1")
    yield tmp_path / "data"
    streamlit.config.set_option("server.address", previous)


def start() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def upload(app: AppTest, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    app.file_uploader(key="references").upload(name, data, mime).run()
    assert not app.exception, [e.value for e in app.exception]


def shown_photos(app: AppTest) -> list[str]:
    """Album keys of the result grid, in display order (from the captions)."""
    captions = [caption for image in app.image for caption in image.captions]
    return [caption.split(" · distance ")[0] for caption in captions if " · distance " in caption]


def headline(app: AppTest) -> str:
    return next(m.value for m in app.markdown if m.value.startswith("#### "))


def test_search_threshold_and_not_me(environment, album):
    app = start()
    photos, faces = app.sidebar.metric
    assert (photos.label, faces.label) == ("Photos", "Faces")
    indexed = [p for p in album.album.rglob("*") if p.is_file()]
    assert photos.value == str(len(indexed))
    (problems,) = [e for e in app.sidebar.expander if "could not be read" in e.label]
    assert problems.label == "1 file could not be read"
    assert any(BROKEN_KEY in m.value and "not an image" in m.value for m in problems.markdown)
    assert not shown_photos(app)

    upload(app, "obama.jpg", (PHOTOS / OBAMA_REFERENCE).read_bytes())
    expected = album_keys_showing("Barack_Obama")
    # The automatic (adaptive) search by default, as `photosearch search` does.
    assert app.radio(key="match_mode").value == logic.MATCH_AUTOMATIC
    found = shown_photos(app)
    assert set(found) == expected and len(found) == len(expected)
    assert headline(app) == f"#### {len(expected)} photos found"
    assert app.download_button[0].label == f"Download all ({len(expected)})"
    assert any(c.value.startswith("The usual setting") for c in app.caption)
    # Stricter margins keep a subset, best first as before; the default brings all back.
    default = app.slider(key="strictness").value
    app.slider(key="strictness").set_value(logic.STRICTNESS_MAX).run()
    strict = shown_photos(app)
    assert strict == [photo for photo in found if photo in strict] and len(strict) < len(found)
    assert any(c.value.startswith("Stricter") for c in app.caption)
    app.slider(key="strictness").set_value(default).run()
    assert shown_photos(app) == found

    # A fixed face distance instead: the same photos at dlib's 0.6, nearest first.
    app.radio(key="match_mode").set_value(logic.MATCH_DISTANCE).run()
    found = shown_photos(app)
    assert set(found) == expected

    # Stricter: a threshold between the 2nd and 3rd best distances keeps the 2 best.
    captions = [c for image in app.image for c in image.captions if " · distance " in c]
    distances = [float(c.split(" · distance ")[1]) for c in captions]
    cut = round((distances[1] + distances[2]) / 2, 2)
    app.slider(key="threshold").set_value(cut).run()
    assert shown_photos(app) == found[:2]
    assert any(c.value.startswith("Stricter") for c in app.caption)
    app.slider(key="threshold").set_value(logic.DEFAULT_THRESHOLD).run()
    assert shown_photos(app) == found

    # "Not me" on the worst match: it disappears and stays away on later reruns.
    worst = found[-1]
    not_me = [b for b in app.button if b.label == "Not me"]
    assert len(not_me) == len(found)
    not_me[-1].click().run()
    assert shown_photos(app) == found[:-1]
    app.slider(key="threshold").set_value(logic.THRESHOLD_MAX).run()
    assert worst not in shown_photos(app)
    assert headline(app).startswith("#### ")


def test_paging_through_many_matches(environment, monkeypatch):
    monkeypatch.setattr(logic, "PER_PAGE", 3)
    app = start()
    upload(app, "obama.jpg", (PHOTOS / OBAMA_REFERENCE).read_bytes())
    expected = album_keys_showing("Barack_Obama")
    first = shown_photos(app)
    assert len(first) == 3
    assert any(
        c.value == f"Showing 1–3 of {len(expected)}, best matches first" for c in app.caption
    )
    app.pagination(key="page").set_value(2).run()
    second = shown_photos(app)
    assert len(second) == len(expected) - 3 and set(first) | set(second) == expected
    # The download still holds every match, not just the page.
    assert app.download_button[0].label == f"Download all ({len(expected)})"


def test_text_file_as_reference_gets_a_clear_error(environment):
    app = start()
    upload(app, "notes.txt", b"shopping list: milk, eggs\n", "text/plain")
    (error,) = app.error
    assert error.value.startswith("“notes.txt” can't be used: not an image")
    assert "Upload a photo" in error.value
    assert not shown_photos(app) and not app.slider


def test_choosing_the_face_in_a_group_reference(environment):
    app = start()
    upload(app, "two.jpg", (PHOTOS / TWO_FACES_REFERENCE).read_bytes())
    assert any("shows 2 people" in m.value for m in app.markdown)
    choices = [b for b in app.button if b.label.removeprefix("✓ ") in ("Face 1", "Face 2")]
    assert sorted(b.label.removeprefix("✓ ") for b in choices) == ["Face 1", "Face 2"]
    assert sum(b.label.startswith("✓ ") for b in choices) == 1  # each face its own label
    # Faces are counted left to right: Obama, then Biden. The largest face is chosen first
    # (which one that is depends on the detector's boxes: both faces are about as large).
    person = {"Face 1": "Barack_Obama", "Face 2": "Joe_Biden"}
    chosen = next(b for b in choices if b.label.startswith("✓ "))
    assert set(shown_photos(app)) == album_keys_showing(person[chosen.label.removeprefix("✓ ")])
    other = next(b for b in choices if not b.label.startswith("✓ "))
    other.click().run()
    assert set(shown_photos(app)) == album_keys_showing(person[other.label])
    assert [b.label for b in app.button if b.label.startswith("✓ Face")] == [f"✓ {other.label}"]


def test_save_search_and_forget_a_person(environment, album):
    app = start()
    upload(app, "obama.jpg", (PHOTOS / OBAMA_REFERENCE).read_bytes())
    found = shown_photos(app)
    next(b for b in app.button if b.label == "Not me").click().run()
    app.text_input(key="person_name").input("Barack").run()
    app.button(key="save_person").click().run()
    store = logic.PeopleStore(environment / "saved-people" / "owner")  # loopback: the owner
    (person,) = store.list()
    assert person.name == "Barack" and len(person.descriptors) == 1
    (excluded,) = person.exclusions_for(str(album.album.resolve()))
    assert excluded[0] == found[0]
    assert any(m.value.startswith("**Barack**") for m in app.sidebar.markdown)

    # Another browser session: no upload, search the saved person; the exclusion holds.
    other = start()
    other.button(key=f"use-{person.id}").click().run()
    assert shown_photos(other) == found[1:]
    other.button(key=f"forget-{person.id}").click().run()
    assert store.list() == [] and not (environment / "saved-people" / "owner" / person.id).exists()
    assert not shown_photos(other)


def test_network_access_without_the_gateway_shows_nothing(environment, monkeypatch):
    """Started for the network, the page shows photos only to users the gateway vouches for:
    a password alone, or a gateway token without its headers, shows nothing."""
    monkeypatch.setenv(logic.ENV_PUBLIC, "1")
    monkeypatch.setenv(logic.ENV_PASSWORD_HASH, logic.hash_password("open sesame"))
    for token in (None, "the-gateway-token"):
        if token:
            monkeypatch.setenv("PHOTOSEARCH_APP_GATEWAY_TOKEN", token)
        app = start()
        assert "signed in through its gateway" in app.error[0].value
        assert not app.file_uploader and not app.text_input and not app.sidebar.metric


def test_pick_an_album_and_index_it_in_the_page(environment, tmp_path, monkeypatch):
    """No album given: pick a folder, index it from the page, then see its counts."""
    monkeypatch.delenv(logic.ENV_ALBUM)
    monkeypatch.delenv(logic.ENV_INDEX)
    folder = tmp_path / "my photos"
    folder.mkdir()
    (folder / "obama.jpg").write_bytes(
        (PHOTOS / "multires/face_recognition/obama-240p.jpg").read_bytes()
    )
    app = start()
    assert not app.sidebar.metric
    app.text_input(key="album_path").input(str(tmp_path / "missing"))
    app.button[0].click().run()
    assert app.error[0].value.startswith("Folder not found")
    app.text_input(key="album_path").input(str(folder))
    app.button[0].click().run()
    assert any("not indexed yet" in i.value for i in app.sidebar.info)

    next(b for b in app.sidebar.button if b.label == "Index the album").click().run()
    deadline = time.monotonic() + 90
    while not any(s.value.startswith("Indexed 1 new photo") for s in app.sidebar.success):
        assert not app.sidebar.error, app.sidebar.error[0].value
        assert time.monotonic() < deadline, "indexing did not finish"
        time.sleep(0.5)
        app.run()
    photos, faces = app.sidebar.metric
    assert (photos.value, faces.value) == ("1", "1")
    assert any(b.label == "Index new photos" for b in app.sidebar.button)
