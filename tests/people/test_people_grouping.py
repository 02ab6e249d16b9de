"""Grouping faces into people: quality on a real LFW-layout album against DBSCAN, and the rules.

The quality test uses real descriptors of real photos (people_album.py); the rule tests build
descriptors by hand because what they check (one identity per photo, seeds, determinism) is a
property of the algorithm for any input, and hand-made inputs make the edge cases certain.
"""

from __future__ import annotations

import numpy as np
import pytest
from people_album import people_album

from photosearch.people.grouping import DEFAULT_MIN_FACES, group_faces
from photosearch.people.neighbours import neighbour_graph
from photosearch.people.quality import bcubed, centre_labels
from photosearch.people.refresh import album_people
from photosearch.search.query import SearchableIndex


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return people_album(tmp_path_factory)


def labelled(index: SearchableIndex) -> list[str | None]:
    photos = index.snapshot.photos
    sizes = {
        photo: (width, height)
        for photo, width, height in zip(
            photos.column("photo").to_pylist(),
            photos.column("width").to_pylist(),
            photos.column("height").to_pylist(),
            strict=True,
        )
    }
    return centre_labels(index.face_photos, index.boxes, sizes)


def test_bcubed_by_hand():
    # Labels a a a b b, groups {1,2} {3,4} {5}:
    # precision (1+1+.5+.5+1)/5, recall (2/3*2 + 1/3 + 1/2*2)/5
    score = bcubed(["a", "a", "a", "b", "b"], [1, 1, 2, 2, None])
    assert score.precision == pytest.approx(0.8)
    assert score.recall == pytest.approx((4 / 3 + 1 / 3 + 1) / 5)
    assert bcubed(["a", None], [1, 1]).faces == 1  # unlabelled faces are not scored


def test_people_on_a_real_album_beat_dbscan(album, tmp_path):
    sklearn = pytest.importorskip("sklearn.cluster", reason="scikit-learn (test extra) missing")
    index = SearchableIndex.load(str(album.index))
    labels = labelled(index)
    found = album_people(str(album.index), save=False)
    groups = {key: person.id for person in found.state.people.values() for key in person.faces}
    ours = bcubed(labels, [groups.get(key) for key in found.faces.keys])
    dbscan_best = max(
        (
            bcubed(labels, sklearn.DBSCAN(eps=r, min_samples=3).fit(index.descriptors).labels_)
            for r in (0.40, 0.45, 0.50, 0.55)
        ),
        key=lambda score: score.f1,
    )
    assert ours.faces == 57  # one labelled face per photo
    assert ours.f1 >= dbscan_best.f1 - 1e-9, (ours, dbscan_best)
    assert ours.f1 >= 0.9, ours
    # Bush's eight photos are one person, the singles are nobody.
    bush = [groups.get(key) for key, label in zip(found.faces.keys, labels, strict=True)]
    bush = [group for group, label in zip(bush, labels, strict=True) if label == "George_W_Bush"]
    assert len(set(bush)) == 1 and bush[0] is not None
    singles = {"Casey_Mears", "Jane_Russell", "Larry_Tanenbaum"}
    assert all(
        groups.get(key) is None
        for key, label in zip(found.faces.keys, labels, strict=True)
        if label in singles
    )


def test_two_faces_of_one_photo_are_never_one_person():
    rng = np.random.default_rng(3)
    person = rng.normal(size=128).astype(np.float32) * 0.1
    faces = person + rng.normal(size=(6, 128)).astype(np.float32) * 0.005  # all alike
    photos = [0, 0, 1, 2, 3, 3]  # photos 0 and 3 show the "twin" twice
    labels = group_faces(faces, photos)
    for photo in (0, 3):
        rows = [row for row, p in enumerate(photos) if p == photo]
        assert len({labels[row] for row in rows}) == len(rows)
    assert len(set(labels.tolist())) == 2  # one group per twin, each with 3 photos


def test_seeds_stay_whole_and_apart_and_labels_are_stable():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(2, 128)) * 0.1
    faces = np.concatenate([c + rng.normal(size=(5, 128)) * 0.01 for c in centres])
    photos = np.arange(10)
    first = group_faces(faces, photos)
    assert first.tolist() == group_faces(faces, photos).tolist()
    assert len(set(first.tolist())) == 2
    # The user said faces 0-1 and 2-4 are two people: they stay apart though alike.
    seeded = group_faces(faces, photos, seeds=[[0, 1], [2, 3, 4]])
    assert seeded[0] == seeded[1] and seeded[2] == seeded[3] == seeded[4]
    assert seeded[0] != seeded[2]


def test_exact_neighbours_match_brute_force():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 128)).astype(np.float32) * 0.08
    graph = neighbour_graph(x, k=5, max_distance=10.0, exact=True)
    distances = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    expected = np.argsort(distances, axis=1, kind="stable")[:, :5]
    assert (graph.indices == expected).mean() > 0.999
    assert DEFAULT_MIN_FACES == 3
