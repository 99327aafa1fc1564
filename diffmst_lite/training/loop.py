"""Training loop of Diff-MST (docs/design.md §6), one process or DDP under ``torchrun``.

nanoGPT style: a :class:`TrainConfig` dataclass and one readable loop in :func:`train`.

- Method 1 (self-supervised): a random console mix of a song segment is split into
  halves A/B; the model mixes the tracks of B in the style of mix A (its reference);
  the loss compares the prediction with the real mix B (MRSTFT, AF or both).
- Method 2: tracks of song A, the real mix of another song as reference; AF loss
  between prediction and reference (the contents differ, so no MRSTFT).
- ``param`` loss (beyond the paper, Method 1 only): Method 1 knows the console
  settings that made its reference, so the network can regress them directly (MSE
  in [0, 1], padded tracks left out), with no console in the step. A cheap warm-up
  before fine-tuning with an audio loss (``--init``); settings the audio cannot
  reveal (an EQ band's frequency at 0 dB gain) are pulled to their mean.

Prediction and target/reference are loudness-normalised to -16 LUFS inside the
losses (``target_lufs``). Default sample rate 22050 Hz: half the compute of 44.1 kHz;
the console's EQ ranges are the same in Hz at every rate, capped at 0.45 fs
(:func:`diffmst_lite.console.params.band_freq_ranges`).

CPU threads: PyTorch's default (one per core) unless ``threads`` says otherwise. On the
quiet 2-core machine a lite step at the shipped recipe's shape took 0.37 s with 2
threads and 0.52 s with one. Lower it (``--threads 1``) only when several jobs share
few cores: OpenMP threads spin while they wait for a core, so oversubscribed jobs
slow each other down.

Every step's batch is a pure function of ``(seed, step, rank)`` (the datasets draw each
example from its own generator), so a resumed run repeats exactly what a straight
run would have done. A run directory holds ``last.pt`` (always the latest
checkpoint), ``step_XXXXXXX.pt`` (periodic), ``log.csv`` and ``loss.png``.

Command line: ``diffmst-lite train --method 1 --loss mrstft --data toy --out runs/m1 --steps 200``;
under DDP: ``torchrun --nproc_per_node 2 -m diffmst_lite train ...``.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from diffmst_lite.data.datasets import Method1Dataset, Method2Dataset, collate_tracks
from diffmst_lite.data.songs import load_songs
from diffmst_lite.dsp.memory import keep_freed_memory
from diffmst_lite.losses.style import AudioFeatureLoss, MRSTFTLoss, af_weights
from diffmst_lite.model.controller import ControllerConfig
from diffmst_lite.model.diffmst import DESCRIPTOR_WEIGHTS, DiffMST, DiffMSTConfig, read_checkpoint
from diffmst_lite.model.encoder import EncoderConfig
from diffmst_lite.training.rundir import plot_log, read_log, save_checkpoint, set_rng_state, write_log

LOSSES = ("mrstft", "af", "mrstft+af", "param")
PAPER_AF_WEIGHTS = af_weights()
# settings a resumed run must share with the checkpoint (steps, logging, workers may change)
FIXED_ON_RESUME = ("method", "loss", "tracks", "seconds", "sample_rate", "batch_size", "preset", "seed",
                   "af_weight", "af_term_weights", "lr", "descriptor_lr", "target_lufs", "own_mix")


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in every checkpoint as ``train_config``).

    Chapter 11: Method 1: self-supervised random mixes.
    """

    method: int = 1  # 1: self-supervised random mixes; 2: real mix of another song as reference
    loss: str | None = None  # mrstft | af | mrstft+af | param (Method 2: af only); None: mrstft (1), af (2)
    tracks: int = 8  # most tracks per example (8 or 16; MUSDB has 8, the rest are masked)
    data: str | None = None  # MUSDB18(-HQ) root or synthetic tree, or several "a,b"; "toy": out/toy_data; None: $MUSDB_PATH
    out: str = "runs/diffmst"  # the run directory
    steps: int = 1000  # optimiser steps in total (a resumed run continues to this number)
    batch_size: int = 4  # examples per step and per process
    seconds: float = 10.0  # segment length t (Method 1: halves of t/2; the paper's 10 s)
    lr: float = 1e-4  # AdamW
    descriptor_lr: float | None = None  # of the style-descriptor projections (None: lr); higher to fine-tune them in
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm (0: off)
    sample_rate: int = 22050  # Hz; the console caps its frequency ranges at 0.45 * fs
    preset: str = "lite"  # lite | paper | tiny (tests and demos)
    af_weight: float = 1.0  # weight of the AF term in mrstft+af
    af_term_weights: dict[str, float] | None = None  # AF feature weights in training, e.g. {"crest_factor": 0.004}
    #   (the rest keep the paper's AFWeights; evaluation always uses the paper's)
    target_lufs: float = -16.0  # prediction and target/reference loudness before the loss
    init: str | None = None  # checkpoint whose weights start the run (MRSTFT -> AF fine-tune)
    resume: bool = False  # continue from out/last.pt (weights, optimiser, step, RNG states)
    force: bool = False  # start afresh in an out that holds a run
    checkpoint_every: int = 500  # steps (0: only the final last.pt)
    log_every: int = 10  # steps between log rows (the final step is always logged)
    seed: int = 0
    num_workers: int = 0  # DataLoader workers (batches are the same for any number)
    threads: int = 0  # torch intra-op threads, set for the process (0: torch's default); see module doc
    overfit: bool = False  # train on the first batch only: a sanity check, the loss must fall
    references: str | None = None  # Method 2: a folder of full mixes as references
    own_mix: float = 0.0  # Method 1: share of examples whose reference is the song's own mix (beyond the paper)
    device: str | None = None  # None: cuda:LOCAL_RANK if available, else cpu

    def __post_init__(self) -> None:
        if self.loss is None:
            self.loss = "mrstft" if self.method == 1 else "af"
        try:
            af_weights(self.af_term_weights)
        except ValueError as error:
            raise ValueError(f"af_term_weights: {error}") from None
        for ok, message in [
            (self.method in (1, 2), f"method must be 1 or 2, got {self.method}"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (self.method == 1 or self.loss == "af", "Method 2 compares different songs: only --loss af makes sense"),
            (self.preset in ("lite", "paper", "tiny"), f"preset must be lite, paper or tiny, got {self.preset!r}"),
            (self.sample_rate >= 8000, f"sample_rate must be at least 8000 Hz, got {self.sample_rate}"),
            (min(self.steps, self.batch_size, self.tracks) >= 1, "steps, batch_size and tracks must be positive"),
            (self.seconds > 0, f"seconds must be positive, got {self.seconds}"),
            (0.0 <= self.own_mix <= 1.0, f"own_mix is a share of examples in [0, 1], got {self.own_mix}"),
            (self.own_mix == 0 or (self.method == 1 and self.loss != "param"),
             "--own-mix needs Method 1 and a loss on audio (own mixes have no true settings)"),
        ]:
            if not ok:
                raise ValueError(message)


def build_model(config: TrainConfig) -> DiffMST:
    """The untrained model of ``config.preset`` (or the weights of ``config.init``)."""
    if config.init:
        if not Path(config.init).is_file():
            raise FileNotFoundError(f"--init checkpoint {config.init} does not exist")
        model = warm_start(config.init)
        if model.config.sample_rate != config.sample_rate:
            raise ValueError(f"--init checkpoint is at {model.config.sample_rate} Hz, "
                             f"training at {config.sample_rate} Hz")
        return model
    if config.preset == "tiny":  # a few thousand parameters: tests and quick demos
        enc = EncoderConfig(n_fft=512, hop_length=256, channels=(8, 16, 32), strides=((4, 2), (4, 2), (2, 2)),
                            pools=((1, 1),) * 3, embed_dim=32)
        ctl = ControllerConfig(d_model=32, num_layers=1, num_heads=2, dim_feedforward=64)
        return DiffMST(DiffMSTConfig(config.sample_rate, enc, ctl))
    return getattr(DiffMST, config.preset)(config.sample_rate)


def warm_start(path: str | os.PathLike) -> DiffMST:
    """The model of checkpoint ``path`` with its weights, for ``--init``.

    A checkpoint written before the controller had style descriptors lacks their
    projections; they keep their zero initialisation, so the run starts from exactly
    the checkpoint's behaviour. Any other missing or unknown weight is an error.
    """
    return DiffMST.load_checkpoint(path, may_lack=(DESCRIPTOR_WEIGHTS,))


def setup_distributed(config: TrainConfig) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; joins the process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    try:
        device = torch.device(config.device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise ValueError(f"device {config.device!r}: not a device PyTorch knows (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r}: PyTorch sees no CUDA GPU here; use cpu")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def toy_songs(root: Path, sample_rate: int, seconds: float, seed: int, progress: bool = True) -> Path:
    """Six short synthetic songs (numpy renderer) in ``root`` unless already there."""
    from diffmst_lite.data.song_trees import make_songs

    if not (root / "train").is_dir():
        make_songs(root, num_songs=6, seconds=max(4.0, 1.5 * seconds), seed=seed, test_songs=1,
                   sample_rate=sample_rate, renderer="numpy", progress=progress)
    return root


def build_dataset(config: TrainConfig, songs: Sequence, examples: int) -> torch.utils.data.Dataset:
    if config.method == 1:
        return Method1Dataset(songs, config.seconds, max_tracks=config.tracks, examples=examples, seed=config.seed,
                              own_mix=config.own_mix)
    return Method2Dataset(songs, config.seconds, min_tracks=min(4, config.tracks), max_tracks=config.tracks,
                          references=config.references, examples=examples, seed=config.seed)


class StepSampler(torch.utils.data.Sampler):
    """Indices of steps ``start..steps-1`` for one rank: step ``s`` of rank ``r`` takes
    examples ``(s * world + r) * batch_size + i``: disjoint across ranks, and a pure
    function of the step (exact resume, any number of workers)."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int, world: int):
        self.start, self.steps, self.batch_size, self.rank, self.world = start, steps, batch_size, rank, world

    def __iter__(self):
        for s in range(self.start, self.steps):
            first = (s * self.world + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


class StyleLoss(torch.nn.Module):
    """The configured training loss; returns ``(loss, {term: float})``."""

    def __init__(self, config: TrainConfig, num_samples: int):
        super().__init__()
        self.method, self.kind, self.af_weight = config.method, config.loss, config.af_weight
        self.af = AudioFeatureLoss(config.sample_rate, weights=config.af_term_weights,
                                   target_lufs=config.target_lufs)
        # FFT sizes longer than the segment cannot be reflect-padded: keep those that fit
        ffts = tuple(n for n in (512, 2048, 8192) if n // 2 < num_samples)
        self.mrstft = MRSTFTLoss(config.sample_rate, config.target_lufs, fft_sizes=ffts)

    def forward(self, mix: torch.Tensor | None, batch: dict, track_params: torch.Tensor | None = None,
                master_params: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of a predicted ``mix (B, 2, N)`` (or, for ``param``, of the predicted
        ``track_params (B, T, P)`` / ``master_params (B, Pm)``) against ``batch``."""
        if self.kind == "param":
            value = parameter_loss(track_params, master_params, batch)
            return value, {"param": value.item()}
        target = batch["target"] if self.method == 1 else batch["reference"]
        total, terms = mix.new_zeros(()), {}
        if "mrstft" in self.kind:
            value = self.mrstft(mix, target)
            total, terms["mrstft"] = total + value, value.item()
        if "af" in self.kind:
            value, af_terms = self.af.total_and_terms(mix, target)
            weight = self.af_weight if self.kind == "mrstft+af" else 1.0
            total, af_terms = total + weight * value, {k: v.item() for k, v in af_terms.items()}
            # logged at the paper's weights whatever af_term_weights trains with, as evaluate() reports it
            terms["af"] = sum(PAPER_AF_WEIGHTS[k] * v for k, v in af_terms.items())
            terms.update({f"af_{k}": v for k, v in af_terms.items()})
        return total, terms


def parameter_loss(track_params: torch.Tensor, master_params: torch.Tensor, batch: dict) -> torch.Tensor:
    """Mean squared error of predicted and true settings in [0, 1] (real tracks only).

    ``track_params (B, T, P)`` and ``master_params (B, Pm)`` against ``batch``'s
    ``track_params``, ``master_params`` and ``mask (B, T)``; tracks and master count
    alike (the mean of the two means).
    """
    mask = batch["mask"].unsqueeze(-1).to(track_params.dtype)
    track_error = ((track_params - batch["track_params"]).square() * mask).sum()
    track_error = track_error / (mask.sum() * track_params.shape[-1]).clamp_min(1.0)
    return 0.5 * (track_error + (master_params - batch["master_params"]).square().mean())


def prepare_run_dir(config: TrainConfig) -> Path:
    out = Path(config.out)
    if (out / "last.pt").exists() and not (config.resume or config.force):
        raise FileExistsError(f"{out} already holds a run (last.pt); use --resume to continue it "
                              "or --force to start afresh")
    if config.resume and not (out / "last.pt").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {out / 'last.pt'} to continue from")
    return out


def read_resume_checkpoint(config: TrainConfig, out: Path) -> dict | None:
    """``out/last.pt`` when resuming (None otherwise), after checking that the settings in
    ``FIXED_ON_RESUME`` match the run's."""
    if not config.resume:
        return None
    ckpt = read_checkpoint(out / "last.pt")
    saved = ckpt["train_config"]
    diff = [f"{k}={getattr(config, k)!r} (checkpoint: {saved[k]!r})" for k in FIXED_ON_RESUME
            if k in saved and getattr(config, k) != saved[k]]
    if diff:
        raise ValueError("--resume with settings that differ from the run's: " + ", ".join(diff))
    return ckpt


def training_songs(config: TrainConfig, out: Path, rank: int, world: int, progress: bool) -> list:
    """The training songs of ``config.data``: one tree, or several separated by commas
    (``data/real,data/synth``: their songs together, each song drawn equally often);
    ``"toy"``: six synthetic songs that rank 0 writes to ``out/toy_data`` while the
    other ranks wait; None: ``$MUSDB_PATH``."""
    data = config.data or os.environ.get("MUSDB_PATH")
    if not data:
        raise ValueError("no data: pass --data PATH (MUSDB18 root or synthetic tree), --data toy, "
                         "or set MUSDB_PATH")
    roots = [Path(root).expanduser() for root in data.split(",") if root.strip()]
    if data == "toy":
        roots = [out / "toy_data"]
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            toy_songs(roots[0], config.sample_rate, config.seconds, config.seed, progress)
        if world > 1:
            dist.barrier()
    missing = [str(root) for root in roots if not root.exists()]
    if missing:
        raise FileNotFoundError(f"data path {', '.join(missing)} does not exist")
    # absolute: musdb mis-joins a relative root with the setup file's path
    return [song for root in roots
            for song in load_songs(root.resolve(), subset="train", split="train", sample_rate=config.sample_rate)]


def build_optimizer(model: DiffMST, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused) at ``config.lr``; the style-descriptor projections at ``config.descriptor_lr``
    if given: fine-tuned into a trained model from zero, they need more than its rate."""
    descriptor = [p for name, p in model.named_parameters() if name.startswith(DESCRIPTOR_WEIGHTS)]
    others = [p for name, p in model.named_parameters() if not name.startswith(DESCRIPTOR_WEIGHTS)]
    groups = [{"params": others}, {"params": descriptor, "lr": config.descriptor_lr or config.lr}]
    # fused: one kernel over all weights instead of a dozen passes per update (CPU and CUDA)
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def initial_state(config: TrainConfig, device: torch.device, ckpt: dict | None, out: Path, rank: int
                  ) -> tuple[DiffMST, torch.optim.Optimizer, int, list[dict]]:
    """``(model, optimizer, start step, log history)``: fresh from the seed, or as the
    checkpoint ``ckpt`` left them; ``--force`` deletes an old run's files (rank 0)."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    model = build_model(config).to(device)
    optimizer = build_optimizer(model, config)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        return model, optimizer, int(ckpt["step"]), read_log(out / "log.csv", max_step=int(ckpt["step"]))
    if config.force and rank == 0:
        for old in [*out.glob("step_*.pt"), out / "last.pt", out / "log.csv", out / "loss.png"]:
            old.unlink(missing_ok=True)
    return model, optimizer, 0, []


def batches(config: TrainConfig, dataset: torch.utils.data.Dataset, start: int, rank: int, world: int):
    """The batches of steps ``start..config.steps-1`` for this rank (``overfit``: the first one again)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, collate_fn=collate_tracks, num_workers=config.num_workers,
        sampler=StepSampler(0 if config.overfit else start, 1 if config.overfit else config.steps,
                            config.batch_size, rank, world))
    return itertools.repeat(next(iter(loader)), config.steps - start) if config.overfit else loader


def train_step(net: torch.nn.Module, model: DiffMST, optimizer: torch.optim.Optimizer, criterion: StyleLoss,
               batch: dict, config: TrainConfig, device: torch.device, step: int
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step on ``batch``; returns ``(loss, {term: value})``. ``step`` (1-based) names
    the step in the error a non-finite loss raises."""
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    mix, track_params, master_params = net(batch["tracks"], batch["reference"], batch["mask"],
                                           render=config.loss != "param")
    loss, terms = criterion(mix, batch, track_params, master_params)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss)} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss, terms


def mean_over_ranks(loss: torch.Tensor, terms: dict[str, float], world: int) -> dict[str, float]:
    """``{"loss", **terms}`` averaged over all ranks (a no-op in one process)."""
    values = torch.tensor([loss.item(), *terms.values()], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip(["loss", *terms], values.tolist()))


def save_run(out: Path, model: DiffMST, optimizer: torch.optim.Optimizer, step: int, config: TrainConfig,
             history: list[dict]) -> None:
    """``last.pt`` (and ``step_XXXXXXX.pt`` every ``checkpoint_every`` steps), ``log.csv``, ``loss.png``."""
    save_checkpoint(out / "last.pt", model, optimizer, step, config)
    if config.checkpoint_every and step % config.checkpoint_every == 0:
        save_checkpoint(out / f"step_{step:07d}.pt", model, optimizer, step, config)
    write_log(out / "log.csv", history)
    plot_log(out / "loss.png", history, f"Method {config.method}, {config.loss} loss")


def train(config: TrainConfig, songs: Sequence | None = None, progress: bool = True) -> dict:
    """Train a :class:`DiffMST` as ``config`` says, on ``songs`` (:class:`~diffmst_lite.data.Song` s,
    e.g. in memory; None loads ``config.data``), with a tqdm bar if ``progress`` (rank 0).

    Returns ``{"history": [log rows], "checkpoint": path of last.pt, "model": the trained
    DiffMST (unwrapped), "seconds_per_step": float}``.

    On Linux, glibc keeps freed memory from then on (:func:`diffmst_lite.dsp.memory.keep_freed_memory`:
    a step median 1.09x faster; the process keeps its peak memory; ``DIFFMST_MALLOC_TUNING=0``
    leaves the allocator alone).

    Chapter 11: Method 1: self-supervised random mixes.
    """
    from tqdm.auto import tqdm

    keep_freed_memory()
    rank, world, device = setup_distributed(config)
    out = prepare_run_dir(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    ckpt = read_resume_checkpoint(config, out)
    if songs is None:
        songs = training_songs(config, out, rank, world, progress)
    dataset = build_dataset(config, songs, examples=config.steps * world * config.batch_size)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    model, optimizer, start, history = initial_state(config, device, ckpt, out, rank)
    net = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    num_samples = round(config.seconds * config.sample_rate / (2 if config.method == 1 else 1))
    criterion = StyleLoss(config, num_samples).to(device)

    bar = tqdm(total=config.steps, initial=start, disable=not progress or rank != 0, desc="train", unit="step")
    model.train()
    t0, step = time.perf_counter(), start
    last_log, offset = (start, t0), (history[-1]["seconds"] if history else 0.0)
    for batch in batches(config, dataset, start, rank, world):
        loss, terms = train_step(net, model, optimizer, criterion, batch, config, device, step + 1)
        step += 1
        bar.update(1)
        final = step == config.steps
        if (config.log_every and step % config.log_every == 0) or final:
            now = time.perf_counter()
            history.append({"step": step, **mean_over_ranks(loss, terms, world), "seconds": offset + now - t0,
                            "seconds_per_step": (now - last_log[1]) / (step - last_log[0])})
            last_log = (step, now)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        if rank == 0 and ((config.checkpoint_every and step % config.checkpoint_every == 0) or final):
            save_run(out, model, optimizer, step, config, history)
    bar.close()
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - t0
    return {"history": history, "checkpoint": str(out / "last.pt"), "model": model,
            "seconds_per_step": elapsed / max(step - start, 1)}
