"""`launch`: --executor local is the one local scheduler (cckl_core.schedule): it trains and evaluates
what the cache lacks, skips the optional run whose data set is missing and reruns no finished work; a
killed worker resumes to the numbers of an uninterrupted run; Ctrl-C stops the workers, even from a
launcher started in the background. --executor slurm submits one submitit job array (a fake sbatch)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cckl_core import evaluations, launch, profiles, runs, schedule, store
from cckl_core.__main__ import main as cli_main

SMOKE = profiles.load("smoke")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def roots(tmp_path, monkeypatch):
    """A fresh artifacts root and data root; one torch thread per worker (what the smoke fixture used)."""
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CCKL_THREADS", "1")
    return tmp_path / "artifacts"


def _numbers(history: list[dict]) -> str:
    """A history without its timings, as canonical JSON (NaN compares equal to NaN here)."""
    return json.dumps([{k: v for k, v in rec.items() if not k.endswith("_seconds")} for rec in history], sort_keys=True)


def _history(cfg, root: Path | None = None) -> list[dict]:
    folder = (root / cfg.profile / cfg.folder) if root is not None else runs.path_of(cfg)
    try:
        return json.loads((folder / "history.json").read_text())
    except (OSError, ValueError):
        return []


def _fixture_weights(smoke_fixture: Path, cfg) -> str:
    """The checksum of the weights the smoke fixture's uninterrupted training of ``cfg`` ended with."""
    return store.read_json(smoke_fixture / "artifacts" / cfg.profile / cfg.folder / "complete.json")["files"][runs.WEIGHTS]


# --------------------------------------------------------------------------- the local executor end to end
@pytest.mark.slow
def test_local_launch_trains_evaluates_skips_and_does_not_rerun(smoke_fixture, roots, capsys, monkeypatch):
    """From a cache holding part of the smoke results: one run is missing (trained, then evaluated, to the
    fixture's numbers), one lacks an evaluation (computed, the run untouched), one is finished (not run
    at all), the optional CIFAR-100 run has no data (skipped before any worker starts). Launched again, nothing runs.

    The launcher times each run's steps first (`plan.unit_costs`, 10 s a run on a loaded 2-core machine;
    tested in test_evaluations.py); here it gets FLOP counts as its timings instead, the rest unchanged."""
    from cckl_core import plan
    monkeypatch.setattr(plan, "unit_costs", lambda cfg, dev, *a, **k: {k_: 1e-9 * v for k_, v in plan.flop_costs(cfg).items()})
    shutil.copytree(smoke_fixture / "artifacts", roots)
    train, evaluate, finished, optional = (SMOKE.run(n) for n in ("vgg13_standard", "t1_vgg13_pure_linear",
                                                                   "resnet20_trades", "resnet20_standard_cifar100"))
    runs.discard(runs.path_of(train))
    s = evaluations.settings(SMOKE, "table1")
    (runs.path_of(evaluate) / "evaluations" / f"table1-{evaluations.settings_key(s)}.json").unlink()
    untouched = {c.name: (runs.path_of(c) / "complete.json").read_bytes() for c in (evaluate, finished)}
    names = [c.name for c in (train, evaluate, finished, optional)]

    rc = cli_main(["launch", "--profile", "smoke", "--executor", "local", "--max-parallel", "2", "--device", "cpu",
                   "--runs", ",".join(names)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "[cckl] smoke: 2 run(s) to train and evaluate on cpu (2 at a time), 1 torch thread(s) each" in out, out
    assert "[cckl] estimated wall time here: " in out, out  # every job was timed
    assert re.search(r"\[cckl\] completed: smoke/vgg13_standard \(seed 0\)", out), out
    assert re.search(r"\[cckl\] completed: smoke/t1_vgg13_pure_linear \(seed 0\)", out), out
    assert ("[cckl] not run: smoke/resnet20_standard_cifar100 (seed 0): optional, skipped: its data set cifar100 "
            "cannot be had here") in out, out
    assert "resnet20_trades" not in out  # finished: no worker
    summary = next(line for line in out.splitlines() if line.startswith("[cckl] summary of smoke: "))
    assert summary.split(": ", 1)[1] == "2 completed", summary

    # trained and evaluated to the numbers of the fixture's run (the same worker command, uninterrupted)
    assert _numbers(_history(train)) == _numbers(_history(train, smoke_fixture / "artifacts"))
    assert runs.load(train).model_sha256 == _fixture_weights(smoke_fixture, train)
    # only the missing evaluation was computed; the finished runs' files are as they were
    assert {c.name: (runs.path_of(c) / "complete.json").read_bytes() for c in (evaluate, finished)} == untouched
    assert evaluations.missing(SMOKE, runs.load(evaluate)) == []
    assert runs.inspect(runs.path_of(optional)).state == runs.NOT_STARTED
    states = {s.run: s.state for s in launch.survey(SMOKE, SMOKE.configs(names))}
    assert states == {n: launch.DONE for n in names[:3]} | {optional.name: launch.TO_RUN}

    # launched again: no finished work is rerun, and no worker is started for the optional run while its data is missing
    lines = []
    again = schedule.run(SMOKE, SMOKE.configs(names), device="cpu", jobs=2, plan_first=False, out=lines.append)
    assert again == [] and "optional, skipped" in lines[0], lines
    assert lines[-1] == "[cckl] smoke: every run and evaluation asked for is in the cache", lines


class _Recorded(schedule._Running):
    """The scheduler's worker, remembered so that a test can kill it."""

    made: list = []

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        _Recorded.made.append(self)


@pytest.mark.slow
def test_a_killed_worker_resumes_to_the_same_numbers(smoke_fixture, monkeypatch):
    """The scheduler's worker is killed (SIGKILL: no clean-up) right after its first epoch; the same
    command resumes from that epoch's checkpoint and ends with the history, weights and evaluations of
    the fixture's uninterrupted run."""
    cfg = SMOKE.run("vgg13_standard")
    monkeypatch.setattr(schedule, "_Running", _Recorded)
    history = runs.path_of(cfg) / "history.json"  # written after each finished epoch, not before the first
    for _attempt in range(3):
        _Recorded.made.clear()
        killed, returned = threading.Event(), threading.Event()

        def kill_after_first_epoch():
            while not returned.is_set() and not history.exists():
                time.sleep(0.01)
            if _Recorded.made and _Recorded.made[0].proc.poll() is None:
                _Recorded.made[0].proc.kill()
                killed.set()

        killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
        killer.start()
        lines = []
        try:
            first = schedule.run(SMOKE, [cfg], device="cpu", plan_first=False, out=lines.append)
        finally:
            returned.set()
            killer.join(10)
        if killed.is_set() and _history(cfg)[-1]["epoch"] == 1:
            break
        runs.discard(runs.path_of(cfg))  # it finished epoch 2 before the kill landed: start over
    else:
        pytest.fail("in three attempts the run finished before it could be killed")
    assert [o.status for o in first] == [schedule.FAILED], lines
    assert runs.inspect(runs.path_of(cfg), cfg).state == runs.PARTIAL

    lines = []
    again = schedule.run(SMOKE, [cfg], device="cpu", plan_first=False, out=lines.append)
    assert [o.status for o in again] == [schedule.COMPLETED], lines
    assert any("resuming after epoch 1 of 2" in line for line in lines), lines
    reference = smoke_fixture / "artifacts"
    assert _numbers(_history(cfg)) == _numbers(_history(cfg, reference))
    run = runs.load(cfg)
    assert run.model_sha256 == _fixture_weights(smoke_fixture, cfg)
    s = evaluations.settings(SMOKE, "theorem")
    ours = evaluations.require(run, "theorem", s)
    with monkeypatch.context() as mp:
        mp.setenv("CCKL_ARTIFACTS", str(reference))
        theirs = evaluations.require(runs.load(cfg), "theorem", s)
    assert all((ours[k] == theirs[k]).all() for k in ("logits_init", "logits_final", "labels"))


def _workers_of(pid: int) -> list[int]:
    """The live worker processes (``--worker`` in the command line) whose parent is ``pid``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            state = re.search(r"^State:\s+(\S)", text, re.M).group(1)
            if f"\nPPid:\t{pid}\n" in text and state != "Z" and b"--worker" in (status.parent / "cmdline").read_bytes():
                found.append(int(status.parent.name))
        except (OSError, AttributeError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="finds the workers through /proc")
@pytest.mark.parametrize("how", ["background", "foreground"])
def test_ctrl_c_stops_the_workers(how, roots):
    """The launcher (`evaluate`, what `make paper` and `launch --executor local` run) with two workers.
    ``background``: it was started with ``&`` (so it ignores SIGINT, and would pass that on) and Ctrl-C
    reaches its whole process group: the workers must stop all the same. ``foreground``: SIGINT to the
    launcher alone (as `kill -INT`): it stops its workers and says how to resume."""
    names = ["t1_resnet32_standin", "resnet20_trades"]  # the slowest smoke runs: far from done when signalled
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def start():  # what a shell does: `cmd &` ignores SIGINT; a foreground command has it at its default
        signal.signal(signal.SIGINT, signal.SIG_IGN if how == "background" else signal.SIG_DFL)

    launcher = subprocess.Popen([sys.executable, "-m", "cckl_core", "evaluate", "--profile", "smoke", "--device", "cpu",
                                 "--jobs", "2", "--no-plan", "--runs", ",".join(names)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=start)
    try:
        configs = [runs.path_of(SMOKE.run(n)) / "config.json" for n in names]  # written when training starts
        deadline = time.time() + 240
        while time.time() < deadline and not (len(_workers_of(launcher.pid)) == 2 and any(p.exists() for p in configs)):
            assert launcher.poll() is None, launcher.communicate()
            time.sleep(0.05)
        workers = _workers_of(launcher.pid)
        assert len(workers) == 2, "the two workers never started"
        if how == "background":
            os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
        else:
            launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived Ctrl-C"
    states = [runs.inspect(runs.path_of(SMOKE.run(n))).state for n in names]
    # stopped, not finished (a tiny smoke run may finish in the moment before the signal; not both: the signal
    # came as soon as the first of them started training); what they finished is kept for the rerun
    assert set(states) <= {runs.PARTIAL, runs.NOT_STARTED, runs.COMPLETE} and states.count(runs.COMPLETE) < 2, states
    if how == "background":  # the launcher saw its workers stop (it ignores SIGINT itself)
        assert launcher.returncode == 1 and f"{2 - states.count(runs.COMPLETE)} failed" in out, (out, err)
    else:
        assert launcher.returncode == 130, (out, err)
        # said once, by the launcher (its workers, whose output it relays, stop quietly)
        said = (out + err).count("interrupted: finished epochs and evaluations are kept; run the same command to resume")
        assert said == 1 and "interrupted" in err, (out, err)


def test_worker_command_and_signals():
    """Each job is `python -m cckl_core evaluate ... --worker` on its slot's device; a child starts with
    SIGINT at its default (the scheduler stops it with SIGINT; a backgrounded launcher would pass SIG_IGN on)."""
    cmd = schedule._worker_command(SMOKE.run("vgg13_trades", 3), "cuda:1", 2)
    assert cmd[1:] == ["-m", "cckl_core", "evaluate", "--profile", "smoke", "--run", "vgg13_trades", "--seed", "3",
                       "--device", "cuda:1", "--sample-seed", "2", "--worker"]
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        inherited = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
        reset = subprocess.run(probe, capture_output=True, text=True, check=True,
                               preexec_fn=schedule._reset_sigint).stdout.strip()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (inherited, reset) == ("True", "False")


# --------------------------------------------------------------------------- what is left to launch
def test_survey_reads_the_cache(smoke_cache):
    configs = SMOKE.configs()
    optional = SMOKE.run("resnet20_standard_cifar100")
    states = {s.run: s for s in launch.survey(SMOKE, configs)}
    assert {n: s.state for n, s in states.items()} == {c.name: launch.DONE for c in configs if c != optional} | {
        optional.name: launch.TO_RUN}
    # a Slurm task recorded the optional run as skipped, and its data is still missing: left out
    record = launch.skip_record_path(optional)
    store.atomic_write_json(record, {"run": optional.name, "seed": 0, "message": "skipped"})
    assert {s.run: s.state for s in launch.survey(SMOKE, [optional])} == {optional.name: launch.SKIPPED_EARLIER}
    # a finished run lacking an evaluation is to run again, for what is missing; without weights it is blocked
    trades, table2 = SMOKE.run("resnet20_trades"), SMOKE.run("vgg13_trades")
    for cfg, name in ((trades, "fig5"), (table2, "table2")):
        s = evaluations.settings(SMOKE, name)
        (runs.path_of(cfg) / "evaluations" / f"{name}-{evaluations.settings_key(s)}.json").unlink()
    runs.remove_weights(runs.path_of(table2))
    states = {s.run: s for s in launch.survey(SMOKE, [trades, table2])}
    assert states[trades.name].state == launch.TO_RUN and "fig5" in states[trades.name].detail
    assert states[table2.name].state == launch.BLOCKED and "weights were removed" in states[table2.name].detail


def test_a_slurm_task_runs_in_process(smoke_cache, monkeypatch):
    """What one array task does: evaluate_run of its (run, seed); a finished run is served from the
    cache (nothing computed); an optional run without data is recorded as skipped."""
    for var in ("CCKL_ARTIFACTS", "CCKL_DATA_ROOT", "CCKL_THREADS"):
        monkeypatch.setenv(var, os.environ[var])  # restored after the task sets them
    env = {"CCKL_ARTIFACTS": os.environ["CCKL_ARTIFACTS"], "CCKL_DATA_ROOT": os.environ["CCKL_DATA_ROOT"],
           "CCKL_THREADS": "1"}
    done = launch.Task("smoke", "resnet20_trades", 0, "cpu", env)()
    assert done["status"] == launch.COMPLETED and done["epochs"] == 2
    assert sorted((n, how) for n, how, _ in done["evaluations"]) == [("fig5", "cached"), ("table1", "cached")]
    skipped = launch.Task("smoke", "resnet20_standard_cifar100", 0, "cpu", env)()
    assert skipped["status"] == launch.SKIPPED
    assert launch.skip_record_path(SMOKE.run("resnet20_standard_cifar100")).exists()


def test_task_checkpoint_resubmits_itself():
    pytest.importorskip("submitit")
    task = launch.Task("smoke", "vgg13_standard", 0, "cpu", {"CCKL_THREADS": "1"})
    delayed = task.checkpoint()
    assert delayed.function is task and delayed.args == () and delayed.kwargs == {}


# --------------------------------------------------------------------------- Slurm (a fake sbatch)
def _fake_slurm(tmp_path, monkeypatch, sbatch: str | None = None):
    """Fake Slurm client commands on PATH: ``sbatch`` numbers its arrays 4242, 4243, ...; ``sinfo`` lists a
    partition ``cpu`` (the default, no GPUs) and ``gpu`` (GPU nodes); ``squeue`` prints ``bin/queue`` (lines
    ``4242_0|RUNNING|None|cckl-smoke``); ``sacct`` fails as on a cluster without accounting."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "queue").write_text("")
    counter = bin_ / "last-job"
    bodies = {
        "sbatch": sbatch or (f'n=$(cat {counter} 2>/dev/null || echo 4241); n=$((n + 1)); echo $n > {counter}\n'
                             'echo "Submitted batch job $n"'),
        "srun": "exit 0",
        "sinfo": "printf 'cpu*|(null)\\ngpu|gpu:a100:4(S:0-1)\\n'",
        "squeue": f"cat {bin_ / 'queue'}",
        "sacct": 'echo "Slurm accounting storage is disabled" >&2; exit 1',
    }
    for name, body in bodies.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return bin_


def test_slurm_submits_one_array(tmp_path, monkeypatch, capsys, roots):
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch)
    rc = cli_main(["launch", "--profile", "smoke", "--executor", "slurm", "--partition", "gpu", "--time", "01:30:00",
                   "--max-parallel", "2", "--runs", "vgg13_standard,resnet20_trades", "--seeds", "0,1",
                   "--logs", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "submitted job array 4242: 4 task(s), at most 2 at a time" in out
    assert "job 4242_3: resnet20_trades seed 1" in out
    script = (tmp_path / "logs" / "4242_submission.sh").read_text()
    for line in ("--array=0-3%2", "--partition=gpu", "--gpus-per-node=1", "--time=90", "--signal=USR2@"):
        assert line in script, script
    from submitit.core.utils import DelayedSubmission
    delayed = DelayedSubmission.load(tmp_path / "logs" / "4242_3_submitted.pkl")
    task = delayed.function
    assert (task.run, task.seed) == ("resnet20_trades", 1) and hasattr(task, "checkpoint")
    assert task.env["CCKL_ARTIFACTS"] == str(roots) and Path(task.env["CCKL_DATA_ROOT"]).is_absolute()
    assert not [p for p in (roots / "smoke").glob("*") if not p.name.startswith(".")]  # nothing ran here


def test_slurm_submits_nothing_finished(smoke_cache, tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch)
    store.atomic_write_json(launch.skip_record_path(SMOKE.run("resnet20_standard_cifar100")), {"message": "skipped"})
    assert cli_main(["launch", "--profile", "smoke", "--executor", "slurm", "--logs", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "[cckl] nothing to submit" in out and "9 complete with their evaluations, 0 to run" in out, out
    assert "not submitted, skipped earlier: resnet20_standard_cifar100 seed 0" in out
    assert not (tmp_path / "logs" / "4242_submission.sh").exists()


# --------------------------------------------------------------------------- mistakes: one line, exit 2
def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_mistakes_are_one_line(tmp_path, monkeypatch, capsys):
    base = ["launch", "--profile", "smoke", "--runs", "vgg13_standard"]
    assert cli_main(base + ["--executor", "local", "--time", "90"]) == 2
    _one_error_line(capsys, "--time must look like HH:MM:SS")
    assert cli_main(base + ["--executor", "local", "--seeds", "a"]) == 2
    _one_error_line(capsys, "--seeds must be whole numbers")
    assert cli_main(["launch", "--profile", "smoke", "--executor", "local", "--runs", "nope"]) == 2
    _one_error_line(capsys, "has no run 'nope'")
    assert cli_main(["launch", "--profile", "smoke", "--executor", "local", "--runs", "vgg13_standard,vgg13_standard"]) == 2
    _one_error_line(capsys, "run vgg13_standard given twice")
    assert cli_main(["launch", "--profile", "smoke", "--executor", "local", "--runs", "vgg13_standard,"]) == 2
    _one_error_line(capsys, "--runs", "empty item")
    assert cli_main(base + ["--executor", "local", "--max-parallel", "0"]) == 2
    _one_error_line(capsys, "--max-parallel must be >= 1")

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(blocker / "artifacts"))
    assert cli_main(base + ["--executor", "local"]) == 2  # before any worker starts
    _one_error_line(capsys, f"the artifacts root {blocker / 'artifacts'} is not writable", "CCKL_ARTIFACTS")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))

    _fake_slurm(tmp_path, monkeypatch)
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed: Slurm needs it
    assert cli_main(base + ["--executor", "slurm"]) == 2
    _one_error_line(capsys, "pip install 'cckl-core[cluster]'")

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    assert cli_main(base + ["--executor", "slurm"]) == 2
    _one_error_line(capsys, "needs Slurm's sbatch and srun")


def test_parse_time():
    assert launch.parse_time("01:30:00") == 90
    assert launch.parse_time("1-00:00:00") == 24 * 60
    assert launch.parse_time("00:00:30") == 0.5
    assert launch.parse_time("2:15") == 135
    for bad in ("90", "1:60:00", "00:00:00", "x"):
        with pytest.raises(ValueError):
            launch.parse_time(bad)


# --------------------------------------------------------------------------- what a real Slurm showed (issue 25)
def _launch(tmp_path, *extra):
    return cli_main(["launch", "--profile", "smoke", "--executor", "slurm", "--runs", "vgg13_standard,resnet20_trades",
                     "--logs", str(tmp_path / "logs"), *extra])


def _script(tmp_path, array=4242) -> str:
    return (tmp_path / "logs" / f"{array}_submission.sh").read_text()


def test_the_device_request_follows_the_partition(tmp_path, monkeypatch, capsys):
    """--device auto asks for a GPU only on a partition whose nodes have GPUs (sinfo); --device cpu never does."""
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch)
    assert _launch(tmp_path) == 0  # the default partition, cpu: no GPUs there
    out = capsys.readouterr().out
    assert "partition cpu has no GPUs: --device auto trains on the CPU" in out, out
    assert "--gpus" not in _script(tmp_path) and "--gres" not in _script(tmp_path)
    task = __import__("submitit").core.utils.DelayedSubmission.load(tmp_path / "logs" / "4242_0_submitted.pkl").function
    assert task.device == "cpu"
    shutil.rmtree(tmp_path / "logs")
    shutil.rmtree(launch.artifacts_root() / "smoke" / ".launch")  # forget the queued records of that launch
    assert _launch(tmp_path, "--partition", "gpu") == 0
    assert "--gpus-per-node=1" in _script(tmp_path, 4243)
    assert "partition gpu has GPUs" in capsys.readouterr().out
    shutil.rmtree(launch.artifacts_root() / "smoke" / ".launch")
    assert _launch(tmp_path, "--partition", "gpu", "--device", "cpu") == 0
    assert "--gpus" not in _script(tmp_path, 4244)
    capsys.readouterr()
    for extra, words in ((["--device", "cpu", "--gpus-per-job", "1"], "--device cpu trains on the CPU"),
                         (["--device", "cuda"], "partition cpu has no GPUs"),
                         (["--gpus-per-job", "2"], "partition cpu has no GPUs"),
                         (["--partition", "nope"], "Slurm has no partition 'nope'; its partitions: cpu, gpu")):
        assert _launch(tmp_path, *extra) == 2, extra
        _one_error_line(capsys, words)
    assert "auto follows the partition" in " ".join(cli_help("launch").split())


def cli_help(cmd: str) -> str:
    from cckl_core.cli import parser
    return parser()._subparsers._group_actions[0].choices[cmd].format_help()


def test_a_refused_submission_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys, roots):
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch, sbatch='echo "sbatch: error: Invalid generic resource (gres) specification" >&2\n'
                                              'exit 1')
    assert cli_main(["launch", "--profile", "smoke", "--executor", "slurm", "--runs", "vgg13_standard"]) == 2
    _one_error_line(capsys, "Slurm refused the submission of 1 task(s) (Invalid generic resource (gres) specification); "
                            "nothing was submitted")
    assert not (roots / "smoke").exists(), sorted(roots.rglob("*"))  # no pickled task, no script, no folder
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "keep.txt").write_text("mine")
    assert _launch(tmp_path) == 2
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["keep.txt"]


def test_the_time_limit_leaves_time_before_the_requeue_signal(tmp_path, monkeypatch, capsys):
    """submitit has Slurm signal a task 90 s before its limit (up to a minute early): a limit that leaves no time
    to work is refused at submission, before anything is queued."""
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch)
    assert _launch(tmp_path, "--time", "00:01:30") == 2
    _one_error_line(capsys, "--time 00:01:30 is too short", "90 s before its time limit")
    assert not (tmp_path / "logs").exists()
    assert _launch(tmp_path, "--time", "00:04:00") == 0
    script = _script(tmp_path)
    assert "--time=4" in script and f"--signal=USR2@{launch.SIGNAL_DELAY_S}" in script, script
    assert launch.check_time_limit("00:04:00") == 4 and launch.check_time_limit("00:03:01") == 4
    assert launch.check_time_limit("1-00:00:00") == 24 * 60
    for short in ("00:03:00", "00:01:30", "00:00:30"):
        with pytest.raises(ValueError, match=r"too short .* give --time 00:04:00 or more"):
            launch.check_time_limit(short)


def test_a_task_takes_its_threads_from_its_allocation(smoke_cache, monkeypatch, capsys):
    """In a Slurm job, torch's threads are the CPUs Slurm allocated the task (SLURM_CPUS_PER_TASK, else
    SLURM_CPUS_ON_NODE), not the node's cores nor a CCKL_THREADS of the shell that launched it."""
    import torch

    from cckl_core import devices
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1")  # what Slurm sets without --cpus-per-task: one CPU allocated
    monkeypatch.setenv("CCKL_THREADS", "2")  # the launching shell's, sent along by sbatch: not this task's
    env = {"CCKL_ARTIFACTS": os.environ["CCKL_ARTIFACTS"], "CCKL_DATA_ROOT": os.environ["CCKL_DATA_ROOT"]}
    torch.set_num_threads(2)
    assert launch.Task("smoke", "resnet20_trades", 0, "cpu", env)()["status"] == launch.COMPLETED
    assert torch.get_num_threads() == 1
    assert "1 thread(s) (Slurm allocated 1 CPU(s))" in capsys.readouterr().out

    assert devices.slurm_task_cpus() == 1 and devices.available_cpus() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert devices.slurm_task_cpus() == 3
    monkeypatch.delenv("SLURM_JOB_ID")
    assert devices.slurm_task_cpus() is None


def _result(job, value) -> None:
    """What submitit's task process writes when it returns ``value``."""
    from submitit.core import utils
    utils.cloudpickle_dump(("success", value), job.paths.result_pickle)


def test_wait_needs_no_accounting(tmp_path, monkeypatch):
    """--wait reads squeue and the result files: a task cancelled (or forgotten by Slurm) without a result ends
    the wait, and is reported; sacct is never asked (it fails here, as on a cluster without accounting)."""
    pytest.importorskip("submitit")
    bin_ = _fake_slurm(tmp_path, monkeypatch)
    lines = []
    handle = launch.launch_slurm(SMOKE, SMOKE.configs(["vgg13_standard", "resnet20_trades", "vgg13_trades"]),
                                 device="cpu", logs=tmp_path / "logs", out=lines.append)
    jobs = [s.job for s in handle.submitted]
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    (bin_ / "queue").write_text("4242_0|RUNNING|None|cckl-smoke\n4242_1|RUNNING|None|cckl-smoke\n"
                                "4242_2|PENDING|Resources|cckl-smoke\n")
    _result(jobs[0], {"status": launch.COMPLETED})
    (bin_ / "queue").write_text("4242_0|COMPLETED|None|cckl-smoke\n4242_1|CANCELLED|None|cckl-smoke\n")  # 4242_2: gone
    waited = threading.Thread(target=handle.wait, daemon=True)
    start = time.time()
    waited.start()
    waited.join(timeout=30)
    assert not waited.is_alive(), "--wait did not return once every task had ended"
    assert time.time() - start < 10
    summary = handle.summary()
    assert "vgg13_standard seed 0: completed" in summary, summary
    assert "resnet20_trades seed 0: failed: ended without a result (cancelled)" in summary, summary
    assert "vgg13_trades seed 0: failed: ended without a result (no longer in Slurm's queue)" in summary, summary
    assert handle.failed


def test_work_already_queued_is_not_submitted_again(tmp_path, monkeypatch, capsys):
    """A second launch while the first one's tasks are pending or running submits nothing for them; once they
    have left the queue unfinished (cancelled), a launch submits them again."""
    pytest.importorskip("submitit")
    bin_ = _fake_slurm(tmp_path, monkeypatch)
    assert _launch(tmp_path) == 0
    assert "submitted job array 4242: 2 task(s)" in capsys.readouterr().out
    (bin_ / "queue").write_text("4242_0|RUNNING|None|cckl-smoke\n4242_1|PENDING|Priority|cckl-smoke\n")
    assert _launch(tmp_path) == 0
    out = capsys.readouterr().out
    assert "2 already queued, 0 to run" in out and "[cckl] nothing to submit" in out, out
    assert "not submitted, queued: resnet20_trades seed 0: already in Slurm's queue as job 4242_1 (pending)" in out
    assert not (tmp_path / "logs" / "4243_submission.sh").exists()
    # one left the queue without finishing (cancelled), the other is still running: only the first goes again
    (bin_ / "queue").write_text("4242_0|RUNNING|None|cckl-smoke\n4242_1|CANCELLED|None|cckl-smoke\n")
    assert _launch(tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 already queued, 1 to run" in out and "job 4243: resnet20_trades seed 0" in out, out  # one task: no array
    # a job of the same number but another name (not ours) does not hold anything back
    (bin_ / "queue").write_text("4242_0|RUNNING|None|someone-else\n4243|RUNNING|None|cckl-smoke\n")
    assert _launch(tmp_path) == 0
    assert "job 4244: vgg13_standard seed 0" in capsys.readouterr().out
