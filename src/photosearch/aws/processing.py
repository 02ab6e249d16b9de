"""Indexing on SageMaker Processing: plan a job, index one instance's shard, merge the results.

Three steps, each usable on its own (docs/sagemaker.md):

1. `plan_job` (on the user's machine): list the album, compare it with the index, and keep the
   photos that are new or changed. They go to the job as a SageMaker manifest file, so with
   `ShardedByS3Key` each instance downloads only its share of *those* photos; `plan.json`
   (replicated to every instance) carries their listing stamps and the engine settings.
2. `main` / `run_instance` (inside the container, once per instance): read
   /opt/ml/config/resourceconfig.json and the plan, index the photos SageMaker put under
   /opt/ml/processing/input/album with the same `Indexer` a local run uses (GPU when present),
   and write one Parquet part per instance to /opt/ml/processing/output/shards, plus a progress
   file that SageMaker uploads continuously. A failure ends the instance with exit status 1 and
   a one-line /opt/ml/output/message (the job's ExitMessage).
3. `merge_results` (on the user's machine, after the job): put every part's photo records into
   the index with one commit, drop photos that left the album, and report planned photos that
   no part holds (they are simply planned again by the next run).

Nothing here talks to AWS: inputs and outputs are files (SageMaker, or the local runner in
`photosearch.aws.local`, moves them) and fsspec locations.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from photosearch.faces.engine import DEFAULT_DETECTOR, DETECTION_SIDE, FaceEngine

__all__ = [
    "ALBUM_INPUT",
    "ALBUM_MANIFEST_NAME",
    "EXIT_MESSAGE_LIMIT",
    "JOBS_DIR",
    "MIN_CHUNK",
    "OPT_ML",
    "PACKAGE_INPUT",
    "PLANNED_ENGINE_SETTINGS",
    "PLAN_FORMAT",
    "PLAN_FORMAT_VERSION",
    "PLAN_INPUT",
    "PLAN_NAME",
    "PROGRESS_OUTPUT",
    "PROGRESS_STEPS",
    "SHARDS_OUTPUT",
    "InstanceResult",
    "JobLayout",
    "JobPlan",
    "MergeStats",
    "PlannedJob",
    "Report",
    "ShardAlbum",
    "local_keys",
    "main",
    "merge_results",
    "parse_arguments",
    "plan_job",
    "read_parts",
    "read_plan",
    "read_progress",
    "read_resource_config",
    "remove_job_files",
    "run_instance",
    "write_exit_message",
    "write_job_inputs",
]

OPT_ML = "/opt/ml"
ALBUM_INPUT = "processing/input/album"
PLAN_INPUT = "processing/input/plan"
PACKAGE_INPUT = "processing/input/package"
SHARDS_OUTPUT = "processing/output/shards"
PROGRESS_OUTPUT = "processing/output/progress"
PLAN_NAME = "plan.json"
ALBUM_MANIFEST_NAME = "album.manifest"
JOBS_DIR = "_jobs"  # under the index location: each job's inputs and outputs
PLAN_FORMAT = "photosearch-processing-plan"
PLAN_FORMAT_VERSION = 1
# Progress files are rewritten after each chunk: ~20 updates per instance, at least 16 photos.
PROGRESS_STEPS = 20
MIN_CHUNK = 16
EXIT_MESSAGE_LIMIT = 1024  # SageMaker keeps the first 1 KB of /opt/ml/output/message
# Every instance must detect and describe faces exactly as planned: shards merge into one index.
PLANNED_ENGINE_SETTINGS = ("max_side", "upsample", "mirror", "detection_side", "detector_name")

Report = Callable[[str], None]


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in settings.items())


def _print(line: str) -> None:
    print(line, flush=True)  # CloudWatch gets stdout line by line


# ----------------------------------------------------------------------------------------------
# The plan


@dataclass
class JobPlan:
    """What one job must index, and how: replicated to every instance as plan.json."""

    job_name: str
    album: str  # canonical album location (s3://bucket/prefix)
    index: str  # the index the results are merged into
    model_id: str
    max_side: int | None
    upsample: int | str
    mirror: bool
    photos: dict[str, tuple[int, str]]  # album key -> (size, listing stamp), new or changed only
    listed: int = 0  # photos in the album when planned
    detection_side: int = DETECTION_SIDE
    detector_name: str = DEFAULT_DETECTOR  # FaceEngine's `detector`

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "format_version": PLAN_FORMAT_VERSION,
            "job_name": self.job_name,
            "album": self.album,
            "index": self.index,
            "model_id": self.model_id,
            "engine": {
                "max_side": self.max_side,
                "upsample": self.upsample,
                "mirror": self.mirror,
                "detection_side": self.detection_side,
                "detector": self.detector_name,
            },
            "listed": self.listed,
            "photos": {key: [size, stamp] for key, (size, stamp) in sorted(self.photos.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> JobPlan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ValueError("not a photosearch processing plan")
        if data.get("format_version") != PLAN_FORMAT_VERSION:
            raise ValueError(f"plan format version {data.get('format_version')!r} not supported")
        engine = data["engine"]
        return cls(
            job_name=str(data["job_name"]),
            album=str(data["album"]),
            index=str(data["index"]),
            model_id=str(data["model_id"]),
            max_side=engine["max_side"],
            upsample=engine["upsample"],
            mirror=bool(engine["mirror"]),
            photos={key: (int(size), str(stamp)) for key, (size, stamp) in data["photos"].items()},
            listed=int(data.get("listed", 0)),
            detection_side=int(engine.get("detection_side", DETECTION_SIDE)),
            # Plans written before the cascade detector existed were planned for MMOD.
            detector_name=str(engine.get("detector", "mmod")),
        )

    def album_manifest(self) -> list[Any]:
        """The SageMaker manifest file: the album prefix, then each planned key relative to it."""
        return [{"prefix": self.album.rstrip("/") + "/"}, *sorted(self.photos)]


@dataclass(frozen=True)
class JobLayout:
    """Where one job's files live: under <index>/_jobs/<job name>/."""

    index: str
    job_name: str

    @property
    def root(self) -> str:
        return f"{self.index.rstrip('/')}/{JOBS_DIR}/{self.job_name}"

    @property
    def plan_uri(self) -> str:
        return f"{self.root}/input/{PLAN_NAME}"

    @property
    def album_manifest_uri(self) -> str:
        return f"{self.root}/input/{ALBUM_MANIFEST_NAME}"

    @property
    def shards_uri(self) -> str:
        return f"{self.root}/output/shards"

    @property
    def progress_uri(self) -> str:
        return f"{self.root}/output/progress"


@dataclass
class PlannedJob:
    plan: JobPlan
    present: set[str]  # every photo key of the album at planning time
    unchanged: int
    model_changed: bool


def plan_job(
    album_location: str,
    index_location: str,
    job_name: str,
    *,
    max_side: int | None,
    upsample: int | str = "auto",
    mirror: bool = True,
    retry_errors: bool = False,
) -> PlannedJob:
    """List the album and keep what the index lacks: new photos, changed ones (size or listing
    stamp differ), and with `retry_errors` the unreadable ones too."""
    from photosearch.index.album import Album
    from photosearch.index.store import STATUS_ERROR, IndexReader
    from photosearch.storage import canonical_location

    album = Album(album_location)
    files = album.files()
    planned_engine = FaceEngine(device="cpu", max_side=max_side, upsample=upsample, mirror=mirror)
    model_id = planned_engine.model_id
    reader = IndexReader(index_location)
    manifest = reader.manifest()
    known: dict[str, tuple[int | None, str | None, str]] = {}
    model_changed = manifest is not None and manifest.model_id != model_id
    if manifest is not None and not model_changed:
        photos = reader.photos(manifest)
        known = {
            key: (size, stamp, status)
            for key, size, stamp, status in zip(
                photos.column("photo").to_pylist(),
                photos.column("size").to_pylist(),
                photos.column("stamp").to_pylist(),
                photos.column("status").to_pylist(),
                strict=True,
            )
        }
    todo: dict[str, tuple[int, str]] = {}
    for item in files:
        state = known.get(item.key)
        unchanged = (
            state is not None
            and bool(item.stamp)
            and state[0] == item.size
            and state[1] == item.stamp
            and not (retry_errors and state[2] == STATUS_ERROR)
        )
        if not unchanged:
            todo[item.key] = (item.size, item.stamp)
    plan = JobPlan(
        job_name=job_name,
        album=album.location,
        index=canonical_location(index_location),
        model_id=model_id,
        max_side=max_side,
        upsample=upsample,
        mirror=mirror,
        photos=todo,
        listed=len(files),
        detector_name=planned_engine.detector_name,
    )
    return PlannedJob(
        plan=plan,
        present={item.key for item in files},
        unchanged=len(files) - len(todo),
        model_changed=model_changed,
    )


def write_job_inputs(plan: JobPlan, layout: JobLayout) -> None:
    """plan.json and the album manifest file, where the job's inputs point."""
    from photosearch.storage import open_filesystem

    fs, _ = open_filesystem(layout.root)
    for uri, payload in (
        (layout.plan_uri, plan.to_json()),
        (layout.album_manifest_uri, plan.album_manifest()),
    ):
        _, path = open_filesystem(uri)
        fs.makedirs(fs._parent(path), exist_ok=True)
        fs.pipe_file(path, json.dumps(payload, indent=1).encode())


# ----------------------------------------------------------------------------------------------
# Inside the container: one instance


class ShardAlbum:
    """The photos SageMaker put on this instance, keyed and stamped as in the real album.

    Offers what `Indexer` uses of `Album` (location, files, read), so the job's records are the
    ones a local run over the same album writes.
    """

    def __init__(self, root: Path, plan: JobPlan, keys: Iterable[str]) -> None:
        self.root = root
        self.location = plan.album
        self._files = sorted(keys)
        self._plan = plan
        self._visible = len(self._files)

    def show_first(self, count: int) -> None:
        """List only the first `count` photos (the Indexer runs chunk by chunk for progress)."""
        self._visible = count

    def files(self):
        from photosearch.index.album import AlbumFile

        return [
            AlbumFile(key=key, size=self._plan.photos[key][0], stamp=self._plan.photos[key][1])
            for key in self._files[: self._visible]
        ]

    def listing(self):
        """The planned photos as an album listing (nothing unlisted: the plan is complete)."""
        from photosearch.index.album import AlbumListing

        return AlbumListing(self.files())

    def read(self, key: str) -> bytes:
        return (self.root / PurePosixPath(key)).read_bytes()


@dataclass
class InstanceResult:
    host: str
    hosts: list[str]
    photos: int = 0  # photos this instance received
    indexed: int = 0
    reused: int = 0
    unreadable: int = 0
    failed: int = 0  # could not be read or the engine failed (not recorded: planned again)
    faces: int = 0
    skipped: list[str] = field(default_factory=list)  # files that are not in the plan
    seconds: float = 0.0
    device: str = ""
    part: str | None = None  # the Parquet part written

    @property
    def photos_per_second(self) -> float:
        done = self.indexed + self.reused + self.unreadable
        return done / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "hosts": self.hosts,
            "photos": self.photos,
            "indexed": self.indexed,
            "reused": self.reused,
            "unreadable": self.unreadable,
            "failed": self.failed,
            "faces": self.faces,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "photos_per_second": round(self.photos_per_second, 3),
            "device": self.device,
            "part": self.part,
        }


def read_resource_config(opt_ml: Path) -> tuple[str, list[str]]:
    """(current host, all hosts) from /opt/ml/config/resourceconfig.json."""
    path = opt_ml / "config" / "resourceconfig.json"
    try:
        config = json.loads(path.read_text())
        return str(config["current_host"]), [str(host) for host in config["hosts"]]
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(f"cannot read {path}: {exc}") from exc


def read_plan(opt_ml: Path) -> JobPlan:
    folder = opt_ml / PLAN_INPUT
    candidates = sorted(folder.rglob(PLAN_NAME)) if folder.is_dir() else []
    if not candidates:
        raise RuntimeError(f"no {PLAN_NAME} under {folder}: the job's plan input is missing")
    try:
        return JobPlan.from_json(json.loads(candidates[0].read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"unreadable plan {candidates[0]}: {exc}") from exc


def local_keys(root: Path) -> list[str]:
    """Album-relative keys of every file under the album input folder."""
    if not root.is_dir():
        return []
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)  # Continuous upload never sees half a file


def run_instance(
    opt_ml: Path | str = OPT_ML,
    *,
    engine: FaceEngine | None = None,
    device: str = "auto",
    workers: int | None = None,
    batch_size: int | None = None,
    report: Report = _print,
) -> InstanceResult:
    """Index the photos this instance received; write its part and summary. Raises on failure."""
    from photosearch.index.indexer import DEFAULT_BATCH_SIZE, Indexer
    from photosearch.index.store import IndexWriter

    started = time.monotonic()
    opt_ml = Path(opt_ml)
    host, hosts = read_resource_config(opt_ml)
    plan = read_plan(opt_ml)
    album_root = opt_ml / ALBUM_INPUT
    received = local_keys(album_root)
    keys = [key for key in received if key in plan.photos]
    result = InstanceResult(host=host, hosts=hosts, photos=len(keys))
    result.skipped = [key for key in received if key not in plan.photos]
    for key in result.skipped:
        report(f"{key}: not in the job's plan, skipped")
    if engine is None:
        engine = FaceEngine(
            device=device,
            upsample=plan.upsample,
            max_side=plan.max_side,
            mirror=plan.mirror,
            detection_side=plan.detection_side,
            detector=plan.detector_name,
        )
    running = {name: getattr(engine, name) for name in PLANNED_ENGINE_SETTINGS}
    planned = {name: getattr(plan, name) for name in PLANNED_ENGINE_SETTINGS}
    if running != planned:
        raise RuntimeError(
            f"the engine runs with {_settings_text(running)} but the job was planned with "
            f"{_settings_text(planned)}"
        )
    if engine.model_id != plan.model_id:
        raise RuntimeError(
            f"this package computes {engine.model_id!r} descriptors but the job was planned for "
            f"{plan.model_id!r}: build and upload the package again (`photosearch aws package`)"
        )
    result.device = str(engine.device)
    report(f"{host} of {len(hosts)}: {len(keys)} photos on {result.device}")

    shards_dir = opt_ml / SHARDS_OUTPUT
    progress_file = opt_ml / PROGRESS_OUTPUT / f"{host}.json"
    shards_dir.mkdir(parents=True, exist_ok=True)
    album = ShardAlbum(album_root, plan, keys)
    chunk = max(MIN_CHUNK, -(-len(keys) // PROGRESS_STEPS))
    with tempfile.TemporaryDirectory(prefix="photosearch-shard-") as work:
        index_dir = Path(work) / "index"
        done = 0
        while True:
            _write_json(
                progress_file,
                {"host": host, "done": done, "total": len(keys), "faces": result.faces},
            )
            if done >= len(keys):
                break
            done = min(len(keys), done + chunk)
            album.show_first(done)  # the earlier chunks are listed too: unchanged, skipped
            stats = Indexer(
                album,  # type: ignore[arg-type]  (duck-typed Album)
                index_dir,
                engine,
                workers=workers,
                batch_size=batch_size or DEFAULT_BATCH_SIZE,
                report=report,
            ).run()
            result.indexed += stats.indexed
            result.reused += stats.reused
            result.unreadable += stats.unreadable
            result.failed += stats.read_failures
            result.faces += stats.faces
            rate = (done / (time.monotonic() - started)) if done else 0.0
            report(f"{host}: {done}/{len(keys)} photos, {result.faces} faces, {rate:.2f} photos/s")
        result.part = f"part-{host}.parquet"
        _export_part(index_dir, engine.model_id, plan, shards_dir / result.part, IndexWriter)
    result.seconds = time.monotonic() - started
    _write_json(shards_dir / f"part-{host}.json", result.to_json())
    report(
        f"{host}: done, {result.indexed} indexed, {result.reused} reused, "
        f"{result.unreadable} unreadable, {result.failed} failed, {result.faces} faces "
        f"in {result.seconds:.1f} s ({result.photos_per_second:.2f} photos/s)"
    )
    return result


def _export_part(index_dir: Path, model_id: str, plan: JobPlan, target: Path, writer_class) -> None:
    """The instance's records as one Parquet file (the local index compacted to one shard)."""
    import pyarrow.parquet as pq

    from photosearch.index.store import SCHEMA

    if not (index_dir / "manifest.json").is_file():  # nothing was committed: no photos
        pq.write_table(SCHEMA.empty_table(), target)
        return
    with writer_class(index_dir, model_id=model_id, album=plan.album) as writer:
        writer.compact(0)
        shards = writer.manifest.shards
        if not shards:
            pq.write_table(SCHEMA.empty_table(), target)
            return
        shutil.copyfile(index_dir / shards[0].path, target)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="photosearch-processing", description="Index this instance's shard of an album."
    )
    parser.add_argument("--opt-ml", default=os.environ.get("PHOTOSEARCH_OPT_ML", OPT_ML))
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads")
    parser.add_argument("--batch-size", type=int, default=None, help="photos per engine batch")
    return parser.parse_args(argv)


def write_exit_message(opt_ml: Path, message: str) -> None:
    """The job's ExitMessage: SageMaker keeps the first 1 KB of /opt/ml/output/message."""
    path = opt_ml / "output" / "message"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = message.encode("utf-8")[:EXIT_MESSAGE_LIMIT]
        path.write_bytes(data.decode("utf-8", "ignore").encode("utf-8"))
    except OSError:
        pass  # nothing better to do: the traceback is in the logs


def main(
    argv: list[str] | None = None, *, engine: FaceEngine | None = None, report: Report = _print
) -> int:
    """The container's entry point: exit status 0, or 1 with /opt/ml/output/message written."""
    arguments = parse_arguments(argv)
    opt_ml = Path(arguments.opt_ml)
    try:
        run_instance(
            opt_ml,
            engine=engine,
            device=arguments.device,
            workers=arguments.workers,
            batch_size=arguments.batch_size,
            report=report,
        )
    except Exception as exc:
        report(traceback.format_exc())
        host = "this instance"
        with contextlib.suppress(RuntimeError):
            host, _ = read_resource_config(opt_ml)
        text = " ".join(str(exc).split()) or type(exc).__name__
        write_exit_message(opt_ml, f"{host}: {text}")
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# After the job: the merge


@dataclass
class MergeStats:
    merged: int = 0  # photo records put into the index
    faces: int = 0
    unreadable: int = 0
    deleted: int = 0  # photos gone from the album, removed from the index
    stale: int = 0  # records of photos that changed since the plan (dropped: next run redoes them)
    missing: list[str] = field(default_factory=list)  # planned photos no part holds
    parts: int = 0
    generation: int | None = None  # the index commit, when something changed
    reset_reason: str | None = None
    instances: list[dict[str, Any]] = field(default_factory=list)  # the parts' summaries

    def to_json(self) -> dict[str, Any]:
        return {
            "merged": self.merged,
            "faces": self.faces,
            "unreadable": self.unreadable,
            "deleted": self.deleted,
            "stale": self.stale,
            "missing": self.missing,
            "parts": self.parts,
            "generation": self.generation,
            "instances": self.instances,
        }


def _rows_by_photo(table) -> dict[str, Any]:
    import pyarrow as pa

    positions: dict[str, list[int]] = defaultdict(list)
    for position, photo in enumerate(table.column("photo").to_pylist()):
        positions[photo].append(position)
    return {photo: table.take(pa.array(rows, type=pa.int64())) for photo, rows in positions.items()}


def read_parts(results_location: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """(Parquet tables, instance summaries) under a job's shards output."""
    import pyarrow.parquet as pq

    from photosearch.index.store import SCHEMA
    from photosearch.storage import open_filesystem

    fs, root = open_filesystem(results_location)
    try:
        names = sorted(fs.find(root))
    except FileNotFoundError:
        names = []
    tables, summaries = [], []
    for name in names:
        if name.endswith(".parquet"):
            with fs.open(name, "rb") as handle:
                tables.append(pq.read_table(handle).select(SCHEMA.names).cast(SCHEMA))
        elif name.endswith(".json"):
            summaries.append(json.loads(fs.cat_file(name)))
    return tables, summaries


def merge_results(
    plan: JobPlan,
    results_location: str,
    present: set[str],
    *,
    index_location: str | None = None,
    report: Report = _print,
) -> MergeStats:
    """Put the job's records into the index in one commit and drop photos that left the album.

    A record is taken only if its photo is planned and still has the planned size and stamp;
    planned photos without a record are listed in `missing` (the next run plans them again).
    """
    from photosearch.index.store import STATUS_ERROR, STATUS_FACES, IndexWriter

    stats = MergeStats()
    tables, stats.instances = read_parts(results_location)
    stats.parts = len(tables)
    merged: set[str] = set()
    with IndexWriter(index_location or plan.index, model_id=plan.model_id, album=plan.album) as w:
        stats.reset_reason = w.reset_reason
        if w.reset_reason:
            report(w.reset_reason)
        for key in sorted(set(w.photos) - present):
            w.delete(key)
            stats.deleted += 1
        for table in tables:
            for key, rows in _rows_by_photo(table).items():
                planned = plan.photos.get(key)
                first = rows.slice(0, 1).to_pylist()[0]
                if planned is None or (first["size"], first["stamp"]) != planned:
                    stats.stale += 1
                    continue
                w.put(rows)
                merged.add(key)
                if first["status"] == STATUS_FACES:
                    stats.faces += rows.num_rows
                elif first["status"] == STATUS_ERROR:
                    stats.unreadable += 1
        stats.merged = len(merged)
        stats.missing = sorted(set(plan.photos) - merged)
        result = w.commit()
        if result is not None:
            stats.generation = result.generation
        if w.needs_full_compaction():
            w.compact(0)
    return stats


def read_progress(progress_location: str) -> tuple[int, int]:
    """(photos done, photos in total) over the instances that reported so far."""
    from photosearch.storage import open_filesystem

    fs, root = open_filesystem(progress_location)
    done = total = 0
    try:
        names = [name for name in fs.find(root) if name.endswith(".json")]
    except FileNotFoundError:
        return 0, 0
    for name in names:
        try:
            data = json.loads(fs.cat_file(name))
            done += int(data["done"])
            total += int(data["total"])
        except (OSError, ValueError, KeyError):
            continue  # being rewritten
    return done, total


def remove_job_files(layout: JobLayout) -> None:
    """Delete a merged job's inputs and outputs (best effort)."""
    from photosearch.storage import open_filesystem

    fs, root = open_filesystem(layout.root)
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.rm(root, recursive=True)


if __name__ == "__main__":
    sys.exit(main())
