"""Training-step cost of standard, PGD-AT and TRADES steps, measured in one run.

For each model, on random [0, 1] images of batch ``--batch`` (default 128):
- images/s of one full training step (attack + forward + backward + SGD step) for
  ``standard``, ``pgd_at`` and ``trades`` with ``--steps`` attack steps (default 10, as the paper);
- the ratio of a TRADES step to ``steps + 1`` standard steps (the target is at most 1.1:
  TRADES costs ``steps`` input-gradient passes plus one training pass over two branches),
  and the same for PGD-AT.
Timings: ``time.perf_counter``, one warm-up step, median of ``--repeats`` steps.

    python benchmarks/training.py
    python benchmarks/training.py --models resnet20x1 --repeats 3
"""
from __future__ import annotations

import argparse
import os

import torch

from cckl_core import profiles, runs, training
from timing import median_seconds


def step_time(model, opt, x, y, cfg, repeats: int) -> float:
    """Median seconds of one training step (attack, loss, backward, SGD step) after a warm-up."""
    def one():
        loss = training.objective_loss(model, x, y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return median_seconds(one, repeats)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg13:0.25", "resnet20x1:1"],
                        help="name:width pairs (VGG models are built with BatchNorm as in the quick profile)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"training-step benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
          f"batch {args.batch}, {args.steps} attack steps, median of {args.repeats} after 1 warm-up; "
          f"load average before the run {os.getloadavg()[0]:.2f}")
    print(f"{'model':18s} {'standard img/s':>15s} {'PGD-AT img/s':>13s} {'TRADES img/s':>13s} "
          f"{'PGD-AT/(s+1) std':>17s} {'TRADES/(s+1) std':>17s}")
    for spec in args.models:
        name, width = spec.split(":")
        cfg = {**profiles.RUN_KEYS, "model": name, "width": float(width), "objective": "standard", "lr": 0.01,
               "attack_steps": args.steps, "batch_norm": True if name.startswith("vgg") else None}
        model, _ = runs.fresh_model(cfg, None, torch.device("cpu"))
        opt, _ = training.make_optimizer(model, cfg)
        x = torch.rand(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch,))
        t = {obj: step_time(model, opt, x, y, {**cfg, "objective": obj}, args.repeats)
             for obj in ("standard", "pgd_at", "trades")}
        base = (args.steps + 1) * t["standard"]
        print(f"{name + ' w' + width:18s} {args.batch / t['standard']:15.1f} {args.batch / t['pgd_at']:13.1f} "
              f"{args.batch / t['trades']:13.1f} {t['pgd_at'] / base:17.2f} {t['trades'] / base:17.2f}")


if __name__ == "__main__":
    main()
