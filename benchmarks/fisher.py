"""Input-space Fisher statistics: our K x K Gram route vs materialising the d x d Fisher, and vs the floor.

Prints, for each model, in one run (CPU, float32, eval mode, random inputs in [0, 1]):
- samples/s of ``fisher.fisher_stats`` (Frobenius norm, spectral norm, trace) at ``--batch``;
- samples/s of materialising the Fisher (``fisher.materialized_fisher`` + ``torch.linalg.eigvalsh``
  on each d x d matrix, plus its Frobenius norm and trace) at the smaller ``--mat-batch``
  (B * d * d * 4 bytes: 9.7 GB at B = 256 for d = 3072), and the per-sample speed ratio;
- the floor: one forward pass and K separate ``torch.autograd.grad`` input-gradient backward
  passes (``retain_graph=True``) at ``--batch``, and the ratio of fisher_stats time to it.

Timings: ``time.perf_counter``, one warm-up call, median of ``--repeats`` calls.

    python benchmarks/fisher.py                  # resnet20, vgg13 width 1 and 0.25, on the CPU
    python benchmarks/fisher.py --quick          # smaller batches, one repeat
    python benchmarks/fisher.py --device cuda    # the same ratios on a GPU
"""
from __future__ import annotations

import argparse
import os
import platform

import torch

from cckl_core import fisher, models
from cckl_core.devices import resolve_device
from timing import median_seconds


def run_fisher_stats(model, x, batch):
    return fisher.fisher_stats(model, x, batch_size=batch)


def run_materialised(model, x):
    f = fisher.materialized_fisher(model, x)  # (B, d, d)
    spectral = torch.linalg.eigvalsh(f)[:, -1]
    frob = torch.linalg.matrix_norm(f, "fro")
    trace = torch.diagonal(f, dim1=1, dim2=2).sum(1)
    return spectral, frob, trace


def run_floor(model, x):
    """One forward, then K input-gradient backward passes: the cost of J by reverse mode."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    k = logits.shape[1]
    for c in range(k):
        (g,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < k - 1)
    return g


def check_agreement(model, x) -> float:
    """Largest relative difference of the spectral norms of the two routes (sanity check)."""
    ours = fisher.fisher_stats(model, x)["spectral"]
    theirs = run_materialised(model, x)[0].double().cpu()
    return float(((ours - theirs).abs() / theirs.abs().clamp_min(1e-30)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="batch for fisher_stats and the floor (default 256)")
    parser.add_argument("--mat-batch", type=int, default=8, help="batch for the materialised Fisher (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (median)")
    parser.add_argument("--mat-repeats", type=int, default=1,
                        help="timed repeats of the materialised route (default 1: about 4 s per sample on 2 cores)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--models", default="resnet20:1,vgg13:1,vgg13:0.25",
                        help="comma-separated name:width list (default resnet20:1,vgg13:1,vgg13:0.25)")
    parser.add_argument("--quick", action="store_true",
                        help="batch 32, materialised batch 2, 1 repeat, models resnet20:1,vgg13:0.25")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.mat_batch, args.repeats, args.mat_repeats = 32, 2, 1, 1
        if args.models == parser.get_default("models"):
            args.models = "resnet20:1,vgg13:0.25"

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"Fisher statistics benchmark: torch {torch.__version__}, {where}, float32, K = {args.classes}, d = 3072")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(other processes on the machine slow multi-threaded runs down a lot)")
    print(f"fisher_stats and floor at batch {args.batch} (median of {args.repeats} after 1 warm-up); "
          f"materialised Fisher at batch {args.mat_batch}, since it holds B x d x d floats "
          f"({args.batch * 3072 * 3072 * 4 / 1e9:.1f} GB at batch {args.batch}) "
          f"(median of {args.mat_repeats} after a warm-up on 2 samples); rates are samples per second")
    header = (f"{'model':<16}{'params':>10}  {'ours/s':>9}  {'mat./s':>9}  {'ours/mat':>9}  "
              f"{'floor/s':>9}  {'ours/floor':>10}  {'max rel diff':>12}")
    print(header)
    print("-" * len(header))
    for spec in args.models.split(","):
        name, _, width = spec.partition(":")
        width = float(width or 1.0)
        model = models.build(name, num_classes=args.classes, width=width).to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        x = torch.rand(args.batch, 3, 32, 32, device=device)
        xm = x[: args.mat_batch]

        t_ours = median_seconds(lambda: run_fisher_stats(model, x, args.batch), args.repeats, device=device)[0]
        t_floor = median_seconds(lambda: run_floor(model, x), args.repeats, device=device)[0]
        # the agreement check on 2 samples doubles as the warm-up of the (slow) materialised route
        diff = check_agreement(model, xm[: min(2, len(xm))])
        t_mat = median_seconds(lambda: run_materialised(model, xm), args.mat_repeats, warmup=False, device=device)[0]

        ours_rate, floor_rate, mat_rate = args.batch / t_ours, args.batch / t_floor, len(xm) / t_mat
        label = f"{name} w{width:g}"
        print(f"{label:<16}{sum(p.numel() for p in model.parameters()):>10,}  "
              f"{ours_rate:>9.1f}  {mat_rate:>9.2f}  {ours_rate / mat_rate:>8.1f}x  "
              f"{floor_rate:>9.1f}  {t_ours / t_floor:>9.2f}x  {diff:>12.1e}")
    print("ours/mat: how many times faster per sample fisher_stats is than materialising + eigvalsh "
          "(per-sample rates at different batch sizes).")
    print("max rel diff: largest relative difference of the spectral norms of the two routes (float32).")
    print("ours/floor: fisher_stats time over the time of 1 forward + K input-gradient backward passes "
          "(1.0 = no overhead beyond computing J).")


if __name__ == "__main__":
    main()
