"""The run cache (cckl_core.runs): checksummed and sealed files that must agree with the run's key and
with each other, safetensors weights, removed weights, read-only reading, non-finite weights, and the
checkpoint that replaces the previous one."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cckl_core import models, objectives, profiles, runs, store, trainer
from cckl_core.__main__ import main as cli_main
from conftest import tiny_run

SMOKE = profiles.load("smoke")
CFG = SMOKE.run("vgg13_standard")


@pytest.fixture
def smoke(smoke_cache):
    """The folder of the finished smoke run vgg13_standard, in a private copy of the smoke fixture."""
    return runs.path_of(CFG)


def _change_a_digit(path):
    text = path.read_text()
    k = next(i for i, ch in enumerate(text) if ch.isdigit() and ch != "9")
    path.write_text(text[:k] + str(int(text[k]) + 1) + text[k + 1:])


def _reseal(folder, name):
    """Record the checksum of ``folder/name`` in a resealed complete.json: what a collaborator who edits
    results and "fixes" the checksums leaves behind."""
    manifest = store.read_json(folder / "complete.json")
    manifest["files"][name] = store.sha256_file(folder / name)
    store.atomic_write_json(folder / "complete.json", store.sealed(manifest))


def _reseal_with(folder, name, source):
    """Put ``source`` (a file of another run) in place of ``folder/name`` and reseal: every checksum then
    agrees, only the run's key does not."""
    shutil.copy(source, folder / name)
    _reseal(folder, name)


# --------------------------------------------------------------------------- checksums, seals and keys
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


def test_a_config_that_no_longer_hashes_to_the_folder_is_not_served(smoke):
    folder = smoke
    cfg = json.loads((folder / "config.json").read_text())
    store.atomic_write_json(folder / "config.json", {**cfg, "lr": 0.5})
    _reseal(folder, "config.json")
    st = runs.inspect(folder)
    assert st.state == runs.CORRUPTED and "hashes to" in st.detail
    with pytest.raises(runs.RunCorruptedError):
        runs.load(CFG)


def test_a_history_from_another_run_is_not_served(smoke):
    folder, other = smoke, runs.path_of(SMOKE.run("vgg13_pgd_at"))
    store.atomic_write_json(folder / "history.json", json.loads((other / "history.json").read_text()))
    _reseal(folder, "history.json")
    st = runs.inspect(folder)
    assert st.state == runs.CORRUPTED and "another run" in st.detail


def test_an_edited_complete_json_is_detected(smoke):
    text = (smoke / "complete.json").read_text().replace('"finished": "', '"finished": "x')
    (smoke / "complete.json").write_text(text)
    st = runs.inspect(smoke)
    assert st.state == runs.CORRUPTED and "seal" in st.detail
    store.atomic_write_json(smoke / "complete.json", store.sealed(store.read_json(smoke / "complete.json")))
    assert runs.inspect(smoke).state == runs.COMPLETE  # resealed: valid again (only a seal was wrong)


def test_an_unsealed_edit_of_complete_json_is_not_served(smoke):
    folder = smoke
    manifest = json.loads((folder / "complete.json").read_text())
    manifest["epochs"] = 9
    (folder / "complete.json").write_text(json.dumps(manifest))
    assert runs.inspect(folder).state == runs.CORRUPTED


def test_a_folder_holding_another_config_is_not_served(smoke):
    """inspect(path, expected): a valid run folder is not served for a config it was not trained with."""
    assert runs.inspect(smoke, SMOKE.run("vgg13_pgd_at")).state == runs.CORRUPTED
    assert runs.inspect(smoke, CFG).state == runs.COMPLETE


# --------------------------------------------------------------------------- removed weights, read-only reading, status
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


# --------------------------------------------------------------------------- non-finite weights
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


# --------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_is_replaced_not_added(tmp_path):
    """save_checkpoint writes checkpoint-NNNN under a new name, then points checkpoint.json at it, then
    removes the older one; load_checkpoint reads back exactly what was saved."""
    cfg = tiny_run("ck")
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
    assert runs.load_checkpoint(tmp_path, tiny_run("ck", lr=0.5), torch.device("cpu")) is None  # another run's key
    assert not (tmp_path / "checkpoint.json").exists()  # an unusable checkpoint is removed
