"""RBJ Audio EQ Cookbook biquads, the six-band parametric EQ and BS.1770 K-weighting (docs/design.md §4)."""

from __future__ import annotations

import functools
import math

import torch

from diffmst_lite.dsp.compiled import compiled_loops
from diffmst_lite.dsp.fftconv import fast_fft_length, fft_convolve
from diffmst_lite.dsp.decibels import db_to_amplitude, gain

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

    Chapter 3: Parametric EQ.
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
    """Complex response ``(batch, len(omega))`` of one biquad per batch item at ``omega`` (rad/sample).

    Chapter 3: Parametric EQ.
    """
    b, a = biquad_coefficients(band_type, freq_hz, gain_db, q, sample_rate)
    cos1, cos2, sin1, sin2 = torch.cos(omega), torch.cos(2 * omega), torch.sin(omega), torch.sin(2 * omega)

    def on_unit_circle(c: torch.Tensor) -> torch.Tensor:  # c0 + c1 z^-1 + c2 z^-2 at z = e^{j omega}
        c0, c1, c2 = (c[:, i : i + 1] for i in range(3))
        return torch.complex(c0 + c1 * cos1 + c2 * cos2, -(c1 * sin1 + c2 * sin2))

    return on_unit_circle(b) / on_unit_circle(a)
EQ_IMPULSE_SECONDS = 0.85  # length of the EQ's impulse response
FLOAT32_BAND_HZ = 1000.0  # bands at or above this frequency: float32 responses are accurate enough
BACKWARD_CHUNK_BINS = 2048  # frequencies per step of the EQ response's backward (:class:`_CascadeResponse`)


def impulse_length(seconds: float, sample_rate: float) -> int:
    """An even fast FFT size of at least ``seconds``: an impulse response read off a
    frequency response sampled from 0 to fs/2 by ``irfft`` (an odd length would put
    the last bin below fs/2 and every bin off the grid)."""
    return 2 * fast_fft_length(math.ceil(seconds * sample_rate / 2))


def eq_impulse_length(sample_rate: float) -> int:
    """Length (samples) of the EQ's impulse response: 0.85 s, rounded up to a fast FFT size.

    The bands' ranges are the same in Hz at every rate, so the length is a duration:
    long enough for the lowest band (a 20 Hz shelf at Q 5, whose ringing would
    otherwise wrap around; at 0.68 s it missed by 0.23 dB). tests/test_accuracy.py
    checks 0.1 dB at 22.05, 44.1, 48 and 96 kHz (worst measured: 0.025 dB).
    """
    return impulse_length(EQ_IMPULSE_SECONDS, sample_rate)


@functools.lru_cache(maxsize=16)
def _unit_circle_table(num_bins: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, cos w, cos 2w)`` and ``(sin w, sin 2w)`` on ``num_bins`` frequencies w from 0 to pi:
    the real and (negated) imaginary parts of ``z^0, z^-1, z^-2`` on the unit circle. Cached:
    every EQ call at one rate evaluates its biquads on the same grid."""
    omega = torch.linspace(0, math.pi, num_bins, dtype=dtype, device=device)
    real = torch.stack([torch.ones_like(omega), torch.cos(omega), torch.cos(2 * omega)])
    return real, torch.stack([torch.sin(omega), torch.sin(2 * omega)])


def _product(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The product over axis 1 of complex factors given as real and imaginary parts ``(batch, k, bins)``."""
    re, im = real[:, 0], imag[:, 0]
    for k in range(1, real.shape[1]):
        re, im = re * real[:, k] - im * imag[:, k], re * imag[:, k] + im * real[:, k]
    return re, im


class _CascadeResponse(torch.autograd.Function):
    """``prod_k B_k / prod_k A_k`` on the unit circle from the biquads' real coefficients,
    with a hand-written backward, all in real arithmetic.

    Autograd through a chain of complex products and a complex division keeps,
    conjugates and stacks every partial product (fwd+bwd of the console's 36 EQs at
    22.05 kHz was about a fifth of a training step). The response is holomorphic in
    each factor: ``dH/dB_k = H / B_k`` and ``dH/dA_k = -H / A_k``, so PyTorch's gradient
    of factor ``V_k`` is ``+-grad * conj(H) / conj(V_k) = +-grad * conj(H) * V_k / |V_k|^2``,
    and two real matrix products take it back to the coefficients. The backward runs in
    float32 for both band groups of :func:`eq_frequency_response` (the float64 group
    needs float64 for the values near 0 Hz, not for their gradient) and over 2048 bins at
    a time, so that its temporaries stay in cache: the response of a training step's 36
    EQs at 22.05 kHz with its inverse FFT, fwd+bwd, went from 96-117 to 61-69 ms
    (benchmarks/README.md). Checked against autograd through each band's complex
    response in float64 in tests/test_gradients.py. On the CPU the console's EQ now
    gets its impulse response by recursion instead (:class:`_CascadeImpulse`, faster
    still); this serves other devices and :func:`eq_frequency_response`.
    """

    @staticmethod
    def forward(ctx, coefficients, real_table, imag_table, num_bands):
        # (batch, 2 * bands, bins): every numerator, then every denominator, on the grid
        real, imag = coefficients @ real_table, (coefficients[..., 1:] @ imag_table).neg_()
        num_re, num_im = _product(real[:, :num_bands], imag[:, :num_bands])
        den_re, den_im = _product(real[:, num_bands:], imag[:, num_bands:])
        power = den_re.square() + den_im.square()
        response_re = (num_re * den_re + num_im * den_im) / power
        response_im = (num_im * den_re - num_re * den_im) / power
        ctx.save_for_backward(real, imag, response_re, response_im, real_table, imag_table)
        ctx.num_bands = num_bands
        return torch.complex(response_re, response_im)

    @staticmethod
    def backward(ctx, grad):
        real, imag, response_re, response_im, real_table, imag_table = ctx.saved_tensors
        grad = grad.to(torch.complex64)
        sign = torch.ones(real.shape[1], 1, device=real.device)
        sign[ctx.num_bands:] = -1  # denominators: dH/dA = -H/A
        grad_coefficients = torch.zeros(*real.shape[:2], 3, device=real.device)
        for start in range(0, real.shape[-1], BACKWARD_CHUNK_BINS):  # temporaries that stay in cache
            bins = slice(start, start + BACKWARD_CHUNK_BINS)
            g = grad[:, bins]
            re, im, h_re, h_im = (t[..., bins].float() for t in (real, imag, response_re, response_im))
            # grad * conj(H), then times V_k / |V_k|^2 for every factor k
            weight_re = (g.real * h_re + g.imag * h_im).unsqueeze(1) * sign
            weight_im = (g.imag * h_re - g.real * h_im).unsqueeze(1) * sign
            power = re.square() + im.square()
            by_re = (weight_re * re - weight_im * im).div_(power)
            by_im = (weight_re * im + weight_im * re).div_(power)
            grad_coefficients += by_re @ real_table[:, bins].float().T
            grad_coefficients[..., 1:] -= by_im @ imag_table[:, bins].float().T
        return grad_coefficients.to(real.dtype), None, None, None


def _cascade_coefficients(
    band_types: list[str] | tuple[str, ...], freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor,
    sample_rate: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``b, a``: ``(batch, bands, 3)`` each, the coefficients of the biquads ``band_types``
    with settings ``(batch, bands)`` (not normalised by a0; see :func:`biquad_coefficients`)."""
    b, a = zip(*(biquad_coefficients(kind, freq_hz[:, i], gain_db[:, i], q[:, i], sample_rate)
                 for i, kind in enumerate(band_types)))
    return torch.stack(b, 1), torch.stack(a, 1)


def _cascade_response(
    band_types: list[str], freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float,
    num_bins: int,
) -> torch.Tensor:
    """Complex response ``(batch, num_bins)`` of the biquads ``band_types`` in series, in the dtype of ``freq_hz``.

    All numerators and denominators are evaluated on the grid by two matrix products,
    multiplied together, and divided once: ``prod(B_k) / prod(A_k)`` (:class:`_CascadeResponse`).
    """
    b, a = _cascade_coefficients(band_types, freq_hz, gain_db, q, sample_rate)
    coefficients = torch.cat([b, a], 1)  # (batch, 2 * bands, 3): numerators, then denominators
    real_table, imag_table = _unit_circle_table(num_bins, freq_hz.dtype, freq_hz.device)
    return _CascadeResponse.apply(coefficients, real_table, imag_table, len(band_types))


def eq_frequency_response(
    freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float, num_bins: int
) -> torch.Tensor:
    """Complex response of the six-band EQ on ``num_bins`` frequencies from 0 to fs/2.

    Args:
        freq_hz, gain_db, q: ``(batch, 6)``; bands in the order of ``params.BAND_TYPES``.

    Returns:
        ``(batch, num_bins)`` complex128. Bands with a row below :data:`FLOAT32_BAND_HZ`
        are computed in float64: at 20 Hz the biquad's terms cancel to ~1e-5 and float32
        would lose the low end. Bands wholly above it are computed in float32 (twice
        as fast; within 2e-4 dB of float64 at 44.1-96 kHz).

    Chapter 3: Parametric EQ.
    """
    low = [bool(freq_hz[:, band].min() < FLOAT32_BAND_HZ) for band in range(len(BAND_TYPES))]
    response = None
    for dtype, bands in ((torch.float64, [i for i in range(len(BAND_TYPES)) if low[i]]),
                         (torch.float32, [i for i in range(len(BAND_TYPES)) if not low[i]])):
        if not bands:
            continue
        h = _cascade_response([BAND_TYPES[i] for i in bands], freq_hz[:, bands].to(dtype), gain_db[:, bands].to(dtype),
                              q[:, bands].to(dtype), sample_rate, num_bins).to(torch.complex128)
        response = h if response is None else response * h
    return response


class _CascadeImpulse(torch.autograd.Function):
    """The impulse response ``(rows, length)`` of biquads in series from their coefficients
    ``b, a (rows, stages, 3)`` (normalised, ``a[..., 0] == 1``), by running them on a unit
    impulse in float64; the backward is the adjoint recursion (:mod:`.biquad_loops`).
    Checked with ``gradcheck`` and against the frequency-sampled response in tests/test_gradients.py.
    """

    @staticmethod
    def forward(ctx, b, a, length):
        b, a = (t.detach().double().contiguous().numpy() for t in (b, a))
        signals = compiled_loops("biquad_loops").impulse_response(b, a, length)
        ctx.arrays = b, a, signals
        return torch.from_numpy(signals[:, -1, 2:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        b, a, signals = ctx.arrays
        grad = grad.double().contiguous().numpy()
        grad_b, grad_a = compiled_loops("biquad_loops").impulse_response_backward(b, a, signals, grad)
        return torch.from_numpy(grad_b), torch.from_numpy(grad_a), None


def eq_impulse_response(
    freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float, length: int
) -> torch.Tensor:
    """The six-band EQ's impulse response, its first ``length`` samples.

    Args:
        freq_hz, gain_db, q: ``(batch, 6)``; bands in the order of ``params.BAND_TYPES``.

    Returns:
        ``(batch, length)`` float64. On the CPU the six biquads run on a unit impulse
        (:class:`_CascadeImpulse`): exact up to ``length``. On other devices (numba's
        loops read CPU memory only) :func:`_sampled_impulse_response`: the same up to the
        tail beyond ``length``, which it folds onto the start (tests/test_accuracy.py
        bounds both at 0.1 dB of the exact response).

    Chapter 3: Parametric EQ.
    """
    if freq_hz.device.type != "cpu":
        return _sampled_impulse_response(freq_hz, gain_db, q, sample_rate, length)
    return _CascadeImpulse.apply(*_normalised_coefficients(freq_hz, gain_db, q, sample_rate), length)


def _normalised_coefficients(
    freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The six bands' ``b, a``: ``(batch, 6, 3)`` float64 each, divided by ``a0``, for the
    loops of :mod:`.biquad_loops` (in float64: at 20 Hz the coefficients' terms cancel to ~1e-5)."""
    b, a = _cascade_coefficients(BAND_TYPES, freq_hz.double(), gain_db.double(), q.double(), sample_rate)
    a0 = a[..., :1]
    return b / a0, a / a0


def _filter_by_biquads(
    x: torch.Tensor, sample_rate: float, freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor,
    level_db: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`parametric_eq` without gradients on the CPU: the six biquads run on ``x (batch,
    channels, samples)`` itself (:func:`.biquad_loops.cascade_filter`), ``level_db`` folded
    into the first one's numerator."""
    batch, channels, samples = x.shape
    b, a = _normalised_coefficients(freq_hz, gain_db, q, sample_rate)
    rows = max(len(b), batch)  # settings or audio of batch 1 apply to every row of the other
    b, a = b.expand(rows, -1, -1).clone(), a.expand(rows, -1, -1)
    if level_db is not None:
        b[:, 0] *= db_to_amplitude(level_db.double()).reshape(-1, 1)
    b, a = (t.repeat_interleave(channels, 0).numpy() for t in (b, a))  # a row per channel
    y = compiled_loops("biquad_loops").cascade_filter(b, a, x.expand(rows, -1, -1).reshape(-1, samples).contiguous().numpy())
    return torch.from_numpy(y).view(rows, channels, samples)


def _sampled_impulse_response(
    freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float, length: int
) -> torch.Tensor:
    """:func:`eq_impulse_response` as the inverse FFT of the EQ's response sampled on
    ``length // 2 + 1`` frequencies (:func:`eq_frequency_response`): ``(batch, length)`` float64."""
    return torch.fft.irfft(eq_frequency_response(freq_hz, gain_db, q, sample_rate, length // 2 + 1), n=length)


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
        ``(batch, channels, samples)``. With gradients (or off the CPU) the bands' joint
        impulse response (:func:`eq_impulse_response`, 0.85 s) by FFT convolution;
        without (rendering, on the CPU) the biquads themselves, in float64 state: the
        same up to the response's tail beyond 0.85 s, and faster on long audio.

    Chapter 3: Parametric EQ.
    """
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, freq_hz, gain_db, q, level_db))
    if x.device.type == "cpu" and not needs_grad:
        return _filter_by_biquads(x, sample_rate, freq_hz, gain_db, q, level_db)
    impulse = eq_impulse_response(freq_hz, gain_db, q, sample_rate, eq_impulse_length(sample_rate)).to(x.dtype)
    if level_db is not None:
        impulse = gain(impulse, level_db)
    return fft_convolve(x, impulse)


def k_weighting_response(sample_rate: float, num_bins: int, device=None) -> torch.Tensor:
    """Complex response ``(num_bins,)`` of the BS.1770 K-weighting filter on frequencies 0..fs/2 (complex128).

    The pre-filter (high shelf, +4 dB above ~1.5 kHz) and RLB high-pass (38 Hz),
    with the parameters pyloudnorm uses.
    """
    omega = torch.linspace(0, math.pi, num_bins, dtype=torch.float64, device=device)
    one = torch.ones(1, dtype=torch.float64, device=device)
    shelf = biquad_response("high_shelf", 1500.0 * one, 4.0 * one, one / math.sqrt(2), sample_rate, omega)
    high_pass = biquad_response("high_pass", 38.0 * one, 0.0 * one, 0.5 * one, sample_rate, omega)
    return (shelf * high_pass)[0]


def k_weighting_power(sample_rate: float, num_bins: int, device=None) -> torch.Tensor:
    """|K(f)|^2 of the BS.1770 K-weighting filter on ``num_bins`` frequencies 0..fs/2 (float64)."""
    return k_weighting_response(sample_rate, num_bins, device).abs().square()


K_WEIGHTING_SECONDS = 0.25  # impulse length: the 38 Hz high-pass (Q 0.5) has decayed below 1e-9 of its peak


def k_weighting(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """K-weight ``x (channels, samples)``: the two BS.1770 biquads as one FIR of their
    impulse response (0.25 s), applied by FFT convolution. Same dtype out.
    """
    length = impulse_length(K_WEIGHTING_SECONDS, sample_rate)
    impulse = torch.fft.irfft(k_weighting_response(sample_rate, length // 2 + 1, x.device), n=length)
    return fft_convolve(x[None], impulse[None].to(x.dtype))[0]


BAND_TYPES = ("low_shelf", "peaking", "peaking", "peaking", "peaking", "high_shelf")
