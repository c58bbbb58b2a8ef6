"""Training objectives (standard, PGD-AT, TRADES), the one SGD step, an epoch of it, and the per-epoch record.

Objectives, for a batch (x, y) with model f (logits z, probabilities softmax(z)):

- ``standard``: ``CE(f(x), y)``.
- ``pgd_at`` (Madry et al. 2017): ``CE(f(x'), y)`` with ``x'`` from L-inf PGD on the CE
  loss (eps, step, steps, uniform random start).
- ``trades`` (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'``
  maximising ``KL(f(x) || f(x'))`` by L-inf PGD from ``x + 0.001 N(0, 1)``; the KL is
  averaged over the batch and the gradient flows through both branches.

Attacks run with the model in eval mode; the loss and the step in train mode. :func:`step` is
the only SGD step in the package: the training loop (:mod:`cckl_core.trainer`), ``plan`` and the
benchmarks all call it.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attacks, metrics, models
from .data import Batches
from .devices import autocast
from .fisher import eval_mode, fisher_stats
from .profiles import RunConfig


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255, step: float = 2 / 255,
                steps: int = 10, beta: float = 5.0, x_adv: torch.Tensor | None = None) -> torch.Tensor:
    """TRADES loss ``CE(f(x), y) + beta * mean_i KL(f(x_i) || f(x'_i))`` (nats), in the model's current mode.

    ``x'`` comes from :func:`cckl_core.attacks.pgd` with ``loss="kl"`` (eval mode, start
    ``x + 0.001 N(0,1)``) unless given. Both forward passes run in the caller's mode
    (train mode during training) and the gradient flows through both branches.
    """
    if x_adv is None:
        x_adv = attacks.pgd(model, x, y, eps=eps, step=step, steps=steps, norm="linf", loss="kl", random_start="trades")
    logits = model(x)
    logits_adv = model(x_adv)
    natural = F.cross_entropy(logits, y)
    robust = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits, 1), reduction="batchmean", log_target=True)
    return natural + beta * robust


def objective_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """The training loss of ``cfg.objective`` on one batch; the model is put in train mode for it."""
    if cfg.objective == "standard":
        model.train()
        return F.cross_entropy(model(x), y)
    if cfg.objective == "pgd_at":
        x_adv = attacks.pgd(model, x, y, eps=cfg.eps, step=cfg.step, steps=cfg.attack_steps,
                            norm="linf", loss="ce", random_start="uniform")
        model.train()
        return F.cross_entropy(model(x_adv), y)
    if cfg.objective == "trades":
        x_adv = attacks.pgd(model, x, y, eps=cfg.eps, step=cfg.step, steps=cfg.attack_steps,
                            norm="linf", loss="kl", random_start="trades")
        model.train()
        return trades_loss(model, x, y, beta=cfg.beta, x_adv=x_adv)
    raise ValueError(f"unknown objective {cfg.objective!r}; valid: standard, pgd_at, trades")


def step(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler | None,
         x: torch.Tensor, y: torch.Tensor,
         cfg: RunConfig) -> torch.Tensor:
    """One SGD step of ``cfg.objective`` on the batch ``(x, y)``: the loss (attack included) under
    ``cfg.precision`` autocast, backward, ``opt.step()`` and ``sched.step()`` (the schedule counts
    SGD steps). Returns the loss (a detached device tensor, nats). This is the step that trains,
    and the one ``plan`` and the benchmarks time."""
    with autocast(x.device, cfg.precision):
        loss = objective_loss(model, x, y, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return loss.detach()


def make_optimizer(model: nn.Module, cfg: RunConfig, steps_per_epoch: int = 1
                   ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """SGD (momentum, weight decay) and a step schedule dividing the lr by 10 after each of
    ``cfg.milestones`` epochs (fractions allowed), counted in SGD steps: the lr of step ``t``
    (0-based) is ``lr * 0.1 ** #{m : round(m * steps_per_epoch) <= t}``."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    at = [max(1, round(m * steps_per_epoch)) for m in cfg.milestones]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=at, gamma=0.1)
    return opt, sched


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler | None,
                batches: Batches, cfg: RunConfig, progress: bool = False,
                desc: str = "train", check_every: int = 50) -> float:
    """One pass of :func:`step` over ``batches``; returns the mean training loss (nats).

    The loss is summed on the device and read back every ``check_every`` batches (and at the
    end), so the host does not wait for the device after every step; a non-finite loss raises
    :class:`NonFiniteLossError` at that check.
    """
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count, checked = 0, 0
    it = batches
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(batches, desc=desc, leave=False, mininterval=1.0)

    def check(b: int) -> float:
        value = total.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{cfg.objective} loss became {value} between batch {checked} and batch {b}; lower the learning "
                f"rate (lr={cfg.lr}) or check the data. The cache keeps only the last finished epoch.")
        return value

    b = -1
    for b, (x, y) in enumerate(it):
        loss = step(model, opt, sched, x, y, cfg)
        total += loss.double() * len(y)
        count += len(y)
        if (b + 1) % check_every == 0:
            value = check(b)
            checked = b + 1
            if progress:
                it.set_postfix(loss=f"{value / count:.3f}", refresh=False)
    return check(b) / max(count, 1)


# --------------------------------------------------------------------------- models of a run
def build_model(cfg: RunConfig, num_classes: int | None = None) -> nn.Module:
    """The (untrained, unseeded) model of a run config."""
    return models.build(cfg.model, num_classes=num_classes or cfg.num_classes, width=cfg.width,
                        batch_norm=cfg.batch_norm)


def _channels_last(model: nn.Module) -> bool:
    """channels_last pays off on the CPU for real widths (1.15-1.25x) but is many times slower
    for BatchNorm over a handful of channels (the tiny test models)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return bool(widths) and min(widths) >= 16


def fresh_model(cfg: RunConfig, num_classes: int | None, device: torch.device) -> tuple[nn.Module, bool]:
    """The run's model at initialisation (seeded by ``cfg.seed``) on ``device``, in channels_last
    memory format where that pays off; returns ``(model, channels_last)``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, num_classes).to(device)
    channels_last = _channels_last(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, channels_last


def check_finite_weights(model: nn.Module, where: str = "") -> None:
    """Raise :class:`NonFiniteLossError` if a parameter or buffer (BatchNorm statistics) is NaN or infinite."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteLossError(f"the model's {name} became non-finite{where}; lower the learning rate "
                                     "or check the data (training diverged)")


def _summary(values: torch.Tensor, prefix: str) -> dict[str, float]:
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
        raise NonFiniteLossError("the model's test outputs (logits) are NaN or infinite although its weights are "
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
