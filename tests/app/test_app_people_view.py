"""The People page's and the viewer's logic, on real indexed albums (no Streamlit)."""

from __future__ import annotations

import io

import pytest
from app_album import shared_album
from people_album import people_album
from PIL import Image

from photosearch.app.logic.library import Library
from photosearch.app.logic.people_view import AlbumPeopleView
from photosearch.app.logic.viewer import SCREEN_SIZE, safe_view_of, step, view_of
from photosearch.people.corrections import PeopleError
from photosearch.search.query import find_matches


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    return people_album(tmp_path_factory)


def size_of(jpeg: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(jpeg)).size


def test_people_cards_corrections_and_photos(lfw, tmp_path):
    photos, index = lfw.copy_to(tmp_path)
    view = AlbumPeopleView(Library(str(photos), str(index)))
    cards = view.cards()
    counts = [card.summary.photos for card in cards]
    assert counts == sorted(counts, reverse=True) and counts[0] == 8  # Bush first
    assert all(card.cover and size_of(card.cover)[0] <= 160 for card in cards)
    assert cards[0].caption == f"Person {cards[0].summary.id} · 8 photos"

    bush, other = cards[0].summary, cards[1].summary
    view.rename(bush.id, "  George   Bush ")
    assert view.cards()[0].caption == "George Bush · 8 photos"
    with pytest.raises(PeopleError, match="already called"):
        view.rename(other.id, "george bush")

    matches = view.matches(bush.id)
    assert {photo for photo, _ in bush.faces} <= {m.photo for m in matches}
    face = bush.faces[0]
    view.not_this_person(bush.id, face)
    assert face not in view.current().state.people[bush.id].faces
    assert face[0] not in {m.photo for m in view.matches(bush.id)}  # and not searched again

    view.merge(bush.id, other.id)
    merged = next(c for c in view.cards() if c.summary.id == bush.id)
    assert merged.summary.photos == 7 + other.photos
    # A second view (another process) reads the same people.json.
    again = AlbumPeopleView(Library(str(photos), str(index)))
    assert again.cards()[0].summary.name == "George Bush"


def test_people_view_before_indexing(tmp_path):
    (tmp_path / "album").mkdir()
    view = AlbumPeopleView(Library(str(tmp_path / "album"), str(tmp_path / "index")))
    assert view.current() is None and view.cards() == []


def test_viewer_shows_the_full_photo_at_screen_size(tmp_path_factory):
    album = shared_album(tmp_path_factory)
    library = Library(str(album.album), str(album.index))
    index = library.searchable()
    row = max(range(len(index.face_photos)), key=lambda r: index.boxes[r][2] - index.boxes[r][0])
    match = find_matches(index.descriptors[row : row + 1], index, threshold=0.3)[0]
    images = view_of(library.album, match)
    width, height = size_of(images.photo)
    assert width <= SCREEN_SIZE[0] and height <= SCREEN_SIZE[1]
    # Sharper than the 480 px result thumbnail whenever the original is larger.
    assert max(width, height) >= min(max(images.width, images.height), 1100)
    assert max(size_of(images.face)) <= 360
    assert step(0, 5, -1) == 4 and step(4, 5, 1) == 0 and step(0, 0, 1) == 0
    missing = type(match)(**{**match.__dict__, "photo": "gone.jpg"})
    assert isinstance(safe_view_of(library.album, missing), str)


def test_an_app_built_index_needs_no_rebuild_from_the_cli(lfw, tmp_path):
    from click.testing import CliRunner

    from photosearch.cli.main import main

    album = tmp_path / "album"
    for key in ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Bashar_Assad/Bashar_Assad_0001.jpg"):
        (album / key).parent.mkdir(parents=True, exist_ok=True)
        (album / key).write_bytes((lfw.album / key).read_bytes())
    library = Library(str(album), str(tmp_path / "index"))
    assert library.indexing.start()
    assert library.indexing.wait(120)
    assert library.indexing.progress().state == "done", library.indexing.progress().message
    result = CliRunner().invoke(main, ["index", str(album), "--index", str(tmp_path / "index")])
    assert result.exit_code == 0, result.output
    assert "--rebuild" not in result.output and "2 unchanged" in result.output


def test_the_same_photo_is_used_once(lfw):
    from photosearch.app.logic import ReferenceReader, SearchSession

    class Upload:
        def __init__(self, file_id: str, name: str, data: bytes) -> None:
            self.file_id, self.name, self.data = file_id, name, data

        def getvalue(self) -> bytes:
            return self.data

    data = (lfw.album / "Roger_Moore/Roger_Moore_0001.jpg").read_bytes()
    session = SearchSession()
    session.sync_uploads(
        [Upload("a", "roger.jpg", data), Upload("b", "copy.jpg", data)], ReferenceReader()
    )
    assert len(session.references) == 1
    assert session.upload_errors == ["“copy.jpg” is the same photo as “roger.jpg”."]
