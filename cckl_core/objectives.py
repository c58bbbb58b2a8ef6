"""Training objectives (standard, PGD-AT, TRADES), the one SGD step, its optimiser and an epoch of it.

Objectives, for a batch (x, y) with model f (logits z, probabilities softmax(z)):

- ``standard``: ``CE(f(x), y)``.
- ``pgd_at`` (Madry et al. 2017): ``CE(f(x'), y)`` with ``x'`` from L-inf PGD on the CE
  loss (eps, step, steps, uniform random start).
- ``trades`` (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'``
  maximising ``KL(f(x) || f(x'))`` by L-inf PGD from ``x + 0.001 N(0, 1)``; the KL is
  averaged over the batch and the gradient flows through both branches.

Attacks run with the model in eval mode; the loss and the step in train mode. :func:`step` is
the only SGD step in the package: the training loop (:mod:`cckl_core.trainer`), ``plan`` and the
benchmarks all call it. What a run records after each epoch is :mod:`cckl_core.record`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attacks
from .data import Batches
from .devices import autocast
from .models import NonFiniteError
from .profiles import RunConfig


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
    :class:`NonFiniteError` at that check.
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
            raise NonFiniteError(
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
