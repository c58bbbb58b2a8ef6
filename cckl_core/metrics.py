"""CCKL, KL/JS divergences and the terms of Theorem 3.1. All values in nats.

Probabilities are rows over the last axis. ``0 * log 0`` is taken as 0 (``xlogy``),
so one-hot rows and exact zeros are fine wherever the divergence itself is finite.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.double()


def kl(p, q) -> torch.Tensor:
    """``KL(p || q) = sum_k p_k (log p_k - log q_k)`` row-wise over the last axis, nats."""
    p, q = _as_tensor(p), _as_tensor(q)
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)


def js(p, q) -> torch.Tensor:
    """``JS(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m)``, ``m = (p + q) / 2``, nats (at most log 2)."""
    p, q = _as_tensor(p), _as_tensor(q)
    m = 0.5 * (p + q)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def _class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels, minlength=num_classes)


def cross_partner_counts(labels, num_classes: int | None = None) -> torch.Tensor:
    """For each sample ``i``, the number of samples ``j`` with ``y_j != y_i``: ``N - n_{y_i}``."""
    labels = torch.as_tensor(labels).long()
    num_classes = num_classes or int(labels.max()) + 1
    return len(labels) - _class_counts(labels, num_classes)[labels]


def cckl(probs, labels, num_classes: int | None = None, log_probs=None) -> float:
    """Exact Cross-Category KL: the mean of ``KL(p_i || p_j)`` over ALL ordered pairs with ``y_i != y_j``.

    With ``S = sum_j log p_j`` and ``S_c`` its part over samples of class ``c``,
    ``sum_{j: y_j != y_i} KL(p_i || p_j) = m_i * sum_k p_ik log p_ik - p_i . (S - S_{y_i})``
    where ``m_i = N - n_{y_i}``; the mean divides the total by ``sum_i m_i``.
    Cost O(N K) instead of O(N^2 K). Computed in float64. Pass ``log_probs`` (e.g.
    ``log_softmax`` of the logits) to avoid ``log 0`` for saturated outputs.
    """
    p = _as_tensor(probs).double()
    labels = torch.as_tensor(labels, device=p.device).long()
    if p.ndim != 2 or labels.shape != p.shape[:1]:
        raise ValueError(f"probs must be (N, K) and labels (N,); got {tuple(p.shape)} and {tuple(labels.shape)}")
    k = p.shape[1]
    num_classes = num_classes or k
    logp = p.log() if log_probs is None else _as_tensor(log_probs).double().to(p.device)
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
    m = cross_partner_counts(labels, num_classes).to(p)
    total_pairs = m.sum()
    if total_pairs == 0:
        raise ValueError("CCKL needs samples of at least two classes")
    # p_ik * s_other: where p_ik == 0 the product is 0 even if s_other is -inf
    cross = torch.where(p > 0, p * s_other, torch.zeros((), dtype=p.dtype, device=p.device)).sum(1)
    return float(((m * neg_entropy - cross).sum() / total_pairs).item())


def sample_cross_pairs(labels, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ordered pairs ``(i, j)`` drawn uniformly (with replacement) from all pairs with ``y_i != y_j``.

    ``i`` is drawn with probability proportional to its number of cross-class partners,
    then ``j`` uniformly among them: that is uniform over the ordered cross-class pairs.
    """
    labels = np.asarray(torch.as_tensor(labels).cpu())
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
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


def smooth_labels(labels, num_classes: int, alpha: float) -> torch.Tensor:
    """Label smoothing ``y_LS = alpha * onehot(y) + (1 - alpha) / K`` (float64 rows)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    onehot = torch.nn.functional.one_hot(torch.as_tensor(labels).long(), num_classes).double()
    return alpha * onehot + (1.0 - alpha) / num_classes


def theorem_terms(probs, labels, alpha: float = 0.9, num_classes: int | None = None) -> dict[str, float]:
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
    p = _as_tensor(probs).double()
    labels = torch.as_tensor(labels).long()
    k = num_classes or p.shape[1]
    y = smooth_labels(labels, k, alpha)
    l_each, col_each = kl(y, p), kl(p, y)
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
        "cckl": cckl(p, labels, k),
    }
    out["bound"] = out["js"] - out["L"] - out["coL"]
    out["bound_pair"] = out["js"] - out["L_pair"] - out["coL_pair"]
    out["holds"] = out["cckl"] >= out["bound"]
    out["holds_pair"] = out["cckl"] >= out["bound_pair"] - 1e-12
    return out


def pair_inequality_sides(p_i, p_j, y_i, y_j) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair inequality behind Theorem 3.1 (appendix eq. 22, corrected), row-wise.

    ``lhs = JS(y_i || y_j)``;
    ``rhs = 1/2 [KL(f_i||f_j) + KL(f_j||f_i) + KL(y_i||f_i) + KL(y_j||f_j) + KL(f_i||y_i) + KL(f_j||y_j)]``.
    """
    lhs = js(y_i, y_j)
    rhs = 0.5 * (kl(p_i, p_j) + kl(p_j, p_i) + kl(y_i, p_i) + kl(y_j, p_j) + kl(p_i, y_i) + kl(p_j, y_j))
    return lhs, rhs
