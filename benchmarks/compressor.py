"""Time the compressor's fused side chain against the same chain as separate torch ops.

``fused``: :func:`diffmst_lite.dsp.dynamics.compressor` as the console runs it on the
CPU (one numba loop per row forward and one backward, ``dynamics._SideChain``);
``ops``: the same compressor with the side chain as separate torch ops and
torchcomp's recursion (``dynamics._side_chain_ops``, the CUDA path and the code
before the fused kernel). The default input is one chunk of the console's channel
strips: 10 mono rows of 2^18 samples @ 44.1 kHz, settings drawn from the console's
ranges. Timed: forward + ``(y ** 2).mean().backward()`` to the input and all six
settings, and the forward alone without gradients (rendering).

Both run interleaved in this one process, warm-up first, then ``--pairs`` pairs,
alternating which goes first. Printed per variant: min / median / max wall time and
the median thread CPU time (``time.thread_time``: the calling thread only, so the
whole cost at ``--threads 1``, the setting to use on a busy machine).

    .venv/bin/python benchmarks/compressor.py --threads 1
    .venv/bin/python benchmarks/compressor.py --rows 2 --channels 2     # the master bus
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from typing import Callable

import torch

from common import spread
from diffmst_lite.console import params
from diffmst_lite.dsp import dynamics


def call(x: torch.Tensor, settings: torch.Tensor, sample_rate: int, fused: bool, grad: bool) -> Callable[[], None]:
    """One compressor call with the side chain ``fused`` or not; with ``grad`` also backward."""
    side_chain = functools.partial(dynamics._side_chain, fused=fused)
    original = dynamics._side_chain

    def run() -> None:
        dynamics._side_chain = side_chain
        try:
            with torch.set_grad_enabled(grad):
                inputs = [x.clone().requires_grad_(grad), *(s.clone().requires_grad_(grad) for s in settings)]
                y = dynamics.compressor(inputs[0], sample_rate, *inputs[1:])
                if grad:
                    (y**2).mean().backward()
        finally:
            dynamics._side_chain = original

    return run


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall time and thread CPU time (s) of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--samples", type=int, default=2**18)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--pairs", type=int, default=7, help="timed pairs after the warm-up (at least 5)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.pairs < 5:
        sys.exit("error: --pairs must be at least 5")
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(args.rows, args.channels, args.samples, generator=generator)
    specs = params.track_param_specs(args.sample_rate)
    physical = params.to_physical(torch.rand(args.rows, len(specs), generator=generator), specs)
    settings = physical[:, params.COMPRESSOR].unbind(-1)
    shape = f"{args.rows} x {args.channels} x {args.samples} samples @ {args.sample_rate} Hz"

    load_start = os.getloadavg()
    print(f"compressor, {shape}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    summary = []
    for task, grad in (("fwd+bwd", True), ("no-grad fwd", False)):
        fns = {name: call(x, settings, args.sample_rate, fused, grad) for name, fused in (("fused", True),
                                                                                        ("ops", False))}
        for _ in range(args.warmup):
            for fn in fns.values():
                fn()
        wall: dict[str, list[float]] = {name: [] for name in fns}
        cpu: dict[str, list[float]] = {name: [] for name in fns}
        for pair in range(args.pairs):
            for name in (list(fns) if pair % 2 == 0 else list(fns)[::-1]):
                seconds, thread_seconds = timed(fns[name])
                wall[name].append(seconds)
                cpu[name].append(thread_seconds)
        print(f"\n| {task}, {shape} | wall min / median / max (s) | thread CPU median (s) |")
        print("|---|---|---|")
        for name in fns:
            print(f"| {name} | {spread(wall[name])} | {statistics.median(cpu[name]):.3f} |")
        ratio = statistics.median(o / f for o, f in zip(cpu["ops"], cpu["fused"]))
        fused, ops = statistics.median(cpu["fused"]), statistics.median(cpu["ops"])
        walls = f"wall {statistics.median(wall['fused']):.3f} / {statistics.median(wall['ops']):.3f} s"
        summary.append(f"{task} fused {fused:.3f} s, ops {ops:.3f} s (thread CPU, median ratio {ratio:.2f}x; {walls})")
    load_end = os.getloadavg()
    print(f"\nSUMMARY compressor {shape}, {torch.get_num_threads()} threads, {args.pairs} pairs: "
          + "; ".join(summary) + f"; load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end")


if __name__ == "__main__":
    main()
