"""Training objectives, the SGD step and its lr schedule, the training loop (trainer), resume and the
CLI, on tiny synthetic configs."""
import dataclasses
import json
import threading
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cckl_core import attacks, data, metrics, models, objectives, profiles, runs, store, trainer
from cckl_core.__main__ import main as cli_main

TINY = dict(dataset="synthetic", n_train=128, n_test=64, fisher_n=8, robust_n=16, model="resnet20", width=0.125,
            objective="standard", epochs=3, milestones=[2], lr=0.05, batch_size=32, attack_steps=2)


def tiny(name: str, **changes) -> profiles.RunConfig:
    """The TINY config (checked) as run ``name`` of profile ``test``, with ``changes``."""
    return profiles.run_config(name, "test", {**TINY, **changes})


def _train(cfg: profiles.RunConfig, **kw) -> runs.Run:
    return trainer.train(cfg, device="cpu", progress=False, **kw)


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
    loss = objectives.trades_loss(model, x, y, beta=5.0, x_adv=x_adv)
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
    loss = objectives.trades_loss(model, xc, torch.zeros(4, dtype=torch.long), beta=5.0, x_adv=x_adv)
    gx, gadv = torch.autograd.grad(loss, [xc, x_adv])
    assert gx.abs().sum() > 0 and gadv.abs().sum() > 0


def test_objective_leaves_model_in_train_mode():
    model = models.build("resnet20", width=0.125).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for objective in ("standard", "pgd_at", "trades"):
        model.eval()
        objectives.objective_loss(model, x, y, tiny("t", objective=objective))
        assert model.training


def test_attack_runs_in_eval_mode_inside_training():
    # BatchNorm in train mode would use batch statistics; the attack must use running ones
    model = models.build("resnet20", width=0.125)
    calls = []
    handle = model.blocks[0].bn1.register_forward_hook(lambda m, i, o: calls.append(m.training))
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    objectives.objective_loss(model, x, y, tiny("t", objective="pgd_at", attack_steps=2))
    handle.remove()
    # two attack steps in eval mode, then one training forward in train mode
    assert calls == [False, False, True]


# ------------------------------------------------------------------ the SGD step and its schedule
def test_lr_schedule_counts_sgd_steps_and_allows_fractional_milestones():
    """lr of step t = lr * 0.1 ** #{m : round(m * steps_per_epoch) <= t}: with 4 steps an epoch,
    milestones 0.5 and 1 lower the lr after steps 2 and 4."""
    cfg = tiny("sched", milestones=[0.5, 1])
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.125)
    opt, sched = objectives.make_optimizer(model, cfg, steps_per_epoch=4)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        loss = objectives.step(model, opt, sched, x, y, cfg)
        assert loss.dim() == 0 and not loss.requires_grad and torch.isfinite(loss)
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005])


def test_step_is_one_sgd_step_of_the_objective():
    """objectives.step = the objective's loss, backward, one SGD update (here: plain SGD, checked by hand)."""
    cfg = tiny("step", momentum=0.0, weight_decay=0.0, lr=0.1)
    torch.manual_seed(0)
    model = models.build("resnet20", width=0.125).double()
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    ref = [p.detach().clone() for p in model.parameters()]
    model.train()
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    opt, sched = objectives.make_optimizer(model, cfg)
    loss = objectives.step(model, opt, sched, x, y, cfg)
    for p, p0, g in zip(model.parameters(), ref, grads):
        assert torch.allclose(p, p0 - 0.1 * g, rtol=1e-9, atol=1e-12)
    assert loss > 0


# ------------------------------------------------------------------ the training loop, cache, resume
def test_resume_equals_uninterrupted_run():
    """Killed after epoch 1 (inside which nothing special happens) and resumed through a milestone
    that falls within epoch 2: the same history and weights as an uninterrupted run."""
    full = _train(tiny("full", milestones=[1.5]), weights=True)
    assert full.complete and len(full.history) == TINY["epochs"] + 1
    assert [h["lr"] for h in full.history[1:]] == pytest.approx([0.05, 0.05, 0.005])
    cfg = tiny("killed", milestones=[1.5])
    part = _train(cfg, stop_after=1)
    assert not part.complete and len(part.history) == 2
    assert not (part.path / "complete.json").exists()
    assert runs.inspect(part.path, cfg).state == runs.PARTIAL
    lines = []
    resumed = _train(cfg, weights=True, log=lines.append)
    assert resumed.complete and lines == ["[cckl] test/killed (seed 0): resuming after epoch 1 of 3"]
    assert _strip_times(resumed.history) == _strip_times(full.history)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


def test_progress_lines_go_to_log():
    lines = []
    trainer.train(tiny("logged", epochs=1, milestones=[0.5]), device="cpu", progress=True, log=lines.append)
    assert len(lines) == 1 and "epoch 1/1" in lines[0] and "test acc" in lines[0]


def test_cache_hit_does_not_retrain(monkeypatch):
    first = _train(tiny("cached", epochs=1, milestones=[0.5]))

    def boom(*a, **k):
        raise AssertionError("trained again on a cache hit")

    monkeypatch.setattr(trainer, "train_epoch", boom)
    again = _train(tiny("cached", epochs=1, milestones=[0.5]))
    assert again.path == first.path and _strip_times(again.history) == _strip_times(first.history)
    assert again.model is None and _train(tiny("cached", epochs=1, milestones=[0.5]), weights=True).model is not None
    assert tiny("x", epochs=1, milestones=[0.5]).key != tiny("x", epochs=2, milestones=[0.5]).key
    assert dataclasses.replace(first.config, epochs=2).key == tiny("x", epochs=2, milestones=[0.5]).key


@pytest.mark.parametrize("damage", ["garbage", "other run"])
def test_corrupted_checkpoint_is_rebuilt(damage, capsys):
    full = _train(tiny("ref"))
    cfg = tiny("broken")
    part = _train(cfg, stop_after=1)
    if damage == "garbage":
        (part.path / "checkpoint-0001.safetensors").write_bytes(b"not a checkpoint")
    else:  # a checkpoint.json naming another run's key
        meta = json.loads((part.path / "checkpoint.json").read_text())
        (part.path / "checkpoint.json").write_text(json.dumps({**meta, "run_key": "0" * 12}))
    capsys.readouterr()
    rebuilt = _train(cfg)
    out = capsys.readouterr().out
    assert "is unusable" in out and "training broken from the start" in out, out
    assert rebuilt.complete
    assert _strip_times(rebuilt.history) == _strip_times(full.history)


def test_corrupted_final_model_is_not_used():
    cfg = tiny("m", epochs=1, milestones=[0.5])
    run = _train(cfg, weights=True)
    (run.path / "model.safetensors").write_bytes(b"garbage")
    assert runs.inspect(run.path).state == runs.CORRUPTED
    again = _train(cfg, weights=True)
    assert again.complete and runs.inspect(again.path).state == runs.COMPLETE
    for a, b in zip(again.model.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)  # rebuilt from the final checkpoint: the same weights


def test_a_checkpoint_is_replaced_not_added(tmp_path):
    """save_checkpoint writes checkpoint-NNNN under a new name, then points checkpoint.json at it, then
    removes the older one; load_checkpoint reads back exactly what was saved."""
    cfg = tiny("ck")
    model = torch.nn.Linear(2, 2)
    opt, sched = objectives.make_optimizer(model, cfg)
    history = [{"epoch": 0, "run_key": cfg.key}, {"epoch": 1}]
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    runs.save_checkpoint(tmp_path, cfg, {**state, "history": history[:1]}, 0)
    runs.save_checkpoint(tmp_path, cfg, {**state, "history": history}, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0001.safetensors", "checkpoint.json"]
    back = runs.load_checkpoint(tmp_path, cfg, torch.device("cpu"))
    assert back["epoch"] == 1 and back["history"] == history
    assert all(torch.equal(back["model"][k], v) for k, v in model.state_dict().items())
    assert runs.load_checkpoint(tmp_path, tiny("ck", lr=0.5), torch.device("cpu")) is None  # another run's key
    assert not (tmp_path / "checkpoint.json").exists()  # an unusable checkpoint is removed


def test_run_folder_contents():
    cfg = tiny("files", epochs=1, milestones=[0.5])
    run = _train(cfg)
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "environment.json", "dataset.json", "history.json", "model.safetensors", "complete.json",
            "checkpoint-0001.safetensors", "checkpoint.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert run.path == runs.path_of(cfg) and run.path.name == f"files-{cfg.key}" and run.config == cfg
    env = json.loads((run.path / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    # every file names the run's key; complete.json is sealed and lists every file's checksum
    assert env["run_key"] == cfg.key == json.loads((run.path / "dataset.json").read_text())["run_key"]
    assert run.history[0]["run_key"] == cfg.key
    assert json.loads((run.path / "config.json").read_text()) == cfg.as_dict()
    manifest = store.check_seal(json.loads((run.path / "complete.json").read_text()), run.path / "complete.json")
    assert manifest["key"] == cfg.key and manifest["files"]["model.safetensors"] == store.sha256_file(
        run.path / "model.safetensors")
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
    cfg = tiny("nan", lr=1e12, epochs=2, milestones=[1])
    with pytest.raises(models.NonFiniteError, match="lower the learning rate"):
        _train(cfg)
    assert runs.path_of(cfg).is_dir() and not (runs.path_of(cfg) / "complete.json").exists()


@pytest.mark.parametrize("bad, message", [
    (dict(model="vgg99"), "unknown model"),
    (dict(objective="mixup"), "unknown objective"),
    (dict(eps=2.0), "eps must be in"),
    (dict(eps=-0.1), "eps must be in"),
    (dict(attack_steps=0), "attack_steps must be"),
    (dict(lr=0), "lr must be positive"),
    (dict(milestones=[3]), "not before the last epoch"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(profiles.ProfileError, match=message):
        tiny("bad", **bad)


def test_profiles_load_and_reject_unknown():
    for name in profiles.names():
        prof = profiles.load(name)
        assert prof.runs and prof.roles
    with pytest.raises(ValueError, match="valid profiles"):
        profiles.load("nope")


def test_cli(capsys, smoke_cache):
    assert cli_main(["train", "--profile", "smoke", "--run", "nope"]) == 2
    assert "has no run" in capsys.readouterr().err
    assert cli_main(["list", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.split() == list(profiles.load("smoke").runs)
    assert cli_main(["runs", "--profile", "smoke"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("vgg13_standard "))
    assert f" {runs.COMPLETE} " in line and " 2/2 " in line
    # `train` of a finished run serves it from the cache (trains nothing) and says where it is
    cfg = profiles.load("smoke").run("vgg13_standard")
    before = (runs.path_of(cfg) / "complete.json").read_bytes()
    assert cli_main(["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "smoke/vgg13_standard (seed 0): 2 epochs" in out and str(runs.path_of(cfg)) in out
    assert (runs.path_of(cfg) / "complete.json").read_bytes() == before


# ------------------------------------------------------------------ learning
def _train_eval(objective):
    cfg = dict(dataset="synthetic", n_train=1000, n_test=200, fisher_n=8, robust_n=50, model="vgg13", width=0.125, batch_norm=True,
               objective=objective, epochs=5, milestones=[4], lr=0.02, batch_size=50, attack_steps=3, step=4 / 255)
    run = trainer.train(profiles.run_config(objective, "learn", cfg), device="cpu", progress=False, weights=True)
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
