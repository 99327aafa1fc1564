"""The ``diffmst-lite`` command and ``python -m diffmst_lite``: start the CLI (:mod:`diffmst_lite.cli`).

On Linux the command first re-executes itself with two glibc allocator settings, before
PyTorch is imported. Tensors above glibc's mmap threshold (32 MB: a few seconds of
8 tracks) are otherwise mapped and unmapped on every operation, so each of their pages
is faulted in and zeroed again: rendering a whole song spent about half its time there
(benchmarks/README.md). ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` make
glibc keep freed memory for reuse instead; the process's memory then stays at its peak
until it exits. The console avoids such temporaries itself where it can (it processes
tracks in chunks), which covers training-size inputs in any Python process, a notebook
kernel included. Opt out with ``DIFFMST_MALLOC_TUNING=0``; values already set in the
environment are kept.
"""

from __future__ import annotations

import os
import sys

ALLOCATOR_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def main() -> int:
    """Entry point: re-execute once with :data:`ALLOCATOR_SETTINGS` (Linux), then run the CLI."""
    wanted = os.environ.get("DIFFMST_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux")
    if wanted and not all(name in os.environ for name in ALLOCATOR_SETTINGS):
        for name, value in ALLOCATOR_SETTINGS.items():
            os.environ.setdefault(name, value)
        os.execv(sys.executable, [sys.executable, "-m", "diffmst_lite", *sys.argv[1:]])
    from diffmst_lite.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
