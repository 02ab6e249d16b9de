"""The README's public-API example works as written: `import photosearch`, index an album with
`index_album`, load it, read a reference photo and find every photo of the person."""

from __future__ import annotations

import shutil

import photosearch

PEOPLE = "photos/people/face_recognition"
ALBUM = {
    "obama/obama.jpg": f"{PEOPLE}/knn_train/Barack_Obama/obama.jpg",
    "2016/obama1.jpg": f"{PEOPLE}/knn_test/obama1.jpg",
    "biden/biden2.jpg": f"{PEOPLE}/knn_train/Joe_Biden/biden2.jpg",
    "friends/rose.jpg": f"{PEOPLE}/knn_train/Rose_Leslie/img1.jpg",
}


def test_the_public_api_finds_every_photo_of_a_person(shared_data, tmp_path) -> None:
    album = tmp_path / "album"
    for key, source in ALBUM.items():
        (album / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / source, album / key)
    index_location = tmp_path / "index"
    engine = photosearch.FaceEngine(device="cpu", max_side=800)

    stats = photosearch.index_album(album, index_location, engine=engine, report=lambda _: None)
    assert (stats.indexed, stats.unreadable) == (len(ALBUM), 0)
    index = photosearch.SearchableIndex.load(str(index_location))
    assert index is not None and index.photo_count == len(ALBUM)

    me = photosearch.read_reference(engine, shared_data / PEOPLE / "examples/obama_small.jpg")
    matches = photosearch.find_matches(me.descriptor, index)
    assert {match.photo for match in matches} == {"obama/obama.jpg", "2016/obama1.jpg"}
    assert all(isinstance(match, photosearch.Match) for match in matches)
    # A fixed distance (face_recognition's 0.6 tolerance) finds the same photos here.
    fixed = photosearch.find_matches(me.descriptor, index, threshold=0.6)
    assert {match.photo for match in fixed} == {"obama/obama.jpg", "2016/obama1.jpg"}
    assert all(match.reason == "threshold" and 0 <= match.score <= 1 for match in fixed)


def test_a_photo_without_a_face_is_a_reference_photo_error(shared_data) -> None:
    engine = photosearch.FaceEngine(device="cpu", max_side=800)
    no_face = shared_data / "photos/group/compreface/017_0.jpg"
    try:
        photosearch.read_reference(engine, no_face)
    except photosearch.ReferencePhotoError as error:
        assert error.kind == "no_face" and "017_0.jpg" in str(error)
    else:
        raise AssertionError("a photo without a face was accepted as a reference")
