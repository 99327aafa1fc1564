"""Full-size evaluation of a checkpoint, stored with its provenance (``make results``).

Runs ``evaluate`` (docs/design.md §7) in every setting below, on this CPU, and writes
compact artefacts that the README and chapter 15 read instead of recomputing them:

    assets/results/eval_<setting>.csv    one row per system (the paper's columns)
    assets/results/pairs_<setting>.csv   every (tracks, reference) pair's AF total
    assets/results/provenance.json       command, commit, checkpoint SHA-256, date, machine, wall times
    assets/results/data_sources.csv      the real songs and references used: package, version, licence

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
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffmst_lite.data.songs import load_songs, reference_songs
from diffmst_lite.mixing.evaluate import EvalConfig, evaluate, format_win_rates, write_csv, write_pairs_csv
from diffmst_lite.mixing.inference import DEFAULT_CHECKPOINT, load_model

SETTINGS = ("synthetic-same", "synthetic-cross", "real-same", "real-cross", "real-mastered")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    threads = torch.get_num_threads()
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
    import csv
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
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["role", "package", "version", "licence", "songs", "validation_songs", "minutes"])
        for (role, package, version), g in sorted(groups.items()):
            writer.writerow([role, package, version, " / ".join(sorted(g["licences"])), g["songs"],
                             g["validation"], round(g["seconds"] / 60, 1)])


def songs_and_references(setting: str, args: argparse.Namespace, rate: int) -> tuple[list, list | None, bool]:
    """``(songs, references, cross_song)`` of ``setting``."""
    if setting.startswith("synthetic"):
        return load_songs(args.synthetic, subset="test", sample_rate=rate), None, setting.endswith("cross")
    songs = [song for root in args.real.split(",")
             for song in load_songs(root, subset="train", split="valid", sample_rate=rate)]
    if setting == "real-mastered":
        return songs, reference_songs(args.references, rate), True
    return songs, None, setting == "real-cross"


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
    args = parser.parse_args(argv)

    checkpoint = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    model = load_model(str(checkpoint))
    rate = model.config.sample_rate
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    provenance_path = out / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {"settings": {}}
    if args.real:
        write_data_sources(args.real, args.references, out / "data_sources.csv")
    config = EvalConfig(seconds=args.seconds, optimize_steps=tuple(int(k) for k in args.steps.split(",")))
    for setting in args.settings.split(","):
        if setting not in SETTINGS:
            parser.error(f"unknown setting {setting!r}; choose from {', '.join(SETTINGS)}")
        songs, references, cross = songs_and_references(setting, args, rate)
        config.cross_song = cross
        pairs: list[dict] = []
        start = time.perf_counter()
        results = evaluate(model, songs, config, references=references, pairs=pairs)
        wall = time.perf_counter() - start
        write_csv(results, out / f"eval_{setting}.csv")
        write_pairs_csv(pairs, out / f"pairs_{setting}.csv")
        provenance["settings"][setting] = {
            "songs": len(songs), "pairs": len(pairs), "references": len(references) if references else None,
            "seconds": args.seconds, "optimize_steps": list(config.optimize_steps), "wall_seconds": round(wall, 1),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "scripts/results.py", *(argv if argv is not None else sys.argv[1:])]),
            "commit": commit(), "checkpoint": checkpoint.name, "checkpoint_sha256": sha256(checkpoint),
            "machine": machine(),
        }
        provenance_path.write_text(json.dumps(provenance, indent=1) + "\n")
        print(f"{setting}: {len(pairs)} pairs in {wall:.0f} s; "
              + ", ".join(f"{m} {row['af']:.4g}" for m, row in results.items()) + f"; {format_win_rates(pairs)}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
