"""Reliability, round two (the issue's classes 3, 5 and 6; classes 1, 2, 4, 5 (library) and 7 are in
test_bundle_security, test_makefile, test_data_sources, test_input_checks and test_paper): every file
of a run agrees with the run's key and with the others; a full disk keeps the last finished epoch and
ends in one line; settings that cannot mean what they say are refused. Each test here fails on the
commit the issue started from (06ea40b)."""
import errno
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from cckl_core import devices, evaluations, profiles, runs, store, trainer
from cckl_core.__main__ import main as cli_main
from cckl_core.paths import PathSettingError

TINY = dict(dataset="synthetic", n_train=96, n_test=48, fisher_n=8, robust_n=16, model="resnet20", width=0.125,
            objective="standard", epochs=3, milestones=[2], lr=0.05, batch_size=32, attack_steps=2)


def _folder(root: Path, run: str) -> Path:
    return next((root / "smoke").glob(f"{run}-*"))


def _rewrite(folder: Path, name: str, payload) -> None:
    """Replace ``name`` in a finished run and rewrite its checksum in a resealed complete.json: what a
    collaborator who edits results and "fixes" the checksums leaves behind."""
    digest = store.atomic_write_json(folder / name, payload)
    manifest = json.loads((folder / "complete.json").read_text())
    manifest["files"][name] = digest
    store.atomic_write_json(folder / "complete.json", store.sealed(manifest))


# --------------------------------------------------------------------------- class 3: consistency
def test_a_config_that_no_longer_hashes_to_the_folder_is_not_served(smoke_cache):
    folder = _folder(smoke_cache, "vgg13_standard")
    cfg = json.loads((folder / "config.json").read_text())
    _rewrite(folder, "config.json", {**cfg, "lr": 0.5})
    st = runs.inspect(folder)
    assert st.state == runs.CORRUPTED and "hashes to" in st.detail
    with pytest.raises(runs.RunCorruptedError):
        runs.load(profiles.load("smoke").run("vgg13_standard"))


def test_a_history_from_another_run_is_not_served(smoke_cache):
    folder, other = _folder(smoke_cache, "vgg13_standard"), _folder(smoke_cache, "vgg13_pgd_at")
    _rewrite(folder, "history.json", json.loads((other / "history.json").read_text()))
    st = runs.inspect(folder)
    assert st.state == runs.CORRUPTED and "another run" in st.detail


def test_an_unsealed_edit_of_complete_json_is_not_served(smoke_cache):
    folder = _folder(smoke_cache, "vgg13_standard")
    manifest = json.loads((folder / "complete.json").read_text())
    manifest["epochs"] = 9
    (folder / "complete.json").write_text(json.dumps(manifest))
    assert runs.inspect(folder).state == runs.CORRUPTED


def test_an_evaluation_with_an_edited_value_or_from_another_run_is_not_served(smoke_cache):
    prof = profiles.load("smoke")
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


# --------------------------------------------------------------------------- class 5: a full disk
def test_a_full_disk_keeps_the_last_finished_epoch_and_says_what_is_needed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    cfg = profiles.run_config("disk", "test", TINY)
    reference = trainer.train(replace(cfg, name="reference"), device="cpu", progress=False)
    real_fsync = os.fsync

    def full_at_epoch_2(fd):
        if "checkpoint-0002" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_at_epoch_2)
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


def test_a_full_disk_on_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    real_fsync = os.fsync

    def full(fd):
        if "checkpoint-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert cli_main(["train", "--profile", "smoke", "--run", "t1_vgg13_pure_linear", "--device", "cpu",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no space left") and "free some space" in err[0]


# --------------------------------------------------------------------------- class 6: settings that cannot mean it
def _profile(tmp_path, text: str) -> Path:
    path = tmp_path / "p.toml"
    base = Path(profiles.__file__).with_name("smoke.toml").read_text()
    path.write_text(base + "\n" + text)
    return path


def test_a_milestone_at_or_beyond_the_last_epoch_is_refused(tmp_path):
    for m in ("[2]", "[5]", "[0]"):
        with pytest.raises(profiles.ProfileError, match="milestone"):
            profiles.run_config("r", "t", {**TINY, "epochs": 2, "milestones": json.loads(m)})
    assert profiles.run_config("r", "t", {**TINY, "epochs": 1, "milestones": [0.5]}).milestones == (0.5,)


def test_the_same_run_twice_in_one_role_is_refused(tmp_path):
    text = Path(profiles.__file__).with_name("smoke.toml").read_text().replace(
        'fig5 = ["resnet20_trades", "t1_resnet32_standin"]', 'fig5 = ["resnet20_trades", "resnet20_trades"]')
    path = tmp_path / "twice.toml"
    path.write_text(text)
    with pytest.raises(profiles.ProfileError, match="names the same run twice"):
        profiles.parse(path)


def test_an_absurd_thread_count_is_refused(monkeypatch):
    monkeypatch.setenv("CCKL_THREADS", "100000")
    with pytest.raises(devices.DeviceError, match="far more than"):
        devices.configure_threads()


@pytest.mark.parametrize("var", ["CCKL_ARTIFACTS", "CCKL_DATA_ROOT", "CCKL_FIGURES", "CCKL_CIFAR10_ZIP", "CCKL_PROFILE",
                                 "CCKL_DEVICE"])
def test_an_empty_environment_variable_is_a_mistake_not_the_current_folder(monkeypatch, var, capsys):
    monkeypatch.setenv(var, "")
    from cckl_core import paths
    with pytest.raises((PathSettingError, profiles.ProfileError, devices.DeviceError), match=f"{var} is set but empty"):
        {"CCKL_ARTIFACTS": paths.artifacts_root, "CCKL_DATA_ROOT": paths.data_root, "CCKL_FIGURES": paths.figures_root,
         "CCKL_CIFAR10_ZIP": paths.cifar10_zip, "CCKL_PROFILE": profiles.default_to_compute,
         "CCKL_DEVICE": devices.resolve_device}[var]()


def _exit_code(argv) -> int:
    """The CLI's exit status (argparse's own errors exit through SystemExit)."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("argv, words", [
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--run", "vgg13_trades"], "--run given twice"),
    (["evaluate", "--profile", "smoke", "--runs", ""], "--runs is empty"),
    (["evaluate", "--profile", "smoke", "--runs", "vgg13_standard,,vgg13_trades"], "empty item"),
    (["evaluate", "--profile", "smoke", "--seeds", "0,0"], "given twice"),
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--seed", str(2 ** 70)], "seed must be <="),
])
def test_empty_repeated_or_huge_options_are_refused(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "a"))
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "a").exists()


def test_an_unknown_value_from_the_environment_names_its_variable(monkeypatch):
    monkeypatch.setenv("CCKL_DEVICE", "gpu")
    with pytest.raises(devices.DeviceError, match=r"from \$CCKL_DEVICE"):
        devices.resolve_device("auto")
    monkeypatch.setenv("CCKL_PROFILE", "quik")
    with pytest.raises(profiles.ProfileError, match=r"from \$CCKL_PROFILE"):
        profiles.default_to_compute()
