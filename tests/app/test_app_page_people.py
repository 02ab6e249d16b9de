"""The page before the album is indexed, and the People page, driven with AppTest."""

from __future__ import annotations

import pytest
from app_album import OBAMA_REFERENCE, PHOTOS, shared_album

from photosearch.app import launch, logic

AppTest = pytest.importorskip("streamlit.testing.v1", reason="streamlit is not installed").AppTest
TIMEOUT = 120


@pytest.fixture
def not_indexed(tmp_path_factory, tmp_path, monkeypatch):
    """The app on a real album whose index does not exist yet."""
    import streamlit.config

    album = shared_album(tmp_path_factory)
    for name in (logic.ENV_PASSWORD, logic.ENV_PASSWORD_HASH, logic.ENV_PUBLIC):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(logic.ENV_ALBUM, str(album.album))
    monkeypatch.setenv(logic.ENV_INDEX, str(tmp_path / "no-index-yet"))
    monkeypatch.setenv("PHOTOSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    previous = streamlit.config.get_option("server.address")
    streamlit.config.set_option("server.address", "127.0.0.1")
    yield
    streamlit.config.set_option("server.address", previous)


def test_uploading_before_indexing_says_index_the_album_first(not_indexed):
    app = AppTest.from_file(str(launch.PAGE), default_timeout=TIMEOUT)
    app.run()
    data = (PHOTOS / OBAMA_REFERENCE).read_bytes()
    app.file_uploader(key="references").upload("obama.jpg", data, "image/jpeg").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Index the album first" in info.value for info in app.info)
    assert not any("No photos found" in m.value for m in app.markdown)

    app.sidebar.radio(key="show").set_value("People").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Index the album first" in info.value for info in app.info)
