"""Notebooks only render: from the smoke fixture they write every table; with every weight file removed,
from a results bundle unpacked into a fresh cache (and no data anywhere), they write the same tables and
change nothing in the cache. Compute costs are read from the cache; a bundle refuses to overwrite
another training of a run."""
import json
import shutil
from pathlib import Path

import pytest

from cckl_core import bundle, costs, profiles, report, runs, store

NOTEBOOKS = ["01_theorem_check", "02_fisher_growth", "03_capacity_study", "04_appendix_c_table"]
#: Every table the notebooks write for smoke (one seed: the per-seed tables are shown, not written).
TABLES = {"theorem31_terms", "fisher_final", "fisher_matched", "robust_acc_best_last", "eq12_check", "table1_capacity",
          "table1_comparisons", "fig5_kl_g2_stats", "fig5_comparisons", "table2_kl_vs_g1"} | {f"claims_{nb}" for nb in NOTEBOOKS}
REPO = Path(__file__).resolve().parent.parent
SMOKE = profiles.load("smoke")

pytestmark = pytest.mark.slow


def _render(root: Path, figures: Path, monkeypatch) -> dict[str, str]:
    """Render the four notebooks' content (:func:`cckl_core.paper.render`, what each notebook's set-up cell
    calls; nbval executes the notebooks themselves in Jupyter) against the artifacts under ``root``, with no
    data root, and save it as the notebooks do; return every table (CSV) written, by file name."""
    from cckl_core import paper

    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    monkeypatch.setenv("CCKL_FIGURES", str(figures))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(figures.parent / "no-data-here"))  # rendering reads no data
    figures.mkdir(parents=True, exist_ok=True)
    for nb in NOTEBOOKS:
        result = paper.render(nb, "smoke")
        result.save()
        result.close()
    assert not (figures.parent / "no-data-here").exists()
    return {p.name: p.read_text() for p in sorted((figures / "smoke").glob("*.csv"))}


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first(smoke_fixture, tmp_path_factory):
    """The notebooks rendered from a copy of the smoke fixture: (folder, tables)."""
    base = tmp_path_factory.mktemp("render")
    shutil.copytree(smoke_fixture / "artifacts", base / "artifacts")
    with pytest.MonkeyPatch.context() as mp:
        tables = _render(base / "artifacts", base / "figures1", mp)
    return base, tables


def test_first_render_writes_every_table(first):
    base, tables = first
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


def test_render_without_weights_from_a_bundle_in_a_fresh_cache(first, tmp_path, monkeypatch):
    """Every weight file removed, the results bundled and unpacked into a fresh cache: no weights and no
    data anywhere, the notebooks write the same tables and leave the cache as it was."""
    base, tables = first
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
    assert _render(fresh, tmp_path / "figures2", monkeypatch) == tables
    assert _listing(fresh) == before  # nothing trained, computed or written into the cache

    from_bundle = costs.rows(SMOKE)  # what a GPU run cost travels with its bundle
    monkeypatch.setenv("CCKL_ARTIFACTS", str(base / "artifacts"))
    assert costs.rows(SMOKE) == from_bundle and len(from_bundle) == len(made["runs"])


def test_compute_costs_are_read_from_the_cache(first, tmp_path, monkeypatch):
    """One row per finished run; minutes recomputed here from the files the cache holds; the report
    (the last step of `make paper`) writes the same table beside the figures and lists it on the
    profile's page."""
    base, _ = first
    monkeypatch.setenv("CCKL_ARTIFACTS", str(base / "artifacts"))
    df = costs.write(SMOKE, tmp_path / "costs")
    assert (tmp_path / "costs" / "compute_costs.md").exists() and (tmp_path / "costs" / "compute_costs.csv").exists()
    finished = [f for f in (base / "artifacts" / "smoke").iterdir() if (f / "complete.json").exists()]
    assert len(df) == len(finished) > 0
    for row in df.itertuples():
        cfg = SMOKE.run(row.run, row.seed)
        folder = runs.path_of(cfg)
        history = json.loads((folder / "history.json").read_text())
        assert row.train_min == round(sum(r["train_seconds"] for r in history) / 60, 2)
        assert row.epochs == history[-1]["epoch"] == cfg.epochs
        metas = [json.loads(m.read_text()) for m in (folder / "evaluations").glob("*.json")]
        assert row.evaluations == f"{len(metas)}/{len(metas)}"
        assert row.evaluations_min == pytest.approx(sum(m["seconds"] for m in metas) / 60, abs=0.006)
        env = json.loads((folder / "environment.json").read_text())
        assert row.device == f"cpu ({env['threads']} thread{'' if env['threads'] == 1 else 's'})"
        assert row.run_wall_min >= row.train_min - 0.02

    figures = tmp_path / "figures"
    shutil.copytree(base / "figures1", figures)
    assert report.main(SMOKE, str(figures)) == 0
    assert (figures / "smoke" / "compute_costs.csv").read_text() == df.to_csv(index=False)
    page = (figures / "smoke" / report.HTML_FILE).read_text()  # the profile's page lists the cost table
    assert "<a href='compute_costs.md'>compute_costs</a> (<a href='compute_costs.csv'>csv</a>)" in page
    assert (figures / "README.md").exists()
    assert report.main(SMOKE, str(tmp_path / "elsewhere")) == 2  # no figures there: nothing written
    assert not (tmp_path / "elsewhere").exists()


def test_bundle_refuses_to_overwrite_another_training(first, tmp_path, monkeypatch):
    base, _ = first
    root = tmp_path / "artifacts"
    shutil.copytree(base / "artifacts", root)
    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    bundle.create(SMOKE, tmp_path / "b.tar.gz")
    folder = runs.path_of(SMOKE.run("vgg13_standard"))
    manifest = store.read_json(folder / "complete.json")  # another training of the same config: valid, resealed
    store.atomic_write_json(folder / "complete.json", store.sealed({**manifest, "finished": "x" + manifest["finished"]}))
    assert runs.inspect(folder).state == runs.COMPLETE
    with pytest.raises(bundle.BundleError, match="another training"):
        bundle.extract(tmp_path / "b.tar.gz")
    assert store.read_json(folder / "complete.json")["finished"].startswith("x")  # left as it was
    bundle.extract(tmp_path / "b.tar.gz", replace=True)
    assert runs.inspect(folder).state == runs.NO_WEIGHTS
    assert store.read_json(folder / "complete.json") == manifest
