"""The package's numba kernels, imported at their first use (docs/design.md §4.3).

Importing a kernel module starts numba (about 0.7 s), so no module imports one at its
own import. Every kernel is compiled with ``cache=True``: a new process loads machine
code from numba's cache (``__pycache__`` next to the module, or ``NUMBA_CACHE_DIR``
when set).

Where numba's OpenMP threading layer is available (:func:`parallel_rows`), the
kernels loop over rows (channel strips) in parallel (``numba.prange``) on it. In a
process that has imported PyTorch, numba's OpenMP calls resolve to the OpenMP runtime
PyTorch loaded, so the rows run on PyTorch's own worker threads, which are awake
(spinning) right after PyTorch's last operation. Python threads or numba's other
layers would have to share a core with that spinning worker, and gained nothing
(benchmarks/README.md, "Sixteenth session"). Each call uses as many threads as
PyTorch has, and one on a thread of :func:`.threads.thread_map`, whose calls already
run side by side. Without the OpenMP layer the kernels are serial: numba's workqueue
layer would also abort the process when two threads launch kernels at once.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from diffmst_lite.dsp.threads import on_worker_thread

KERNEL_MODULES = ("ballistics", "biquad_loops")


def compiled_loops(module: str) -> ModuleType:
    """The kernel module ``diffmst_lite.dsp.<module>``, one of :data:`KERNEL_MODULES`:
    ``"ballistics"`` (the compressor's and the limiter's loops) or ``"biquad_loops"``
    (the EQ's biquad cascade), with numba's thread count for the calling thread set to
    PyTorch's (1 on a :func:`.threads.thread_map` worker). Call it just before a kernel."""
    if module not in KERNEL_MODULES:
        raise ValueError(f"unknown kernel module {module!r}; expected one of {KERNEL_MODULES}")
    threads = torch.get_num_threads()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(threads, os.cpu_count() or 1)))  # read at numba's import
    import numba

    kernels = importlib.import_module(f"diffmst_lite.dsp.{module}")
    numba.set_num_threads(1 if on_worker_thread() else max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return kernels


def parallel_rows() -> bool:
    """Whether the kernels run their rows in parallel: True if numba's OpenMP threading
    layer loads and ``NUMBA_THREADING_LAYER`` does not ask for another one; numba then
    uses that layer. Called by the kernel modules when they are imported."""
    import numba

    if os.environ.get("NUMBA_THREADING_LAYER", "omp") != "omp":
        return False
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (fails without an OpenMP runtime)
    except (ImportError, OSError):
        return False
    numba.config.THREADING_LAYER = "omp"
    return True
