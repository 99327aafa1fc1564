"""Tests of diffmst_lite.training.loop: the loss falls, resume is exact, checkpoints load with
weights_only, a used run directory is refused, and DDP replicas stay equal.

Everything runs a tiny model (preset "tiny", 2 tracks, 1 s segments at 8 kHz,
batch 1) on three short synthetic songs, so the file takes about a minute on 2 cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from diffmst_lite.data import Song
from diffmst_lite.model import DiffMST
from diffmst_lite.data import make_songs
from diffmst_lite.cli import main as cli_main
from diffmst_lite.training.rundir import read_log
from diffmst_lite.training.loop import StyleLoss, TrainConfig, parameter_loss, train

SR = 8000


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def song_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_songs")
    make_songs(root, num_songs=3, seconds=2, seed=0, test_songs=1, sample_rate=SR, renderer="numpy", progress=False)
    return root


@pytest.fixture(scope="session")
def songs(song_root):
    return [Song.from_folder(p, SR, cache=True) for p in sorted((song_root / "train").iterdir()) if p.is_dir()]


def tiny(out: Path, **kw) -> TrainConfig:
    settings = dict(out=str(out), seconds=1.0, sample_rate=SR, preset="tiny", batch_size=1, tracks=2, lr=3e-3,
                    log_every=1, checkpoint_every=0, seed=0)
    return TrainConfig(**{**settings, **kw})


LOSS_COLUMNS = ("step", "loss", "mrstft", "af")


def test_default_options_keep_pytorchs_thread_count(tmp_path, songs):
    """``threads`` defaults to PyTorch's own count; ``threads=1`` sets one for the process."""
    assert TrainConfig().threads == 0
    torch.set_num_threads(2)
    try:
        train(tiny(tmp_path / "default", steps=1), songs=songs, progress=False)
        assert torch.get_num_threads() == 2
        train(tiny(tmp_path / "one", steps=1, threads=1), songs=songs, progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


def test_loss_falls_on_one_batch(tmp_path, songs):
    steps = 100  # ~0.35 s each with one thread
    result = train(tiny(tmp_path / "run", steps=steps, overfit=True), songs=songs, progress=False)
    losses = [row["loss"] for row in result["history"]]
    assert len(losses) == steps and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = losses[0], sum(losses[-5:]) / 5  # measured: 0.92 -> 0.09
    assert last < 0.2 * first, f"loss fell only from {first:.4f} to {last:.4f} in {steps} steps"
    log = read_log(tmp_path / "run" / "log.csv")
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_parameter_loss_counts_real_tracks_only():
    true = torch.rand(2, 3, 26)
    batch = {"track_params": true, "master_params": torch.full((2, 26), 0.5),
             "mask": torch.tensor([[True, True, False], [True, False, False]])}
    predicted = true.clone()
    predicted[0, 2] += 0.9  # a padded track: wrong values must not count
    assert parameter_loss(predicted, batch["master_params"], batch) == 0.0
    predicted[1, 0] += 0.2  # one real track off by 0.2 in every parameter: 3 real tracks in all
    expected = 0.5 * (0.2 ** 2 / 3)
    assert parameter_loss(predicted, batch["master_params"], batch).item() == pytest.approx(expected, rel=1e-4)
    master = batch["master_params"] + 0.1
    assert parameter_loss(true, master, batch).item() == pytest.approx(0.5 * 0.01, rel=1e-4)


def test_parameter_loss_trains_without_the_console(tmp_path, songs):
    with pytest.raises(ValueError, match="Method 2"):
        TrainConfig(method=2, loss="param")
    result = train(tiny(tmp_path / "run", steps=60, loss="param", overfit=True), songs=songs, progress=False)
    losses = [row["param"] for row in result["history"]]
    assert losses[-1] < 0.5 * losses[0], f"param loss fell only from {losses[0]:.4f} to {losses[-1]:.4f}"


def test_own_mix_trains_on_the_songs_own_mixes(tmp_path, songs):
    for bad in (dict(own_mix=0.5, loss="param"), dict(own_mix=0.5, method=2), dict(own_mix=-0.1)):
        with pytest.raises(ValueError, match="own.mix"):
            TrainConfig(**bad)
    # 8 tracks: every segment's tracks fit, so every example's target is the song's own mix
    own, console = (train(tiny(tmp_path / name, steps=2, loss="af", tracks=8, own_mix=share), songs=songs,
                          progress=False)["history"] for name, share in (("own", 1.0), ("console", 0.0)))
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in own)
    assert own[0]["loss"] != console[0]["loss"]


def test_af_term_weights_reweight_the_training_loss():
    for bad, message in ((dict(crestfactor=1.0), "unknown AF terms"), (dict(crest_factor=-1.0), ">= 0")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(loss="af", af_term_weights=bad)
    torch.manual_seed(0)
    mix, target = torch.randn(2, 2, SR), torch.randn(2, 2, SR) * torch.linspace(0, 1, SR) ** 4
    batch = {"target": target}
    paper, terms = StyleLoss(TrainConfig(loss="af", sample_rate=SR), SR)(mix, batch)
    heavier_config = TrainConfig(loss="af", sample_rate=SR, af_term_weights={"crest_factor": 0.1})
    heavier, heavier_terms = StyleLoss(heavier_config, SR)(mix, batch)
    # only the crest-factor term changes weight: 0.001 -> 0.1
    assert terms["af_crest_factor"] > 1.0
    assert float(heavier - paper) == pytest.approx((0.1 - 0.001) * terms["af_crest_factor"], rel=1e-4)
    # the log's "af" stays the paper-weighted total, comparable across runs and with evaluate()
    assert heavier_terms["af"] == pytest.approx(terms["af"]) == pytest.approx(float(paper), rel=1e-5)


def test_resume_is_bit_exact(tmp_path, songs):
    n = 2
    straight = train(tiny(tmp_path / "a", steps=2 * n, loss="mrstft+af", af_weight=0.5), songs=songs,
                     progress=False)
    train(tiny(tmp_path / "b", steps=n, loss="mrstft+af", af_weight=0.5), songs=songs, progress=False)
    with pytest.raises(FileExistsError):  # same dir, no --resume
        train(tiny(tmp_path / "b", steps=2 * n, loss="mrstft+af", af_weight=0.5), songs=songs, progress=False)
    with pytest.raises(ValueError, match="af_weight"):  # resume with a different loss weighting
        train(tiny(tmp_path / "b", steps=2 * n, loss="mrstft+af", resume=True), songs=songs, progress=False)
    resumed = train(tiny(tmp_path / "b", steps=2 * n, loss="mrstft+af", af_weight=0.5, resume=True), songs=songs,
                    progress=False)
    a = torch.load(straight["checkpoint"], weights_only=True)
    b = torch.load(resumed["checkpoint"], weights_only=True)
    assert a["step"] == b["step"] == 2 * n
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])
    rows_a = [{k: r[k] for k in LOSS_COLUMNS} for r in read_log(tmp_path / "a" / "log.csv")]
    rows_b = [{k: r[k] for k in LOSS_COLUMNS} for r in read_log(tmp_path / "b" / "log.csv")]
    assert rows_a == rows_b and len(rows_a) == 2 * n
    # training changed the weights at all (the equality above is not vacuous)
    torch.manual_seed(0)
    fresh = DiffMST.from_config(a["config"])
    assert any(not torch.equal(v, a["model"][k]) for k, v in fresh.state_dict().items() if v.is_floating_point())


def test_checkpoints_load_weights_only(tmp_path, songs, song_root):
    out = tmp_path / "run"
    train(tiny(out, steps=2, checkpoint_every=1, method=2, loss="af"), songs=songs, progress=False)
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "step_0000001.pt", "step_0000002.pt"]
    assert not list(out.glob("*.tmp"))
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["train_config"]["method"] == 2
    rng = ckpt["rng"]
    assert all(isinstance(rng[k], torch.Tensor) for k in ("torch", "numpy", "python"))
    assert rng["numpy"].numel() == 624 and rng["python"].numel() == 625
    model = DiffMST.load_checkpoint(str(out / "last.pt"))
    assert model.config.sample_rate == SR
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())
    assert set(read_log(out / "log.csv")[0]) >= {"step", "loss", "af", "af_rms", "af_bark_spectrum", "seconds"}
    # the command line resumes it: unspecified settings (method 2, tiny, 8 kHz ...) come from the run
    assert cli_main(["train", "--out", str(out), "--resume", "--steps", "3", "--data", str(song_root),
                     "--no-progress"]) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["train_config"]["method"] == 2 and ckpt["train_config"]["sample_rate"] == SR
    assert [r["step"] for r in read_log(out / "log.csv")] == [1, 2, 3]


def test_refuses_a_used_run_dir(tmp_path, song_root, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an earlier run")
    args = ["train", "--data", str(song_root), "--out", str(out), "--steps", "1", "--sample-rate", str(SR),
            "--seconds", "1", "--preset", "tiny", "--batch-size", "1", "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--force" in err
    assert (out / "last.pt").read_bytes() == b"an earlier run"
    assert cli_main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "new")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert cli_main(args[:3] + ["--out", str(tmp_path / "r2"), "--method", "2", "--loss", "mrstft"]) == 2
    assert "only --loss af" in capsys.readouterr().err
    assert cli_main(args[:3] + ["--out", str(tmp_path / "r3"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_several_data_trees_train_together(tmp_path, song_root):
    """``--data a,b`` draws from the training songs of both trees (real + synthetic songs)."""
    from diffmst_lite.training.loop import training_songs

    other = tmp_path / "other"
    make_songs(other, num_songs=2, seconds=2, seed=5, test_songs=1, sample_rate=SR, renderer="numpy", progress=False)
    one = training_songs(tiny(tmp_path / "a", data=str(song_root)), tmp_path, 0, 1, False)
    two = training_songs(tiny(tmp_path / "b", data=str(other)), tmp_path, 0, 1, False)
    both = training_songs(tiny(tmp_path / "b", data=f"{song_root},{other}"), tmp_path, 0, 1, False)
    assert len(one) >= 1 and len(two) >= 1 and len(both) == len(one) + len(two)
    assert [s.name for s in both] == [s.name for s in one + two]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        training_songs(tiny(tmp_path / "c", data=f"{song_root},{tmp_path / 'nowhere'}"), tmp_path, 0, 1, False)


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from diffmst_lite.training.loop import TrainConfig, train
    torch.set_num_threads(1)
    data, out = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(data=data, out=out, seconds=1.0, sample_rate=8000, preset="tiny", batch_size=1, tracks=2,
                      lr=3e-3, steps=3, log_every=1, checkpoint_every=0, seed=0)
    result = train(cfg, progress=False)
    params = {name: p.detach() for name, p in result["model"].named_parameters()}
    torch.save(params, os.path.join(out, f"params_rank{os.environ['RANK']}.pt"))
""")


def test_ddp_two_processes_stay_in_sync(tmp_path, song_root):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(script), str(song_root), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = (torch.load(out / f"params_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert p0.keys() == p1.keys() and len(p0) > 10
    for name in p0:
        assert torch.equal(p0[name], p1[name]), name
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 3
    for name in p0:  # rank 0 wrote the checkpoint of exactly these weights
        assert torch.equal(ckpt["model"][name], p0[name]), name
    assert [r["step"] for r in read_log(out / "log.csv")] == [1, 2, 3]


def test_training_curves_figure_draws_each_run_and_its_running_mean():
    import matplotlib

    matplotlib.use("Agg")
    from diffmst_lite.book.plotting import training_curves_figure

    log_csv = [{"step": str(10 * (i + 1)), "af": str(v)} for i, v in enumerate([4.0, 2.0, 0.0, 6.0, 8.0, 1.0])]
    history = [{"step": s, "af": 1.0} for s in (61, 62, 63)]
    fig = training_curves_figure({"p1": log_csv, "p2": history}, key="af", window=3, log_scale=True)
    ax = fig.axes[0]
    raw, smooth, raw2, smooth2 = ax.lines
    assert list(raw.get_xdata()) == [10, 20, 30, 40, 50, 60]
    # running mean of min(3, 6 // 3) = 2 rows, drawn from the second row on
    assert list(smooth.get_xdata()) == [20, 30, 40, 50, 60]
    assert list(smooth.get_ydata()) == [3.0, 1.0, 3.0, 7.0, 4.5]
    assert list(smooth2.get_ydata()) == [1.0, 1.0, 1.0]  # 3 rows: a window of 1
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "optimiser step"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["p1 (running mean of 2)",
                                                                   "p2 (running mean of 1)"]
    # twelve phases: twelve colours, and the legend below the plot, not over the last phases' curves
    phases = {f"p{k}": [{"step": 10 * k + i, "af": 1.0} for i in range(3)] for k in range(1, 13)}
    ax = training_curves_figure(phases, key="af").axes[0]
    assert len({matplotlib.colors.to_hex(line.get_color()) for line in ax.lines}) == 12
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0
    # terms drawn one call each into one axes (chapter 12) still get a colour each
    ax = training_curves_figure({"rms": history}, key="af").axes[0]
    training_curves_figure({"width": history}, key="af", ax=ax)
    assert ax.lines[0].get_color() != ax.lines[2].get_color()
    matplotlib.pyplot.close("all")
