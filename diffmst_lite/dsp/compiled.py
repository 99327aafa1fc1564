"""The package's numba kernels, imported at their first use (docs/design.md §4.3).

Importing a kernel module starts numba (about 0.7 s), so no module imports one at its
own import. numba then gets one worker thread unless ``NUMBA_NUM_THREADS`` says
otherwise: its threads would compete with PyTorch's for the same cores. Every kernel
is compiled with ``cache=True``: a new process loads machine code from numba's cache
(``__pycache__`` next to the module, or ``NUMBA_CACHE_DIR`` when set).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

KERNEL_MODULES = ("ballistics", "biquad_loops")


def compiled_loops(module: str) -> ModuleType:
    """The kernel module ``diffmst_lite.dsp.<module>``, one of :data:`KERNEL_MODULES`:
    ``"ballistics"`` (the compressor's and the limiter's loops) or ``"biquad_loops"``
    (the EQ's biquad cascade)."""
    if module not in KERNEL_MODULES:
        raise ValueError(f"unknown kernel module {module!r}; expected one of {KERNEL_MODULES}")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    return importlib.import_module(f"diffmst_lite.dsp.{module}")
