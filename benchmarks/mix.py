"""How fast `diffmst-lite mix` is on a whole song.

Writes an 8-track song (default 3 minutes at 44.1 kHz: four stereo stems of
filtered noise and tones) and a reference to a temporary folder, then times the
command end to end in a subprocess (file reading, prediction on excerpts,
full-length rendering, writing), and, interleaved with it, its baseline, `render`
with a sheet (reading, rendering, writing). After a warm-up pair, ``--pairs``
timed pairs; prints min / median / max wall time and the real-time factor (song
length / median wall time). Target: mix of 3 min at 44.1 kHz <= 5 s.

    .venv/bin/python benchmarks/mix.py [--seconds 180] [--sample-rate 44100] [--pairs 5] [--checkpoint CKPT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import spread


def write_song(folder: Path, seconds: float, sample_rate: int) -> list[Path]:
    rng = np.random.default_rng(0)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    paths = []
    for i, name in enumerate(("drums", "bass", "other", "vocals")):
        tone = np.sin(2 * np.pi * (55 * 2**i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
        noise = np.convolve(rng.standard_normal(n), np.ones(8 + 4 * i) / (8 + 4 * i), mode="same")
        stereo = 0.1 * np.stack([tone + 0.3 * noise, tone - 0.3 * noise], 1)
        path = folder / f"{name}.wav"
        sf.write(path, stereo.astype(np.float32), sample_rate, subtype="FLOAT")
        paths.append(path)
    sf.write(folder / "reference.wav", (0.2 * rng.standard_normal((n, 2))).astype(np.float32), sample_rate)
    return paths


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--pairs", type=int, default=5, help="timed (render, mix) pairs after a warm-up")
    parser.add_argument("--checkpoint", help="default: the shipped model (an untrained one if it is missing)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stems = [str(p) for p in write_song(folder, args.seconds, args.sample_rate)]
        checkpoint = args.checkpoint
        if checkpoint is None:
            from diffmst_lite.mixing import DEFAULT_CHECKPOINT
            from diffmst_lite.model import DiffMST

            checkpoint = str(DEFAULT_CHECKPOINT)
            if not DEFAULT_CHECKPOINT.exists():
                checkpoint = str(folder / "untrained.pt")
                DiffMST.lite(22050).save_checkpoint(checkpoint)
                print("note: no shipped checkpoint, timing an untrained lite model")
        cli = [sys.executable, "-m", "diffmst_lite"]
        load_start = os.getloadavg()[0]
        startup = timed([sys.executable, "-c", "import diffmst_lite.cli, torch"])
        sheet = folder / "sheet.json"
        subprocess.run([*cli, "sheet", *stems, "--out", str(sheet)], check=True, capture_output=True)
        commands = {
            "render with a sheet (baseline)": [*cli, "render", *stems, "--sheet", str(sheet), "--out",
                                               str(folder / "render.wav"), "--force"],
            "mix: predict + render": [*cli, "mix", *stems, "--reference", str(folder / "reference.wav"),
                                      "--checkpoint", checkpoint, "--out", str(folder / "mix.wav"), "--force"],
        }
        for command in commands.values():  # warm-up: file cache, FFT plans
            timed(command)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.pairs):
            for label, command in commands.items():
                times[label].append(timed(command))

    print(f"song: {args.seconds:.0f} s, 8 tracks, {args.sample_rate} Hz; torch threads {torch.get_num_threads()}, "
          f"{args.pairs} pairs after a warm-up")
    print("| step | wall time min / median / max (s) | x real time (median) |")
    print("|---|---|---|")
    print(f"| python + imports | {startup:.2f} | |")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {spread(values, digits=2)} | {args.seconds / median:.1f} |")
    mix = statistics.median(times["mix: predict + render"])
    target = 5.0 * args.seconds / 180.0  # 5 s for a 3-minute song
    print(f"\nSUMMARY mix of {args.seconds:.0f} s, 8 tracks @ {args.sample_rate} Hz: median {mix:.2f} s "
          f"(target <= {target:.2f} s: {'met' if mix <= target else 'NOT met'}), render median "
          f"{statistics.median(times['render with a sheet (baseline)']):.2f} s; load average {load_start:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
