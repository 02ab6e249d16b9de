"""People kept up to date: new photos join people, ids hold, corrections stick, S3 works.

All on the real LFW-layout album of people_album.py (real photos, the real engine).
"""

from __future__ import annotations

import json
import shutil

import aws_server
import pytest
from people_album import add_photos, index, keys, people_album

from photosearch.people import corrections
from photosearch.people.refresh import album_people, correct
from photosearch.people.store import PEOPLE_NAME

moto_endpoint = aws_server.moto_endpoint
aws_env = aws_server.aws_env


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return people_album(tmp_path_factory)


def person_of(found, folder: str):
    """The one person holding most of `folder`'s photos."""
    best = max(
        found.state.people.values(),
        key=lambda person: sum(photo.startswith(f"{folder}/") for photo, _ in person.faces),
    )
    assert any(photo.startswith(f"{folder}/") for photo, _ in best.faces), folder
    return best


def test_new_photos_join_people_and_ids_hold(album, tmp_path):
    photos, location = album.copy_to(tmp_path, first=True)
    before = album_people(str(location))
    assert before.report is not None and before.report.new_people >= 10
    saved = {pid: set(person.faces) for pid, person in before.state.people.items()}
    bush = person_of(before, "George_W_Bush").id

    add_photos(photos, keys()[1])
    index(photos, location)
    after = album_people(str(location))
    assert after.report.joined >= 16  # of the 18 new photos, all of people seen before
    for pid, faces in saved.items():
        assert faces <= set(after.state.people[pid].faces)  # nobody lost a face or an id
    assert sum(p.startswith("George_W_Bush/") for p, _ in after.state.people[bush].faces) == 8
    assert album_people(str(location)).report is None  # nothing new: nothing redone

    # Re-indexing from scratch (new snapshot, same photos) keeps every person and id.
    for name in ("manifest.json", "manifests", "shards"):
        path = location / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    index(photos, location)
    again = album_people(str(location))
    assert {pid: set(p.faces) for pid, p in again.state.people.items()} == {
        pid: set(p.faces) for pid, p in after.state.people.items()
    }


def test_corrections_stick_through_updates_and_regrouping(album, tmp_path):
    photos, location = album.copy_to(tmp_path, first=True)
    found = album_people(str(location))
    aaron = person_of(found, "Aaron_Peirsol").id
    bashar = person_of(found, "Bashar_Assad").id
    roger = person_of(found, "Roger_Moore").id
    roger_face = sorted(found.state.people[roger].faces)[0]
    aaron_faces = sorted(found.state.people[aaron].faces)

    correct(str(location), lambda state: corrections.name(state, aaron, "Aaron"))
    correct(str(location), lambda state: corrections.merge(state, aaron, [bashar]))
    correct(str(location), lambda state: corrections.remove_faces(state, roger, [roger_face]))
    _, split_off = correct(
        str(location), lambda state: corrections.split(state, aaron, aaron_faces[:1], "Twin")
    )

    add_photos(photos, keys()[1])
    index(photos, location)
    for regroup in (False, True):
        found = album_people(str(location), full_regroup=regroup)
        state = found.state
        assert corrections.find_person(state, "aaron").id == aaron
        assert corrections.find_person(state, bashar).id == aaron  # the merged id follows
        merged = {photo.split("/")[0] for photo, _ in state.people[aaron].faces}
        assert {"Aaron_Peirsol", "Bashar_Assad"} <= merged
        assert roger_face not in state.people[roger].faces
        assert aaron_faces[0] in corrections.find_person(state, "Twin").faces
        assert aaron_faces[0] not in state.people[aaron].faces
    saved = json.loads((location / PEOPLE_NAME).read_text())
    assert [roger, *roger_face] in saved["rejected"]
    assert split_off.name == "Twin"
    with pytest.raises(corrections.PeopleError, match="already called"):
        correct(str(location), lambda state: corrections.name(state, roger, "aaron"))


def test_people_of_an_s3_index(album, aws_env, tmp_path):
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    aws_server.create_bucket(boto3.client("s3"), "people-index")
    remote = "s3://people-index/indexes/lfw"
    filesystem = s3fs.S3FileSystem()
    filesystem.put(str(album.index), remote, recursive=True)
    found = album_people(remote)
    local = album_people(str(album.index), save=False)
    assert sorted(map(sorted, (p.faces for p in found.state.people.values()))) == sorted(
        map(sorted, (p.faces for p in local.state.people.values()))
    )
    person = max(found.state.people.values(), key=lambda p: len(p.faces))
    correct(remote, lambda state: corrections.name(state, person.id, "On S3"))
    s3fs.S3FileSystem.clear_instance_cache()
    stored = json.loads(s3fs.S3FileSystem().cat_file(f"{remote}/{PEOPLE_NAME}"))
    assert [p["name"] for p in stored["people"] if p["id"] == person.id] == ["On S3"]
    s3fs.S3FileSystem.clear_instance_cache()
