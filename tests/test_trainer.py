"""The training loop (trainer.train): resume equals an uninterrupted run, the cache is served and
damaged files are rebuilt, the run folder's files, progress lines, non-finite losses and weights, a full
disk; and, slow, that training learns."""
import dataclasses
import json
import os
from dataclasses import replace

import pytest
import torch

from cckl_core import attacks, data, models, objectives, profiles, runs, store, trainer
from conftest import disk_full_for, tiny_run

TINY = dict(n_train=128, n_test=64)  # 4 SGD steps an epoch


def tiny(name: str, **changes) -> profiles.RunConfig:
    """The tiny run config ``name`` (4 SGD steps an epoch), with ``changes``."""
    return tiny_run(name, **{**TINY, **changes})


def _train(cfg: profiles.RunConfig, **kw) -> runs.Run:
    return trainer.train(cfg, device="cpu", progress=False, **kw)


@pytest.fixture(autouse=True)
def _artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))


def _strip_times(history):
    return [{k: v for k, v in h.items() if k not in ("train_seconds", "eval_seconds")} for h in history]


def test_resume_equals_uninterrupted_run():
    """Killed after epoch 1 (inside which nothing special happens) and resumed through a milestone
    that falls within epoch 2: the same history and weights as an uninterrupted run."""
    full = _train(tiny("full", milestones=[1.5]), weights=True)
    assert full.complete and len(full.history) == tiny("full").epochs + 1
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


# --------------------------------------------------------------------------- non-finite losses and weights, a full disk
def test_nan_loss_is_a_clear_error_and_leaves_no_complete_entry():
    cfg = tiny("nan", lr=1e12, epochs=2, milestones=[1])
    with pytest.raises(models.NonFiniteError, match="lower the learning rate"):
        _train(cfg)
    assert runs.path_of(cfg).is_dir() and not (runs.path_of(cfg) / "complete.json").exists()


def test_weights_that_become_infinite_stop_training_before_evaluation(monkeypatch):
    real = objectives.train_epoch

    def blow_up(model, *a, **k):
        loss = real(model, *a, **k)
        with torch.no_grad():
            next(model.parameters()).fill_(float("inf"))
        return loss

    called = []
    monkeypatch.setattr(trainer, "train_epoch", blow_up)
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: called.append(1) or {})
    cfg = tiny_run("inf", epochs=2, milestones=[1])
    with pytest.raises(models.NonFiniteError, match="non-finite after epoch 1"):
        trainer.train(cfg, device="cpu", progress=False)
    assert called == [1]  # only the initial evaluation ran, none after the bad epoch
    assert runs.inspect(runs.path_of(cfg), cfg).state == runs.PARTIAL


def test_a_full_disk_keeps_the_last_finished_epoch_and_says_what_is_needed(monkeypatch):
    cfg = tiny_run("disk")
    reference = trainer.train(replace(cfg, name="reference"), device="cpu", progress=False)
    real_fsync = disk_full_for(monkeypatch, "checkpoint-0002")  # full at epoch 2
    with pytest.raises(store.DiskFullError) as err:
        trainer.train(cfg, device="cpu", progress=False)
    folder = runs.path_of(cfg)
    message = err.value.strerror
    assert str(folder) in message and "MiB free" in message and "needed" in message and "keeps epoch 1" in message
    assert json.loads((folder / "checkpoint.json").read_text())["epoch"] == 1
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(os, "fsync", real_fsync)
    resumed = trainer.train(cfg, device="cpu", progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_seconds") and k != "run_key"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)


# --------------------------------------------------------------------------- learning
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
