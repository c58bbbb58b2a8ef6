"""The one local scheduler: train and evaluate a profile's runs side by side on this machine.

``python -m cckl_core evaluate --profile P`` (what ``make paper`` and ``launch --executor local``
run) hands every (run, seed) whose results are not all in the cache to :func:`run`:

- each job is one worker process, ``python -m cckl_core evaluate --profile P --run R --seed S
  --worker``, which trains the run (resuming from its last finished epoch) and computes its cached
  evaluations; its output lines are passed on whole, so parallel jobs never interleave mid-line;
- on a CPU, :func:`cpu_slots` jobs run at once with ``cores // jobs`` torch threads each (one
  one-thread job per core by default: small convolutional models use two cores poorly);
- on a GPU, as many jobs share each card as fit in its memory (:func:`fits`), by the peak memory
  ``plan`` measured for each run's training step, at most one per CPU core;
- the largest job (by the ``plan`` estimate, else by counted FLOPs) starts first, and a freed slot
  takes the largest job that fits, so the jobs finish close together;
- completion is read from the run cache alone (the run folder and its evaluations), never from
  stamps; Ctrl-C stops every job (finished epochs and evaluations are kept) and the same command
  resumes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import data, evaluations, runs
from .profiles import Profile, RunConfig

if TYPE_CHECKING:
    import torch

COMPLETED, SKIPPED, FAILED, INTERRUPTED = "completed", "skipped", "failed", "interrupted"
#: What the cache holds for a (run, seed) before anything runs (see :func:`cache_state`).
DONE, TO_RUN, BLOCKED = "complete", "to run", "blocked"
#: Share of a GPU's memory the scheduler fills with side-by-side jobs (the rest: CUDA contexts, fragmentation).
GPU_MEMORY_SHARE = 0.85
#: Memory of one CUDA context and allocator slack per job, added to each job's measured peak.
GPU_JOB_OVERHEAD = 1.5 * 2 ** 30
#: The evaluations attack up to 250 images at a time, about twice a training batch of 128: a job is
#: packed by twice the peak its training step took.
EVALUATION_PEAK_FACTOR = 2.0


@dataclass
class Job:
    """One (run, seed) to train and evaluate: its estimated seconds (or a size to order by) and,
    on a GPU, the device memory its training step needs."""

    cfg: RunConfig
    size: float
    memory: float = 0.0
    seconds: float | None = None  # the plan's estimate, when there is one


@dataclass
class Slot:
    """Where jobs run: a device string (``cpu``, ``cuda:0``), how many at once, memory to share."""

    device: str
    capacity: int
    memory: float = float("inf")
    running: list[Job] = field(default_factory=list)

    def free_memory(self) -> float:
        return self.memory - sum(j.memory for j in self.running)


@dataclass
class Outcome:
    cfg: RunConfig
    status: str
    detail: str = ""
    seconds: float = 0.0


# --------------------------------------------------------------------------- what to run, and where
def cache_state(profile: Profile, cfg: RunConfig, sample_seed: int = 0) -> tuple[str, str, runs.State]:
    """What the cache holds for (run, seed) ``cfg``: :data:`DONE` (complete, weights kept or removed,
    every evaluation it needs cached), :data:`BLOCKED` (evaluations missing but the weights removed:
    it needs the user) or :data:`TO_RUN`; a one-line detail; and the run folder's state."""
    st = runs.inspect(runs.path_of(cfg), cfg)
    if st.state not in (runs.COMPLETE, runs.NO_WEIGHTS):
        return TO_RUN, st.state + (f", {st.detail}" if st.detail else ""), st
    lacking = evaluations.missing(profile, runs.load(cfg), sample_seed)
    if not lacking:
        return DONE, f"{cfg.epochs} epochs, evaluations cached", st
    if st.state == runs.NO_WEIGHTS:
        return BLOCKED, (f"evaluations {', '.join(lacking)} missing and the weights were removed from "
                         f"{runs.path_of(cfg)}: copy model.safetensors back, or delete the folder to retrain"), st
    return TO_RUN, f"trained; evaluations {', '.join(lacking)} missing", st


def pending(profile: Profile, configs: list[RunConfig], sample_seed: int = 0) -> tuple[list[RunConfig], list[str]]:
    """The configs whose run or evaluations are missing from the cache, and why the others are not run
    (complete; blocked, :func:`cache_state`; or optional with their data set missing here)."""
    todo, notes = [], []
    for cfg in configs:
        state, detail, st = cache_state(profile, cfg, sample_seed)
        if cfg.optional and st.state == runs.NOT_STARTED and not data.available(cfg.dataset):
            notes.append(f"{cfg.label}: optional, skipped: its data set {cfg.dataset} cannot be had here")
        elif state == BLOCKED:
            notes.append(f"{cfg.label}: {detail}")
        elif state == TO_RUN:
            todo.append(cfg)
    return todo, notes


def cpu_slots(n_jobs: int, jobs: int | None = None) -> tuple[list[Slot], int]:
    """One CPU slot holding ``jobs`` side by side (default :func:`devices.cpu_job_layout`), and the threads each."""
    from .devices import cpu_job_layout

    k, threads = cpu_job_layout(n_jobs, jobs)
    return [Slot("cpu", k)], threads


def gpu_slots(jobs: int | None = None) -> tuple[list[Slot], int]:
    """One slot per visible GPU, with its memory to share and at most one job per CPU core
    (``jobs`` caps the jobs per GPU); the torch threads of each job."""
    import torch

    from .devices import available_cpus, threads_per_job

    n = torch.cuda.device_count()
    per_gpu = jobs or max(1, available_cpus() // max(n, 1))
    slots = [Slot(f"cuda:{i}", per_gpu, GPU_MEMORY_SHARE * torch.cuda.get_device_properties(i).total_memory)
             for i in range(n)]
    return slots, threads_per_job(per_gpu * n)


def fits(job: Job, slot: Slot) -> bool:
    """Whether ``job`` can start in ``slot`` now: a free place, and its memory within what is left
    (a job alone on an empty slot always starts, so a large run cannot wait forever)."""
    if len(slot.running) >= slot.capacity:
        return False
    return not slot.running or job.memory <= slot.free_memory()


def next_job(queue: list[Job], slots: list[Slot]) -> tuple[Job, Slot] | None:
    """The largest queued job that fits a slot now, and that slot (the emptiest one), or None."""
    for job in sorted(queue, key=lambda j: -j.size):
        for slot in sorted(slots, key=lambda s: (len(s.running), -s.free_memory())):
            if fits(job, slot):
                return job, slot
    return None


def makespan(jobs: list[Job], slots: list[Slot]) -> float:
    """The wall seconds of running ``jobs`` (their ``seconds``) with :func:`next_job`'s rule, simulated."""
    queue = list(jobs)
    clock, ends = 0.0, []  # (end time, job, slot)
    slots = [Slot(s.device, s.capacity, s.memory) for s in slots]
    while queue or ends:
        choice = next_job(queue, slots)
        if choice is not None:
            job, slot = choice
            queue.remove(job)
            slot.running.append(job)
            ends.append((clock + (job.seconds or 0.0), job, slot))
            continue
        ends.sort(key=lambda e: e[0])
        clock, job, slot = ends.pop(0)
        slot.running.remove(job)
    return clock


# --------------------------------------------------------------------------- running
def _worker_command(cfg: RunConfig, device: str, sample_seed: int) -> list[str]:
    return [sys.executable, "-m", "cckl_core", "evaluate", "--profile", cfg.profile, "--run", cfg.name,
            "--seed", str(cfg.seed), "--device", device, "--sample-seed", str(sample_seed), "--worker"]


def _reset_sigint() -> None:  # pragma: no cover - runs in the child between fork and exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Running:
    """A worker process and the thread that passes its output on, line by line."""

    def __init__(self, job: Job, slot: Slot, threads: int, sample_seed: int, out: Callable[[str], None],
                 lock: threading.Lock):
        env = {**os.environ, "CCKL_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        self.job, self.slot, self.started = job, slot, time.perf_counter()
        self.last = ""
        # a launcher started in the background has SIGINT ignored, which children would inherit: reset it
        self.proc = subprocess.Popen(_worker_command(job.cfg, slot.device, sample_seed), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                                     preexec_fn=_reset_sigint)
        self.thread = threading.Thread(target=self._relay, args=(out, lock), daemon=True)
        self.thread.start()

    def _relay(self, out, lock) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                self.last = line
                with lock:
                    out(line)


def run(profile: Profile, configs: list[RunConfig], device: str = "auto", jobs: int | None = None,
        sample_seed: int = 0, out: Callable[[str], None] = print, plan_first: bool = True,
        poll_s: float = 0.2) -> list[Outcome]:
    """Train and evaluate every config of ``configs`` whose results the cache lacks, side by side
    (see the module docstring). Prints the plan, each job's lines, and a summary; returns one
    :class:`Outcome` per config that had to run."""
    from .devices import resolve_device

    dev = resolve_device(device)
    todo, notes = pending(profile, configs, sample_seed)
    for note in notes:
        out(f"[cckl] not run: {note}")
    if not todo:
        out(f"[cckl] {profile.name}: every run and evaluation asked for is in the cache")
        return []
    slots, threads = gpu_slots(jobs) if dev.type == "cuda" else cpu_slots(len(todo), jobs)
    job_list = plan_jobs(profile, todo, dev, threads, plan_first, out)
    _announce(profile, job_list, slots, threads, out)
    return _drive(job_list, slots, threads, sample_seed, out, poll_s)


def plan_jobs(profile: Profile, todo: list[RunConfig], dev: "torch.device", threads: int, timed: bool,
              out: Callable[[str], None]) -> list[Job]:
    """A :class:`Job` per config: sized by ``plan``'s timing on this device (``timed``; at the
    threads each job will have), else by counted FLOPs; with the GPU memory the plan measured."""
    from . import plan

    jobs = []
    for cfg in todo:
        if timed:
            import torch
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                costs = plan.unit_costs(cfg, dev, budget=0.25)  # enough to order runs and estimate the total
            finally:
                torch.set_num_threads(before)
            est = plan.estimate(profile, cfg, costs)
            memory = EVALUATION_PEAK_FACTOR * costs["peak_bytes"] + GPU_JOB_OVERHEAD if "peak_bytes" in costs else 0.0
            jobs.append(Job(cfg, est["total"], memory, est["total"]))
        else:
            jobs.append(Job(cfg, plan.estimate(profile, cfg, plan.flop_costs(cfg))["total"]))
    return jobs


def _announce(profile: Profile, jobs: list[Job], slots: list[Slot], threads: int, out) -> None:
    from .plan import fmt_seconds

    where = ", ".join(f"{s.device} ({s.capacity} at a time" + (f", {s.memory / 2 ** 30:.0f} GiB" if s.memory < float("inf")
                                                               else "") + ")" for s in slots)
    out(f"[cckl] {profile.name}: {len(jobs)} run(s) to train and evaluate on {where}, {threads} torch thread(s) each")
    for job in sorted(jobs, key=lambda j: -j.size):
        est = f"about {fmt_seconds(job.seconds)}" if job.seconds is not None else "(not timed)"
        mem = f", {job.memory / 2 ** 30:.1f} GiB" if job.memory else ""
        epochs = f"{job.cfg.epochs} epoch{'' if job.cfg.epochs == 1 else 's'}"
        out(f"[cckl]   {job.cfg.label:44s} {job.cfg.model} {job.cfg.objective}, {epochs}: {est}{mem}")
    if all(j.seconds is not None for j in jobs):
        out(f"[cckl] estimated wall time here: {fmt_seconds(makespan(jobs, slots))} "
            "(timed steps of each run; data loading and start-up not included)")


def _drive(jobs: list[Job], slots: list[Slot], threads: int, sample_seed: int, out, poll_s: float) -> list[Outcome]:
    queue, running, outcomes = list(jobs), [], []
    lock = threading.Lock()
    try:
        while queue or running:
            while (choice := next_job(queue, slots)) is not None:
                job, slot = choice
                queue.remove(job)
                slot.running.append(job)
                running.append(_Running(job, slot, threads, sample_seed, out, lock))
            for r in [r for r in running if r.proc.poll() is not None]:
                r.thread.join(timeout=5)
                running.remove(r)
                r.slot.running.remove(r.job)
                outcomes.append(_outcome(r))
                with lock:
                    o = outcomes[-1]
                    out(f"[cckl] {o.status}: {o.cfg.label} after {o.seconds / 60:.1f} min" + (f": {o.detail}" if o.detail else ""))
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for r in running:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGINT)
        for r in running:
            try:
                r.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                r.proc.kill()
            outcomes.append(Outcome(r.job.cfg, INTERRUPTED, "finished epochs and evaluations are kept"))
        raise
    return outcomes


def _outcome(r: _Running) -> Outcome:
    """What a finished worker left in the cache (the cache, not the exit code, says whether it is done)."""
    cfg, seconds = r.job.cfg, time.perf_counter() - r.started
    st = runs.inspect(runs.path_of(cfg), cfg)
    if st.state in (runs.COMPLETE, runs.NO_WEIGHTS) and r.proc.returncode == 0:
        return Outcome(cfg, COMPLETED, "", seconds)
    if cfg.optional and r.proc.returncode == 0 and st.state == runs.NOT_STARTED:
        return Outcome(cfg, SKIPPED, r.last.removeprefix("[cckl] "), seconds)
    return Outcome(cfg, FAILED, f"exit {r.proc.returncode}: {r.last.removeprefix('error: ')}", seconds)


def summary(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to run"
