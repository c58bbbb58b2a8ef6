"""Devices, threads and numeric precision.

``"auto"`` means CUDA when available, else the CPU. ``precision`` is ``"fp32"`` or
``"bf16"``: bf16 autocast is used for the training step and for attacks only; every
reported metric (accuracy, CCKL, Fisher statistics, G1/G2) is computed in float32/float64.
"""
from __future__ import annotations

import contextlib
import os

import torch

PRECISIONS = ("fp32", "bf16")
#: More torch threads than this per CPU cannot help: a larger CCKL_THREADS is refused as a mistake.
MAX_THREADS_PER_CPU = 4


class DeviceError(ValueError):
    """A device or thread setting that cannot be used on this machine."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a concrete ``torch.device`` for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``None`` and ``"auto"`` read ``$CCKL_DEVICE`` first, then pick CUDA if present. On CUDA,
    ``torch.backends.cudnn.benchmark`` is switched on (the input shape is fixed per run).
    """
    source = ""
    if isinstance(device, torch.device):
        dev = device
    else:
        if device in (None, "auto"):
            env = os.environ.get("CCKL_DEVICE")
            if env is not None and not env.strip():
                raise DeviceError("CCKL_DEVICE is set but empty; unset it or set it to auto, cpu, cuda or cuda:N")
            device, source = (env.strip(), " (from $CCKL_DEVICE)") if env else ("auto", "")
        if device == "auto":
            dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            try:
                dev = torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise DeviceError(f"unknown device {device!r}{source}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
            if dev.type not in ("cpu", "cuda"):
                raise DeviceError(f"unknown device {device!r}{source}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(dev)!r}{source} was asked for but CUDA is not available on this machine; "
                              "use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(dev)!r}{source}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        torch.backends.cudnn.benchmark = True
    return dev


def slurm_task_cpus() -> int | None:
    """The CPUs Slurm allocated to this task, or ``None`` outside a Slurm job: ``SLURM_CPUS_PER_TASK``
    (set when the job asked for ``--cpus-per-task``), else ``SLURM_CPUS_ON_NODE`` shared by the job's
    tasks on this node (``SLURM_NTASKS_PER_NODE``, default one). Without cgroups or task affinity
    (``TaskPlugin=task/none``) a task can see every core of the node; this is what it was given."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None

    def count(var: str) -> int | None:
        raw = os.environ.get(var, "").strip()
        return int(raw) if raw.isdigit() and int(raw) > 0 else None

    per_task = count("SLURM_CPUS_PER_TASK")
    if per_task:
        return per_task
    on_node = count("SLURM_CPUS_ON_NODE")
    if on_node:
        return max(1, on_node // (count("SLURM_NTASKS_PER_NODE") or 1))
    return None


def available_cpus() -> int:
    """The CPUs this process may use: in a Slurm job, its allocation (:func:`slurm_task_cpus`), else
    the scheduler affinity (a container's or cgroup's share, not the node's core count)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count() or 1
    allocated = slurm_task_cpus()
    return min(allocated, affinity) if allocated else affinity


def requested_threads() -> int:
    """``$CCKL_THREADS`` as a whole number (0 when unset or empty: every CPU this process may use)."""
    raw = os.environ.get("CCKL_THREADS", "0").strip() or "0"
    try:
        n = int(raw)
    except ValueError:
        raise DeviceError(f"CCKL_THREADS={raw!r} is not a whole number; set it to the number of CPU threads "
                          "(e.g. CCKL_THREADS=2) or unset it to use every CPU this process may use") from None
    if n < 0:
        raise DeviceError(f"CCKL_THREADS={n} must be >= 0 (0 = every CPU this process may use)")
    if n > MAX_THREADS_PER_CPU * available_cpus():
        raise DeviceError(f"CCKL_THREADS={n} is far more than the {available_cpus()} CPU(s) this process may use "
                          f"(at most {MAX_THREADS_PER_CPU} per CPU make sense); lower it, or unset it to use every CPU")
    return n


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: ``$CCKL_THREADS``, else :func:`available_cpus`)."""
    if n is None:
        n = requested_threads() or available_cpus()
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of ``jobs`` jobs side by side: ``$CCKL_THREADS``, else ``cpus // jobs`` (at least 1)."""
    return requested_threads() or max(1, available_cpus() // jobs)


def cpu_job_layout(n_tasks: int, jobs: int | None = None) -> tuple[int, int]:
    """``(jobs, threads)``: how many CPU tasks to run side by side and torch threads for each.

    Default: one job per CPU this process may use, at most ``n_tasks``, with
    ``cpus // jobs`` threads each; ``jobs`` fixes the number of jobs, ``$CCKL_THREADS`` the
    threads per job (then ``jobs = cpus // threads``). Small convolutional models use two
    cores poorly: on the 2-core machine two one-thread jobs train more images per second than
    one two-thread job (``benchmarks/jobs.py`` measures it), so side by side is the default.
    """
    if jobs is not None and (jobs < 1 or jobs > MAX_THREADS_PER_CPU * available_cpus()):
        raise ValueError(f"the number of jobs must be in [1, {MAX_THREADS_PER_CPU * available_cpus()}] here "
                         f"({available_cpus()} CPUs), got {jobs}")
    if jobs is None:
        cpus, threads = available_cpus(), requested_threads()
        jobs = max(1, min(cpus // threads if threads else cpus, n_tasks))
    return jobs, threads_per_job(jobs)


def interactive() -> bool:
    """Whether a person watches this process's progress: a terminal on stderr, or a Jupyter kernel (where
    tqdm draws widgets). Not in a log file or a pipe, such as the scheduler's workers."""
    import sys
    if "ipykernel" in sys.modules:
        try:
            from IPython import get_ipython
            if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
                return True
        except ImportError:  # pragma: no cover
            pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def machine_info() -> dict:
    """What makes floating-point results differ between machines: the CPU model, the vector
    extensions it has and the one torch dispatches to, the BLAS / oneDNN build, the intra- and
    inter-op threads. Read from ``/proc/cpuinfo`` and ``torch.__config__`` (empty fields where absent)."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma", "sse4"))]
    except OSError:
        pass
    build = torch.__config__.show()
    libraries = [line.strip(" -") for line in build.splitlines()
                 if any(k in line for k in ("Math Kernel Library", "MKL-DNN", "oneDNN", "OpenBLAS", "OpenMP"))]
    blas = next((part.split("=", 1)[1] for part in build.replace(",", " ").split() if part.startswith("BLAS_INFO=")), "")
    return {"cpu_model": model, "cpu_flags": sorted(flags), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": blas, "libraries": libraries, "interop_threads": torch.get_num_interop_threads()}


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` when ``precision == "bf16"``, else a no-op context."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
