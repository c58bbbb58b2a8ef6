"""Does the paper's plain VGG13 (no BatchNorm) learn under TRADES in the SGD steps the `gpu` profile gives it?

The `gpu` profile trains each Table 1 model for one epoch of the full CIFAR-10 training set
(391 SGD steps of batch 128, lr /10 after 50% and 75% of them). This script trains a plain VGG13
and a VGG13 with BatchNorm for exactly those steps, with the profile's TRADES settings (10 attack
steps of 2/255 in eps 8/255, beta 5, lr 0.01, momentum 0.9, weight decay 1e-4), at width
``--width`` (default 0.5: width 1 takes hours on a 2-core CPU), side by side (one process and
one torch thread each), on CIFAR-10 (the offline JPEG copy where the originals are absent), and
prints each model's test accuracy and PGD-10 accuracy after the last step, from the runs' cached
histories (``artifacts/vgg13-batchnorm-check/``; a second call reuses them).

    python benchmarks/vgg13_batchnorm.py              # ~35 min on the 2-core machine
    python benchmarks/vgg13_batchnorm.py --n-train 2560 --n-test 200   # a quick look
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cckl_core import profiles  # noqa: E402


def configs(args) -> list[profiles.RunConfig]:
    """The two runs: the gpu profile's VGG13 TRADES run at ``--width``, without and with BatchNorm."""
    base = profiles.load("gpu").run("vgg13_trades")
    shared = dict(profile="vgg13-batchnorm-check", width=args.width, n_train=args.n_train, n_test=args.n_test,
                  fisher_n=args.points, robust_n=args.points)
    return [replace(base, name="vgg13_plain", batch_norm=None, **shared),
            replace(base, name="vgg13_batchnorm", batch_norm=True, **shared)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--n-train", type=int, default=0, help="training images (default 0: all 50,000, as the profile)")
    parser.add_argument("--n-test", type=int, default=2000, help="test images for the accuracies")
    parser.add_argument("--points", type=int, default=200, help="test images for the PGD-10 accuracy and Fisher norm")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # train configs()[one] here
    args = parser.parse_args()
    cfgs = configs(args)
    if args.one is not None:
        import torch

        from cckl_core.trainer import train
        torch.set_num_threads(1)
        train(cfgs[args.one], device="cpu", progress=True)
        return
    print(f"{len(cfgs)} runs side by side, one thread each: {cfgs[0].model} w{args.width:g}, {cfgs[0].objective}, "
          f"{cfgs[0].epochs} epoch(s) of {args.n_train or 50000} images, batch {cfgs[0].batch_size}, lr {cfgs[0].lr}, "
          f"milestones {list(cfgs[0].milestones)}, {cfgs[0].attack_steps} attack steps", flush=True)
    procs = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--one", str(k)]) for k in range(len(cfgs))]
    if any(p.wait() for p in procs):
        sys.exit("a run failed (its output is above)")
    from cckl_core import runs
    print(f"{'run':18s} {'steps':>6s} {'test acc':>9s} {'PGD-10 acc':>11s} {'train loss':>11s} {'minutes':>8s}")
    for cfg in cfgs:
        run = runs.load(cfg)
        last = run.history[-1]
        steps = -(-run.dataset_info["n_train"] // cfg.batch_size) * cfg.epochs
        minutes = sum(r["train_seconds"] for r in run.history) / 60
        print(f"{cfg.name:18s} {steps:6d} {last['test_acc']:9.4f} {last['robust_acc']:11.4f} {last['train_loss']:11.4f} "
              f"{minutes:8.1f}")


if __name__ == "__main__":
    main()
