"""Cached evaluations: values against independent computations, reuse, invalidation; `plan`."""
import json

import numpy as np
import pytest
import torch

from cckl_core import data, evaluations, fisher, metrics, profiles, runs, store
from cckl_core.plan import plan
from conftest import private_copy, train_smoke_once

RUN = "resnet20_trades"  # smoke: plays table1 and fig5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_smoke_once(tmp_path_factory, RUN)


@pytest.fixture
def run(trained, tmp_path, monkeypatch):
    private_copy(trained, tmp_path, monkeypatch)
    return runs.load("smoke", RUN, device="cpu")


def _counting(monkeypatch, name):
    spec = evaluations._REGISTRY[name]
    calls = []

    def compute(*a, **k):
        calls.append(1)
        return spec.compute(*a, **k)

    monkeypatch.setitem(evaluations._REGISTRY, name, evaluations.Spec(spec.name, spec.version, spec.role, spec.keys, compute))
    return calls


def test_needed_follows_the_roles():
    prof = profiles.load("smoke")
    assert set(evaluations.needed(prof, RUN)) == {"table1", "fig5"}
    assert set(evaluations.needed(prof, "vgg13_trades")) >= {"table1", "fig9", "eq12", "table2"}
    assert evaluations.needed(prof, "vgg13_pgd_at") == []


def test_table1_matches_an_independent_computation(run):
    ev = evaluations.of(run, "table1", device="cpu")
    test = run.dataset("test", seed=run.seed)
    assert len(ev["index"]) == profiles.load("smoke").evaluation["n_eval"]
    sub = test.take(torch.as_tensor(ev["index"]))
    with torch.no_grad():
        clean = (run.model.eval()(sub.float()).argmax(1) == sub.labels).numpy()
    assert np.array_equal(ev["correct_clean"], clean)
    assert np.array_equal(ev["labels"], sub.labels.numpy())
    assert ev["correct_pgd"].dtype == bool and ev["correct_pgd"].shape == clean.shape


def test_fig5_matches_an_independent_computation(run):
    ev = evaluations.of(run, "fig5", device="cpu")
    test = run.dataset("test", seed=run.seed)
    x = test.float()
    i, j = torch.as_tensor(ev["i"]), torch.as_tensor(ev["j"])
    with torch.no_grad():
        p = torch.softmax(run.model.eval()(x).double(), 1)
    assert np.allclose(ev["kl"], metrics.kl(p[i], p[j]).numpy(), rtol=1e-3, atol=1e-6)  # float32 logits
    g1 = fisher.g1(run.model, x[i], x[j] - x[i]).double().numpy()
    assert np.allclose(ev["g1"], g1, rtol=1e-3, atol=1e-6)
    assert (ev["labels"][ev["i"]] != ev["labels"][ev["j"]]).all()


def test_cached_result_is_reused(run, monkeypatch):
    first = evaluations.of(run, "fig5", device="cpu")
    calls = _counting(monkeypatch, "fig5")
    again = evaluations.of(run, "fig5", device="cpu")
    assert calls == [] and np.array_equal(first["kl"], again["kl"])
    files = sorted(p.name for p in (run.path / "evaluations").iterdir())
    assert any(f.startswith("fig5-") and f.endswith(".npz") for f in files)


def test_changed_setting_recomputes(run, monkeypatch):
    prof = profiles.load("smoke")
    s = evaluations.settings(prof, "fig5")
    evaluations.get(run, "fig5", s, device="cpu")
    calls = _counting(monkeypatch, "fig5")
    other = evaluations.get(run, "fig5", {**s, "n_pairs": 10}, device="cpu")
    assert calls == [1] and len(other["kl"]) == 10
    evaluations.get(run, "fig5", {**s, "sample_seed": 1}, device="cpu")
    assert calls == [1, 1]
    evaluations.get(run, "fig5", s, device="cpu")  # the first is still cached beside them
    assert calls == [1, 1]


def test_retrained_model_recomputes(run, monkeypatch):
    before = evaluations.of(run, "fig5", device="cpu")
    # a retrained model: other weights, recorded as the run's weights
    state = {k: (v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v) for k, v in run.model.state_dict().items()}
    digest = store.save_state(run.path / runs.WEIGHTS, state)
    manifest = json.loads((run.path / "complete.json").read_text())
    manifest["files"][runs.WEIGHTS] = digest
    store.atomic_write_json(run.path / "complete.json", manifest)
    retrained = runs.load("smoke", RUN, device="cpu")
    calls = _counting(monkeypatch, "fig5")
    after = evaluations.of(retrained, "fig5", device="cpu")
    assert calls == [1] and not np.allclose(before["kl"], after["kl"])
    assert after.meta["model_sha256"] == digest


def test_damaged_result_is_recomputed(run, monkeypatch):
    evaluations.of(run, "table1", device="cpu")
    npz = next((run.path / "evaluations").glob("table1-*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    calls = _counting(monkeypatch, "table1")
    evaluations.of(run, "table1", device="cpu")
    assert calls == [1]


def test_missing_result_without_weights_is_a_clear_error(run):
    runs.remove_weights(run.path)
    light = runs.load("smoke", RUN, weights=False)
    with pytest.raises(evaluations.EvaluationMissingError, match="not cached and .*weights were removed"):
        evaluations.of(light, "fig5", device="cpu")
    with pytest.raises(evaluations.EvaluationMissingError, match="python -m cckl_core evaluate"):
        evaluations.of(light, "fig5", device="cpu", compute=False)


def test_evaluate_run_then_everything_is_cached(run):
    done = evaluations.evaluate_run("smoke", RUN, device="cpu", progress=False)
    assert {name for name, _, _ in done} == {"table1", "fig5"}
    again = evaluations.evaluate_run("smoke", RUN, device="cpu", progress=False)
    assert all(how == "cached" for _, how, _ in again)


def test_plan_prints_an_estimate_per_run(capsys):
    rows = plan("smoke", "cpu", probe=4, runs_=["vgg13_standard", "resnet20_trades"])
    out = capsys.readouterr().out
    assert [r["run"] for r in rows] == ["vgg13_standard", "resnet20_trades"]
    assert all(r["train"] > 0 and r["total"] >= r["train"] for r in rows)
    assert rows[1]["evaluations"] > rows[0]["evaluations"] > 0  # table1 + fig5 cost more than theorem
    assert "total" in out and "resnet20_trades" in out
