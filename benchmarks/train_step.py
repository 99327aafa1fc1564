"""Time one Diff-MST training step on the CPU, split into network and console shares.

One step = the package's ``train_step``, as ``diffmst-lite train`` runs it: forward
(encoders -> controller -> console), AF loss against a target mix, backward,
gradient clipping and the update of ``build_optimizer`` (AdamW, fused), at the
shipped recipe's shape: Method 1 of
Vanka et al. (ISMIR 2024) with ``--seconds 4`` (halves of 2 s), batch 4, 8 tracks,
22.05 kHz. The models run in the same process:

* ``shipped``: the architecture of the shipped checkpoint (``lite`` with its controller
  grown to 8 layers, as the README's recipe trains it from phase 12 on): the row the
  target is checked on
* ``lite``: :meth:`diffmst_lite.model.DiffMST.lite` (the preset; 4 layers)
* ``paper``: :meth:`diffmst_lite.model.DiffMST.paper` (the paper's sizes)

Columns (min / median / max over ``--repeats`` timed runs after ``--warmup`` runs):

* ``step``: the whole training step, at PyTorch's default thread count (what
  ``diffmst-lite train`` uses by default).
* ``step 1 thread``: the same with ``torch.set_num_threads(1)`` (``train --threads 1``),
  interleaved with it.
* ``network``: encoders + controller forward and backward (with a random
  cotangent on the predicted parameters) + the optimiser's step.
* ``console``: console forward + backward to the parameters (given detached
  parameters, so no network work).
* ``loss``: AF loss forward + backward alone (given a detached mix).

Each cell shows min / median / max wall time and the median process CPU time
(summed over threads). On a busy machine wall times are not final: the load
average is printed with the table.

``network + console + loss`` should be close to ``step``. They run
interleaved, so background load on a shared machine hits them alike; the load
average is printed with the table (the targets assume an otherwise idle CPU).
The script first tells glibc to keep freed memory, as ``train`` does
(:func:`diffmst_lite.dsp.memory.keep_freed_memory`); ``--glibc-defaults`` leaves the
allocator as a plain Python process has it (the step before that change). The
SUMMARY line says which. Run::

    .venv/bin/python benchmarks/train_step.py [--skip-paper] [--repeats 7] [--glibc-defaults]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from typing import Callable, Dict, List

import torch

from diffmst_lite.dsp.memory import keep_freed_memory
from diffmst_lite.mixing.inference import DEFAULT_CHECKPOINT
from diffmst_lite.model import DiffMST
from diffmst_lite.training.loop import StyleLoss, TrainConfig, build_optimizer, train_step


def timed(fns: Dict[str, Callable[[], None]], warmup: int, repeats: int) -> Dict[str, Dict[str, float]]:
    """Time each ``fn()`` after ``warmup`` untimed rounds.

    The functions run interleaved (round robin), so on a shared machine each
    column sees the same background load. Returns, per function, the median and
    the fastest wall time and the median process CPU time (all threads), in s.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: Dict[str, List[float]] = {k: [] for k in fns}
    cpu: Dict[str, List[float]] = {k: [] for k in fns}
    threads = torch.get_num_threads()
    for _ in range(repeats):
        for k, fn in fns.items():
            torch.set_num_threads(1 if k.endswith("@1") else threads)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    torch.set_num_threads(threads)
    return {k: {"wall": statistics.median(wall[k]), "fastest": min(wall[k]), "slowest": max(wall[k]),
                "cpu": statistics.median(cpu[k])} for k in fns}


def bench(name: str, model: DiffMST, batch: Dict[str, torch.Tensor], warmup: int,
          repeats: int) -> Dict[str, Dict[str, float]]:
    """Time the step and its shares for one model (see :func:`timed`)."""
    tracks, reference = batch["tracks"], batch["reference"]
    config = TrainConfig(method=1, loss="af", seconds=2 * tracks.shape[-1] / model.config.sample_rate,
                         batch_size=len(tracks), sample_rate=model.config.sample_rate)
    criterion = StyleLoss(config, num_samples=tracks.shape[-1])
    opt = build_optimizer(model, config)
    model.train()

    def step() -> None:
        train_step(model, model, opt, criterion, batch, config, torch.device("cpu"), step=1)

    with torch.no_grad():
        tp0, mp0 = model.predict_params(tracks, reference)
    g_tp, g_mp = torch.randn_like(tp0), torch.randn_like(mp0)

    def network() -> None:
        opt.zero_grad(set_to_none=True)
        tp, mp = model.predict_params(tracks, reference)
        ((tp * g_tp).sum() + (mp * g_mp).sum()).backward()
        opt.step()

    def console() -> None:
        tp, mp = tp0.clone().requires_grad_(), mp0.clone().requires_grad_()
        mix = model.console(tracks, tp, mp)
        mix.backward(torch.ones_like(mix))

    with torch.no_grad():
        mix0 = model.console(tracks, tp0, mp0)

    def loss_only() -> None:
        mix = mix0.clone().requires_grad_()
        criterion(mix, batch)[0].backward()

    out = timed({"step": step, "step@1": step, "network": network, "console": console, "loss": loss_only},
                warmup, repeats)
    print(f"  {name}: done (peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB)",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample-rate", type=int, default=22050)
    ap.add_argument("--seconds", type=float, default=2.0, help="segment length (Method 1 --seconds 4: halves of 2 s)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--paper-repeats", type=int, default=2, help="timed runs for the (slow) paper model")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--glibc-defaults", action="store_true",
                    help="leave glibc's allocator as it is (train() tells it to keep freed memory)")
    args = ap.parse_args()
    allocator = ("glibc's default allocator" if args.glibc_defaults else "freed memory kept, as train() does"
                 if keep_freed_memory() else "allocator as the environment sets it")
    if args.threads:
        torch.set_num_threads(args.threads)

    load0 = os.getloadavg()[0]
    torch.manual_seed(0)
    n = int(round(args.seconds * args.sample_rate))
    levels = torch.logspace(-1.5, -0.5, args.tracks)[None, :, None]
    batch = {
        "tracks": levels * torch.randn(args.batch, args.tracks, n),
        "reference": 0.1 * torch.randn(args.batch, 2, n),
        "target": 0.1 * torch.randn(args.batch, 2, n),
        "mask": torch.ones(args.batch, args.tracks, dtype=torch.bool),
    }
    print(f"batch {args.batch} x {args.tracks} tracks x {args.seconds:g} s at {args.sample_rate} Hz, "
          f"AF loss, AdamW (fused) as train builds it; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{allocator}")

    results, params = {}, {}
    models = {"shipped": lambda: DiffMST.load_checkpoint(DEFAULT_CHECKPOINT),
              "lite": lambda: DiffMST.lite(args.sample_rate)}
    for name, build in models.items():
        model = build()
        if model.config.sample_rate != args.sample_rate:
            raise SystemExit(f"the shipped model is at {model.config.sample_rate} Hz: leave --sample-rate at it")
        params[name] = model.num_parameters()
        results[name] = bench(name, model, batch, args.warmup, args.repeats)
    if not args.skip_paper:
        del model
        model = DiffMST.paper(args.sample_rate)
        params["paper"] = model.num_parameters()
        results["paper"] = bench("paper", model, batch, 1, args.paper_repeats)

    print(f"\nseconds: wall min / median / max [median CPU, all threads]; load average "
          f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} CPUs")
    models = list(results)
    print("| | " + " | ".join(f"{m} ({params[m] / 1e6:.2f} M)" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    for col in ("step", "step@1", "network", "console", "loss"):
        cells = [f"{results[m][col]['fastest']:.3f} / {results[m][col]['wall']:.3f} / {results[m][col]['slowest']:.3f} "
                 f"[{results[m][col]['cpu']:.2f}]" for m in models]
        label = "step 1 thread" if col == "step@1" else col
        print(f"| {label} | " + " | ".join(cells) + " |")
    shipped, lite = results["shipped"], results["lite"]
    print(f"\nSUMMARY shipped model's train step ({params['shipped'] / 1e6:.2f} M), batch {args.batch} x "
          f"{args.tracks} x {args.seconds:g} s @ {args.sample_rate} Hz, AF loss, {allocator}: median "
          f"{shipped['step']['wall']:.3f} s at {torch.get_num_threads()} threads (target <= 0.35: "
          f"{'met' if shipped['step']['wall'] <= 0.35 else 'NOT met'}), {shipped['step@1']['wall']:.3f} s at 1 "
          f"thread; console {shipped['console']['wall']:.3f} s, network {shipped['network']['wall']:.3f} s; "
          f"lite preset {lite['step']['wall']:.3f} s; load average {load0:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
