"""Scale out: every (run, seed) of a profile as one task of a Slurm job array, or side by side here.

    python -m cckl_core launch --profile paper --executor slurm --partition gpu --max-parallel 10
    python -m cckl_core launch --profile quick --executor slurm --partition cpu --device cpu --cpus-per-task 2
    python -m cckl_core launch --profile paper --executor local     # the local scheduler (cckl_core.schedule)

Each task trains its run (resuming from the run's last finished epoch) and computes its cached
evaluations, all into the artifacts root (``$CCKL_ARTIFACTS``), which every node must see and
write. Nothing else travels: the cache is the only channel, ``python -m cckl_core runs`` reads
progress from it, and the notebooks render from it.

- Tasks whose run is finished and whose evaluations are all cached are not submitted, so
  launching twice submits nothing the second time; nor is a (run, seed) that an earlier launch
  queued and that is still pending or running (``<artifacts root>/<profile>/.launch/queued/``
  records the task of each, and ``squeue`` says whether it is still there).
- ``slurm``: a :class:`Task` (a callable with a ``checkpoint()`` method) per (run, seed) in one
  job array (``--array=0-N%max_parallel``); submitit resubmits a task that is preempted or reaches
  its time limit, and the run cache resumes it from its last checkpoint. It returns after
  submission (``wait=True`` blocks and summarises, from ``squeue`` and the tasks' result files:
  it needs no accounting, ``sacct``).
- What a task asks of Slurm: GPUs only when it will use one (``--device cuda``, or ``auto`` on a
  partition whose nodes have GPUs, as ``sinfo`` reports them), never with ``--device cpu``;
  ``--cpus-per-task`` when given, and a task's torch threads are the CPUs Slurm allocated it
  (:func:`cckl_core.devices.slurm_task_cpus`); a time limit that leaves a task time to work before
  submitit's requeue signal (:func:`check_time_limit`). A refused submission is one line and leaves
  no files behind.
- ``local``: the same scheduler as ``make paper`` (:func:`cckl_core.schedule.run`): several runs
  side by side on the CPU cores or the GPUs here, largest first; it waits for them.
- An optional run whose data set is missing is reported as skipped (Slurm tasks record it under
  ``<artifacts root>/<profile>/.launch/skipped/``, so later launches leave it out while its data
  is still missing).

submitit is needed for ``slurm`` only and imported lazily: ``pip install 'cckl-core[cluster]'``.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import data, evaluations, runs, schedule, store
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
#: Seconds before its time limit at which Slurm signals a task (``--signal=USR2@90``, submitit's default,
#: passed explicitly): submitit then requeues the task, which resumes from the run's last finished epoch.
SIGNAL_DELAY_S = 90
#: Slurm checks time limits periodically, and may send that signal up to a minute early.
SLURM_SIGNAL_EARLY_S = 60
#: A task must have at least this long between its start and the earliest signal, or it is requeued
#: before it can do anything (twenty times, and then given up).
MIN_WORK_S = 60
#: ``squeue`` states of a task still pending, running or on its way back to the queue.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                           "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT",
                           "STOPPED", "PREEMPTED"})
#: A survey state: an earlier launch's task for this (run, seed) is still pending or running.
QUEUED = "queued"
_NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")


class MissingExtraError(ImportError):
    """submitit is not installed; the message names the extra that brings it."""


class SlurmError(ValueError):
    """Slurm refused a submission or could not be asked (one line: what it said, and that nothing was left)."""


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
    absolute paths). In a Slurm job its torch threads are the CPUs Slurm allocated it (whatever
    ``CCKL_THREADS`` the launching shell had). Calling it returns a dict with ``status``
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

        allocated = devices.slurm_task_cpus()
        if allocated:  # the allocation, not the node's cores nor the login shell's CCKL_THREADS
            os.environ["CCKL_THREADS"] = str(allocated)
            threads = devices.configure_threads(allocated)
            source = f"Slurm allocated {allocated} CPU(s)"
        else:
            threads = devices.configure_threads()  # $CCKL_THREADS, else the CPUs this process may use
            source = "not in a Slurm job"
        print(f"[cckl] {self.profile}/{self.label}: started on {socket.gethostname()} (pid {os.getpid()}), "
              f"device {self.device}, {threads} thread(s) ({source}), artifacts {artifacts_root()}", flush=True)
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


def survey(profile: Profile, configs: list[RunConfig]) -> list[TaskState]:
    """The state of every (run, seed) to launch: the scheduler's :func:`~cckl_core.schedule.cache_state`
    (DONE, BLOCKED or TO_RUN), except SKIPPED_EARLIER for an unstarted optional run that a task
    skipped and whose data set is still missing."""
    out = []
    for cfg in configs:
        state, detail, st = schedule.cache_state(profile, cfg)
        record = skip_record_path(cfg)
        if (state == TO_RUN and st.state not in (runs.COMPLETE, runs.NO_WEIGHTS) and record.exists()
                and cfg.optional and not data.available(cfg.dataset)):
            state, detail = SKIPPED_EARLIER, (f"optional, data set {cfg.dataset!r} still missing (recorded in "
                                              f"{record}; delete it to try again)")
        out.append(TaskState(cfg.name, cfg.seed, state, detail))
    return out


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


def check_time_limit(text: str) -> int:
    """The whole minutes of Slurm time limit ``text`` (Slurm counts minutes; a part is rounded up), refused
    when a task could not work before submitit's requeue signal: Slurm signals :data:`SIGNAL_DELAY_S`
    before the limit, up to :data:`SLURM_SIGNAL_EARLY_S` early, and a task needs :data:`MIN_WORK_S` first."""
    minutes = int(math.ceil(parse_time(text) - 1e-9))
    need = SIGNAL_DELAY_S + SLURM_SIGNAL_EARLY_S + MIN_WORK_S
    if minutes * 60 < need:
        least = int(math.ceil(need / 60))
        raise ValueError(f"--time {text} is too short for a Slurm task: submitit asks Slurm to signal a task "
                         f"{SIGNAL_DELAY_S} s before its time limit so that it can be requeued (Slurm may send it up to "
                         f"{SLURM_SIGNAL_EARLY_S} s early), which leaves it {max(0, minutes * 60 - need + MIN_WORK_S)} s "
                         f"to work before each requeue; give --time 00:{least:02d}:00 or more")
    return minutes


# --------------------------------------------------------------------------- asking Slurm
def _slurm(cmd: list[str], what: str) -> str:
    """Run a Slurm client command; its output, or a :class:`SlurmError` with what it said."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmError(f"could not {what} ({' '.join(cmd[:1])}: {err})") from None
    if res.returncode != 0:
        said = " ".join(line.strip() for line in (res.stderr or res.stdout).strip().splitlines()) or f"exit {res.returncode}"
        raise SlurmError(f"could not {what} ({cmd[0]}: {said})")
    return res.stdout


def partition_gpus(partition: str | None) -> tuple[str | None, bool | None]:
    """``(partition, has_gpus)``: the partition a task goes to (the given one, else the cluster's default)
    and whether its nodes have GPUs (a ``gpu`` generic resource in ``sinfo``); ``None`` where Slurm
    cannot tell (no default partition). A partition Slurm does not have is a :class:`SlurmError`."""
    lines = [ln.split("|", 1) for ln in _slurm(["sinfo", "-h", "-o", "%P|%G"], "list the partitions (sinfo)").splitlines()
             if "|" in ln]
    gres: dict[str, list[str]] = {}
    default = None
    for name, g in lines:
        name = name.strip()
        if name.endswith("*"):
            name = name[:-1]
            default = name
        gres.setdefault(name, []).append(g.strip())
    target = partition or default
    if target is None:
        return None, None
    if target not in gres:
        raise SlurmError(f"Slurm has no partition {target!r}; its partitions: {', '.join(gres) or 'none'} (sinfo)")
    return target, any(re.search(r"(^|,)gpu(:|$|\()", g) for g in gres[target])


def slurm_request(device: str, partition: str | None, gpus_per_job: int | None,
                  out: Callable[[str], None] = print) -> tuple[int, str]:
    """``(GPUs per task, the task's device)`` for ``--device``: ``cpu`` asks for no GPU; ``cuda`` (or
    ``cuda:N``) asks for ``gpus_per_job`` (default 1) and needs a partition with GPUs; ``auto`` follows the
    partition: GPUs (and ``cuda`` in the task) where its nodes have them, else none (and ``cpu``).
    ``$CCKL_DEVICE`` stands in for ``auto`` as everywhere else."""
    if device in (None, "auto") and os.environ.get("CCKL_DEVICE", "").strip():
        device = os.environ["CCKL_DEVICE"].strip()
    device = device or "auto"
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if gpus_per_job is not None and gpus_per_job < 0:
        raise ValueError(f"--gpus-per-job must be >= 0, got {gpus_per_job}")
    if device == "cpu":
        if gpus_per_job:
            raise ValueError(f"--gpus-per-job {gpus_per_job} asks Slurm for GPUs, but --device cpu trains on the CPU; "
                             "leave --gpus-per-job out (or use --device cuda)")
        return 0, "cpu"
    if device.startswith("cuda") and gpus_per_job == 0:
        raise ValueError(f"--device {device} needs a GPU per task, but --gpus-per-job 0 asks for none")
    name, has_gpus = partition_gpus(partition)
    where = f"partition {name}" if name else "the cluster's default partition"
    if device == "auto":
        if has_gpus is None:
            raise ValueError(f"--device auto follows the partition, but Slurm names no default partition; pass "
                             "--partition, or --device cpu / --device cuda")
        if not has_gpus:
            if gpus_per_job:
                raise ValueError(f"--gpus-per-job {gpus_per_job}: {where} has no GPUs (sinfo lists no gpu resource "
                                 "on its nodes); use a GPU partition, or leave --gpus-per-job out to train on the CPU")
            out(f"[cckl] {where} has no GPUs: --device auto trains on the CPU and asks Slurm for no GPU")
            return 0, "cpu"
        device = "cuda"
        out(f"[cckl] {where} has GPUs: --device auto trains on a GPU ({gpus_per_job or 1} per task)")
    elif has_gpus is False:
        raise ValueError(f"--device {device}: {where} has no GPUs (sinfo lists no gpu resource on its nodes); use a "
                         "GPU partition (--partition), or --device cpu")
    return (gpus_per_job if gpus_per_job is not None else 1), device


def queue_states(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """``{task id: (state, reason, job name)}`` of the given Slurm tasks (``4242_3``) that ``squeue``
    still knows (pending, running, and for ``MinJobAge`` after they end, their final state). Needs the
    controller only, not accounting."""
    arrays = sorted({str(j).split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%j", "-j", ",".join(arrays)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmError(f"could not read the queue (squeue: {err})") from None
    if res.returncode != 0:
        if "invalid job id" in res.stderr.lower():  # one job asked for, and Slurm has forgotten it
            return {}
        said = " ".join(ln.strip() for ln in res.stderr.strip().splitlines()) or f"exit {res.returncode}"
        raise SlurmError(f"could not read the queue (squeue: {said})")
    states = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            states[parts[0]] = (parts[1].strip().upper(), parts[2].strip(), parts[3].strip())
    return states


def queued_record_path(cfg: RunConfig) -> Path:
    """Where a Slurm launch records the task it submitted for ``cfg`` (its job id), so that another launch
    does not submit it again while it is pending or running."""
    return artifacts_root() / cfg.profile / ".launch" / "queued" / f"{cfg.folder}.json"


def mark_queued(profile: Profile, states: list[TaskState]) -> list[TaskState]:
    """``states`` with :data:`QUEUED` for each (run, seed) to run whose task, recorded by an earlier launch,
    ``squeue`` still shows pending or running (under its job name)."""
    records = {}
    for st in states:
        if st.state != TO_RUN:
            continue
        try:
            rec = store.read_json(queued_record_path(profile.run(st.run, st.seed)))
            records[(st.run, st.seed)] = (str(rec["job"]), str(rec.get("name", "")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not records:
        return states
    queue = queue_states([job for job, _ in records.values()])
    out = []
    for st in states:
        job, name = records.get((st.run, st.seed), (None, None))
        q = queue.get(job) if job else None
        if q and q[0] in ACTIVE_STATES and (not name or q[2] == name):
            st = TaskState(st.run, st.seed, QUEUED, f"already in Slurm's queue as job {job} ({q[0].lower()})")
        out.append(st)
    return out


# --------------------------------------------------------------------------- a Slurm launch
@dataclass
class Submitted:
    task: Task
    job: object  # a submitit Job

    @property
    def has_result(self) -> bool:
        """Whether the task wrote its result file (submitit's, on success or on a raised error)."""
        try:
            return self.job.paths.result_pickle.exists()
        except OSError:
            return False


@dataclass
class SlurmLaunch:
    """The tasks one Slurm launch submitted, and the survey rows of those it did not."""

    profile: str
    states: list[TaskState]
    submitted: list[Submitted]
    out: Callable[[str], None] = print
    #: task id -> (state, reason) of a task that left the queue without a result file (cancelled, killed, ...)
    ended: dict = field(default_factory=dict)

    def unfinished(self) -> list[Submitted]:
        """The submitted tasks still pending or running: neither a result file nor, in ``squeue``, a final
        state (or gone from it). One ``squeue`` call; no accounting (``sacct``) needed."""
        left = [s for s in self.submitted if s.job.job_id not in self.ended and not s.has_result]
        if not left:
            return []
        queue = queue_states([s.job.job_id for s in left])
        still = []
        for s in left:
            q = queue.get(s.job.job_id)
            if q and q[0] in ACTIVE_STATES:
                still.append(s)
            elif not s.has_result:  # ended (or forgotten by Slurm) without a result
                self.ended[s.job.job_id] = (q[0], q[1]) if q else ("GONE", "")
        return still

    def wait(self, poll_s: float = 30.0) -> None:
        """Until every submitted task has ended: looks at the result files and ``squeue`` after 2, 4, 8 ...
        seconds, then every ``poll_s``. A failing ``squeue`` is reported and tried again."""
        delay, complained = 2.0, False
        while True:
            try:
                if not self.unfinished():
                    return
                complained = False
            except SlurmError as err:
                if not complained:
                    self.out(f"[cckl] warning: {err}; trying again")
                    complained = True
            time.sleep(delay)
            delay = min(2 * delay, poll_s)

    def outcome(self, sub: Submitted) -> tuple[str, str]:
        """``(status, detail)`` of a finished task, from submitit's result or its error, or from the state
        it left Slurm's queue in."""
        if not sub.has_result and self.ended.get(sub.job.job_id, ("",))[0] == "COMPLETED":
            deadline = time.time() + 15  # a shared filesystem may show the result file late
            while time.time() < deadline and not sub.has_result:
                time.sleep(1)
        if not sub.has_result:
            state, reason = self.ended.get(sub.job.job_id, ("GONE", ""))
            how = ("no longer in Slurm's queue" if state == "GONE"
                   else state.lower() + (f", {reason}" if reason and reason != "None" else ""))
            return FAILED, (f"ended without a result ({how}): cancelled, killed or out of time; launch again to "
                            f"resume it (log: {sub.job.paths.stderr})")
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


def _sbatch_said(err: BaseException, captured: str) -> str:
    """Slurm's own words from a failed submission (its ``error:`` lines), on one line."""
    text = f"{err}\n{captured}"
    said = []
    for line in text.splitlines():
        line = line.strip()
        if "error:" in line:
            msg = line.split("error:", 1)[1].strip()
            if msg and msg not in said:
                said.append(msg)
    if not said:
        said = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()][-1:] or [type(err).__name__]
    return "; ".join(said)


def launch_slurm(profile: Profile, configs: list[RunConfig], device: str = "auto", partition: str | None = None,
                 gpus_per_job: int | None = None, cpus_per_task: int | None = None, max_parallel: int | None = None,
                 time_limit: str | None = None, logs: str | Path | None = None,
                 out: Callable[[str], None] = print) -> SlurmLaunch:
    """Submit one job array with a task per (run, seed) of ``configs`` not yet complete nor already queued."""
    minutes = check_time_limit(time_limit or SLURM_DEFAULT_TIME)
    if not (shutil.which("sbatch") and shutil.which("srun")):
        raise ValueError("--executor slurm needs Slurm's sbatch and srun on PATH: run `launch` on a login node of the "
                         "cluster, or use --executor local on one machine")
    gpus, task_device = slurm_request(device, partition, gpus_per_job, out)
    root = check_artifacts_root()
    launch_dir = root / profile.name / ".launch"
    folder = Path(logs).expanduser().absolute() if logs else launch_dir
    made = sorted({d for top in (launch_dir, folder) for d in (top, *top.parents) if not d.exists()},
                  key=lambda d: len(d.parts), reverse=True)  # what this launch creates, deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        launch_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the logs folder {folder} ({err.strerror or err}); pass --logs") from None
    out(f"[cckl] artifacts root {root} (writable; every node running a task must see this same folder)")
    if any(str(root) == p or str(root).startswith(p + "/") for p in _NODE_LOCAL):
        out(f"[cckl] warning: {root} looks node-local; Slurm tasks on other nodes will not see it "
            "(set CCKL_ARTIFACTS to a shared filesystem)")
    try:
        # one launch at a time surveys and submits: two launches at once must not queue the same work twice
        with store.locked(launch_dir):
            handle = _survey_and_submit(profile, configs, root, folder, task_device, gpus, cpus_per_task,
                                        max_parallel, minutes, partition, out)
    except SlurmError:
        for p in made:  # nothing left behind by a refused submission
            with contextlib.suppress(OSError):
                (p / ".lock").unlink(missing_ok=True)
                p.rmdir()
        raise
    return handle


def _survey_and_submit(profile: Profile, configs: list[RunConfig], root: Path, folder: Path, device: str, gpus: int,
                       cpus_per_task: int | None, max_parallel: int | None, minutes: int, partition: str | None,
                       out: Callable[[str], None]) -> SlurmLaunch:
    by_key = {(c.name, c.seed): c for c in configs}
    states = mark_queued(profile, survey(profile, configs))
    for st in states:
        if st.state in (SKIPPED_EARLIER, BLOCKED, QUEUED):
            out(f"[cckl] not submitted, {st.state}: {st.run} seed {st.seed}: {st.detail}")
    todo = [s for s in states if s.state == TO_RUN]
    queued = sum(s.state == QUEUED for s in states)
    out(f"[cckl] {profile.name}: {len(states)} tasks (run x seed), {sum(s.state == DONE for s in states)} complete "
        f"with their evaluations, " + (f"{queued} already queued, " if queued else "") + f"{len(todo)} to run")
    env = {"CCKL_ARTIFACTS": str(root), "CCKL_DATA_ROOT": str(data_root().expanduser().absolute())}
    if os.environ.get("CCKL_CIFAR10_ZIP"):
        env["CCKL_CIFAR10_ZIP"] = os.environ["CCKL_CIFAR10_ZIP"]
    tasks = [Task(profile.name, s.run, s.seed, device, dict(env)) for s in todo]
    handle = SlurmLaunch(profile.name, states, [], out)
    if not tasks:
        out("[cckl] nothing to submit")
        return handle
    ex = _submitit().AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=MAX_TIMEOUTS)
    name = f"cckl-{profile.name}"
    params = {"name": name, "timeout_min": minutes, "nodes": 1, "tasks_per_node": 1,
              "slurm_array_parallelism": max_parallel or len(tasks), "slurm_signal_delay_s": SIGNAL_DELAY_S}
    if gpus:
        params["gpus_per_node"] = gpus
    if cpus_per_task is not None:
        params["cpus_per_task"] = cpus_per_task
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    before = {p.name for p in folder.iterdir()}
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):  # submitit prints sbatch's stderr; it goes in our one line
            jobs = ex.submit_array(tasks)
    except Exception as err:
        for p in folder.iterdir():  # the pickled tasks and the sbatch script of this try
            if p.name not in before and (p.suffix == ".pkl" or p.name.startswith(".submission_file_")):
                with contextlib.suppress(OSError):
                    p.unlink()
        raise SlurmError(f"Slurm refused the submission of {len(tasks)} task(s) ({_sbatch_said(err, captured.getvalue())}); "
                         "nothing was submitted") from None
    handle.submitted = [Submitted(t, j) for t, j in zip(tasks, jobs)]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for sub in handle.submitted:
        store.atomic_write_json(queued_record_path(by_key[(sub.task.run, sub.task.seed)]),
                                {"job": str(sub.job.job_id), "name": name, "run": sub.task.run, "seed": sub.task.seed,
                                 "logs": str(folder), "host": socket.gethostname(), "time": stamp})
    array_id = str(jobs[0].job_id).split("_")[0]
    cpus = f"{cpus_per_task} CPU(s)" if cpus_per_task else "the cluster's default CPUs"
    out(f"[cckl] slurm: submitted job array {array_id}: {len(jobs)} task(s), at most "
        f"{params['slurm_array_parallelism']} at a time, each on {device} with {gpus} GPU(s) and {cpus} (its torch "
        f"threads), time limit {minutes} min{', partition ' + partition if partition else ''}")
    for sub in handle.submitted:
        out(f"[cckl]   job {sub.job.job_id}: {sub.task.label}")
    out(f"[cckl] watch the queue: squeue -j {array_id}; cancel: scancel {array_id}; logs: {folder}")
    out(f"[cckl] progress: python -m cckl_core runs --profile {profile.name}")
    return handle


# --------------------------------------------------------------------------- a local launch
def launch_local(profile: Profile, configs: list[RunConfig], device: str = "auto", max_parallel: int | None = None,
                 plan_first: bool = True) -> list[schedule.Outcome]:
    """Train and evaluate ``configs`` side by side here with the local scheduler (:func:`cckl_core.schedule.run`,
    what ``make paper`` runs), once the artifacts root is proven writable (one line now, not one failed worker
    per run); it waits for them."""
    check_artifacts_root()
    return schedule.run(profile, configs, device=device, jobs=max_parallel, plan_first=plan_first)
