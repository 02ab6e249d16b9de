"""`photosearch faces`: detect and describe the faces of a few images (boxes, landmarks,
descriptors), as text or JSON lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from photosearch.cli.options import (
    detector_option,
    device_option,
    max_side_option,
    mirror_option,
    parse_upsample,
    say_error,
    upsample_option,
)

__all__ = ["faces"]


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@upsample_option
@detector_option
@device_option
@max_side_option
@mirror_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def faces(images, upsample, detector, device, max_side, mirror, as_json) -> None:
    """Detect and describe the faces in IMAGES.

    Boxes are [left, top, right, bottom] in original pixels, inclusive as dlib's rectangles.
    Exit status 1 if any image could not be read.
    """
    from photosearch.faces.engine import FaceEngine

    try:
        engine = FaceEngine(
            device=device,
            upsample=parse_upsample(upsample),
            max_side=max_side,
            mirror=mirror,
            detector=detector,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    failed = False
    for path, found in engine.faces_from_sources(images):
        if isinstance(found, Exception):
            failed = True
            if as_json:
                click.echo(json.dumps({"path": str(path), "error": str(found)}))
            else:
                say_error(str(found))
            continue
        if as_json:
            click.echo(json.dumps({"path": str(path), "faces": [f.to_json() for f in found]}))
            continue
        click.echo(f"{path}: {len(found)} face{'s' if len(found) != 1 else ''}")
        for number, face in enumerate(found, start=1):
            left, top, right, bottom = face.box
            click.echo(
                f"  face {number}: box ({left}, {top}, {right}, {bottom}), "
                f"score {face.score:.3f}, {right - left + 1}x{bottom - top + 1} px"
            )
    sys.exit(1 if failed else 0)
