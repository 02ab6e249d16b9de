"""Checks on a stored index that several test modules share."""

from __future__ import annotations

from photosearch.index.store import IndexReader, IndexSnapshot


def assert_consistent(location) -> IndexSnapshot:
    """One snapshot: agrees with its manifest, no duplicates, faces only of live photos."""
    snapshot = IndexReader(location).snapshot()
    stats = snapshot.manifest.stats
    photos = snapshot.photos.column("photo").to_pylist()
    assert len(photos) == len(set(photos)) == stats.photos
    pairs = list(
        zip(
            snapshot.faces.column("photo").to_pylist(),
            snapshot.faces.column("face").to_pylist(),
            strict=True,
        )
    )
    assert len(pairs) == len(set(pairs)) == stats.faces == len(snapshot.descriptors)
    assert set(snapshot.faces.column("photo").to_pylist()) <= set(photos)
    return snapshot
