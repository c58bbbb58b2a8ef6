"""Training-step cost of standard, PGD-AT and TRADES steps, measured in one run.

For each model and precision, on random [0, 1] images of batch ``--batch`` (default 128):
- images/s of one full training step (attack + forward + backward + SGD step) for
  ``standard``, ``pgd_at`` and ``trades`` with ``--steps`` attack steps (default 10, as the paper);
- the ratio of a TRADES step to ``steps + 1`` standard steps (the target is at most 1.1:
  TRADES costs ``steps`` input-gradient passes plus one training pass over two branches),
  and the same for PGD-AT;
- with ``--precisions fp32 bf16``: the speed-up of bf16 autocast over fp32 for each objective
  (the training code's own step, :func:`cckl_core.objectives.step`, with its autocast).
Timings: ``time.perf_counter`` (CUDA synchronised), one warm-up step, median of ``--repeats`` steps.

    python benchmarks/training.py
    python benchmarks/training.py --device cuda --models vgg13:1 resnet20x1:1 resnet32x10:1 --precisions fp32 bf16
"""
from __future__ import annotations

import argparse
import os

import torch

from dataclasses import replace

from cckl_core import models, objectives, profiles
from cckl_core.devices import resolve_device
from timing import median_seconds


def step_time(model, opt, x, y, cfg, repeats: int, device) -> float:
    """Median seconds of one :func:`cckl_core.objectives.step` (attack, loss, backward, SGD step) after a warm-up."""
    return median_seconds(lambda: objectives.step(model, opt, None, x, y, cfg), repeats, device=device)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg13:0.25", "resnet20x1:1"],
                        help="name:width pairs (VGG models narrower than 1 get BatchNorm, as in the quick profile)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"training-step benchmark: torch {torch.__version__}, {where}, batch {args.batch}, {args.steps} attack steps, "
          f"median of {args.repeats} after 1 warm-up; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"{'model':18s} {'prec':5s} {'standard img/s':>15s} {'PGD-AT img/s':>13s} {'TRADES img/s':>13s} "
          f"{'PGD-AT/(s+1) std':>17s} {'TRADES/(s+1) std':>17s}")
    for spec in args.models:
        name, width = spec.split(":")
        cfg = profiles.run_config("bench", "benchmark", {
            "model": name, "width": float(width), "objective": "standard", "lr": 0.01, "attack_steps": args.steps,
            "batch_norm": (float(width) < 1) if name.startswith("vgg") else None, "epochs": 2, "milestones": [1]})
        times = {}
        for precision in args.precisions:
            model, channels_last = models.fresh(cfg, None, device)
            opt, _ = objectives.make_optimizer(model, cfg)
            x = torch.rand(args.batch, 3, 32, 32, device=device)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            y = torch.randint(0, 10, (args.batch,), device=device)
            t = {obj: step_time(model, opt, x, y, replace(cfg, objective=obj, precision=precision), args.repeats, device)
                 for obj in ("standard", "pgd_at", "trades")}
            times[precision] = t
            base = (args.steps + 1) * t["standard"]
            print(f"{name + ' w' + width:18s} {precision:5s} {args.batch / t['standard']:15.1f} {args.batch / t['pgd_at']:13.1f} "
                  f"{args.batch / t['trades']:13.1f} {t['pgd_at'] / base:17.2f} {t['trades'] / base:17.2f}")
        if len(times) == 2:
            gain = {obj: times["fp32"][obj] / times["bf16"][obj] for obj in times["fp32"]}
            print(f"{'':18s} bf16 speed-up over fp32: standard {gain['standard']:.2f}x, PGD-AT {gain['pgd_at']:.2f}x, "
                  f"TRADES {gain['trades']:.2f}x")


if __name__ == "__main__":
    main()
