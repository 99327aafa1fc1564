"""The mixing sheet: a mix decision as JSON a person can read and edit (docs/design.md §4.2).

::

    {"sample_rate": 44100,
     "tracks": [{"name": "bass_L", "gain_db": -3.0,
                 "eq": [{"type": "low_shelf", "freq_hz": 120.0, "gain_db": 2.0, "q": 0.7}, ... six bands],
                 "compressor": {"threshold_db": -20.0, "ratio": 3.0, "attack_ms": 10.0,
                                "release_ms": 120.0, "knee_db": 6.0, "makeup_db": 2.0},
                 "pan": -0.2}, ...],
     "master": {"gain_in_db": 0.0, "eq": [...], "compressor": {...}, "gain_out_db": 0.0},
     "limiter": {"gain_db": 12.0, "ceiling_dbtp": -1.0, "release_ms": 100.0}}

``limiter`` is optional (``diffmst-lite mix`` writes it; without it the mix ends at
the master's output gain): a gain, then a true-peak limiter, after the console
(:mod:`diffmst_lite.dsp.limiter`), beyond the paper.

All values are in physical units. The model's prediction, the test-time optimiser
and the widgets produce and consume this sheet. Reading validates everything: a
value out of range, a missing or unknown field, an unknown band type or a wrong
type is a :class:`SheetError` naming the field — never silently clipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from diffmst_lite.files.atomic import write_json
from diffmst_lite.console import params
from diffmst_lite.dsp import biquads


class SheetError(ValueError):
    """An invalid mixing sheet; the message names the field."""


SHEET_FIELDS = ("sample_rate", "tracks", "master")
TRACK_FIELDS = ("name", "gain_db", "eq", "compressor", "pan")
MASTER_FIELDS = ("gain_in_db", "eq", "compressor", "gain_out_db")
BAND_FIELDS = ("type", "freq_hz", "gain_db", "q")
LIMITER_SPECS = (params.ParamSpec("gain_db", -30.0, 60.0, unit="dB"),  # into the limiter
                 params.ParamSpec("ceiling_dbtp", -12.0, 0.0, unit="dBTP"),
                 params.ParamSpec("release_ms", 1.0, 1000.0, unit="ms"))


def _nested(flat: dict[str, float]) -> dict[str, Any]:
    """``{"eq.band0.q": 1.0, "compressor.ratio": 2.0, "pan": 0.0}`` -> the sheet's nested form."""
    out: dict[str, Any] = {}
    eq = {name: {"type": kind} for name, kind in zip(params.BAND_NAMES, biquads.BAND_TYPES)}
    for key, value in flat.items():
        parts = key.split(".")
        if parts[0] == "eq":
            eq[parts[1]][parts[2]] = round(value, 4)
        elif parts[0] == "compressor":
            out.setdefault("compressor", {})[parts[1]] = round(value, 4)
        else:
            out[key] = round(value, 4)
    out["eq"] = [eq[name] for name in params.BAND_NAMES]
    return out


def params_to_sheet(
    track_params: torch.Tensor, master_params: torch.Tensor, sample_rate: int, names: list[str] | None = None
) -> dict[str, Any]:
    """Normalised ``track_params (T, P)`` and ``master_params (Pm,)`` -> a mixing sheet dict.

    Chapter 5: The master bus and the whole console.
    """
    track_specs, master_specs = params.track_param_specs(sample_rate), params.master_param_specs(sample_rate)
    names = names or [f"track{i + 1}" for i in range(track_params.shape[0])]
    if len(names) != track_params.shape[0]:
        raise ValueError(f"{len(names)} names for {track_params.shape[0]} tracks")
    tracks = []
    for name, values in zip(names, params.params_to_dicts(track_params.clamp(0, 1), track_specs)):
        strip = _nested(values)
        tracks.append({"name": name, "gain_db": strip["gain_db"], "eq": strip["eq"],
                       "compressor": strip["compressor"], "pan": strip["pan"]})
    master = _nested(params.params_to_dicts(master_params.clamp(0, 1), master_specs)[0])
    return {"sample_rate": int(sample_rate), "tracks": tracks,
            "master": {key: master[key] for key in MASTER_FIELDS}}


def neutral_sheet(names: list[str], sample_rate: int) -> dict[str, Any]:
    """0 dB, flat EQ, ratio 1, centre pan for every track; a transparent master bus.

    Chapter 5: The master bus and the whole console.
    """
    track = params.neutral_params(params.track_param_specs(sample_rate))
    master = params.neutral_params(params.master_param_specs(sample_rate))
    return params_to_sheet(track.expand(len(names), -1), master, sample_rate, names)


# ------------------------------------------------------------------ validation


def _require_object(value: Any, where: str, fields: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise SheetError(f"{where}: expected an object with fields {', '.join(fields)}, got {type(value).__name__}")
    missing = [f for f in fields if f not in value]
    if missing:
        raise SheetError(f"{where}: missing field {missing[0]!r}")
    unknown = [f for f in value if f not in fields]
    if unknown:
        raise SheetError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(fields)})")
    return value


def _number(value: Any, where: str, spec: params.ParamSpec) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SheetError(f"{where}: expected a number, got {json.dumps(value)}")
    problem = spec.range_error(value, where)
    if problem:
        raise SheetError(problem)
    return float(value)


def _read_strip(obj: dict, where: str, fields: tuple[str, ...], specs: list[params.ParamSpec]) -> dict[str, float]:
    """Validate one channel strip (or the master) and flatten it to ``{spec name: value}``."""
    _require_object(obj, where, fields)
    by_name = {s.name: s for s in specs}
    flat = {}
    for field in fields:
        if field == "name":
            if not isinstance(obj["name"], str):
                raise SheetError(f"{where}.name: expected a string, got {json.dumps(obj['name'])}")
        elif field == "eq":
            bands = obj["eq"]
            if not isinstance(bands, list) or len(bands) != params.NUM_BANDS:
                raise SheetError(f"{where}.eq: expected a list of {params.NUM_BANDS} bands "
                                 f"({', '.join(biquads.BAND_TYPES)})")
            for i, (band, name, kind) in enumerate(zip(bands, params.BAND_NAMES, biquads.BAND_TYPES)):
                at = f"{where}.eq[{i}]"
                _require_object(band, at, BAND_FIELDS)
                if band["type"] != kind:
                    raise SheetError(f"{at}.type: expected {kind!r} for band {i}, got {json.dumps(band['type'])}")
                for leaf in ("freq_hz", "gain_db", "q"):
                    key = f"eq.{name}.{leaf}"
                    flat[key] = _number(band[leaf], f"{at}.{leaf}", by_name[key])
        elif field == "compressor":
            comp = _require_object(obj["compressor"], f"{where}.compressor", params.COMPRESSOR_FIELDS)
            for leaf in params.COMPRESSOR_FIELDS:
                key = f"compressor.{leaf}"
                flat[key] = _number(comp[leaf], f"{where}.compressor.{leaf}", by_name[key])
        else:
            flat[field] = _number(obj[field], f"{where}.{field}", by_name[field])
    return flat


def sheet_to_params(sheet: Any, num_tracks: int | None = None, sample_rate: int | None = None) -> dict[str, Any]:
    """Validate a sheet and convert it to the console's normalised vectors.

    Args:
        sheet: the parsed JSON document.
        num_tracks, sample_rate: if given, the sheet must match them.

    Returns:
        ``{"track_params": (T, P), "master_params": (Pm,), "names": [...], "sample_rate": int,
        "limiter": {"gain_db", "ceiling_dbtp", "release_ms"} or None}``.

    Raises:
        SheetError: naming the first invalid field.

    Chapter 5: The master bus and the whole console.
    """
    limiter = None
    if isinstance(sheet, dict) and "limiter" in sheet:
        fields = tuple(spec.name for spec in LIMITER_SPECS)
        _require_object(sheet["limiter"], "sheet.limiter", fields)
        limiter = {spec.name: _number(sheet["limiter"][spec.name], f"sheet.limiter.{spec.name}", spec)
                   for spec in LIMITER_SPECS}
        sheet = {k: v for k, v in sheet.items() if k != "limiter"}
    _require_object(sheet, "sheet", SHEET_FIELDS)
    rate = sheet["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 384000:
        raise SheetError(f"sheet.sample_rate: expected an integer rate in Hz (8000 … 384000), got {json.dumps(rate)}")
    if sample_rate is not None and rate != sample_rate:
        raise SheetError(f"sheet.sample_rate: the sheet is for {rate} Hz but the audio is {sample_rate} Hz")
    if not isinstance(sheet["tracks"], list) or not sheet["tracks"]:
        raise SheetError("sheet.tracks: expected a non-empty list of channel strips")
    if num_tracks is not None and len(sheet["tracks"]) != num_tracks:
        raise SheetError(f"sheet.tracks: the sheet has {len(sheet['tracks'])} track(s) but {num_tracks} "
                         f"{'was' if num_tracks == 1 else 'were'} given")
    track_specs, master_specs = params.track_param_specs(rate), params.master_param_specs(rate)
    strips = [_read_strip(t, f"tracks[{i}]", TRACK_FIELDS, track_specs) for i, t in enumerate(sheet["tracks"])]
    master = _read_strip(sheet["master"], "master", MASTER_FIELDS, master_specs)
    return {
        "track_params": torch.stack([params.dict_to_params(s, track_specs) for s in strips]),
        "master_params": params.dict_to_params(master, master_specs),
        "names": [t["name"] for t in sheet["tracks"]],
        "sample_rate": rate,
        "limiter": limiter,
    }


# ------------------------------------------------------------------------- files


def read_sheet(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a sheet file; returns the JSON document.

    Raises:
        SheetError: missing file, invalid JSON (with line and column) or invalid content.

    Chapter 5: The master bus and the whole console.
    """
    path = Path(path)
    if not path.exists():
        raise SheetError(f"{path}: no such sheet file")
    if path.is_dir():
        raise SheetError(f"{path}: is a directory, not a sheet file")
    try:
        sheet = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SheetError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError:
        raise SheetError(f"{path}: not a text file") from None
    try:
        sheet_to_params(sheet)
    except SheetError as error:
        raise SheetError(f"{path}: {error}") from None
    return sheet


def write_sheet(sheet: dict[str, Any], path: str | os.PathLike, force: bool = False) -> Path:
    """Validate and write ``sheet`` as indented JSON (atomically; an existing file only with ``force``).

    Chapter 5: The master bus and the whole console.
    """
    sheet_to_params(sheet)
    return write_json(path, sheet, overwrite=force)
