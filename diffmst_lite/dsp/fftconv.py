"""FFT convolution for long filters and long audio (used by the console's EQ).

One FFT per short signal; for a whole song, overlap-add of ~131k-point blocks,
which stay in cache (a 3-minute song renders ~3x faster than with one huge FFT).
"""

from __future__ import annotations

import torch


class _RealFFT(torch.autograd.Function):
    """``torch.fft.rfft(x, n)`` (``n >= x.shape[-1]``) whose backward is one inverse real FFT.

    PyTorch's backward of ``rfft`` pads the gradient to a full spectrum and runs a
    complex FFT of length ``n``. The adjoint of the one-sided transform is also a real
    inverse FFT: with PyTorch's gradient ``G`` of the spectrum,
    ``dL/dx[t] = Re sum_k G[k] exp(2 pi i k t / n) = n * irfft(W G)[t]``, where ``W`` is 1
    at DC (and at Nyquist for even ``n``) and 1/2 elsewhere, because ``irfft`` counts
    every other bin twice. Same values, about half the work.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int) -> torch.Tensor:
        ctx.n, ctx.length = n, x.shape[-1]
        return torch.fft.rfft(x, n=n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        n = ctx.n
        weight = torch.full((grad.shape[-1],), 0.5, dtype=grad.real.dtype, device=grad.device)
        weight[0] = 1.0
        if n % 2 == 0:
            weight[-1] = 1.0
        return n * torch.fft.irfft(grad * weight, n=n)[..., :ctx.length], None


def real_fft(x: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """``torch.fft.rfft(x, n=n)`` along the last axis, zero-padded to ``n`` samples (``n >= x.shape[-1]``),
    with a backward that costs one ``irfft`` instead of a complex FFT (:class:`_RealFFT`)."""
    n = x.shape[-1] if n is None else n
    if n < x.shape[-1]:
        raise ValueError(f"real_fft pads, it does not truncate: n = {n} < {x.shape[-1]} samples")
    return _RealFFT.apply(x, n) if x.requires_grad else torch.fft.rfft(x, n=n)


def fast_fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes the FFT handles fastest)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal linear convolution of ``x (batch, C, N)`` with ``h (batch, L)``, cut to N samples.

    Short signals take one FFT. Long ones are cut into blocks that are convolved
    separately and overlap-added (a block's tail of ``L`` samples runs into the
    next block): the same result, but FFTs of ~131k points stay in cache where one
    FFT of a whole song would not (a 3-minute song renders ~3x faster).
    """
    n, taps = x.shape[-1], h.shape[-1]
    size = 4 * (1 << (taps - 1).bit_length())
    block = size - taps
    if n <= 2 * block:  # up to two blocks, one FFT of the whole signal is faster (measured)
        size = fast_fft_length(n + taps - 1)
        spectrum = real_fft(x, size) * real_fft(h, size).unsqueeze(1)
        return torch.fft.irfft(spectrum, n=size)[..., :n]
    frames = -(-n // block)
    blocks = torch.nn.functional.pad(x, (0, frames * block - n)).unflatten(-1, (frames, block))
    spectrum, response = real_fft(blocks, size), real_fft(h, size)[:, None, None, :]
    # in place where no gradient needs the operands (rendering): one song-sized complex tensor fewer
    spectrum = spectrum * response if spectrum.requires_grad or response.requires_grad else spectrum.mul_(response)
    out = torch.fft.irfft(spectrum, n=size)  # (batch, C, frames, size): block + tail of `taps`
    mixed = out[..., :block].clone()
    mixed[..., 1:, :taps] += out[..., :-1, block:]  # each block's tail runs into the next block
    return mixed.flatten(-2)[..., :n]
