"""`photosearch search` on a small real album: who is found, output formats, options, errors.

Expected photos come from the dataset's labels (tests/app_album.py), never from our results.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from app_album import (
    OBAMA_REFERENCE,
    PHOTOS,
    TWO_FACES_REFERENCE,
    album_keys_showing,
    shared_album,
)
from click.testing import CliRunner

from photosearch.cli.main import main
from photosearch.search.query import SearchableIndex


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return shared_album(tmp_path_factory)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["search", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def search_json(album, *args: str) -> dict:
    code, out, err = run(*args, "--index", str(album.index), "--json")
    assert code == 0, err
    return json.loads(out)


def test_finds_exactly_the_labelled_photos_best_first(album):
    result = search_json(album, str(PHOTOS / OBAMA_REFERENCE))
    photos = [m["photo"] for m in result["matches"]]
    assert set(photos) == album_keys_showing("Barack_Obama")
    assert result["mode"] == "adaptive"
    scores = [m["score"] for m in result["matches"]]
    assert scores == sorted(scores, reverse=True)  # best (largest margin) first
    assert all(s >= result["strictness"] - 0.14 for s in scores)
    # Each reported distance is the true distance of the reported face to the reference.
    index = SearchableIndex.load(str(album.index))
    reference = search_json(album, str(PHOTOS / OBAMA_REFERENCE))["matches"][0]
    row = next(
        i
        for i, (p, f) in enumerate(zip(index.face_photos, index.face_numbers, strict=True))
        if p == reference["photo"] and f == reference["face_index"]
    )
    assert list(index.boxes[row]) == reference["box"]


def test_csv_matches_json(album):
    expected = search_json(album, str(PHOTOS / OBAMA_REFERENCE))["matches"]
    code, out, _ = run(str(PHOTOS / OBAMA_REFERENCE), "--index", str(album.index), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["photo"] for r in rows] == [m["photo"] for m in expected]
    assert [int(r["left"]) for r in rows] == [m["box"][0] for m in expected]


def test_fixed_distance_threshold_returns_every_face_under_it(album):
    loose = search_json(album, str(PHOTOS / OBAMA_REFERENCE), "--threshold", "0.6")
    assert loose["mode"] == "distance"
    distances = [m["distance"] for m in loose["matches"]]
    assert distances == sorted(distances) and all(d < 0.6 for d in distances)
    assert album_keys_showing("Barack_Obama") <= {m["photo"] for m in loose["matches"]}
    cut = distances[-1] - 1e-4
    stricter = search_json(album, str(PHOTOS / OBAMA_REFERENCE), "--threshold", str(cut))
    assert [m["photo"] for m in stricter["matches"]] == [m["photo"] for m in loose["matches"][:-1]]


def test_higher_strictness_returns_a_subset(album):
    default = search_json(album, str(PHOTOS / OBAMA_REFERENCE))
    strict = search_json(album, str(PHOTOS / OBAMA_REFERENCE), "--strictness", "0.45")
    assert {m["photo"] for m in strict["matches"]} <= {m["photo"] for m in default["matches"]}
    assert len(strict["matches"]) < len(default["matches"])


def test_face_option_picks_the_other_person(album):
    # two_people.jpg: Obama on the left, Biden on the right (face 2, counted left to right).
    biden = search_json(album, str(PHOTOS / TWO_FACES_REFERENCE), "--face", "2")
    assert set(album_keys_showing("Joe_Biden")) <= {m["photo"] for m in biden["matches"]}
    assert not {m["photo"] for m in biden["matches"]} & (
        album_keys_showing("Barack_Obama") - album_keys_showing("Joe_Biden")
    )


def test_exclusions_stay_out(album):
    default = search_json(album, str(PHOTOS / OBAMA_REFERENCE))["matches"]
    first = default[0]
    whole = search_json(album, str(PHOTOS / OBAMA_REFERENCE), "--exclude", first["photo"])
    assert first["photo"] not in {m["photo"] for m in whole["matches"]}
    assert len(whole["matches"]) == len(default) - 1
    one_face = search_json(
        album, str(PHOTOS / OBAMA_REFERENCE), "--exclude", f"{first['photo']}#{first['face_index']}"
    )
    assert first["photo"] not in {m["photo"] for m in one_face["matches"]}


def test_queries_file_runs_many_searches(album, tmp_path):
    queries = tmp_path / "queries.csv"
    queries.write_text(
        "query,reference\n"
        f"obama,{PHOTOS / OBAMA_REFERENCE}\n"
        f"obama,{PHOTOS / 'people/face_recognition/knn_train/Barack_Obama/obama2.jpg'}\n"
        f"kit,{PHOTOS / 'people/face_recognition/knn_train/Kit_Harington/john1.jpeg'}\n"
    )
    code, out, err = run("--queries", str(queries), "--index", str(album.index))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == ["obama", "kit"]
    assert lines[0]["references"] == 2
    single = {m["photo"] for m in search_json(album, str(PHOTOS / OBAMA_REFERENCE))["matches"]}
    # Two references recall at least what one does (a face matches if close to either).
    assert single <= {m["photo"] for m in lines[0]["matches"]}
    assert {m["photo"] for m in lines[1]["matches"]} == album_keys_showing("Kit_Harington")


def test_references_read_in_parallel_keep_their_order_and_errors(album, tmp_path):
    """`--queries` reads reference photos on several engine workers: results come back in
    the file's order, an unusable photo as its error, the rest as with one worker."""
    from photosearch.cli.search import reference_results
    from photosearch.faces.engine import FaceEngine
    from photosearch.search.query import ReferencePhotoError

    faceless = tmp_path / "notes.jpg"
    faceless.write_text("not a photo")
    paths = [
        str(PHOTOS / OBAMA_REFERENCE),
        str(faceless),
        str(PHOTOS / "people/face_recognition/knn_train/Kit_Harington/john1.jpeg"),
        str(PHOTOS / TWO_FACES_REFERENCE),
    ]
    serial = reference_results(FaceEngine(device="cpu", workers=1), paths, None)
    parallel = reference_results(FaceEngine(device="cpu", workers=2), paths, None)
    assert isinstance(parallel[1], ReferencePhotoError) and "notes.jpg" in str(parallel[1])
    for mine, theirs in zip(parallel, serial, strict=True):
        if isinstance(theirs, ReferencePhotoError):
            assert str(mine) == str(theirs)
        else:
            np.testing.assert_allclose(mine, theirs, atol=1e-6)
    # The second face of the two-person photo, when asked for, in every slot.
    second = reference_results(FaceEngine(device="cpu", workers=2), paths[2:], 2)
    assert isinstance(second[0], ReferencePhotoError) and isinstance(second[1], np.ndarray)


def test_copy_to_copies_the_matched_photos(album, tmp_path):
    target = tmp_path / "found"
    code, out, err = run(
        str(PHOTOS / OBAMA_REFERENCE),
        "--index",
        str(album.index),
        "--json",
        "--copy-to",
        str(target),
    )
    assert code == 0, err
    for match in json.loads(out)["matches"]:
        copied = target / match["photo"]
        assert copied.read_bytes() == (album.album / match["photo"]).read_bytes()


def test_unusable_references_and_missing_index_give_one_line_errors(album, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    code, _, err = run(str(text), "--index", str(album.index))
    assert code == 2
    assert f"{text}: not an image" in err
    # A usable reference next to an unusable one: the search goes on.
    code, out, err = run(
        str(text), str(PHOTOS / OBAMA_REFERENCE), "--index", str(album.index), "--json"
    )
    assert code == 1 and "not an image" in err  # one reference failed, the search went on
    assert json.loads(out)["references"] == 1
    code, _, err = run(str(PHOTOS / OBAMA_REFERENCE), "--index", str(tmp_path / "nowhere"))
    assert code == 2 and "no index at" in err


def test_descriptors_in_index_are_comparable_with_reference_engine(album):
    index = SearchableIndex.load(str(album.index))
    assert index.model_id.endswith("+mirror")
    assert np.isfinite(index.descriptors).all()
