"""`cckl launch --executor slurm` against a real single-node Slurm (`make test-slurm`; issue 25).

`scripts/local_slurm.sh start` (Debian's slurm-wlm and munge, installed when missing; one node on 127.0.0.1 with
every CPU here, partition `cpu` without GPUs, no accounting) is the cluster; the Makefile starts and stops it, or
this module does when SLURM_CONF names no running cluster. What is checked, with the README's command on a CPU
partition (`--device auto`, no `--cpus-per-task`: one CPU per task, the cluster's default):

- refusals before anything is queued: a GPU on a partition without GPUs, a time limit inside submitit's signal
  delay, and a submission Slurm itself refuses: one line, exit 2, no files left;
- the smoke profile launched with `--wait`: one array; a second launch at once submits nothing (its work is
  queued); one task killed (SIGKILL) mid-epoch and one cancelled (`scancel`) while pending make `--wait` return
  (there is no accounting) and report them; one task, frozen after its first epoch until Slurm's time-limit signal
  reaches it, is requeued by submitit and resumes; every task ran one torch thread (its allocation);
- a relaunch submits exactly the killed and the cancelled task; a third submits nothing;
- every run's weights, history (timings aside) and evaluations equal, byte for byte, those of a local `evaluate`
  of the same configs with one thread per job (the smoke fixture, `make fixture`).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cckl_core import profiles, runs

REPO = Path(__file__).resolve().parents[2]
SMOKE = profiles.load("smoke")
TIME = "00:04:00"  # the shortest limit launch accepts: Slurm signals a task 90 s (up to 150 s) before it

pytestmark = pytest.mark.skipif(not os.environ.get("CCKL_TEST_SLURM"),
                                reason="the real-Slurm test: make test-slurm (starts a single-node Slurm)")


def _slurm_answers(env: dict) -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], env=env, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def cluster():
    """The environment of a running single-node Slurm: SLURM_CONF's, else one started here (and stopped after)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCKL_", "SLURM_"))}
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env["PYTHONWARNINGS"] = "ignore"
    started = False
    if os.environ.get("SLURM_CONF"):
        env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    if not (env.get("SLURM_CONF") and _slurm_answers(env)):
        subprocess.run([str(REPO / "scripts" / "local_slurm.sh"), "start"], check=True)
        env["SLURM_CONF"] = str(REPO / "build" / "slurm" / "slurm.conf")
        started = True
    try:
        assert _slurm_answers(env), "the Slurm cluster does not answer (sinfo)"
        yield env
    finally:
        subprocess.run(["scancel", "--user", str(os.getuid())], env=env, capture_output=True)
        if started:
            subprocess.run([str(REPO / "scripts" / "local_slurm.sh"), "stop"])


@pytest.fixture
def roots(tmp_path, cluster):
    """The launch environment: a fresh artifacts root and data root (no CIFAR-100: the optional run is skipped)."""
    env = dict(cluster, CCKL_ARTIFACTS=str(tmp_path / "artifacts"), CCKL_DATA_ROOT=str(tmp_path / "data"))
    return env, tmp_path / "artifacts"


def _cckl(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cckl_core", *args], env=env, cwd=env["CCKL_ARTIFACTS"].rsplit("/", 1)[0],
                          capture_output=True, text=True, timeout=timeout)


def _launch_args(*extra: str) -> list[str]:
    return ["launch", "--profile", "smoke", "--executor", "slurm", "--time", TIME, *extra]


def _queue(env: dict) -> list[str]:
    return subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def _one_error_line(res: subprocess.CompletedProcess, *words: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (res.returncode, res.stdout,
                                                                                       res.stderr)
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_refused_before_anything_is_queued(roots):
    env, artifacts = roots
    # a GPU on a partition without GPUs; a time limit inside submitit's 90 s signal
    _one_error_line(_cckl(env, *_launch_args("--device", "cuda")), "partition cpu has no GPUs")
    res = _cckl(env, "launch", "--profile", "smoke", "--executor", "slurm", "--time", "00:01:30")
    _one_error_line(res, "--time 00:01:30 is too short", "give --time 00:04:00 or more")
    # refused by Slurm itself (EnforcePartLimits=ALL: more CPUs than the node has)
    res = _cckl(env, *_launch_args("--cpus-per-task", "64"))
    _one_error_line(res, "Slurm refused the submission of 10 task(s)", "nothing was submitted")
    assert not (artifacts / "smoke").exists(), sorted(str(p) for p in artifacts.rglob("*"))
    assert _queue(env) == []


# --------------------------------------------------------------------------- the launch, killed, timed out, resumed
class Launch:
    """`cckl launch` in the background, its output lines collected as they come."""

    def __init__(self, env: dict, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "cckl_core", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=env["CCKL_ARTIFACTS"].rsplit("/", 1)[0])
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def out(self) -> str:
        return "\n".join(self.lines)

    def jobs(self) -> dict[str, str]:
        """run name -> Slurm task id, from the submission's lines (``[cckl]   job 1_3: vgg13_trades seed 0``)."""
        return {m.group(2): m.group(1) for m in (re.match(r"\[cckl\]   job (\S+): (\S+) seed \d+$", ln)
                                                  for ln in list(self.lines)) if m}

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"launch did not return within {timeout:.0f} s:\n{self.out}") from None
        self.reader.join(10)
        return rc


def _epochs_done(artifacts: Path, cfg) -> int:
    """The last finished epoch in the run's history (-1 before its first line, epoch 0 being the untrained model)."""
    try:
        return max(rec["epoch"] for rec in json.loads((artifacts / cfg.profile / cfg.folder / "history.json").read_text()))
    except (OSError, ValueError):
        return -1


def _log(logs: Path, job: str) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(logs.glob(f"{job}_0_log.*")))


def _task_pid(logs: Path, job: str) -> int | None:
    pids = re.findall(r"started on \S+ \(pid (\d+)\)", _log(logs, job))
    return int(pids[-1]) if pids else None


def _signal_pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits, undelivered, on (stopped) process ``pid``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = [int(m, 16) for m in re.findall(r"^(?:ShdPnd|SigPnd):\s*([0-9a-f]+)", status, re.M)]
    return any(m >> (sig - 1) & 1 for m in masks)


def _numbers(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if not k.endswith("seconds")} for rec in history]


def _same_results(ours: Path, theirs: Path, cfg) -> None:
    """Weights byte for byte; history without its timings; every evaluation's values and arrays."""
    a, b = ours / cfg.profile / cfg.folder, theirs / cfg.profile / cfg.folder
    assert (a / runs.WEIGHTS).read_bytes() == (b / runs.WEIGHTS).read_bytes(), f"{cfg.label}: weights differ"
    assert _numbers(json.loads((a / "history.json").read_text())) == _numbers(json.loads((b / "history.json").read_text())), \
        f"{cfg.label}: history differs"
    def listed(folder: Path) -> list[str]:
        return sorted(p.name for p in (folder / "evaluations").glob("*"))

    names = listed(b)
    assert listed(a) == names, cfg.label
    for name in names:
        if name.endswith(".json"):
            x, y = (json.loads((f / "evaluations" / name).read_text()) for f in (a, b))
            for key in ("settings", "values", "run_key", "model_sha256"):
                assert x[key] == y[key], (cfg.label, name, key)
        elif name.endswith(".npz"):
            with np.load(a / "evaluations" / name) as x, np.load(b / "evaluations" / name) as y:
                assert sorted(x.files) == sorted(y.files), (cfg.label, name)
                for key in x.files:
                    assert x[key].dtype == y[key].dtype and x[key].tobytes() == y[key].tobytes(), (cfg.label, name, key)


def test_launch_kill_timeout_resume(roots, smoke_fixture):
    env, artifacts = roots
    logs = artifacts / "smoke" / ".launch"
    configs = SMOKE.configs()
    timed_out, killed, cancelled = configs[0], configs[1], configs[-1]  # the first two to start; the last to start
    assert not cancelled.optional and not killed.optional

    # the README's command on a CPU partition (--device auto, the cluster's CPUs per task), waiting for the tasks;
    # two at a time, so that the last one is still pending when it is cancelled, however many CPUs the node has
    first = Launch(env, *_launch_args("--max-parallel", "2", "--wait"))
    deadline = time.time() + 120
    while len(first.jobs()) < len(configs) and time.time() < deadline and first.proc.poll() is None:
        time.sleep(0.05)
    jobs = first.jobs()
    assert len(jobs) == len(configs), first.out
    assert "partition cpu has no GPUs: --device auto trains on the CPU and asks Slurm for no GPU" in first.out
    array = jobs[configs[0].name].split("_")[0]

    # two tasks are frozen (SIGSTOP, as on a stalled node: Slurm's clock runs on) right after their first epoch; one
    # is then killed by Slurm, the other waits for its time-limit signal, and is let go to meet it
    frozen: dict[str, int] = {}
    events = {"signalled": threading.Event(), "stop": threading.Event()}
    problems: list[str] = []

    def watch() -> None:
        try:
            while not events["stop"].is_set() and first.proc.poll() is None:
                for cfg in (killed, timed_out):
                    if cfg.name not in frozen and _epochs_done(artifacts, cfg) >= 1:
                        pid = _task_pid(logs, jobs[cfg.name])
                        os.kill(pid, signal.SIGSTOP)
                        frozen[cfg.name] = pid
                        if _epochs_done(artifacts, cfg) >= cfg.epochs:
                            problems.append(f"{cfg.label} finished its last epoch before it was frozen")
                pid = frozen.get(timed_out.name)
                if pid and not events["signalled"].is_set():
                    # Slurm sends SIGCONT with its signal (22.05 does); should it not, the signal waits undelivered
                    if _signal_pending(pid, signal.SIGUSR2):
                        os.kill(pid, signal.SIGCONT)
                    if "Caught signal SIGUSR2" in _log(logs, jobs[timed_out.name]):
                        events["signalled"].set()  # submitit caught it: it requeues the task, which resumes
                time.sleep(0.02)
        except Exception as err:  # reported by the test
            problems.append(repr(err))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # a second launch at once: everything unfinished is queued already, nothing is submitted
        second = _cckl(env, *_launch_args())
        assert second.returncode == 0 and "[cckl] nothing to submit" in second.stdout, second.stdout + second.stderr
        assert "already queued" in second.stdout and "submitted job array" not in second.stdout, second.stdout
        assert {q.split("_")[0] for q in _queue(env)} <= {array}, _queue(env)

        # the last task is cancelled while it waits for a CPU
        subprocess.run(["scancel", jobs[cancelled.name]], env=env, check=True)
        # the frozen task is killed mid-epoch (SIGKILL, as by the OOM killer; `scancel` of a running task lets it go
        # on for KillWait, since submitit ignores SIGTERM, and a smoke run may finish in that time)
        wait_until = time.time() + 120
        while killed.name not in frozen and time.time() < wait_until and not problems:
            time.sleep(0.05)
        assert killed.name in frozen and not problems, (problems, first.out)
        kill_epochs = _epochs_done(artifacts, killed)
        os.kill(frozen[killed.name], signal.SIGKILL)

        # the other one gets Slurm's signal 90 s (to 150 s) before its 4-minute limit; the launch returns after
        assert events["signalled"].wait(timeout=300), ("no time-limit signal", problems, first.out)
        rc = first.finish(timeout=300)
    finally:
        events["stop"].set()
        for pid in frozen.values():  # nothing stays stopped after a failure
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        watcher.join(10)
    assert not problems, problems
    assert kill_epochs < killed.epochs, kill_epochs

    # --wait returned (no accounting here) and says which tasks ended without a result
    summary = first.out[first.out.index("[cckl] summary of smoke:"):]
    assert rc == 1, first.out
    assert f"{killed.name} seed 0: failed: ended without a result (failed" in summary, summary
    # a pending array task that is cancelled leaves squeue at once
    assert re.search(rf"{cancelled.name} seed 0: failed: ended without a result \((cancelled|no longer in Slurm's "
                     r"queue)\)", summary), summary
    assert f"{timed_out.name} seed 0: completed" in summary, summary
    assert summary.count(": completed") == len(configs) - 3 and "seed 0: skipped: optional run" in summary, summary
    assert runs.inspect(artifacts / "smoke" / killed.folder).state == runs.PARTIAL
    assert runs.inspect(artifacts / "smoke" / cancelled.folder).state == runs.NOT_STARTED

    # the frozen task: signalled at its limit, requeued by submitit, started again, resumed
    log = _log(logs, jobs[timed_out.name])
    assert "Caught signal SIGUSR2" in log and "this job is timed-out" in log, log
    assert "preempted or at its time limit; requeued" in log and "Requeued job" in log, log
    assert log.count("started on ") == 2, log
    # every task ran one torch thread: the CPU Slurm allocated it (not the node's cores)
    for cfg in configs:
        for line in re.findall(r".*started on .*", _log(logs, jobs[cfg.name])):
            assert "1 thread(s) (Slurm allocated 1 CPU(s))" in line, line

    # a relaunch submits exactly the killed and the cancelled task, and resumes them
    again = _cckl(env, *_launch_args("--wait"), timeout=420)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(configs)} tasks (run x seed), {len(configs) - 3} complete with their evaluations, 2 to run" \
        in again.stdout, again.stdout
    assert re.search(r"submitted job array \d+: 2 task\(s\)", again.stdout), again.stdout
    submitted = sorted(re.findall(r"\[cckl\]   job \S+: (\S+) seed 0", again.stdout))
    assert submitted == sorted([killed.name, cancelled.name]), again.stdout

    # and then there is nothing left to submit
    third = _cckl(env, *_launch_args())
    assert third.returncode == 0 and "[cckl] nothing to submit" in third.stdout, third.stdout + third.stderr
    assert f"{len(configs) - 1} complete with their evaluations, 0 to run" in third.stdout, third.stdout

    # every run equals the local run of the same config (one thread per job), byte for byte
    for cfg in configs:
        if not cfg.optional:
            _same_results(artifacts, smoke_fixture / "artifacts", cfg)
