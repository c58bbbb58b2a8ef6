"""Scale out: every (run, seed) of a profile as one task of a Slurm job array, or side by side here.

    python -m cckl_core launch --profile paper --executor slurm --partition gpu --max-parallel 10
    python -m cckl_core launch --profile paper --executor local     # the local scheduler (cckl_core.schedule)

Each task trains its run (resuming from the run's last finished epoch) and computes its cached
evaluations, all into the artifacts root (``$CCKL_ARTIFACTS``), which every node must see and
write. Nothing else travels: the cache is the only channel, ``python -m cckl_core runs`` reads
progress from it, and the notebooks render from it.

- Tasks whose run is finished and whose evaluations are all cached are not submitted, so
  launching twice submits nothing the second time.
- ``slurm``: a :class:`Task` (a callable with a ``checkpoint()`` method) per (run, seed) in one
  job array (``--array=0-N%max_parallel``); submitit resubmits a task that is preempted or reaches
  its time limit, and the run cache resumes it from its last checkpoint. It returns after
  submission (``wait=True`` blocks and summarises).
- ``local``: the same scheduler as ``make paper`` (:func:`cckl_core.schedule.run`): several runs
  side by side on the CPU cores or the GPUs here, largest first; it waits for them.
- An optional run whose data set is missing is reported as skipped (Slurm tasks record it under
  ``<artifacts root>/<profile>/.launch/skipped/``, so later launches leave it out while its data
  is still missing).

submitit is needed for ``slurm`` only and imported lazily: ``pip install 'cckl-core[cluster]'``.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import evaluations, runs, schedule, store
from .paths import artifacts_root, data_root
from .profiles import Profile, RunConfig
from .schedule import BLOCKED, COMPLETED, DONE, FAILED, SKIPPED, TO_RUN

EXECUTORS = ("local", "slurm")
#: States of a (run, seed) before launching (see :func:`survey`): the scheduler's, and one of Slurm's own.
SKIPPED_EARLIER = "skipped earlier"
#: Default time limit of a Slurm task: the longest `paper` run (resnet32x10 TRADES, ~5.6 h on one
#: H100) plus its evaluations fits; a task cut by the limit is requeued and resumes.
SLURM_DEFAULT_TIME = "08:00:00"
#: How many times a task may be requeued after reaching its time limit.
MAX_TIMEOUTS = 20
_NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")


class MissingExtraError(ImportError):
    """submitit is not installed; the message names the extra that brings it."""


def _submitit():
    try:
        import submitit
    except ImportError as err:
        raise MissingExtraError(f"launching Slurm jobs needs submitit ({err}); install it with "
                                "`pip install 'cckl-core[cluster]'` (or `pip install 'submitit>=1.5'`)") from None
    return submitit


# --------------------------------------------------------------------------- the Slurm task
@dataclass
class Task:
    """Train and evaluate one (run, seed) of a profile: what one array task runs.

    ``env`` is set in the task's process before anything else (artifacts and data roots as
    absolute paths, ``CCKL_THREADS``). Calling it returns a dict with ``status``
    (``"completed"`` or ``"skipped"``); a failure raises, and submitit records it.
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
        from . import devices, profiles

        threads = devices.configure_threads()  # $CCKL_THREADS, else this task's CPUs (Slurm's allocation)
        print(f"[cckl] {self.profile}/{self.label}: started on {socket.gethostname()} (pid {os.getpid()}), "
              f"device {self.device}, {threads} thread(s), artifacts {artifacts_root()}", flush=True)
        prof = profiles.load(self.profile)
        cfg = prof.run(self.run, self.seed)
        record = skip_record_path(cfg)
        try:
            done = evaluations.evaluate_run(prof, cfg, device=self.device)
        except runs.RunSkipped as skip:
            store.atomic_write_json(record, {"run": self.run, "seed": self.seed, "message": str(skip),
                                             "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            print(f"[cckl] {skip}", flush=True)
            return {"run": self.run, "seed": self.seed, "status": SKIPPED, "message": str(skip)}
        record.unlink(missing_ok=True)
        last = runs.load(cfg).history[-1]
        out = {"run": self.run, "seed": self.seed, "status": COMPLETED, "epochs": last["epoch"],
               "test_acc": last.get("test_acc"), "evaluations": [[n, how, round(sec, 2)] for n, how, sec in done]}
        print(f"[cckl] {self.profile}/{self.label}: done, {last['epoch']} epochs, test acc {last['test_acc']:.4f}",
              flush=True)
        return out

    def checkpoint(self, *args: object, **kwargs: object) -> object:
        """submitit's requeue hook (preemption, time limit): resubmit this same task. The run cache
        holds the state (the last finished epoch's checkpoint, the cached evaluations)."""
        print(f"[cckl] {self.profile}/{self.label}: preempted or at its time limit; requeued, it resumes "
              "from the last finished epoch", flush=True)
        return _submitit().helpers.DelayedSubmission(self, *args, **kwargs)


# --------------------------------------------------------------------------- what is left to do
@dataclass
class TaskState:
    """What the cache holds for one (run, seed) before launching: ``state`` is DONE, TO_RUN,
    SKIPPED_EARLIER or BLOCKED, with a one-line ``detail``."""

    run: str
    seed: int
    state: str
    detail: str = ""


def skip_record_path(cfg: RunConfig) -> Path:
    """Where a Slurm task records that optional run ``cfg`` was skipped for want of its data set."""
    return artifacts_root() / cfg.profile / ".launch" / "skipped" / f"{cfg.folder}.json"


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


def survey(profile: Profile, configs: list[RunConfig]) -> list[TaskState]:
    """The state of every (run, seed) to launch: the scheduler's :func:`~cckl_core.schedule.cache_state`
    (DONE, BLOCKED or TO_RUN), except SKIPPED_EARLIER for an unstarted optional run that a task
    skipped and whose data set is still missing."""
    out = []
    for cfg in configs:
        state, detail, st = schedule.cache_state(profile, cfg)
        record = skip_record_path(cfg)
        if (state == TO_RUN and st.state not in (runs.COMPLETE, runs.NO_WEIGHTS) and record.exists()
                and cfg.optional and _data_missing(cfg.dataset)):
            state, detail = SKIPPED_EARLIER, (f"optional, data set {cfg.dataset!r} still missing (recorded in "
                                              f"{record}; delete it to try again)")
        out.append(TaskState(cfg.name, cfg.seed, state, detail))
    return out


def check_selection(prof: Profile, run_names: list[str] | None, seeds: list[int] | None) -> tuple[list[str], list[int]]:
    """Run names (default: all the profile's) and seeds (default ``None``: each run's own
    :meth:`~cckl_core.profiles.Profile.seeds_of`), checked, in order.
    A name or seed given twice is a mistake, not a wish to run it twice."""
    run_names = list(prof.runs) if run_names is None else list(run_names)
    for what, items in (("run", run_names), ("seed", seeds)):
        if items is None:
            continue
        if not items:
            raise ValueError(f"no {what}s given")
        twice = sorted({str(i) for i in items if items.count(i) > 1})
        if twice:
            raise ValueError(f"{what} {', '.join(twice)} given twice; name each once")
    for n in run_names:
        if n not in prof.runs:
            raise ValueError(f"profile {prof.name!r} has no run {n!r}; its runs: {', '.join(prof.runs)}")
    for s in seeds or []:
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


def parse_list(text: str | None, what: str, kind: type = str) -> list | None:
    """``"a,b,c"`` as a list (``None`` stays None); ``kind=int`` for seeds. An empty list is a mistake."""
    if text is None:
        return None
    items = [t.strip() for t in str(text).split(",")]
    if not any(items) or not all(items):
        raise ValueError(f"{what} {text!r} is empty or has an empty item; give comma-separated values, or leave "
                         f"{what} out for all")
    if kind is int:
        if not all(t.isdigit() for t in items):
            raise ValueError(f"{what} must be whole numbers >= 0 separated by commas, got {text!r}")
        return [int(t) for t in items]
    return items


# --------------------------------------------------------------------------- a Slurm launch
@dataclass
class Submitted:
    task: Task
    job: object  # a submitit Job


@dataclass
class SlurmLaunch:
    """The tasks one Slurm launch submitted, and the survey rows of those it did not."""

    profile: str
    states: list[TaskState]
    submitted: list[Submitted]
    out: Callable[[str], None] = print

    def wait(self, poll_s: float = 60.0) -> None:
        while not all(s.job.done() for s in self.submitted):
            time.sleep(poll_s)

    def outcome(self, sub: Submitted) -> tuple[str, str]:
        """``(status, detail)`` of a finished job, from submitit's result or its error."""
        try:
            value = sub.job.result()
        except Exception as err:  # the task raised: its last line is the reason
            lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
            return FAILED, (lines[-1].strip() if lines else "error") + f" (log: {sub.job.paths.stderr})"
        return value.get("status", COMPLETED), value.get("message", "")

    def summary(self) -> str:
        lines = [f"[cckl] summary of {self.profile}:"]
        done = {(s.task.run, s.task.seed): s for s in self.submitted}
        for st in self.states:
            sub = done.get((st.run, st.seed))
            status, detail = self.outcome(sub) if sub is not None else (st.state, st.detail)
            lines.append(f"  {st.run} seed {st.seed}: {status}" + (f": {detail}" if detail else ""))
        return "\n".join(lines)

    @property
    def failed(self) -> bool:
        return any(self.outcome(s)[0] == FAILED for s in self.submitted)


def launch_slurm(profile: Profile, configs: list[RunConfig], device: str = "auto", partition: str | None = None,
                 gpus_per_job: int = 1, cpus_per_task: int | None = None, max_parallel: int | None = None,
                 time_limit: str | None = None, logs: str | Path | None = None,
                 out: Callable[[str], None] = print) -> SlurmLaunch:
    """Submit one job array with a task per (run, seed) of ``configs`` not yet complete."""
    if not (shutil.which("sbatch") and shutil.which("srun")):
        raise ValueError("--executor slurm needs Slurm's sbatch and srun on PATH: run `launch` on a login node of the "
                         "cluster, or use --executor local on one machine")
    minutes = parse_time(time_limit or SLURM_DEFAULT_TIME)
    root = check_artifacts_root()
    folder = Path(logs).expanduser().absolute() if logs else root / profile.name / ".launch"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the logs folder {folder} ({err.strerror or err}); pass --logs") from None
    out(f"[cckl] artifacts root {root} (writable; every node running a task must see this same folder)")
    if any(str(root) == p or str(root).startswith(p + "/") for p in _NODE_LOCAL):
        out(f"[cckl] warning: {root} looks node-local; Slurm tasks on other nodes will not see it "
            "(set CCKL_ARTIFACTS to a shared filesystem)")
    states = survey(profile, configs)
    for st in states:
        if st.state in (SKIPPED_EARLIER, BLOCKED):
            out(f"[cckl] not submitted, {st.state}: {st.run} seed {st.seed}: {st.detail}")
    todo = [s for s in states if s.state == TO_RUN]
    out(f"[cckl] {profile.name}: {len(states)} tasks (run x seed), {sum(s.state == DONE for s in states)} complete "
        f"with their evaluations, {len(todo)} to run")
    env = {"CCKL_ARTIFACTS": str(root), "CCKL_DATA_ROOT": str(data_root().expanduser().absolute())}
    for var in ("CCKL_CIFAR10_ZIP", "CCKL_THREADS"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    tasks = [Task(profile.name, s.run, s.seed, device, dict(env)) for s in todo]
    handle = SlurmLaunch(profile.name, states, [], out)
    if not tasks:
        out("[cckl] nothing to submit")
        return handle
    ex = _submitit().AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=MAX_TIMEOUTS)
    params = {"name": f"cckl-{profile.name}", "timeout_min": int(math.ceil(minutes)), "nodes": 1,
              "tasks_per_node": 1, "slurm_array_parallelism": max_parallel or len(tasks)}
    gpus = gpus_per_job if device != "cpu" else 0
    if gpus:
        params["gpus_per_node"] = gpus
    if cpus_per_task is not None:
        params["cpus_per_task"] = cpus_per_task
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    jobs = ex.submit_array(tasks)
    handle.submitted = [Submitted(t, j) for t, j in zip(tasks, jobs)]
    array_id = str(jobs[0].job_id).split("_")[0]
    out(f"[cckl] slurm: submitted job array {array_id}: {len(jobs)} task(s), at most "
        f"{params['slurm_array_parallelism']} at a time, {gpus} GPU(s) each, time limit {params['timeout_min']} min"
        f"{', partition ' + partition if partition else ''}")
    for sub in handle.submitted:
        out(f"[cckl]   job {sub.job.job_id}: {sub.task.label}")
    out(f"[cckl] watch the queue: squeue -j {array_id}; cancel: scancel {array_id}; logs: {folder}")
    out(f"[cckl] progress: python -m cckl_core runs --profile {profile.name}")
    return handle


# --------------------------------------------------------------------------- command line
def run_cli(profile: Profile, args: argparse.Namespace) -> int:
    """``python -m cckl_core launch``: 0 when no task failed, 1 otherwise."""
    for flag, value in (("--gpus-per-job", args.gpus_per_job), ("--max-parallel", args.max_parallel),
                        ("--cpus-per-task", args.cpus_per_task)):
        if value is not None and value < (0 if flag == "--gpus-per-job" else 1):
            raise ValueError(f"{flag} must be >= {0 if flag == '--gpus-per-job' else 1}, got {value}")
    names, seeds = check_selection(profile, parse_list(args.runs, "--runs"), parse_list(args.seeds, "--seeds", int))
    configs = profile.configs(names, seeds)
    if args.executor == "local":
        if args.time is not None:
            parse_time(args.time)
            print("[cckl] --time applies to Slurm tasks; a local launch runs until its runs are done", flush=True)
        check_artifacts_root()  # one line now, not one failed worker per run
        outcomes = schedule.run(profile, configs, device=args.device, jobs=args.max_parallel,
                                plan_first=not getattr(args, "no_plan", False))
        print(f"[cckl] summary of {profile.name}: {schedule.summary(outcomes)}", flush=True)
        return 1 if any(o.status == schedule.FAILED for o in outcomes) else 0
    handle = launch_slurm(profile, configs, device=args.device, partition=args.partition,
                          gpus_per_job=args.gpus_per_job, cpus_per_task=args.cpus_per_task,
                          max_parallel=args.max_parallel, time_limit=args.time, logs=args.logs)
    if args.wait and handle.submitted:
        handle.wait()
        print(handle.summary(), flush=True)
        return 1 if handle.failed else 0
    sys.stdout.flush()
    return 0
