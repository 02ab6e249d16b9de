"""Saved people: descriptors, one face thumbnail and "not me" exclusions, kept on disk.

A person reaches the disk only when the user saves them: one folder each in the data dir
(person.json and face.jpg, each written atomically), and "forget" deletes the folder.
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
    "PeopleStore",
    "SavedPerson",
]


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
    """Saved people, one folder each: person.json (descriptors, exclusions) and face.jpg.

    Lives in the data dir (``PHOTOSEARCH_DATA_DIR`` overrides it); "forget" deletes the folder.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from photosearch.index.indexer import data_dir

            root = data_dir() / "people"
        self.root = Path(root)
        self._lock = threading.Lock()

    def _folder(self, person_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{12}", person_id or ""):
            raise KeyError(person_id)
        return self.root / person_id

    def list(self) -> list[SavedPerson]:
        if not self.root.is_dir():
            return []
        people = [self.get(folder.name) for folder in sorted(self.root.iterdir())]
        return sorted((p for p in people if p is not None), key=lambda p: p.name.lower())

    def get(self, person_id: str | None) -> SavedPerson | None:
        try:
            folder = self._folder(person_id or "")
            data = json.loads((folder / "person.json").read_text())
        except (KeyError, OSError, ValueError):
            return None
        face_path = folder / "face.jpg"
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
            face=face_path.read_bytes() if face_path.exists() else None,
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
        folder.mkdir(parents=True, exist_ok=True)
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
            _write_atomic(folder / "person.json", json.dumps(record).encode())
            if person.face is not None:
                _write_atomic(folder / "face.jpg", person.face)

    def add_exclusion(self, person_id: str, album: str, photo: str, face: int) -> None:
        person = self.get(person_id)
        if person is None:
            raise KeyError(person_id)
        person.exclusions.setdefault(album, []).append((photo, int(face)))
        self.update(person)

    def forget(self, person_id: str) -> bool:
        """Delete the person: descriptors, face thumbnail and exclusions. True if it existed."""
        try:
            folder = self._folder(person_id)
        except KeyError:
            return False
        if not folder.exists():
            return False
        shutil.rmtree(folder)
        return True


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
