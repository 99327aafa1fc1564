"""Spectrogram encoder: one mono signal in, one embedding vector out.

Diff-MST (Vanka et al., ISMIR 2024, arXiv:2407.08889; the encoders of its
Fig. 1) encodes every input track and each channel of the reference mix
separately: a magnitude STFT (Hann window 2048, hop 512), a CNN, global pooling
and a linear layer give one ``embed_dim`` vector per signal. The model uses two
instances of this module, one for tracks and one for the reference, that share
no weights.

The compressed spectrogram is first averaged over frequency bands, a fixed
filterbank: either groups of ``freq_pool`` adjacent bins, or ``bands`` triangular
bands equally spaced on a warped scale ``log(1 + k / 16)`` of the bin index ``k``
(linear below ~170 Hz at 22.05 kHz, logarithmic above, like the mel scale), so an
octave of bass gets as many rows as an octave of treble, as in the log-mel input
of PANNs. The CNN is a
stack of blocks; each block is ``convs_per_block`` 3x3 convolutions (the first
one strided by ``strides[i]``), each followed by a normalisation and a ReLU,
then an optional average pooling by ``pools[i]``. Strides and pools are given as
``(freq, time)``. Two presets cover both ends:

* ``EncoderConfig.lite()``: 64 warped-scale bands, then six blocks of 16 ... 256
  channels (strides halve frequency three times and time five times); the 8
  remaining frequency rows are kept apart (flattened, ``freq_reduce="flatten"``),
  so the embedding knows *where* in the spectrum energy sits, which the EQ and
  the Bark-spectrum term depend on; ~1.3 M parameters, fast on a CPU.
* ``EncoderConfig.paper()``: the paper's wide encoder, shaped like the PANNs
  CNN14 used by the official Diff-MST code (6 blocks of two 3x3 convolutions,
  64 ... 2048 channels, average pooling, mean over frequency, mean + max over
  time), ~76.5 M parameters per encoder.

Magnitude compression: ``|X|^0.3`` (a power law, as in the official code),
computed as ``(re^2 + im^2 + eps)^0.15`` so it has finite gradients on digital
silence. ``log1p`` (``log(1 + |X|)``) is available as an option.
Absolute level is kept (no per-example input normalisation), because the model
needs to know how loud a track is to choose its gain. BatchNorm (the default)
keeps it in eval mode; in training mode it keeps levels relative to the batch.
GroupNorm would make the embedding almost blind to level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

Pair = tuple[int, int]


@dataclass
class EncoderConfig:
    """Configuration of a :class:`SpectrogramEncoder`.

    Attributes:
        n_fft: STFT size and Hann window length in samples (paper: 2048).
        hop_length: STFT hop in samples (paper: 512).
        compression: ``"power"`` for ``|X|**power`` or ``"log1p"`` for
            ``log(1 + |X|)``.
        power: exponent of the power-law compression.
        freq_pool: average groups of this many adjacent frequency bins before
            the CNN (1 = full resolution); used when ``bands`` is 0.
        bands: number of warped-scale triangular bands before the CNN (0 = none).
        channels: output channels of each CNN block.
        strides: ``(freq, time)`` stride of the first convolution of each block.
        pools: ``(freq, time)`` average-pooling size after each block
            (``(1, 1)`` = no pooling).
        convs_per_block: number of 3x3 convolutions per block.
        norm: ``"batch"`` (BatchNorm2d, as the official code), ``"group"``
            (GroupNorm with 8 groups; per example, but it removes the absolute
            level of the input) or ``"none"``.
        freq_reduce: ``"mean"`` over the CNN's frequency rows (PANNs style) or
            ``"flatten"`` (keep each row: channels x rows features).
        time_pool: ``"mean"`` or ``"mean+max"`` (PANNs style) over frames, after
            the frequency reduction.
        embed_dim: size ``D`` of the output embedding.

    Chapter 9: The spectrogram encoder.
    """

    n_fft: int = 2048
    hop_length: int = 512
    compression: str = "power"
    power: float = 0.3
    freq_pool: int = 4
    bands: int = 0
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256)
    strides: tuple[Pair, ...] = ((2, 2),) * 5 + ((1, 1),)
    pools: tuple[Pair, ...] = ((1, 1),) * 6
    convs_per_block: int = 1
    norm: str = "batch"
    freq_reduce: str = "mean"
    time_pool: str = "mean"
    embed_dim: int = 128

    def __post_init__(self) -> None:
        # accept lists (e.g. from JSON) and store tuples, so configs compare equal
        self.channels = tuple(int(c) for c in self.channels)
        self.strides = tuple(tuple(int(v) for v in s) for s in self.strides)
        self.pools = tuple(tuple(int(v) for v in p) for p in self.pools)
        n = len(self.channels)
        if len(self.strides) != n or len(self.pools) != n:
            raise ValueError("channels, strides and pools need one entry per block")
        if self.bands < 0 or self.bands > self.n_fft // 4:
            raise ValueError(f"bands must be in 0 ... n_fft/4, got {self.bands}")
        if self.freq_pool < 1:
            raise ValueError(f"freq_pool must be >= 1, got {self.freq_pool}")
        if self.compression not in ("power", "log1p"):
            raise ValueError(f"compression must be 'power' or 'log1p', got {self.compression!r}")
        if self.norm not in ("batch", "group", "none"):
            raise ValueError(f"norm must be 'batch', 'group' or 'none', got {self.norm!r}")
        if self.freq_reduce not in ("mean", "flatten"):
            raise ValueError(f"freq_reduce must be 'mean' or 'flatten', got {self.freq_reduce!r}")
        if self.time_pool not in ("mean", "mean+max"):
            raise ValueError(f"time_pool must be 'mean' or 'mean+max', got {self.time_pool!r}")

    @classmethod
    def lite(cls, embed_dim: int = 128) -> "EncoderConfig":
        """Small, fast encoder (~1.3 M parameters at ``embed_dim=128``)."""
        return cls(embed_dim=embed_dim, freq_pool=1, bands=64, freq_reduce="flatten",
                   strides=((2, 2), (2, 2), (2, 2), (1, 2), (1, 2), (1, 1)))

    @classmethod
    def paper(cls, embed_dim: int = 512) -> "EncoderConfig":
        """The paper-size encoder: CNN14-shaped, 64 ... 2048 channels.

        Six blocks of two 3x3 convolutions with BatchNorm and ReLU, average
        pooling (freq, time) of (2,2), (4,4), (4,2), (4,2), (4,2), (2,2), mean
        over frequency, mean + max over time, linear 2048 -> ``embed_dim``.
        """
        return cls(
            freq_pool=1,
            channels=(64, 128, 256, 512, 1024, 2048),
            strides=((1, 1),) * 6,
            pools=((2, 2), (4, 4), (4, 2), (4, 2), (4, 2), (2, 2)),
            convs_per_block=2,
            norm="batch",
            time_pool="mean+max",
            embed_dim=embed_dim,
        )


def band_filterbank(num_bins: int, bands: int, knee_bins: float = 16.0) -> torch.Tensor:
    """``(bands, num_bins)`` triangular averaging weights (rows sum to 1).

    Band centres are equally spaced on ``log(1 + k / knee_bins)`` of the bin index
    ``k``: linear in frequency below ``knee_bins`` bins, logarithmic above.
    """
    warped = torch.log1p(torch.arange(num_bins, dtype=torch.float64) / knee_bins)
    edges = torch.linspace(0.0, float(warped[-1]), bands + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (warped - lower) / (centre - lower)
    falling = (upper - warped) / (upper - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)
    nearest = (warped[None] - centre).abs().argmin(-1)  # narrow low bands: at least their nearest bin
    weights[torch.arange(bands), nearest] = weights[torch.arange(bands), nearest].clamp_min(1.0)
    return (weights / weights.sum(-1, keepdim=True)).float()


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class ConvBlock(nn.Module):
    """``n_convs`` x (3x3 conv -> norm -> ReLU), the first strided, then avg-pool.

    Input ``(B, C_in, F, T)``, output ``(B, C_out, F', T')`` with
    ``F' = ceil(ceil(F / stride_f) / pool_f)`` (same for ``T``).
    """

    def __init__(self, c_in: int, c_out: int, stride: Pair, pool: Pair, n_convs: int, norm: str):
        super().__init__()
        layers = []
        for i in range(n_convs):
            layers += [
                nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel_size=3,
                          stride=stride if i == 0 else 1, padding=1, bias=(norm == "none")),
                _norm(norm, c_out),
                nn.ReLU(inplace=True),
            ]
        self.layers = nn.Sequential(*layers)
        self.pool = tuple(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        if self.pool != (1, 1):
            # ceil_mode: a short input still gives at least one output cell
            x = F.avg_pool2d(x, self.pool, ceil_mode=True)
        return x


class SpectrogramEncoder(nn.Module):
    """Mono waveform ``(B, N)`` -> embedding ``(B, D)`` (the Diff-MST encoder).

    Steps: STFT (Hann ``n_fft``, hop ``hop_length``, centred, zero padded) ->
    compressed magnitude ``(B, 1, n_fft//2+1, frames)`` -> fixed filterbank
    (``bands`` or ``freq_pool``) -> CNN blocks -> mean over (or flattening of)
    frequency -> mean (or mean + max) over frames -> linear -> ``(B, D)``.
    Input is float audio in [-1, 1] at any sample rate (the encoder does not
    need it); any length ``N >= 1`` works.

    Chapter 9: The spectrogram encoder.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        if config.bands:
            self.register_buffer("filterbank", band_filterbank(config.n_fft // 2 + 1, config.bands), persistent=False)
        blocks = []
        c_in = 1
        for c_out, stride, pool in zip(config.channels, config.strides, config.pools):
            blocks.append(ConvBlock(c_in, c_out, stride, pool, config.convs_per_block, config.norm))
            c_in = c_out
        # channels-last: oneDNN's convolutions and their backward are about 1.2x faster
        # in that layout on a CPU (benchmarks/README.md); the weights' values are the same
        self.blocks = nn.Sequential(*blocks).to(memory_format=torch.channels_last)
        rows = self.output_rows() if config.freq_reduce == "flatten" else 1
        self.proj = nn.Linear(c_in * rows, config.embed_dim)

    def output_rows(self) -> int:
        """Frequency rows ``F'`` the CNN leaves of the ``n_fft//2 + 1`` bins."""
        c = self.config
        rows = c.bands or -(-(c.n_fft // 2 + 1) // c.freq_pool)
        for stride, pool in zip(c.strides, c.pools):
            rows = -(-(-(-rows // stride[0])) // pool[0])  # ceil(ceil(F / stride) / pool)
        return rows

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """Compressed magnitude spectrogram ``(B, 1, n_fft//2 + 1, frames)``.

        ``frames = N // hop_length + 1``. Values are ``|X|**power`` (or
        ``log1p(|X|)``) of the unnormalised STFT, so a full-scale sine gives
        ``|X| ~ n_fft / 4``.
        """
        c = self.config
        X = torch.stft(x, n_fft=c.n_fft, hop_length=c.hop_length, window=self.window,
                       center=True, pad_mode="constant", return_complex=True)
        power = X.real.square() + X.imag.square() + 1e-10  # |X|^2, floored: finite on silence
        if c.compression == "power":  # |X|^p = exp(p/2 log |X|^2): 1.4x faster than pow on a CPU
            S = torch.exp(torch.log(power) * (c.power / 2))
        else:
            S = torch.log1p(power.sqrt())
        return S.unsqueeze(1)

    def bands(self, S: torch.Tensor) -> torch.Tensor:
        """The fixed filterbank: ``(B, 1, n_fft//2 + 1, frames)`` -> ``(B, 1, rows, frames)``."""
        if self.config.bands:
            return torch.einsum("kf,bcft->bckt", self.filterbank, S)
        if self.config.freq_pool > 1:
            return F.avg_pool2d(S, (self.config.freq_pool, 1), ceil_mode=True)
        return S

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed mono signals ``x (B, N)`` -> ``(B, embed_dim)``."""
        if x.dim() != 2:
            raise ValueError(f"SpectrogramEncoder expects mono audio (B, N), got {tuple(x.shape)}")
        S = self.spectrogram(x)  # (B, 1, n_fft//2 + 1, frames)
        S = self.bands(S)
        h = self.blocks(S.contiguous(memory_format=torch.channels_last))  # (B, C, F', T')
        h = h.flatten(1, 2) if self.config.freq_reduce == "flatten" else h.mean(dim=2)  # (B, C or C*F', T')
        if self.config.time_pool == "mean+max":
            h = h.mean(dim=-1) + h.amax(dim=-1)
        else:
            h = h.mean(dim=-1)
        return self.proj(h)
