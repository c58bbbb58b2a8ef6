"""Cached evaluations: values against independent computations, reuse, invalidation; an edited value
or an evaluation of another run is not served."""
import json
import shutil

import numpy as np
import pytest
import torch

from cckl_core import evaluations, fisher, metrics, profiles, runs, store

RUN = "resnet20_trades"  # smoke: plays table1 and fig5
SMOKE = profiles.load("smoke")
CFG = SMOKE.run(RUN)


@pytest.fixture
def run(smoke_cache):
    """The finished smoke run RUN with its weights, in a private copy of the smoke fixture (whose
    evaluations are cached: a test that needs one computed asks for other settings, or deletes it)."""
    return runs.load(CFG, weights=True, device="cpu")


def _s(name, **changes):
    return {**evaluations.settings(SMOKE, name), **changes}


def _counting(monkeypatch, name):
    spec = evaluations._REGISTRY[name]
    calls = []

    def compute(*a, **k):
        calls.append(1)
        return spec.compute(*a, **k)

    monkeypatch.setitem(evaluations._REGISTRY, name, evaluations.Spec(spec.name, spec.version, spec.role, spec.keys, compute))
    return calls


def test_needed_follows_the_roles():
    prof = SMOKE
    assert set(evaluations.needed(prof, RUN)) == {"table1", "fig5"}
    assert set(evaluations.needed(prof, "vgg13_trades")) >= {"table1", "fig9", "eq12", "table2"}
    assert evaluations.needed(prof, "vgg13_pgd_at") == []
    gpu = profiles.load("gpu")  # roles of only some notebooks: only their evaluations
    assert {e for n in gpu.runs for e in evaluations.needed(gpu, n)} <= {"table1", "fig5", "table2"}


def test_settings_key_the_cache():
    s = evaluations.settings(SMOKE, "fig5")
    assert s == {"n_pairs": SMOKE.evaluation.n_pairs, "name": "fig5", "version": evaluations._spec("fig5").version,
                 "sample_seed": 0}
    assert evaluations.settings_key(s) != evaluations.settings_key(evaluations.settings(SMOKE, "fig5", sample_seed=1))
    with pytest.raises(ValueError, match="unknown evaluation"):
        evaluations.settings(SMOKE, "fig7")


def test_table1_matches_an_independent_computation(run):
    ev = evaluations.compute(run, "table1", _s("table1"), device="cpu")
    test = run.dataset("test", seed=run.seed)
    assert len(ev["index"]) == SMOKE.evaluation.n_eval
    sub = test.take(torch.as_tensor(ev["index"]))
    with torch.no_grad():
        clean = (run.model.eval()(sub.float()).argmax(1) == sub.labels).numpy()
    assert np.array_equal(ev["correct_clean"], clean)
    assert np.array_equal(ev["labels"], sub.labels.numpy())
    assert ev["correct_pgd"].dtype == bool and ev["correct_pgd"].shape == clean.shape


def test_fig5_matches_an_independent_computation(run):
    ev = evaluations.compute(run, "fig5", _s("fig5"), device="cpu")
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
    calls = _counting(monkeypatch, "fig5")
    first = evaluations.compute(run, "fig5", _s("fig5"), device="cpu")  # the fixture computed it
    again = evaluations.compute(run, "fig5", _s("fig5"), device="cpu")
    assert calls == [] and np.array_equal(first["kl"], again["kl"])
    assert np.array_equal(evaluations.read(runs.load(CFG), _s("fig5"))["kl"], first["kl"])  # no weights needed
    files = sorted(p.name for p in (run.path / "evaluations").iterdir())
    assert any(f.startswith("fig5-") and f.endswith(".npz") for f in files)
    meta = first.meta
    assert meta["run_key"] == CFG.key and meta["model_sha256"] == run.model_sha256 and meta["settings"] == _s("fig5")
    store.check_seal(meta, "fig5")


def test_changed_setting_recomputes(run, monkeypatch):
    s = _s("fig5")
    calls = _counting(monkeypatch, "fig5")
    other = evaluations.compute(run, "fig5", {**s, "n_pairs": 10}, device="cpu")
    assert calls == [1] and len(other["kl"]) == 10
    evaluations.compute(run, "fig5", {**s, "sample_seed": 1}, device="cpu")
    assert calls == [1, 1]
    evaluations.compute(run, "fig5", s, device="cpu")  # the first is still cached beside them
    assert calls == [1, 1]
    with pytest.raises(ValueError, match="settings are for 'fig5'"):
        evaluations.compute(run, "table1", s, device="cpu")


def test_retrained_model_recomputes(run, monkeypatch):
    before = evaluations.compute(run, "fig5", _s("fig5"), device="cpu")
    # a retrained model: other weights, recorded as the run's weights (complete.json resealed)
    state = {k: (v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v) for k, v in run.model.state_dict().items()}
    digest = store.save_state(run.path / runs.WEIGHTS, state)
    manifest = json.loads((run.path / "complete.json").read_text())
    manifest["files"][runs.WEIGHTS] = digest
    store.atomic_write_json(run.path / "complete.json", store.sealed(manifest))
    retrained = runs.load(CFG, weights=True, device="cpu")
    assert evaluations.read(retrained, _s("fig5")) is None  # stale: computed from other weights
    assert evaluations.missing(SMOKE, retrained) == ["table1", "fig5"]
    calls = _counting(monkeypatch, "fig5")
    after = evaluations.compute(retrained, "fig5", _s("fig5"), device="cpu")
    assert calls == [1] and not np.allclose(before["kl"], after["kl"])
    assert after.meta["model_sha256"] == digest


def test_damaged_result_is_recomputed(run, monkeypatch):
    npz = next((run.path / "evaluations").glob("table1-*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    assert evaluations.read(run, _s("table1")) is None
    calls = _counting(monkeypatch, "table1")
    evaluations.compute(run, "table1", _s("table1"), device="cpu")
    assert calls == [1] and evaluations.read(run, _s("table1")) is not None


def _record(run, name):
    return next(p for p in (run.path / "evaluations").glob(f"{name}-*.json"))


def test_an_edited_value_is_not_served(run):
    """An evaluation's record is sealed: a value edited by hand makes it unreadable (recomputed), and
    a record resealed for another run's key is not served either."""
    path = _record(run, "fig5")
    record = json.loads(path.read_text())
    record["values"]["n_test"] = record["values"]["n_test"] + 1
    path.write_text(json.dumps(record))
    assert evaluations.read(run, _s("fig5")) is None
    path.write_text(json.dumps(store.sealed({**record, "values": {**record["values"], "n_test": record["values"]["n_test"] - 1},
                                             "run_key": "0" * 12})))
    assert evaluations.read(run, _s("fig5")) is None
    path.write_text(json.dumps(store.sealed({**record, "values": {**record["values"], "n_test": record["values"]["n_test"] - 1}})))
    assert evaluations.read(run, _s("fig5")) is not None  # the original content, resealed: valid


def test_missing_result_without_weights_is_a_clear_error(run):
    runs.remove_weights(run.path)
    light = runs.load(CFG)
    assert evaluations.require(light, "fig5", _s("fig5"))["kl"].shape == (SMOKE.evaluation.n_pairs,)  # cached: served
    with pytest.raises(evaluations.EvaluationMissingError, match="not cached and .*weights were removed"):
        evaluations.compute(light, "fig5", _s("fig5", n_pairs=10), device="cpu")
    with pytest.raises(evaluations.EvaluationMissingError,
                       match="python -m cckl_core evaluate --profile smoke --run resnet20_trades --seed 0 --sample-seed 3"):
        evaluations.require(light, "fig5", _s("fig5", sample_seed=3))
    assert list((run.path / "evaluations").glob("fig5-*.npz")) and len(list((run.path / "evaluations").glob("fig5-*"))) == 2


def test_evaluate_run_then_everything_is_cached(run):
    for p in (run.path / "evaluations").iterdir():
        p.unlink()
    assert evaluations.missing(SMOKE, runs.load(CFG)) == ["table1", "fig5"]
    done = evaluations.evaluate_run(SMOKE, CFG, device="cpu", progress=False)
    assert {name: how for name, how, _ in done} == {"table1": "computed", "fig5": "computed"}
    assert all(sec > 0 for _, _, sec in done)
    again = evaluations.evaluate_run(SMOKE, CFG, device="cpu", progress=False, train=False)
    assert all(how == "cached" for _, how, _ in again)
    assert evaluations.missing(SMOKE, runs.load(CFG)) == []


def test_evaluate_run_without_training_needs_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    with pytest.raises(runs.RunNotFoundError, match="not trained"):
        evaluations.evaluate_run(SMOKE, CFG, device="cpu", progress=False, train=False)

def test_an_evaluation_with_an_edited_value_or_from_another_run_is_not_served(smoke_cache):
    prof = SMOKE
    run = runs.load(prof.run("t1_vgg13_half_linear"))
    s = evaluations.settings(prof, "table1")
    assert evaluations.read(run, s) is not None
    meta_file = next((run.path / "evaluations").glob("table1-*.json"))
    meta = json.loads(meta_file.read_text())
    meta["values"]["pgd_steps"] = 99
    meta_file.write_text(json.dumps(meta))
    assert evaluations.read(run, s) is None
    other = runs.load(prof.run("t1_vgg13_pure_linear"))
    for f in (other.path / "evaluations").glob("table1-*"):  # another run's evaluation, same settings
        shutil.copy(f, run.path / "evaluations" / f.name)
    assert evaluations.read(run, s) is None
