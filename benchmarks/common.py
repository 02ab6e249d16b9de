"""Shared pieces of the benchmarks: the machine description and the photo set."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PHOTOSEARCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(REPO_ROOT / "tests"))


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}{gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def require_shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        sys.exit(f"benchmark needs the test photos at {SHARED_DATA}")
    return SHARED_DATA


def timed(function: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best wall time of `repeat` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def search_matches(
    photosearch: Path, index: Path, references: dict[str, Path], work: Path, env: dict
) -> set[tuple[str, str]]:
    """(photo file name, query) pairs found by one `photosearch search --queries` run of
    every reference against the index (the way a benchmark asks for many people at once)."""
    import csv
    import json
    import subprocess

    queries = work / "queries.csv"
    with queries.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "reference"])
        for name, path in references.items():
            writer.writerow([name, str(path)])
    out = subprocess.run(
        [str(photosearch), "search", "--queries", str(queries), "--index", str(index)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    found = set()
    for line in out.splitlines():
        result = json.loads(line)
        found.update((Path(m["photo"]).name, result["query"]) for m in result["matches"])
    return found
