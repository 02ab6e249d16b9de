"""`photosearch people` and `photosearch search --person` on the real LFW-layout album."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from people_album import people_album

from photosearch.cli.main import main


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return people_album(tmp_path_factory)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_people_json_lines_corrections_and_search_by_person(album, tmp_path):
    _, location = album.copy_to(tmp_path)
    result = run("people", "--index", str(location), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    people, summary = lines[:-1], lines[-1]
    assert people and all(set(p) == {"person", "name", "faces", "photos", "cover"} for p in people)
    assert "faces" not in summary and "person" not in summary
    assert [p["photos"] for p in people] == sorted((p["photos"] for p in people), reverse=True)
    assert summary["people"] == len(people) and summary["unassigned"]
    assert summary["assigned"] + len(summary["unassigned"]) == summary["faces_indexed"]
    bush = people[0]
    assert bush["photos"] == 8 and all(
        f["photo"].startswith("George_W_Bush/") for f in bush["faces"]
    )
    assert {"photo": bush["cover"]["photo"], "face": bush["cover"]["face"]} in bush["faces"]

    pid = str(bush["person"])
    assert run("people", "name", "--index", str(location), pid, "George Bush").exit_code == 0
    one = bush["faces"][0]["photo"]
    removed = run("people", "remove", "--index", str(location), "george bush", one)
    assert removed.exit_code == 0, removed.output
    split = run("people", "split", "--index", str(location), pid, bush["faces"][1]["photo"])
    assert split.exit_code == 0 and "new person" in split.stderr
    again = [
        json.loads(line)
        for line in run("people", "--index", str(location), "--json").stdout.splitlines()
    ]
    named = next(p for p in again[:-1] if p["person"] == bush["person"])
    assert named["name"] == "George Bush" and named["photos"] == 6

    found = run("search", "--index", str(location), "--person", "George Bush", "--json")
    assert found.exit_code == 0, found.output
    answer = json.loads(found.stdout)
    matched = {m["photo"] for m in answer["matches"]}
    assert {f["photo"] for f in named["faces"]} <= matched
    assert answer["album"] == str(album.album)  # the root the album-relative keys join
    assert "searching for George Bush with 6 grouped faces" in found.stderr

    assert run("people", "name", "--index", str(location), "999", "X").exit_code == 2
    missing = run("search", "--index", str(location), "--person", "Nobody")
    assert missing.exit_code == 2 and "nobody is called 'Nobody'" in missing.stderr


def test_search_says_which_face_of_a_crowd_reference_it_used(album):
    from photosearch.search.query import SearchableIndex

    index = SearchableIndex.load(str(album.index))
    several = sorted({p for p, n in zip(index.face_photos, index.face_numbers, strict=True) if n})
    assert several, "the album has LFW photos with bystanders"
    reference = str(album.album / several[0])
    result = run("search", "--index", str(album.index), reference)
    assert result.exit_code == 0, result.output
    assert "use --face N for another" in result.stderr and "(the largest)" in result.stderr
    chosen = run("search", "--index", str(album.index), reference, "--face", "2")
    assert "searching face 2 of" in chosen.stderr and "(as asked)" in chosen.stderr
