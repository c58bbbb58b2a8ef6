"""Exact CCKL in O(N K) vs the O(N^2 K) pairwise computation.

Prints, in one run, for softmax outputs of random logits with balanced labels:
- at N = ``--n`` (default 10,000) x K = ``--k`` (default 10): ``metrics.cckl`` against a fair
  vectorised O(N^2) baseline that builds the full N x N KL matrix in row chunks
  (``KL_ij = sum_k p_ik log p_ik - p_i . log p_j`` as a matmul), masks same-class pairs and
  averages; times in ms and the speedup;
- at a small N (``--loop-n``, default 300): the same against a plain Python loop over every
  ordered cross-class pair.
Each comparison also prints the relative difference of the values.
Timings: ``time.perf_counter``, one warm-up call, median of ``--repeats``.

    python benchmarks/cckl.py
    python benchmarks/cckl.py --quick
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from cckl_core import metrics
from timing import median_seconds as timed


def pairwise_chunked(probs: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> float:
    """Mean KL over ordered cross-class pairs from the full N x N KL matrix, built in row chunks."""
    p = probs.double()
    logp = p.log()
    neg_entropy = torch.special.xlogy(p, p).sum(1)
    total, count = 0.0, 0
    for s in range(0, len(p), chunk):
        kl_block = neg_entropy[s:s + chunk, None] - p[s:s + chunk] @ logp.T  # (c, N)
        cross = labels[s:s + chunk, None] != labels[None, :]
        total += float(kl_block[cross].sum())
        count += int(cross.sum())
    return total / count


def pairwise_loop(probs: np.ndarray, labels: np.ndarray) -> float:
    """Python loop over every ordered pair (i, j) with y_i != y_j."""
    logp = np.log(probs)
    total, count = 0.0, 0
    for i in range(len(probs)):
        for j in range(len(probs)):
            if labels[i] != labels[j]:
                total += float(np.dot(probs[i], logp[i] - logp[j]))
                count += 1
    return total / count


def data(n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, k, generator=g, dtype=torch.float64)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    return torch.softmax(logits, 1), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--loop-n", type=int, default=300, help="N for the Python-loop comparison")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="N = 2,000, loop N = 100, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.n, args.loop_n, args.repeats = 2_000, 100, 3
    torch.set_num_threads(args.threads)
    print(f"CCKL benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, float64, "
          f"median of {args.repeats} after 1 warm-up")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(other processes on the machine slow multi-threaded runs down a lot)")

    probs, labels = data(args.n, args.k)
    t_exact, v_exact = timed(lambda: metrics.cckl(probs, labels), args.repeats)
    t_pair, v_pair = timed(lambda: pairwise_chunked(probs, labels), max(1, args.repeats // 2))
    pairs = args.n * args.n - int((torch.bincount(labels) ** 2).sum())
    print(f"N = {args.n:,} x K = {args.k} ({pairs:,} ordered cross-class pairs)")
    print(f"  exact O(NK) cckl            {1e3 * t_exact:10.2f} ms   CCKL = {v_exact:.10f}")
    print(f"  vectorised O(N^2) chunked   {1e3 * t_pair:10.2f} ms   CCKL = {v_pair:.10f}")
    print(f"  speedup {t_pair / t_exact:,.0f}x   relative difference {abs(v_exact - v_pair) / abs(v_pair):.1e}")

    probs_s, labels_s = data(args.loop_n, args.k, seed=1)
    p_np, y_np = probs_s.numpy(), labels_s.numpy()
    t_exact_s, v_exact_s = timed(lambda: metrics.cckl(probs_s, labels_s), args.repeats)
    t_loop, v_loop = timed(lambda: pairwise_loop(p_np, y_np), 1, warmup=False)
    print(f"N = {args.loop_n:,} x K = {args.k}")
    print(f"  exact O(NK) cckl            {1e3 * t_exact_s:10.2f} ms   CCKL = {v_exact_s:.10f}")
    print(f"  Python loop over pairs      {1e3 * t_loop:10.2f} ms   CCKL = {v_loop:.10f}")
    print(f"  speedup {t_loop / t_exact_s:,.0f}x   relative difference {abs(v_exact_s - v_loop) / abs(v_loop):.1e}")


if __name__ == "__main__":
    main()
