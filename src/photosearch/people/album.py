"""The people of one index, kept up to date: new faces join people, nobody is regrouped.

`update` brings a saved PeopleState up to an index snapshot:
1. faces gone from the index leave their people (a person left with none is dropped);
2. every face in nobody (new faces and those unassigned before) joins the person whose faces it
   is closest to on average, when that is under the grouping threshold, the person has no face
   of its photo yet and the user did not say "not this person" for it;
3. the faces still in nobody are grouped among themselves (grouping.py); groups of at least
   `min_faces` become new people with new ids, the rest stay unassigned.
So ids never change for a person who keeps a face, and the first run is the plain grouping of
the whole album. `regroup` groups the whole album again, keeping corrected people whole and
giving every new group the id of the old person it shares the most faces with.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from photosearch.people.grouping import (
    DEFAULT_MIN_FACES,
    DEFAULT_THRESHOLD,
    EDGE_MAX,
    EDGE_MIN,
    EDGE_PRIOR,
    EDGE_WEIGHT,
    GroupStats,
    crowd_edges,
    group_faces,
)
from photosearch.people.store import FaceKey, PeopleState, Person
from photosearch.search.query import SearchableIndex

__all__ = ["AlbumFaces", "UpdateReport", "regroup", "update"]


@dataclass(frozen=True)
class UpdateReport:
    joined: int  # faces that joined an existing person
    new_people: int
    dropped_faces: int  # faces no longer in the index
    unassigned: int


class AlbumFaces:
    """An index snapshot's faces as the grouping needs them: rows by face key, photo ids."""

    def __init__(self, index: SearchableIndex) -> None:
        self.index = index
        self.descriptors = index.descriptors
        self.keys: list[FaceKey] = [
            (photo, int(face))
            for photo, face in zip(index.face_photos, index.face_numbers.tolist(), strict=True)
        ]
        self.row_of: dict[FaceKey, int] = {key: row for row, key in enumerate(self.keys)}
        photo_ids: dict[str, int] = {}
        self.photo_ids = np.array(
            [photo_ids.setdefault(photo, len(photo_ids)) for photo in index.face_photos],
            dtype=np.int64,
        )

    @cached_property
    def edges(self) -> np.ndarray:
        """Each face's crowd edge against the whole album (grouping.crowd_edges), so a face
        is judged the same in an update as in a grouping of the whole album."""
        return np.clip(crowd_edges(self.descriptors), EDGE_MIN, EDGE_MAX)

    def rows(self, keys) -> list[int]:
        return [self.row_of[key] for key in keys if key in self.row_of]


def update(
    state: PeopleState,
    faces: AlbumFaces,
    *,
    threshold: float | None = None,
    min_faces: int | None = None,
) -> UpdateReport:
    """Bring `state` up to the snapshot of `faces` (in place); see the module docstring."""
    threshold = _setting(threshold, state.threshold, DEFAULT_THRESHOLD)
    min_faces = int(_setting(min_faces, state.min_faces, DEFAULT_MIN_FACES))
    state.threshold, state.min_faces = threshold, min_faces
    dropped = _drop_vanished(state, faces)
    assigned = {key for person in state.people.values() for key in person.faces}
    pool = [row for row, key in enumerate(faces.keys) if key not in assigned]
    joined = _join_people(state, faces, pool, threshold)
    taken = set(joined)
    pool = [row for row in pool if row not in taken]
    new_people = _new_people(state, faces, pool, threshold, min_faces)
    state.model_id = faces.index.model_id
    state.index_generation = faces.index.generation
    assigned = sum(len(person.faces) for person in state.people.values())
    return UpdateReport(len(joined), new_people, dropped, len(faces.keys) - assigned)


def regroup(state: PeopleState, faces: AlbumFaces, *, threshold: float | None = None) -> None:
    """Group the whole album again (in place); corrected people stay whole and apart, other
    groups take the id of the old person they share most faces with."""
    threshold = _setting(threshold, state.threshold, DEFAULT_THRESHOLD)
    min_faces = int(_setting(None, state.min_faces, DEFAULT_MIN_FACES))
    state.threshold = threshold
    _drop_vanished(state, faces)
    kept = {key: person for key, person in state.people.items() if person.corrected}
    seeds = [faces.rows(person.faces) for person in kept.values()]
    labels = group_faces(
        faces.descriptors, faces.photo_ids, threshold=threshold, edges=faces.edges, seeds=seeds
    )
    owner = {faces.row_of[k]: p.id for p in state.people.values() for k in p.faces}
    old = {key: person for key, person in state.people.items() if not person.corrected}
    state.people = dict(kept)
    groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(labels.tolist()):
        groups[label].append(row)
    claimed = set(kept)
    fresh = []
    for rows in sorted(groups.values(), key=lambda rows: (-len(rows), rows[0])):
        pinned = [owner[row] for row in rows if owner.get(row) in kept]
        if pinned:
            kept[pinned[0]].faces = [faces.keys[row] for row in rows]
            continue
        if len(rows) < min_faces:
            continue
        votes = Counter(owner[row] for row in rows if owner.get(row) in old)
        choice = next((pid for pid, _ in votes.most_common() if pid not in claimed), None)
        if choice is None:
            fresh.append(rows)
            continue
        claimed.add(choice)
        state.people[choice] = Person(choice, [faces.keys[row] for row in rows], old[choice].name)
    for rows in fresh:
        person_id = state.new_id()
        state.people[person_id] = Person(person_id, [faces.keys[row] for row in rows])
    _drop_rejected(state)
    state.model_id = faces.index.model_id
    state.index_generation = faces.index.generation


def _setting(given, saved, default) -> float:
    if given is not None:
        return float(given)
    return float(saved) if saved is not None else float(default)


def _drop_vanished(state: PeopleState, faces: AlbumFaces) -> int:
    dropped = 0
    for person_id in list(state.people):
        person = state.people[person_id]
        live = [key for key in person.faces if key in faces.row_of]
        dropped += len(person.faces) - len(live)
        person.faces = live
        if not live:
            del state.people[person_id]
    return dropped


def _drop_rejected(state: PeopleState) -> None:
    for person_id, key in state.rejected:
        person = state.people.get(person_id)
        if person is not None and key in person.faces:
            person.faces.remove(key)


def _join_people(state: PeopleState, faces: AlbumFaces, pool: list[int], threshold: float):
    """Faces of the pool that join an existing person: {row: person id}."""
    if not pool or not state.people:
        return {}
    ids = sorted(state.people)
    member_rows = [faces.rows(state.people[pid].faces) for pid in ids]
    stats = GroupStats.of(faces.descriptors, member_rows)
    linkage = stats.linkage_to_faces(faces.descriptors[pool])  # (pool, people)
    # A person who already has a face of the photo cannot take another; "not this person" holds.
    column = {pid: number for number, pid in enumerate(ids)}
    pool_photos = faces.photo_ids[pool]
    for number, rows in enumerate(member_rows):
        linkage[np.isin(pool_photos, faces.photo_ids[rows]), number] = np.inf
    position_of = {row: position for position, row in enumerate(pool)}
    for person_id, key in state.rejected:
        position = position_of.get(faces.row_of.get(key, -1))
        if person_id in column and position is not None:
            linkage[position, column[person_id]] = np.inf
    # The bar moves with the crowd edges of the face and the person, as in grouping.py.
    shifts = faces.edges - EDGE_PRIOR
    person_shift = np.array([shifts[rows].sum() for rows in member_rows])
    sizes = np.array([len(rows) for rows in member_rows], dtype=np.float64)
    bars = threshold + EDGE_WEIGHT * (shifts[pool][:, None] + person_shift) / (sizes + 1.0)
    linkage = linkage / (bars * bars)  # under 1: close enough
    best = np.argmin(linkage, axis=1) if linkage.shape[1] else np.zeros(len(pool), int)
    value = linkage[np.arange(len(pool)), best]
    # Two new faces of one photo may not both join the same person: the closer one does.
    chosen: dict[tuple[int, int], tuple[float, int]] = {}
    for position in np.flatnonzero(value <= 1.0).tolist():
        row = pool[position]
        slot = (int(faces.photo_ids[row]), int(best[position]))
        if slot not in chosen or value[position] < chosen[slot][0]:
            chosen[slot] = (float(value[position]), row)
    joined = {}
    for (_, number), (_, row) in sorted(chosen.items(), key=lambda item: item[1][1]):
        person = state.people[ids[number]]
        person.faces.append(faces.keys[row])
        joined[row] = person.id
    return joined


def _new_people(state, faces: AlbumFaces, pool: list[int], threshold: float, min_faces: int):
    if len(pool) < min_faces:
        return 0
    labels = group_faces(
        faces.descriptors[pool], faces.photo_ids[pool], threshold=threshold, edges=faces.edges[pool]
    )
    groups: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels.tolist()):
        groups[label].append(pool[position])
    created = 0
    for rows in sorted(groups.values(), key=lambda rows: min(faces.keys[r] for r in rows)):
        if len(rows) < min_faces:
            continue
        person_id = state.new_id()
        state.people[person_id] = Person(person_id, sorted(faces.keys[row] for row in rows))
        created += 1
    return created
