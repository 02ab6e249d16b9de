"""`photosearch people`: who is in the album, and the corrections (name, merge, remove, split).

`photosearch people` groups every face of the index into people (new faces join the people
already saved, nobody is regrouped) and lists them, most photos first. The corrections change
people.json beside the index (docs/index-format.md) and stick through later updates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import click

from photosearch.cli.options import fail, say

__all__ = ["people"]

Command = TypeVar("Command", bound=Callable)


def index_options(function: Command) -> Command:
    function = click.option(
        "--album", metavar="PATH_OR_URL", help="Use this album's default index."
    )(function)
    return click.option(
        "--index",
        "index_location",
        metavar="PATH_OR_URL",
        help="The index whose people these are (default: the --album's index, or the only one).",
    )(function)


def _location(index_location, album) -> str:
    from photosearch.cli.search import resolve_index

    return resolve_index(index_location, album)


def _failures():
    """The errors a people command reports as one line (exit status 2)."""
    from photosearch.index.store import IndexStoreError
    from photosearch.people.corrections import PeopleError
    from photosearch.people.store import PeopleConflictError, PeopleFormatError

    return (IndexStoreError, PeopleError, PeopleFormatError, PeopleConflictError, OSError)


@click.group(invoke_without_command=True)
@index_options
@click.option("--json", "as_json", is_flag=True, help="One JSON line per person, then a summary.")
@click.option(
    "--threshold",
    type=click.FloatRange(0.2, 1.0),
    default=None,
    help="How close on average two groups of faces must be to be one person (saved with the "
    "people) [default: the saved one, else 0.52]. Lower splits more.",
)
@click.option(
    "--min-faces",
    type=click.IntRange(1),
    default=None,
    help="Fewer faces than this stay unassigned [default: the saved value, else 3].",
)
@click.option(
    "--regroup",
    is_flag=True,
    help="Group the whole album again (corrected people are kept whole; ids are kept where "
    "the people are the same).",
)
@click.pass_context
def people(ctx, index_location, album, as_json, threshold, min_faces, regroup) -> None:
    """List the people in the album, most photos first (grouping new faces first).

    Faces of people with fewer than --min-faces faces are listed as unassigned. Two faces of
    one photo are never the same person. Correct mistakes with the sub-commands.
    """
    if ctx.invoked_subcommand is not None:
        if index_location or album or as_json or threshold or min_faces or regroup:
            fail("give the options after the sub-command, e.g. `people name --index I 3 Ada`")
        return
    from photosearch.people.refresh import album_people

    location = _location(index_location, album)
    try:
        found = album_people(
            location, threshold=threshold, min_faces=min_faces, full_regroup=regroup
        )
    except _failures() as error:
        fail(str(error))
    show(found, location, as_json)


def show(found, location: str, as_json: bool) -> None:
    summaries = found.summaries()
    loose = found.unassigned()
    state = found.state
    if as_json:
        for summary in summaries:
            click.echo(json.dumps(summary.to_json()))
        click.echo(
            json.dumps(
                {
                    "index": location,
                    "album": found.index.snapshot.manifest.album,
                    "people": len(summaries),
                    "faces_indexed": len(found.faces.keys),
                    "assigned": len(found.faces.keys) - len(loose),
                    "unassigned": [{"photo": photo, "face": face} for photo, face in loose],
                    "threshold": state.threshold,
                    "min_faces": state.min_faces,
                }
            )
        )
        return
    for summary in summaries:
        photo, face = summary.cover
        click.echo(
            f"{summary.id:>5}  {summary.label}: {summary.photos} photo"
            f"{'s' if summary.photos != 1 else ''} (cover {photo} face {face})"
        )
    say(
        f"{len(summaries)} people in {len(found.faces.keys)} faces; {len(loose)} faces "
        f"unassigned (people with fewer than {state.min_faces} faces)"
    )


def _correct(index_location, album, change, describe) -> None:
    from photosearch.people.refresh import correct

    location = _location(index_location, album)
    try:
        _, result = correct(location, change)
    except _failures() as error:
        fail(str(error))
    say(describe(result))


def _face_keys(person_faces, values) -> list:
    """PHOTO or PHOTO#N -> the person's face keys (a person has one face per photo)."""
    keys = []
    for value in values:
        photo, hash_sign, number = value.rpartition("#")
        if hash_sign and number.isdigit():
            keys.append((photo, int(number)))
            continue
        mine = [key for key in person_faces if key[0] == value]
        keys.append(mine[0] if mine else (value, 0))
    return keys


@people.command("name")
@index_options
@click.argument("person")
@click.argument("name", required=False)
def name_command(index_location, album, person, name) -> None:
    """Name PERSON (an id or a name); without NAME, forget the name."""
    from photosearch.people import corrections

    _correct(
        index_location,
        album,
        lambda state: corrections.name(state, person, name),
        lambda found: f"person {found.id} is now {found.name or 'unnamed'}",
    )


@people.command("merge")
@index_options
@click.argument("person")
@click.argument("others", nargs=-1, required=True)
def merge_command(index_location, album, person, others) -> None:
    """Merge OTHERS into PERSON (ids or names): they are one person."""
    from photosearch.people import corrections

    def describe(result) -> str:
        merged, left_out = result
        line = f"person {merged.id} now has {len(merged.faces)} faces"
        if left_out:
            line += f"; {len(left_out)} left out (already a face of theirs in the same photo)"
        return line

    _correct(
        index_location,
        album,
        lambda state: corrections.merge(state, person, others),
        describe,
    )


@people.command("remove")
@index_options
@click.argument("person")
@click.argument("faces", nargs=-1, required=True, metavar="PHOTO[#FACE]...")
def remove_command(index_location, album, person, faces) -> None:
    """Not this person: remove their face in each PHOTO (album key); it never comes back."""
    from photosearch.people import corrections

    def change(state):
        found = corrections.find_person(state, person)
        return corrections.remove_faces(state, found.id, _face_keys(found.faces, faces))

    _correct(
        index_location,
        album,
        change,
        lambda found: (
            f"removed {len(faces)} face{'s' if len(faces) != 1 else ''} from person {found.id}"
        ),
    )


@people.command("split")
@index_options
@click.argument("person")
@click.argument("faces", nargs=-1, required=True, metavar="PHOTO[#FACE]...")
@click.option("--name", "new_name", help="Name the new person.")
def split_command(index_location, album, person, faces, new_name) -> None:
    """Split PERSON: their faces in the PHOTOs become a new person, kept apart from them."""
    from photosearch.people import corrections

    def change(state):
        found = corrections.find_person(state, person)
        return corrections.split(state, found.id, _face_keys(found.faces, faces), new_name)

    _correct(
        index_location,
        album,
        change,
        lambda created: f"new person {created.id} with {len(created.faces)} faces",
    )
