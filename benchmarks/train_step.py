"""Time one Diff-MST training step on the CPU, split into network and console shares.

One step = forward (encoders -> controller -> console), MRSTFT loss against a
target mix, backward, Adam update; batch 2, 8 tracks, 3 s at 22.05 kHz (Method 1
of Vanka et al., ISMIR 2024, with shorter segments). Both presets run in the same
process:

* ``lite``: :meth:`diffmst_lite.model.DiffMST.lite`
* ``paper``: :meth:`diffmst_lite.model.DiffMST.paper` (the paper's sizes)

Columns (medians over ``--repeats`` timed runs after ``--warmup`` runs):

* ``step``: the whole training step.
* ``network``: encoders + controller forward and backward (with a random
  cotangent on the predicted parameters) + Adam step.
* ``console``: console forward + backward to the parameters (given detached
  parameters, so no network work).
* ``loss``: MRSTFT forward + backward alone (given a detached mix).

``network + console + loss`` should be close to ``step``. Run::

    .venv/bin/python benchmarks/train_step.py [--skip-paper] [--repeats 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Callable, Dict, List

import torch

from diffmst_lite.losses import MRSTFTLoss
from diffmst_lite.model import DiffMST


def timed(fn: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, model: DiffMST, batch: Dict[str, torch.Tensor], warmup: int, repeats: int) -> Dict[str, float]:
    """Time the step and its shares for one model; returns seconds per column."""
    tracks, reference, target = batch["tracks"], batch["reference"], batch["target"]
    loss_fn = MRSTFTLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        mix, _, _ = model(tracks, reference)
        loss = loss_fn(mix, target)
        loss.backward()
        opt.step()

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
        loss_fn(mix, target).backward()

    out = {"params": float(model.num_parameters())}
    out["step"] = timed(step, warmup, repeats)
    out["network"] = timed(network, warmup, repeats)
    out["console"] = timed(console, warmup, repeats)
    out["loss"] = timed(loss_only, warmup, repeats)
    print(f"  {name}: done (peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB)",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample-rate", type=int, default=22050)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--paper-repeats", type=int, default=2, help="timed runs for the (slow) paper model")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    n = int(round(args.seconds * args.sample_rate))
    levels = torch.logspace(-1.5, -0.5, args.tracks)[None, :, None]
    batch = {
        "tracks": levels * torch.randn(args.batch, args.tracks, n),
        "reference": 0.1 * torch.randn(args.batch, 2, n),
        "target": 0.1 * torch.randn(args.batch, 2, n),
    }
    print(f"batch {args.batch} x {args.tracks} tracks x {args.seconds:g} s at {args.sample_rate} Hz, "
          f"MRSTFT loss, Adam; torch {torch.__version__}, {torch.get_num_threads()} threads")

    results = {}
    results["lite"] = bench("lite", DiffMST.lite(args.sample_rate), batch, args.warmup, args.repeats)
    if not args.skip_paper:
        results["paper"] = bench("paper", DiffMST.paper(args.sample_rate), batch, 1, args.paper_repeats)

    print()
    print(f"{'model':<7}{'params':>12}{'step s':>10}{'network s':>11}{'console s':>11}{'loss s':>9}{'sum s':>9}")
    for name, r in results.items():
        total = r["network"] + r["console"] + r["loss"]
        print(f"{name:<7}{r['params'] / 1e6:>11.2f}M{r['step']:>10.3f}{r['network']:>11.3f}"
              f"{r['console']:>11.3f}{r['loss']:>9.3f}{total:>9.3f}")
    lite = results["lite"]
    print(f"\nlite targets: step <= 0.5 s: {'ok' if lite['step'] <= 0.5 else 'MISSED'}; "
          f"network <= 0.2 s: {'ok' if lite['network'] <= 0.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
