"""The ``diffmst-lite`` command (also ``python -m diffmst_lite``).

Every subcommand prints errors as one line on stderr and exits non-zero; no
existing output file is overwritten without ``--force``. Set ``DIFFMST_DEBUG=1``
to see full tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from .audio import AudioError, load_audio, save_audio
from .sheet import SheetError


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def load_tracks(paths: list[str]) -> tuple[torch.Tensor, list[str], int]:
    """Load track files as mono tracks ``(T, N)``; a stereo file becomes ``<name>_L``, ``<name>_R``.

    Raises:
        CommandError: files with different sample rates or lengths, or more than 2 channels.
    """
    tracks, names, rates, lengths = [], [], {}, {}
    for path in paths:
        audio, rate = load_audio(path)
        rates[path], lengths[path] = rate, audio.shape[-1]
        stem = Path(path).stem
        if audio.shape[0] == 1:
            tracks.append(audio[0])
            names.append(stem)
        elif audio.shape[0] == 2:
            tracks += [audio[0], audio[1]]
            names += [f"{stem}_L", f"{stem}_R"]
        else:
            raise CommandError(f"{path}: has {audio.shape[0]} channels; tracks must be mono or stereo")
    if len(set(rates.values())) > 1:
        detail = ", ".join(f"{Path(p).name}: {r} Hz" for p, r in rates.items())
        raise CommandError(f"tracks have different sample rates ({detail}); resample them to one rate")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{Path(p).name}: {n} samples" for p, n in lengths.items())
        raise CommandError(f"tracks have different lengths ({detail}); trim or pad them to one length")
    return torch.stack(tracks), names, next(iter(rates.values()))


def refuse_overwrite(path: str | None, force: bool) -> None:
    if path and Path(path).exists() and not force:
        raise CommandError(f"{path}: exists; use --force to overwrite")


def write_json(document: dict, out: str | None, force: bool) -> None:
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    refuse_overwrite(out, force)
    tmp = Path(out).with_name(Path(out).name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


# ------------------------------------------------------------------ commands


def cmd_sheet(args: argparse.Namespace) -> None:
    from .sheet import neutral_sheet

    _, names, rate = load_tracks(args.tracks)
    write_json(neutral_sheet(names, rate), args.out, args.force)


def cmd_render(args: argparse.Namespace) -> None:
    from .console import MixingConsole
    from .sheet import read_sheet, sheet_to_params

    refuse_overwrite(args.out, args.force)
    tracks, names, rate = load_tracks(args.tracks)
    settings = sheet_to_params(read_sheet(args.sheet), num_tracks=len(names), sample_rate=rate)
    if settings["names"] != names:
        print(f"note: sheet track names {settings['names']} differ from the files' {names}; "
              "rendering in the order given", file=sys.stderr)
    console = MixingConsole(rate)
    with torch.no_grad():
        mix = console(tracks[None], settings["track_params"][None], settings["master_params"][None])[0]
    peak = float(mix.abs().max())
    save_audio(args.out, mix, rate, force=args.force)
    note = f" (peak {20 * torch.log10(torch.tensor(peak)):.1f} dBFS: above 0 dBFS, kept as float)" if peak > 1 else ""
    print(f"wrote {args.out}: {len(names)} tracks, {mix.shape[-1] / rate:.2f} s at {rate} Hz{note}", file=sys.stderr)


def cmd_features(args: argparse.Namespace) -> None:
    from .audio import integrated_loudness
    from .features import all_features

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
        "loudness_lufs": round(integrated_loudness(audio, rate), 2),
        "rms_db": feats["rms"],
        "crest_factor_db": feats["crest_factor"],
        "stereo_width": feats["stereo_width"],
        "stereo_imbalance": feats["stereo_imbalance"],
        "bark_spectrum": {"mid": feats["bark_spectrum"][0], "side": feats["bark_spectrum"][1]},
    }
    write_json(document, args.out, args.force)


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
