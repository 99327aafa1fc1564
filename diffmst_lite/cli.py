"""The ``diffmst-lite`` command (also ``python -m diffmst_lite``).

Every subcommand prints errors as one line on stderr and exits non-zero; no
existing output file is overwritten without ``--force``. Set ``DIFFMST_DEBUG=1``
to see full tracebacks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

from diffmst_lite.files.atomic import check_output, write_text
from diffmst_lite.files.audio import AudioError, check_audio_output, load_audio, save_audio
from diffmst_lite.console.sheet import SheetError
from diffmst_lite.dsp.loudness import BS1770_BLOCK_SECONDS


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def load_tracks(paths: list[str]) -> tuple[torch.Tensor, list[str], int]:
    """Load track files as mono tracks ``(T, N)``; a stereo file becomes ``<name>_L``, ``<name>_R``.

    The files' headers are checked first; then each file is decoded straight into its rows
    of ``(T, N)`` (no per-file copies to stack).

    Raises:
        CommandError: files with different sample rates or lengths, or more than 2 channels.
        AudioError: a missing or unreadable file, or empty or non-finite audio.
    """
    from diffmst_lite.dsp.threads import thread_map
    from diffmst_lite.files.audio import audio_info, decode_into, validate_audio

    infos = [audio_info(path) for path in paths]
    names, rows, first = [], [], 0
    for path, info in zip(paths, infos):
        stem = Path(path).stem
        if info.channels not in (1, 2):
            raise CommandError(f"{path}: has {info.channels} channels; tracks must be mono or stereo")
        names += [stem] if info.channels == 1 else [f"{stem}_L", f"{stem}_R"]
        rows.append(slice(first, first + info.channels))
        first += info.channels
    for field, what, unit, fix in (("sample_rate", "sample rates", "Hz", "resample them to one rate"),
                                   ("frames", "lengths", "samples", "trim or pad them to one length")):
        if len({getattr(info, field) for info in infos}) > 1:
            detail = ", ".join(f"{Path(p).name}: {getattr(info, field)} {unit}" for p, info in zip(paths, infos))
            raise CommandError(f"tracks have different {what} ({detail}); {fix}")
    num_samples = infos[0].frames
    tracks = torch.empty(first, num_samples, dtype=torch.float32)
    # on several threads: libsndfile's decoding releases the GIL
    decoded = thread_map(lambda i: decode_into(paths[i], infos[i].readable, tracks[rows[i]]), range(len(paths)))
    for path, count, part in zip(paths, decoded, rows):
        if count != num_samples:
            raise CommandError(f"{path}: decoded {count} samples where its header says {num_samples}")
        validate_audio(tracks[part], name=str(path))
    return tracks, names, infos[0].sample_rate


def refuse_overwrite(path: str | None, force: bool) -> None:
    """Check an output file before the command computes (see :func:`check_output`)."""
    if path:
        check_output(path, force)


def write_json(document: dict, out: str | None, force: bool) -> None:
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    refuse_overwrite(out, force)
    write_text(out, text)
    print(f"wrote {out}", file=sys.stderr)


# ------------------------------------------------------------------ commands


def cmd_sheet(args: argparse.Namespace) -> None:
    from diffmst_lite.console.sheet import neutral_sheet

    _, names, rate = load_tracks(args.tracks)
    write_json(neutral_sheet(names, rate), args.out, args.force)


def cmd_render(args: argparse.Namespace) -> None:
    from diffmst_lite.mixing.inference import render_sheet, start_warm_up
    from diffmst_lite.console.sheet import read_sheet

    check_audio_output(args.out, args.force)
    start_warm_up()
    tracks, names, rate = load_tracks(args.tracks)
    sheet = read_sheet(args.sheet)
    mix = render_sheet(tracks, sheet, rate)  # checks the sheet's rate and track count first
    sheet_names = [t["name"] for t in sheet["tracks"]]
    if sheet_names != names:  # after the checks: a note only for a sheet that fits
        print(f"note: sheet track names {sheet_names} differ from the files' {names}; "
              "rendered in the order given", file=sys.stderr)
    save_audio(args.out, mix, rate, force=args.force)
    report_mix(args.out, mix, rate, len(names))


def report_mix(path: str, mix: torch.Tensor, rate: int, num_tracks: int) -> None:
    peak = float(mix.abs().max())
    note = f" (peak {20 * torch.log10(torch.tensor(peak)):.1f} dBFS: above 0 dBFS, kept as float)" if peak > 1 else ""
    tracks = f"{num_tracks} track{'s' if num_tracks != 1 else ''}"
    print(f"wrote {path}: {tracks}, {mix.shape[-1] / rate:.2f} s at {rate} Hz{note}", file=sys.stderr)


def cmd_mix(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from diffmst_lite.files.audio import resample
    from diffmst_lite.mixing.inference import (
        load_model,
        lower_to_peak,
        match_reference_loudness,
        optimize_sheet,
        predict_sheet,
        render_sheet,
        start_warm_up,
        with_limiter,
    )
    from diffmst_lite.console.sheet import write_sheet

    check_audio_output(args.out, args.force)
    refuse_overwrite(args.sheet_out, args.force)
    if args.sheet_out and Path(args.sheet_out).resolve() == Path(args.out).resolve():
        raise CommandError(f"--out and --sheet-out are both {args.out}; give the sheet another name")
    if args.optimize and args.checkpoint:
        raise CommandError("use either --checkpoint or --optimize, not both")
    if args.optimize and args.refine:
        raise CommandError("use either --optimize (no network) or --refine (the network's prediction, refined), "
                           "not both")
    start_warm_up()
    with ThreadPoolExecutor(1, thread_name_prefix="diffmst-model") as pool:  # loads while the tracks are read
        model = None if args.optimize else pool.submit(load_model, args.checkpoint)
        reference = pool.submit(load_audio, args.reference)
        tracks, names, rate = load_tracks(args.tracks)
        model, (reference, ref_rate) = model and model.result(), reference.result()
    if reference.shape[0] == 1:
        reference = reference.expand(2, -1)
    elif reference.shape[0] != 2:
        raise CommandError(f"{args.reference}: has {reference.shape[0]} channels; the reference must be stereo or mono")
    if ref_rate != rate:
        reference = resample(reference, ref_rate, rate)
    checks = ((reference, f"{args.reference}: is", f"{args.reference}: is silent; a reference needs sound to match"),
              (tracks, "the tracks are", "every track is silent; nothing to mix"))
    for audio, subject, silent in checks:
        if audio.shape[-1] < BS1770_BLOCK_SECONDS * rate:  # loudness matching and the model need a block
            raise CommandError(f"{subject} {audio.shape[-1] / rate:.3f} s long; mix needs at least "
                               f"{BS1770_BLOCK_SECONDS} s (one loudness block of ITU-R BS.1770)")
        if not any(torch.aminmax(audio)):  # one pass, no song-sized temporary
            raise CommandError(silent)
    if args.optimize:
        sheet = optimize_sheet(tracks, reference, rate, names, args.excerpt, args.steps)
    else:
        sheet, moved = predict_sheet(model, tracks, reference, rate, names, args.excerpt)
        if moved:
            print(f"note: {moved} predicted settings lay outside their range at {rate} Hz and were moved to "
                  f"its edge (the model works at {model.config.sample_rate} Hz, where an EQ band whose range "
                  "lies above 0.45 fs covers the octave below it instead, as band 3 does; docs/design.md §4.1)",
                  file=sys.stderr)
        if args.refine:
            sheet = optimize_sheet(tracks, reference, rate, names, args.excerpt, args.refine, start=sheet)
    if not args.keep_level:
        if not args.no_limiter:
            sheet = with_limiter(sheet, ceiling_dbtp=-1.0)
        sheet, info = match_reference_loudness(sheet, tracks, reference, rate, args.excerpt)
        limit = {"peak": " (limited to keep the peak at -1 dBFS)", "range": " (limited by the gain's range)"}
        stage = (f"master output gain {info['change_db']:+.1f} dB" if args.no_limiter
                 else f"{info['change_db']:+.1f} dB into a true-peak limiter at -1 dBTP")
        print(f"{stage} to match the reference's loudness ({info['reference_lufs']:.1f} LUFS)"
              f"{limit.get(info['limited_by'], '')}", file=sys.stderr)
    mix = render_sheet(tracks, sheet, rate)
    if not args.keep_level:  # the loudest excerpt may miss the song's highest peak
        sheet, mix, change = lower_to_peak(sheet, mix)
        if change <= -0.05:  # worth a line (a change that rounds to -0.0 dB is not)
            print(f"master output gain {change:+.1f} dB more: the whole song peaked above -1 dBFS", file=sys.stderr)
    save_audio(args.out, mix, rate, force=args.force)
    if args.sheet_out:
        write_sheet(sheet, args.sheet_out, force=args.force)
        print(f"wrote {args.sheet_out}", file=sys.stderr)
    report_mix(args.out, mix, rate, len(names))


def cmd_features(args: argparse.Namespace) -> None:
    from diffmst_lite.dsp.loudness import integrated_loudness
    from diffmst_lite.losses.features import all_features

    audio, rate = load_audio(args.file)
    if audio.shape[0] == 1:
        audio = audio.expand(2, -1)
    elif audio.shape[0] != 2:
        raise CommandError(f"{args.file}: has {audio.shape[0]} channels; expected mono or stereo")
    with torch.no_grad():
        feats = {k: v[0].tolist() for k, v in all_features(audio[None].contiguous(), rate).items()}
    document = {
        "file": str(args.file),
        "sample_rate": rate,
        "seconds": round(audio.shape[-1] / rate, 3),
        # null for silence (not -Infinity, which is not JSON) and below one 0.4 s block (undefined)
        "loudness_lufs": round(lufs, 2) if math.isfinite(lufs := integrated_loudness(audio, rate))
        and audio.shape[-1] >= BS1770_BLOCK_SECONDS * rate else None,
        "rms_db": feats["rms"],
        "crest_factor_db": feats["crest_factor"],
        "stereo_width": feats["stereo_width"],
        "stereo_imbalance": feats["stereo_imbalance"],
        "bark_spectrum": {"mid": feats["bark_spectrum"][0], "side": feats["bark_spectrum"][1]},
    }
    write_json(document, args.out, args.force)


def positive_steps(text: str) -> int:
    """``--refine 30`` -> 30; a clear error for anything but a count >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a step count >= 1, e.g. 30")
    return int(text)


def excerpt_seconds(text: str) -> float:
    """``--excerpt 10`` -> 10.0; a clear error below 1 s (loudness needs 0.4 s blocks, and
    the settings are estimated on the excerpt)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 1.0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds >= 1, e.g. 10")
    return seconds


def step_counts(text: str) -> tuple[int, ...]:
    """``--steps 50,100`` -> ``(50, 100)``; a clear error for anything but counts >= 0."""
    try:
        counts = tuple(int(k) for k in text.split(","))
    except ValueError:
        counts = (-1,)
    if any(k < 0 for k in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected step counts >= 0, e.g. 100 or 50,100")
    return counts


def cmd_evaluate(args: argparse.Namespace) -> None:
    from diffmst_lite.data.songs import load_songs, reference_songs
    from diffmst_lite.mixing.evaluate import (
        EvalConfig,
        evaluate,
        format_table,
        format_win_rates,
        write_csv,
        write_pairs_csv,
    )
    from diffmst_lite.mixing.inference import load_model

    refuse_overwrite(args.out, args.force)
    refuse_overwrite(args.pairs_out, args.force)
    model = load_model(args.checkpoint)
    rate = model.config.sample_rate
    subset, split = ("test", None) if args.split == "test" else ("train", "valid")
    songs = load_songs(args.data, subset=subset, split=split, sample_rate=rate, max_songs=args.max_songs)
    references = reference_songs(args.references, rate) if args.references else None
    config = EvalConfig(seconds=args.seconds, cross_song=args.cross_song, optimize_steps=args.steps,
                        refine_steps=args.refine, max_songs=args.max_songs, seed=args.seed)
    pairs: list[dict] = []
    results = evaluate(model, songs, config, references=references, pairs=pairs)
    print(format_table(results))
    print(format_win_rates(pairs))
    write_csv(results, args.out)
    if args.pairs_out:
        write_pairs_csv(pairs, args.pairs_out)
    against = f" against {len(references)} reference mixes in {args.references}" if references else ""
    print(f"wrote {args.out}: {len(songs)} {args.split} songs{against}", file=sys.stderr)


def cmd_make_songs(args: argparse.Namespace) -> None:
    from diffmst_lite.data.song_trees import make_songs

    try:
        result = make_songs(args.dir, args.songs, args.seconds, args.seed, test_songs=args.test_songs,
                            sample_rate=args.sample_rate, extra_stems=args.extra_stems, overwrite=args.force,
                            renderer=args.renderer, varied=args.varied)
    except (FileExistsError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"wrote {len(result['train'])} train and {len(result['test'])} test songs to {args.dir} "
          f"(synthetic; renderer: {result['renderer']})", file=sys.stderr)


def train_config(args: argparse.Namespace):
    """The :class:`~diffmst_lite.training.loop.TrainConfig` of ``diffmst-lite train``: the options given;
    on ``--resume`` the others come from the run's own checkpoint, else from the defaults."""
    import dataclasses

    from diffmst_lite.model.diffmst import read_checkpoint
    from diffmst_lite.training.loop import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: getattr(args, name) for name in fields  # flags: only if set
             if getattr(args, name, None) is not None and getattr(args, name) is not False}
    base: dict = {}
    last = Path(args.out) / "last.pt"
    if args.resume and last.is_file():
        base = {k: v for k, v in read_checkpoint(last)["train_config"].items() if k in fields}
        base.update(init=None, force=False)
    return TrainConfig(**{**base, **given})


def cmd_train(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from diffmst_lite.training.loop import train

    result = train(train_config(args), progress=not args.no_progress)
    if int(os.environ.get("RANK", 0)) == 0 and result["history"]:
        row = result["history"][-1]
        print(f"step {row['step']}: loss {row['loss']:.4f}; {result['seconds_per_step']:.3f} s/step; "
              f"wrote {result['checkpoint']}")
    if dist.is_initialized():
        dist.destroy_process_group()


def term_weights(text: str) -> dict[str, float]:
    """``"crest_factor=0.004,rms=0.1"`` -> ``{"crest_factor": 0.004, "rms": 0.1}`` (``--af-term-weights``)."""
    weights = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected TERM=WEIGHT, got {item!r}") from None
    return weights


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``diffmst-lite train`` options (defaults None: :class:`~diffmst_lite.training.loop.TrainConfig`'s,
    or on ``--resume`` the run's own)."""
    from diffmst_lite.training.loop import LOSSES

    p.add_argument("--method", type=int, choices=(1, 2), help="1: random mixes (default), 2: real references")
    p.add_argument("--loss", choices=LOSSES, help="default: mrstft (Method 1), af (Method 2); "
                   "param: regress Method 1's known settings (a warm-up, beyond the paper)")
    p.add_argument("--tracks", type=int, choices=(8, 16), help="most tracks per example (default 8)")
    p.add_argument("--data", help="MUSDB18(-HQ) root or synthetic tree, several as 'a,b', or 'toy' (default $MUSDB_PATH)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, log.csv, loss.png)")
    p.add_argument("--steps", type=int, help="total optimiser steps (default 1000)")
    p.add_argument("--batch-size", type=int, help="examples per step per process (default 4)")
    p.add_argument("--seconds", type=float, help="segment length t; Method 1 uses halves t/2 (default 10)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--descriptor-lr", type=float, help="learning rate of the style-descriptor projections "
                   "(default: --lr; higher when fine-tuning them into a checkpoint without them)")
    p.add_argument("--own-mix", type=float, metavar="SHARE",
                   help="Method 1: share of examples whose reference and target are the song's own mix "
                   "(mixture.wav) instead of a random console mix (default 0; beyond the paper)")
    p.add_argument("--sample-rate", type=int, help="Hz (default 22050)")
    p.add_argument("--preset", choices=("lite", "paper", "tiny"), help="model size (default lite)")
    p.add_argument("--af-weight", type=float, help="weight of AF in mrstft+af (default 1)")
    p.add_argument("--af-term-weights", type=term_weights, metavar="TERM=W,...",
                   help="AF feature weights in training, e.g. crest_factor=0.004 (others: the paper's; "
                   "terms: rms, crest_factor, stereo_width, stereo_imbalance, bark_spectrum; beyond the paper)")
    p.add_argument("--init", metavar="CKPT", help="start from these weights (e.g. MRSTFT -> AF fine-tune)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt (weights, optimiser, RNG)")
    p.add_argument("--force", action="store_true", help="start afresh in a RUN_DIR that holds a run")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 500)")
    p.add_argument("--log-every", type=int, help="steps between log rows (default 10)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default 0: PyTorch's default, one per core; "
                   "1 when several jobs share few cores)")
    p.add_argument("--overfit", action="store_true", help="train on one fixed batch (sanity check)")
    p.add_argument("--references", metavar="DIR", help="Method 2: folder of full mixes used as references")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")



def cmd_make_real_songs(args: argparse.Namespace) -> None:
    from diffmst_lite.data.realsongs import make_real_songs

    if args.references_out:
        from diffmst_lite.data.realsongs import collect_references

        rows = collect_references(args.references_out)
        print(f"{len(rows)} reference mixes ({sum(r['seconds'] for r in rows) / 60:.1f} min) in "
              f"{args.references_out}: {Path(args.references_out) / 'references.csv'}", file=sys.stderr)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    if not sources:
        return
    entries = make_real_songs(args.dir, sources, args.sample_rate, args.max_songs, args.seconds, args.offset,
                              args.renders, retry=args.retry)
    ok = [e for e in entries if e["status"] == "ok"]
    for e in entries:
        if e["status"] != "ok":
            print(f"{e['name']}: {e['status']}", file=sys.stderr)
    print(f"{len(ok)} of {len(entries)} real songs in {args.dir} ({sum(e['channels'] for e in ok)} mono tracks, "
          f"{sum(e['seconds'] for e in ok) / 60:.1f} min); manifest: {Path(args.dir) / 'manifest.csv'}",
          file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffmst-lite", description="Differentiable Mixing Style Transfer, small and readable."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sheet", help="print a neutral mixing sheet for these tracks")
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="audio files (a stereo file is two tracks)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=cmd_sheet)

    p = sub.add_parser("render", help="render tracks with a mixing sheet")
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="audio files, in the sheet's order")
    p.add_argument("--sheet", required=True, help="mixing sheet (JSON)")
    p.add_argument("--out", required=True, help="output WAV (32-bit float)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=cmd_render)

    p = sub.add_parser("mix", help="mix tracks in the style of a reference (trained model or optimisation)")
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="audio files (a stereo file is two tracks)")
    p.add_argument("--reference", required=True,
                   help="the reference mix (a stereo or mono audio file: wav, flac, ogg, mp3, or m4a through ffmpeg)")
    p.add_argument("--out", required=True, help="output WAV (32-bit float)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the shipped lite model)")
    p.add_argument("--optimize", action="store_true", help="optimise the settings directly (no network)")
    p.add_argument("--sheet-out", help="also write the mixing sheet (JSON), to edit and re-render")
    p.add_argument("--excerpt", type=excerpt_seconds, default=10.0,
                   help="seconds of audio the settings are estimated on (at least 1; default 10)")
    p.add_argument("--steps", type=positive_steps, default=150, help="optimisation steps with --optimize (default 150)")
    p.add_argument("--refine", type=positive_steps, default=0, metavar="STEPS",
                   help="refine the network's prediction with STEPS steps of test-time optimisation on the "
                        "excerpts (beyond the paper; e.g. 30)")
    p.add_argument("--keep-level", action="store_true",
                   help="keep the predicted output gain (default: match the reference's loudness, "
                        "true peak <= -1 dBTP with a limiter)")
    p.add_argument("--no-limiter", action="store_true",
                   help="match the loudness with the output gain alone, only as far as the peak stays <= -1 dBFS")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(run=cmd_mix)

    p = sub.add_parser("make-songs", help="write synthetic songs in MUSDB18-HQ layout")
    p.add_argument("dir", help="output folder (gets train/ and test/)")
    p.add_argument("--songs", type=int, default=8, help="number of training songs")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each song")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-songs", type=int, help="number of test songs (default: max(2, songs // 4))")
    p.add_argument("--sample-rate", type=int, default=44100)
    p.add_argument("--extra-stems", type=int, default=0, help="stems beyond MUSDB's four (for 16-track training)")
    p.add_argument("--renderer", choices=("auto", "soundfont", "numpy"), default="auto")
    p.add_argument("--varied", action="store_true",
                   help="more like real multitracks: a SoundFont per song, 4-16 mono/stereo tracks with spread "
                        "level, tilt and width, reverb on some, humanised playing (--extra-stems ignored)")
    p.add_argument("--force", action="store_true", help="replace existing synthetic songs in DIR")
    p.set_defaults(run=cmd_make_songs)

    p = sub.add_parser("make-real-songs", help="render real multitracks (LMMS demos, MIDI files) in MUSDB18-HQ layout")
    p.add_argument("dir", help="output folder (gets train/, manifest.json/.csv; songs already there are kept)")
    p.add_argument("--sources", default="lmms,midi", help="comma-separated: lmms, midi ('' for none)")
    p.add_argument("--references-out", metavar="DIR",
                   help="also copy mastered mixes of music packages (warzone2100-music, asc-music) to DIR")
    p.add_argument("--sample-rate", type=int, default=44100, help="sample rate of the written files")
    p.add_argument("--max-songs", type=int, help="at most this many songs per source")
    p.add_argument("--seconds", type=float, help="render only SECONDS of each song (from --offset)")
    p.add_argument("--offset", type=float, default=0.0, help="start of the part rendered, in seconds")
    p.add_argument("--renders", type=int, default=2, help="renders per song compared for determinism (1: no check)")
    p.add_argument("--retry", action="store_true", help="render again the songs the manifest lists as dropped/failed")
    p.set_defaults(run=cmd_make_real_songs)

    p = sub.add_parser("evaluate", help="the paper's table (RMS, CF, SW, SI, BS, AF) on held-out songs")
    p.add_argument("--checkpoint", help="model checkpoint (default: the shipped lite model)")
    p.add_argument("--data", help="MUSDB18(-HQ) or synthetic tree; its test subset is used (default: $MUSDB_PATH)")
    p.add_argument("--out", required=True, help="CSV with one row per system")
    p.add_argument("--pairs-out", help="also a CSV of every (tracks, reference) pair's AF per system")
    p.add_argument("--cross-song", action="store_true", help="reference: another song's mixture")
    p.add_argument("--references", metavar="DIR",
                   help="reference: real mixes from DIR (wav, flac, ogg, mp3, m4a), one per song in turn")
    p.add_argument("--split", choices=("test", "valid"), default="test",
                   help="songs to mix: the test subset, or the train subset's validation split")
    p.add_argument("--seconds", type=excerpt_seconds, default=5.0,
                   help="length of the tracks' and the reference section (at least 1; default 5)")
    p.add_argument("--steps", type=step_counts, default=(100,),
                   help="test-time optimisation steps; several as 50,100 (one run, a row each); 0: none")
    p.add_argument("--refine", type=positive_steps, default=0, metavar="STEPS",
                   help="also score the model's prediction refined by STEPS steps of test-time optimisation "
                        "(mix --refine; beyond the paper)")
    p.add_argument("--max-songs", type=int, help="evaluate at most this many songs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("train", help="train a model: Method 1/2, MRSTFT/AF loss, one process or torchrun DDP")
    add_train_arguments(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("features", help="print the audio features (AF loss terms) of a mix as JSON")
    p.add_argument("file", help="audio file (mono is treated as centred stereo)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=cmd_features)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CommandError, AudioError, SheetError, FileExistsError, FileNotFoundError, ValueError) as error:
        if os.environ.get("DIFFMST_DEBUG"):
            raise
        print(f"diffmst-lite {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffmst-lite {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
