"""Index: the album and its face index, computed once per photo.

album.py lists an album's photos (a folder or an fsspec URL) and fingerprints their bytes;
store/ is the crash-safe Parquet + manifest index (docs/index-format.md), one module a job;
indexer.py brings an index up to date with an album: incremental, resumable, decoding and
detecting in parallel.

Imports storage/, faces/ and the root's progress bar only.
"""
