"""The Diff-MST model: two encoders, a transformer controller and a mixing console.

Diff-MST (Vanka, Steinmetz, Rolland, Reiss, Fazekas, ISMIR 2024,
arXiv:2407.08889, Fig. 1): every mono input track is embedded by a track
encoder, each channel of the stereo reference mix by a separate reference
encoder; a transformer controller turns the embeddings into channel-strip and
master-bus parameters in [0, 1]; a differentiable mixing console renders the
mix with them. Training back-propagates a loss on the mix through the console
into the network.

Two presets:

* :meth:`DiffMST.lite` (~3.3 M parameters): 128-d embeddings, strided CNN
  encoders, 4-layer 4-head transformer; trains on a laptop CPU. The shipped
  checkpoint is this preset with its controller grown to 8 layers (:meth:`DiffMST.grown`).
* :meth:`DiffMST.paper` (~191 M parameters): the paper's sizes, 512-d
  embeddings, CNN14-shaped encoders (64 ... 2048 channels) and a 12-layer 8-head
  transformer with feed-forward width 2048.

Checkpoints are plain dictionaries ``{"config": dict, "model": state_dict, ...}``
written by :meth:`DiffMST.save_checkpoint` and read by :func:`read_checkpoint`
(``torch.load(path, weights_only=True)``); a training run's checkpoints add the
optimiser, step and RNG states (:mod:`diffmst_lite.training.rundir`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from diffmst_lite.model.controller import ControllerConfig, TransformerController
from diffmst_lite.model.descriptors import style_descriptors
from diffmst_lite.model.encoder import EncoderConfig, SpectrogramEncoder
from diffmst_lite.files.atomic import atomic_path


@dataclass
class DiffMSTConfig:
    """Everything needed to rebuild a :class:`DiffMST`.

    Attributes:
        sample_rate: audio sample rate in Hz (the console needs it).
        encoder: configuration shared by the track and the reference encoder
            (two instances, separate weights).
        controller: transformer configuration; its ``d_model`` must equal
            ``encoder.embed_dim``. ``num_track_params`` / ``num_master_params``
            are filled in from the console when left at None.
    """

    sample_rate: int = 44100
    encoder: EncoderConfig = field(default_factory=EncoderConfig.lite)
    controller: ControllerConfig = field(default_factory=ControllerConfig.lite)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiffMSTConfig":
        """Inverse of ``dataclasses.asdict`` (lists from JSON are accepted).

        Every field must be there: a missing or unknown one is a ``ValueError`` that
        names it (a config that predates a field is not guessed at).
        """
        for name, kind, values in (("top level", cls, d), ("encoder", EncoderConfig, d.get("encoder", {})),
                                   ("controller", ControllerConfig, d.get("controller", {}))):
            fields = {f.name for f in dataclasses.fields(kind)}
            missing, unknown = sorted(fields - set(values)), sorted(set(values) - fields)
            if missing or unknown:
                raise ValueError(f"model config: {name} misses {missing} / has unknown {unknown}")
        return cls(sample_rate=int(d["sample_rate"]), encoder=EncoderConfig(**d["encoder"]),
                   controller=ControllerConfig(**d["controller"]))


DESCRIPTOR_WEIGHTS = "controller.descriptor_projections."  # names of the style-descriptor projections


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """The dictionary :meth:`DiffMST.save_checkpoint` wrote (``weights_only``: no code runs on load).

    A missing file is a ``FileNotFoundError``; a directory, or a file that is not such a
    dictionary (another program's ``.pt``, a text file), a ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds (pickle, zip, KeyError) for a foreign file
        raise ValueError(f"{path}: not a diffmst-lite checkpoint (PyTorch cannot read it: "
                         f"{type(error).__name__})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict) and isinstance(ckpt.get("model"), dict)):
        raise ValueError(f"{path}: not a diffmst-lite checkpoint (no model config and weights in it)")
    return ckpt


def _default_console(sample_rate: int) -> nn.Module:
    from diffmst_lite.console.mixer import MixingConsole  # imported late: the console is optional for tests

    return MixingConsole(sample_rate)


class DiffMST(nn.Module):
    """Differentiable mixing style transfer network plus console.

    Args:
        config: a :class:`DiffMSTConfig`.
        console: the mixing console module; default
            ``diffmst_lite.console.MixingConsole(config.sample_rate)``. It must
            expose ``num_track_params``, ``num_master_params`` and be callable as
            ``console(tracks, track_params, master_params, mask=mask) -> mix``.

    Chapter 10: The transformer controller.
    """

    def __init__(self, config: DiffMSTConfig, console: nn.Module | None = None):
        super().__init__()
        if console is None:
            console = _default_console(config.sample_rate)
        P, Pm = int(console.num_track_params), int(console.num_master_params)
        c = config.controller
        if c.num_track_params not in (None, P) or c.num_master_params not in (None, Pm):
            raise ValueError(
                f"config expects P={c.num_track_params}, Pm={c.num_master_params} "
                f"but the console has P={P}, Pm={Pm}")
        if config.encoder.embed_dim != c.d_model:
            raise ValueError(f"encoder.embed_dim ({config.encoder.embed_dim}) must equal "
                             f"controller.d_model ({c.d_model})")
        # store a resolved copy, so the config alone describes every tensor shape
        self.config = dataclasses.replace(
            config, controller=dataclasses.replace(c, num_track_params=P, num_master_params=Pm))
        self.track_encoder = SpectrogramEncoder(config.encoder)
        self.reference_encoder = SpectrogramEncoder(config.encoder)
        # Separate weights, same starting point: a mix and its tracks then begin in
        # one embedding space, so comparing them (which track sits where in the
        # reference) does not first need the two spaces to be aligned.
        self.reference_encoder.load_state_dict(self.track_encoder.state_dict())
        self.controller = TransformerController(self.config.controller)
        self.console = console

    # ------------------------------------------------------------------ presets
    @classmethod
    def lite(cls, sample_rate: int, **kwargs: Any) -> "DiffMST":
        """CPU-friendly preset (~3.3 M parameters, 128-d, 4 layers, 4 heads)."""
        return cls(DiffMSTConfig(sample_rate, EncoderConfig.lite(128), ControllerConfig.lite()), **kwargs)

    @classmethod
    def paper(cls, sample_rate: int, **kwargs: Any) -> "DiffMST":
        """The paper's sizes (~191 M parameters, 512-d, 12 layers, 8 heads, ff 2048)."""
        return cls(DiffMSTConfig(sample_rate, EncoderConfig.paper(512), ControllerConfig.paper()), **kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any] | DiffMSTConfig, **kwargs: Any) -> "DiffMST":
        """Build an (untrained) model from a config or its ``asdict`` form."""
        if not isinstance(config, DiffMSTConfig):
            config = DiffMSTConfig.from_dict(config)
        return cls(config, **kwargs)

    def grown(self, extra_layers: int = 0, mlp_hidden: int | None = None) -> "DiffMST":
        """A copy of this model with a larger controller that starts out computing exactly
        what this one does (:meth:`TransformerController.grown`); the console is shared.

        The new weights are drawn as for a new model of the grown configuration (the
        encoders' draws included, then replaced), so after ``torch.manual_seed(s)`` the
        result is a function of ``s`` (``scripts/grow_controller.py``).
        """
        config = dataclasses.replace(self.config, controller=self.controller.grown_config(extra_layers, mlp_hidden))
        model = DiffMST(config, console=self.console)
        model.track_encoder.load_state_dict(self.track_encoder.state_dict())
        model.reference_encoder.load_state_dict(self.reference_encoder.state_dict())
        model.controller.start_from(self.controller)
        return model.train(self.training)

    # -------------------------------------------------------------- checkpoints
    def config_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain Python data (``dataclasses.asdict``)."""
        return dataclasses.asdict(self.config)

    def save_checkpoint(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write ``{"config", "model", **extra}`` atomically (:func:`diffmst_lite.files.atomic.atomic_path`)."""
        with atomic_path(path) as tmp:
            torch.save({"config": self.config_dict(), "model": self.state_dict(), **(extra or {})}, tmp)

    @classmethod
    def load_checkpoint(cls, path: str | os.PathLike, map_location: str = "cpu", may_lack: tuple[str, ...] = (),
                        **kwargs: Any) -> "DiffMST":
        """Rebuild a model from :meth:`save_checkpoint` output.

        ``may_lack``: name prefixes of weights the checkpoint may miss; they keep their
        initialisation (``train --init`` passes :data:`DESCRIPTOR_WEIGHTS`). Any other
        missing or unknown weight is a ``ValueError`` that names it.
        """
        ckpt = read_checkpoint(path, map_location)
        model = cls.from_config(ckpt["config"], **kwargs)
        missing, unknown = model.load_state_dict(ckpt["model"], strict=False)
        missing = [name for name in missing if not name.startswith(may_lack)]  # () matches nothing
        if missing and not unknown and all(name.startswith(DESCRIPTOR_WEIGHTS) for name in missing):
            raise ValueError(f"{path}: a checkpoint from before the style descriptors (2026-12) has no weights "
                             f"for them; continue training it with `diffmst-lite train --init {path}`")
        if missing or unknown:
            raise ValueError(f"{path}: its weights do not fit the model: missing {missing[:4]}"
                             f"{' ...' if len(missing) > 4 else ''}, unknown {unknown[:4]}")
        return model

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters of the network and console."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---------------------------------------------------------------- forward
    @staticmethod
    def _check(tracks: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None) -> None:
        if tracks.dim() != 3:
            raise ValueError(f"tracks must be (batch, tracks, samples), got {tuple(tracks.shape)}")
        if reference.dim() != 3 or reference.shape[1] != 2 or reference.shape[0] != tracks.shape[0]:
            raise ValueError(f"reference must be stereo (batch={tracks.shape[0]}, 2, samples), "
                             f"got {tuple(reference.shape)}")
        if mask is not None and (mask.dtype != torch.bool or mask.shape != tracks.shape[:2]):
            raise ValueError(f"mask must be bool of shape {tuple(tracks.shape[:2])}, got "
                             f"{mask.dtype} {tuple(mask.shape)}")

    def embed_tracks(self, tracks: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Track embeddings ``(B, T, D)`` from ``tracks (B, T, N)``.

        Only real tracks (``mask`` True) go through the encoder; padded slots get
        a zero vector. Padding therefore costs no compute, and its audio cannot
        reach the network (not even through BatchNorm batch statistics).
        """
        B, T, N = tracks.shape
        flat = tracks.reshape(B * T, N)
        if mask is None:
            return self.track_encoder(flat).view(B, T, -1)
        idx = mask.reshape(-1).nonzero().squeeze(1)
        emb = flat.new_zeros(B * T, self.config.encoder.embed_dim)
        if idx.numel() > 0:
            emb = emb.index_copy(0, idx, self.track_encoder(flat.index_select(0, idx)))
        return emb.view(B, T, -1)

    def embed_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """Reference embeddings ``(B, 2, D)``: each channel of ``(B, 2, N)`` is a token."""
        B, C, N = reference.shape
        return self.reference_encoder(reference.reshape(B * C, N)).view(B, C, -1)

    def predict_params(
        self, tracks: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Console parameters for a multitrack and a reference, without rendering.

        Args:
            tracks: ``(B, T, N)`` mono tracks, float in [-1, 1].
            reference: ``(B, 2, N_ref)`` stereo reference mix (``N_ref`` may differ
                from ``N``).
            mask: ``(B, T)`` bool, True for a real track; None means all real.

        Returns:
            ``track_params (B, T, P)`` and ``master_params (B, Pm)``, in [0, 1]
            (padded tracks get 0).
        """
        self._check(tracks, reference, mask)
        track_emb = self.embed_tracks(tracks, mask)
        ref_emb = self.embed_reference(reference)
        return self.controller(track_emb, ref_emb, mask, self.descriptors(tracks, reference, mask))

    def descriptors(self, tracks: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
        """The style descriptors the controller receives besides the embeddings
        (:func:`diffmst_lite.model.descriptors.style_descriptors`)."""
        return style_descriptors(tracks, reference, mask, self.config.sample_rate)

    def forward(
        self, tracks: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
        render: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Mix ``tracks`` in the style of ``reference``.

        Args:
            tracks: ``(B, T, N)`` mono tracks, float in [-1, 1].
            reference: ``(B, 2, N_ref)`` stereo reference mix.
            mask: ``(B, T)`` bool, True for a real track; None means all real.
            render: False skips the console (``mix`` is None): for losses on the
                parameters alone.

        Returns:
            ``mix (B, 2, N)``, ``track_params (B, T, P)``, ``master_params (B, Pm)``.
        """
        track_params, master_params = self.predict_params(tracks, reference, mask)
        if not render:
            return None, track_params, master_params
        mix = self.console(tracks, track_params, master_params, mask=mask)
        return mix, track_params, master_params

    @torch.no_grad()
    def attention_maps(
        self, tracks: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Controller attention ``(B, layers, heads, T+3, T+3)`` over
        ``[track_1..track_T, ref_L, ref_R, master]`` (see
        :meth:`TransformerController.attention_maps`)."""
        self._check(tracks, reference, mask)
        return self.controller.attention_maps(
            self.embed_tracks(tracks, mask), self.embed_reference(reference), mask,
            descriptors=self.descriptors(tracks, reference, mask))
