"""Full-size evaluation of a checkpoint, stored with its provenance (``make results``).

Runs ``evaluate`` (docs/design.md §7) in every setting below, on this CPU, and writes
compact artefacts that the README and chapter 15 read instead of recomputing them:

    assets/results/eval_<setting>.csv    one row per system (the paper's columns)
    assets/results/pairs_<setting>.csv   every (tracks, reference) pair's AF total
    assets/results/provenance.json       command, commit, checkpoint SHA-256, date, machine, wall times
    assets/results/data_sources.csv      the real songs and references used: package, version, licence
    assets/results/training_log.csv      the shipped checkpoint's training curves (--training-logs)
    assets/results/clips.json, *.ogg     listening examples (step ``clips``) with their provenance

Settings (5 s sections, test-time optimisation 50 and 100 steps from one run):

    synthetic-same / synthetic-cross   the test songs of a synthetic tree (make-songs)
    synthetic-fresh-same / -cross      the same for a second, larger synthetic test set (--synthetic-fresh)
    real-same / real-cross             the validation split of a real tree (make-real-songs)
    real-mastered                      the real tracks against released mastered mixes

and the step ``clips`` (about 10 CPU-minutes): short Ogg Vorbis excerpts of two development
songs mixed by the model, by 100 steps of test-time optimisation and at equal loudness,
beside their reference (see :data:`CLIP_EXAMPLES`).

Usage::

    python scripts/results.py --synthetic data/synth --synthetic-fresh data/synth_fresh --real data/real \\
        --references data/refs \\
        [--checkpoint runs/x/last.pt] [--out assets/results] [--settings real-same,...,clips]
    python scripts/results.py --real data/real,data/realmidi --references data/refs --settings clips
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

import soundfile as sf
import torch

from diffmst_lite.book.notebook import level_gains_db
from diffmst_lite.book.results import checkpoint_sha256
from diffmst_lite.console.sheet import params_to_sheet
from diffmst_lite.data.realsongs import check_allowed
from diffmst_lite.data.songs import Song, load_songs, reference_songs
from diffmst_lite.dsp.loudness import integrated_loudness
from diffmst_lite.files.atomic import atomic_path, write_json, write_text
from diffmst_lite.losses.style import AudioFeatureLoss
from diffmst_lite.mixing.evaluate import (EvalConfig, equal_loudness_params, evaluate, format_win_rates, score,
                                          write_csv, write_pairs_csv)
from diffmst_lite.mixing.inference import (DEFAULT_CHECKPOINT, load_model, loudest_excerpt, optimize_sheet,
                                           predict_sheet, render_sheet)

SETTINGS = ("synthetic-same", "synthetic-cross", "synthetic-fresh-same", "synthetic-fresh-cross", "real-same",
            "real-cross", "real-mastered")
STEPS = (*SETTINGS, "clips")

# Listening examples: (example, a development (validation split) song of --real, the reference:
# a file of --references, or None for the song's own mix). Development songs only; none of the
# sources held out for the project's outside evaluation.
CLIP_EXAMPLES = (
    ("same-song", "lmms-impulslogik-zen", None),
    ("mastered-reference", "midi-openttd-openmsx-city-blues-redfarn", "asc-music/music-frontiers.mp3"),
)
# Title and author of the clips' music (the manifests give package, version and licence):
# lmms-common's debian/copyright ("2010 Impulslogik"; the project Impulslogik-Zen.mmpz),
# openttd-openmsx's readme.txt and openmsx.obm (city_blues_redfarn.mid = "City Blues", the
# 'Ezy Street' tracks by Jim Redfarn), asc-music's debian/copyright (2002 Michael Kievernagel).
ATTRIBUTION = {
    "lmms-impulslogik-zen": ("Zen", "Impulslogik"),
    "midi-openttd-openmsx-city-blues-redfarn": ("City Blues", "Jim Redfarn"),
    "music-frontiers": ("Frontiers", "Michael Kievernagel"),
}
VORBIS_LEVEL = 0.3  # soundfile's compression level for Vorbis (0 best): about 96 kb/s at 22.05 kHz stereo


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


def stamp(command: str, checkpoint: Path, threads: int = 0) -> dict:
    """The provenance every step records: date, command, commit, checkpoint (name and SHA-256), machine."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "commit": commit(), "checkpoint": checkpoint.name,
            "checkpoint_sha256": checkpoint_sha256(checkpoint), "machine": machine(threads)}


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


def song_options(setting: str) -> list[str]:
    """The command-line options that name the songs (and references) of ``setting``."""
    if setting.startswith("synthetic-fresh"):
        return ["--synthetic-fresh"]
    if setting.startswith("synthetic"):
        return ["--synthetic"]
    return ["--real", "--references"] if setting == "real-mastered" else ["--real"]


def option_value(args: argparse.Namespace, option: str):
    """The value of ``--some-option`` in ``args``."""
    return getattr(args, option[2:].replace("-", "_"))


def songs_and_references(setting: str, args: argparse.Namespace, rate: int) -> tuple[list, list | None, bool]:
    """``(songs, references, cross_song)`` of ``setting``."""
    if setting.startswith("synthetic"):
        root = option_value(args, song_options(setting)[0])
        return load_songs(root, subset="test", sample_rate=rate), None, setting.endswith("cross")
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


def song_source(song: Song) -> dict:
    """Title, author, package, version, licence and renderer of a development song (its
    ``song.json``, written by ``make-real-songs``, and :data:`ATTRIBUTION`)."""
    info = json.loads((Path(song.files["mixture"]).parent / "song.json").read_text())
    title, author = ATTRIBUTION[song.name]
    return {"song": song.name, "title": title, "author": author, "package": info["package"],
            "version": info["version"], "licence": info["licence"], "source": info["file"],
            "renderer": info["renderer"] + (f" (SoundFont licence: {info['soundfont_licence']})"
                                            if info.get("soundfont_licence") else "")}


def reference_source(references: str, file: str) -> dict:
    """The same for a mastered reference (a row of ``references.csv``, e.g. ``asc-music/x.mp3``)."""
    with open(Path(references) / "references.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["file"] == file)
    name = Path(file).stem
    title, author = ATTRIBUTION[name]
    return {"song": name, "title": title, "author": author, "package": row["package"], "version": row["version"],
            "licence": row["licence"], "source": row["source"], "renderer": "released recording (mastered)"}


def write_clips(args: argparse.Namespace, checkpoint: Path, out: Path, recorded: dict) -> dict:
    """Listening examples (step ``clips``): for each of :data:`CLIP_EXAMPLES`, the reference
    and three mixes of the song's tracks, ``args.clip_seconds`` each, as Ogg Vorbis in ``out``,
    and ``out/clips.json`` (one entry per clip, and the provenance). Returns the provenance.

    The mixes follow chapter 14 (:mod:`diffmst_lite.mixing.inference`): a sheet from the whole
    tracks and reference (each seen through its loudest 10 s): the model's prediction,
    ``args.clip_steps`` steps of test-time optimisation, or every track at the same loudness;
    rendered over the whole song, then cut to the middle ``args.clip_seconds`` of the song. The
    reference clip is the song's own mix over the same window (same-song), or the loudest
    ``args.clip_seconds`` of the mastered reference (cross-song). Each example's clips are stored
    loudness-matched (-23 LUFS, lowered together if a peak would pass -1 dBFS); ``lufs`` is a
    clip's loudness as rendered, ``af`` its AF total against the reference clip
    (:func:`~diffmst_lite.mixing.evaluate.score`). ``recorded``: the provenance every step records
    (:func:`stamp`).
    """
    start_time = time.perf_counter()
    model = load_model(str(checkpoint))
    rate = model.config.sample_rate
    songs = {song.name: song for root in args.real.split(",")
             for song in load_songs(root, subset="train", split="valid", sample_rate=rate)}
    loss, length = AudioFeatureLoss(rate), int(args.clip_seconds * rate)
    optimised = f"optimised ({args.clip_steps} steps)"
    clips = []
    for example, name, reference_file in CLIP_EXAMPLES:
        if name not in songs:
            raise ValueError(f"{name}: not a development (validation) song of {args.real}")
        song = songs[name]
        tracks_np, mixture_np = song.audio()
        tracks, names = torch.from_numpy(tracks_np), [n.replace(".", "_") for n in song.track_names]
        start = (song.num_samples - length) // 2  # the middle of the song
        source = song_source(song)
        if reference_file is None:
            reference = torch.from_numpy(mixture_np)
            group = {"reference": reference[:, start : start + length]}
            reference_info = {**source, "system": "song's own mix (reference)"}
        else:
            reference = torch.from_numpy(reference_songs([Path(args.references) / reference_file], rate)[0].audio()[1])
            group = {"reference": loudest_excerpt(reference, rate, args.clip_seconds)}
            reference_info = {**reference_source(args.references, reference_file), "system": "mastered reference"}
        for info in (source, reference_info):
            check_allowed(info["package"], info["source"])  # never a held-out source
        sheets = {
            "model": predict_sheet(model, tracks, reference, rate, names)[0],
            optimised: optimize_sheet(tracks, reference, rate, names, steps=args.clip_steps, progress=False),
            "equal-loudness": params_to_sheet(*(p[0] for p in equal_loudness_params(tracks[None], rate)), rate, names),
        }
        group.update({system: render_sheet(tracks, sheet, rate)[:, start : start + length]
                      for system, sheet in sheets.items()})
        gains = level_gains_db([x.double().numpy() for x in group.values()], rate, "loudness")
        for (system, audio), gain in zip(group.items(), gains):
            file = f"{example}_{system.split(' (')[0]}.ogg"
            with atomic_path(out / file) as tmp:
                sf.write(tmp, (audio * 10 ** (gain / 20)).numpy().T, rate, format="OGG", subtype="VORBIS",
                         compression_level=VORBIS_LEVEL)
            with torch.no_grad():
                af = None if system == "reference" else round(score(audio[None], group["reference"][None], loss)["af"], 6)
            own = system != "reference" or reference_file is None  # cut from the song's middle
            excerpt = f"{'middle' if own else 'loudest'} {args.clip_seconds:g} s of the {'song' if own else 'recording'}"
            clips.append({"file": file, "example": example,
                          **(reference_info if system == "reference" else {**source, "system": system}),
                          "excerpt": excerpt, "seconds": round(audio.shape[-1] / rate, 2),
                          "lufs": round(integrated_loudness(audio, rate), 2), "stored_gain_db": round(float(gain), 2),
                          "af": af})
        print(f"{example} ({name}): " + ", ".join(f"{c['system']} AF {c['af']:.4g}" for c in clips[-3:]), flush=True)
    provenance = {"clips": len(clips), "seconds": args.clip_seconds, "optimize_steps": [args.clip_steps],
                  "sample_rate": rate, "wall_seconds": round(time.perf_counter() - start_time, 1), **recorded}
    write_json(out / "clips.json", {"provenance": provenance, "clips": clips})
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", help="synthetic tree (its test songs)")
    parser.add_argument("--synthetic-fresh", help="a second synthetic tree from another seed (its test songs)")
    parser.add_argument("--real", help="real tree(s), comma-separated (their validation splits)")
    parser.add_argument("--references", help="folder of mastered mixes (real-mastered)")
    parser.add_argument("--checkpoint", help="default: the shipped checkpoint")
    parser.add_argument("--out", default="assets/results")
    parser.add_argument("--settings", default=",".join(STEPS),
                        help=f"steps to run, comma-separated (default all: {', '.join(STEPS)})")
    parser.add_argument("--steps", default="50,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clip-seconds", type=float, default=6.0, help="length of each listening example (<= 10)")
    parser.add_argument("--clip-steps", type=int, default=100, help="optimisation steps of the listening examples")
    parser.add_argument("--jobs", type=int, default=1,
                        help="settings evaluated at once, one thread each (default 1: one at a time, all threads)")
    parser.add_argument("--training-logs", metavar="NAME=LOG,...",
                        help="the shipped checkpoint's training phases, in order (their log.csv)")
    args = parser.parse_args(argv)
    steps = args.settings.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(STEPS)}")
    if "clips" in steps and not (args.real and args.references and 0 < args.clip_seconds <= 10):
        parser.error("clips needs --real and --references, and --clip-seconds of at most 10")
    settings = [s for s in steps if s in SETTINGS]
    for setting in settings:
        missing = [option for option in song_options(setting) if not option_value(args, option)]
        if missing:
            parser.error(f"setting {setting} needs {' and '.join(missing)}")

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
                **stamp(command, checkpoint, threads),
            }
            write_text(provenance_path, json.dumps(provenance, indent=1) + "\n")
            print(f"{setting}: {len(pairs)} pairs in {wall:.0f} s; "
                  + ", ".join(f"{m} {row['af']:.4g}" for m, row in table.items())
                  + f"; {format_win_rates(pairs)}", flush=True)
    if "clips" in steps:
        done = write_clips(args, checkpoint, out, stamp(command, checkpoint))
        print(f"clips: {done['clips']} in {done['wall_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
