"""The run directory of a training run: checkpoints with RNG states, ``log.csv`` and ``loss.png``.

Used by :mod:`diffmst_lite.training.loop`. A checkpoint is one ``torch.save`` dict that
loads with ``weights_only=True`` (RNG states are stored as tensors and numbers),
written atomically (:mod:`diffmst_lite.files.atomic`), so a crash never leaves a
half-written ``last.pt``.
"""

from __future__ import annotations

import csv
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffmst_lite.files.atomic import atomic_path
from diffmst_lite.model.diffmst import DiffMST


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and numbers (``weights_only``-loadable)."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": torch.tensor(words, dtype=torch.int64), "python_version": version,
             "python_gauss": gauss, "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
             "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: DiffMST, optimizer: torch.optim.Optimizer, step: int, config: Any) -> None:
    """The model's checkpoint (:meth:`DiffMST.save_checkpoint`, atomic) plus what resuming needs:
    ``optimizer``, ``step``, ``rng`` (:func:`rng_state`) and ``train_config``."""
    model.save_checkpoint(path, extra={"optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(),
                                       "train_config": asdict(config)})


def read_log(path: Path, max_step: int | None = None) -> list[dict]:
    """Rows of ``log.csv`` as dicts of floats (``step`` as int), up to ``max_step``.

    Chapter 13: Full training on MUSDB18.
    """
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: (int(v) if k == "step" else float(v)) for k, v in r.items() if v != ""}
                for r in csv.DictReader(f)]
    return [r for r in rows if max_step is None or r["step"] <= max_step]


def write_log(path: Path, history: list[dict]) -> None:
    """Write ``history`` (one dict per logged step) as ``log.csv``, atomically."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def plot_log(path: Path, history: list[dict], title: str) -> None:
    """``loss.png``: the loss (and with two terms, each term) against the step, log scale."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    fig = Figure(figsize=(7, 4), layout="tight")
    ax = fig.add_subplot()
    keys = ["loss", "mrstft", "af"] if history and {"mrstft", "af"} <= history[0].keys() else ["loss"]
    for key in keys:
        ax.plot([r["step"] for r in history], [r[key] for r in history], label=key, lw=2 if key == "loss" else 1)
    ax.set(xlabel="step", ylabel="training loss", title=title, yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
