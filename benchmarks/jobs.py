"""Side-by-side jobs on a CPU: is one job per core (one thread each) faster than one job on every core?

`make paper` and `launch --executor local` run, on a CPU, one training job per core with one
torch thread each (`cckl_core.devices.cpu_job_layout`). This script measures why, in one run,
for each model and objective, the same work done two ways: ONE process with ``J`` threads
doing ``J x steps`` training steps (the baseline: the layout before), and ``J`` one-thread
processes doing ``steps`` steps each at the same time (``J``: the CPUs here, or ``--jobs``).
Printed: images/s of each layout and their ratio (> 1: side by side is faster). Random [0, 1]
images, batch ``--batch``, ``--attack-steps`` attack steps; ``time.perf_counter`` around the
whole work after one warm-up step in every process.

    python benchmarks/jobs.py
    python benchmarks/jobs.py --models vgg13:0.25 resnet20x1:1 --objectives standard trades --jobs 2
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def _work(spec: str, objective: str, threads: int, steps: int, repeats: int, batch: int, attack_steps: int,
          ready, out) -> None:
    """In a fresh process: build the model, one warm-up step, wait at the ``ready`` barrier (every
    process and the parent), then time ``repeats x steps`` training steps; put the seconds on ``out``."""
    import torch

    from cckl_core import profiles, runs, training

    torch.set_num_threads(threads)
    name, width = spec.split(":")
    cfg = {**profiles.RUN_KEYS, "model": name, "width": float(width), "objective": objective, "lr": 0.01,
           "attack_steps": attack_steps, "batch_norm": (float(width) < 1) if name.startswith("vgg") else None,
           "precision": "fp32"}
    model, _ = runs.fresh_model(cfg, 10, torch.device("cpu"))
    opt, _ = training.make_optimizer(model, cfg)
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step():
        loss = training.objective_loss(model, x, y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    ready.wait()
    t0 = time.perf_counter()
    for _ in range(repeats * steps):
        step()
    out.put(time.perf_counter() - t0)


def timed(spec, objective, jobs: int, threads: int, repeats: int, args) -> float:
    """Wall seconds until every one of ``jobs`` processes (``threads`` threads each) is done."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Barrier(jobs + 1), ctx.Queue()
    procs = [ctx.Process(target=_work, args=(spec, objective, threads, args.steps, repeats, args.batch,
                                            args.attack_steps, ready, out)) for _ in range(jobs)]
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
    parser.add_argument("--jobs", type=int, default=None, help="processes side by side (default: the CPUs here)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per process")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack-steps", type=int, default=5)
    args = parser.parse_args()
    from cckl_core.devices import available_cpus

    jobs = args.jobs or available_cpus()
    print(f"side-by-side jobs: {jobs} one-thread processes x {args.steps} steps against one {jobs}-thread process x "
          f"{jobs * args.steps} steps, batch {args.batch}, {args.attack_steps} attack steps; "
          f"load average before the run {os.getloadavg()[0]:.2f}")
    print(f"{'model':16s} {'objective':9s} {'1 x ' + str(jobs) + ' threads img/s':>20s} "
          f"{str(jobs) + ' x 1 thread img/s':>18s} {'ratio':>6s}")
    for spec in args.models:
        for objective in args.objectives:
            images = jobs * args.steps * args.batch
            one = timed(spec, objective, 1, jobs, jobs, args)
            side = timed(spec, objective, jobs, 1, 1, args)
            print(f"{spec:16s} {objective:9s} {images / one:20.1f} {images / side:18.1f} {one / side:6.2f}")


if __name__ == "__main__":
    main()
