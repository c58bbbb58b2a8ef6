"""Runs side by side: is K training jobs at once faster than one job doing the same work?

The scheduler (`cckl_core.schedule`, what `make paper` and `launch --executor local` use) runs,
on a CPU, one training job per core with one torch thread each, and on a GPU as many runs as fit
in its memory. This script measures why, in one run, for each model and objective, the same
work done two ways:

- ``--device cpu`` (default): ONE process with ``K`` threads doing ``K x steps`` training steps
  (the baseline) against ``K`` one-thread processes doing ``steps`` steps each at the same time
  (``K``: the CPUs here, or ``--jobs``);
- ``--device cuda``: ONE process on the GPU doing ``K x steps`` steps against ``K`` processes
  sharing the GPU, ``steps`` each (``K``: ``--jobs``, default 4).

Printed: aggregate images/s of each layout and their ratio (> 1: side by side is faster). Every
step is :func:`cckl_core.objectives.step` (the step that trains); random [0, 1] images, batch
``--batch``, ``--attack-steps`` attack steps, ``--precision``; ``time.perf_counter`` around the
whole work after one warm-up step in every process (CUDA synchronised).

    python benchmarks/jobs.py
    python benchmarks/jobs.py --device cuda --models vgg13:1 resnet20x1:1 resnet32x10:1 --objectives trades --jobs 5
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def _work(spec: str, objective: str, threads: int, steps: int, batch: int, attack_steps: int, device: str,
          precision: str, ready, out) -> None:
    """In a fresh process: build the model, one warm-up step, wait at the ``ready`` barrier (every
    process and the parent), then time ``steps`` training steps; put the seconds on ``out``."""
    import torch

    from cckl_core import models, objectives, profiles

    torch.set_num_threads(threads)
    name, width = spec.split(":")
    dev = torch.device(device)
    cfg = profiles.run_config("bench", "benchmark", {
        "model": name, "width": float(width), "objective": objective, "lr": 0.01, "attack_steps": attack_steps,
        "batch_norm": (float(width) < 1) if name.startswith("vgg") else None, "precision": precision,
        "batch_size": batch, "epochs": 2, "milestones": [1]})
    model, channels_last = models.fresh(cfg, 10, dev)
    opt, sched = objectives.make_optimizer(model, cfg)
    x, y = torch.rand(batch, 3, 32, 32, device=dev), torch.randint(0, 10, (batch,), device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    objectives.step(model, opt, None, x, y, cfg)
    sync()
    ready.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        objectives.step(model, opt, None, x, y, cfg)
    sync()
    out.put(time.perf_counter() - t0)


def timed(spec, objective, jobs: int, threads: int, steps: int, args) -> float:
    """Wall seconds until every one of ``jobs`` processes (``threads`` threads, ``steps`` steps each) is done."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Barrier(jobs + 1), ctx.Queue()
    procs = [ctx.Process(target=_work, args=(spec, objective, threads, steps, args.batch, args.attack_steps,
                                            args.device, args.precision, ready, out)) for _ in range(jobs)]
    for p in procs:
        p.start()
    ready.wait()  # every process has built its model and taken its warm-up step
    t0 = time.perf_counter()
    for _ in procs:
        out.get()
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg13:0.25", "resnet20x1:1"], help="name:width pairs")
    parser.add_argument("--objectives", nargs="+", default=["standard", "pgd_at", "trades"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=None, help="processes side by side (default: the CPUs here; 4 on cuda)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per process")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack-steps", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    from cckl_core.devices import available_cpus

    jobs = args.jobs or (4 if args.device == "cuda" else available_cpus())
    cpus = available_cpus()
    one_threads, side_threads = (jobs, 1) if args.device == "cpu" else (cpus, max(1, cpus // jobs))
    print(f"side-by-side jobs on {args.device}: {jobs} processes x {args.steps} steps ({side_threads} thread(s) each) "
          f"against one process x {jobs * args.steps} steps ({one_threads} threads); batch {args.batch}, "
          f"{args.attack_steps} attack steps, {args.precision}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"{'model':16s} {'objective':9s} {'one job img/s':>14s} {str(jobs) + ' side by side img/s':>22s} {'ratio':>6s}")
    for spec in args.models:
        for objective in args.objectives:
            images = jobs * args.steps * args.batch
            one = timed(spec, objective, 1, one_threads, jobs * args.steps, args)
            side = timed(spec, objective, jobs, side_threads, args.steps, args)
            print(f"{spec:16s} {objective:9s} {images / one:14.1f} {images / side:22.1f} {one / side:6.2f}", flush=True)


if __name__ == "__main__":
    main()
