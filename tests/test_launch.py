"""`launch`: every (run, seed) as a task on local processes (submitit's LocalExecutor) or a Slurm
job array; finished work is not resubmitted, a killed or preempted task resumes to the same numbers."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cckl_core import devices, evaluations, launch, profiles, runs
from cckl_core.__main__ import main as cli_main

pytest.importorskip("submitit")

SMOKE = "smoke"


@pytest.fixture(autouse=True)
def roots(tmp_path, monkeypatch):
    """A fresh artifacts root and data root; one torch thread per task (what the references use)."""
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CCKL_THREADS", "1")
    monkeypatch.delenv("CCKL_DEVICE", raising=False)
    return tmp_path / "artifacts"


def _numbers(history: list[dict]) -> str:
    """A history without its timings, as canonical JSON (NaN compares equal to NaN here)."""
    return json.dumps([{k: v for k, v in rec.items() if not k.endswith("_seconds")} for rec in history], sort_keys=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The history of an uninterrupted `runs.get_or_train` of a smoke run, in a root of its own (trained once)."""
    root = tmp_path_factory.mktemp("reference")
    cache = {}

    def get(name: str, seed: int = 0) -> str:
        if (name, seed) not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as every launched task (CCKL_THREADS=1 in `roots`): the sums' order matters
            try:
                with pytest.MonkeyPatch.context() as mp:
                    mp.setenv("CCKL_ARTIFACTS", str(root / "artifacts"))
                    mp.setenv("CCKL_DATA_ROOT", str(root / "data"))
                    run = runs.get_or_train(SMOKE, name, device="cpu", progress=False, weights=False, seed=seed)
            finally:
                torch.set_num_threads(threads)
            cache[name, seed] = _numbers(run.history)
        return cache[name, seed]
    return get


def _history(name: str, seed: int = 0) -> list[dict]:
    prof = profiles.load(SMOKE)
    path = runs.run_path(SMOKE, name, prof.run(name, seed)) / "history.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def _state(name: str, seed: int = 0) -> str:
    prof = profiles.load(SMOKE)
    return runs.inspect(runs.run_path(SMOKE, name, prof.run(name, seed))).state


# --------------------------------------------------------------------------- the local executor end to end
@pytest.mark.slow
def test_local_launch_trains_evaluates_skips_and_does_not_resubmit(capsys, reference):
    names = ["resnet20_trades", "vgg13_standard", "resnet20_standard_cifar100"]
    rc = cli_main(["launch", "--profile", SMOKE, "--executor", "local", "--max-parallel", "2", "--device", "cpu",
                   "--runs", ",".join(names)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"local job \d+: resnet20_trades seed 0", out), out
    assert "at most 2 at a time" in out
    assert "logs: " in out and ".launch" in out
    assert "python -m cckl_core runs --profile smoke" in out
    assert re.search(r"resnet20_standard_cifar100 +seed 0 +skipped", out), out

    rows = {r["run"]: r for r in runs.status(SMOKE)}
    for name in names:
        if profiles.load(SMOKE).runs[name]["optional"]:
            assert rows[name]["state"] != runs.COMPLETE
        else:
            assert rows[name]["state"] == runs.COMPLETE, rows[name]
            assert rows[name]["epochs"] == "2/2"
    # the evaluations are cached: every state DONE except the skipped optional run
    states = {s.run: s for s in launch.survey(SMOKE, names)}
    assert states["resnet20_trades"].state == launch.DONE
    assert states["vgg13_standard"].state == launch.DONE
    assert states["resnet20_standard_cifar100"].state == launch.SKIPPED_EARLIER

    # the numbers are those of an uninterrupted `train` in another fresh root
    assert _numbers(_history("resnet20_trades")) == reference("resnet20_trades")

    # a second launch submits nothing
    lines = []
    again = launch.launch(SMOKE, "local", run_names=names, device="cpu", max_parallel=2, out=lines.append)
    assert again.submitted == []
    assert "[cckl] nothing to submit" in lines
    by_run = {o.run: o for o in again.outcomes()}
    assert by_run["resnet20_trades"].status == launch.DONE
    assert by_run["resnet20_standard_cifar100"].status == launch.SKIPPED_EARLIER

    # a finished run with an evaluation missing is to run again (and only for what is missing)
    prof = profiles.load(SMOKE)
    run = runs.load(SMOKE, "resnet20_trades", weights=False)
    s = evaluations.settings(prof, "fig5")
    meta = run.path / "evaluations" / f"fig5-{evaluations.settings_key(s)}.json"
    meta.unlink()
    st = {x.run: x for x in launch.survey(SMOKE, ["resnet20_trades"])}["resnet20_trades"]
    assert st.state == launch.TO_RUN and "fig5" in st.detail


def _task_pid(job, timeout: float = 60.0) -> int:
    """The pid the task printed in its log (checked to be a live submitit task)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            m = re.search(r"\(pid (\d+)\)", Path(job.paths.stdout).read_text())
        except OSError:
            m = None
        if m:
            pid = int(m.group(1))
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b""
            assert b"submitit" in cmd, cmd
            return pid
        time.sleep(0.05)
    raise AssertionError(f"task never started; log {job.paths.stdout}")


def _interrupt_after_first_epoch(killed: str, preempted: str):
    """Launch both runs side by side; cancel `killed` (SIGINT, as `scancel` or Ctrl-C) and send `preempted`
    the preemption signal as soon as each has written its first epoch. Returns the jobs and outcomes, or
    None when a smoke run (2 epochs, about a second each) finished before its signal could land: on a
    loaded machine the poller can be late, and the caller then starts over."""
    handle = launch.launch(SMOKE, "local", run_names=[killed, preempted], device="cpu", max_parallel=2,
                           wait=False, out=lambda line: None)
    assert {s.task.run for s in handle.submitted} == {killed, preempted}  # both started at once
    jobs = handle.jobs
    prof = profiles.load(SMOKE)
    histories = {name: runs.run_path(SMOKE, name, prof.run(name, 0)) / "history.json" for name in (killed, preempted)}
    try:
        pid = _task_pid(jobs[preempted, 0])
        todo = {killed, preempted}
        deadline = time.time() + 120
        while todo and time.time() < deadline:
            for name in [n for n in todo if histories[n].exists()]:  # history.json appears after epoch 1
                if name == killed:
                    jobs[killed, 0].cancel()
                else:
                    os.kill(pid, signal.SIGUSR2)  # what Slurm sends before a time limit or preemption
                todo.discard(name)
            time.sleep(0.01)
        assert not todo, f"no epoch finished in time for {todo}"
        outcomes = {o.run: o for o in handle.wait()}
    finally:
        handle.cancel()
    late = outcomes[killed].status == launch.COMPLETED or _history(killed)[-1]["epoch"] != 1
    if late or "requeued" not in jobs[preempted, 0].stdout():
        return None
    return jobs, outcomes


@pytest.mark.slow
def test_killed_task_resumes_and_preempted_task_requeues(reference):
    """Two tasks side by side: one is cancelled after its first epoch (then launched again), the other
    gets the preemption signal (submitit checkpoints it: requeued, it resumes by itself). Both end with
    the numbers of an uninterrupted run."""
    killed, preempted = "t1_resnet32_standin", "resnet20_trades"
    prof = profiles.load(SMOKE)
    for _attempt in range(3):
        result = _interrupt_after_first_epoch(killed, preempted)
        if result is not None:
            break
        for name in (killed, preempted):  # a signal came too late: start over from nothing
            runs.discard(runs.run_path(SMOKE, name, prof.run(name, 0)))
    assert result is not None, "in three attempts a run finished before its signal landed"
    jobs, outcomes = result
    assert outcomes[killed].status == launch.FAILED, outcomes[killed]
    assert _state(killed) == runs.PARTIAL and _history(killed)[-1]["epoch"] == 1

    # the preempted task was requeued by submitit and finished by itself
    assert outcomes[preempted].status == launch.COMPLETED, outcomes[preempted]
    log = jobs[preempted, 0].stdout()
    assert "requeued" in log and log.count("started on") == 2, log
    assert _numbers(_history(preempted)) == reference(preempted)

    # launched again: only the killed run is submitted; it resumes from its checkpoint
    again = launch.launch(SMOKE, "local", run_names=[killed, preempted], device="cpu", max_parallel=2,
                          out=lambda line: None)
    assert [s.task.run for s in again.submitted] == [killed]
    assert {o.run: o.status for o in again.outcomes()} == {killed: launch.COMPLETED, preempted: launch.DONE}
    assert _state(killed) == runs.COMPLETE
    assert _numbers(_history(killed)) == reference(killed)


def test_task_checkpoint_resubmits_itself():
    task = launch.Task(SMOKE, "vgg13_standard", 0, "cpu", {"CCKL_THREADS": "1"})
    delayed = task.checkpoint()
    assert delayed.function is task and delayed.args == () and delayed.kwargs == {}


# --------------------------------------------------------------------------- Slurm (a fake sbatch)
def test_slurm_submits_one_array(tmp_path, monkeypatch, capsys, roots):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in {"sbatch": 'echo "Submitted batch job 4242"', "srun": "exit 0", "sacct": "exit 0"}.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    rc = cli_main(["launch", "--profile", SMOKE, "--executor", "slurm", "--partition", "gpu", "--time", "01:30:00",
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
    assert not [p for p in (roots / SMOKE).glob("*") if not p.name.startswith(".")]  # nothing ran here


# --------------------------------------------------------------------------- mistakes: one line, exit 2
def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_mistakes_are_one_line(tmp_path, monkeypatch, capsys):
    base = ["launch", "--profile", SMOKE, "--runs", "vgg13_standard"]
    assert cli_main(base + ["--executor", "local", "--time", "90"]) == 2
    _one_error_line(capsys, "--time must look like HH:MM:SS")
    assert cli_main(base + ["--executor", "local", "--seeds", "a"]) == 2
    _one_error_line(capsys, "--seeds must be whole numbers")
    assert cli_main(["launch", "--profile", SMOKE, "--executor", "local", "--runs", "nope"]) == 2
    _one_error_line(capsys, "has no run 'nope'")
    assert cli_main(base + ["--executor", "local", "--max-parallel", "0"]) == 2
    _one_error_line(capsys, "--max-parallel must be >= 1")

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(blocker / "artifacts"))
    assert cli_main(base + ["--executor", "local"]) == 2
    _one_error_line(capsys, f"the artifacts root {blocker / 'artifacts'} is not writable", "CCKL_ARTIFACTS")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))

    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    assert cli_main(base + ["--executor", "local"]) == 2
    _one_error_line(capsys, "pip install 'cckl-core[cluster]'")
    with pytest.raises(ImportError, match=r"cckl-core\[cluster\]"):
        launch.launch(SMOKE, "local", run_names=["vgg13_standard"], out=lambda line: None)

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


def test_console_script_help():
    cckl = Path(sys.executable).parent / "cckl"
    if not cckl.exists():
        pytest.skip("the cckl console script is not installed (pip install -e .)")
    res = subprocess.run([str(cckl), "launch", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for opt in ("--executor", "--partition", "--gpus-per-job", "--max-parallel", "--time", "--runs", "--seeds", "--wait"):
        assert opt in res.stdout


# --------------------------------------------------------------------------- GPU slots (a fake executor)
class _FakeJob:
    def __init__(self, folder: Path, job_id: int, task):
        from submitit.core.utils import JobPaths, cloudpickle_dump
        self.job_id, self.task = str(job_id), task
        self.paths = JobPaths(folder, self.job_id, 0)
        self.finished = False
        cloudpickle_dump(("success", {"run": task.run, "seed": task.seed, "status": "completed", "epochs": 2,
                                      "evaluations": []}), self.paths.result_pickle)

    def done(self):
        return self.finished

    def cancel(self, check=True):
        self.finished = True


class _FakeLocalExecutor:
    made = []

    def __init__(self, folder, max_num_timeout=3):
        self.folder, self.parameters, self.submissions = Path(folder), {}, []
        _FakeLocalExecutor.made.append(self)

    def update_parameters(self, **kw):
        self.parameters.update(kw)

    def submit(self, task):
        job = _FakeJob(self.folder, 100 + len(self.submissions), task)
        self.submissions.append((dict(self.parameters), task, job))
        return job


def test_local_gives_each_task_its_gpus(monkeypatch):
    import submitit
    monkeypatch.setattr(launch, "_visible_gpus", lambda: ["0", "1", "2", "3"])
    monkeypatch.setattr(submitit, "LocalExecutor", _FakeLocalExecutor)
    monkeypatch.delenv("CCKL_THREADS")
    names = ["vgg13_standard", "vgg13_pgd_at", "vgg13_trades"]
    handle = launch.launch(SMOKE, "local", run_names=names, gpus_per_job=2, wait=False, out=lambda line: None)
    ex = _FakeLocalExecutor.made[-1]
    assert [(p["gpus_per_node"], p["visible_gpus"]) for p, _, _ in ex.submissions] == [(2, [0, 1]), (2, [2, 3])]
    first, second = (t for _, t, _ in ex.submissions)
    assert (first.device, first.env["CUDA_VISIBLE_DEVICES"], second.env["CUDA_VISIBLE_DEVICES"]) == ("cuda", "0,1", "2,3")
    assert first.env["CCKL_THREADS"] == str(max(1, devices.available_cpus() // 2))
    assert not handle.poll()  # both slots busy, the third task waits
    ex.submissions[1][2].finished = True
    assert not handle.poll()  # it took the freed slot: GPUs 2,3
    assert ex.submissions[2][0]["visible_gpus"] == [2, 3] and ex.submissions[2][1].run == "vgg13_trades"
    for _, _, job in ex.submissions:
        job.finished = True
    assert handle.poll()
    assert [o.status for o in handle.outcomes()] == [launch.COMPLETED] * 3
    assert ex.parameters["timeout_min"] >= 60 * 24  # no limit by default (LocalExecutor's own is 2 minutes)


def test_local_jobs_can_be_cancelled_from_a_background_launcher():
    """A launcher started with `&` or nohup has SIGINT ignored; its local jobs must not inherit that,
    because submitit cancels a local job with SIGINT (found when a backgrounded test run could not
    cancel its task)."""
    def ignored_in_child() -> bool:
        out = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return out == "True"

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert ignored_in_child()  # what the child would inherit without the guard
        with launch._sigint_not_ignored():
            assert not ignored_in_child()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the launcher's own disposition is restored
    finally:
        signal.signal(signal.SIGINT, previous)
