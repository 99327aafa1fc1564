"""Test-time optimisation: fit the console's settings to a reference, no network.

The console is differentiable, so its parameters can be optimised directly by
gradient descent on the AF loss between the mix and the reference (docs/design.md §7).
It needs no training data and is a strong baseline for Diff-MST (Vanka et al.,
ISMIR 2024), but costs a few hundred console renders per song, where the trained
network predicts settings in one forward pass. It also refines a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from diffmst_lite.console import params
from diffmst_lite.console.mixer import MixingConsole
from diffmst_lite.losses.style import AudioFeatureLoss


@dataclass
class OptimizeResult:
    """Best settings found: ``track_params (B, T, P)``, ``master_params (B, Pm)`` in [0, 1],
    the loss of each step in ``history`` and the best loss. ``best_within``: for each
    ``k`` of ``optimize_params(keep_best_within=...)``, the best ``(track_params,
    master_params)`` of the first ``k`` steps (what a ``k``-step run returns)."""

    track_params: torch.Tensor
    master_params: torch.Tensor
    history: list[float] = field(default_factory=list)
    best_loss: float = float("inf")
    best_within: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def _logit(u: torch.Tensor) -> torch.Tensor:
    u = u.clamp(1e-3, 1 - 1e-3)
    return torch.log(u / (1 - u))


def optimize_params(
    tracks: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    steps: int = 200,
    lr: float = 0.05,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    mask: torch.Tensor | None = None,
    loss_fn: torch.nn.Module | None = None,
    progress: bool = True,
    keep_best_within: tuple[int, ...] = (),
) -> OptimizeResult:
    """Optimise console settings so the mix of ``tracks`` matches ``reference``.

    Args:
        tracks: ``(B, T, N)`` mono tracks.
        reference: ``(B, 2, M)`` reference mixes (``M`` may differ from ``N``
            for the AF loss, which compares features, not waveforms).
        sample_rate: Hz.
        steps, lr: Adam steps and learning rate on the logits of the [0, 1] parameters.
        init: starting ``(track_params, master_params)``; default: the neutral setting.
        mask: optional ``(B, T)`` padding mask.
        loss_fn: ``loss_fn(mix, reference)`` -> scalar; default :class:`AudioFeatureLoss`.
        keep_best_within: step counts ``k < steps`` whose best settings are kept too
            (``result.best_within[k]``): one run of 100 steps gives the 50-step result.

    Returns:
        :class:`OptimizeResult` with the best settings seen.

    Chapter 14: Mix your own stems.
    """
    console = MixingConsole(sample_rate).to(tracks.device)
    batch, num_tracks, _ = tracks.shape
    if init is None:
        track0 = params.neutral_params(console.track_specs).to(tracks.device).expand(batch, num_tracks, -1)
        master0 = params.neutral_params(console.master_specs).to(tracks.device).expand(batch, -1)
    else:
        track0, master0 = init
    track_logits = _logit(track0.detach().clone()).requires_grad_(True)
    master_logits = _logit(master0.detach().clone()).requires_grad_(True)
    loss_fn = loss_fn or AudioFeatureLoss(sample_rate)
    optimizer = torch.optim.Adam([track_logits, master_logits], lr=lr)
    result = OptimizeResult(track0.detach().clone(), master0.detach().clone())
    bar = tqdm(range(steps), desc="optimising", disable=not progress, leave=False)
    for _ in bar:
        track_params, master_params = torch.sigmoid(track_logits), torch.sigmoid(master_logits)
        loss = loss_fn(console(tracks, track_params, master_params, mask=mask), reference)
        value = loss.detach().item()
        if value < result.best_loss:  # the loss of these parameters, before the step moves them
            result.best_loss = value
            result.track_params, result.master_params = track_params.detach().clone(), master_params.detach().clone()
        result.history.append(value)
        if len(result.history) in keep_best_within:
            result.best_within[len(result.history)] = (result.track_params, result.master_params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{value:.4f}")
    return result
