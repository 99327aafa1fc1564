"""glibc's allocator told to keep freed memory for reuse (Linux; docs/design.md §4.4).

By default glibc maps blocks above a threshold afresh from the kernel and hands
freed memory at the top of the heap back to it. The threshold starts at 128 kB and
rises with the blocks freed, up to 32 MB, so until it has risen (and always above
32 MB: a few seconds of 8 tracks at 44.1 kHz) a tensor that an operation allocates
and frees again costs page faults and zeroing on every call. Kept memory is reused
instead: rendering a whole song spent about half its time on those pages, a lite
training step in a fresh process was median 1.09x faster (18 alternated pairs,
benchmarks/README.md). Two ways to keep it, same settings:

* :data:`ALLOCATOR_SETTINGS`, as environment variables that glibc reads when a
  process starts: the ``diffmst-lite`` command re-executes itself with them
  (:mod:`diffmst_lite.__main__`), so PyTorch's import and every thread get them;
* :func:`keep_freed_memory`, the same through ``mallopt`` in a running process, for
  allocations made afterwards: :func:`diffmst_lite.training.train` calls it, so
  training in a notebook kernel gets it too.

The process's memory then stays at its peak until it exits. ``DIFFMST_MALLOC_TUNING=0``
turns both off. Importing this module does not import PyTorch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

OPT_OUT = "DIFFMST_MALLOC_TUNING"  # set to 0: leave glibc's allocator as it is
ALLOCATOR_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736",
                      "MALLOC_ARENA_MAX": "1"}
# mallopt's parameter numbers (glibc malloc.h) and values: its argument is a C int, so 2 GB
# stands for the environment's 4 and 64 GB (blocks this large are rare, and still mapped)
_MALLOPT = {-3: 2**31 - 1, -1: 2**31 - 1, -8: 1}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_ARENA_MAX


def tuning_wanted() -> bool:
    """True on Linux unless ``DIFFMST_MALLOC_TUNING=0``."""
    return os.environ.get(OPT_OUT, "1") != "0" and sys.platform.startswith("linux")


def keep_freed_memory() -> bool:
    """Set :data:`ALLOCATOR_SETTINGS` in this process through glibc's ``mallopt``.

    Affects allocations from now on (the arena limit: arenas not yet created).
    Returns True if glibc took them; False if it was not asked: not Linux, opted
    out, any of :data:`ALLOCATOR_SETTINGS` already in the environment (the user's,
    or the command's own, which glibc read at start-up), or a C library without
    ``mallopt``.
    """
    if not tuning_wanted() or any(name in os.environ for name in ALLOCATOR_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl) has no mallopt
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in _MALLOPT.items())
