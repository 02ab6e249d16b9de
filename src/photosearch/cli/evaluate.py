"""`photosearch eval lfw|retrieval`: accuracy on labelled face sets (evaluate/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from photosearch.cli.options import (
    EXIT_PARTIAL,
    detector_option,
    device_option,
    fail,
    mirror_option,
    parse_upsample,
    say_error,
    upsample_option,
)

__all__ = ["eval_group"]


@click.group(name="eval")
def eval_group() -> None:
    """Measure accuracy on labelled face sets."""


@eval_group.command(name="lfw")
@click.argument("pairs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--images",
    "images_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The LFW images folder (Person_Name/Person_Name_NNNN.jpg).",
)
@upsample_option
@detector_option
@device_option
@mirror_option
@click.option("--json", "as_json", is_flag=True, help="Finish with one JSON line of figures.")
def eval_lfw(pairs_file, images_dir, upsample, detector, device, mirror, as_json) -> None:
    """LFW verification accuracy on PAIRS_FILE: 10-fold protocol and the default threshold."""
    from photosearch.evaluate.lfw import central_descriptor, evaluate_pairs, read_pairs
    from photosearch.faces.engine import FaceEngine
    from photosearch.faces.images import ImageLoadError, load_image
    from photosearch.progress import progress_bar

    try:
        pairs = read_pairs(pairs_file)
    except ValueError as exc:
        fail(str(exc))
    try:
        engine = FaceEngine(
            device=device, upsample=parse_upsample(upsample), mirror=mirror, detector=detector
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    unreadable: list[str] = []

    def describe(names: list[str]) -> dict:
        found = {}
        with progress_bar("describing", total=len(names), disable=as_json) as advance:
            for name in names:
                try:
                    image = load_image(images_dir / name, max_side=engine.max_side)
                except ImageLoadError as exc:
                    say_error(str(exc))
                    unreadable.append(name)
                    found[name] = None
                else:
                    faces_found = engine.faces_for_images([image])[0]
                    found[name] = central_descriptor(faces_found, image.original_size)
                advance()
        return found

    report = evaluate_pairs(pairs, describe)
    status = EXIT_PARTIAL if unreadable else 0  # measured without the unreadable images
    if as_json:
        click.echo(json.dumps(report.to_json()))
        sys.exit(status)
    click.echo(f"pairs: {report.pairs}  (images without a face: {report.no_face})")
    click.echo(
        f"10-fold accuracy: {report.accuracy_10fold:.4f} ± {report.std_10fold:.4f} "
        f"(mean threshold {report.threshold_10fold_mean:.3f})"
    )
    click.echo(f"accuracy at threshold {report.threshold_default}: {report.accuracy_default:.4f}")
    sys.exit(status)


def engine_describer(engine, quiet: bool):
    """describe(paths) -> each image's faces (an unreadable image has none, reported once)."""
    from photosearch.faces.images import ImageLoadError, load_image
    from photosearch.progress import progress_bar

    def describe(paths) -> list:
        found = []
        with progress_bar("describing", total=len(paths), disable=quiet) as advance:
            for path in paths:
                try:
                    image = load_image(path, max_side=engine.max_side)
                except ImageLoadError as exc:
                    say_error(str(exc))
                    found.append([])
                else:
                    found.append(engine.faces_for_images([image])[0])
                advance()
        return found

    return describe


@eval_group.command(name="retrieval")
@click.argument(
    "lfw_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False
)
@click.option(
    "--photos",
    "photos_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also evaluate on a labelled photo set laid out like ../shared/data/photos "
    "(people/people.csv, group/group_photos.csv); its LFW people use their first LFW photo "
    "as the reference.",
)
@device_option
@click.option("--json", "as_json", is_flag=True, help="One JSON line per report.")
def eval_retrieval(lfw_dir, photos_dir, device, as_json) -> None:
    """Find-every-photo quality: mean precision, recall and F1 over people.

    LFW_DIR is an LFW-layout album (e.g. ../shared/data/lfw-devtrain): every person with at
    least 2 photos is searched with their first photo, the whole folder being the album.
    Reported for the held-out half of the identities (not used in calibration) and for all,
    against fixed distance thresholds.
    """
    from photosearch.evaluate.retrieval import (
        describe_lfw_album,
        describe_shared_photos,
        lfw_first_photo_references,
        lfw_retrieval_reports,
        shared_photos_reports,
    )
    from photosearch.faces.engine import FaceEngine

    if lfw_dir is None and photos_dir is None:
        raise click.UsageError("give an LFW folder, --photos DIR, or both")
    describe = engine_describer(FaceEngine(device=device), quiet=as_json)
    reports = {}
    lfw_album = None
    if lfw_dir is not None:
        lfw_album = describe_lfw_album(lfw_dir, describe)
        reports.update(lfw_retrieval_reports(lfw_album))
    if photos_dir is not None:
        album, labels = describe_shared_photos(photos_dir, describe)
        references = lfw_first_photo_references(lfw_album) if lfw_album else None
        reports.update(shared_photos_reports(album, labels, references))
    for name, report in reports.items():
        if as_json:
            click.echo(json.dumps({"report": name, **report.to_json()}))
        else:
            click.echo(
                f"{name:28s} {report.method:24s} queries {report.queries:5d}  "
                f"P {report.mean_precision:.3f}  R {report.mean_recall:.3f}  "
                f"F1 {report.mean_f1:.3f}"
            )
