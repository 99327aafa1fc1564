"""Time the full mixing console against a reference chain built from dasp-pytorch 0.0.1.

For each configuration (batch x tracks x seconds x sample rate) both
implementations render a mix from the *same* tracks and the *same* normalised
parameters ``track_params (B, T, 26)`` and ``master_params (B, 26)`` (leaf
tensors with ``requires_grad=True``), mapped to physical units by
:func:`diffmst_lite.params.to_physical`:

* ``ours``: :class:`diffmst_lite.console.MixingConsole` (per track gain -> EQ ->
  compressor -> panner; master input gain -> EQ -> compressor -> output gain).
* ``ref``: the same chain from ``dasp_pytorch.functional`` alone: ``gain``,
  ``parametric_eq``, ``compressor``, ``stereo_panner``, ``stereo_bus`` (0 dB
  sends), then master ``gain``, ``parametric_eq``, ``compressor``, ``gain``.
  Tracks are folded into the batch (dasp wants every parameter with exactly
  ``x.size(0)`` elements); the panner takes ``(B, T, N)`` and returns
  ``(B, 2, T, N)``, which is what ``stereo_bus`` expects.

Columns:

* ``fwd``: the time until the mix is ready, inside the fwd+bwd call; autograd is
  recording (the parameters require grad), i.e. the forward half of a training step.
* ``fwd+bwd``: forward, ``loss = mix.square().mean()``, ``loss.backward()`` to
  the parameters.
* times are medians over the timed repeats; each repeat runs ref and ours back to
  back in one process, alternating which goes first, so load from other processes
  hits both alike. ``ratio`` = ref time / our time; ``n`` = repeats (slow sizes
  stop at ``--budget`` seconds; the headline always gets 3).
* ``peak MB``: increase of the peak resident set size (``ru_maxrss``) over one
  fwd+bwd call, each implementation in its own fresh subprocess (after a tiny
  warm-up call that loads FFT plans and JIT-compiles numba kernels).
* ``fwd+bwd CPU-time ratio``: the same ratio from user+system CPU time (all threads).

Threads: torchcomp's numba kernels start numba's OpenMP layer on first use, which
sets OpenMP's thread count (shared with PyTorch) to ``NUMBA_NUM_THREADS`` (1, set
by diffmst_lite); ``diffmst_lite.console.compressor_core`` restores PyTorch's count
after that first launch (dasp-pytorch uses no numba), so ``--threads`` (default:
PyTorch's default) holds for both chains. On a machine that
other busy processes share, OpenMP's spinning wait policy can slow many-small-op
code by 10x or more; ``--threads 1`` or ``--passive-omp`` avoid that.

The parameters are drawn with :class:`diffmst_lite.params.RandomParamConfig`
(plausible mixes, pan within +-0.8, every EQ frequency inside the console's
ranges, which are valid at 22.05 kHz, unlike dasp's ``ParametricEQ`` defaults);
the run checks that both implementations give finite mixes and gradients.

Run::

    .venv/bin/python benchmarks/console.py --quick        # smallest + headline, ~75 s quiet, 3-4 min busy
    .venv/bin/python benchmarks/console.py                # full grid (16 sizes), ~11 min quiet, ~16-20 busy
    .venv/bin/python benchmarks/console.py --repeats 7 --threads 1
    .venv/bin/python benchmarks/console.py --profile ours # where our time and memory go (headline size)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch
import dasp_pytorch
import dasp_pytorch.functional as DF

from diffmst_lite import params as P
from diffmst_lite.console import MixingConsole

Config = Tuple[int, int, float, int]  # batch, tracks, seconds, sample rate

BATCHES = (1, 4)
TRACKS = (8, 16)
SECONDS = (3.0, 6.0)
SAMPLE_RATES = (22050, 44100)
SMALLEST: Config = (1, 8, 3.0, 22050)
HEADLINE: Config = (4, 8, 6.0, 44100)
TARGET_SPEEDUP = 5.0  # fwd+bwd at the headline size
HEADLINE_MIN_REPEATS = 3


def config_name(c: Config) -> str:
    b, t, s, sr = c
    return f"{b}x{t}x{s:g}s@{sr / 1000:g}k"


# --------------------------------------------------------------------- inputs


def make_inputs(config: Config, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracks ``(B, T, N)`` (noise at -30 .. -10 dBFS RMS) and normalised parameters."""
    batch, tracks, seconds, sr = config
    g = torch.Generator().manual_seed(seed)
    n = int(round(seconds * sr))
    levels = torch.logspace(-1.5, -0.5, tracks)[None, :, None]
    x = levels * torch.randn(batch, tracks, n, generator=g)
    track_params = P.random_track_params(batch, tracks, sr, generator=g)
    master_params = P.random_master_params(batch, sr, generator=g)
    return x, track_params, master_params


# ------------------------------------------------------ the dasp reference chain


def _eq_args(settings: torch.Tensor) -> List[torch.Tensor]:
    """dasp's parametric_eq argument order: (gain_db, cutoff_freq, q) per band, 6 bands."""
    freq, gain_db, q = settings[:, P.EQ_FREQ], settings[:, P.EQ_GAIN], settings[:, P.EQ_Q]
    args = []
    for band in range(P.NUM_BANDS):
        args += [gain_db[:, band], freq[:, band], q[:, band]]
    return args


def reference_mix(x: torch.Tensor, track_params: torch.Tensor, master_params: torch.Tensor, sr: int) -> torch.Tensor:
    """The console built from dasp-pytorch 0.0.1 functions: ``(B, T, N)`` -> ``(B, 2, N)``."""
    batch, tracks, n = x.shape
    ts = P.to_physical(track_params, P.track_param_specs(sr)).reshape(batch * tracks, -1)
    ms = P.to_physical(master_params, P.master_param_specs(sr))

    y = x.reshape(batch * tracks, 1, n)  # fold tracks into the batch
    y = DF.gain(y, sr, ts[:, P.GAIN])
    y = DF.parametric_eq(y, sr, *_eq_args(ts))
    y = DF.compressor(y, sr, *ts[:, P.COMPRESSOR].unbind(-1))
    pan01 = (ts[:, P.LAST] + 1.0) / 2.0  # dasp pans on [0, 1]
    y = DF.stereo_panner(y.reshape(batch, tracks, n), sr, pan01.reshape(batch, tracks))  # (B, 2, T, N)
    bus = DF.stereo_bus(y, sr, torch.zeros(batch, tracks, 1))  # 0 dB sends -> (B, 2, N)

    bus = DF.gain(bus, sr, ms[:, P.GAIN])
    bus = DF.parametric_eq(bus, sr, *_eq_args(ms))
    bus = DF.compressor(bus, sr, *ms[:, P.COMPRESSOR].unbind(-1))
    return DF.gain(bus, sr, ms[:, P.LAST])


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_runners(config: Config) -> Dict[str, Callable[[], Tuple[float, float, float, bool]]]:
    """``{"ref": fn, "ours": fn}``; ``fn()`` runs forward + backward once.

    Returns ``(forward s, forward+backward s, forward+backward CPU s, finite)``: the
    forward time is read when the mix is ready (autograd recording, since the
    parameters require grad); the CPU time sums all threads; ``finite`` says the mix
    and both parameter gradients are finite (checked after the clocks stop).
    """
    sr = config[3]
    x, tp0, mp0 = make_inputs(config)
    console = MixingConsole(sr)

    def runner(mix_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], Tuple[float, float, float, bool]]:
        def run() -> Tuple[float, float, float, bool]:
            c0, t0 = cpu_seconds(), time.perf_counter()
            tp, mp = tp0.clone().requires_grad_(), mp0.clone().requires_grad_()
            mix = mix_fn(tp, mp)
            t1 = time.perf_counter()
            mix.square().mean().backward()
            t2, c2 = time.perf_counter(), cpu_seconds()
            finite = bool(torch.isfinite(mix).all() and torch.isfinite(tp.grad).all() and torch.isfinite(mp.grad).all())
            return t1 - t0, t2 - t0, c2 - c0, finite

        return run

    return {
        "ref": runner(lambda tp, mp: reference_mix(x, tp, mp, sr)),
        "ours": runner(lambda tp, mp: console(x, tp, mp)),
    }


def warm_up(config: Config, impl: str = "both") -> None:
    """One call of each chain on 50 ms of audio: loads FFT plans, JIT-compiles torchcomp's numba kernels.

    (numba's first launch would leave PyTorch single-threaded; the console's
    ``compressor_core`` restores the thread count, see the module docstring.)
    """
    tiny = (config[0], config[1], 0.05, config[3])
    for name, run in make_runners(tiny).items():
        if impl in ("both", name):
            run()


# -------------------------------------------------------------------- workers


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker_memory(config: Config, impl: str) -> Dict[str, object]:
    """Peak RSS increase (MB) over one fwd+bwd call of ``impl``, in this fresh process."""
    warm_up(config, impl)
    run = make_runners(config)[impl]
    base = maxrss_mb()
    t_fwd, t_total, t_cpu, finite = run()
    return {"threads": torch.get_num_threads(), "peak_mb": maxrss_mb() - base, "base_mb": base, "fwd_s": t_fwd, "fwdbwd_s": t_total, "fwdbwd_cpu_s": t_cpu,
            "finite": finite}


def worker_timing(config: Config, repeats: int, budget: float, min_repeats: int = 1) -> Dict[str, object]:
    """Interleaved fwd+bwd calls of both chains; medians of the forward and total times.

    After ``min_repeats`` repeats, stops once the next repeat would take the timed
    runs over ``budget`` seconds, so the slowest sizes get one or two.
    """
    warm_up(config)
    runners = make_runners(config)
    times: Dict[str, List[float]] = {f"{i}_{m}": [] for i in runners for m in ("fwd", "fwdbwd", "cpu")}
    finite = {name: True for name in runners}
    start = time.perf_counter()
    for r in range(repeats):
        for impl in ("ref", "ours") if r % 2 == 0 else ("ours", "ref"):
            t_fwd, t_total, t_cpu, ok = runners[impl]()
            times[f"{impl}_fwd"].append(t_fwd)
            times[f"{impl}_fwdbwd"].append(t_total)
            times[f"{impl}_cpu"].append(t_cpu)
            finite[impl] &= ok
        elapsed = time.perf_counter() - start
        if r + 1 >= min_repeats and elapsed / (r + 1) * (r + 2) > budget:
            break
    out: Dict[str, object] = {k: statistics.median(v) for k, v in times.items()}
    out["repeats"] = len(times["ref_fwd"])
    out["threads"] = torch.get_num_threads()
    out["raw"] = times
    pair_ratios = sorted(a / b for a, b in zip(times["ref_fwdbwd"], times["ours_fwdbwd"]))
    out["fwdbwd_ratio_range"] = (pair_ratios[0], pair_ratios[-1])
    out["finite"] = finite
    return out


def spawn(args: List[str], threads: int, passive: bool = False) -> Dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # must be set before the OpenMP runtime starts
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------- main


def ref_peak_estimate_mb(config: Config) -> float:
    """Rough peak of the dasp chain's fwd+bwd: ~240 MB per track per 2^20-point FFT.

    (Measured: 7.2 GB at 4 x 8 tracks x 6 s at 44.1 kHz, where dasp pads to 2^20.)
    """
    batch, tracks, seconds, sr = config
    n = int(round(seconds * sr))
    n_fft = 1 << (2 * n - 2).bit_length()
    return 240.0 * batch * tracks * n_fft / 2**20


def mem_available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


CONSOLE_FILES = ("diffmst_lite/console.py", "diffmst_lite/params.py", "diffmst_lite/__init__.py")


def code_version() -> str:
    """The last commit that touched the console (console.py, params.py, the package's
    __init__.py, which sets NUMBA_NUM_THREADS), and whether the tree differs from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h", "--", *CONSOLE_FILES)
        dirty = git("status", "--porcelain", "--", *CONSOLE_FILES)
    except OSError:
        return "unknown"
    return f"console at {commit or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def run_config(config: Config, repeats: int, budget: float, threads: int, passive: bool = False) -> Dict:
    cfg = ",".join(str(v) for v in config)
    row: Dict = {"config": config_name(config)}
    # the headline decides the verdict: never judge it on a single repeat
    min_repeats = min(repeats, HEADLINE_MIN_REPEATS) if config == HEADLINE else 1
    row.update(spawn(["--worker", "time", "--config", cfg, "--repeats", str(repeats), "--budget", str(budget),
                      "--min-repeats", str(min_repeats)], threads, passive))
    for impl in ("ref", "ours"):
        mem = spawn(["--worker", "memory", "--impl", impl, "--config", cfg], threads, passive)
        row[f"{impl}_peak_mb"] = mem["peak_mb"]
        row["finite"][impl] &= mem["finite"]
    return row


def function_breakdown(config: Config, repeats: int = 5) -> None:
    """Our console's functions in isolation, at the shapes and with the gradients the console uses.

    Per track the audio is ``(B*T, 1, N)``, on the master bus ``(B, 2, N)``; the
    parameters always require grad and so does the audio wherever an upstream stage
    makes it so in the console (everything after the track EQ). Medians over
    ``repeats``, cases interleaved.
    """
    import diffmst_lite.console as CM

    batch, tracks, _, sr = config
    x, tp0, mp0 = make_inputs(config)
    n = x.shape[-1]
    xt = x.reshape(batch * tracks, 1, n)
    bus = 0.3 * torch.randn(batch, 2, n, generator=torch.Generator().manual_seed(1))
    tspecs, mspecs = P.track_param_specs(sr), P.master_param_specs(sr)
    length = CM.eq_impulse_length(sr)

    def eq_args(st: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return st[:, P.EQ_FREQ], st[:, P.EQ_GAIN], st[:, P.EQ_Q]

    # name: (master?, audio, audio requires grad, fn(settings, audio)), in the order the console runs them
    cases = {
        "track EQ: eq_frequency_response + irfft": (
            False, xt, False, lambda st, a: torch.fft.irfft(CM.eq_frequency_response(*eq_args(st), sr, length // 2 + 1), n=length)),
        "track EQ + gain: parametric_eq (response + fft_convolve)": (
            False, xt, False, lambda st, a: CM.parametric_eq(a, sr, *eq_args(st), level_db=st[:, P.GAIN])),
        "track compressor": (False, xt, True, lambda st, a: CM.compressor(a, sr, *st[:, P.COMPRESSOR].unbind(-1))),
        "track pan": (False, xt, True, lambda st, a: CM.pan(a[:, 0], st[:, P.LAST])),
        "master input gain + EQ: parametric_eq": (
            True, bus, True, lambda st, a: CM.parametric_eq(a, sr, *eq_args(st), level_db=st[:, P.GAIN])),
        "master compressor": (True, bus, True, lambda st, a: CM.compressor(a, sr, *st[:, P.COMPRESSOR].unbind(-1))),
        "master output gain": (True, bus, True, lambda st, a: CM.gain(a, st[:, P.LAST])),
    }

    def call(case, backward: bool) -> float:
        master, audio, audio_grad, fn = case
        t0 = time.perf_counter()
        u = (mp0 if master else tp0.reshape(batch * tracks, -1)).clone().requires_grad_()
        a = audio.clone().requires_grad_() if audio_grad else audio
        out = fn(P.to_physical(u, mspecs if master else tspecs), a)
        if backward:
            out.square().mean().backward()
        return time.perf_counter() - t0

    times = {name: ([], []) for name in cases}
    for r in range(repeats + 1):
        for name, case in cases.items():
            fwd, both = call(case, False), call(case, True)
            if r:  # the first round is a warm-up
                times[name][0].append(fwd)
                times[name][1].append(both)
    print(f"our console's functions in isolation at {config_name(config)} ({torch.get_num_threads()} threads, "
          f"medians of {repeats}):")
    print(f"| function | fwd ms | fwd+bwd ms |\n|---|---:|---:|")
    for name, (fwd, both) in times.items():
        print(f"| {name} | {1000 * statistics.median(fwd):.0f} | {1000 * statistics.median(both):.0f} |")


def saved_for_backward(config: Config, impl: str) -> None:
    """MB that autograd keeps for the backward pass, by the (innermost) console function that saved it."""
    import diffmst_lite.console as console_module

    stack = ["(outside)"]
    seen: Dict[int, str] = {}
    sizes: Dict[str, float] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen[key] = stack[-1]
            sizes[stack[-1]] = sizes.get(stack[-1], 0.0) + storage.nbytes() / 2**20
        return t

    def wrap(owner, name: str, label: str):
        fn = getattr(owner, name)

        def wrapped(*a, **k):
            stack.append(label)
            try:
                return fn(*a, **k)
            finally:
                stack.pop()

        setattr(owner, name, wrapped)
        return fn

    targets = [(console_module, n, f"console.{n}") for n in
               ("eq_frequency_response", "fft_convolve", "parametric_eq", "compressor", "pan", "gain")]
    targets += [(DF, n, f"dasp.{n}") for n in ("gain", "parametric_eq", "compressor", "stereo_panner", "stereo_bus")]
    targets += [(MixingConsole, "process_tracks", "MixingConsole.process_tracks"),
                (MixingConsole, "master_bus", "MixingConsole.master_bus")]
    originals = [(owner, name, wrap(owner, name, label)) for owner, name, label in targets]
    try:
        run = make_runners(config)[impl]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run()
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    print(f"{impl} at {config_name(config)}: tensors saved for backward, {sum(sizes.values()):.0f} MB in all "
          f"(distinct storages, attributed to the innermost function that saved them first):")
    for label, mb in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<32} {mb:8.1f} MB")


def profile(config: Config, impl: str, rows: int) -> None:
    """Where the time and memory of one fwd+bwd call go.

    1. (ours) each console function in isolation, fwd and fwd+bwd;
    2. the tensors autograd saves for the backward pass, by function;
    3. torch.profiler tables of one call (after a warm-up call): forward ops are
       grouped under ``record_function`` ranges named after the console functions
       (wrapped here, not in the package); backward ops appear as
       ``autograd::engine::evaluate_function: <Op>Backward``.
    """
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    import diffmst_lite.console as console_module

    warm_up(config)  # numba's OpenMP start-up would otherwise leave PyTorch on one thread
    print(f"{torch.get_num_threads()} PyTorch threads")
    if impl == "ours":
        function_breakdown(config)
        print()
    saved_for_backward(config, impl)
    print()

    def wrap(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def wrapped(*a, **k):
            with record_function(label):
                return fn(*a, **k)

        setattr(owner, name, wrapped)

    for name in ("parametric_eq", "eq_frequency_response", "fft_convolve", "compressor", "pan", "gain"):
        wrap(console_module, name, f"console.{name}")
    for name in ("gain", "parametric_eq", "compressor", "stereo_panner", "stereo_bus"):
        wrap(DF, name, f"dasp.{name}")
    for name in ("process_tracks", "master_bus"):
        wrap(MixingConsole, name, f"MixingConsole.{name}")
    run = make_runners(config)[impl]
    run()
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        with record_function(f"{impl} fwd+bwd"):
            t_fwd, t_total, _, _ = run()
    print(f"{impl} at {config_name(config)}: fwd {t_fwd:.3f} s, fwd+bwd {t_total:.3f} s (under the profiler)")
    averages = prof.key_averages()
    print(averages.table(sort_by="cpu_time_total", row_limit=rows))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))


def fmt_s(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def table(rows: List[Dict]) -> str:
    lines = [
        "| config | ref fwd | ours fwd | ratio | ref fwd+bwd | ours fwd+bwd | ratio | ref peak MB | ours peak MB "
        "| n | fwd+bwd CPU-time ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {fmt_s(r['ref_fwd'])} | {fmt_s(r['ours_fwd'])} | {r['ref_fwd'] / r['ours_fwd']:.1f}x "
            f"| {fmt_s(r['ref_fwdbwd'])} | {fmt_s(r['ours_fwdbwd'])} | {r['ref_fwdbwd'] / r['ours_fwdbwd']:.1f}x "
            f"| {r['ref_peak_mb']:.0f} | {r['ours_peak_mb']:.0f} | {r['repeats']} | {r['ref_cpu'] / r['ours_cpu']:.1f}x |"
        )
    return "\n".join(lines)


def verdict(rows: List[Dict]) -> str:
    head = [r for r in rows if r["config"] == config_name(HEADLINE)]
    parts, ok = [], True
    if head:
        h = head[0]
        s = h["ref_fwdbwd"] / h["ours_fwdbwd"]
        met = s >= TARGET_SPEEDUP
        ok &= met
        lo, hi = h["fwdbwd_ratio_range"]
        parts.append(f"headline {config_name(HEADLINE)} fwd+bwd {s:.2f}x (ratios of the {h['repeats']} interleaved "
                     f"pairs {lo:.1f}-{hi:.1f}x; target >= {TARGET_SPEEDUP:g}x): {'met' if met else 'MISSED'}")
    else:
        ok = False
        parts.append("headline size not measured")
    slower = [f"{r['config']} {m}" for r in rows for m in ("fwd", "fwdbwd") if r[f"ours_{m}"] > r[f"ref_{m}"]]
    ok &= not slower
    parts.append("never slower: " + ("met" if not slower else "MISSED (" + ", ".join(slower) + ")"))
    heavier = [r["config"] for r in rows if r["ours_peak_mb"] > r["ref_peak_mb"]]
    ok &= not heavier
    parts.append("peak memory no higher: " + ("met" if not heavier else "MISSED (" + ", ".join(heavier) + ")"))
    nonfinite = [f"{r['config']} {k}" for r in rows for k, v in r["finite"].items() if not v]
    if nonfinite:
        parts.append("NON-FINITE outputs/gradients: " + ", ".join(nonfinite))
    return ("TARGETS MET" if ok else "TARGETS NOT MET") + ": " + "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only {config_name(SMALLEST)} and the headline {config_name(HEADLINE)}")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per size (fewer for slow sizes, see --budget)")
    ap.add_argument("--budget", type=float, default=45.0,
                    help="seconds of timed runs per size; slow sizes stop repeating once over it "
                         f"(>= 1 repeat; the headline always gets {HEADLINE_MIN_REPEATS})")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--mem-fraction", type=float, default=0.8,
                    help="skip a size if the dasp chain's estimated peak exceeds this fraction of MemAvailable")
    ap.add_argument("--passive-omp", action="store_true",
                    help="run the workers with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of "
                         "spinning; fairer on a machine shared with other busy processes)")
    ap.add_argument("--config", type=str, default=None, help="only this size: batch,tracks,seconds,sample_rate")
    ap.add_argument("--json", type=str, default=None, help="also write the rows to this JSON file")
    ap.add_argument("--profile", choices=("ours", "ref"), default=None,
                    help="instead of timing, profile one fwd+bwd of this chain at --config (default: the headline)")
    ap.add_argument("--profile-rows", type=int, default=25)
    ap.add_argument("--min-repeats", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=("time", "memory"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=("ref", "ours"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    def parse(c: str) -> Config:
        b, t, s, sr = c.split(",")
        return int(b), int(t), float(s), int(sr)

    if args.worker:
        config = parse(args.config)
        out = worker_timing(config, args.repeats, args.budget, args.min_repeats) if args.worker == "time" else worker_memory(config, args.impl)
        print(json.dumps(out))
        return

    if args.profile:
        profile(parse(args.config) if args.config else HEADLINE, args.profile, args.profile_rows)
        return

    if args.config:
        configs = [parse(args.config)]
    elif args.quick:
        configs = [SMALLEST, HEADLINE]
    else:
        configs = list(itertools.product(BATCHES, TRACKS, SECONDS, SAMPLE_RATES))
    version = code_version()
    print(f"diffmst-lite {version}; torch {torch.__version__}, dasp-pytorch {getattr(dasp_pytorch, '__version__', '0.0.1')}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
          f"{'OMP_WAIT_POLICY=PASSIVE, ' if args.passive_omp else ''}repeats {args.repeats} (budget {args.budget:g} s per size); load average {load_average()}", flush=True)
    rows: List[Dict] = []
    skipped: List[str] = []
    t0 = time.perf_counter()
    for config in configs:
        need, free = ref_peak_estimate_mb(config), mem_available_mb()
        if need > args.mem_fraction * free:
            print(f"  {config_name(config)}: SKIPPED, the dasp chain needs ~{need:.0f} MB and only {free:.0f} MB "
                  f"are available (--mem-fraction {args.mem_fraction:g})", flush=True)
            skipped.append(config_name(config))
            continue
        row = run_config(config, args.repeats, args.budget, args.threads, args.passive_omp)
        rows.append(row)
        print(f"  {row['config']}: fwd+bwd ref {fmt_s(row['ref_fwdbwd'])} ours {fmt_s(row['ours_fwdbwd'])} "
              f"({row['ref_fwdbwd'] / row['ours_fwdbwd']:.1f}x), peak MB ref {row['ref_peak_mb']:.0f} "
              f"ours {row['ours_peak_mb']:.0f}  [{time.perf_counter() - t0:.0f} s, load {load_average()}]", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s; load average at the end {load_average()}")
    if code_version() != version:
        print(f"WARNING: the console changed during the run ({version} -> {code_version()}); rows mix versions")
    print()
    print(table(rows))
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if skipped:
        print("not measured (memory): " + ", ".join(skipped))
    print(verdict(rows))


if __name__ == "__main__":
    main()
