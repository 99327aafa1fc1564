"""The stored full-size results (assets/results, `make results`) belong to the shipped
checkpoint, every stored file is read by a page, and their tables are what the page shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffmst_lite.book.results import RESULTS_DIR, SETTING_TITLES, checkpoint_sha256, results_markdown, stored_results

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
    assert {p.name for p in RESULTS_DIR.iterdir()} == read
    assert set(results) <= set(SETTING_TITLES)


def test_tables_agree_with_their_pairs():
    for result in stored_results().values():
        for system, row in result.table.items():
            mean = sum(p[system] for p in result.pairs) / len(result.pairs)
            assert mean == pytest.approx(row["af"], rel=1e-4, abs=2e-6), (result.setting, system)
        assert f"({len(result.pairs)} songs, each one" in results_markdown(result)
