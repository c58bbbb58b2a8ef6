"""Notebooks only render: with every weight file removed, and from a results bundle in a fresh
cache, the four notebooks execute on `smoke` and write the same tables as the first run."""
import json
import os
import shutil
from pathlib import Path

import pytest

from cckl_core import bundle, costs, profiles, report, runs

NOTEBOOKS = ["01_theorem_check", "02_fisher_growth", "03_capacity_study", "04_appendix_c_table"]
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _render(root: Path, figures: Path, monkeypatch) -> dict[str, str]:
    """Execute the four notebooks with papermill against the artifacts under ``root``; return every
    table (CSV) they wrote, by file name."""
    import papermill

    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    monkeypatch.setenv("CCKL_FIGURES", str(figures))
    monkeypatch.setenv("CCKL_PROFILE", "smoke")
    monkeypatch.setenv("CCKL_DEVICE", "cpu")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    figures.mkdir(parents=True, exist_ok=True)
    for nb in NOTEBOOKS:
        papermill.execute_notebook(str(REPO / "notebooks" / f"{nb}.ipynb"), str(figures / f"{nb}.ipynb"),
                                   parameters={"profile": "smoke", "device": "cpu"}, kernel_name="python3",
                                   progress_bar=False, cwd=str(figures))
    return {p.name: p.read_text() for p in sorted((figures / "smoke").glob("*.csv"))}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The first `make paper` of smoke: the notebooks train and evaluate on a cache miss."""
    base = tmp_path_factory.mktemp("render")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CCKL_DATA_ROOT", str(base / "data"))
        tables = _render(base / "artifacts", base / "figures1", mp)
    return base, tables


def test_first_render_writes_every_table(first):
    _, tables = first
    for name in ("table1_capacity.csv", "table1_comparisons.csv", "fig5_kl_g2_stats.csv", "eq12_check.csv",
                 "table2_kl_vs_g1.csv", "theorem31_terms.csv", "fisher_final.csv", "fisher_matched.csv",
                 "robust_acc_best_last.csv", "claims_03_capacity_study.csv"):
        assert name in tables, name
    header = tables["fig5_kl_g2_stats.csv"].splitlines()[0].split(",")
    assert header[:3] == ["model", "quantity", "mean"] and {"median", "share_g2_negative", "diff_lo", "diff_hi"} <= set(header)
    assert {"acc_lo", "acc_hi"} <= set(tables["table1_capacity.csv"].splitlines()[0].split(","))


def test_render_without_weights_then_from_a_bundle(first, tmp_path, monkeypatch):
    base, tables = first
    root = tmp_path / "artifacts"
    shutil.copytree(base / "artifacts", root)
    removed = [p for folder in (root / "smoke").iterdir() for p in runs.remove_weights(folder)]
    assert removed and not list(root.rglob("*.safetensors"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "no-data-here"))  # rendering needs no data either
    assert _render(root, tmp_path / "figures2", monkeypatch) == tables

    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    made = bundle.create("smoke", tmp_path / "smoke.tar.gz")
    assert made["runs"] and (tmp_path / "smoke.tar.gz").stat().st_size < 2 ** 20
    fresh = tmp_path / "fresh-artifacts"
    monkeypatch.setenv("CCKL_ARTIFACTS", str(fresh))
    got = bundle.extract(tmp_path / "smoke.tar.gz", "smoke")
    assert len(got["runs"]) == len(made["runs"])
    assert _render(fresh, tmp_path / "figures3", monkeypatch) == tables
    from_bundle = costs.rows("smoke")  # what a GPU run cost travels with its bundle
    monkeypatch.setenv("CCKL_ARTIFACTS", str(base / "artifacts"))
    assert costs.rows("smoke") == from_bundle and len(from_bundle) == len(made["runs"])


def test_compute_costs_are_read_from_the_cache(first, tmp_path, monkeypatch):
    """One row per finished run; minutes recomputed here from the files the cache holds."""
    base, _ = first
    monkeypatch.setenv("CCKL_ARTIFACTS", str(base / "artifacts"))
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path))
    df = costs.write("smoke")
    assert (tmp_path / "smoke" / "compute_costs.md").exists() and (tmp_path / "smoke" / "compute_costs.csv").exists()
    finished = [f for f in (base / "artifacts" / "smoke").iterdir() if (f / "complete.json").exists()]
    assert len(df) == len(finished) > 0
    prof = profiles.load("smoke")
    for row in df.itertuples():
        folder = runs.run_path("smoke", row.run, prof.run(row.run, row.seed))
        history = json.loads((folder / "history.json").read_text())
        assert row.train_min == round(sum(r["train_seconds"] for r in history) / 60, 2)
        assert row.epochs == history[-1]["epoch"] == prof.run(row.run, row.seed)["epochs"]
        metas = [json.loads(m.read_text()) for m in (folder / "evaluations").glob("*.json")]
        assert row.evaluations == f"{len(metas)}/{len(metas)}"
        assert row.evaluations_min == pytest.approx(sum(m["seconds"] for m in metas) / 60, abs=0.006)
        env = json.loads((folder / "environment.json").read_text())
        assert row.device == f"cpu ({env['threads']} thread{'' if env['threads'] == 1 else 's'})"
        assert row.run_wall_min >= row.train_min - 0.02
    assert costs.main(["--profile", "no-such-profile"]) == 2
    # what `make paper` runs: the report writes the cost table first, then lists it
    for f in (tmp_path / "smoke").glob("compute_costs.*"):
        f.unlink()
    assert report.main(["--profile", "smoke", "--costs"]) == 0
    assert (tmp_path / "smoke" / "compute_costs.csv").read_text() == df.to_csv(index=False)
    assert "#### compute_costs" in (tmp_path / "README.md").read_text()
    assert report.main(["--profile", "smoke", "--costs", "--root", str(tmp_path / "elsewhere")]) == 2


def test_bundle_refuses_to_overwrite_another_training(first, tmp_path, monkeypatch):
    base, _ = first
    root = tmp_path / "artifacts"
    shutil.copytree(base / "artifacts", root)
    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    bundle.create("smoke", tmp_path / "b.tar.gz")
    folder = next(p for p in (root / "smoke").iterdir() if (p / "complete.json").exists())
    text = (folder / "complete.json").read_text().replace('"finished": "', '"finished": "x')
    (folder / "complete.json").write_text(text)
    with pytest.raises(bundle.BundleError, match="another training"):
        bundle.extract(tmp_path / "b.tar.gz")
    bundle.extract(tmp_path / "b.tar.gz", replace=True)
    assert runs.inspect(folder).state == runs.NO_WEIGHTS
