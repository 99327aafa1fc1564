"""Transformer controller: embeddings in, console parameters in [0, 1] out.

Diff-MST (Vanka et al., ISMIR 2024, arXiv:2407.08889; the controller of its
Fig. 1) feeds one token per input track, one per reference channel and a
learned master-bus token to a transformer encoder. There is no positional encoding, so the output for each
track does not depend on where that track sits in the list, and any number of
tracks works with the same weights. One MLP, shared by all track tokens, maps
each track token to that track's channel-strip parameters; a second MLP maps the
master token to the master-bus parameters. A sigmoid bounds both to [0, 1]; the
console maps them to physical units.

Token sequence (length ``S = T + 3``)::

    [track_1 ... track_T, ref_L, ref_R, master]

Track and reference embeddings are first layer-normalised (``input_norm``, one
LayerNorm per kind): trained encoders give vectors of norm ~20, and without the
normalisation they swamp the residual stream, so what attention brings in from
other tokens (the reference!) is too small to change a track's output. A trained
model that ignored its reference entirely was how this was found.

Each token gets a learned type embedding added: ``track``, ``reference left``,
``reference right`` or ``master``. The reference type is split by channel
because the model must tell left from right to predict panning. Padded tracks
(``mask`` False) are removed from attention with ``src_key_padding_mask``; their
output parameters are set to 0.

Beyond the paper, the tokens can also receive *style descriptors*
(:mod:`diffmst_lite.model.descriptors`): the AF features of the reference, of the
plain track sum and of each track, as fixed numbers. A linear projection of them is
added to the track, reference and master tokens. The projections start at zero, so
without descriptors (``descriptors=None``) or before training they change nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from diffmst_lite.model.descriptors import MIX_DESCRIPTOR_SIZE, TRACK_DESCRIPTOR_SIZE

TOKEN_TRACK, TOKEN_REF_LEFT, TOKEN_REF_RIGHT, TOKEN_MASTER = 0, 1, 2, 3


@dataclass
class ControllerConfig:
    """Configuration of a :class:`TransformerController`.

    Attributes:
        d_model: token size ``D`` (equal to the encoders' ``embed_dim``).
        num_layers: transformer encoder layers (paper: 12).
        num_heads: attention heads (paper: 8).
        dim_feedforward: width of each layer's feed-forward block (paper: 2048).
        dropout: dropout inside the transformer layers.
        mlp_hidden: hidden width of the two output MLPs (0 -> ``d_model``).
        input_norm: layer-normalise track and reference embeddings (one
            LayerNorm each) before the type embeddings are added.
        num_track_params: ``P``, parameters per track (set from the console by
            :class:`~diffmst_lite.model.DiffMST` when left at ``None``).
        num_master_params: ``Pm``, master-bus parameters (idem).
    """

    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    dim_feedforward: int = 512
    dropout: float = 0.0
    mlp_hidden: int = 0
    input_norm: bool = True
    num_track_params: int | None = None
    num_master_params: int | None = None

    @property
    def mlp_width(self) -> int:
        """Hidden width of the output MLPs: ``mlp_hidden``, or ``d_model`` when that is 0."""
        return self.mlp_hidden or self.d_model

    @classmethod
    def lite(cls) -> "ControllerConfig":
        """128-d tokens, 4 layers, 4 heads, feed-forward 512 (~0.8 M parameters)."""
        return cls()

    @classmethod
    def paper(cls) -> "ControllerConfig":
        """The paper's transformer: 512-d, 12 layers, 8 heads, feed-forward 2048."""
        return cls(d_model=512, num_layers=12, num_heads=8, dim_feedforward=2048)


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class TransformerController(nn.Module):
    """``(track_emb (B,T,D), ref_emb (B,2,D), mask (B,T))`` -> params in [0, 1].

    Returns ``track_params (B, T, P)`` and ``master_params (B, Pm)``.

    Chapter 10: The transformer controller.
    """

    def __init__(self, config: ControllerConfig):
        super().__init__()
        if config.num_track_params is None or config.num_master_params is None:
            raise ValueError("ControllerConfig needs num_track_params and num_master_params")
        if config.d_model % config.num_heads:
            raise ValueError("d_model must be divisible by num_heads")
        self.config = config
        D = config.d_model
        self.type_embedding = nn.Embedding(4, D)  # track / ref L / ref R / master
        self.track_norm = nn.LayerNorm(D) if config.input_norm else nn.Identity()
        self.reference_norm = nn.LayerNorm(D) if config.input_norm else nn.Identity()
        self.master_token = nn.Parameter(torch.zeros(D))
        # unit scale, like the normalised embeddings they are added to: the type is
        # all that tells ``ref_L`` from ``ref_R`` (attention is blind to order), so a
        # GPT-style 0.02 would leave the model nearly unable to learn panning
        nn.init.normal_(self.type_embedding.weight, std=1.0)
        nn.init.normal_(self.master_token, std=1.0)
        layer = nn.TransformerEncoderLayer(
            D, config.num_heads, config.dim_feedforward, config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, config.num_layers, norm=nn.LayerNorm(D), enable_nested_tensor=False,
        )
        self.descriptor_projections = nn.ModuleDict({
            "tracks": nn.Linear(TRACK_DESCRIPTOR_SIZE, D),
            "reference": nn.Linear(MIX_DESCRIPTOR_SIZE, D),
            "master": nn.Linear(2 * MIX_DESCRIPTOR_SIZE, D),
        })
        for projection in self.descriptor_projections.values():  # start as if absent
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
        self.track_head = _mlp(D, config.mlp_width, config.num_track_params)
        self.master_head = _mlp(D, config.mlp_width, config.num_master_params)

    def grown_config(self, extra_layers: int = 0, mlp_hidden: int | None = None) -> ControllerConfig:
        """The configuration of :meth:`grown`: ``extra_layers`` more layers, output MLPs
        ``mlp_hidden`` wide (None: as now)."""
        hidden = mlp_hidden or self.config.mlp_width
        if extra_layers < 0 or hidden < self.config.mlp_width:
            raise ValueError(f"a controller can only grow: extra_layers must be >= 0 (got {extra_layers}), "
                             f"mlp_hidden >= {self.config.mlp_width} (got {hidden})")
        return dataclasses.replace(self.config, num_layers=self.config.num_layers + extra_layers, mlp_hidden=hidden)

    def grown(self, extra_layers: int = 0, mlp_hidden: int | None = None) -> "TransformerController":
        """A larger controller that starts out computing exactly what this one does.

        Beyond the paper: function-preserving growth (Net2Net, Chen et al., ICLR 2016),
        so a trained model gains capacity without losing what it learned. The
        ``extra_layers`` new transformer layers go after the old ones, and the output
        MLPs widen to ``mlp_hidden`` units; see :meth:`start_from`. README (phases 10 and 12).
        """
        bigger = TransformerController(self.grown_config(extra_layers, mlp_hidden))
        bigger.start_from(self)
        return bigger

    def start_from(self, smaller: "TransformerController") -> None:
        """Take over the weights of ``smaller`` (fewer layers, narrower MLPs, the same
        ``d_model``) so that this controller computes what it does.

        The layers beyond ``smaller``'s get their residual branches' output projections
        (attention ``out_proj`` and ``linear2``) set to zero, so each adds nothing until
        training moves them; the MLPs' new hidden units keep their random input weights
        and get zero output weights. Every other weight is copied.
        """
        state = self.state_dict()
        for name, value in smaller.state_dict().items():
            state[name][tuple(slice(0, n) for n in value.shape)] = value  # MLPs: into the first units
        for head in ("track_head", "master_head"):
            state[f"{head}.2.weight"][:, smaller.config.mlp_width:] = 0.0
        for layer in range(smaller.config.num_layers, self.config.num_layers):
            for name in ("self_attn.out_proj.weight", "self_attn.out_proj.bias", "linear2.weight", "linear2.bias"):
                state[f"transformer.layers.{layer}.{name}"].zero_()
        self.load_state_dict(state)

    def tokens(
        self, track_emb: torch.Tensor, ref_emb: torch.Tensor, mask: torch.Tensor | None = None,
        descriptors: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Build the token sequence and its padding mask.

        Args:
            track_emb: ``(B, T, D)`` track embeddings.
            ref_emb: ``(B, 2, D)`` reference embeddings (left, right).
            mask: ``(B, T)`` bool, True for a real track, or None (all real).
            descriptors: None, or :func:`~diffmst_lite.model.descriptors.style_descriptors`
                ``{"tracks": (B, T, 25), "reference": (B, 53), "master": (B, 106)}``.

        Returns:
            ``tokens (B, T+3, D)`` and ``key_padding_mask (B, T+3)`` (True = ignore,
            PyTorch's convention) or None.
        """
        B, T, D = track_emb.shape
        if ref_emb.shape != (B, 2, D):
            raise ValueError(f"ref_emb must be (B, 2, D) = {(B, 2, D)}, got {tuple(ref_emb.shape)}")
        types = self.type_embedding.weight
        tracks = self.track_norm(track_emb) + types[TOKEN_TRACK]
        refs = self.reference_norm(ref_emb) + types[TOKEN_REF_LEFT:TOKEN_REF_RIGHT + 1]
        master = (self.master_token + types[TOKEN_MASTER]).expand(B, 1, D)
        if descriptors is not None:
            project = self.descriptor_projections
            tracks = tracks + project["tracks"](descriptors["tracks"])
            refs = refs + project["reference"](descriptors["reference"]).unsqueeze(1)
            master = master + project["master"](descriptors["master"]).unsqueeze(1)
        tokens = torch.cat([tracks, refs, master], dim=1)
        if mask is None:
            return tokens, None
        if mask.shape != (B, T) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape {(B, T)}, got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        pad = torch.cat([~mask, mask.new_zeros(B, 3)], dim=1)
        return tokens, pad

    def heads(
        self, h: torch.Tensor, num_tracks: int, mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output MLPs on transformer states ``h (B, T+3, D)``.

        Returns ``track_params (B, T, P)`` and ``master_params (B, Pm)`` in [0, 1];
        padded tracks get 0.
        """
        track_params = torch.sigmoid(self.track_head(h[:, :num_tracks]))
        master_params = torch.sigmoid(self.master_head(h[:, -1]))
        if mask is not None:
            track_params = track_params.masked_fill(~mask.unsqueeze(-1), 0.0)
        return track_params, master_params

    def forward(
        self, track_emb: torch.Tensor, ref_emb: torch.Tensor, mask: torch.Tensor | None = None,
        descriptors: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict ``track_params (B, T, P)`` and ``master_params (B, Pm)`` in [0, 1]
        (``descriptors``: see :meth:`tokens`)."""
        tokens, pad = self.tokens(track_emb, ref_emb, mask, descriptors)
        h = self.transformer(tokens, src_key_padding_mask=pad)
        return self.heads(h, track_emb.shape[1], mask)

    @torch.no_grad()
    def attention_maps(
        self, track_emb: torch.Tensor, ref_emb: torch.Tensor, mask: torch.Tensor | None = None,
        return_states: bool = False, descriptors: dict[str, torch.Tensor] | None = None,
    ):
        """Attention weights of every layer and head, for plotting.

        Runs the layers one by one (same maths as :meth:`forward`, pre-norm) and
        asks each self-attention for its weights.

        Returns:
            ``attn (B, num_layers, num_heads, S, S)`` with ``S = T + 3``; row ``i``
            is how token ``i`` distributes its attention over the tokens
            ``[track_1..track_T, ref_L, ref_R, master]``; rows sum to 1 and columns
            of padded tracks are 0. With ``return_states=True`` also the final
            (normalised) states ``(B, S, D)``.
        """
        x, pad = self.tokens(track_emb, ref_emb, mask, descriptors)
        maps = []
        for layer in self.transformer.layers:
            y = layer.norm1(x)
            a, w = layer.self_attn(y, y, y, key_padding_mask=pad, need_weights=True,
                                   average_attn_weights=False)
            x = x + layer.dropout1(a)
            y = layer.norm2(x)
            x = x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(y)))))
            maps.append(w)
        attn = torch.stack(maps, dim=1)
        if return_states:
            return attn, self.transformer.norm(x)
        return attn
