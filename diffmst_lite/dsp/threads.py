"""Several calls at once on PyTorch's threads, for rendering (docs/design.md §4.3).

The numba loops (:mod:`.ballistics`, :mod:`.biquad_loops`), libsndfile's decoding and
most torch operations release the GIL, so Python threads can keep every core busy
where one call alone leaves cores idle (a channel strip's per-sample recursions run
its one row on one core).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import torch

Item, Result = TypeVar("Item"), TypeVar("Result")


_worker = threading.local()  # .active: True on a thread of thread_map


def on_worker_thread() -> bool:
    """True on a thread of :func:`thread_map` (its calls already run side by side, so the
    numba kernels they call run on that one thread, :mod:`.compiled`)."""
    return getattr(_worker, "active", False)


def thread_map(function: Callable[[Item], Result], items: Iterable[Item], parallel: bool = True) -> Iterator[Result]:
    """``map(function, items)``, the results in the order of ``items``; with ``parallel``
    and more than one item, on as many threads as PyTorch has intra-op threads (one:
    on the calling thread, as ``map``). The first call that raises raises here, as in a loop."""
    items = list(items)
    workers = min(len(items), torch.get_num_threads())
    if not parallel or workers < 2:
        yield from map(function, items)
        return

    def on_worker(item: Item) -> Result:
        _worker.active = True
        return function(item)

    with ThreadPoolExecutor(workers, thread_name_prefix="diffmst") as pool:
        yield from pool.map(on_worker, items)
