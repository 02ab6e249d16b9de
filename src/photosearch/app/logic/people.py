"""Saved people: descriptors, one face thumbnail and "not me" exclusions, kept in storage.

A person is stored only when the user saves them: one folder each under the user's own prefix
(``saved-people/<user>/<id>/``: person.json and face.jpg, each replaced atomically), on local
disk or S3 through photosearch.storage, and "forget" deletes the folder. `people_location`
says where a user's people live; nothing reads another user's prefix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_PEOPLE",
    "PeopleStore",
    "SavedPerson",
    "adopt_legacy_people",
    "people_location",
]

# Where every user's saved people live (a folder or an s3:// URL); one sub-folder per user.
ENV_PEOPLE = "PHOTOSEARCH_APP_PEOPLE"


def people_location(user: str, environ: Mapping[str, str] | None = None) -> str:
    """The saved people of `user`: ``<PHOTOSEARCH_APP_PEOPLE>/<user>``, by default
    ``<data dir>/saved-people/<user>``. `user` is an account name (checked by the gateway)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,31}", user or "") or user in (".", ".."):
        raise ValueError(f"bad user name {user!r}")
    environ = os.environ if environ is None else environ
    base = environ.get(ENV_PEOPLE)
    if base:
        from photosearch.storage import canonical_location

        base = canonical_location(base)
    else:
        from photosearch.index.indexer import data_dir

        base = str(data_dir() / "saved-people")
    return f"{base.rstrip('/')}/{user}"


def adopt_legacy_people(legacy: Path, store: PeopleStore) -> int:
    """Move people saved before accounts existed (``<data dir>/people/<id>``) into `store` (the
    owner's, on local disk); returns how many moved. Nobody saved is ever dropped."""
    if not legacy.is_dir() or "://" in store.location:
        return 0
    moved = 0
    for folder in sorted(legacy.iterdir()):
        target = Path(store.location) / folder.name
        if re.fullmatch(r"[0-9a-f]{12}", folder.name) and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(target))
            moved += 1
    return moved


@dataclass
class SavedPerson:
    id: str
    name: str
    created: str
    model_id: str
    descriptors: np.ndarray  # (R, 128) float32
    exclusions: dict[str, list[tuple[str, int]]]  # album location -> (photo, face) "not me"
    face: bytes | None = None  # JPEG thumbnail of the first reference face

    def exclusions_for(self, album: str) -> list[tuple[str, int]]:
        return [(photo, int(face)) for photo, face in self.exclusions.get(album, [])]


class PeopleStore:
    """One user's saved people, one folder each: person.json (descriptors, exclusions) and
    face.jpg, under `root` (a folder or URL, see `people_location`); "forget" deletes the
    folder."""

    def __init__(self, root: str | Path) -> None:
        from photosearch.storage import canonical_location, open_filesystem

        self.location = canonical_location(root)
        self._fs, self._root = open_filesystem(self.location)
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        return self._root

    def _folder(self, person_id: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{12}", person_id or ""):
            raise KeyError(person_id)
        return f"{self._root.rstrip('/')}/{person_id}"

    def list(self) -> list[SavedPerson]:
        try:
            entries = self._fs.ls(self._root, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = sorted(str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        people = [self.get(name) for name in names if re.fullmatch(r"[0-9a-f]{12}", name)]
        return sorted((p for p in people if p is not None), key=lambda p: p.name.lower())

    def get(self, person_id: str | None) -> SavedPerson | None:
        try:
            folder = self._folder(person_id or "")
            data = json.loads(self._fs.cat_file(f"{folder}/person.json"))
        except (KeyError, OSError, ValueError):
            return None
        try:
            face = self._fs.cat_file(f"{folder}/face.jpg")
        except OSError:
            face = None
        return SavedPerson(
            id=person_id or "",
            name=str(data["name"]),
            created=str(data["created"]),
            model_id=str(data["model_id"]),
            descriptors=np.asarray(data["descriptors"], dtype=np.float32).reshape(-1, 128),
            exclusions={
                album: [(str(p), int(f)) for p, f in pairs]
                for album, pairs in data.get("exclusions", {}).items()
            },
            face=face,
        )

    def create(
        self,
        name: str,
        descriptors: np.ndarray,
        *,
        model_id: str,
        face: bytes | None = None,
        exclusions: Mapping[str, Iterable[tuple[str, int]]] | None = None,
    ) -> SavedPerson:
        person = SavedPerson(
            id=uuid.uuid4().hex[:12],
            name=name.strip() or "Unnamed",
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            model_id=model_id,
            descriptors=np.asarray(descriptors, dtype=np.float32).reshape(-1, 128),
            exclusions={album: list(pairs) for album, pairs in (exclusions or {}).items()},
            face=face,
        )
        self.update(person)
        return person

    def update(self, person: SavedPerson) -> None:
        folder = self._folder(person.id)
        record = {
            "name": person.name,
            "created": person.created,
            "model_id": person.model_id,
            # float32 -> float64 -> JSON round-trips exactly
            "descriptors": person.descriptors.astype(np.float64).tolist(),
            "exclusions": {
                album: sorted({(photo, int(face)) for photo, face in pairs})
                for album, pairs in person.exclusions.items()
                if pairs
            },
        }
        with self._lock:
            self._write(f"{folder}/person.json", json.dumps(record).encode())
            if person.face is not None:
                self._write(f"{folder}/face.jpg", person.face)

    def _write(self, path: str, data: bytes) -> None:
        from photosearch.storage import is_local

        if is_local(self._fs):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(Path(path), data)
        else:
            self._fs.pipe_file(path, data)  # one PUT replaces an object atomically

    def add_exclusion(self, person_id: str, album: str, photo: str, face: int) -> None:
        person = self.get(person_id)
        if person is None:
            raise KeyError(person_id)
        person.exclusions.setdefault(album, []).append((photo, int(face)))
        self.update(person)

    def remove_exclusion(self, person_id: str, album: str, photo: str, face: int) -> None:
        """Undo a "not me": the face may match this person again."""
        person = self.get(person_id)
        if person is None:
            raise KeyError(person_id)
        kept = [pair for pair in person.exclusions_for(album) if pair != (photo, int(face))]
        person.exclusions[album] = kept
        self.update(person)

    def forget(self, person_id: str) -> bool:
        """Delete the person: descriptors, face thumbnail and exclusions. True if it existed."""
        try:
            folder = self._folder(person_id)
        except KeyError:
            return False
        if not self._fs.exists(f"{folder}/person.json"):
            return False
        self._fs.rm(folder, recursive=True)
        return True


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
