"""`photosearch index` and `photosearch info`: build and inspect an album's face index.

The commands are registered on the main group in cli/main.py; `python -m photosearch.cli.index`
also runs them on their own.
"""

from __future__ import annotations

import json
import sys

import click

from photosearch.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_PARTIAL,
    detection_side_option,
    detector_option,
    device_option,
    fail,
    max_side_option,
    say,
    say_error,
)
from photosearch.index.indexer import DEFAULT_COMMIT_PHOTOS, DEFAULT_COMMIT_SECONDS

__all__ = ["index", "info", "main"]


@click.command()
@click.argument("album")
@click.option(
    "--index",
    "index_location",
    metavar="PATH",
    help="Where the index lives: a folder or an fsspec URL such as s3://bucket/index "
    "[default: the user data dir, one index per album].",
)
@device_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Threads reading and decoding photos while the networks run [default: CPU count, 2-8].",
)
@max_side_option
@detection_side_option
@detector_option
@click.option(
    "--commit-every",
    type=click.IntRange(min=1),
    default=DEFAULT_COMMIT_PHOTOS,
    show_default=True,
    help=f"Save progress after this many photos (and at least every "
    f"{DEFAULT_COMMIT_SECONDS:.0f} s): an interrupted run resumes from there.",
)
@click.option("--retry-errors", is_flag=True, help="Try unreadable photos again, even unchanged.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Detect faces again in the photos indexed with other settings than this run's "
    "(--detection-side, --max-side), changed or not. Searches keep working meanwhile; run "
    "it again to resume an interrupted rebuild.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Drop damaged index files (truncated, changed bytes, not Parquet) and index their "
    "photos again from the album (--rebuild does this too).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def index(
    album,
    index_location,
    device,
    workers,
    max_side,
    detection_side,
    detector,
    commit_every,
    retry_errors,
    rebuild,
    repair,
    quiet,
):
    """Index the faces of every photo in ALBUM (a folder or a URL such as s3://bucket/photos).

    Re-running updates the index: only new and changed photos are processed, renamed photos
    keep their faces, deleted ones are dropped. Unreadable files are reported (one line each)
    and recorded; the run goes on.
    """
    from photosearch.faces.engine import FaceEngine
    from photosearch.index.album import Album, AlbumError
    from photosearch.index.indexer import Indexer, default_index_location
    from photosearch.index.store import IndexStoreError

    try:
        source = Album(album)
    except (ValueError, ImportError, OSError) as exc:
        fail(f"cannot open album {album}: {exc}")
    location = index_location or default_index_location(source.location)
    engine = FaceEngine(
        device=device, max_side=max_side, detection_side=detection_side, detector=detector
    )
    if not quiet:
        say(f"indexing {source.location}")
        say(f"index    {location}  (device {engine.device})")
    indexer = Indexer(
        source,
        location,
        engine,
        workers=workers,
        commit_photos=commit_every,
        retry_errors=retry_errors,
        rebuild=rebuild,
        repair=repair,
        report=say,
        show_progress=not quiet,
    )
    try:
        stats = indexer.run()
    except (AlbumError, IndexStoreError) as exc:
        fail(str(exc))
    if quiet:
        sys.exit(EXIT_PARTIAL if stats.failed else 0)
    rate = stats.indexed / stats.seconds if stats.seconds else 0.0
    parts = [
        f"{stats.indexed} indexed ({_plural(stats.faces, 'face')}, {rate:.1f} photos/s)",
        f"{stats.reused} reused (renamed, copied or touched)",
        f"{stats.unchanged} unchanged",
        f"{stats.deleted} deleted",
        f"{stats.unreadable} unreadable",
    ]
    if stats.read_failures:
        parts.append(f"{stats.read_failures} failed (retried next run)")
    if stats.unlisted:
        parts.append(f"{_plural(stats.unlisted, 'folder')} not listed (their photos kept)")
    click.echo(
        f"{_plural(stats.listed, 'photo')} in the album: {', '.join(parts)} "
        f"in {stats.seconds:.1f} s"
    )
    sys.exit(EXIT_PARTIAL if stats.failed else 0)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@click.command()
@click.argument("album", required=False)
@click.option(
    "--index",
    "index_location",
    metavar="PATH",
    help="The index to describe [default: ALBUM's default index, or every default index].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per index.")
def info(album, index_location, as_json):
    """Describe an index: album, model, photos, faces, and the unreadable photos."""
    from photosearch.index.indexer import default_index_location, known_indexes
    from photosearch.index.store import (
        IndexFormatError,
        IndexReader,
        IndexStoreError,
        detection_counts,
    )

    if index_location:
        locations = [index_location]
    elif album:
        locations = [default_index_location(album)]
    else:
        locations = known_indexes()
        if not locations:
            fail("no index yet: run `photosearch index ALBUM` first")
    failed = False
    for number, location in enumerate(locations):
        try:
            reader = IndexReader(location)
            manifest = reader.manifest()
            if manifest is None:
                raise IndexFormatError(f"no photosearch index at {reader.location}")
            photos = reader.photos(manifest)
            errors = reader.errors(manifest)
        except IndexStoreError as exc:
            say_error(str(exc))
            failed = True
            continue
        stats = manifest.stats
        summary = {
            "index": reader.location,
            "album": manifest.album,
            "model_id": manifest.model_id,
            "generation": manifest.generation,
            "created": manifest.created,
            "updated": manifest.updated,
            "photos": stats.photos,
            "photos_with_faces": stats.photos - stats.no_face - stats.errors,
            "photos_without_faces": stats.no_face,
            "unreadable": stats.errors,
            "faces": stats.faces,
            "shards": len(manifest.shards),
            "bytes": sum(shard.bytes for shard in manifest.shards),
            "errors": [{"photo": photo, "error": error} for photo, error in errors],
            "detection": [
                {"settings": settings, "photos": count}
                for settings, count in detection_counts(photos).items()
            ],
        }
        if as_json:
            click.echo(json.dumps(summary))
            continue
        if number:
            click.echo()
        click.echo(f"index     {summary['index']}")
        click.echo(f"album     {summary['album']}")
        click.echo(f"model     {summary['model_id']}")
        click.echo(f"updated   {summary['updated']} (commit {summary['generation']})")
        click.echo(
            f"photos    {stats.photos}: {summary['photos_with_faces']} with faces, "
            f"{stats.no_face} without, {stats.errors} unreadable"
        )
        click.echo(f"faces     {stats.faces}")
        for entry in summary["detection"]:
            settings = entry["settings"] or "not recorded (indexed by an older photosearch)"
            click.echo(f"detection {settings}: {entry['photos']} photos")
        click.echo(f"storage   {len(manifest.shards)} shards, {_size(summary['bytes'])}")
        if errors:
            click.echo("unreadable photos:")
            for photo, error in errors:
                click.echo(f"  {photo}: {error}")
    if failed:
        # One index asked for: nothing done (2). Several: the others were described (1).
        sys.exit(EXIT_BAD_INPUT if len(locations) == 1 else EXIT_PARTIAL)


def _size(count: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The index commands on their own (normally run as `photosearch index|info`)."""


main.add_command(index)
main.add_command(info)

if __name__ == "__main__":
    main()
