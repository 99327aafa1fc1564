"""Time our mixing console against the shared dasp-pytorch reference chain, forward + backward.

The baseline is ``../shared/dasp_reference_chain.py`` relative to the repository root
(an official-style console built from dasp-pytorch 0.0.1 effects alone; it is not
project code and is not copied into the repository). Both consoles render a mix of
the same tracks from parameters drawn with ``torch.rand`` (each in its own layout,
26 per track and 26 for the master bus), then ``(mix ** 2).mean().backward()``.

Both run interleaved in this one long-running process (a user's notebook kernel or
training run), at PyTorch's default thread count unless ``--threads`` says otherwise:
warm-up pairs first, then ``--pairs`` timed pairs, alternating which goes first, so
load from other processes hits both alike. Printed: min / median / max wall time of
each, and the headline, the median over pairs of (baseline time / our time). Also
the minor page faults per call: the cost of temporaries above glibc's mmap
threshold, which are mapped, faulted, zeroed and unmapped on every call.

    .venv/bin/python benchmarks/console.py                      # headline: B4 x 8 x 2^18 @ 44.1 kHz, 5 pairs
    .venv/bin/python benchmarks/console.py --pairs 7 --threads 1
    .venv/bin/python benchmarks/console.py --profile            # where our console's time and memory go
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from common import spread
from diffmst_lite.console import MixingConsole

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO.parent / "shared" / "dasp_reference_chain.py"


def load_baseline(path: Path = BASELINE):
    """Import the shared dasp-pytorch chain's module from ``path`` (exits with a one-line error if absent)."""
    if not path.is_file():
        sys.exit(f"error: {path}: the shared dasp-pytorch baseline chain is missing (expected at ../shared "
                 "relative to the repository root)")
    spec = importlib.util.spec_from_file_location("dasp_reference_chain", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fwd_bwd(console: torch.nn.Module, tracks: torch.Tensor, generator: torch.Generator) -> Callable[[], None]:
    """One call: forward with leaf parameters from ``torch.rand``, then ``(mix ** 2).mean().backward()``."""
    batch, num_tracks, _ = tracks.shape

    def run() -> None:
        track_params = torch.rand(batch, num_tracks, console.num_track_params, generator=generator, requires_grad=True)
        master_params = torch.rand(batch, console.num_master_params, generator=generator, requires_grad=True)
        mix = console(tracks, track_params, master_params)
        (mix**2).mean().backward()
        if not (torch.isfinite(mix).all() and torch.isfinite(track_params.grad).all()):
            raise RuntimeError(f"{type(console).__module__}: non-finite mix or gradient")

    return run


def timed(fn: Callable[[], None]) -> tuple[float, int]:
    """Wall time (s) and minor page faults of one call."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2**18)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--pairs", type=int, default=5, help="timed pairs after the warm-up (at least 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--profile", action="store_true", help="profile one call of our console instead")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tracks = 0.1 * torch.randn(args.batch, args.tracks, args.samples, generator=torch.Generator().manual_seed(0))
    ours = fwd_bwd(MixingConsole(args.sample_rate), tracks, torch.Generator().manual_seed(1))
    shape = f"B{args.batch} x {args.tracks} tracks x {args.samples} samples @ {args.sample_rate} Hz"
    if args.profile:
        ours()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            ours()
        print(f"our console, fwd+bwd, {shape}, {torch.get_num_threads()} threads")
        print(prof.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=15))
        return
    if args.pairs < 5:
        sys.exit("error: --pairs must be at least 5")
    baseline = fwd_bwd(load_baseline().MixingConsole(args.sample_rate), tracks, torch.Generator().manual_seed(1))

    load_start = os.getloadavg()
    print(f"console fwd+bwd, {shape}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs", flush=True)
    for _ in range(args.warmup):
        ours(), baseline()
    times: dict[str, list[float]] = {"ours": [], "dasp": []}
    faults: dict[str, list[int]] = {"ours": [], "dasp": []}
    for pair in range(args.pairs):
        order = (("ours", ours), ("dasp", baseline)) if pair % 2 == 0 else (("dasp", baseline), ("ours", ours))
        for name, fn in order:
            seconds, page_faults = timed(fn)
            times[name].append(seconds)
            faults[name].append(page_faults)
        print(f"  pair {pair + 1}: ours {times['ours'][-1]:.3f} s, dasp {times['dasp'][-1]:.3f} s", flush=True)
    ratios = [d / o for d, o in zip(times["dasp"], times["ours"])]
    load_end = os.getloadavg()
    print(f"\n| {shape} | min / median / max (s) | minor page faults per call (median) |")
    print("|---|---|---|")
    print(f"| diffmst-lite MixingConsole | {spread(times['ours'])} | {statistics.median(faults['ours']):,.0f} |")
    print(f"| shared dasp-pytorch chain | {spread(times['dasp'])} | {statistics.median(faults['dasp']):,.0f} |")
    print(f"| ratio dasp / ours, per pair | {spread(ratios)} | |")
    median = statistics.median(times["ours"])
    print(f"\nSUMMARY console fwd+bwd {shape}, {torch.get_num_threads()} threads, {args.pairs} pairs: "
          f"ours median {median:.3f} s (target <= 0.7: {'met' if median <= 0.7 else 'NOT met'}), "
          f"dasp median {statistics.median(times['dasp']):.3f} s, speed-up median {statistics.median(ratios):.2f}x "
          f"(target >= 6: {'met' if statistics.median(ratios) >= 6 else 'NOT met'}); "
          f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end")


if __name__ == "__main__":
    main()
