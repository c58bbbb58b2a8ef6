"""Input-space Fisher information of a classifier's softmax output, and G1 / G2.

For one input ``x`` (dimension ``d``) with class probabilities ``p = softmax(z(x))`` and
logit Jacobian ``J = dz/dx`` (``K x d``), the Fisher information with respect to ``x`` is

    F_x = sum_k p_k g_k g_k^T,   g_k = grad_x log p_k(x) = J_k - p^T J,
        = J^T (diag p - p p^T) J.

It is never materialised (``d = 3072``). With ``A = diag(sqrt p) (I - 1 p^T) J`` (rows
``sqrt(p_k) g_k``), ``F = A^T A``, so the non-zero eigenvalues of ``F`` are those of the
``K x K`` Gram matrix ``G = A A^T``:

    ||F||_F = ||G||_F,   ||F||_2 = lambda_max(G),   trace F = ||A||_F^2 = trace G,

and the top eigenvector of ``F`` is ``A^T u / ||A^T u||`` for the top eigenvector ``u`` of
``G``. ``J`` costs one forward pass and ``K`` vector-Jacobian products (``torch.func.vjp``).
Units: inputs in [0, 1] pixel scale; ``F`` in nats per (pixel unit)^2.

Inputs are checked by :func:`cckl_core.checks.images`: a
floating batch ``(N, C, H, W)`` of finite values in [0, 1] whose channels, size and dtype
fit the model (``delta`` of :func:`g1` may leave [0, 1]). An empty batch gives empty
results.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.func import functional_call, jvp, vjp

from . import checks
from .models import eval_mode

# torch's forward-mode AD scripts its own JVP decompositions on first use, which warns that
# torch.jit.script is deprecated: torch's internals, nothing a user of jvp can act on.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def _chunks(n: int, batch_size: int) -> range:
    """Chunk starts; one (empty) chunk for ``n = 0`` so that empty inputs give empty, well-shaped results."""
    checks.count(batch_size, "batch_size")
    return range(0, max(n, 1), batch_size)


def as_function(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> model(x)`` with the parameters detached, so torch.func transforms build no graph to them."""
    checks.module(model)
    state = {k: v.detach() for k, v in model.state_dict(keep_vars=True).items()}
    return lambda inp: functional_call(model, state, (inp,))


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``z`` (B, K) and the per-sample logit Jacobian ``J`` (B, K, *x.shape[1:]).

    One forward pass (``torch.func.vjp``) and ``K`` calls of its pullback with the one-hot
    cotangents ``e_k`` for every sample at once. Valid because samples do not interact in
    eval mode. (``vmap`` over the pullback gives the same numbers but measured 2-4x slower
    on the CPU, see ``benchmarks/fisher.py``.) ``x`` is checked by :func:`cckl_core.checks.images`.
    """
    checks.images(model, x)
    return _logit_jacobian(model, x)


def _logit_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`logit_jacobian` on a checked ``x``."""
    x = x.detach()
    logits, pullback = vjp(as_function(model), x)
    eye = torch.eye(logits.shape[1], dtype=logits.dtype, device=logits.device)
    jac = torch.stack([pullback(eye[k].expand_as(logits))[0] for k in range(logits.shape[1])], dim=1)
    return logits.detach(), jac


def fisher_factor(logits: torch.Tensor, jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` (B, K) and ``A = diag(sqrt p)(I - 1 p^T) J`` flattened to (B, K, d), so ``F = A^T A``.

    ``logits`` (B, K) and ``jac`` (B, K, ...) are floating tensors of :func:`logit_jacobian`.
    """
    for name, t in (("logits", logits), ("jac", jac)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise checks.ArgumentTypeError(f"{name} must be a floating tensor, got {checks.describe(t)}")
    if logits.ndim != 2 or jac.ndim < 3 or jac.shape[:2] != logits.shape:
        raise ValueError(f"logits must be (B, K) and jac (B, K, ...) with the same B and K, got "
                         f"{tuple(logits.shape)} and {tuple(jac.shape)}; pass the outputs of logit_jacobian")
    p = torch.softmax(logits, dim=1)
    jac = jac.flatten(2)
    g = jac - torch.einsum("bk,bkd->bd", p, jac)[:, None, :]  # g_k = grad log p_k
    return p, p.sqrt()[:, :, None] * g


def _stats_from_factor(a: torch.Tensor, eigenvector: bool) -> dict[str, torch.Tensor]:
    """Frobenius norm, spectral norm, trace (and top eigenvector) of ``F = A^T A`` through ``G = A A^T``."""
    gram = (a @ a.transpose(1, 2)).double()  # (B, K, K)
    evals, evecs = torch.linalg.eigh(gram)
    evals = evals.clamp_min(0.0)
    out = {
        "frobenius": torch.linalg.matrix_norm(gram, "fro"),
        "spectral": evals[:, -1],
        "trace": torch.diagonal(gram, dim1=1, dim2=2).sum(1),
    }
    if eigenvector:
        v = torch.einsum("bkd,bk->bd", a.double(), evecs[:, :, -1])
        out["eigenvector"] = (v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)).to(a.dtype)
    return out


def fisher_stats(model: nn.Module, x: torch.Tensor, eigenvector: bool = False, batch_size: int = 128,
                 progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-sample Frobenius norm, spectral norm and trace of the input-space Fisher ``F_x``.

    Returns a dict of CPU float64 tensors of shape (N,): ``frobenius`` = ||F_x||_F,
    ``spectral`` = lambda_max(F_x), ``trace`` = tr F_x, and ``probs`` (N, K); with
    ``eigenvector=True`` also the unit top eigenvector (N, *x.shape[1:]). Computed through
    the K x K Gram matrix (see module docstring), in chunks of ``batch_size``, with the
    model in eval mode and the caller's mode restored. A model that returns probabilities, not
    logits, is refused (:func:`cckl_core.checks.logits`).
    """
    checks.images(model, x)
    checks.flag(eigenvector, "eigenvector")
    checks.flag(progress, "progress")
    parts: dict[str, list[torch.Tensor]] = {}
    chunks = _chunks(len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="Fisher statistics", leave=False)
    with eval_mode(model):
        for s in chunks:
            logits, jac = _logit_jacobian(model, x[s:s + batch_size])
            if s == 0:
                checks.logits(model, logits)  # a model returning probabilities would give a silently wrong F_x
            p, a = fisher_factor(logits, jac)
            stats = _stats_from_factor(a, eigenvector)
            stats["probs"] = p
            for key, val in stats.items():
                parts.setdefault(key, []).append(val.detach().cpu())
    out = {k: torch.cat(v) for k, v in parts.items()}
    for k in ("frobenius", "spectral", "trace"):
        out[k] = out[k].double()
    if eigenvector:
        out["eigenvector"] = out["eigenvector"].reshape(len(x), *x.shape[1:])
    return out


def materialized_fisher(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The full ``d x d`` Fisher ``J^T (diag p - p p^T) J`` per sample (B, d, d). For checks and baselines only."""
    checks.images(model, x)
    with eval_mode(model):
        logits, jac = _logit_jacobian(model, x)
    p = torch.softmax(logits, 1)
    jac = jac.flatten(2)
    middle = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return jac.transpose(1, 2) @ middle @ jac


def _g1_and_logits(model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """G1 per sample and the logits at ``x`` (the JVP's primal output), in the model's current mode."""
    logits, jd = jvp(as_function(model), (x.detach(),), (delta.detach(),))
    p = torch.softmax(logits, 1)
    gd = jd - (p * jd).sum(1, keepdim=True)  # g_k . delta
    return 0.5 * (p * gd.square()).sum(1), logits


def g1(model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``G1 = 1/2 delta^T F_x delta = 1/2 sum_k p_k (g_k . delta)^2`` per sample (B,), nats.

    ``g_k . delta = (J delta)_k - p . (J delta)``: one forward-mode JVP per batch. Eval
    mode, caller's mode restored.
    """
    checks.images(model, x)
    checks.images(model, delta, "delta", unit_range=False)
    if x.shape != delta.shape:
        raise ValueError(f"x and delta must have the same shape, got {tuple(x.shape)} and {tuple(delta.shape)}")
    with eval_mode(model):
        return _g1_and_logits(model, x, delta)[0]


def kl_g1_g2(model: nn.Module, x_i: torch.Tensor, x_j: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per pair: ``kl`` = KL(f(x_i) || f(x_j)), ``g1`` = 1/2 (x_j - x_i)^T F_{x_i} (x_j - x_i), ``g2 = kl - g1``.

    ``G2`` collects every Taylor term of order >= 3 and may be negative. One JVP at
    ``x_i`` (which also gives ``f(x_i)``) and one forward pass at ``x_j`` per pair.
    CPU float64 (N,).
    """
    checks.images(model, x_i, "x_i")
    checks.images(model, x_j, "x_j")
    if x_i.shape != x_j.shape:
        raise ValueError(f"x_i and x_j must have the same shape, got {tuple(x_i.shape)} and {tuple(x_j.shape)}")
    kls, g1s = [], []
    with eval_mode(model):
        for s in _chunks(len(x_i), batch_size):
            a, b = x_i[s:s + batch_size], x_j[s:s + batch_size]
            g1_ab, logits_a = _g1_and_logits(model, a, b - a)
            with torch.no_grad():
                logp_b = torch.log_softmax(model(b), 1).double()
            logp_a = torch.log_softmax(logits_a.detach(), 1).double()
            kls.append((logp_a.exp() * (logp_a - logp_b)).sum(1).cpu())
            g1s.append(g1_ab.detach().double().cpu())
    kl_val, g1_val = torch.cat(kls), torch.cat(g1s)
    return {"kl": kl_val, "g1": g1_val, "g2": kl_val - g1_val}
