"""Command line: every user mistake ends with one line on stderr and exit status 2, never a traceback."""
import dataclasses
import os
import subprocess
import sys
from types import MappingProxyType

import pytest
import torch

from cckl_core.__main__ import main as cli_main


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("CCKL_THREADS", raising=False)
    monkeypatch.delenv("CCKL_DEVICE", raising=False)


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "gpu"], ["unknown device 'gpu'"]),
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "tpu:0"], ["unknown device"]),
    (["train", "--profile", "nope", "--run", "x"], ["unknown profile 'nope'", "valid profiles"]),
    (["train", "--profile", "smoke", "--run", "nope"], ["has no run 'nope'"]),
    (["evaluate", "--profile", "smoke", "--run", "nope"], ["has no run 'nope'"]),
    (["plan", "--profile", "smoke", "--runs", "a,b"], ["has no run 'a'"]),
    (["plan", "--profile", "smoke", "--probe-batch", "0"], ["--probe-batch must be >= 1"]),
    (["plan", "--profile", "smoke", "--sizing"], ["profile 'smoke' has no [sizing] section", "without --sizing"]),
    (["train", "--profile", "smoke"], ["--run"]),
    (["frobnicate"], ["invalid choice"]),
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--seed", "x"], ["invalid int value"]),
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--seed", "-1"], ["seed must be >= 0"]),
    # an option given twice is a mistake, not an override
    (["train", "--profile", "smoke", "--profile", "quick", "--run", "x"], ["--profile given twice"]),
    (["evaluate", "--profile", "smoke", "--run", "vgg13_standard", "--run", "vgg13_trades"], ["--run given twice"]),
    (["evaluate", "--profile", "smoke", "--device", "cpu", "--device", "cpu"], ["--device given twice"]),
    (["evaluate", "--profile", "smoke", "--run", ""], ["--run is empty"]),
    # selections: both forms, empty items, duplicates
    (["evaluate", "--profile", "smoke", "--run", "vgg13_standard", "--runs", "vgg13_trades"], ["--run or --runs"]),
    (["evaluate", "--profile", "smoke", "--seed", "0", "--seeds", "0,1"], ["--seed or --seeds"]),
    (["evaluate", "--profile", "smoke", "--runs", "vgg13_standard,,vgg13_trades"], ["empty item"]),
    (["evaluate", "--profile", "smoke", "--runs", "vgg13_standard,vgg13_standard"], ["vgg13_standard given twice"]),
    (["evaluate", "--profile", "smoke", "--seeds", "0,0"], ["seed 0 given twice"]),
    (["evaluate", "--profile", "smoke", "--seeds", "0,x"], ["--seeds must be whole numbers"]),
    (["evaluate", "--profile", "smoke", "--run", "vgg13_standard", "--sample-seed", "-1"], ["--sample-seed must be >= 0"]),
    (["default-profile", "--profile", "nope"], ["unknown profile 'nope'"]),
])
def test_mistakes_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as ex:
        raise SystemExit(cli_main(argv))
    assert ex.value.code == 2
    _one_error_line(capsys, *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(capsys):
    assert cli_main(["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cuda"]) == 2
    _one_error_line(capsys, "CUDA is not available")


@pytest.mark.parametrize("var", ["CCKL_ARTIFACTS", "CCKL_DATA_ROOT", "CCKL_PROFILE"])
def test_a_setting_that_is_set_but_empty(capsys, monkeypatch, var):
    """An empty CCKL_ARTIFACTS would put the cache in the current folder: a mistake, said in one line."""
    monkeypatch.setenv(var, "")
    argv = ["default-profile"] if var == "CCKL_PROFILE" else ["runs", "--profile", "smoke"]
    if var == "CCKL_DATA_ROOT":
        argv = ["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cpu"]
    assert cli_main(argv) == 2
    _one_error_line(capsys, var, "set but empty")


def test_information_commands(capsys, monkeypatch):
    from cckl_core import __version__, paper, profiles
    with pytest.raises(SystemExit) as ex:
        cli_main(["--version"])
    assert ex.value.code == 0 and capsys.readouterr().out.strip() == f"cckl {__version__}"
    assert cli_main(["notebooks"]) == 0
    assert capsys.readouterr().out.split() == list(paper.NOTEBOOKS)
    assert cli_main(["list", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.split() == list(profiles.load("smoke").runs)
    monkeypatch.setenv("CCKL_PROFILE", "smoke")
    assert cli_main(["default-profile"]) == 0
    assert capsys.readouterr().out.strip() == "smoke"
    assert cli_main(["default-profile", "--profile", "quick"]) == 0
    assert capsys.readouterr().out.strip() == "quick"
    monkeypatch.delenv("CCKL_PROFILE")
    assert cli_main(["default-profile"]) == 0
    assert capsys.readouterr().out.strip() == ("paper" if torch.cuda.is_available() else "quick")


def test_report_without_figures(capsys, tmp_path):
    assert cli_main(["report", "--profile", "smoke", "--root", str(tmp_path / "figures")]) == 2
    _one_error_line(capsys, "no figures for profile 'smoke'", "make paper PROFILE=smoke")


def test_bad_thread_count(capsys, monkeypatch):
    monkeypatch.setenv("CCKL_THREADS", "abc")
    assert cli_main(["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cpu"]) == 2
    _one_error_line(capsys, "CCKL_THREADS='abc'", "whole number")


def test_artifacts_root_that_is_a_file(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(blocker / "artifacts"))
    assert cli_main(["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cpu"]) == 2
    _one_error_line(capsys, "is a file, not a folder")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(blocker))
    assert cli_main(["evaluate", "--profile", "smoke", "--device", "cpu"]) == 2
    _one_error_line(capsys, "is a file, not a folder")


def test_unbundle_of_something_else(capsys, tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    assert cli_main(["unbundle", str(junk)]) == 2
    _one_error_line(capsys, "not a readable .tar.gz bundle")
    assert cli_main(["unbundle", str(tmp_path / "missing.tar.gz")]) == 2
    _one_error_line(capsys, "no bundle at")


def test_bundle_of_nothing(capsys, tmp_path):
    assert cli_main(["bundle", "--profile", "smoke", "--out", str(tmp_path / "b.tar.gz")]) == 2
    _one_error_line(capsys, "no finished run")


def test_missing_data_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "nowhere.zip"))
    folder = tmp_path / "empty-folder"
    (folder / "train").mkdir(parents=True)
    from cckl_core import profiles
    monkeypatch.setattr(profiles, "load", lambda name=None: _with_dataset(f"folder:{tmp_path / 'absent'}"))
    assert cli_main(["train", "--profile", "smoke", "--run", "vgg13_standard", "--device", "cpu"]) == 2
    _one_error_line(capsys, "absent")


def _with_dataset(dataset):
    from cckl_core import profiles
    prof = profiles.parse(profiles._DIR / "smoke.toml")
    runs = {name: dataclasses.replace(cfg, dataset=dataset) for name, cfg in prof.runs.items()}
    return dataclasses.replace(prof, runs=MappingProxyType(runs))


def test_a_real_process_prints_no_traceback(tmp_path):
    env = {**os.environ, "CCKL_ARTIFACTS": str(tmp_path / "a"), "CCKL_THREADS": "abc"}
    out = subprocess.run([sys.executable, "-m", "cckl_core", "train", "--profile", "smoke", "--run", "vgg13_standard"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr and "CCKL_THREADS" in out.stderr
