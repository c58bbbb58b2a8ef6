"""Metrics refuse inputs that would give a silently wrong number, and accept every legitimate one.

Wrong: scaled probabilities (``cckl(2 * p, y)`` was exactly twice the right value), logits
passed as probabilities (NaN), NaN, log-probabilities that are not ``log(probs)``, float
labels (truncated), labels outside ``[0, K)``, mismatched lengths. Legitimate: float32 and
float16 softmax rows, float64 copies of float32 rows, clamped-and-renormalised rows,
smoothed labels, single rows, numpy and list inputs.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cckl_core import metrics


def softmax_rows(n=12, k=4, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(n, k, generator=g, dtype=torch.float64), 1).to(dtype)


LABELS = torch.arange(12) % 4


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- cckl
def test_scaled_probs_raise_instead_of_twice_the_value():
    p = softmax_rows()
    with pytest.raises(ValueError) as err:
        metrics.cckl(2 * p, LABELS)
    msg = one_line(err)
    assert "sum to 1" in msg and "[2, 2]" in msg and "softmax(logits)" in msg


def test_logits_as_probs_raise_instead_of_nan():
    logits = 3 * torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="negative entries.*softmax"):
        metrics.cckl(logits, LABELS)
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.cckl(logits.abs(), LABELS)  # non-negative logits: caught by the row sums
    with pytest.raises(ValueError, match="negative"):
        metrics.cckl(torch.log_softmax(logits, 1), LABELS)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_probs_raise(bad):
    p = softmax_rows()
    p[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.cckl(p, LABELS)
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.kl(p, softmax_rows(seed=2))


def test_float_labels_raise_even_when_whole_numbers():
    p = softmax_rows()
    for labels in (LABELS.float(), LABELS.double() + 0.5, [0.0, 1.0] * 6, LABELS.bool()):
        with pytest.raises(ValueError) as err:
            metrics.cckl(p, labels)
        assert "integer class indices" in one_line(err)
    with pytest.raises(ValueError, match="integer"):
        metrics.theorem_terms(p, LABELS.float())


@pytest.mark.parametrize("bad", [4, -1])
def test_labels_out_of_range_raise(bad):
    labels = LABELS.clone()
    labels[0] = bad
    with pytest.raises(ValueError, match=r"in \[0, 4\) \(K = 4 classes\)") as err:
        metrics.cckl(softmax_rows(), labels)
    assert "got values in" in one_line(err)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        metrics.theorem_terms(softmax_rows(), labels)
    with pytest.raises(ValueError, match="class indices"):
        metrics.smooth_labels(labels, 4, 0.9)


def test_length_and_shape_mismatch_raise():
    p = softmax_rows()
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        metrics.cckl(p, LABELS[:11])
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        metrics.cckl(p, LABELS.view(3, 4))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        metrics.cckl(p[0], LABELS[:1])
    with pytest.raises(ValueError, match="same number of classes"):
        metrics.kl(p, softmax_rows(k=5))
    with pytest.raises(ValueError, match="broadcastable shapes"):
        metrics.js(p, softmax_rows(n=5))
    with pytest.raises(ValueError, match="num_classes=5 but probs has 4 columns"):
        metrics.theorem_terms(p, LABELS, num_classes=5)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        metrics.cckl(p, LABELS, num_classes=2.5)


def test_log_probs_must_be_log_of_probs():
    logits = 3 * torch.randn(12, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p, logp = torch.softmax(logits, 1), torch.log_softmax(logits, 1)
    assert metrics.cckl(p, LABELS, log_probs=logp) == pytest.approx(metrics.cckl(p, LABELS), rel=1e-12)
    with pytest.raises(ValueError) as err:
        metrics.cckl(p, LABELS, log_probs=logits)  # logits, not log-probabilities
    assert "log_probs must be log(probs)" in one_line(err) and "log_softmax" in str(err.value)
    other = torch.log_softmax(logits.flip(0), 1)  # log-probabilities of other rows
    with pytest.raises(ValueError, match="log_probs must be log"):
        metrics.cckl(p, LABELS, log_probs=other)
    with pytest.raises(ValueError, match="shape of probs"):
        metrics.cckl(p, LABELS, log_probs=logp[:, :3])
    bad = logp.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="log_probs must be log"):
        metrics.cckl(p, LABELS, log_probs=bad)


def test_kl_js_reject_non_distributions():
    p, q = softmax_rows(seed=4), softmax_rows(seed=5)
    with pytest.raises(ValueError, match="p rows must sum to 1"):
        metrics.kl(2 * p, q)
    with pytest.raises(ValueError, match="q rows must sum to 1"):
        metrics.kl(p, q / 2)
    with pytest.raises(ValueError, match="q has negative entries"):
        metrics.js(p, torch.log(q))
    with pytest.raises(ValueError, match="scalar"):
        metrics.kl(torch.tensor(1.0), torch.tensor(1.0))


# --------------------------------------------------------------------------- legitimate inputs still work
def test_float32_float16_and_promoted_rows_are_accepted():
    logits = 4 * torch.randn(64, 1000, generator=torch.Generator().manual_seed(6))
    labels = torch.arange(64) % 1000
    p32 = torch.softmax(logits, 1)
    v32 = metrics.cckl(p32, labels)
    assert math.isfinite(v32)
    assert metrics.cckl(p32.double(), labels) == pytest.approx(v32, rel=1e-12)  # float64 copy of float32 rows
    p16 = torch.softmax(logits[:, :10] / 4, 1).half()  # no underflow to 0: finite CCKL
    assert math.isfinite(metrics.cckl(p16, torch.arange(64) % 10))
    assert torch.isfinite(metrics.kl(p32.double()[:5], p32[5:10])).all()  # mixed dtypes


def test_clamped_renormalised_and_smoothed_rows_are_accepted():
    rng = np.random.default_rng(7)
    gamma = rng.gamma(np.full((2, 50, 10), 0.05))
    probs = torch.tensor(gamma / gamma.sum(-1, keepdims=True)).clamp_min(1e-12)
    probs = probs / probs.sum(-1, keepdim=True)
    y = metrics.smooth_labels(torch.tensor(rng.integers(0, 10, 50)), 10, 0.9)
    lhs, rhs = metrics.pair_inequality_sides(probs[0], probs[1], y, y.roll(1, 0))
    assert lhs.shape == rhs.shape == (50,) and torch.isfinite(rhs).all()
    terms = metrics.theorem_terms(probs[0], torch.arange(50) % 10)
    assert terms["holds_pair"]


def test_single_rows_lists_and_numpy_labels_are_accepted():
    expected = 0.5 * (math.log(0.5 / 0.25) + math.log(0.5 / 0.75))
    assert float(metrics.kl([0.5, 0.5], [0.25, 0.75])) == pytest.approx(expected, rel=1e-12)
    p = softmax_rows()
    ref = metrics.cckl(p, LABELS)
    assert metrics.cckl(p.numpy(), LABELS.numpy().astype(np.int32)) == pytest.approx(ref, rel=1e-12)
    assert metrics.cckl(p.tolist(), LABELS.tolist()) == pytest.approx(ref, rel=1e-12)
    assert metrics.kl(torch.empty(0, 4), torch.empty(0, 4)).shape == (0,)


def test_one_hot_integer_rows_are_distributions():
    assert float(metrics.js(torch.tensor([1, 0]), torch.tensor([0, 1]))) == pytest.approx(math.log(2))


def test_pair_and_count_helpers_check_labels():
    with pytest.raises(ValueError, match="integer"):
        metrics.cross_partner_counts([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="integer"):
        metrics.sample_cross_pairs(np.array([0.5, 1.5, 2.5]), 5)
    with pytest.raises(ValueError, match="integer >= 0"):
        metrics.sample_cross_pairs([0, 1, 1], 2.5)
    assert metrics.cross_partner_counts([0, 1, 1]).tolist() == [2, 1, 1]
