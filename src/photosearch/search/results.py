"""Acting on search results: copy the matched photos into a folder, or pack them in a zip.

Shared by the CLI (`photosearch search --copy-to`) and the web app.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from photosearch.index.album import Album
from photosearch.search.match import Match

__all__ = [
    "UNREADABLE_LIST_NAME",
    "CopyReport",
    "copy_matches",
    "write_zip",
    "zip_bytes",
    "zip_name",
]

UNREADABLE_LIST_NAME = "could-not-read.txt"


def zip_name(person: str | None = None) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", person or "").strip("-")
    return f"photos-of-{slug}.zip" if slug else "photosearch-matches.zip"


def write_zip(album: Album, photos: Iterable[str], target: BinaryIO) -> list[str]:
    """Write the photos (album keys, folders kept) into a zip; returns those that failed.

    Photos are stored, not recompressed (JPEG/HEIC do not shrink). A failed photo is listed in
    could-not-read.txt inside the zip so the user knows what is missing.
    """
    failed: list[str] = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for photo in photos:
            try:
                data = album.read(photo)
            except (OSError, ValueError) as error:  # ValueError: a key leaving the album
                failed.append(f"{photo}: {error.__class__.__name__}: {error}")
                continue
            archive.writestr(_safe_member(photo), data)
        if failed:
            archive.writestr(UNREADABLE_LIST_NAME, "\n".join(failed) + "\n")
    return failed


def zip_bytes(album: Album, matches: Sequence[Match]) -> bytes:
    """The matched photos as one zip, in memory (Streamlit serves downloads from memory)."""
    buffer = io.BytesIO()
    write_zip(album, [match.photo for match in matches], buffer)
    return buffer.getvalue()


def _safe_member(key: str) -> str:
    """An album key as a zip/copy path that cannot escape the target folder."""
    parts = [part for part in PurePosixPath(key).parts if part not in ("", ".", "..", "/")]
    return "/".join(parts) or "photo"


@dataclass(frozen=True)
class CopyReport:
    destination: str
    copied: int
    already_there: int
    failed: list[str]


def copy_matches(album: Album, matches: Sequence[Match], destination: str | Path) -> CopyReport:
    """Copy the matched photos into a local folder, keeping their album sub-folders.

    An identical file already there is left alone; a different file of the same name is
    never overwritten: the copy gets a " (2)" suffix.
    """
    root = Path(destination).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    copied = already = 0
    failed: list[str] = []
    for match in matches:
        try:
            data = album.read(match.photo)
        except (OSError, ValueError) as error:  # ValueError: a key leaving the album
            failed.append(f"{match.photo}: {error.__class__.__name__}")
            continue
        target = root / _safe_member(match.photo)
        target.parent.mkdir(parents=True, exist_ok=True)
        number = 2
        while target.exists():
            if target.read_bytes() == data:
                break
            stem = Path(_safe_member(match.photo)).stem
            target = target.with_name(f"{stem} ({number}){target.suffix}")
            number += 1
        if target.exists():
            already += 1
            continue
        temporary = target.with_name(f".{target.name}.part")
        temporary.write_bytes(data)
        os.replace(temporary, target)
        copied += 1
    return CopyReport(str(root.resolve()), copied, already, failed)
