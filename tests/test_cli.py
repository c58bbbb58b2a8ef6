"""Command line (cckl_core.cli): the commands (list, runs, train, evaluate, jobs, ...) and their option types;
every user mistake, a full disk or a file size limit included, ends with one line on stderr and exit status 2,
never a traceback."""
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
import torch

from cckl_core import devices, profiles, runs
from cckl_core.__main__ import main as cli_main
from conftest import disk_full_for


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


# --------------------------------------------------------------------------- report trusts no claims file
def _figures_with_claims(tmp_path, claims) -> "Path":
    import json
    folder = tmp_path / "figures" / "smoke"
    folder.mkdir(parents=True)
    (folder / "fig.png").write_bytes(b"")
    (folder / "claims_01_theorem_check.json").write_text(json.dumps(claims))
    return folder.parent


GOOD_ROW = {"claim": "a claim", "paper value": "1", "measured value": "2", "holds": "yes", "note": "n", "shows": "fig"}


@pytest.mark.parametrize("claims, words", [
    ([GOOD_ROW], "holds a JSON list, not an object"),
    ({"rows": {"claim": "x"}}, "'rows' is a dict, not a list"),
    ({"rows": [3]}, "rows[0] is a int, not an object"),
    ({"rows": [{k: v for k, v in GOOD_ROW.items() if k != "claim"}]}, "rows[0] has no 'claim'"),
    ({"rows": [{**GOOD_ROW, "claim": 7}]}, "rows[0] has no 'claim'"),
    ({"rows": [{**GOOD_ROW, "holds": "maybe"}]}, "has verdict 'maybe'; valid: yes, no"),
    ({"rows": [GOOD_ROW], "figures": "fig"}, "'figures' is not a list"),
    ({"rows": [GOOD_ROW], "notebook": ["x"]}, "'notebook' is not a string"),
])
def test_report_names_the_claims_file_of_the_wrong_structure_and_the_fix(capsys, tmp_path, claims, words):
    root = _figures_with_claims(tmp_path, claims)
    assert cli_main(["report", "--profile", "smoke", "--root", str(root)]) == 2
    _one_error_line(capsys, words, "claims_01_theorem_check.json", "render the notebook again")


def test_report_ignores_extra_keys_and_reads_the_verdicts_from_stats(capsys, tmp_path, monkeypatch):
    from cckl_core import stats
    row = {**GOOD_ROW, "kind": "test", "family": "f", "p": 0.01, "p adjusted": 0.02, "fixed": True}
    row.pop("note")  # a display field a row lacks is shown empty
    root = _figures_with_claims(tmp_path, {"rows": [row, {**GOOD_ROW, "holds": "not tested at this scale"}]})
    monkeypatch.setattr(stats, "VERDICTS", (*stats.VERDICTS, "not tested at this scale"))
    assert cli_main(["report", "--profile", "smoke", "--root", str(root)]) == 0
    assert "a claim" in (root / "smoke" / "index.html").read_text()


# --------------------------------------------------------------------------- write failures are one line
def _fail_writes(monkeypatch, code):
    import errno  # noqa: F401

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)


@pytest.mark.parametrize("code, words", [(30, "read-only"), (27, "ulimit -f")])
def test_report_on_a_read_only_or_size_limited_file_system_is_one_line(capsys, tmp_path, monkeypatch, code, words):
    root = _figures_with_claims(tmp_path, {"rows": [GOOD_ROW]})
    _fail_writes(monkeypatch, code)
    assert cli_main(["report", "--profile", "smoke", "--root", str(root)]) == 2
    _one_error_line(capsys, "cannot write", str(root / "smoke"), words)


@pytest.mark.parametrize("code, words", [(30, "read-only"), (27, "ulimit -f")])
def test_a_figure_that_cannot_be_written_is_one_line_in_a_notebook(tmp_path, monkeypatch, code, words):
    """plotting.save draws in memory and writes atomically: a failed write is one WriteError, shown in
    a notebook as its one line (IPython's _render_traceback_), and no half file is left."""
    import matplotlib
    matplotlib.use("Agg")
    from cckl_core import plotting, store
    import matplotlib.pyplot as plt
    fig, _ = plt.subplots()
    plotting.stamp(fig, "synthetic", "smoke", "vgg13")
    _fail_writes(monkeypatch, code)
    with pytest.raises(store.WriteError) as err:
        plotting.save(fig, "fig_x", tmp_path / "figs")
    assert words in str(err.value) and "fig_x.pdf" in str(err.value)
    assert err.value._render_traceback_() == [f"WriteError: {err.value}"]
    assert not list((tmp_path / "figs").iterdir())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.undo()
    with pytest.raises(store.WriteError, match="is a file, not a folder|part of the path is a file"):
        plotting.save(fig, "fig_x", blocker / "figs")


# --------------------------------------------------------------------------- one check per option, every command
@pytest.mark.parametrize("argv, words", [
    (["evaluate", "--profile", "smoke", "--jobs", "0"], ["--jobs must be >= 1, got 0"]),
    (["evaluate", "--profile", "smoke", "--jobs", "-2"], ["--jobs must be >= 1, got -2"]),
    (["jobs", "--profile", "smoke", "--jobs", "0"], ["--jobs must be >= 1, got 0"]),
    (["evaluate", "--profile", "smoke", "--run", "vgg13_standard", "--sample-seed", str(2 ** 32)],
     ["--sample-seed must be <= 4294967295"]),
    (["train", "--profile", "smoke", "--run", "vgg13_standard", "--seed", str(2 ** 32)], ["--seed must be <= 4294967295"]),
    (["plan", "--profile", "gpu", "--sizing", "--runs", "nope"], ["has no run 'nope'"]),
    (["launch", "--profile", "smoke", "--executor", "local", "--partition", "gpu"], ["--partition applies to Slurm"]),
    (["launch", "--profile", "smoke", "--executor", "local", "--gpus-per-job", "2", "--wait"],
     ["--gpus-per-job, --wait apply to Slurm"]),
    (["notebooks", "--profile", "bogus"], ["unknown profile 'bogus'"]),
    (["unbundle", "--profile", "bogus", "x.tar.gz"], ["unknown profile 'bogus'"]),
])
def test_an_option_is_checked_the_same_in_every_command(capsys, argv, words):
    assert cli_main(argv) == 2
    _one_error_line(capsys, *words)


def test_plan_sizing_follows_runs(capsys):
    from cckl_core import profiles
    gpu = profiles.load("gpu")
    first = next(iter(gpu.sizing.runs))
    assert cli_main(["plan", "--profile", "gpu", "--sizing", "--runs", first]) == 0
    out = capsys.readouterr().out
    train, evals = gpu.sizing.runs[first]
    assert f"expected {train + evals + gpu.sizing.overhead_s:.0f} s" in out
    assert [n for n in gpu.runs if n != first and n in out] == []


@pytest.mark.parametrize("cmd", ["runs", "costs", "spread", "bundle"])
def test_an_artifacts_root_that_is_a_file_is_one_line_for_every_command(capsys, monkeypatch, tmp_path, cmd):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(blocker))
    argv = [cmd, "--profile", "smoke"] + (["--out", str(tmp_path / "b.tar.gz")] if cmd == "bundle" else [])
    assert cli_main(argv) == 2
    _one_error_line(capsys, "is a file, not a folder")


def test_report_notebooks_from_a_missing_folder_is_one_line(capsys, tmp_path):
    root = _figures_with_claims(tmp_path, {"rows": [GOOD_ROW]})
    assert cli_main(["report", "--profile", "smoke", "--root", str(root), "--notebooks", str(tmp_path / "nope")]) == 2
    _one_error_line(capsys, "--notebooks", "no such folder")
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", "--profile", "smoke", "--root", str(root), "--notebooks", str(tmp_path / "empty")]) == 2
    _one_error_line(capsys, "holds none of the paper's executed notebooks")
    assert not (root / "smoke" / "index.html").exists()


def test_rehearse_into_an_unusable_folder_fails_at_once(capsys, tmp_path, monkeypatch):
    from cckl_core import schedule
    monkeypatch.setattr(schedule, "run", lambda *a, **k: pytest.fail("started work"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli_main(["rehearse", "--profile", "smoke", "--out", str(blocker)]) == 2
    _one_error_line(capsys, str(blocker), "remove that file or choose another path")
    assert cli_main(["rehearse", "--profile", "smoke", "--out", str(blocker / "sub")]) == 2
    _one_error_line(capsys, "cannot write", "a part of the path is a file")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "fig x"])
def test_figure_and_table_names_follow_the_one_safe_name_rule(tmp_path, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from cckl_core import plotting, profiles, tables
    fig, _ = plt.subplots()
    plotting.stamp(fig, "synthetic", "smoke", "vgg13")
    with pytest.raises(profiles.ProfileError, match="cannot be used as a file or folder name"):
        plotting.save(fig, name, tmp_path / "figs")
    with pytest.raises(profiles.ProfileError, match="cannot be used as a file or folder name"):
        tables.write(pd.DataFrame({"a": [1]}), name, tmp_path / "tables")
    assert not (tmp_path.parent / "escape.csv").exists() and not list(tmp_path.rglob("*.csv"))


# --------------------------------------------------------------------------- one parser, one type per option
def test_an_option_has_one_type_in_every_command():
    """Each shared option is defined once (cli._options): every command that takes it reads it with the same
    argparse type, so its check and its words are the same everywhere."""
    from cckl_core import cli
    commands = cli.parser()._subparsers._group_actions[0].choices
    types: dict[str, set] = {}
    for sub in commands.values():
        for action in sub._actions:
            for flag in action.option_strings:
                types.setdefault(flag, set()).add(action.type)
    assert {f: t for f, t in types.items() if len(t) > 1} == {}
    assert all(sub.get_default("func").__name__ == "cmd_" + name.replace("-", "_") for name, sub in commands.items())


def test_reading_the_command_line_imports_no_torch():
    """The option checks (profiles.check_seed, profiles.check_name, cli's types) run before torch is imported:
    `--help` and a mistyped option answer at once."""
    code = ("import sys; from cckl_core import cli; "
            "a = cli.parser().parse_args(['evaluate', '--profile', 'smoke', '--seeds', '0,2', '--jobs', '2']); "
            "assert (a.seeds, a.jobs) == ([0, 2], 2), a; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_a_usage_error_is_returned_not_raised(capsys):
    assert cli_main(["evaluate", "--profile", "smoke", "--frobnicate"]) == 2
    _one_error_line(capsys, "unrecognized arguments: --frobnicate", "(see `")
    assert cli_main(["evaluate", "--profile", "smoke", "--jobs", ""]) == 2
    _one_error_line(capsys, "--jobs is empty")


# --------------------------------------------------------------------------- listing, training and evaluating from the command line
def test_list_runs_and_train_of_a_finished_run(capsys, smoke_cache):
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


def test_evaluate_refuses_a_run_folders_linked_lock_in_one_line(smoke_cache, tmp_path, capsys):
    smoke = runs.path_of(profiles.load("smoke").run("vgg13_standard"))
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


def test_jobs_command(capsys, monkeypatch):
    monkeypatch.setattr(devices, "available_cpus", lambda: 4)
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == "cpu: up to 4 runs side by side, 1 torch thread(s) each"
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "1"]) == 0
    assert capsys.readouterr().out.strip() == "cpu: up to 1 runs side by side, 4 torch thread(s) each"
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--jobs must be >= 1, got 0" in err[0]  # as evaluate
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "17"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "jobs must be in [1, 16]" in err[0]
    monkeypatch.setenv("CCKL_THREADS", "two")
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu"]) == 2
    assert "CCKL_THREADS='two'" in capsys.readouterr().err


# --------------------------------------------------------------------------- a full disk, a file size limit
def test_a_full_disk_on_the_command_line_is_one_line(monkeypatch, capsys):
    disk_full_for(monkeypatch, "checkpoint-")
    assert cli_main(["train", "--profile", "smoke", "--run", "t1_vgg13_pure_linear", "--device", "cpu",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no space left") and "free some space" in err[0]


def test_a_file_size_limit_during_training_is_one_line(tmp_path):
    """`ulimit -f`: the kernel refuses the write (EFBIG; Python ignores SIGXFSZ) -> one line, exit 2."""
    env = {**os.environ, "CCKL_ARTIFACTS": str(tmp_path / "artifacts"), "CCKL_DATA_ROOT": str(tmp_path / "data"),
           "CCKL_THREADS": "1"}
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
            "from cckl_core.__main__ import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "train", "--profile", "smoke", "--run", "vgg13_standard",
                           "--device", "cpu", "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ulimit -f" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- empty, repeated or huge options
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


def test_list_options_are_read_by_their_option_types():
    """--runs and --seeds are read by their option types: items stripped, an empty item or list refused."""
    from cckl_core import cli
    args = cli.parser().parse_args(["launch", "--executor", "local", "--runs", " a, b ", "--seeds", "0,3"])
    assert (args.runs, args.seeds) == (["a", "b"], [0, 3])
    for bad in ("a,,b", ",", "a, "):
        with pytest.raises(cli.OptionError, match="empty item"):
            cli.parser().parse_args(["launch", "--executor", "local", "--runs", bad])
    with pytest.raises(cli.OptionError, match="--runs is empty"):
        cli.parser().parse_args(["launch", "--executor", "local", "--runs", " "])


def test_console_script_help():
    cckl = Path(sys.executable).parent / "cckl"
    if not cckl.exists():
        pytest.skip("the cckl console script is not installed (pip install -e .)")
    res = subprocess.run([str(cckl), "launch", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for opt in ("--executor", "--partition", "--gpus-per-job", "--max-parallel", "--time", "--runs", "--seeds", "--wait"):
        assert opt in res.stdout


def test_a_command_loads_only_what_it_needs_and_its_mistakes_are_still_one_line():
    """The one-line errors are matched without importing the paper's modules (seconds of matplotlib, seaborn,
    scipy): `evaluate` on a cached profile does not load them, and a mistake stays one line, exit 2."""
    import subprocess
    import sys
    code = ("import sys\nfrom cckl_core.cli import main\nrc = main(['train', '--profile', 'smoke', '--run', 'nope'])\n"
            "print(rc, 'cckl_core.paper' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False", "False"], out.stdout + out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "nope" in out.stderr
