"""Full-size evaluation of a checkpoint, stored with its provenance (``make results``).

Runs ``evaluate`` (docs/design.md §7) in every setting below, on this CPU, and writes
compact artefacts that the README and chapter 15 read instead of recomputing them:

    assets/results/eval_<setting>.csv    one row per system (the paper's columns)
    assets/results/pairs_<setting>.csv   every (tracks, reference) pair's AF total
    assets/results/provenance.json       command, commit, checkpoint SHA-256, date, machine, wall times
    assets/results/data_sources.csv      the real songs and references used: package, version, licence
    assets/results/training_log.csv      the shipped checkpoint's training curves (--training-logs)

Settings (5 s sections, test-time optimisation 50 and 100 steps from one run):

    synthetic-same / synthetic-cross   the test songs of a synthetic tree (make-songs)
    real-same / real-cross             the validation split of a real tree (make-real-songs)
    real-mastered                      the real tracks against released mastered mixes

Usage::

    python scripts/results.py --synthetic data/synth --real data/real --references data/refs \\
        [--checkpoint runs/x/last.pt] [--out assets/results] [--settings real-same,...]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from diffmst_lite.book.results import checkpoint_sha256
from diffmst_lite.data.songs import load_songs, reference_songs
from diffmst_lite.files.atomic import atomic_path, write_text
from diffmst_lite.mixing.evaluate import EvalConfig, evaluate, format_win_rates, write_csv, write_pairs_csv
from diffmst_lite.mixing.inference import DEFAULT_CHECKPOINT, load_model

SETTINGS = ("synthetic-same", "synthetic-cross", "real-same", "real-cross", "real-mastered")


def machine(threads: int = 0) -> str:
    """CPU, cores, torch version and the threads each evaluation used."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    threads = threads or torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} thread{'s' * (threads > 1)})"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=Path(__file__).parent).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if done.returncode == 0 else "?"


def write_data_sources(real: str, references: str | None, path: Path) -> None:
    """One row per Debian package of the real trees' songs (``manifest.json``) and of the
    reference folder (``references.csv``): role, package, version, licence(s), songs, minutes."""
    from collections import defaultdict

    groups: dict[tuple, dict] = defaultdict(lambda: {"licences": set(), "songs": 0, "validation": 0, "seconds": 0.0})
    for root in real.split(","):
        for song in json.loads((Path(root) / "manifest.json").read_text())["songs"]:
            if song["status"] == "ok":
                group = groups[("multitrack (" + song["source"] + ")", song["package"], song["version"])]
                group["licences"].add(song["licence"])
                group["songs"] += 1
                group["validation"] += song["split"] == "validation"
                group["seconds"] += song["seconds"]
    if references:
        with open(Path(references) / "references.csv") as handle:
            for row in csv.DictReader(handle):
                group = groups[("mastered reference", row["package"], row["version"])]
                group["licences"].add(row["licence"])
                group["songs"] += 1
                group["seconds"] += float(row["seconds"])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["role", "package", "version", "licence", "songs", "validation_songs", "minutes"])
        for (role, package, version), g in sorted(groups.items()):
            writer.writerow([role, package, version, " / ".join(sorted(g["licences"])), g["songs"],
                             g["validation"], round(g["seconds"] / 60, 1)])


def write_training_log(logs: str, path: Path) -> None:
    """Concatenate the ``log.csv`` of consecutive training phases (``name=run_dir/log.csv,...``)
    into one curve: a ``phase`` column, and steps and seconds counted from the first phase."""
    rows, step0, seconds0 = [], 0, 0.0
    for item in logs.split(","):
        name, log = item.split("=", 1)
        with open(log) as handle:
            phase = list(csv.DictReader(handle))
        for row in phase:
            rows.append({"phase": name, "step": step0 + int(row["step"]),
                         "seconds": round(seconds0 + float(row["seconds"]), 1),
                         **{k: f"{float(v):.6g}" for k, v in row.items() if k not in ("step", "seconds")}})
        step0, seconds0 = rows[-1]["step"], float(rows[-1]["seconds"])
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def songs_and_references(setting: str, args: argparse.Namespace, rate: int) -> tuple[list, list | None, bool]:
    """``(songs, references, cross_song)`` of ``setting``."""
    if setting.startswith("synthetic"):
        return load_songs(args.synthetic, subset="test", sample_rate=rate), None, setting.endswith("cross")
    songs = [song for root in args.real.split(",")
             for song in load_songs(root, subset="train", split="valid", sample_rate=rate)]
    if setting == "real-mastered":
        return songs, reference_songs(args.references, rate), True
    return songs, None, setting == "real-cross"


def run_setting(setting: str, args: argparse.Namespace, checkpoint: Path, threads: int) -> tuple:
    """Evaluate one setting -> ``(setting, table, pairs, songs, references, wall seconds)``."""
    if threads:
        torch.set_num_threads(threads)
    model = load_model(str(checkpoint))
    songs, references, cross = songs_and_references(setting, args, model.config.sample_rate)
    config = EvalConfig(seconds=args.seconds, cross_song=cross,
                        optimize_steps=tuple(int(k) for k in args.steps.split(",")))
    pairs: list[dict] = []
    start = time.perf_counter()
    table = evaluate(model, songs, config, progress=False, references=references, pairs=pairs)
    return setting, table, pairs, len(songs), len(references) if references else None, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", help="synthetic tree (its test songs)")
    parser.add_argument("--real", help="real tree(s), comma-separated (their validation splits)")
    parser.add_argument("--references", help="folder of mastered mixes (real-mastered)")
    parser.add_argument("--checkpoint", help="default: the shipped checkpoint")
    parser.add_argument("--out", default="assets/results")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--steps", default="50,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=1,
                        help="settings evaluated at once, one thread each (default 1: one at a time, all threads)")
    parser.add_argument("--training-logs", metavar="NAME=LOG,...",
                        help="the shipped checkpoint's training phases, in order (their log.csv)")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")

    checkpoint = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    provenance_path = out / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {"settings": {}}
    if args.training_logs:
        write_training_log(args.training_logs, out / "training_log.csv")
    if args.real:
        write_data_sources(args.real, args.references, out / "data_sources.csv")
    command = " ".join(["python", "scripts/results.py", *(argv if argv is not None else sys.argv[1:])])
    threads = 1 if args.jobs > 1 else 0
    with ProcessPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(run_setting, setting, args, checkpoint, threads) for setting in settings]
        for job in as_completed(jobs):
            setting, table, pairs, num_songs, num_references, wall = job.result()
            write_csv(table, out / f"eval_{setting}.csv")
            write_pairs_csv(pairs, out / f"pairs_{setting}.csv")
            provenance["settings"][setting] = {
                "songs": num_songs, "pairs": len(pairs), "references": num_references, "seconds": args.seconds,
                "optimize_steps": [int(k) for k in args.steps.split(",")], "wall_seconds": round(wall, 1),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": command, "commit": commit(), "checkpoint": checkpoint.name,
                "checkpoint_sha256": checkpoint_sha256(checkpoint), "machine": machine(threads),
            }
            write_text(provenance_path, json.dumps(provenance, indent=1) + "\n")
            print(f"{setting}: {len(pairs)} pairs in {wall:.0f} s; "
                  + ", ".join(f"{m} {row['af']:.4g}" for m, row in table.items())
                  + f"; {format_win_rates(pairs)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
