"""Decoding is bounded: a 16-bit PNG bomb (13000x13000, a few hundred kB) stays far from GBs of
RSS, and the process-wide decode budget refuses, in one line, what alone would exceed it."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from photosearch.faces.images import ImageLoadError, load_image
from photosearch.faces.memory import DecodeBudget, DecodeBudgetError


def grey16_png(path: Path, side: int) -> None:
    """A side x side 16-bit grey PNG of a soft gradient, compressed row by row (small file)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    parts = []
    row = bytes(1 + 2 * side)  # filter byte + samples
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
    path.write_bytes(data + chunk(b"IEND", b""))


# The peak is VmHWM, this process's own high-water mark: getrusage's ru_maxrss survives exec on
# Linux and would report the (large) pytest worker that forked it.
PEAK = """
import sys
from photosearch.faces.images import ImageLoadError, load_image
try:
    print(load_image(sys.argv[1], max_side=int(sys.argv[2]) or None).pixels.shape)
except ImageLoadError as error:
    print("refused:", error)
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(int(status.split()[0]) * 1024)
"""


@pytest.mark.parametrize("max_side", [2000, 0], ids=["working-size", "full-size"])
def test_a_16_bit_png_bomb_decodes_in_bounded_memory(tmp_path, max_side) -> None:
    bomb = tmp_path / "bomb16.png"
    grey16_png(bomb, 13000)
    assert bomb.stat().st_size < 1_000_000
    result = subprocess.run(
        [sys.executable, "-c", PEAK, str(bomb), str(max_side)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome, peak = result.stdout.splitlines()[0], int(result.stdout.split()[-1])
    if max_side:  # shrunk in 16 bits, then converted: decoded
        assert outcome == "(2000, 2000, 3)", outcome
    else:  # at full size the 8-bit conversion alone would need ~2 GB: refused before decoding
        assert outcome.startswith("refused: ") and "decode budget" in outcome, outcome
    # Was ~6.5 GB for two such files (19 bytes a pixel); the 16-bit samples alone take 338 MB.
    assert peak < 900e6, f"peak RSS {peak / 1e6:.0f} MB"


def test_the_budget_waits_for_others_and_refuses_what_cannot_fit() -> None:
    budget = DecodeBudget(100)
    with pytest.raises(DecodeBudgetError, match="decode budget"), budget.reserve(101):
        pass
    order: list[str] = []

    def second() -> None:
        with budget.reserve(50):
            order.append(f"in with {budget.in_use}")

    with budget.reserve(80):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        assert order == [] and budget.in_use == 80  # waits while the budget is held
    waiter.join(5)
    assert order == ["in with 50"] and budget.in_use == 0


def test_an_image_over_the_budget_is_one_line(tmp_path, monkeypatch) -> None:
    import photosearch.faces.memory as memory

    monkeypatch.setattr(memory, "_budget", DecodeBudget(10_000_000))
    big = tmp_path / "big16.png"
    grey16_png(big, 3000)
    with pytest.raises(ImageLoadError) as error:
        load_image(big, max_side=640)
    message = str(error.value)
    assert message.startswith(f"{big}: image too large to decode here") and "\n" not in message
