"""The notebooks only render (cckl_core.paper.render, what each notebook's set-up cell calls): from the
smoke fixture they write every table; with every weight file removed, from a results bundle unpacked into
a fresh cache (and no data anywhere), they write the same tables and change nothing in the cache. The
render is done once, by conftest's ``smoke_render``, and shared with test_report."""
import json
import shutil
from pathlib import Path

import pytest

from cckl_core import bundle, costs, profiles, runs
from conftest import NOTEBOOKS, render_smoke

TABLES = {"theorem31_terms", "fisher_final", "fisher_matched", "robust_acc_best_last", "eq12_check", "table1_capacity",
          "table1_comparisons", "fig5_kl_g2_stats", "fig5_comparisons", "table2_kl_vs_g1"} | {f"claims_{nb}" for nb in NOTEBOOKS}

SMOKE = profiles.load("smoke")

pytestmark = pytest.mark.slow


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_first_render_writes_every_table(smoke_render):
    base, tables = smoke_render
    assert set(tables) == {f"{t}.csv" for t in TABLES}, sorted(tables)
    header = tables["fig5_kl_g2_stats.csv"].splitlines()[0].split(",")
    assert header[:3] == ["model", "quantity", "mean"] and {"median", "ratio of means", "share_g2_negative"} <= set(header)
    compared = tables["fig5_comparisons.csv"].splitlines()
    assert {"statistic", "diff", "diff_lo", "diff_hi", "se (images resampled)"} <= set(compared[0].split(","))
    assert len(compared) == 1 + 5  # KL and G2 by their means, the share by its three statistics
    assert {"acc_lo", "acc_hi"} <= set(tables["table1_capacity.csv"].splitlines()[0].split(","))
    for nb in NOTEBOOKS:  # each notebook's claims, as a table and as the record the report reads
        claims = json.loads((base / "figures1" / "smoke" / f"claims_{nb}.json").read_text())
        assert claims["notebook"] == nb and claims["profile"] == "smoke" and claims["rows"]
    assert list((base / "figures1" / "smoke").glob("*.png"))


def test_render_without_weights_from_a_bundle_in_a_fresh_cache(smoke_render, tmp_path, monkeypatch):
    """Every weight file removed, the results bundled and unpacked into a fresh cache: no weights and no
    data anywhere, the notebooks write the same tables and leave the cache as it was."""
    base, tables = smoke_render
    root = tmp_path / "artifacts"
    shutil.copytree(base / "artifacts", root)
    removed = [p for folder in (root / "smoke").iterdir() for p in runs.remove_weights(folder)]
    assert removed and not list(root.rglob("*.safetensors"))
    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    made = bundle.create(SMOKE, tmp_path / "smoke.tar.gz")
    finished = [r for r in runs.status(SMOKE) if r["state"] == runs.NO_WEIGHTS]
    assert len(made["runs"]) == len(finished) == len(SMOKE.runs) - 1  # all but the skipped optional run
    assert made["missing"] == ["resnet20_standard_cifar100 (seed 0): not started"]
    assert (tmp_path / "smoke.tar.gz").stat().st_size < 2 ** 20

    fresh = tmp_path / "fresh-artifacts"
    monkeypatch.setenv("CCKL_ARTIFACTS", str(fresh))
    got = bundle.extract(tmp_path / "smoke.tar.gz", "smoke")
    assert len(got["runs"]) == len(made["runs"]) and not list(fresh.rglob("*.safetensors"))
    before = _listing(fresh)
    assert render_smoke(fresh, tmp_path / "figures2", monkeypatch) == tables
    assert _listing(fresh) == before  # nothing trained, computed or written into the cache

    from_bundle = costs.rows(SMOKE)  # what a GPU run cost travels with its bundle
    monkeypatch.setenv("CCKL_ARTIFACTS", str(base / "artifacts"))
    assert costs.rows(SMOKE) == from_bundle and len(from_bundle) == len(made["runs"])
