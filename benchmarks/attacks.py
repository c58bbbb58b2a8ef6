"""PGD-20 throughput of cckl_core.attacks.pgd and its cost relative to torchattacks.PGD.

Prints, per model, images/s of our L-inf PGD-20 (eps 8/255, step 2/255, cross-entropy, no
random start: the paper's evaluation) on one batch, and the ratio of our time to
torchattacks.PGD's on the same input in the same run (< 1: ours is faster), plus the largest
difference between the two adversarial batches (they implement the same update).

    .venv/bin/python benchmarks/attacks.py                  # resnet20 w1, vgg13 w0.25, batch 128, 2 threads
    .venv/bin/python benchmarks/attacks.py --channels-last --repeats 3
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cckl_core import models  # noqa: E402
from cckl_core.attacks import PGD20, pgd  # noqa: E402
from cckl_core.data import synthetic  # noqa: E402


def _timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench(name: str, width: float, batch: int, steps: int, repeats: int, channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = models.build(name, width=width).eval()
    x = synthetic("test", n=batch, seed=0).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = model(x).argmax(1)  # attack the model's own predictions
    import torchattacks

    kw = dict(PGD20, steps=steps)
    ours = lambda s=steps: pgd(model, x, y, **dict(kw, steps=s))  # noqa: E731
    theirs = lambda s=steps: torchattacks.PGD(model, eps=kw["eps"], alpha=kw["step"], steps=s,  # noqa: E731
                                              random_start=False)(x, y)
    ours(2), theirs(2)  # warm-up (allocator, oneDNN primitives)
    t_ours, t_theirs = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t, a = _timed(ours)
        t_ours.append(t)
        t, b = _timed(theirs)
        t_theirs.append(t)
    return dict(model=f"{name} w{width:g}", ours=min(t_ours), theirs=min(t_theirs),
                diff=(a - b).abs().max().item(), batch=batch)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per implementation; the minimum is reported")
    ap.add_argument("--channels-last", action="store_true", help="model and input in channels_last memory format")
    ap.add_argument("--models", nargs="+", default=["resnet20:1", "vgg13:0.25"], help="name:width pairs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"PGD-{args.steps} L-inf eps 8/255 step 2/255, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{'channels_last' if args.channels_last else 'contiguous'}, float32, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}; min of {args.repeats} runs")
    print(f"{'model':<14} {'ours s':>8} {'ours img/s':>11} {'s/1000 img':>11} {'torchattacks s':>15} "
          f"{'ours/torchattacks':>18} {'max|diff|':>10}")
    for spec in args.models:
        name, _, width = spec.partition(":")
        r = bench(name, float(width or 1), args.batch, args.steps, args.repeats, args.channels_last)
        print(f"{r['model']:<14} {r['ours']:>8.2f} {r['batch'] / r['ours']:>11.1f} {1000 * r['ours'] / r['batch']:>11.1f} "
              f"{r['theirs']:>15.2f} {r['ours'] / r['theirs']:>18.3f} {r['diff']:>10.2g}", flush=True)


if __name__ == "__main__":
    main()
