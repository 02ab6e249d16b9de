"""The user's corrections: name a person, merge people, remove a face ("not this person"), split.

Each changes a PeopleState in place and marks the people it touches `corrected`, which makes
them stick: updates never take faces away from anyone, and a regroup keeps corrected people
whole and apart. A removed face is remembered in `rejected`, so it never joins that person
again (it may join someone else). A merged id is remembered in `merged`, so the old id still
finds the person.
"""

from __future__ import annotations

from collections.abc import Iterable

from photosearch.people.store import FaceKey, PeopleState, Person

__all__ = ["PeopleError", "find_person", "merge", "name", "remove_faces", "split"]


class PeopleError(ValueError):
    """A correction that cannot be made; `str()` is one line for the user."""


def find_person(state: PeopleState, which: str | int) -> Person:
    """A person by id (merged ids follow their merge) or by name (case-insensitive)."""
    text = str(which).strip()
    if text.lstrip("#").isdigit():
        number = int(text.lstrip("#"))
        seen = set()
        while number in state.merged and number not in seen:
            seen.add(number)
            number = state.merged[number]
        if number in state.people:
            return state.people[number]
        raise PeopleError(f"no person {text} (see `photosearch people`)")
    named = [p for p in state.people.values() if p.name and p.name.casefold() == text.casefold()]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(str(p.id) for p in named)
        raise PeopleError(f"several people are called {text!r} ({ids}): use the id")
    raise PeopleError(f"nobody is called {text!r} (see `photosearch people`)")


def name(state: PeopleState, which: str | int, new_name: str | None) -> Person:
    """Name (or with None/"" unname) a person."""
    person = find_person(state, which)
    cleaned = " ".join((new_name or "").split()) or None
    if cleaned is not None:
        if cleaned.isdigit():
            raise PeopleError(f"{cleaned!r} looks like a person id: choose a name with letters")
        others = [p for p in state.people.values() if p is not person and p.name]
        clash = next((p for p in others if p.name.casefold() == cleaned.casefold()), None)
        if clash is not None:
            raise PeopleError(
                f"person {clash.id} is already called {clash.name!r}: if they are the same "
                f"person, merge them (`photosearch people merge {clash.id} {person.id}`)"
            )
    person.name = cleaned
    person.corrected = True
    return person


def merge(state: PeopleState, into: str | int, others: Iterable[str | int]) -> tuple[Person, list]:
    """Move the faces of `others` into `into`; returns the person and the faces left out
    because the person already has a face of their photo (one identity per photo)."""
    target = find_person(state, into)
    left_out: list[FaceKey] = []
    for which in others:
        other = find_person(state, which)
        if other is target:
            continue
        photos = {photo for photo, _ in target.faces}
        for key in other.faces:
            if key[0] in photos:
                left_out.append(key)
            else:
                target.faces.append(key)
                photos.add(key[0])
        if target.name is None:
            target.name = other.name
        del state.people[other.id]
        state.merged[other.id] = target.id
        for old, new in state.merged.items():
            if new == other.id:
                state.merged[old] = target.id
    target.faces.sort()
    target.corrected = True
    return target, left_out


def remove_faces(state: PeopleState, which: str | int, keys: Iterable[FaceKey]) -> Person:
    """'Not this person': the faces leave the person and never join them again."""
    person = find_person(state, which)
    keys = list(keys)
    missing = [key for key in keys if key not in person.faces]
    if missing:
        photo, face = missing[0]
        raise PeopleError(f"{photo} face {face} is not one of person {person.id}'s faces")
    for key in keys:
        person.faces.remove(key)
        state.rejected.add((person.id, key))
    person.corrected = True
    if not person.faces:
        del state.people[person.id]
    return person


def split(
    state: PeopleState, which: str | int, keys: Iterable[FaceKey], new_name: str | None = None
) -> Person:
    """Move the faces to a new person (both then kept apart); returns the new person."""
    person = find_person(state, which)
    keys = sorted(set(keys))
    missing = [key for key in keys if key not in person.faces]
    if missing:
        photo, face = missing[0]
        raise PeopleError(f"{photo} face {face} is not one of person {person.id}'s faces")
    if not keys or len(keys) == len(person.faces):
        raise PeopleError("a split needs some of the person's faces, not none or all")
    person.faces = [key for key in person.faces if key not in set(keys)]
    person.corrected = True
    created = Person(state.new_id(), keys, corrected=True)
    state.people[created.id] = created
    if new_name:
        name(state, created.id, new_name)
    return created
