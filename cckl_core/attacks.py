"""Adversarial attacks for evaluation and adversarial training: PGD (L-inf / L2) on the
cross-entropy, the Carlini-Wagner margin and the TRADES KL, plus AutoAttack via torchattacks.

Inputs are images in [0, 1] (pixel units: ``8/255`` is eight grey levels); the models
standardise internally. Every attack runs the model in eval mode, restores the caller's
mode afterwards, differentiates with respect to the input only (``torch.autograd.grad``,
so no ``.grad`` is left on the parameters) and returns a detached tensor.

PGD (Madry et al. 2018), for ``t = 0 .. steps-1``, with ``g = grad_x' L(x')``:

    L-inf:  x' <- clip_[0,1]( x + clip_[-eps,eps]( x' + step * sign(g) - x ) )
    L2:     x' <- clip_[0,1]( x + Pi_eps( x' + step * g / ||g||_2 - x ) ),
            Pi_eps(d) = d * min(1, eps / ||d||_2)   (per sample)

i.e. projection onto the eps-ball and clamping to the image box after every step; the
result is the last iterate (as in torchattacks and the paper's evaluation), which lies
in the ball and in [0, 1]. Losses ``L`` (summed over the batch, so that the gradient of
one sample does not depend on the batch size):

- ``"ce"``: cross-entropy ``-log softmax(z(x'))_y``.
- ``"cw"``: Carlini-Wagner margin. CW's objective ``f(x') = max(z_y - max_{k!=y} z_k, -kappa)``
  is *minimised*, i.e. we maximise ``L = min(max_{k!=y} z_k - z_y, kappa)``: the margin by
  which some wrong class beats the true one, capped at ``kappa`` (the confidence).
  This is "CW-inf solved by PGD with the same optimisation parameters" of the paper's
  Table 1; the paper's constant ``c = 5e2`` weighs the distance term of CW's original
  penalty formulation and has no counterpart here, where the eps-ball is a hard
  constraint (recorded as an assumption of the reproduction). Note the sign: SPEC section 7's
  ``max(max_{k!=y} z_k - z_y, -kappa)`` "maximised", read literally, is flat (zero gradient)
  at every correctly classified input when ``kappa = 0``, so PGD would never move; the
  form above is CW's own and is what CW-PGD implementations use.
- ``"kl"``: ``KL(f(x) || f(x'))`` as in TRADES (Zhang et al. 2019), with ``f(x)`` fixed;
  ``y`` is ignored. The gradient vanishes at ``x' = x``, so this mode needs a random
  start; ``random_start=True`` means the TRADES start ``x + 0.001 * N(0, 1)`` here.

Starts (``random_start``): ``False`` (default, as the paper's evaluation) starts at ``x``;
``"uniform"`` draws ``x + U(-eps, eps)^d`` (L-inf) or ``x + r * eps * u`` with ``u`` a
uniformly random unit direction and ``r ~ U(0, 1)`` (L2, the torchattacks convention),
clamped to [0, 1]; ``"trades"`` draws ``x + 0.001 * N(0, 1)`` (not clamped, exactly as the
TRADES reference code; the first step clamps). ``True`` is ``"trades"`` for ``loss="kl"``
and ``"uniform"`` otherwise. Random draws come from a CPU generator seeded with ``seed``
(the global RNG when ``seed`` is None) and are moved to ``x``'s device, so a seeded random
start is the same on every device.

Arguments are checked by :mod:`cckl_core.checks` (images in [0, 1] that fit the model,
integer labels in [0, K), positive integer step counts, ...); a wrong one raises
``ValueError`` or ``TypeError`` with one line saying how to fix it.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks
from .models import eval_mode

__all__ = [
    "pgd", "autoattack", "robust_accuracy", "accuracies", "correctness", "as_attack", "attack_loss",
    "EPS", "PGD20", "CW20", "PGD_AT10", "TRADES10", "TABLE1",
]

EPS = 8 / 255
#: The paper's evaluation (Table 1): L-inf PGD, eps 8/255, step 2/255, 20 steps, no random start.
PGD20 = MappingProxyType(dict(eps=EPS, step=2 / 255, steps=20, norm="linf", loss="ce"))
#: CW-inf solved by PGD with the same optimisation parameters (Table 1).
CW20 = MappingProxyType(dict(eps=EPS, step=2 / 255, steps=20, norm="linf", loss="cw", kappa=0.0))
#: Madry et al. adversarial training: 10 steps of 2/255 from a uniform random start.
PGD_AT10 = MappingProxyType(dict(eps=EPS, step=2 / 255, steps=10, norm="linf", loss="ce", random_start="uniform"))
#: TRADES inner maximisation: 10 steps of 2/255 on KL(f(x) || f(x')) from x + 0.001 N(0, 1).
TRADES10 = MappingProxyType(dict(eps=EPS, step=2 / 255, steps=10, norm="linf", loss="kl", random_start="trades"))
#: The attacks of Table 1, by the name used in the table.
TABLE1 = MappingProxyType({"PGD-20": PGD20, "CW-20": CW20})

_NORMS = ("linf", "l2")
_LOSSES = ("ce", "cw", "kl")
_STARTS = ("uniform", "trades")


# --------------------------------------------------------------------------- losses
def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{k != y} z_k - z_y`` per sample."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.amax(1) - true


def attack_loss(loss: str, logits: torch.Tensor, y: torch.Tensor | None = None,
                clean_logits: torch.Tensor | None = None, kappa: float = 0.0) -> torch.Tensor:
    """Per-sample attack objective (to be maximised) of ``pgd``'s ``loss`` mode.

    ``"ce"``: ``-log p_y``; ``"cw"``: ``min(max_{k!=y} z_k - z_y, kappa)``;
    ``"kl"``: ``KL(p || q) = sum_k p_k (log p_k - log q_k)`` with ``p = softmax(clean_logits)``
    and ``q = softmax(logits)`` (the gradient with respect to ``log q`` is ``-p``, as for
    TRADES' ``nn.KLDivLoss(log q, p)``). ``logits`` (N, K); ``y`` (N,) integer labels in [0, K)
    for ``"ce"`` / ``"cw"``; ``clean_logits`` of the shape of ``logits`` for ``"kl"``.
    """
    loss = checks.choice(loss, "loss", _LOSSES)
    _check_logits(logits, "logits")
    if loss == "kl":
        _check_logits(clean_logits, "clean_logits", logits.shape)
    else:
        check_labels(y, len(logits), logits.shape[1])
    checks.number(kappa, "kappa (CW confidence)", low=0.0, finite=False)
    return _attack_loss(loss, logits, y, clean_logits, kappa)


def _check_logits(t: object, name: str, shape: torch.Size | None = None) -> None:
    """Raise unless ``t`` is a floating tensor (N, K) (of ``shape`` when given)."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise checks.ArgumentTypeError(f"{name} must be a floating tensor (N, K), got {checks.describe(t)}")
    if t.ndim != 2 or (shape is not None and t.shape != shape):
        want = f"of shape {tuple(shape)} like logits" if shape is not None else "(N, K)"
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")


def _attack_loss(loss: str, logits: torch.Tensor, y: torch.Tensor | None, clean_logits: torch.Tensor | None,
                 kappa: float) -> torch.Tensor:
    """:func:`attack_loss` on checked arguments (every PGD step: no device sync)."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "cw":
        return _margin(logits, y).clamp_max(kappa)
    if loss == "kl":
        p, log_p = F.softmax(clean_logits, dim=1), F.log_softmax(clean_logits, dim=1)
        return (p * (log_p - F.log_softmax(logits, dim=1))).sum(1)
    raise ValueError(f"unknown loss {loss!r}; use one of {_LOSSES}")


# --------------------------------------------------------------------------- validation
def check_labels(y: object, n: int, num_classes: int | None = None, name: str = "y") -> None:
    """Raise unless ``y`` is an integer label tensor of ``n`` labels in ``[0, num_classes)`` (only ``>= 0``
    when ``num_classes`` is None): :func:`cckl_core.checks.labels` for a model's outputs."""
    source = f"for a model with {num_classes} outputs" if num_classes is not None else None
    checks.labels(y, n, num_classes, name, tensor=True, source=source)


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, step: float, steps: int,
           norm: str, loss: str, random_start: bool | str | None, restarts: int,
           kappa: float) -> tuple[str, str, str | None]:
    """Check :func:`pgd`'s arguments; return the norm and loss (lower case) and the random start (None: none)."""
    checks.images(model, x)
    norm_l = checks.choice(norm, "norm", _NORMS, hint="'linf' or 'l2'")
    loss_l = checks.choice(loss, "loss", _LOSSES, hint="'ce' (cross-entropy), 'cw' (CW margin) or 'kl' (TRADES)")
    checks.number(eps, "eps", low=0.0, hint="give it in pixel units (inputs in [0, 1]), e.g. 8/255")
    if norm_l == "linf" and eps > 1:
        raise ValueError(f"L-inf eps={eps} exceeds the [0, 1] pixel range; give it in pixel units, e.g. 8/255 not 8")
    max_l2 = math.sqrt(x.shape[1:].numel())
    if norm_l == "l2" and eps > max_l2:
        raise ValueError(f"L2 eps={eps} exceeds the diameter sqrt(d)={max_l2:.1f} of the image box; "
                         "give it in pixel units (inputs in [0, 1])")
    checks.number(step, "step", low=0.0, low_open=True, hint="give it in pixel units, e.g. 2/255")
    checks.count(steps, "steps")
    checks.count(restarts, "restarts")
    checks.number(kappa, "kappa (CW confidence)", low=0.0, finite=False)
    if random_start is False or random_start is None:
        start = None
    elif random_start is True:
        start = "trades" if loss_l == "kl" else "uniform"
    elif isinstance(random_start, str) and random_start.lower() in _STARTS:
        start = random_start.lower()
    else:
        raise ValueError(f"random_start must be False, True, 'uniform' or 'trades'; got {random_start!r}")
    if restarts > 1 and start is None:
        raise ValueError(f"restarts={restarts} repeats the same deterministic attack without a random start; "
                         "pass random_start=True (or restarts=1)")
    if loss_l == "kl" and start is None:
        raise ValueError("loss='kl' has zero gradient at x' = x, so PGD would not move; "
                         "pass random_start=True (the TRADES start x + 0.001*N(0,1))")
    if loss_l != "kl":
        check_labels(y, len(x))
    return norm_l, loss_l, start


# --------------------------------------------------------------------------- PGD
def _random_start(x: torch.Tensor, eps: float, norm: str, kind: str, gen: torch.Generator | None) -> torch.Tensor:
    """The random start of kind ``"trades"`` or ``"uniform"`` (see the module docstring)."""
    def draw(fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """``fn(shape)`` drawn on the CPU with ``gen`` (device-independent), then moved to x's device."""
        return fn(*args, x.shape, generator=gen, dtype=x.dtype).to(x.device)

    if kind == "trades":
        return x + 0.001 * draw(lambda shape, **kw: torch.randn(shape, **kw))
    if norm == "linf":
        noise = draw(lambda shape, **kw: torch.rand(shape, **kw)) * (2 * eps) - eps
        return (x + noise).clamp(0, 1)
    direction = draw(lambda shape, **kw: torch.randn(shape, **kw))
    direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
    radius = torch.rand(len(x), generator=gen, dtype=x.dtype).to(x.device).view(-1, *[1] * (x.ndim - 1))
    return (x + radius * eps * direction).clamp(0, 1)


def _pgd_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, start: torch.Tensor, eps: float, step: float,
             steps: int, norm: str, loss: str, kappa: float, clean_logits: torch.Tensor | None) -> torch.Tensor:
    """One PGD run from ``start`` on checked arguments; the last iterate."""
    shape = (-1, *[1] * (x.ndim - 1))
    x_adv = start.detach()
    for t in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        if t == 0 and loss != "kl":
            check_labels(y, len(x), logits.shape[1])
        objective = _attack_loss(loss, logits, y, clean_logits, kappa).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        x_adv = x_adv.detach()
        with torch.no_grad():
            if norm == "linf":
                x_adv = x_adv + step * grad.sign()
                delta = (x_adv - x).clamp(-eps, eps)
            else:
                grad_norm = grad.flatten(1).norm(dim=1).view(shape)
                x_adv = x_adv + step * grad / grad_norm.clamp_min(1e-12)
                delta = x_adv - x
                delta_norm = delta.flatten(1).norm(dim=1).view(shape)
                delta = delta * torch.clamp(eps / delta_norm, max=1.0)  # eps / 0 = inf -> factor 1
            x_adv = (x + delta).clamp(0, 1)
    return x_adv


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float = EPS, step: float = 2 / 255,
        steps: int = 20, norm: str = "linf", loss: str = "ce", random_start: bool | str = False,
        restarts: int = 1, kappa: float = 0.0, seed: int | None = None) -> torch.Tensor:
    """Projected gradient ascent on ``loss`` within the ``norm`` ball of radius ``eps`` around ``x``.

    Update, per step (``g = grad_{x'} sum_i L_i(x')``, projection and clamp every step):

        linf: x' <- clip_[0,1]( x + clip_[-eps,eps](x' + step * sign(g) - x) )
        l2:   x' <- clip_[0,1]( x + Pi_eps(x' + step * g / ||g||_2 - x) ),  Pi_eps(d) = d min(1, eps/||d||_2)

    Args:
        model: classifier returning logits; run in eval mode, caller's mode restored.
        x: images in [0, 1], (N, C, H, W), finite, C matching the model's first convolution.
        y: integer labels (N,) in [0, K) for a model with K outputs; ignored (may be None) for ``loss="kl"``.
        eps, step: radius and step length in pixel units (L-inf: 8/255 and 2/255 as the paper).
        steps: number of PGD iterations. norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (cross-entropy), ``"cw"`` (maximise ``min(max_{k!=y} z_k - z_y, kappa)``,
            i.e. minimise CW's ``max(z_y - max_{k!=y} z_k, -kappa)``; the paper's ``c = 5e2``
            has no role in this hard-constraint formulation), or ``"kl"`` (``KL(f(x)||f(x'))``).
        random_start: ``False``, ``True``, ``"uniform"`` or ``"trades"`` (see the module docstring;
            ``True`` = ``"trades"`` for ``loss="kl"``, else ``"uniform"``). Required for ``"kl"``.
        restarts: independent random starts; per sample the worst case is kept: a misclassified
            example beats a correctly classified one, then the higher loss wins (for ``"kl"``:
            the higher KL). Needs a random start.
        kappa: CW confidence (>= 0), used by ``loss="cw"`` only.
        seed: seed of the CPU generator for the random start (None: the global RNG).

    Returns:
        The adversarial examples, detached, same shape, dtype and device as ``x``.
    """
    norm, loss, start_kind = _check(model, x, y, eps, step, steps, norm, loss, random_start, restarts, kappa)
    if seed is not None:
        checks.integer(seed, "seed")
    if len(x) == 0:
        return x.detach().clone()
    x = x.detach()
    y = y.detach().long() if isinstance(y, torch.Tensor) else y
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with eval_mode(model):
        clean_logits = None
        if loss == "kl":
            with torch.no_grad():
                clean_logits = model(x)
        best = None
        for _ in range(restarts):
            start = x if start_kind is None else _random_start(x, eps, norm, start_kind, gen)
            x_adv = _pgd_run(model, x, y, start, eps, step, steps, norm, loss, kappa, clean_logits)
            if restarts == 1:
                return x_adv
            best = _worst_case(model, x_adv, y, loss, clean_logits, kappa, best)
    return best[0]


def _worst_case(model: nn.Module, x_adv: torch.Tensor, y, loss: str, clean_logits, kappa: float, best):
    """Per sample, the worse of ``x_adv`` and ``best`` (``(examples, misclassified, loss)`` or None): a
    misclassified example beats a correctly classified one, then the higher loss wins."""
    with torch.no_grad():
        logits = model(x_adv)
        value = _attack_loss(loss, logits, y, clean_logits, kappa)
        wrong = logits.argmax(1) != y if loss != "kl" else torch.zeros_like(value, dtype=torch.bool)
    if best is None:
        return x_adv, wrong, value
    better = (wrong & ~best[1]) | ((wrong == best[1]) & (value > best[2]))
    mask = better.view(-1, *[1] * (x_adv.ndim - 1))
    return torch.where(mask, x_adv, best[0]), torch.where(better, wrong, best[1]), torch.where(better, value, best[2])


# --------------------------------------------------------------------------- AutoAttack
def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = EPS, norm: str = "Linf",
               version: str = "standard", seed: int = 0, n_classes: int | None = None) -> torch.Tensor:
    """AutoAttack (Croce & Hein 2020) through ``torchattacks.AutoAttack``: a stronger evaluation
    than the paper's PGD-20 / CW-20, beyond the paper.

    ``version``: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square; each later attack only runs on
    the samples still correctly classified), ``"plus"`` or ``"rand"`` (APGD-CE and APGD-DLR with
    EOT; meant for randomised models). ``n_classes`` defaults to the model's output width.
    Runs in eval mode (caller's mode restored); the parameters' ``requires_grad`` flags and
    ``.grad`` fields and the global RNG state are left as they were (torchattacks reseeds the
    global RNG and FAB calls ``backward``).
    """
    try:
        import torchattacks
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("autoattack needs torchattacks: pip install torchattacks "
                          "(or pip install 'cckl-core[attacks]')") from err
    norm = {"linf": "Linf", "l2": "L2"}[checks.choice(norm, "norm", ("linf", "l2"), hint="'Linf' or 'L2'")]
    if not isinstance(version, str) or version not in ("standard", "plus", "rand"):
        raise ValueError(f"unknown AutoAttack version {version!r}; use 'standard', 'plus' or 'rand'")
    checks.integer(seed, "seed")
    if n_classes is not None:
        checks.count(n_classes, "n_classes")
    _check(model, x, y, eps, 1.0, 1, norm, "ce", False, 1, 0.0)
    if len(x) == 0:
        return x.detach().clone()
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        with eval_mode(model), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            for p in params:
                p.requires_grad_(False)
            if n_classes is None:
                with torch.no_grad():
                    n_classes = model(x[:1]).shape[1]
            check_labels(y, len(x), n_classes)
            if n_classes < 4:
                raise ValueError(f"AutoAttack's DLR losses need at least 4 classes, the model has {n_classes}; "
                                 "use pgd() for fewer classes")
            attack = torchattacks.AutoAttack(model, norm=norm, eps=eps, version=version, n_classes=n_classes,
                                             seed=seed)
            x_adv = attack(x.detach(), y.detach())
    finally:
        for p, flag, g in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = g
    return x_adv.detach()


# --------------------------------------------------------------------------- evaluation
AttackSpec = None | Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | Mapping
_Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def as_attack(attack: AttackSpec) -> _Attack | None:
    """``None`` (clean), a callable ``(model, x, y) -> x_adv``, or a mapping of :func:`pgd` keyword arguments."""
    if attack is None or callable(attack):
        return attack
    if isinstance(attack, Mapping):
        bad = set(attack) - {"eps", "step", "steps", "norm", "loss", "random_start", "restarts", "kappa", "seed"}
        if bad:
            raise ValueError(f"unknown pgd arguments {sorted(bad)} in attack spec; see cckl_core.attacks.pgd")
        return functools.partial(pgd, **attack)
    raise ValueError(f"attack must be None, a callable (model, x, y) -> x_adv or a dict of pgd arguments; "
                     f"got {type(attack).__name__}")


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (else buffer); the CPU if it has neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def correctness(model: nn.Module, batches: Iterable, attacks: Mapping[str, AttackSpec], progress: bool = True,
                device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Per-sample correctness (bool CPU tensors, in batch order) under each attack, in one pass.

    ``attacks`` maps a name to an attack spec (see :func:`as_attack`); the clean prediction is
    always computed, once, under the name ``"clean"`` (a ``None`` spec under another name
    reuses it). Batches are moved to ``device`` (default: the model's device). The model is
    in eval mode throughout; the caller's mode is restored.
    """
    from .devices import resolve_device

    checks.module(model)
    if not isinstance(attacks, Mapping):
        raise checks.ArgumentTypeError(f"attacks must be a mapping of names to attack specs, got "
                                       f"{checks.describe(attacks)}; e.g. attacks.TABLE1 or {{}}")
    checks.flag(progress, "progress")
    specs = {name: as_attack(spec) for name, spec in attacks.items()}
    device = _model_device(model) if device is None else resolve_device(device)
    out: dict[str, list[torch.Tensor]] = {"clean": [], **{name: [] for name in specs}}
    iterator = batches
    if progress:
        from tqdm.auto import tqdm
        total = len(batches) if hasattr(batches, "__len__") else None
        iterator = tqdm(batches, total=total, desc="accuracy (" + ", ".join(out) + ")", leave=False)
    with eval_mode(model):
        for x, y in iterator:
            checks.images(model, x)
            x, y = x.to(device), checks.as_labels(y, "y").to(device)
            with torch.no_grad():
                logits = model(x)
            check_labels(y, len(x), logits.shape[1])
            clean = (logits.argmax(1) == y).cpu()
            out["clean"].append(clean)
            for name, attack in specs.items():
                if attack is None:
                    if name != "clean":
                        out[name].append(clean)
                    continue
                x_adv = attack(model, x, y)
                with torch.no_grad():
                    out[name].append((model(x_adv).argmax(1) == y).cpu())
    if not out["clean"]:
        raise ValueError("batches yielded no data; cannot compute an accuracy")
    return {name: torch.cat(parts) for name, parts in out.items()}


def accuracies(model: nn.Module, batches: Iterable, attacks: Mapping[str, AttackSpec], progress: bool = True,
               device: torch.device | str | None = None) -> dict[str, float]:
    """Accuracy (fraction in [0, 1]) clean (key ``"clean"``) and under each named attack, in one
    pass over ``batches`` (clean predictions computed once). E.g. Table 1:
    ``accuracies(model, Batches(test), TABLE1)`` -> ``{"clean", "PGD-20", "CW-20"}``.
    """
    masks = correctness(model, batches, attacks, progress, device)
    return {name: m.double().mean().item() for name, m in masks.items()}


def robust_accuracy(model: nn.Module, batches: Iterable, attack: AttackSpec = None, progress: bool = True,
                    device: torch.device | str | None = None) -> float:
    """Accuracy (fraction in [0, 1]) on ``attack(model, x, y)`` over the ``(x, y)`` batches.

    ``attack``: ``None`` (clean accuracy), a callable ``(model, x, y) -> x_adv``, or a dict of
    :func:`pgd` keyword arguments such as :data:`PGD20` or :data:`CW20`.
    """
    if attack is None:
        return accuracies(model, batches, {}, progress, device)["clean"]
    return accuracies(model, batches, {"attack": attack}, progress, device)["attack"]
