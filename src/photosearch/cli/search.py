"""`photosearch search`: find every photo of a person in an indexed album."""

from __future__ import annotations

import csv
import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from photosearch.cli.options import (
    EXIT_PARTIAL,
    FiniteFloat,
    device_option,
    fail,
    say,
    say_error,
)
from photosearch.search.query import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from photosearch.faces.base import FaceFinder

__all__ = ["search"]


def resolve_index(index: str | None, album: str | None) -> str:
    """--index, else the album's default index, else the only index on this machine."""
    from photosearch.index.indexer import default_index_location, known_indexes
    from photosearch.storage import canonical_location

    if index:
        return canonical_location(index)
    if album:
        return default_index_location(album)
    known = known_indexes()
    if len(known) == 1:
        return known[0]
    if not known:
        fail("no index yet: run `photosearch index ALBUM` first, or name one with --index")
    fail(
        "several indexes on this machine: choose one with --album or --index "
        f"(known: {', '.join(known)})"
    )


def read_queries(path: Path) -> OrderedDict[str, list[str]]:
    """query id -> reference photos, from a CSV with columns query,reference."""
    queries: OrderedDict[str, list[str]] = OrderedDict()
    try:
        with path.open(newline="") as handle:
            rows = csv.DictReader(handle)
            if not rows.fieldnames or not {"query", "reference"} <= set(rows.fieldnames):
                fail(f"{path}: needs the columns query,reference")
            for row in rows:
                queries.setdefault(row["query"], []).append(row["reference"])
    except OSError as error:
        fail(f"{path}: {error.strerror or error}")
    return queries


@click.command()
@click.argument("references", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--index",
    "index_location",
    metavar="PATH_OR_URL",
    help="The index to search (default: the --album's index, or the only one).",
)
@click.option("--album", metavar="PATH_OR_URL", help="Search this album's default index.")
@click.option(
    "--strictness",
    type=FiniteFloat(-0.5, 0.5),
    default=None,
    help="How much closer than the album's strangers a face must be to count as the person "
    "(the adaptive search's margin) [default: calibrated for the album's size: 0.06 up to "
    "300 faces, 0.08 at 1,000, 0.12 at 10,000]. "
    "Higher is stricter: fewer look-alikes, more missed photos.",
)
@click.option(
    "--threshold",
    type=FiniteFloat(0.0, 2.0),
    default=None,
    help="Use a fixed face distance instead of the adaptive search: every face closer than "
    f"this to a reference (like face_recognition's tolerance; {DEFAULT_THRESHOLD} is dlib's). "
    "Lower is stricter.",
)
@click.option(
    "--face",
    type=click.IntRange(1),
    default=None,
    help="Which face of a reference photo is the person, counted left to right "
    "[default: the largest, by its part inside the photo].",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="PHOTO[#FACE]",
    help="A photo (album key) that is not the person; repeatable. With #N only its "
    "face N (as in --json's face_index) is excluded.",
)
@click.option(
    "--person",
    metavar="ID|NAME",
    help="Search for a person of `photosearch people` (an id or a name): their grouped "
    "faces are the references (with any reference photos given too).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--csv", "as_csv", is_flag=True, help="Print CSV: photo,distance,left,top,right,bottom."
)
@click.option(
    "--copy-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the matched photos into this folder (sub-folders kept).",
)
@click.option(
    "--queries",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run many searches: a CSV with columns query,reference (rows with the same "
    "query are one person's references); prints one JSON line per query.",
)
@click.option(
    "--endpoint",
    metavar="NAME",
    help="Search through a deployed SageMaker endpoint instead of a local index.",
)
@device_option
def search(
    references,
    index_location,
    album,
    strictness,
    threshold,
    face,
    exclude,
    person,
    as_json,
    as_csv,
    copy_to,
    queries,
    endpoint,
    device,
) -> None:
    """Find every photo in the index that shows the person in REFERENCES.

    Every indexed face is compared with the reference faces (exact, no top-N cut); each photo
    that shows the person is listed once, best first. By default each reference is judged
    against the album's own crowd of strangers (adaptive, calibrated on LFW), and confident
    matches help find the rest; --threshold switches to a fixed distance. Several reference
    photos of the same person find more: a face matches if it matches any of them.
    Exit status: 0 with matches or none, 1 when a reference photo (or a copy) failed and the
    search went on without it, 2 for unusable input.
    """
    if as_json and as_csv:
        fail("choose one of --json and --csv")
    if queries and (references or person):
        fail("give reference photos or --person, or --queries FILE.csv (not both)")
    if not (references or queries or person):
        fail("give reference photos, --person ID|NAME, or --queries FILE.csv")
    if person and endpoint:
        fail("--person searches a local index, not an endpoint")
    excluded = parse_exclusions(exclude)
    if endpoint:
        run_endpoint_search(
            endpoint, references, threshold, face, excluded, as_json, as_csv, strictness
        )
        return

    from photosearch.index.store import IndexStoreError
    from photosearch.search.query import SearchableIndex, engine_for_index

    location = resolve_index(index_location, album)
    try:
        index = SearchableIndex.load(location)
    except (IndexStoreError, OSError) as error:
        fail(f"index {location}: {error}")
    if index is None:
        fail(f"no index at {location}: run `photosearch index ALBUM --index {location}` first")
    engine = engine_for_index(index.model_id, device=device)

    if queries:
        planned = list(read_queries(queries).items())
        # Queries are read a few at a time, their reference photos in parallel (engine
        # workers), and answered in file order as each group is done.
        group = max(1, 4 * engine.workers)
        failed = False
        for start in range(0, len(planned), group):
            chunk = planned[start : start + group]
            paths = [path for _, query_paths in chunk for path in query_paths]
            found = iter(reference_results(engine, paths, face))
            for query_id, query_paths in chunk:
                descriptors, problems = collect(next(found) for _ in query_paths)
                for problem in problems:
                    say_error(problem)
                failed = failed or bool(problems)
                matches = search_matches(index, descriptors, threshold, strictness, excluded)
                click.echo(
                    json.dumps(
                        {
                            "query": query_id,
                            "references": len(descriptors),
                            "matches": [m.to_json() for m in matches],
                        }
                    )
                )
        sys.exit(EXIT_PARTIAL if failed else 0)

    descriptors, problems = reference_descriptors(engine, [str(p) for p in references], face)
    for problem in problems:
        say_error(problem)
    if person:
        descriptors += person_descriptors(location, index, person)
    if not descriptors:
        fail("no usable reference face")
    matches = search_matches(index, descriptors, threshold, strictness, excluded)
    emit(
        matches,
        as_json,
        as_csv,
        extra={
            "index": location,
            "album": index.snapshot.manifest.album,
            **settings(threshold, strictness, len(index.descriptors)),
            "references": len(descriptors),
            "faces_searched": len(index.descriptors),
            "photos_indexed": index.photo_count,
        },
    )
    copy_failed = copy_results(index, matches, copy_to) if copy_to else False
    sys.exit(EXIT_PARTIAL if problems or copy_failed else 0)


def person_descriptors(location: str, index, which: str) -> list:
    """The reference descriptors of a person of `photosearch people`."""
    from photosearch.index.store import IndexStoreError
    from photosearch.people.corrections import PeopleError, find_person
    from photosearch.people.listing import reference_descriptors
    from photosearch.people.refresh import album_people
    from photosearch.people.store import PeopleConflictError, PeopleFormatError

    try:
        found = album_people(location, index=index)
        chosen = find_person(found.state, which)
    except (IndexStoreError, PeopleError, PeopleFormatError, PeopleConflictError) as error:
        fail(str(error))
    say(
        f"searching for {chosen.name or f'person {chosen.id}'} with {len(chosen.faces)} "
        "grouped faces"
    )
    return list(reference_descriptors(chosen, found.faces))


def parse_exclusions(values) -> set:
    """'photo' excludes every face of it, 'photo#N' only face N: {(photo, face or None)}."""
    parsed = set()
    for value in values:
        photo, hash_sign, face = value.rpartition("#")
        if hash_sign and face.isdigit():
            parsed.add((photo, int(face)))
        else:
            parsed.add((value, None))
    return parsed


def reference_descriptors(engine: FaceFinder, paths, face) -> tuple[list, list[str]]:
    """The chosen face's descriptor of every reference photo that has one, and one line per
    photo that does not."""
    return collect(reference_results(engine, paths, face))


def reference_results(engine: FaceFinder, paths, face) -> list:
    """Per path, in order: the chosen face's descriptor, or the ReferencePhotoError (photos are
    read in parallel on the engine's workers)."""
    from photosearch.search.query import ReferencePhotoError, read_reference

    def describe(path):
        try:
            found = read_reference(engine, path, face=None if face is None else face - 1)
        except ReferencePhotoError as error:
            return error
        if len(found.faces) > 1:
            # Several faces: say which one is searched, so a crowd photo is no silent guess.
            how = "the largest" if face is None else "as asked"
            say(
                f"{path}: {len(found.faces)} faces, searching face {found.chosen + 1} of "
                f"{len(found.faces)} counted left to right ({how}); use --face N for another"
            )
        return found.descriptor

    return engine.map_parallel(describe, paths)


def collect(results) -> tuple[list, list[str]]:
    descriptors, problems = [], []
    for result in results:
        if isinstance(result, Exception):
            problems.append(str(result))
        else:
            descriptors.append(result)
    return descriptors, problems


def settings(threshold, strictness, faces: int) -> dict:
    """How the search decided, for the output."""
    if threshold is not None:
        return {"mode": "distance", "threshold": threshold}
    from photosearch.search.calibration import default_threshold

    return {
        "mode": "adaptive",
        "strictness": default_threshold(faces) if strictness is None else strictness,
    }


def search_matches(index, descriptors, threshold, strictness, excluded):
    import numpy as np

    from photosearch.search.query import find_matches

    if not descriptors:
        return []
    whole_photos = {photo for photo, face in excluded if face is None}
    pairs = {(photo, face) for photo, face in excluded if face is not None}
    pairs |= {
        (photo, int(number))
        for photo, number in zip(index.face_photos, index.face_numbers, strict=True)
        if photo in whole_photos
    }
    return find_matches(
        np.stack(descriptors), index, threshold=threshold, strictness=strictness, exclude=pairs
    )


def emit(matches, as_json: bool, as_csv: bool, extra: dict) -> None:
    if as_json:
        # Photo keys are album-relative; "album" (local searches) gives the root they join.
        click.echo(json.dumps({"matches": [m.to_json() for m in matches], **extra}))
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["photo", "distance", "left", "top", "right", "bottom"])
        for m in matches:
            writer.writerow([m.photo, f"{m.distance:.6f}", *m.box])
    else:
        for m in matches:
            click.echo(f"{m.distance:.3f}  {m.photo}  face at {tuple(m.box)}")
        if extra["mode"] == "distance":
            how = f"distance under {extra['threshold']}"
        else:
            strictness = extra["strictness"]
            how = "adaptive" + (f", strictness {strictness:.3f}" if strictness is not None else "")
        searched = extra.get("faces_searched")
        click.echo(
            f"{len(matches)} photo{'s' if len(matches) != 1 else ''} found ({how}"
            f"{f', {searched} faces searched' if searched else ''})",
            err=True,
        )


def copy_results(index, matches, destination: Path) -> bool:
    """Copy the matched photos; True when some could not be copied (each said on one line)."""
    from photosearch.index.album import Album
    from photosearch.search.results import copy_matches

    album = index.snapshot.manifest.album
    if not album:
        fail("the index does not record its album, so its photos cannot be copied")
    try:
        report = copy_matches(Album(album), matches, destination)
    except OSError as error:  # the destination itself: not writable, a file, a full disk
        fail(f"cannot copy to {destination}: {error.strerror or error}")
    click.echo(
        f"copied {report.copied} photos to {report.destination}"
        f"{f' ({report.already_there} already there)' if report.already_there else ''}",
        err=True,
    )
    for problem in report.failed:
        say_error(problem)
    return bool(report.failed)


def run_endpoint_search(
    endpoint, references, threshold, face, excluded, as_json, as_csv, strictness=None
) -> None:
    from photosearch.aws.endpoint_client import EndpointSearchError, search_via_endpoint
    from photosearch.search.match import Match

    images = []
    for path in references:
        try:
            images.append(Path(path).read_bytes())
        except OSError as error:
            fail(f"{path}: {error.strerror or error}")
    pairs = [(photo, face_number) for photo, face_number in excluded if face_number is not None]
    try:
        found = search_via_endpoint(
            endpoint,
            images,
            threshold,
            face=None if face is None else face - 1,
            exclude=pairs,
            strictness=strictness,
        )
    except EndpointSearchError as error:
        fail(str(error))
    matches = [
        Match(m["photo"], m["distance"], tuple(m["box"]), m["face_index"], m["score"])
        for m in found
    ]
    emit(
        matches,
        as_json,
        as_csv,
        extra={
            "endpoint": endpoint,
            **(
                {"mode": "distance", "threshold": threshold}
                if threshold is not None
                else {"mode": "adaptive", "strictness": strictness}
            ),
            "references": len(images),
            "faces_searched": None,
        },
    )
