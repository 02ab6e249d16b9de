"""What the commands share: option declarations (declared once, with one help text) and the
way they report problems on stderr.

Exit statuses, the same for every command (README, "Exit status"):

- EXIT_OK (0): everything done;
- EXIT_PARTIAL (1): some photos or files failed, and the run went on past them;
- EXIT_BAD_INPUT (2): bad usage or configuration (a missing album, an unusable index or
  device, a refused argument, an AWS call that failed): nothing done. `fail` ends a command so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import click

from photosearch.faces.engine import DEFAULT_MAX_SIDE, DETECTION_SIDE

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "FiniteFloat",
    "checked_device",
    "detection_side_option",
    "detector_option",
    "device_option",
    "fail",
    "max_side_option",
    "mirror_option",
    "parse_upsample",
    "say",
    "say_error",
    "upsample_option",
]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_BAD_INPUT = 2
Command = TypeVar("Command", bound=Callable)


def say(line: str) -> None:
    """A line for the person at the terminal (progress, problems), on stderr."""
    click.echo(line, err=True)


def say_error(message: str) -> None:
    """One failed item, and the command goes on."""
    say(f"error: {message}")


def fail(message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """The command cannot go on: one line, exit status 2 unless told otherwise."""
    say_error(message)
    sys.exit(status)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (which compare false with any bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def checked_device(ctx, param, device: str) -> str:
    """--device, checked while the arguments are parsed: an unusable one is bad usage (exit 2)
    before any photo is touched."""
    from photosearch.faces.engine import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return device


def device_option(function: Command) -> Command:
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        callback=checked_device,
        help="Where the networks run: cpu, cuda (or cuda:N), or auto (cuda when available).",
    )(function)


def max_side_option(function: Command) -> Command:
    # 0 is full size; FaceEngine (faces/engine.py) owns that rule.
    return click.option(
        "--max-side",
        type=click.IntRange(min=0),
        default=DEFAULT_MAX_SIDE,
        show_default=True,
        help="Shrink larger photos to this longer side before detection (0: full size). "
        "Coordinates are always reported in original pixels.",
    )(function)


def mirror_option(function: Command) -> Command:
    return click.option(
        "--mirror/--no-mirror",
        default=True,
        show_default=True,
        help="Average each face's descriptor with its mirror image's (deterministic test-time "
        "augmentation).",
    )(function)


def detection_side_option(function: Command) -> Command:
    return click.option(
        "--detection-side",
        type=click.IntRange(min=200),
        default=DETECTION_SIDE,
        show_default=True,
        help="Faces are looked for in each photo over 800 px resized to this longer side (at "
        "most doubled): faces down to 80/SIDE of the photo's longer side are found (1400: "
        "5.7%; photos up to 800 px are doubled: faces from 40 px). Larger finds smaller faces "
        "in crowd photos at about (SIDE/1400)^2 the time.",
    )(function)


def detector_option(function: Command) -> Command:
    return click.option(
        "--detector",
        type=click.Choice(["cascade", "mmod"]),
        default=None,
        help="cascade: MTCNN proposals, each verified by dlib's MMOD on a crop at the face's "
        "scale (faces from 2% of the photo's longer side, 10 px in photos up to 1000 px). "
        "mmod: dlib's detector on the whole photo, box-for-box as dlib (--detection-side, "
        "--upsample). [default: cascade; mmod when --upsample is a number]",
    )(function)


def upsample_option(function: Command) -> Command:
    return click.option(
        "--upsample",
        default="auto",
        show_default=True,
        help="Times to double the image before detection, as dlib does (faces from 80 px, "
        "halved per doubling), or 'auto': photos up to 800 px doubled (faces from 40 px), "
        "larger ones detected at 1400 px on the longer side (faces from 5.7% of the photo).",
    )(function)


def parse_upsample(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        times = int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a number, got {value!r}") from None
    if times < 0 or times > 3:
        raise click.BadParameter("must be between 0 and 3")
    return times
