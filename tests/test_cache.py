"""The run cache: checksummed and sealed files that must agree with the run's key, safetensors,
removed weights, read-only reading, non-finite weights."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cckl_core import models, objectives, profiles, runs, store, trainer
from cckl_core.__main__ import main as cli_main

TINY = dict(dataset="synthetic", n_train=96, n_test=48, fisher_n=8, robust_n=16, model="resnet20", width=0.125,
            objective="standard", epochs=2, milestones=[1], lr=0.05, batch_size=32, attack_steps=2)


SMOKE = profiles.load("smoke")
CFG = SMOKE.run("vgg13_standard")


@pytest.fixture
def smoke(smoke_cache):
    """The folder of the finished smoke run vgg13_standard, in a private copy of the smoke fixture."""
    return runs.path_of(CFG)


@pytest.fixture
def tiny_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))


def _change_a_digit(path):
    text = path.read_text()
    k = next(i for i, ch in enumerate(text) if ch.isdigit() and ch != "9")
    path.write_text(text[:k] + str(int(text[k]) + 1) + text[k + 1:])


# ------------------------------------------------------------------ store
def test_state_round_trip_keeps_types(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "history": [{"epoch": 1, "acc": 0.1 + 0.2}], "epoch": 1}
    digest = store.save_state(tmp_path / "s.safetensors", state)
    back = store.load_state(tmp_path / "s.safetensors", digest)
    assert back["history"] == state["history"] and back["epoch"] == 1
    opt2 = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])
    sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, milestones=[7], gamma=0.1)
    sched2.load_state_dict(back["scheduler"])
    assert sched2.milestones[3] == 0 and sched2.milestones[2] == 1  # still a Counter: missing epochs read 0


def test_load_state_rejects_a_changed_file(tmp_path):
    digest = store.save_state(tmp_path / "s.safetensors", {"w": torch.ones(4)})
    payload = bytearray((tmp_path / "s.safetensors").read_bytes())
    payload[-1] ^= 1
    (tmp_path / "s.safetensors").write_bytes(bytes(payload))
    with pytest.raises(store.CorruptedFileError, match="checksum"):
        store.load_state(tmp_path / "s.safetensors", digest)


# ------------------------------------------------------------------ checksums
def test_weights_are_safetensors(smoke):
    weights = load_file(smoke / "model.safetensors")
    run = runs.load(CFG, weights=True, device="cpu")
    assert runs.load(CFG).model is None  # weights only when asked for
    assert set(weights) == set(run.model.state_dict())
    for k, v in run.model.state_dict().items():
        assert torch.equal(weights[k], v)


@pytest.mark.parametrize("name", runs.RECORDED)
def test_a_changed_digit_is_detected_reported_and_rebuilt(smoke, name):
    before = runs.load(CFG).history
    _change_a_digit(smoke / name)
    assert runs.inspect(smoke).state == runs.CORRUPTED
    with pytest.raises(runs.RunCorruptedError, match=name):
        runs.load(CFG)
    assert [r["state"] for r in runs.status(SMOKE) if r["run"] == "vgg13_standard"] == [runs.CORRUPTED]
    rebuilt = trainer.train(CFG, device="cpu", progress=False)
    assert runs.inspect(smoke, CFG).state == runs.COMPLETE
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in h]  # noqa: E731
    assert strip(rebuilt.history) == strip(before)


def test_changed_weights_are_not_used(smoke):
    payload = bytearray((smoke / "model.safetensors").read_bytes())
    payload[-3] ^= 4
    (smoke / "model.safetensors").write_bytes(bytes(payload))
    with pytest.raises(runs.RunCorruptedError, match="model.safetensors"):
        runs.load(CFG, weights=True)


def _reseal_with(folder, name, source):
    """Put ``source`` (a file of another run) in place of ``folder/name`` and record its checksum in a
    resealed complete.json: every checksum then agrees, only the run's key does not."""
    shutil.copy(source, folder / name)
    manifest = store.read_json(folder / "complete.json")
    manifest["files"][name] = store.sha256_file(folder / name)
    store.atomic_write_json(folder / "complete.json", store.sealed(manifest))


@pytest.mark.parametrize("name, words", [("config.json", "hashes to"), ("environment.json", "another run"),
                                         ("dataset.json", "another run"), ("history.json", "another run")])
def test_a_file_of_another_run_is_detected(smoke, name, words):
    """A swapped file whose checksum was rerecorded (and complete.json resealed) is still caught: every
    file of a finished run names the run's key, and the config hashes to it."""
    other = runs.path_of(SMOKE.run("vgg13_pgd_at"))
    _reseal_with(smoke, name, other / name)
    st = runs.inspect(smoke)
    assert st.state == runs.CORRUPTED and words in st.detail and name.split(".")[0] in st.detail, st.detail
    with pytest.raises(runs.RunCorruptedError):
        runs.load(CFG)


def test_an_edited_complete_json_is_detected(smoke):
    text = (smoke / "complete.json").read_text().replace('"finished": "', '"finished": "x')
    (smoke / "complete.json").write_text(text)
    st = runs.inspect(smoke)
    assert st.state == runs.CORRUPTED and "seal" in st.detail
    store.atomic_write_json(smoke / "complete.json", store.sealed(store.read_json(smoke / "complete.json")))
    assert runs.inspect(smoke).state == runs.COMPLETE  # resealed: valid again (only a seal was wrong)


def test_a_folder_holding_another_config_is_not_served(smoke):
    """inspect(path, expected): a valid run folder is not served for a config it was not trained with."""
    assert runs.inspect(smoke, SMOKE.run("vgg13_pgd_at")).state == runs.CORRUPTED
    assert runs.inspect(smoke, CFG).state == runs.COMPLETE


def test_removed_weights_still_serve_history(smoke, capsys):
    runs.remove_weights(smoke)
    st = runs.inspect(smoke)
    assert st.state == runs.NO_WEIGHTS
    assert not list(smoke.glob("*.safetensors")) and not (smoke / runs.CHECKPOINT_INDEX).exists()
    run = runs.load(CFG)
    assert run.model is None and run.history and run.dataset_name == "synthetic"
    assert (run.name, run.seed, run.key, run.path) == (CFG.name, CFG.seed, CFG.key, smoke)
    with pytest.raises(runs.WeightsRemovedError, match="weights were removed"):
        runs.load(CFG, weights=True)
    with pytest.raises(runs.WeightsRemovedError):
        trainer.train(CFG, device="cpu", progress=False, weights=True)
    assert trainer.train(CFG, device="cpu", progress=False).history == run.history
    assert cli_main(["runs", "--profile", "smoke"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("vgg13_standard "))
    assert runs.NO_WEIGHTS in line


def test_reading_takes_no_lock(smoke, monkeypatch):
    (smoke / ".lock").unlink(missing_ok=True)

    def refuse(folder):
        raise PermissionError(f"read-only: {folder}")

    monkeypatch.setattr(store, "locked", refuse)
    assert runs.load(CFG, weights=True, device="cpu").model is not None
    assert trainer.train(CFG, device="cpu", progress=False, weights=True).complete
    assert not (smoke / ".lock").exists()


def test_read_only_root_serves_finished_runs(smoke):
    import os
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions; test_reading_takes_no_lock covers the logic")
    for p in [smoke, *smoke.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert runs.load(CFG, weights=True, device="cpu").complete
    finally:
        for p in [smoke, *smoke.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_status_agrees_with_load(smoke):
    def states():
        return [r["state"] for r in runs.status(SMOKE) if r["run"] == "vgg13_standard"]
    assert states() == [runs.COMPLETE]
    runs.remove_weights(smoke)
    assert states() == [runs.NO_WEIGHTS]
    (smoke / "complete.json").unlink()
    assert states() == [runs.PARTIAL]
    with pytest.raises(runs.RunNotFoundError, match="not trained"):
        runs.load(CFG)


# ------------------------------------------------------------------ non-finite weights
def test_non_finite_saved_weights_raise_at_load(smoke):
    state = load_file(smoke / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key][0] = float("nan")
    digest = store.save_state(smoke / "model.safetensors", state)
    manifest = json.loads((smoke / "complete.json").read_text())
    manifest["files"]["model.safetensors"] = digest
    store.atomic_write_json(smoke / "complete.json", store.sealed(manifest))
    assert runs.inspect(smoke, CFG).state == runs.COMPLETE  # every checksum agrees: only the values are bad
    with pytest.raises(models.NonFiniteError, match="non-finite"):
        runs.load(CFG, weights=True, device="cpu")


def test_weights_that_become_infinite_stop_training_before_evaluation(tiny_env, monkeypatch):
    real = objectives.train_epoch

    def blow_up(model, *a, **k):
        loss = real(model, *a, **k)
        with torch.no_grad():
            next(model.parameters()).fill_(float("inf"))
        return loss

    called = []
    monkeypatch.setattr(trainer, "train_epoch", blow_up)
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: called.append(1) or {})
    cfg = profiles.run_config("inf", "test", TINY)
    with pytest.raises(models.NonFiniteError, match="non-finite after epoch 1"):
        trainer.train(cfg, device="cpu", progress=False)
    assert called == [1]  # only the initial evaluation ran, none after the bad epoch
    assert runs.inspect(runs.path_of(cfg), cfg).state == runs.PARTIAL


def test_bf16_training_step_on_cpu_is_finite():
    cfg = profiles.run_config("bf16", "test", {**TINY, "precision": "bf16", "objective": "trades"})
    model, _ = models.fresh(cfg, 10, torch.device("cpu"))
    opt, sched = objectives.make_optimizer(model, cfg)
    from cckl_core import data
    batches = data.Batches(data.load("synthetic", "train", n=64), 32, shuffle=True)
    dtypes = []
    handle = model.fc.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    loss = objectives.train_epoch(model, opt, sched, batches, cfg)
    handle.remove()
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert torch.bfloat16 in dtypes  # autocast was on
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ------------------------------------------------------------------ locks
@pytest.mark.parametrize("kind", ["link to a file", "dangling link", "folder", "fifo"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_nothing_is_written_through_it(tmp_path, kind):
    """`folder/.lock` is opened by one opener that refuses links and non-files: a link planted in a
    shared artifacts root cannot get another user's file truncated, a folder or FIFO is one line."""
    import os
    folder, victim = tmp_path / "run", tmp_path / "outside" / "precious.txt"
    folder.mkdir()
    victim.parent.mkdir()
    victim.write_text("keep me")
    lock = folder / ".lock"
    if kind == "link to a file":
        lock.symlink_to(victim)
    elif kind == "dangling link":
        lock.symlink_to(tmp_path / "outside" / "new.txt")
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(store.UnsafeLockError) as err:
        with store.locked(folder):
            pass
    assert str(lock) in str(err.value) and "\n" not in str(err.value) and "remove it" in str(err.value)
    assert victim.read_text() == "keep me" and not (tmp_path / "outside" / "new.txt").exists()


def test_a_plain_lock_file_is_used_and_never_truncated(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text("pid 1")
    with store.locked(folder):
        pass
    assert (folder / ".lock").read_text() == "pid 1"
    with store.locked(tmp_path / "new"):
        assert (tmp_path / "new" / ".lock").is_file()


def test_evaluate_refuses_a_run_folders_linked_lock_in_one_line(smoke, tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (smoke / ".lock").unlink(missing_ok=True)
    (smoke / ".lock").symlink_to(victim)
    shutil.rmtree(smoke / "evaluations")  # something to compute: evaluate takes the run's lock
    assert cli_main(["evaluate", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cpu",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing the lock file" in err and "Traceback" not in err
    assert victim.read_text() == "keep me"


# ------------------------------------------------------------------ write failures
@pytest.mark.parametrize("code, words", [(30, "read-only"), (27, "ulimit -f"), (13, "permission denied")])
def test_every_write_failure_is_one_line_naming_the_path_and_the_fix(tmp_path, monkeypatch, code, words):
    import errno
    import os

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    target = tmp_path / "out" / "x.json"
    with pytest.raises(store.WriteError) as err:
        store.atomic_write_json(target, {"a": 1})
    msg = str(err.value)
    assert str(target) in msg and words in msg and "\n" not in msg and err.value.errno == code
    assert not list(target.parent.glob("*.tmp"))  # nothing half-written is left
    assert code != errno.ENOSPC


def test_a_file_size_limit_during_training_is_one_line(tmp_path):
    """`ulimit -f`: the kernel refuses the write (EFBIG; Python ignores SIGXFSZ) -> one line, exit 2."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "CCKL_ARTIFACTS": str(tmp_path / "artifacts"), "CCKL_DATA_ROOT": str(tmp_path / "data"),
           "CCKL_THREADS": "1"}
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
            "from cckl_core.__main__ import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "train", "--profile", "smoke", "--run", "vgg13_standard",
                           "--device", "cpu", "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ulimit -f" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
