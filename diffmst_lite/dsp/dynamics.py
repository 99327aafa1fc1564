"""The compressor: level detector, soft-knee gain computer and attack/release smoothing (docs/design.md §4).

On the CPU the side chain runs as one autograd function over numba loops
(:class:`_SideChain`, kernels in :mod:`.ballistics`); on CUDA as torch ops and
torchcomp's kernel (:func:`_side_chain_ops`). Both compute the same numbers
(tests/test_gradients.py).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from diffmst_lite.dsp.compiled import compiled_loops
from diffmst_lite.dsp.decibels import db_to_amplitude

LEVEL_DETECTOR_MS = 10.0  # time constant of the RMS level detector
SILENCE_POWER = 1e-10  # -100 dBFS: floor of the level detector
MIN_KNEE_DB = 1e-3  # narrower knees are widened to this: a zero knee would divide by zero


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
    :func:`.ballistics.attack_release`, which numba caches on disk. The compressor's
    side chain on the CPU needs neither: it runs :class:`_SideChain`.
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
    as_numpy = [t.detach().contiguous().numpy() for t in (x, zi, at, rt)]  # dtypes as torchcomp gets them
    return torch.from_numpy(compiled_loops("ballistics").attack_release(*as_numpy)[0])


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
    knee = knee_db.clamp_min(MIN_KNEE_DB)[:, None]
    over = level_db - threshold_db[:, None]
    inside = torch.minimum((over + knee / 2).clamp_min(0.0), knee)
    return (1.0 / ratio - 1.0)[:, None] * (inside.square() / (2 * knee) + (over - knee / 2).clamp_min(0.0))


class _TargetGain(torch.autograd.Function):
    """``db_to_amplitude(gain_computer(...))`` with a hand-written backward.

    Autograd would keep every intermediate of the soft-knee curve, each ``(batch,
    samples)``; this saves only the level and the output and recomputes the cheap rest
    in backward (fewer and smaller allocations at long inputs). The gradient is the
    derivative of :func:`gain_computer`'s expression, checked against autograd in
    tests/test_gradients.py. Used by :func:`_side_chain_ops` (CUDA).
    """

    @staticmethod
    def forward(ctx, level_db, threshold_db, ratio, knee_db):
        target = db_to_amplitude(gain_computer(level_db, threshold_db, ratio, knee_db))
        ctx.save_for_backward(level_db, threshold_db, ratio, knee_db, target)
        return target

    @staticmethod
    def backward(ctx, grad):
        level_db, threshold_db, ratio, knee_db, target = ctx.saved_tensors
        knee = knee_db.clamp_min(MIN_KNEE_DB)[:, None]
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
            (slope[:, 0] * (g * d_knee).sum(1) * (knee_db >= MIN_KNEE_DB)) if ctx.needs_input_grad[3] else None,
        )


class _SideChain(torch.autograd.Function):
    """The whole side chain on the CPU: ``x (batch, channels, samples)``, the detector's,
    attack and release coefficients and the curve's settings (all ``(batch,)``) ->
    ``detected (batch, samples)`` power and ``gain (batch, samples)``.

    Forward: three numba loops (:mod:`.ballistics`: detector, static curve, smoothing)
    and torch's vectorised ``log`` and ``exp`` between them; backward: one numba loop,
    from what forward stored (no ``log`` or ``exp`` again). This replaces about ten
    torch passes, each with its ``(batch, samples)`` temporaries. The detector's
    coefficient is a constant (no gradient).
    """

    @staticmethod
    def forward(ctx, x, detector, threshold_db, ratio, knee_db, attack, release):
        kernels = compiled_loops("ballistics")
        settings = [s.detach().double().contiguous().numpy() for s in (detector, threshold_db, ratio, knee_db,
                                                                      attack, release)]
        x = x.detach().contiguous()
        detected = torch.from_numpy(kernels.detector(x.numpy(), SILENCE_POWER, settings[0]))
        log_power = detected.log()
        target = torch.from_numpy(kernels.gain_exponent(log_power.numpy(), *settings[1:4])).exp_()
        gain, attacking = kernels.attack_release(target.numpy(), np.ones(len(x)), *settings[4:])
        gain, attacking = torch.from_numpy(gain), torch.from_numpy(attacking)
        ctx.settings = settings
        ctx.dtypes = [s.dtype for s in (threshold_db, ratio, knee_db, attack, release)]
        ctx.save_for_backward(x, detected, log_power, target, gain, attacking)
        ctx.set_materialize_grads(False)  # the detected power is mostly unused: no zeros for it
        return detected, gain

    @staticmethod
    def backward(ctx, grad_detected, grad_gain):
        x, detected, log_power, target, gain, attacking = ctx.saved_tensors
        grad_gain = torch.zeros_like(gain) if grad_gain is None else grad_gain.contiguous()
        grad_detected = gain.new_empty(len(gain), 0) if grad_detected is None else grad_detected.contiguous()
        arrays = [t.numpy() for t in (detected, log_power, target, gain, attacking, grad_gain, grad_detected)]
        grad_x, grads = compiled_loops("ballistics").side_chain_backward(x.numpy(), *ctx.settings, *arrays)
        grads = [torch.from_numpy(g).to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return torch.from_numpy(grad_x), None, *grads


def _side_chain_ops(
    x: torch.Tensor, detector: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor,
    knee_db: torch.Tensor, attack: torch.Tensor, release: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`_SideChain` as separate torch ops and torchcomp's kernel, which also run
    on CUDA tensors (numba's CPU kernels cannot read them)."""
    power = x.square().mean(1) + SILENCE_POWER
    # a one-pole smoother is the attack/release recursion with attack == release
    detected = compressor_core(power, torch.zeros_like(detector), detector, detector)
    target = _TargetGain.apply(10.0 * torch.log10(detected), threshold_db, ratio, knee_db)
    return detected, compressor_core(target, torch.ones_like(threshold_db), attack, release)


def _side_chain(
    x: torch.Tensor, sample_rate: float, threshold_db: torch.Tensor, ratio: torch.Tensor, attack_ms: torch.Tensor,
    release_ms: torch.Tensor, knee_db: torch.Tensor, fused: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``detected (batch, samples)``, the detector's power, and the smoothed gain (see :func:`compressor_gain`).

    ``fused``: :class:`_SideChain` (the default on the CPU) or :func:`_side_chain_ops`
    (on CUDA; tests and benchmarks/compressor.py compare the two on the CPU).
    """
    # settings of shape (1,) apply to every row
    settings = [s.expand(len(x)) for s in (threshold_db, ratio, knee_db.clamp_min(MIN_KNEE_DB))]
    detector = time_constant_to_coefficient(torch.full_like(settings[0], LEVEL_DETECTOR_MS), sample_rate)
    attack, release = (time_constant_to_coefficient(ms, sample_rate).expand(len(x)) for ms in (attack_ms, release_ms))
    if fused is None:
        fused = x.device.type == "cpu"
    return (_SideChain.apply if fused else _side_chain_ops)(x, detector, *settings, attack, release)


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
    recursions run per sample; the gradient treats the choice between them as constant,
    as torchcomp's differentiable kernel does: Yu & Fazekas 2024).

    Args:
        x: ``(batch, channels, samples)``.
        threshold_db: ``(batch,)`` dB; ratio ``(batch,)`` >= 1;
        attack_ms, release_ms: ``(batch,)`` time constants in ms;
        knee_db: ``(batch,)`` dB (> 0); makeup_db: ``(batch,)`` dB.

    Returns:
        ``(batch, channels, samples)``.

    Chapter 4: Dynamic range compression.
    """
    _, smoothed = _side_chain(x, sample_rate, threshold_db, ratio, attack_ms, release_ms, knee_db)
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
    detected, smoothed = _side_chain(x, sample_rate, threshold_db, ratio, attack_ms, release_ms, knee_db)
    return 10.0 * torch.log10(detected), smoothed
