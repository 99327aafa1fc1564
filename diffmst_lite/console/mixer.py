"""The differentiable mixing console of Diff-MST (Vanka et al., ISMIR 2024): :class:`MixingConsole`.

It chains the effects of :mod:`diffmst_lite.dsp` with the settings of the parameter
table (:mod:`diffmst_lite.console.params`): per track gain -> 6-band parametric EQ ->
compressor -> panner, summed to a stereo bus -> input gain -> stereo EQ ->
stereo-linked compressor -> output gain. Chapter 5: The master bus and the console.

Differences from the reference implementation, on purpose (docs/design.md §4):

- The EQ is six RBJ "Audio EQ Cookbook" biquads whose joint impulse response (0.85 s,
  from running them on a unit impulse) is applied by one FFT convolution. That is
  the exact IIR response up to the (tiny) tail beyond 0.85 s, at a fraction of the
  cost of filtering with full-length FFTs per band. Rendering without gradients on
  the CPU runs the biquads on the audio instead (exact, and faster).
- The compressor has an RMS level detector and working attack *and* release
  (gain smoothing with torchcomp's differentiable recursion, Yu & Fazekas 2024).
- The pan law is -4.5 dB at centre, written so its gradient is finite at hard
  left and hard right.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from diffmst_lite.console import params
from diffmst_lite.dsp.biquads import eq_impulse_length, parametric_eq
from diffmst_lite.dsp.decibels import gain
from diffmst_lite.dsp.dynamics import compressor
from diffmst_lite.dsp.panning import pan, pan_gains
from diffmst_lite.dsp.threads import thread_map

CHUNK_BYTES = 24 * 2**20  # channel strips run in chunks whose temporaries stay below glibc's 32 MB mmap threshold


# ----------------------------------------------------------------------- console


class ConsoleLayout(nn.Module):
    """What every console of this package shares: a sample rate and the parameter
    layout of :mod:`diffmst_lite.console.params` (``track_specs``, ``master_specs``).
    It has no trainable weights; it is an ``nn.Module`` so it moves with ``.to(device)``."""

    def __init__(self, sample_rate: float):
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.track_specs = params.track_param_specs(sample_rate)
        self.master_specs = params.master_param_specs(sample_rate)

    @property
    def num_track_params(self) -> int:
        return len(self.track_specs)

    @property
    def num_master_params(self) -> int:
        return len(self.master_specs)


class MixingConsole(ConsoleLayout):
    """The differentiable mixing console: tracks + settings in [0, 1] -> stereo mix.

    Per track: gain -> parametric EQ -> compressor -> panner; master bus:
    input gain -> stereo EQ -> stereo-linked compressor -> output gain. Parameter
    ranges and vector layouts: :mod:`diffmst_lite.console.params`. The console has no
    trainable weights; it is an ``nn.Module`` so it moves with ``.to(device)``.

    Chapter 5: The master bus and the whole console.
    """

    def _eq(self, x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        """The EQ with the strip's (or bus's input) gain folded into it."""
        return parametric_eq(x, self.sample_rate, settings[:, params.EQ_FREQ], settings[:, params.EQ_GAIN],
                             settings[:, params.EQ_Q], level_db=settings[:, params.GAIN])

    def _compressor(self, x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        return compressor(x, self.sample_rate, *settings[:, params.COMPRESSOR].unbind(-1))

    def _mono_strip(self, tracks: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        """Channel strips before the panner: mono ``tracks (R, N)``, physical ``settings (R, P)`` -> ``(R, N)``."""
        return self._compressor(self._eq(tracks[:, None], settings), settings)[:, 0]  # gain + EQ, compressor

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
        settings = params.to_physical(track_params, self.track_specs).reshape(batch * num_tracks, -1)
        flat = tracks.reshape(batch * num_tracks, num_samples)
        wet = [pan(self._mono_strip(flat[rows], settings[rows]), settings[rows, params.PAN])
               for rows in self._row_chunks(len(flat), num_samples)]
        return torch.cat(wet).reshape(batch, num_tracks, 2, num_samples)

    def mix_tracks(self, tracks: torch.Tensor, track_params: torch.Tensor) -> torch.Tensor:
        """The stereo bus, the sum of the channel strips: ``(B, T, N)``, ``(B, T, P)`` -> ``(B, 2, N)``.

        The same as ``process_tracks(...).sum(1)``, but the strips run in chunks (see
        :meth:`_row_chunks`) and only the bus is kept, so long inputs need no large
        temporaries. Panning and summing are one matrix product per chunk: the bus's
        ``2B`` channels from the chunk's mono strips, through a routing matrix of pan
        gains (no stereo copy of the strips, forward or backward).
        """
        batch, num_tracks, num_samples = tracks.shape
        settings = params.to_physical(track_params, self.track_specs).reshape(batch * num_tracks, -1)
        flat = tracks.reshape(batch * num_tracks, num_samples)
        owner = torch.eye(batch, dtype=tracks.dtype, device=tracks.device).repeat_interleave(num_tracks, 0)  # (R, B)
        bus = tracks.new_zeros(batch * 2, num_samples)  # (left, right) of each song
        chunks = self._row_chunks(len(flat), num_samples)
        # rendering (no gradients): the strips on several threads, so that the compressor's
        # per-sample loops keep both cores busy (1.2x for a 3-minute 8-track song,
        # benchmarks/README.md); summed in chunk order whatever the threads: the same mix
        strips = thread_map(lambda rows: self._mono_strip(flat[rows], settings[rows]), chunks,
                            parallel=not torch.is_grad_enabled())
        for rows, mono in zip(chunks, strips):
            gains = torch.stack(pan_gains(settings[rows, params.PAN]), -1)  # (rows, 2)
            routing = (owner[rows, :, None] * gains[:, None, :]).flatten(1)  # (rows, 2B): strip -> bus channel
            bus.addmm_(routing.T, mono)
        return bus.unflatten(0, (batch, 2))

    def master_bus(self, bus: torch.Tensor, master_params: torch.Tensor) -> torch.Tensor:
        """Master bus: ``bus (B, 2, N)``, ``master_params (B, Pm)`` -> ``(B, 2, N)``."""
        settings = params.to_physical(master_params, self.master_specs)
        bus = self._eq(bus, settings)  # input gain + EQ
        return gain(self._compressor(bus, settings), settings[:, params.GAIN_OUT])

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
