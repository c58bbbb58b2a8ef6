"""Scale out: every (run, seed) of a profile as one task of a job array, on Slurm or on local processes.

    python -m cckl_core launch --profile paper --executor slurm --partition gpu --max-parallel 10
    python -m cckl_core launch --profile paper --executor local          # one task per visible GPU

Each task calls :func:`cckl_core.evaluations.evaluate_run` for its run and seed: it trains
what is missing (resuming from the run's last finished epoch), then computes the run's cached
evaluations, all into the artifacts root (``$CCKL_ARTIFACTS``), which every node must see and
write. Nothing else travels: the cache is the only channel, ``python -m cckl_core runs`` reads
progress from it, and the notebooks render from it.

- Tasks whose run is finished and whose evaluations are all cached are not submitted, so
  launching twice submits nothing the second time.
- A task is a :class:`Task` (a callable with a ``checkpoint()`` method), so submitit resubmits
  it when it is preempted or reaches its time limit; the run cache resumes it from
  ``checkpoint.safetensors``, and a second process on the same run waits on the run's lock.
- An optional run whose data set is missing returns a "skipped" result (and is recorded under
  ``<artifacts root>/<profile>/.launch/skipped/``, so later launches leave it out while its data
  is still missing).
- ``local`` runs at most ``max_parallel`` tasks at a time as local processes (submitit's
  ``LocalExecutor``), one GPU group each (``CUDA_VISIBLE_DEVICES``) when GPUs are visible,
  else on the CPU (default: one task per core, at most one per task, with ``cores // jobs``
  threads each: :func:`devices.cpu_job_layout`); it waits for them.
  ``slurm`` submits one job array (``--array=0-N%max_parallel``) and returns (``wait=True`` blocks).

submitit is needed only here and imported lazily: ``pip install 'cckl-core[cluster]'``.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import profiles
from .paths import artifacts_root, data_root

EXECUTORS = ("local", "slurm")
#: Task outcomes.
COMPLETED, SKIPPED, FAILED = "completed", "skipped", "failed"
#: States of a (run, seed) before launching (see :func:`survey`).
DONE, TO_RUN, SKIPPED_EARLIER, BLOCKED = "complete", "to run", "skipped earlier", "blocked"
#: Default time limit of a Slurm task: the longest `paper` run (resnet32x10 TRADES, ~5.6 h on one
#: H100) plus its evaluations fits; a task cut by the limit is requeued and resumes.
SLURM_DEFAULT_TIME = "08:00:00"
#: How many times a task may be requeued after reaching its time limit.
MAX_TIMEOUTS = 20
_LOCAL_NO_LIMIT_MIN = 60 * 24 * 30  # LocalExecutor needs a limit (its default is 2 minutes)
_NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")


class MissingExtraError(ImportError):
    """submitit is not installed; the message names the extra that brings it."""


def _submitit():
    try:
        import submitit
    except ImportError as err:
        raise MissingExtraError(f"launching jobs needs submitit ({err}); install it with "
                                "`pip install 'cckl-core[cluster]'` (or `pip install 'submitit>=1.5'`)") from None
    return submitit


@contextmanager
def _sigint_not_ignored():
    """Submit local jobs with SIGINT at its default: submitit cancels a local job with SIGINT, and a
    launcher started in the background (`cmd &`, nohup, a CI step) has SIGINT ignored, which its
    child processes would inherit, so a cancel would do nothing. A handler (unlike SIG_IGN) is
    reset to the default in the child at exec."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- the task
@dataclass
class Task:
    """Train and evaluate one (run, seed) of a profile: what one array task runs.

    ``env`` is set in the task's process before anything else (artifacts and data roots as
    absolute paths, ``CCKL_THREADS``, ``CUDA_VISIBLE_DEVICES``). Calling it returns a dict with
    ``status`` (``"completed"`` or ``"skipped"``); a failure raises, and submitit records it.
    """
    profile: str
    run: str
    seed: int
    device: str = "auto"
    env: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.run} seed {self.seed}"

    def __call__(self) -> dict:
        os.environ.update(self.env)
        from . import devices, evaluations, runs

        threads = devices.configure_threads()  # $CCKL_THREADS, else this task's CPUs (Slurm's allocation)
        print(f"[cckl] {self.profile}/{self.label}: started on {socket.gethostname()} (pid {os.getpid()}), "
              f"device {self.device}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}, "
              f"{threads} thread(s), artifacts {artifacts_root()}", flush=True)
        record = skip_record_path(self.profile, self.run, self.seed)
        try:
            done = evaluations.evaluate_run(self.profile, self.run, device=self.device, seed=self.seed, progress=False)
        except runs.RunSkipped as skip:
            from . import store
            store.atomic_write_json(record, {"run": self.run, "seed": self.seed, "message": str(skip),
                                             "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            print(f"[cckl] {skip}", flush=True)
            return {"run": self.run, "seed": self.seed, "status": SKIPPED, "message": str(skip)}
        record.unlink(missing_ok=True)
        run = runs.load(self.profile, self.run, weights=False, seed=self.seed)
        last = run.history[-1]
        out = {"run": self.run, "seed": self.seed, "status": COMPLETED, "path": str(run.path),
               "epochs": last["epoch"], "test_acc": last.get("test_acc"), "robust_acc": last.get("robust_acc"),
               "evaluations": [[name, how, round(sec, 2)] for name, how, sec in done]}
        print(f"[cckl] {self.profile}/{self.label}: done, {_describe(out)}", flush=True)
        return out

    def checkpoint(self, *args, **kwargs):
        """submitit's requeue hook (preemption, time limit): resubmit this same task. The run cache
        holds the state (the last finished epoch's checkpoint, the cached evaluations)."""
        print(f"[cckl] {self.profile}/{self.label}: preempted or at its time limit; requeued, it resumes "
              "from the last finished epoch", flush=True)
        return _submitit().helpers.DelayedSubmission(self, *args, **kwargs)


def _describe(res: dict) -> str:
    if res.get("status") == COMPLETED:
        evals = ", ".join(f"{n} {how}" for n, how, _ in res.get("evaluations", [])) or "no evaluations needed"
        acc = "" if res.get("test_acc") is None else f", test acc {res['test_acc']:.4f}"
        return f"{res['epochs']} epochs{acc}; {evals}"
    return res.get("message", "")


# --------------------------------------------------------------------------- what is left to do
@dataclass
class TaskState:
    """What the cache holds for one (run, seed) before launching: ``state`` is DONE, TO_RUN,
    SKIPPED_EARLIER or BLOCKED, with a one-line ``detail``."""
    run: str
    seed: int
    state: str
    detail: str = ""


def skip_record_path(profile: str, run: str, seed: int) -> Path:
    """Where a task records that optional run ``run`` was skipped for want of its data set."""
    from .runs import config_hash
    cfg = profiles.load(profile).run(run, seed)
    return artifacts_root() / profile / ".launch" / "skipped" / f"{run}-{config_hash(cfg)}.json"


def _data_missing(dataset: str) -> bool:
    """True when ``dataset`` cannot be read here without downloading it."""
    from . import data
    try:
        data.load(dataset, "test", download=False)
        data.load(dataset, "train", download=False)
    except data.DataNotFoundError:
        return True
    except Exception:  # anything else: let the task meet it and report it
        return False
    return False


def survey(profile: str, run_names: list[str] | None = None, seeds: list[int] | None = None) -> list[TaskState]:
    """The state of every (run, seed) to launch: DONE when the run is complete (weights kept or
    removed) and every evaluation it needs is cached; SKIPPED_EARLIER for an optional run a
    task skipped whose data set is still missing; BLOCKED when evaluations are missing but the
    weights were removed; TO_RUN otherwise."""
    from . import evaluations, runs

    prof = profiles.load(profile)
    run_names, seeds = check_selection(prof, run_names, seeds)
    rows = {(r["run"], r["seed"]): r for r in runs.status(prof.name, seeds=seeds)}
    out = []
    for name in run_names:
        for seed in seeds:
            row = rows[(name, seed)]
            if row["state"] in (runs.COMPLETE, runs.NO_WEIGHTS):
                run = runs.load(prof.name, name, weights=False, seed=seed)
                missing = [e for e in evaluations.needed(prof, name)
                           if evaluations.read(run, evaluations.settings(prof, e)) is None]
                if not missing:
                    out.append(TaskState(name, seed, DONE, f"{row['epochs']} epochs, evaluations cached"))
                elif row["state"] == runs.NO_WEIGHTS:
                    out.append(TaskState(name, seed, BLOCKED, f"evaluations {', '.join(missing)} missing and the "
                                         f"weights were removed from {run.path}: copy model.safetensors back, or "
                                         "delete the folder to retrain"))
                else:
                    out.append(TaskState(name, seed, TO_RUN, f"trained; evaluations {', '.join(missing)} missing"))
                continue
            record = skip_record_path(prof.name, name, seed)
            cfg = prof.run(name, seed)
            if record.exists() and cfg.get("optional") and _data_missing(cfg["dataset"]):
                out.append(TaskState(name, seed, SKIPPED_EARLIER, f"optional, data set {cfg['dataset']!r} still "
                                     f"missing (recorded in {record}; delete it to try again)"))
                continue
            detail = row["state"] + (f", {row['epochs']} epochs" if row["state"] == runs.PARTIAL else "")
            out.append(TaskState(name, seed, TO_RUN, detail))
    return out


def check_selection(prof: profiles.Profile, run_names, seeds) -> tuple[list[str], list[int]]:
    """Run names (default: all the profile's) and seeds (default: its ``seeds``), checked, in order, deduplicated."""
    run_names = list(dict.fromkeys(run_names or prof.runs))
    for n in run_names:
        if n not in prof.runs:
            raise ValueError(f"profile {prof.name!r} has no run {n!r}; its runs: {', '.join(prof.runs)}")
    seeds = list(dict.fromkeys(prof.seeds if seeds is None else seeds))
    if not seeds:
        raise ValueError("no seeds given")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be whole numbers >= 0, got {s!r}")
    return run_names, seeds


# --------------------------------------------------------------------------- checks and parsing
def check_artifacts_root(root: Path | None = None) -> Path:
    """Create the artifacts root and prove it writable (a probe file written and removed); return
    it as an absolute path. Every node that runs a task must see this same folder."""
    root = Path(root or artifacts_root()).expanduser().absolute()
    probe = root / f".cckl-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe\n")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"the artifacts root {root} is not writable here ({err.strerror or err}): launched tasks "
                         "write their runs and evaluations into it, so it must be a folder this machine and every "
                         "node running a task can write (set CCKL_ARTIFACTS to a folder on a shared filesystem)") from None
    return root


def parse_time(text: str) -> float:
    """Minutes in a Slurm-style limit ``[D-]HH:MM:SS`` or ``[D-]HH:MM``."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?", str(text).strip())
    if not m or int(m.group(3)) >= 60 or (m.group(4) and int(m.group(4)) >= 60):
        raise ValueError(f"--time must look like HH:MM:SS (or D-HH:MM:SS), got {text!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    total = ((days * 24 + hours) * 60 + minutes) + seconds / 60
    if total <= 0:
        raise ValueError(f"--time must be positive, got {text!r}")
    return total


def parse_list(text: str | None, what: str, kind=str) -> list | None:
    """``"a,b,c"`` as a list (``None`` stays None); ``kind=int`` for seeds."""
    if text is None:
        return None
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"{what} is empty")
    if kind is int:
        bad = [t for t in items if not t.isdigit()]
        if bad:
            raise ValueError(f"{what} must be whole numbers >= 0 separated by commas, got {text!r}")
        return [int(t) for t in items]
    return items


def _visible_gpus() -> list[str]:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` entries."""
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip():
        ids = [e.strip() for e in env.split(",") if e.strip()]
        return ids[:n] if n else []
    return [str(i) for i in range(n)]


# --------------------------------------------------------------------------- a launch in flight
@dataclass
class Submitted:
    task: Task
    job: object  # a submitit Job
    slot: int = 0
    gpus: str = ""
    result: "Outcome | None" = None  # once the job has finished

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)


@dataclass
class Outcome:
    run: str
    seed: int
    status: str  # COMPLETED, SKIPPED, FAILED, or a survey state (not submitted)
    detail: str = ""
    job_id: str | None = None


class Launch:
    """The tasks of one launch: submitted jobs (``submitted``), the ones not submitted
    (``survey`` rows that were DONE, SKIPPED_EARLIER or BLOCKED), and for ``local`` the queue
    that :meth:`poll` / :meth:`wait` feed into free slots."""

    def __init__(self, profile: str, executor: str, folder: Path, states: list[TaskState], tasks: list[Task],
                 out: Callable[[str], None] = print, poll_s: float = 1.0):
        self.profile, self.executor, self.folder = profile, executor, folder
        self.states = states
        self.tasks = tasks
        self.submitted: list[Submitted] = []
        self.out = out
        self.poll_s = poll_s
        self._queue: deque[Task] = deque()
        self._running: dict[int, Submitted] = {}
        self._slots: list[str] = []  # local: the CUDA_VISIBLE_DEVICES of each slot ("" on the CPU)
        self._executor = None
        self._int_gpus = True
        self.waited = False

    # ---------------------------------------------------------------- local scheduling
    def _start_local(self, executor, slots: list[str]) -> None:
        self._executor, self._slots = executor, slots
        self._int_gpus = all(g.isdigit() for s in slots for g in s.split(",") if s)
        self._queue.extend(self.tasks)
        self._fill()

    def _fill(self) -> None:
        for slot, gpus in enumerate(self._slots):
            if not self._queue:
                return
            if slot in self._running:
                continue
            task = self._queue.popleft()
            if gpus:
                task.env["CUDA_VISIBLE_DEVICES"] = gpus
                ids = gpus.split(",")
                params = {"gpus_per_node": len(ids), "visible_gpus": [int(i) for i in ids]} if self._int_gpus else \
                    {"gpus_per_node": 0}
            else:
                params = {"gpus_per_node": 0}
            self._executor.update_parameters(**params)
            with _sigint_not_ignored():
                job = self._executor.submit(task)
            sub = Submitted(task, job, slot, gpus)
            self._running[slot] = sub
            self.submitted.append(sub)
            where = f"GPU {gpus}" if gpus else f"cpu, {task.env.get('CCKL_THREADS', '?')} thread(s)"
            self.out(f"[cckl] local job {sub.job_id}: {task.label} ({where})")

    def poll(self) -> bool:
        """Collect finished local jobs and start queued tasks in the freed slots; True once every
        submitted job is done (Slurm: asks the scheduler)."""
        if self.executor == "local":
            for slot, sub in list(self._running.items()):
                if sub.job.done():
                    del self._running[slot]
                    o = self.outcome(sub)
                    self.out(f"[cckl] {o.status}: {sub.task.label} (job {sub.job_id}){': ' + o.detail if o.detail else ''}")
            self._fill()
            return not self._queue and not self._running
        return all(sub.job.done() for sub in self.submitted)

    def wait(self) -> list[Outcome]:
        """Block until every task has finished; return :meth:`outcomes`. Ctrl-C cancels the local tasks."""
        try:
            while not self.poll():
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            if self.executor == "local":
                self.cancel()
            raise
        return self.outcomes()

    def cancel(self) -> None:
        """Cancel every submitted job that is still running (local: SIGINT; Slurm: scancel) and drop the queue."""
        self._queue.clear()
        for sub in self.submitted:
            if not sub.job.done():
                sub.job.cancel(check=False)

    @property
    def jobs(self) -> dict[tuple[str, int], object]:
        """The submitit job of each submitted (run, seed)."""
        return {(s.task.run, s.task.seed): s.job for s in self.submitted}

    # ---------------------------------------------------------------- results
    def outcome(self, sub: Submitted) -> Outcome:
        """What a finished job returned (or why it failed); read once, then remembered."""
        if sub.result is None:
            sub.result = self._read_outcome(sub)
        return sub.result

    def _read_outcome(self, sub: Submitted) -> Outcome:
        t = sub.task
        pickle = sub.job.paths.result_pickle
        if not pickle.exists() and self.executor != "local":  # a shared filesystem may lag behind
            for _ in range(15):
                time.sleep(1)
                if pickle.exists():
                    break
        if not pickle.exists():
            state = getattr(sub.job, "state", "unknown")
            return Outcome(t.run, t.seed, FAILED, f"no result (job state {state}); {_log_tail(sub.job)}", sub.job_id)
        from submitit.core.utils import pickle_load
        kind, value = pickle_load(pickle)
        if kind != "success":
            lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
            return Outcome(t.run, t.seed, FAILED, (lines[-1].strip() if lines else "error") +
                           f" (log: {sub.job.paths.stderr})", sub.job_id)
        return Outcome(t.run, t.seed, value.get("status", COMPLETED), _describe(value), sub.job_id)

    def outcomes(self) -> list[Outcome]:
        """One row per (run, seed) of the launch: submitted ones with their result, the others with their state."""
        got = {(s.task.run, s.task.seed): self.outcome(s) for s in self.submitted if s.job.done()}
        rows = []
        for st in self.states:
            key = (st.run, st.seed)
            if key in got:
                rows.append(got[key])
            elif st.state == TO_RUN:
                sub = next((s for s in self.submitted if (s.task.run, s.task.seed) == key), None)
                rows.append(Outcome(st.run, st.seed, "not started" if sub is None else "running", st.detail,
                                    None if sub is None else sub.job_id))
            else:
                rows.append(Outcome(st.run, st.seed, st.state, st.detail))
        return rows

    def summary(self) -> str:
        rows = self.outcomes()
        width = max([len(r.run) for r in rows] + [3])
        lines = [f"[cckl] summary of {self.profile}:"]
        for r in rows:
            job = f" (job {r.job_id})" if r.job_id else ""
            lines.append(f"  {r.run:{width}s} seed {r.seed:<3d} {r.status}{job}{': ' + r.detail if r.detail else ''}")
        counts = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return "\n".join(lines)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes() if o.status == FAILED]


def _log_tail(job) -> str:
    try:
        text = job.paths.stderr.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            return f"last line of {job.paths.stderr}: {lines[-1].strip()}"
    except OSError:
        pass
    return f"log: {job.paths.stderr}"


# --------------------------------------------------------------------------- launching
def launch(profile: str, executor: str = "local", run_names: list[str] | None = None, seeds: list[int] | None = None,
           device: str = "auto", partition: str | None = None, gpus_per_job: int = 1, cpus_per_task: int | None = None,
           max_parallel: int | None = None, time_limit: str | None = None, logs: str | Path | None = None,
           wait: bool | None = None, out: Callable[[str], None] = print, poll_s: float | None = None) -> Launch:
    """Train and evaluate every (run, seed) of ``profile`` not yet complete, one task each.

    ``executor="local"``: local processes, at most ``max_parallel`` at a time (default: one per
    GPU group of ``gpus_per_job`` visible GPUs, else one per CPU core: :func:`devices.cpu_job_layout`); ``wait`` defaults to True
    (with ``wait=False`` the first tasks are started and :meth:`Launch.wait` starts the rest).
    ``executor="slurm"``: one job array on ``partition``, ``gpus_per_job`` GPUs per task, at
    most ``max_parallel`` tasks at a time (default: all), time limit ``time_limit``
    (``HH:MM:SS``, default :data:`SLURM_DEFAULT_TIME`); returns after submission unless ``wait``.
    Logs go to ``logs`` (default ``<artifacts root>/<profile>/.launch``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if gpus_per_job is None or gpus_per_job < 0:
        raise ValueError(f"--gpus-per-job must be >= 0, got {gpus_per_job}")
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"--max-parallel must be >= 1, got {max_parallel}")
    if cpus_per_task is not None and cpus_per_task < 1:
        raise ValueError(f"--cpus-per-task must be >= 1, got {cpus_per_task}")
    minutes = parse_time(time_limit) if time_limit is not None else None
    if executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ValueError("--executor slurm needs Slurm's sbatch and srun on PATH: run `launch` on a login node of the "
                         "cluster, or use --executor local on one machine")
    prof = profiles.load(profile)
    run_names, seeds = check_selection(prof, run_names, seeds)

    root = check_artifacts_root()
    folder = Path(logs).expanduser().absolute() if logs else root / prof.name / ".launch"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the logs folder {folder} ({err.strerror or err}); pass --logs") from None
    out(f"[cckl] artifacts root {root} (writable; every node running a task must see this same folder)")
    if executor == "slurm" and any(str(root) == p or str(root).startswith(p + "/") for p in _NODE_LOCAL):
        out(f"[cckl] warning: {root} looks node-local; Slurm tasks on other nodes will not see it "
            "(set CCKL_ARTIFACTS to a shared filesystem)")

    states = survey(prof.name, run_names, seeds)
    todo = [s for s in states if s.state == TO_RUN]
    for st in states:
        if st.state in (SKIPPED_EARLIER, BLOCKED):
            out(f"[cckl] not submitted, {st.state}: {st.run} seed {st.seed}: {st.detail}")
    n_done = sum(s.state == DONE for s in states)
    out(f"[cckl] {prof.name}: {len(states)} tasks (run x seed), {n_done} complete with their evaluations, "
        f"{len(todo)} to run")
    env = {"CCKL_ARTIFACTS": str(root), "CCKL_DATA_ROOT": str(data_root().expanduser().absolute())}
    for var in ("CCKL_CIFAR10_ZIP", "CCKL_FIGURES"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    tasks = [Task(prof.name, s.run, s.seed, device, dict(env)) for s in todo]
    handle = Launch(prof.name, executor, folder, states, tasks, out,
                    poll_s if poll_s is not None else (0.5 if executor == "local" else 60.0))
    if not tasks:
        out("[cckl] nothing to submit")
        return handle
    submitit = _submitit()
    if executor == "local":
        _launch_local(handle, submitit, device, gpus_per_job, max_parallel, minutes)
        wait = True if wait is None else wait
    else:
        _launch_slurm(handle, submitit, partition, gpus_per_job if device != "cpu" else 0, cpus_per_task,
                      max_parallel, minutes if minutes is not None else parse_time(SLURM_DEFAULT_TIME))
    out(f"[cckl] logs: {folder} (<job id>_0_log.out / _log.err per task)")
    out(f"[cckl] progress: python -m cckl_core runs --profile {prof.name}")
    handle.waited = bool(wait)
    if wait:
        out(f"[cckl] waiting for {len(tasks)} task(s)" + (" (Ctrl-C stops them; finished epochs are kept)"
                                                          if executor == "local" else ""))
        handle.wait()
        out(handle.summary())
    return handle


def _launch_local(handle: Launch, submitit, device: str, gpus_per_job: int, max_parallel: int | None,
                  minutes: float | None) -> None:
    from . import devices
    if device not in ("auto", "cpu", "cuda"):
        devices.resolve_device(device)  # unknown device: one-line error
        raise ValueError(f"--device {device} pins one GPU, but a local launch gives each task its own GPU(s) "
                         "through CUDA_VISIBLE_DEVICES: use --device cuda (or auto), or cpu")
    if device == "cuda":
        devices.resolve_device(device)  # no CUDA here: one-line error
    gpus = [] if device == "cpu" else _visible_gpus()
    if gpus:
        per = max(1, gpus_per_job)
        if per > len(gpus):
            raise ValueError(f"--gpus-per-job {per}, but this machine shows {len(gpus)} GPU(s)")
        groups = [",".join(gpus[i:i + per]) for i in range(0, len(gpus) - per + 1, per)]
        n = max_parallel or len(groups)
        slots = [groups[k % len(groups)] for k in range(n)]
        threads = devices.threads_per_job(n)
        task_device = "cuda"
    else:
        n, threads = devices.cpu_job_layout(len(handle.tasks), max_parallel)
        slots = [""] * n
        task_device = "cpu"
    for t in handle.tasks:
        t.device = task_device
        t.env["CCKL_THREADS"] = str(threads)
    ex = submitit.LocalExecutor(folder=handle.folder, max_num_timeout=MAX_TIMEOUTS)
    ex.update_parameters(timeout_min=minutes if minutes is not None else _LOCAL_NO_LIMIT_MIN,
                         signal_delay_s=min(90, max(1, int((minutes or 1e9) * 60 * 0.1))))
    share = f", {n // len(set(slots))} task(s) per GPU group" if gpus and n > len(set(slots)) else ""
    handle.out(f"[cckl] local: {len(handle.tasks)} task(s), at most {n} at a time, "
               + (f"GPUs {','.join(gpus)}{share}" if gpus else f"CPU, {threads} thread(s) each"))
    handle._start_local(ex, slots)


def _launch_slurm(handle: Launch, submitit, partition: str | None, gpus: int, cpus: int | None,
                  max_parallel: int | None, minutes: float) -> None:
    ex = submitit.AutoExecutor(folder=handle.folder, cluster="slurm", slurm_max_num_timeout=MAX_TIMEOUTS)
    params = {"name": f"cckl-{handle.profile}", "timeout_min": int(math.ceil(minutes)), "nodes": 1,
              "tasks_per_node": 1, "slurm_array_parallelism": max_parallel or len(handle.tasks)}
    if gpus:
        params["gpus_per_node"] = gpus
    if cpus is not None:
        params["cpus_per_task"] = cpus
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    jobs = ex.submit_array(handle.tasks)
    handle.submitted = [Submitted(t, j, i) for i, (t, j) in enumerate(zip(handle.tasks, jobs))]
    array_id = handle.submitted[0].job_id.split("_")[0]
    handle.out(f"[cckl] slurm: submitted job array {array_id}: {len(jobs)} task(s), at most "
               f"{params['slurm_array_parallelism']} at a time, {gpus} GPU(s) each, time limit "
               f"{params['timeout_min']} min{', partition ' + partition if partition else ''}")
    for sub in handle.submitted:
        handle.out(f"[cckl]   job {sub.job_id}: {sub.task.label}")
    handle.out(f"[cckl] watch the queue: squeue -j {array_id}; cancel: scancel {array_id}")


# --------------------------------------------------------------------------- command line
def run_cli(profile: str, args) -> int:
    """``python -m cckl_core launch``: 0 when no task failed, 1 otherwise."""
    handle = launch(profile, executor=args.executor, run_names=parse_list(args.runs, "--runs"),
                    seeds=parse_list(args.seeds, "--seeds", int), device=args.device, partition=args.partition,
                    gpus_per_job=args.gpus_per_job, cpus_per_task=args.cpus_per_task,
                    max_parallel=args.max_parallel, time_limit=args.time, logs=args.logs,
                    wait=True if args.executor == "local" else args.wait)
    sys.stdout.flush()
    return 1 if handle.waited and handle.failed else 0
