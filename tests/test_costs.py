"""Compute costs: one row per finished run, read from the run cache."""
import json

import pytest

from cckl_core import costs, profiles, runs

SMOKE = profiles.load("smoke")


def test_compute_costs_are_read_from_the_cache(smoke_cache, tmp_path):
    """One row per finished run; minutes recomputed here from the files the cache holds."""
    df = costs.write(SMOKE, tmp_path / "costs")
    assert (tmp_path / "costs" / "compute_costs.md").exists() and (tmp_path / "costs" / "compute_costs.csv").exists()
    finished = [f for f in (smoke_cache / "smoke").iterdir() if (f / "complete.json").exists()]
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
