"""The stored full-size results (assets/results, `make results`) belong to the shipped
checkpoint, every stored file is read by a page, and their tables are what the page shows;
the listening examples are short, loudness-matched, attributed development songs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from diffmst_lite.book.results import (RESULTS_DIR, SETTING_TITLES, checkpoint_sha256, clips_attribution,
                                       provenance_line, results_markdown, stored_clips, stored_results)
from diffmst_lite.data.realsongs import is_held_out
from diffmst_lite.dsp.loudness import integrated_loudness
from diffmst_lite.mixing.evaluate import win_rates

ROOT = Path(__file__).resolve().parents[1]


def test_provenance_names_the_shipped_checkpoint():
    provenance = json.loads((RESULTS_DIR / "provenance.json").read_text())["settings"]
    assert provenance, "no stored results"
    shipped = checkpoint_sha256()
    for setting, p in provenance.items():
        assert p["checkpoint_sha256"] == shipped, f"{setting}: results of another checkpoint; rerun `make results`"
        assert p["command"].startswith("python scripts/results.py") and p["commit"] and p["machine"]
        assert p["date"] and p["wall_seconds"] > 0 and 0 < p["pairs"] <= p["songs"]  # songs without tracks are skipped


def test_every_stored_file_is_read_by_a_page():
    results = stored_results()
    read = {"provenance.json"} | {f"{kind}_{s}.csv" for s in results for kind in ("eval", "pairs")}
    pages = {p.name: p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert any("stored_results()" in text for text in pages.values()), "no chapter shows the stored results"
    for name in ("data_sources.csv", "training_log.csv"):  # read with stored_table by a page
        if any(f'stored_table(\\"{name}\\")' in text for text in pages.values()):
            read.add(name)
    if any("stored_clips()" in text for text in pages.values()):  # the listening examples
        read |= {"clips.json"} | {c["file"] for c in json.loads((RESULTS_DIR / "clips.json").read_text())["clips"]}
    assert {p.name for p in RESULTS_DIR.iterdir()} == read
    assert set(results) <= set(SETTING_TITLES)


def test_tables_agree_with_their_pairs():
    for result in stored_results().values():
        for system, row in result.table.items():
            mean = sum(p[system] for p in result.pairs) / len(result.pairs)
            assert mean == pytest.approx(row["af"], rel=1e-4, abs=2e-6), (result.setting, system)
        songs, pairs = result.provenance["songs"], len(result.pairs)
        source = f"from {songs} songs, {songs - pairs} without tracks left out" if songs > pairs else "one per song"
        assert f"({pairs} (tracks, reference) pairs, {source};" in results_markdown(result)


def test_clips_belong_to_the_shipped_checkpoint():
    examples, provenance = stored_clips()
    assert provenance["checkpoint_sha256"] == checkpoint_sha256(), "clips of another checkpoint; rerun `make results`"
    assert provenance["command"].startswith("python scripts/results.py") and provenance["commit"]
    assert provenance["machine"] and provenance["date"] and provenance["wall_seconds"] > 0
    assert provenance["clips"] == sum(len(clips) for clips in examples.values())
    assert provenance["checkpoint_sha256"][:12] in provenance_line(provenance)


def test_clips_are_short_attributed_development_songs():
    examples, provenance = stored_clips()
    assert set(examples) == {"same-song", "mastered-reference"}
    for example, clips in examples.items():
        assert "reference" in list(clips)[0] and {"model", "equal-loudness"} <= set(clips), example
        for system, clip in clips.items():
            info, seconds = clip.info, clip.audio.shape[-1] / clip.sample_rate
            assert clip.audio.shape[0] == 2 and seconds <= 10.0 and seconds == pytest.approx(info["seconds"], abs=0.05)
            assert info["title"] and info["author"] and info["licence"] and info["package"], (example, system)
            assert not is_held_out(info["package"], info["source"]), info["source"]
            assert (info["af"] is None) == (clip is list(clips.values())[0]) and (info["af"] is None or info["af"] > 0)
            assert f"*{info['title']}* by {info['author']}" in clips_attribution(clips)


def test_clips_are_stored_loudness_matched():
    """Each example's clips are stored at one loudness (-23 LUFS, or lowered together), and
    their recorded loudness as rendered is undone by the recorded gain."""
    for example, clips in stored_clips()[0].items():
        levels = [integrated_loudness(c.audio, c.sample_rate) for c in clips.values()]
        assert max(levels) - min(levels) < 0.5, (example, levels)  # Vorbis moves loudness by < 0.5 LU
        assert max(levels) < -22.5
        for clip, level in zip(clips.values(), levels):
            assert clip.info["lufs"] + clip.info["stored_gain_db"] == pytest.approx(level, abs=0.5)
            assert abs(clip.audio).max() <= 1.0


def test_provenance_line_leaves_out_the_training_log_paths():
    from diffmst_lite.book.results import short_command

    command = "python scripts/results.py --out assets/results --training-logs p1=/runs/a/log.csv,p2=/runs/b/log.csv"
    assert short_command(command) == "python scripts/results.py --out assets/results --training-logs p1=…,p2=…"
    assert short_command("python scripts/results.py --out x") == "python scripts/results.py --out x"


def test_results_script_refuses_a_setting_whose_songs_it_was_not_given(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for argv, message in ((["--settings", "synthetic-fresh-same"], "synthetic-fresh-same needs --synthetic-fresh"),
                          (["--synthetic", "x", "--settings", "synthetic-cross,real-mastered"],
                           "real-mastered needs --real and --references"),
                          (["--real", "x", "--settings", "real-mastered"], "real-mastered needs --references")):
        with pytest.raises(SystemExit):
            script.main(argv)
        assert message in capsys.readouterr().err


README_ROWS = {"equal-loudness": "equal-loudness", "random settings": "random",
               "test-time optimisation, 50 steps": "optimised (50 steps)",
               "test-time optimisation, 100 steps": "optimised", "**model** (one forward pass)": "model"}
README_WIN_ROWS = {"equal-loudness": "equal-loudness", "random": "random",
                   "50-step optimisation": "optimised (50 steps)"}
README_COLUMNS = {"synthetic": "synthetic", "fresh synthetic": "synthetic-fresh", "real": "real"}
README_REFERENCES = {"same-song": "same", "cross-song": "cross", "mastered reference": "mastered"}


def _readme_results_table() -> tuple[list[str], list[str], dict[str, list[str]]]:
    """The README's results table: its settings and column titles (from the header) and its
    rows by first cell (the table ends at the first line that is not a table row)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| system | synthetic, same-song"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    titles, rows = cells[0][1:], {row[0]: row[1:] for row in cells[2:]}
    settings = []
    for title in titles:
        data, reference = title.split(" (")[0].split(", ")
        settings.append(f"{README_COLUMNS[data]}-{README_REFERENCES[reference]}")
    return settings, titles, rows


def test_readme_results_table_is_the_stored_results():
    """Every number of the README's table is the stored one, as printed (rounded to its digits)."""
    settings, titles, rows = _readme_results_table()
    results = stored_results()
    assert settings == [s for s in SETTING_TITLES if s in results]
    for k, setting in enumerate(settings):
        result, n = results[setting], len(results[setting].pairs)
        assert titles[k].endswith(f"({n} pairs)"), setting
        for label, system in README_ROWS.items():
            printed = rows[label][k].strip("*")
            decimals = len(printed.split(".")[1])
            assert float(printed) == round(result.table[system]["af"], decimals), (setting, label, printed)
        wins = win_rates(result.pairs)
        for label, system in README_WIN_ROWS.items():
            assert rows[f"pairs on which the model beats {label}"][k] == f"{wins[system][0]}/{n}", (setting, label)
        ratio = result.table["model"]["af"] / result.table["optimised (50 steps)"]["af"]
        assert rows["model AF / 50-step optimisation AF"][k] == f"{ratio:.2f}x", setting
