"""The compressor: level detector, soft-knee gain computer and attack/release smoothing (docs/design.md §4)."""

from __future__ import annotations

import math

import os

import torch

from diffmst_lite.dsp.decibels import db_to_amplitude

LEVEL_DETECTOR_MS = 10.0  # time constant of the RMS level detector
SILENCE_POWER = 1e-10  # -100 dBFS: floor of the level detector


# ------------------------------------------------------------------- compressor

_torchcomp_core = None  # torchcomp's kernel, imported at the first call (importing it starts numba)


def compressor_core(x: torch.Tensor, zi: torch.Tensor, at: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
    """torchcomp's attack/release recursion with one numba thread, keeping PyTorch's thread count.

    torchcomp's kernel is a numba loop that is parallel over the batch: numba's worker
    threads and PyTorch's intra-op threads then compete for the same cores, and every
    later PyTorch op slows down (measured 4x on the console's forward+backward with 2
    cores). So the first call (not the package's import, docs/design.md §4.3) gives numba
    one thread unless ``NUMBA_NUM_THREADS`` says otherwise. numba's first parallel launch
    also resets the OpenMP thread count PyTorch shares: it is restored after that launch.
    Without gradients (and on the CPU) the same recursion runs in
    :func:`.ballistics.attack_release`, which numba caches on disk.
    """
    global _torchcomp_core
    if not x.is_cuda and not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, zi, at, rt))):
        return _attack_release_no_grad(x, zi, at, rt)
    if _torchcomp_core is not None:
        return _torchcomp_core(x, zi, at, rt)
    threads = torch.get_num_threads()  # before numba: its set_num_threads and first launch change it
    chosen = "NUMBA_NUM_THREADS" in os.environ
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # read when numba is first imported
    import numba
    from torchcomp import compressor_core as core

    if not chosen:
        numba.set_num_threads(1)  # also when numba was imported before (e.g. by librosa)
    y = core(x, zi, at, rt)
    torch.set_num_threads(threads)
    _torchcomp_core = core
    return y


def _attack_release_no_grad(x: torch.Tensor, zi: torch.Tensor, at: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
    """The same recursion when nothing needs a gradient (rendering): numba's on-disk cache
    spares each new process the compilation of torchcomp's kernel (see :mod:`.ballistics`)."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # as for torchcomp, if numba starts here
    from diffmst_lite.dsp.ballistics import attack_release

    as_numpy = [t.detach().contiguous().numpy() for t in (x, zi, at, rt)]  # dtypes as torchcomp gets them
    return torch.from_numpy(attack_release(*as_numpy))


def time_constant_to_coefficient(ms: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """One-pole smoothing coefficient ``1 - exp(-1 / (tau * fs))`` for a time constant in ms."""
    return 1.0 - torch.exp(-1000.0 / (ms * sample_rate))


def gain_computer(
    level_db: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor, knee_db: torch.Tensor
) -> torch.Tensor:
    """Static curve with a quadratic soft knee (Giannoulis, Massberg, Reiss 2012, eq. 4).

    With ``o = level - threshold`` and knee width ``W`` the curve bends over
    ``|o| < W/2``; written as ``(1/R - 1) * (u^2 / 2W + relu(o - W/2))`` with
    ``u = clamp(o + W/2, 0, W)``, which is the three-piece curve in one expression.

    Args:
        level_db: ``(batch, samples)`` detected level in dB.
        threshold_db, ratio, knee_db: ``(batch,)``; ratio >= 1, knee > 0 dB.

    Returns:
        Gain change in dB, ``(batch, samples)``, <= 0.

    Chapter 4: Dynamic range compression.
    """
    knee = knee_db.clamp_min(1e-3)[:, None]  # a zero knee would divide by zero
    over = level_db - threshold_db[:, None]
    inside = torch.minimum((over + knee / 2).clamp_min(0.0), knee)
    return (1.0 / ratio - 1.0)[:, None] * (inside.square() / (2 * knee) + (over - knee / 2).clamp_min(0.0))


class _TargetGain(torch.autograd.Function):
    """``db_to_amplitude(gain_computer(...))`` with a hand-written backward.

    Autograd would keep every intermediate of the soft-knee curve, each ``(batch,
    samples)``; this saves only the level and the output and recomputes the cheap rest
    in backward (fewer and smaller allocations at long inputs). The gradient is the
    derivative of :func:`gain_computer`'s expression, checked against autograd in
    tests/test_gradients.py.
    """

    @staticmethod
    def forward(ctx, level_db, threshold_db, ratio, knee_db):
        target = db_to_amplitude(gain_computer(level_db, threshold_db, ratio, knee_db))
        ctx.save_for_backward(level_db, threshold_db, ratio, knee_db, target)
        return target

    @staticmethod
    def backward(ctx, grad):
        level_db, threshold_db, ratio, knee_db, target = ctx.saved_tensors
        knee = knee_db.clamp_min(1e-3)[:, None]
        slope = (1.0 / ratio - 1.0)[:, None]
        over = level_db - threshold_db[:, None]
        inside = torch.minimum((over + knee / 2).clamp_min(0.0), knee)
        below = over < knee / 2  # knee or below it; above it the curve is a straight line
        g = grad * target * (math.log(10.0) / 20.0)  # d amplitude / d change in dB
        d_over = slope * torch.where(below, inside / knee, torch.ones_like(inside))
        grad_level = g * d_over
        base = inside.square() / (2 * knee) + (over - knee / 2).clamp_min(0.0)
        d_knee = torch.where(below, inside / (2 * knee) - inside.square() / (2 * knee.square()), torch.zeros_like(inside))
        return (
            grad_level if ctx.needs_input_grad[0] else None,
            -grad_level.sum(1) if ctx.needs_input_grad[1] else None,
            -(g * base).sum(1) / ratio.square() if ctx.needs_input_grad[2] else None,
            (slope[:, 0] * (g * d_knee).sum(1) * (knee_db >= 1e-3)) if ctx.needs_input_grad[3] else None,
        )


def compressor(
    x: torch.Tensor,
    sample_rate: float,
    threshold_db: torch.Tensor,
    ratio: torch.Tensor,
    attack_ms: torch.Tensor,
    release_ms: torch.Tensor,
    knee_db: torch.Tensor,
    makeup_db: torch.Tensor,
) -> torch.Tensor:
    """Feed-forward compressor with RMS detection and attack/release ballistics.

    The level detector is the mean power of all channels (stereo-linked, so centred
    stereo reads the same level as mono), smoothed with a 10 ms time constant. The
    gain computer's output is smoothed with the attack time constant while gain
    reduction grows and the release time constant while it recovers (both one-pole
    recursions run per sample by torchcomp's differentiable kernel; Yu & Fazekas 2024).

    Args:
        x: ``(batch, channels, samples)``.
        threshold_db: ``(batch,)`` dB; ratio ``(batch,)`` >= 1;
        attack_ms, release_ms: ``(batch,)`` time constants in ms;
        knee_db: ``(batch,)`` dB (> 0); makeup_db: ``(batch,)`` dB.

    Returns:
        ``(batch, channels, samples)``.

    Chapter 4: Dynamic range compression.
    """
    _, smoothed = compressor_gain(x, sample_rate, threshold_db, ratio, attack_ms, release_ms, knee_db)
    return x * (smoothed * db_to_amplitude(makeup_db)[:, None]).unsqueeze(1)


def compressor_gain(
    x: torch.Tensor,
    sample_rate: float,
    threshold_db: torch.Tensor,
    ratio: torch.Tensor,
    attack_ms: torch.Tensor,
    release_ms: torch.Tensor,
    knee_db: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compressor's side chain (see :func:`compressor`), for plots and analysis.

    Returns:
        ``level_db (batch, samples)``, the detected level, and ``gain (batch, samples)``,
        the smoothed linear gain (<= 1, without makeup).

    Chapter 4: Dynamic range compression.
    """
    power = x.square().mean(1) + SILENCE_POWER
    detector = time_constant_to_coefficient(torch.full_like(threshold_db, LEVEL_DETECTOR_MS), sample_rate)
    # a one-pole smoother is the attack/release recursion with attack == release,
    # which torchcomp runs without the large temporaries of its avg()
    level_db = 10.0 * torch.log10(compressor_core(power, torch.zeros_like(detector), detector, detector))
    target = _TargetGain.apply(level_db, threshold_db, ratio, knee_db)
    smoothed = compressor_core(
        target,
        torch.ones_like(threshold_db),
        time_constant_to_coefficient(attack_ms, sample_rate),
        time_constant_to_coefficient(release_ms, sample_rate),
    )
    return level_db, smoothed
