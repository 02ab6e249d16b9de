"""Process memory for the CPU face pipeline: malloc settings, and the decode budget.

The decode budget (`decode_budget`) bounds the memory that decoding photos takes at once, over
every thread and request of the process: each decode reserves its estimated bytes first and
waits while others hold the budget; a photo that alone needs more is refused. The indexer, the
search and the app all decode through `faces.images.load_image`, which reserves from it.

The detector allocates and frees canvases of ~100 MB for every photo. glibc serves blocks that
big with mmap and returns them with munmap, so every photo page-faults its working memory back in
from the kernel: about 10% of indexing time goes to the kernel zeroing pages. Keeping freed
memory in the process (no mmap for big blocks, no trimming) removes that; the price is that the
process keeps its peak size (one photo's worth of buffers per worker thread) until it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator

__all__ = [
    "DEFAULT_DECODE_MEMORY_MB",
    "DecodeBudget",
    "DecodeBudgetError",
    "decode_budget",
    "keep_freed_memory",
]

# Decoded pixels the whole process may hold at once, over all threads (PHOTOSEARCH_DECODE_MEMORY_MB
# overrides): a 179-megapixel RGB photo (the pixel limit) decodes in 716 MB, so two such fit,
# and peak RSS stays well under 2 GB with the models loaded.
DEFAULT_DECODE_MEMORY_MB = 1536


class DecodeBudgetError(MemoryError):
    """One decode alone needs more than the whole budget."""


class DecodeBudget:
    """A process-wide semaphore on bytes: `reserve(n)` waits until n bytes are free, holds them
    for the `with` block, and refuses (DecodeBudgetError) at once if n exceeds the total."""

    def __init__(self, total_bytes: int) -> None:
        self.total = int(total_bytes)
        self.in_use = 0
        self._free = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        nbytes = max(0, int(nbytes))
        if nbytes > self.total:
            raise DecodeBudgetError(
                f"needs about {nbytes / 1e6:,.0f} MB to decode, more than the decode budget of "
                f"{self.total / 1e6:,.0f} MB (PHOTOSEARCH_DECODE_MEMORY_MB)"
            )
        with self._free:
            self._free.wait_for(lambda: self.in_use + nbytes <= self.total)
            self.in_use += nbytes
        try:
            yield
        finally:
            with self._free:
                self.in_use -= nbytes
                self._free.notify_all()


_budget: DecodeBudget | None = None


def decode_budget() -> DecodeBudget:
    """The process's decode budget (created on first use from PHOTOSEARCH_DECODE_MEMORY_MB)."""
    global _budget
    with _lock:
        if _budget is None:
            try:
                megabytes = float(os.environ.get("PHOTOSEARCH_DECODE_MEMORY_MB", ""))
            except ValueError:
                megabytes = DEFAULT_DECODE_MEMORY_MB
            if not megabytes > 0:
                megabytes = DEFAULT_DECODE_MEMORY_MB
            _budget = DecodeBudget(int(megabytes * 1024 * 1024))
        return _budget


# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_done = False
_lock = threading.Lock()


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory instead of returning it to the kernel (once per process;
    a no-op off Linux/glibc). Returns whether the settings are in force."""
    global _done
    with _lock:
        if _done:
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and other libcs have no mallopt
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        # Trim threshold: the largest positive int; mmap count 0: big blocks come from the heap;
        # one arena: threads' own arenas are capped at 64 MB heaps and would mmap big blocks.
        _done = all(
            mallopt(option, value)
            for option, value in (
                (_M_TRIM_THRESHOLD, 2**31 - 1),
                (_M_MMAP_MAX, 0),
                (_M_ARENA_MAX, 1),
            )
        )
        return _done
