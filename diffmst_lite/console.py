"""The differentiable mixing console of Diff-MST (Vanka et al., ISMIR 2024).

One function per effect (the style of dasp-pytorch), then :class:`MixingConsole`,
which chains them: per track gain -> 6-band parametric EQ -> compressor -> panner,
summed to a stereo bus -> input gain -> stereo EQ -> stereo-linked compressor ->
output gain.

Differences from the reference implementation, on purpose (DESIGN.md §4):

- The EQ is six RBJ "Audio EQ Cookbook" biquads whose joint frequency response is
  sampled on a grid, turned into one impulse response of 0.85 s and applied by one
  FFT convolution. That is the exact IIR response up to the (tiny) tail beyond
  0.85 s, at a fraction of the cost of filtering with full-length FFTs per band.
- The compressor has an RMS level detector and working attack *and* release
  (gain smoothing with torchcomp's differentiable recursion, Yu & Fazekas 2024).
- The pan law is -4.5 dB at centre, written so its gradient is finite at hard
  left and hard right.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torchcomp import compressor_core as _torchcomp_core

from . import params as P
from .fftconv import fast_fft_length, fft_convolve  # noqa: F401 (part of the console's API)

LEVEL_DETECTOR_MS = 10.0  # time constant of the RMS level detector
SILENCE_POWER = 1e-10  # -100 dBFS: floor of the level detector
CHUNK_BYTES = 24 * 2**20  # channel strips run in chunks whose temporaries stay below glibc's 32 MB mmap threshold


def db_to_amplitude(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 20.0)


def gain(x: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """Scale ``x (batch, ..., samples)`` by ``gain_db (batch,)`` decibels."""
    gain_db = torch.as_tensor(gain_db, dtype=x.dtype, device=x.device)
    return x * db_to_amplitude(gain_db).reshape(gain_db.shape + (1,) * (x.dim() - gain_db.dim()))


# ---------------------------------------------------------------- parametric EQ


def biquad_coefficients(
    band_type: str, freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """RBJ Audio EQ Cookbook biquad (Bristow-Johnson), not normalised by a0.

    Args:
        band_type: ``"low_shelf"``, ``"peaking"``, ``"high_shelf"`` or ``"high_pass"``.
        freq_hz, gain_db, q: tensors of one shape ``(...)``; Q as defined in the cookbook.

    Returns:
        ``b, a``: ``(..., 3)`` each.
    """
    A = torch.pow(10.0, gain_db / 40.0)
    w0 = 2 * math.pi * freq_hz / sample_rate
    cos_w0, alpha = torch.cos(w0), torch.sin(w0) / (2 * q)
    if band_type == "peaking":
        b = (1 + alpha * A, -2 * cos_w0, 1 - alpha * A)
        a = (1 + alpha / A, -2 * cos_w0, 1 - alpha / A)
    elif band_type in ("low_shelf", "high_shelf"):
        s = 1.0 if band_type == "low_shelf" else -1.0  # high shelf: cos(w0) -> -cos(w0)
        two_sqrt_a_alpha = 2 * torch.sqrt(A) * alpha
        b = (
            A * ((A + 1) - s * (A - 1) * cos_w0 + two_sqrt_a_alpha),
            s * 2 * A * ((A - 1) - s * (A + 1) * cos_w0),
            A * ((A + 1) - s * (A - 1) * cos_w0 - two_sqrt_a_alpha),
        )
        a = (
            (A + 1) + s * (A - 1) * cos_w0 + two_sqrt_a_alpha,
            -s * 2 * ((A - 1) + s * (A + 1) * cos_w0),
            (A + 1) + s * (A - 1) * cos_w0 - two_sqrt_a_alpha,
        )
    elif band_type == "high_pass":  # gain_db is ignored
        b = ((1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2)
        a = (1 + alpha, -2 * cos_w0, 1 - alpha)
    else:
        raise ValueError(f"unknown EQ band type {band_type!r}")
    return torch.stack(b, -1), torch.stack(a, -1)


def biquad_response(
    band_type: str, freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float,
    omega: torch.Tensor,
) -> torch.Tensor:
    """Complex response ``(batch, len(omega))`` of one biquad per batch item at ``omega`` (rad/sample)."""
    b, a = biquad_coefficients(band_type, freq_hz, gain_db, q, sample_rate)
    cos1, cos2, sin1, sin2 = torch.cos(omega), torch.cos(2 * omega), torch.sin(omega), torch.sin(2 * omega)

    def on_unit_circle(c: torch.Tensor) -> torch.Tensor:  # c0 + c1 z^-1 + c2 z^-2 at z = e^{j omega}
        c0, c1, c2 = (c[:, i : i + 1] for i in range(3))
        return torch.complex(c0 + c1 * cos1 + c2 * cos2, -(c1 * sin1 + c2 * sin2))

    return on_unit_circle(b) / on_unit_circle(a)


EQ_IMPULSE_SECONDS = 0.85  # length of the EQ's impulse response


def eq_impulse_length(sample_rate: float) -> int:
    """Length (samples) of the EQ's impulse response: 0.85 s, rounded up to a fast FFT size.

    The bands' ranges are the same in Hz at every rate, so the length is a duration:
    long enough for the lowest band (a 20 Hz shelf at Q 5, whose ringing would
    otherwise wrap around; at 0.68 s it missed by 0.23 dB). tests/test_accuracy.py
    checks 0.1 dB at 22.05, 44.1, 48 and 96 kHz (worst measured: 0.025 dB).
    """
    return fast_fft_length(math.ceil(EQ_IMPULSE_SECONDS * sample_rate))


def eq_frequency_response(
    freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float, num_bins: int
) -> torch.Tensor:
    """Complex response of the six-band EQ on ``num_bins`` frequencies from 0 to fs/2.

    Args:
        freq_hz, gain_db, q: ``(batch, 6)``; bands in the order of ``params.BAND_TYPES``.

    Returns:
        ``(batch, num_bins)`` complex128. Computed in float64: at 20 Hz the
        biquad's terms cancel to ~1e-5 and float32 would lose the low end.
    """
    omega = torch.linspace(0, math.pi, num_bins, dtype=torch.float64, device=freq_hz.device)
    response = None
    for band, band_type in enumerate(P.BAND_TYPES):
        h = biquad_response(
            band_type, freq_hz[:, band].double(), gain_db[:, band].double(), q[:, band].double(), sample_rate, omega
        )
        response = h if response is None else response * h
    return response


def parametric_eq(
    x: torch.Tensor, sample_rate: float, freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor,
    level_db: torch.Tensor | None = None,
) -> torch.Tensor:
    """Six-band parametric EQ: low shelf, four peaking bands, high shelf.

    Args:
        x: ``(batch, channels, samples)``; every channel gets the same EQ.
        sample_rate: Hz.
        freq_hz: ``(batch, 6)`` centre/corner frequencies in Hz (below 0.5 * fs).
        gain_db: ``(batch, 6)`` band gains in dB.
        q: ``(batch, 6)`` quality factors (cookbook definition), > 0.
        level_db: optional ``(batch,)`` broadband gain in dB, folded into the filter
            (a gain before or after a linear filter is the same thing, and costs
            nothing this way).

    Returns:
        ``(batch, channels, samples)``.
    """
    length = eq_impulse_length(sample_rate)
    response = eq_frequency_response(freq_hz, gain_db, q, sample_rate, length // 2 + 1)
    impulse = torch.fft.irfft(response, n=length).to(x.dtype)
    if level_db is not None:
        impulse = gain(impulse, level_db)
    return fft_convolve(x, impulse)


# ------------------------------------------------------------------- compressor

_numba_started = False


def compressor_core(x: torch.Tensor, zi: torch.Tensor, at: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
    """torchcomp's attack/release recursion, keeping PyTorch's thread count.

    numba's first parallel launch starts its OpenMP layer, which resets the thread
    count that PyTorch shares to ``NUMBA_NUM_THREADS`` (1, see ``__init__``): every
    later PyTorch op in the process would run on one core. Restore it once.
    """
    global _numba_started
    if _numba_started:
        return _torchcomp_core(x, zi, at, rt)
    threads = torch.get_num_threads()
    y = _torchcomp_core(x, zi, at, rt)
    torch.set_num_threads(threads)
    _numba_started = True
    return y



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


# ----------------------------------------------------------------------- panner


def pan_gains(pan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-4.5 dB pan law: the geometric mean of the linear and the constant-power law.

    ``left = sqrt((1 - p) cos(p pi/2))``, ``right = sqrt(p sin(p pi/2))`` with
    ``p = (pan + 1) / 2`` in [0, 1]. Written as ``p * sqrt(pi/2 * sinc(p/2))``
    (``sin(p pi/2) = p pi/2 sinc(p/2)``), which is exactly zero at the edges and has
    a finite gradient there.

    Args:
        pan: ``(...)`` in [-1 (hard left), +1 (hard right)].

    Returns:
        ``(left, right)`` linear gains, each ``(...)``.
    """
    p = (pan + 1.0) / 2.0

    def side(w: torch.Tensor) -> torch.Tensor:
        return w * torch.sqrt(math.pi / 2 * torch.sinc(w / 2))

    return side(1.0 - p), side(p)


def pan(x: torch.Tensor, pan_position: torch.Tensor) -> torch.Tensor:
    """Pan mono ``x (batch, samples)`` to stereo ``(batch, 2, samples)``; pan ``(batch,)`` in [-1, 1]."""
    left, right = pan_gains(pan_position)
    return torch.stack([x * left[:, None], x * right[:, None]], 1)


# ----------------------------------------------------------------------- console


class MixingConsole(nn.Module):
    """The differentiable mixing console: tracks + settings in [0, 1] -> stereo mix.

    Per track: gain -> parametric EQ -> compressor -> panner; master bus:
    input gain -> stereo EQ -> stereo-linked compressor -> output gain. Parameter
    ranges and vector layouts: :mod:`diffmst_lite.params`. The console has no
    trainable weights; it is an ``nn.Module`` so it moves with ``.to(device)``.
    """

    def __init__(self, sample_rate: float):
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.track_specs = P.track_param_specs(sample_rate)
        self.master_specs = P.master_param_specs(sample_rate)

    @property
    def num_track_params(self) -> int:
        return len(self.track_specs)

    @property
    def num_master_params(self) -> int:
        return len(self.master_specs)

    def _eq(self, x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        """The EQ with the strip's (or bus's input) gain folded into it."""
        return parametric_eq(x, self.sample_rate, settings[:, P.EQ_FREQ], settings[:, P.EQ_GAIN],
                             settings[:, P.EQ_Q], level_db=settings[:, P.GAIN])

    def _compressor(self, x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        return compressor(x, self.sample_rate, *settings[:, P.COMPRESSOR].unbind(-1))

    def _strip(self, tracks: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        """Channel strips of mono ``tracks (R, N)`` with physical ``settings (R, P)`` -> ``(R, 2, N)``."""
        x = self._eq(tracks[:, None], settings)  # gain + EQ
        return pan(self._compressor(x, settings)[:, 0], settings[:, P.LAST])

    def _row_chunks(self, rows: int, num_samples: int) -> list[slice]:
        """Slices of ``rows`` channel strips small enough that no temporary exceeds ``CHUNK_BYTES``.

        A strip's largest temporaries (the EQ's overlap-add spectrum, the panned stereo
        output) take about ``8 * (N + taps)`` bytes. Above glibc's mmap threshold (32 MB)
        every temporary is mapped, page-faulted, zeroed and unmapped again on each call,
        which doubled the console's time at 6 s of 44.1 kHz audio.
        """
        per_row = 8 * (num_samples + eq_impulse_length(self.sample_rate))
        size = max(1, min(rows, CHUNK_BYTES // per_row))
        return [slice(start, start + size) for start in range(0, rows, size)]

    def process_tracks(self, tracks: torch.Tensor, track_params: torch.Tensor) -> torch.Tensor:
        """Channel strips: ``tracks (B, T, N)``, ``track_params (B, T, P)`` -> wet ``(B, T, 2, N)``."""
        batch, num_tracks, num_samples = tracks.shape
        settings = P.to_physical(track_params, self.track_specs).reshape(batch * num_tracks, -1)
        flat = tracks.reshape(batch * num_tracks, num_samples)
        wet = [self._strip(flat[rows], settings[rows]) for rows in self._row_chunks(len(flat), num_samples)]
        return torch.cat(wet).reshape(batch, num_tracks, 2, num_samples)

    def mix_tracks(self, tracks: torch.Tensor, track_params: torch.Tensor) -> torch.Tensor:
        """The stereo bus, the sum of the channel strips: ``(B, T, N)``, ``(B, T, P)`` -> ``(B, 2, N)``.

        The same as ``process_tracks(...).sum(1)``, but the strips run in chunks (see
        :meth:`_row_chunks`) and only the bus is kept, so long inputs need no large
        temporaries.
        """
        batch, num_tracks, num_samples = tracks.shape
        settings = P.to_physical(track_params, self.track_specs).reshape(batch * num_tracks, -1)
        flat = tracks.reshape(batch * num_tracks, num_samples)
        owner = torch.arange(batch, device=tracks.device).repeat_interleave(num_tracks)
        bus = tracks.new_zeros(batch, 2, num_samples)
        for rows in self._row_chunks(len(flat), num_samples):
            bus = bus.index_add(0, owner[rows], self._strip(flat[rows], settings[rows]))
        return bus

    def master_bus(self, bus: torch.Tensor, master_params: torch.Tensor) -> torch.Tensor:
        """Master bus: ``bus (B, 2, N)``, ``master_params (B, Pm)`` -> ``(B, 2, N)``."""
        settings = P.to_physical(master_params, self.master_specs)
        bus = self._eq(bus, settings)  # input gain + EQ
        return gain(self._compressor(bus, settings), settings[:, P.LAST])

    def forward(
        self,
        tracks: torch.Tensor,
        track_params: torch.Tensor,
        master_params: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_tracks: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Render a mix.

        Args:
            tracks: ``(B, T, N)`` mono tracks, float in [-1, 1].
            track_params: ``(B, T, P)`` in [0, 1].
            master_params: ``(B, Pm)`` in [0, 1].
            mask: optional ``(B, T)`` bool, True for real tracks; padding is silenced.
            return_tracks: also return the wet tracks ``(B, T, 2, N)`` (before the bus).

        Returns:
            mix ``(B, 2, N)`` (and the wet tracks if asked).
        """
        self._check_shapes(tracks, track_params, master_params, mask)
        if mask is not None:  # a silent track's strip outputs exact zeros (and zero gradients)
            tracks = tracks * mask.to(tracks.dtype)[..., None]
        if not return_tracks:
            return self.master_bus(self.mix_tracks(tracks, track_params), master_params)
        wet = self.process_tracks(tracks, track_params)
        return self.master_bus(wet.sum(1), master_params), wet

    def _check_shapes(self, tracks, track_params, master_params, mask) -> None:
        if tracks.dim() != 3:
            raise ValueError(f"tracks must be (batch, tracks, samples), got shape {tuple(tracks.shape)}")
        batch, num_tracks, _ = tracks.shape
        if tuple(track_params.shape) != (batch, num_tracks, self.num_track_params):
            raise ValueError(
                f"track_params must be {(batch, num_tracks, self.num_track_params)}, got {tuple(track_params.shape)}"
            )
        if tuple(master_params.shape) != (batch, self.num_master_params):
            raise ValueError(f"master_params must be {(batch, self.num_master_params)}, got {tuple(master_params.shape)}")
        if mask is not None and tuple(mask.shape) != (batch, num_tracks):
            raise ValueError(f"mask must be {(batch, num_tracks)}, got {tuple(mask.shape)}")
        for name, values in (("track_params", track_params), ("master_params", master_params)):
            _check_unit_range(name, values)


def _check_unit_range(name: str, values: torch.Tensor, tol: float = 1e-6) -> None:
    """Raise a one-line ``ValueError`` if ``values`` holds NaN or lies outside [0, 1] (give or take ``tol``).

    Outside [0, 1] the mapping to physical units extrapolates silently: u = 1.3 on a band
    frequency is above Nyquist, u = -0.5 on the ratio an expander, pan u = 1.5 inverts polarity.
    """
    if values.numel() == 0:
        return
    if torch.isnan(values).any():
        raise ValueError(f"{name} contains NaN (settings must lie in [0, 1])")
    low, high = (float(v) for v in torch.aminmax(values.detach()))
    if low < -tol or high > 1 + tol:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
