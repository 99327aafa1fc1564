"""The paper's console, built from dasp-pytorch's functional effects: :class:`DaspConsole`.

The reference implementation of Diff-MST (Vanka et al., ISMIR 2024) renders its
mixes with the effects of dasp-pytorch 0.0.1 (``dasp_pytorch.functional``: ``gain``,
``parametric_eq``, ``compressor``, ``stereo_panner``). This module chains them in
the order of :class:`~diffmst_lite.console.mixer.MixingConsole`, with the same
parameter layout and ranges (:mod:`diffmst_lite.console.params`), so that one mixing
sheet renders through both and chapter 5 can compare them. It needs the optional
dependency ``dasp-pytorch`` (``pip install diffmst-lite[dasp]``) and is not imported
by ``diffmst_lite.console``.

What maps, and what does not (docs/design.md §8):

- gain, input and output gain: the same (a gain in dB);
- EQ: the same six RBJ cookbook biquads (low shelf, four peaking bands, high
  shelf) with the same frequency, gain and Q. dasp filters by one FFT of the whole
  signal (``sosfilt_via_fsm``, size about twice the input) instead of our 0.85 s
  impulse response, so the two agree except for the IIR tail;
- compressor: threshold, ratio, soft knee and makeup mean the same, but dasp
  detects the level of every *sample* (``|x|`` in dB, no RMS detector), sums the
  channels of a stereo bus for its side chain (L + R: +6 dB for centred material,
  where ours averages the power), reads ``attack_ms`` as a 10-90 % rise time
  (ours: a time constant, 2.2 times slower for the same number) and ignores
  ``release_ms`` (no release ballistics at all);
- pan: the same -4.5 dB law, ``pan_dasp = (pan + 1) / 2``, but written with a square
  root whose gradient is NaN at hard left and hard right (``pan = ±1``).

Chapter 5: The master bus and the whole console.
"""

from __future__ import annotations

import dasp_pytorch.functional as dasp
import torch

from diffmst_lite.console import params
from diffmst_lite.console.mixer import ConsoleLayout


class DaspConsole(ConsoleLayout):
    """Tracks + settings in [0, 1] -> stereo mix, with dasp-pytorch 0.0.1's effects.

    Per track: gain -> six-band parametric EQ -> compressor -> stereo panner, summed
    to a stereo bus -> input gain -> EQ -> compressor (side chain L + R) -> output
    gain. Same call as :class:`~diffmst_lite.console.mixer.MixingConsole` (without
    ``mask`` and ``return_tracks``); differences are listed in the module docstring.

    Args:
        sample_rate: Hz.
    """

    def _eq(self, x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        """dasp's parametric EQ, its 18 arguments in its order (gain, frequency, Q per band)."""
        bands = torch.stack([settings[:, params.EQ_GAIN], settings[:, params.EQ_FREQ], settings[:, params.EQ_Q]], -1)
        return dasp.parametric_eq(x, self.sample_rate, *bands.flatten(1).unbind(-1))

    def _compressor(self, x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
        threshold, ratio, attack, release, knee, makeup = settings[:, params.COMPRESSOR].unbind(-1)
        return dasp.compressor(x, self.sample_rate, threshold, ratio, attack, release, knee, makeup)

    def forward(self, tracks: torch.Tensor, track_params: torch.Tensor, master_params: torch.Tensor) -> torch.Tensor:
        """Render a mix.

        Args:
            tracks: ``(B, T, N)`` mono tracks, float in [-1, 1].
            track_params: ``(B, T, 26)`` in [0, 1] (layout of :func:`params.track_param_specs`).
            master_params: ``(B, 26)`` in [0, 1] (layout of :func:`params.master_param_specs`).

        Returns:
            The mix, ``(B, 2, N)``.
        """
        batch, num_tracks, num_samples = tracks.shape
        strip = params.to_physical(track_params, self.track_specs).reshape(batch * num_tracks, -1)
        x = dasp.gain(tracks.reshape(batch * num_tracks, 1, num_samples), self.sample_rate, strip[:, params.GAIN])
        x = self._compressor(self._eq(x, strip), strip)
        pan = (strip[:, params.PAN].reshape(batch, num_tracks) + 1) / 2  # [-1, 1] -> [0, 1]
        bus = dasp.stereo_panner(x.reshape(batch, num_tracks, num_samples), self.sample_rate, pan).sum(2)
        master = params.to_physical(master_params, self.master_specs)
        bus = self._eq(dasp.gain(bus, self.sample_rate, master[:, params.GAIN]), master)
        return dasp.gain(self._compressor(bus, master), self.sample_rate, master[:, params.GAIN_OUT])
