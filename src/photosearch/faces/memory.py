"""Process memory settings for the CPU face pipeline.

The detector allocates and frees canvases of ~100 MB for every photo. glibc serves blocks that
big with mmap and returns them with munmap, so every photo page-faults its working memory back in
from the kernel: about 10% of indexing time goes to the kernel zeroing pages. Keeping freed
memory in the process (no mmap for big blocks, no trimming) removes that; the price is that the
process keeps its peak size (one photo's worth of buffers per worker thread) until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

__all__ = ["keep_freed_memory"]

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
