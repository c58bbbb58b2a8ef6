"""Training objectives, runs cache, resume and the CLI, on tiny synthetic configs."""
import json
import threading
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cckl_core import attacks, data, metrics, models, profiles, runs, store, training
from cckl_core.__main__ import main as cli_main

TINY = dict(dataset="synthetic", n_train=128, n_test=64, fisher_n=8, robust_n=16, model="resnet20", width=0.125,
            objective="standard", epochs=3, milestones=[2], lr=0.05, batch_size=32, attack_steps=2)


@pytest.fixture(autouse=True)
def _artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))


def _strip_times(history):
    return [{k: v for k, v in h.items() if k not in ("train_seconds", "eval_seconds")} for h in history]


# ------------------------------------------------------------------ objectives
def test_trades_loss_matches_independent_computation():
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.125).double().train()
    x = torch.rand(6, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    x_adv = (x + 0.01 * torch.randn_like(x)).clamp(0, 1)
    loss = training.trades_loss(model, x, y, beta=5.0, x_adv=x_adv)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    # independent: probabilities and KL through metrics.kl, CE as -log p_y
    p = torch.softmax(model(x), 1)
    q = torch.softmax(model(x_adv), 1)
    ref = -torch.log(p[torch.arange(6), y]).mean() + 5.0 * metrics.kl(p, q).mean()
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    assert torch.allclose(loss, ref, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, rtol=1e-7, atol=1e-10)


def test_trades_gradient_flows_through_both_branches():
    torch.manual_seed(1)
    model = models.build("resnet20", width=0.125).double().train()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    x_adv = (x + 0.02 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    # with CE weight removed (y irrelevant), the KL term alone must still depend on both inputs
    loss = training.trades_loss(model, xc, torch.zeros(4, dtype=torch.long), beta=5.0, x_adv=x_adv)
    gx, gadv = torch.autograd.grad(loss, [xc, x_adv])
    assert gx.abs().sum() > 0 and gadv.abs().sum() > 0


def test_objective_leaves_model_in_train_mode():
    model = models.build("resnet20", width=0.125).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    cfg = {**profiles.RUN_KEYS, **TINY}
    for objective in ("standard", "pgd_at", "trades"):
        model.eval()
        training.objective_loss(model, x, y, {**cfg, "objective": objective})
        assert model.training


def test_attack_runs_in_eval_mode_inside_training():
    # BatchNorm in train mode would use batch statistics; the attack must use running ones
    model = models.build("resnet20", width=0.125)
    calls = []
    handle = model.blocks[0].bn1.register_forward_hook(lambda m, i, o: calls.append(m.training))
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    cfg = {**profiles.RUN_KEYS, **TINY, "objective": "pgd_at", "attack_steps": 2}
    training.objective_loss(model, x, y, cfg)
    handle.remove()
    # two attack steps in eval mode, then one training forward in train mode
    assert calls == [False, False, True]


# ------------------------------------------------------------------ runs, cache, resume
def test_resume_equals_uninterrupted_run():
    full = runs.train_config(dict(TINY), "full", "test", device="cpu", progress=False)
    assert full.complete and len(full.history) == TINY["epochs"] + 1
    cfg = {**TINY, "seed": 0}
    part = runs.train_config(cfg, "killed", "test", device="cpu", progress=False, stop_after=1)
    assert not part.complete and len(part.history) == 2
    assert not (part.path / "complete.json").exists()
    resumed = runs.train_config(cfg, "killed", "test", device="cpu", progress=False)
    assert resumed.complete
    assert _strip_times(resumed.history) == _strip_times(full.history)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


def test_cache_hit_does_not_retrain(monkeypatch):
    first = runs.train_config(dict(TINY, epochs=1), "cached", "test", device="cpu", progress=False)

    def boom(*a, **k):
        raise AssertionError("trained again on a cache hit")

    monkeypatch.setattr(runs, "train_epoch", boom)
    again = runs.train_config(dict(TINY, epochs=1), "cached", "test", device="cpu", progress=False)
    assert again.path == first.path and _strip_times(again.history) == _strip_times(first.history)
    assert runs.config_hash(dict(TINY, epochs=1)) != runs.config_hash(dict(TINY, epochs=2))


def test_corrupted_checkpoint_is_rebuilt():
    full = runs.train_config(dict(TINY), "ref", "test", device="cpu", progress=False)
    part = runs.train_config(dict(TINY), "broken", "test", device="cpu", progress=False, stop_after=1)
    (part.path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    rebuilt = runs.train_config(dict(TINY), "broken", "test", device="cpu", progress=False)
    assert rebuilt.complete
    assert _strip_times(rebuilt.history) == _strip_times(full.history)


def test_corrupted_final_model_is_not_used():
    run = runs.train_config(dict(TINY, epochs=1), "m", "test", device="cpu", progress=False)
    (run.path / "model.safetensors").write_bytes(b"garbage")
    assert runs.inspect(run.path).state == runs.CORRUPTED
    again = runs.train_config(dict(TINY, epochs=1), "m", "test", device="cpu", progress=False)
    assert again.complete and runs.inspect(again.path).state == runs.COMPLETE
    for a, b in zip(again.model.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)  # rebuilt from the final checkpoint: the same weights


def test_run_folder_contents():
    run = runs.train_config(dict(TINY, epochs=1), "files", "test", device="cpu", progress=False)
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "environment.json", "dataset.json", "history.json", "model.safetensors", "complete.json",
            "checkpoint.safetensors", "checkpoint.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    env = json.loads((run.path / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    rec = run.history[-1]
    for key in ("test_acc", "test_ce", "cckl", "fisher_fro_mean", "fisher_spec_median", "lr", "train_loss", "pair_probs",
                "robust_acc"):
        assert key in rec
    assert all("robust_acc" in h and 0 <= h["robust_acc"] <= 1 for h in run.history)
    assert run.history[0]["epoch"] == 0 and len(rec["pair_probs"]) == 2
    assert json.loads((run.path / "dataset.json").read_text())["n_test"] == TINY["n_test"]


def test_lock_makes_second_process_wait(tmp_path):
    order = []
    with store.locked(tmp_path):
        t = threading.Thread(target=lambda: (store.locked(tmp_path).__enter__(), order.append("second")))
        t.start()
        time.sleep(0.3)
        order.append("first released")
    t.join(5)
    assert order == ["first released", "second"]


def test_nan_loss_is_a_clear_error_and_leaves_no_complete_entry():
    cfg = dict(TINY, lr=1e12, epochs=2)
    with pytest.raises(training.NonFiniteLossError, match="lower the learning rate"):
        runs.train_config(cfg, "nan", "test", device="cpu", progress=False)
    path = runs.run_path("test", "nan", {**profiles.RUN_KEYS, **cfg})
    assert not (path / "complete.json").exists()


@pytest.mark.parametrize("bad, message", [
    (dict(model="vgg99"), "unknown model"),
    (dict(objective="mixup"), "unknown objective"),
    (dict(eps=2.0), "eps must be in"),
    (dict(eps=-0.1), "eps must be in"),
    (dict(attack_steps=0), "attack_steps must be"),
    (dict(lr=0), "lr must be positive"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        runs.train_config(dict(TINY, **bad), "bad", "test", device="cpu", progress=False)


def test_profiles_load_and_reject_unknown():
    for name in profiles.names():
        prof = profiles.load(name)
        assert prof.runs and prof.roles
    with pytest.raises(ValueError, match="valid profiles"):
        profiles.load("nope")


def test_cli(capsys):
    assert cli_main(["train", "--profile", "smoke", "--run", "nope"]) == 2
    assert "has no run" in capsys.readouterr().err
    assert cli_main(["runs", "--profile", "smoke"]) == 0
    assert "vgg13_standard" in capsys.readouterr().out
    assert cli_main(["deps", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "build/smoke/runs/vgg13_standard.done" in out and "build/smoke/evals/vgg13_standard.done" in out


# ------------------------------------------------------------------ learning
def _train_eval(objective):
    cfg = dict(dataset="synthetic", n_train=1000, n_test=200, fisher_n=8, robust_n=50, model="vgg13", width=0.125, batch_norm=True,
               objective=objective, epochs=5, milestones=[4], lr=0.02, batch_size=50, attack_steps=3, step=4 / 255)
    run = runs.train_config(cfg, objective, "learn", device="cpu", progress=False)
    test = data.load("synthetic", "test", n=200)
    acc = attacks.accuracies(run.model, data.Batches(test, 100), {"pgd": dict(eps=8 / 255, step=2 / 255, steps=10)},
                             progress=False)
    return run, acc


@pytest.mark.slow
def test_standard_training_learns_and_pgd_at_is_more_robust():
    # measured: standard 1.00 clean / 0.015 PGD; PGD-AT 0.86 clean / 0.26 PGD (torch 2.14.1, CPU)
    std, std_acc = _train_eval("standard")
    assert std.history[-1]["test_acc"] >= 0.9
    assert std.history[-1]["fisher_fro_mean"] > 100 * std.history[0]["fisher_fro_mean"]
    adv, adv_acc = _train_eval("pgd_at")
    assert adv_acc["pgd"] > std_acc["pgd"] + 0.1
