"""CCKL, KL/JS divergences and the terms of Theorem 3.1. All values in nats.

Probabilities are rows over the last axis. ``0 * log 0`` is taken as 0 (``xlogy``),
so one-hot rows and exact zeros are fine wherever the divergence itself is finite.

Inputs are checked, in O(N K), so that a mistake raises a ``ValueError`` instead of
returning a wrong number: probability rows must be finite, non-negative and sum to 1
within ``1e-4 + K * eps`` (``eps`` the rounding unit of the input's dtype: 1.2e-7 for
float32, 9.8e-4 for float16), which admits the rounding of a float32 ``softmax`` and
rejects logits, log-probabilities or a scaled copy; ``log_probs`` must equal
``log(probs)`` within the same tolerance (after ``exp``); labels must be integer class
indices in ``[0, K)``, one per row (strings, floats, even whole ones, and bools are refused);
``num_classes`` must be a positive ``int``. The checks live in :mod:`cckl_core.checks`; a
wrong type raises a ``TypeError`` (that is also a ``ValueError``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import checks

#: Probability rows: a tensor, an array or (nested) lists of numbers.
ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]
#: Integer class indices: a tensor, an array or a list of ints.
LabelsLike = torch.Tensor | np.ndarray | Sequence[int]


def _labels(labels: LabelsLike, n: int | None = None, num_classes: int | None = None,
            name: str = "labels") -> torch.Tensor:
    """``labels`` as a 1-D long tensor of class indices (``n`` of them, in ``[0, num_classes)`` when given), checked."""
    return checks.labels(labels, n, num_classes, name).long()


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise ``KL(p || q)`` of checked rows."""
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)


def _pair(p: ArrayLike, q: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` and ``q`` checked as probability rows with the same classes and broadcastable shapes."""
    p, q = checks.probabilities(p, "p"), checks.probabilities(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q must have the same number of classes, got {p.shape[-1]} and {q.shape[-1]}")
    try:
        torch.broadcast_shapes(p.shape, q.shape)
    except RuntimeError:
        raise ValueError(f"p and q must have broadcastable shapes (the same rows), "
                         f"got {tuple(p.shape)} and {tuple(q.shape)}") from None
    return p, q


def kl(p: ArrayLike, q: ArrayLike) -> torch.Tensor:
    """``KL(p || q) = sum_k p_k (log p_k - log q_k)`` row-wise over the last axis, nats.

    ``p`` and ``q`` are probability rows (checked, see the module docstring); ``inf`` where
    ``q_k = 0 < p_k``.
    """
    return _kl(*_pair(p, q))


def js(p: ArrayLike, q: ArrayLike) -> torch.Tensor:
    """``JS(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m)``, ``m = (p + q) / 2``, nats (at most log 2)."""
    p, q = _pair(p, q)
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def _class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Number of samples of each class."""
    return torch.bincount(labels, minlength=num_classes)


def _num_classes(num_classes: int | None, default: int | None) -> int | None:
    """``num_classes`` checked to be a positive int; ``default`` when it is None."""
    return default if num_classes is None else checks.count(num_classes, "num_classes")


def cross_partner_counts(labels: LabelsLike, num_classes: int | None = None) -> torch.Tensor:
    """For each sample ``i``, the number of samples ``j`` with ``y_j != y_i``: ``N - n_{y_i}``."""
    labels = _labels(labels, num_classes=_num_classes(num_classes, None))
    k = num_classes or (int(labels.max()) + 1 if len(labels) else 1)
    return len(labels) - _class_counts(labels, k)[labels]


def cckl(probs: ArrayLike, labels: LabelsLike, num_classes: int | None = None,
         log_probs: ArrayLike | None = None) -> float:
    """Exact Cross-Category KL: the mean of ``KL(p_i || p_j)`` over ALL ordered pairs with ``y_i != y_j``.

    With ``S = sum_j log p_j`` and ``S_c`` its part over samples of class ``c``,
    ``sum_{j: y_j != y_i} KL(p_i || p_j) = m_i * sum_k p_ik log p_ik - p_i . (S - S_{y_i})``
    where ``m_i = N - n_{y_i}``; the mean divides the total by ``sum_i m_i``.
    Cost O(N K) instead of O(N^2 K). Computed in float64. Pass ``log_probs`` (e.g.
    ``log_softmax`` of the logits) to avoid ``log 0`` for saturated outputs.

    ``probs`` (N, K) are probability rows and ``labels`` (N,) integer classes in
    ``[0, num_classes)`` (default ``K``); both are checked (module docstring), so
    logits, a scaled copy or float labels raise ``ValueError``.
    """
    p = checks.probabilities(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {tuple(p.shape)}")
    num_classes = _num_classes(num_classes, p.shape[1])
    labels = _labels(labels, p.shape[0], num_classes).to(p.device)
    p = p.double()
    if log_probs is None:
        logp = p.log()
    else:
        logp = checks.as_float_tensor(log_probs, "log_probs")
        if logp.shape != p.shape:
            raise ValueError(f"log_probs must have the shape of probs {tuple(p.shape)}, got {tuple(logp.shape)}")
        tol = checks.tolerance(logp.dtype, p.shape[1])
        logp = logp.double().to(p.device)
        if len(p):
            nan, gap = torch.stack([(torch.isnan(logp) | (logp == torch.inf)).any().double(),
                                    (logp.exp() - p).abs().amax()]).tolist()
            if nan or gap > tol:
                raise ValueError(f"log_probs must be log(probs) (max |exp(log_probs) - probs| = {gap:.3g}, "
                                 f"tolerance {tol:.1e}); pass log_softmax(logits) of the logits behind probs")
    return _cckl(p, logp, labels, num_classes)


def _cckl(p: torch.Tensor, logp: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """:func:`cckl` on checked float64 inputs."""
    k = p.shape[1]
    neg_entropy = torch.special.xlogy(p, p).sum(1)
    # (N, K): sum of log p_j over j of other classes. log p_j = -inf (p_j = 0) is counted apart:
    # subtracting a class's own -inf from a total of -inf would give NaN instead of -inf.
    neg_inf = torch.isneginf(logp)
    zeros = torch.zeros(num_classes, k, dtype=torch.float64, device=p.device)
    s_class = zeros.index_add(0, labels, torch.where(neg_inf, 0.0, logp))
    n_inf_class = zeros.index_add(0, labels, neg_inf.double())
    s_other = s_class.sum(0, keepdim=True) - s_class[labels]
    n_inf_other = n_inf_class.sum(0, keepdim=True) - n_inf_class[labels]
    s_other = torch.where(n_inf_other > 0, -torch.inf, s_other)
    m = (len(labels) - _class_counts(labels, num_classes)[labels]).to(p)
    total_pairs = m.sum()
    if total_pairs == 0:
        raise ValueError("CCKL needs samples of at least two classes")
    # p_ik * s_other: where p_ik == 0 the product is 0 even if s_other is -inf
    cross = torch.where(p > 0, p * s_other, torch.zeros((), dtype=p.dtype, device=p.device)).sum(1)
    return float(((m * neg_entropy - cross).sum() / total_pairs).item())


def sample_cross_pairs(labels: LabelsLike, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ordered pairs ``(i, j)`` drawn uniformly (with replacement) from all pairs with ``y_i != y_j``.

    ``i`` is drawn with probability proportional to its number of cross-class partners,
    then ``j`` uniformly among them: that is uniform over the ordered cross-class pairs.
    """
    labels = _labels(labels).cpu().numpy()
    checks.count(n, "n", minimum=0)
    checks.integer(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("cross-class pairs need at least two classes")
    partners = len(labels) - counts[inverse]
    i = rng.choice(len(labels), size=n, p=partners / partners.sum())
    # samples grouped by class: class c occupies positions [offset_c, offset_c + count_c)
    order = np.argsort(inverse, kind="stable")
    offset = np.concatenate([[0], np.cumsum(counts)[:-1]])
    r = rng.integers(0, partners[i])  # uniform rank among i's cross-class partners
    ci = inverse[i]
    position = np.where(r < offset[ci], r, r + counts[ci])  # skip over i's own class
    return i.astype(np.int64), order[position].astype(np.int64)


def smooth_labels(labels: LabelsLike, num_classes: int, alpha: float) -> torch.Tensor:
    """Label smoothing ``y_LS = alpha * onehot(y) + (1 - alpha) / K`` (float64 rows)."""
    checks.number(alpha, "alpha", 0.0, 1.0)
    num_classes = checks.count(num_classes, "num_classes")
    onehot = torch.nn.functional.one_hot(_labels(labels, num_classes=num_classes), num_classes).double()
    return alpha * onehot + (1.0 - alpha) / num_classes


def theorem_terms(probs: ArrayLike, labels: LabelsLike, alpha: float = 0.9,
                  num_classes: int | None = None) -> dict[str, float | bool]:
    """Both sides of Theorem 3.1 with label smoothing ``alpha``.

    Returns ``js`` = E over cross-class ordered pairs of ``JS(y_i || y_j)``, ``L`` =
    E ``KL(y || f(x))``, ``coL`` = E ``KL(f(x) || y)`` and ``bound = js - L - coL``,
    twice: with plain means over samples (``L``, ``coL``, ``bound``; the paper's eq. 4)
    and with each sample weighted by its number of cross-class partners ``N - n_{y_i}``
    (``L_pair``, ``coL_pair``, ``bound_pair``). Averaging the per-pair inequality (eq. 22,
    last term corrected to ``KL(f_i || y_i) + KL(f_j || y_j)``) over ordered cross pairs
    gives ``cckl >= bound_pair`` exactly; on a class-balanced set the weights are equal
    and both bounds coincide. ``holds`` / ``holds_pair`` compare against ``cckl``.
    """
    checks.number(alpha, "alpha", 0.0, 1.0)
    p = checks.probabilities(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {tuple(p.shape)}")
    k = _num_classes(num_classes, p.shape[1])
    if k != p.shape[1]:
        raise ValueError(f"num_classes={k} but probs has {p.shape[1]} columns; they must agree")
    p = p.double()
    labels = _labels(labels, len(p), k).to(p.device)
    cckl_value = _cckl(p, p.log(), labels, k)  # first: raises if fewer than two classes are present
    y = smooth_labels(labels, k, alpha).to(p.device)
    l_each, col_each = _kl(y, p), _kl(p, y)
    w = cross_partner_counts(labels, k).double()
    w = w / w.sum()
    # JS between two smoothed one-hots of different classes is the same for every pair
    js_cross = float(js(smooth_labels(torch.tensor([0]), k, alpha), smooth_labels(torch.tensor([1]), k, alpha))[0])
    out = {
        "alpha": alpha,
        "js": js_cross,
        "L": float(l_each.mean()),
        "coL": float(col_each.mean()),
        "L_pair": float((w * l_each).sum()),
        "coL_pair": float((w * col_each).sum()),
        "cckl": cckl_value,
    }
    out["bound"] = out["js"] - out["L"] - out["coL"]
    out["bound_pair"] = out["js"] - out["L_pair"] - out["coL_pair"]
    out["holds"] = out["cckl"] >= out["bound"]
    out["holds_pair"] = out["cckl"] >= out["bound_pair"] - 1e-12
    return out


def pair_inequality_sides(p_i: ArrayLike, p_j: ArrayLike, y_i: ArrayLike,
                          y_j: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair inequality behind Theorem 3.1 (appendix eq. 22, corrected), row-wise.

    ``lhs = JS(y_i || y_j)``;
    ``rhs = 1/2 [KL(f_i||f_j) + KL(f_j||f_i) + KL(y_i||f_i) + KL(y_j||f_j) + KL(f_i||y_i) + KL(f_j||y_j)]``.
    """
    lhs = js(y_i, y_j)
    rhs = 0.5 * (kl(p_i, p_j) + kl(p_j, p_i) + kl(y_i, p_i) + kl(y_j, p_j) + kl(p_i, y_i) + kl(p_j, y_j))
    return lhs, rhs
