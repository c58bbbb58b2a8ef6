"""The per-epoch record of a run (:func:`evaluate`) and the measurements it shares with the evaluations:
predictions (:func:`predict`) and per-sample correctness under an attack (:func:`robust_correct`).

Every measurement runs the model in eval mode and restores the caller's mode.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attacks, metrics
from .data import Batches
from .devices import autocast
from .fisher import fisher_stats
from .models import NonFiniteError, eval_mode


def _summary(values: torch.Tensor, prefix: str) -> dict[str, float]:
    """Mean, log of the mean, median and 10/25/75/90% quantiles of ``values`` (float64), keyed ``<prefix>_...``."""
    v = values.double()
    q = torch.quantile(v, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64))
    return {
        f"{prefix}_mean": float(v.mean()), f"{prefix}_log_mean": float(math.log(max(float(v.mean()), 1e-300))),
        f"{prefix}_median": float(q[2]), f"{prefix}_q10": float(q[0]), f"{prefix}_q25": float(q[1]),
        f"{prefix}_q75": float(q[3]), f"{prefix}_q90": float(q[4]),
    }


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels over ``batches``, in eval mode (caller's mode restored)."""
    outs, labels = [], []
    with eval_mode(model):
        for x, y in batches:
            outs.append(model(x).float().cpu())
            labels.append(y.cpu())
    return torch.cat(outs), torch.cat(labels)


#: Robust accuracy recorded every epoch: L-inf PGD-10, eps 8/255, step 2/255, no random start.
ROBUST_ACC_ATTACK = dict(eps=8 / 255, step=2 / 255, steps=10, norm="linf", loss="ce")


def robust_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: dict, precision: str = "fp32",
                   batch_size: int = 500) -> torch.Tensor:
    """Per-sample correctness (bool, CPU) on ``attack`` examples; the attack runs under ``precision``
    autocast, the final prediction in float32."""
    out = []
    with eval_mode(model):
        for s in range(0, len(x), batch_size):
            xb, yb = x[s:s + batch_size], y[s:s + batch_size]
            with autocast(xb.device, precision):
                x_adv = attacks.pgd(model, xb, yb, **attack)
            with torch.no_grad():
                out.append((model(x_adv.float()).argmax(1) == yb).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def evaluate(model: nn.Module, test: Batches, fisher_x: torch.Tensor, pair_x: torch.Tensor,
             robust_x: torch.Tensor | None = None, robust_y: torch.Tensor | None = None,
             precision: str = "fp32") -> dict:
    """The per-epoch record: test accuracy, test CE, exact CCKL, Fisher norm summaries, the Figure 1
    pair, and ``robust_acc`` (PGD-10 accuracy, :data:`ROBUST_ACC_ATTACK`, on ``robust_x``).

    Fisher statistics (Frobenius and spectral norm of ``F_x``) are summarised over the
    fixed points ``fisher_x``; ``pair_probs`` are the softmax outputs of the two fixed
    cross-class test samples ``pair_x``.
    """
    start = time.perf_counter()
    logits, labels = predict(model, test)
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteError("the model's test outputs (logits) are NaN or infinite although its weights are "
                                 "finite; lower the learning rate or check the data (training diverged)")
    logp = torch.log_softmax(logits.double(), 1)
    rec = {
        "test_acc": float((logits.argmax(1) == labels).double().mean()),
        "test_ce": float(F.nll_loss(logp, labels)),
        "cckl": metrics.cckl(logp.exp(), labels, log_probs=logp),
    }
    stats = fisher_stats(model, fisher_x)
    rec.update(_summary(stats["frobenius"], "fisher_fro"))
    rec.update(_summary(stats["spectral"], "fisher_spec"))
    rec["fisher_trace_mean"] = float(stats["trace"].mean())
    with torch.no_grad(), eval_mode(model):
        rec["pair_probs"] = torch.softmax(model(pair_x).double(), 1).cpu().tolist()
    if robust_x is not None:
        rec["robust_acc"] = float(robust_correct(model, robust_x, robust_y, ROBUST_ACC_ATTACK, precision).double().mean())
    rec["eval_seconds"] = time.perf_counter() - start
    return rec
