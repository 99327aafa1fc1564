"""The ``diffmst-lite`` command and ``python -m diffmst_lite``: start the CLI (:mod:`diffmst_lite.cli`).

Three things keep a command's wall time short (docs/design.md §4.4, benchmarks/README.md):

* On Linux the command first re-executes itself with glibc allocator settings
  (:mod:`diffmst_lite.dsp.memory`), before PyTorch is imported. Tensors above glibc's
  mmap threshold (32 MB: a few seconds of 8 tracks) are otherwise mapped and
  unmapped on every operation, so each of their
  pages is faulted in and zeroed again: rendering a whole song spent about half its
  time there. ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` make glibc keep
  freed memory for reuse; ``MALLOC_ARENA_MAX=1`` makes the rendering threads use that
  one heap too (a thread's own arena maps every block above 64 MB afresh). The
  process's memory then stays at its peak until it exits. The console avoids such
  temporaries itself where it can (it processes tracks in chunks), for rendering in
  any Python process; training in any process sets the same values at run time
  (:func:`diffmst_lite.dsp.memory.keep_freed_memory`). Opt out with
  ``DIFFMST_MALLOC_TUNING=0``; values already set in the environment are kept.
* The garbage collector is off while PyTorch is imported (its collections over the
  import's objects cost about 0.15 s); those objects are then frozen out of later
  collections.
* After the command has finished and flushed its output, the process ends without the
  interpreter's shutdown, which collects every object and unregisters PyTorch's
  operators one by one (0.4-0.9 s). Every file the command writes is closed and in
  place by then. An error that escapes the command (``DIFFMST_DEBUG=1``) takes the
  normal way out, with its traceback.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn

from diffmst_lite.dsp.memory import ALLOCATOR_SETTINGS, tuning_wanted


def main() -> NoReturn:
    """Entry point: re-execute once with :data:`ALLOCATOR_SETTINGS` (Linux), run the CLI, exit at once."""
    if tuning_wanted() and not all(name in os.environ for name in ALLOCATOR_SETTINGS):
        for name, value in ALLOCATOR_SETTINGS.items():
            os.environ.setdefault(name, value)
        os.execv(sys.executable, [sys.executable, "-m", "diffmst_lite", *sys.argv[1:]])
    gc.disable()
    from diffmst_lite.cli import main as cli_main

    gc.freeze()
    gc.enable()
    code = cli_main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (``... | head``): nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
