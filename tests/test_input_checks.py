"""Bad library arguments are refused by cckl_core.checks with one line naming the argument.

One test per class of bad input (issue "Reliability and security, round two", class 5), each
of which failed on 06ea40b: 0..255 images into the Fisher statistics and clean accuracy, a
model/image dtype mismatch, an image size the model cannot take, a non-int ``num_classes``,
string / fractional / bool labels, ``batch_norm="no"``, strings into the statistics. Wrong
types raise a ``TypeError`` that is also a ``ValueError`` (what the library raised before).
The last tests check that valid inputs of the same kinds are still accepted.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from cckl_core import attacks, fisher, metrics, models, stats

K = 5


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, K)).eval()


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    torch.manual_seed(0)
    return models.build("vgg13", width=0.125).eval()


def images(n: int = 4, size: int = 8, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def labels(n: int = 4) -> torch.Tensor:
    return torch.arange(n) % K


def softmax_rows(n: int = 12, k: int = 4) -> torch.Tensor:
    return torch.softmax(2 * torch.randn(n, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 1)


def message(err: pytest.ExceptionInfo, name: str) -> str:
    """The error's message, checked to be one line that names the argument ``name``."""
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", msg), f"{name!r} not named in: {msg}"
    return msg


def type_error(err: pytest.ExceptionInfo, name: str) -> str:
    """:func:`message` of a TypeError that is also a ValueError (callers catching either keep working)."""
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError), type(err.value)
    return message(err, name)


def image_calls(model: nn.Module, x: torch.Tensor, ok: torch.Tensor) -> dict:
    """Every public entry point that takes an image batch, fed ``x`` (and the valid batch ``ok`` as its partner)."""
    y = labels(len(x))
    return {
        "fisher_stats": (lambda: fisher.fisher_stats(model, x), "x"),
        "materialized_fisher": (lambda: fisher.materialized_fisher(model, x), "x"),
        "logit_jacobian": (lambda: fisher.logit_jacobian(model, x), "x"),
        "g1": (lambda: fisher.g1(model, x, torch.zeros_like(x)), "x"),
        "kl_g1_g2 x_i": (lambda: fisher.kl_g1_g2(model, x, ok), "x_i"),
        "kl_g1_g2 x_j": (lambda: fisher.kl_g1_g2(model, ok, x), "x_j"),
        "pgd": (lambda: attacks.pgd(model, x, y, steps=1), "x"),
        "robust_accuracy": (lambda: attacks.robust_accuracy(model, [(x, y)], progress=False), "x"),
    }


ENTRIES = ["fisher_stats", "materialized_fisher", "logit_jacobian", "g1", "kl_g1_g2 x_i", "kl_g1_g2 x_j", "pgd",
           "robust_accuracy"]


# --------------------------------------------------------------------------- images in [0, 255]
@pytest.mark.parametrize("entry", ENTRIES)
def test_images_in_0_255_are_refused_with_a_hint(model, entry):
    x = (images() * 255).round()
    call, name = image_calls(model, x, images())[entry]
    with pytest.raises(ValueError) as err:
        call()
    msg = message(err, name)
    assert "[0, 1]" in msg and "divide uint8 pixels by 255" in msg and "255" in msg


def test_standardised_images_are_refused(model):
    x = (images() - 0.5) / 0.25
    with pytest.raises(ValueError) as err:
        fisher.fisher_stats(model, x)
    assert "[0, 1]" in message(err, "x") and "standardise" in str(err.value)


# --------------------------------------------------------------------------- dtype mismatch
@pytest.mark.parametrize("entry", ENTRIES)
def test_float64_model_with_float32_images_is_refused(model, entry):
    call, name = image_calls(copy.deepcopy(model).double(), images(), images(dtype=torch.float64))[entry]
    with pytest.raises(TypeError) as err:
        call()
    msg = type_error(err, name)
    assert "torch.float32" in msg and "torch.float64" in msg
    assert f"{name}.double()" in msg and "model.float()" in msg


def test_float32_model_with_float64_images_names_the_other_fix(model):
    with pytest.raises(TypeError) as err:
        fisher.fisher_stats(model, images(dtype=torch.float64))
    msg = type_error(err, "x")
    assert "x.float()" in msg and "model.double()" in msg


def test_g1_delta_of_another_dtype_is_refused(model):
    with pytest.raises(TypeError) as err:
        fisher.g1(model, images(), torch.zeros(4, 3, 8, 8, dtype=torch.float64))
    assert "torch.float64" in type_error(err, "delta")


# --------------------------------------------------------------------------- image size
@pytest.mark.parametrize("size", [16, 64])
@pytest.mark.parametrize("entry", ENTRIES)
def test_vgg13_refuses_images_it_cannot_take(vgg, entry, size):
    call, name = image_calls(vgg, images(2, size), images(2, 32))[entry]
    with pytest.raises(ValueError) as err:
        call()
    msg = message(err, name)
    assert "(3, 32, 32)" in msg and f"(3, {size}, {size})" in msg and "input_shape" in msg


def test_image_size_is_read_from_the_model(model):
    """Any model can say what it takes: ``input_shape`` (exact) or ``min_input_shape`` (lower bounds)."""
    exact = nn.Sequential(*model)  # the same layers; its adaptive pooling would take any size
    exact.input_shape = (3, 8, 8)
    with pytest.raises(ValueError) as err:
        fisher.fisher_stats(exact, images(2, 6))
    assert "(3, 8, 8)" in message(err, "x")
    least = nn.Sequential(*model)
    least.min_input_shape = (3, 7, 7)
    with pytest.raises(ValueError) as err:
        attacks.pgd(least, images(2, 6), labels(2), steps=1)
    assert "at least (3, 7, 7)" in message(err, "x")
    assert fisher.fisher_stats(least, images(2, 7))["trace"].shape == (2,)


# --------------------------------------------------------------------------- num_classes
@pytest.mark.parametrize("bad", ["10", 10.0, True])
def test_models_build_refuses_non_int_num_classes(bad):
    with pytest.raises(TypeError) as err:
        models.build("vgg13", num_classes=bad, width=0.125)
    msg = type_error(err, "num_classes")
    if bad is not True:
        assert "num_classes=10" in msg  # the fix


@pytest.mark.parametrize("bad", ["10", 10.0, True])
def test_metrics_refuse_non_int_num_classes(bad):
    p, y = softmax_rows(k=10), torch.arange(12) % 10
    for call in (lambda: metrics.cckl(p, y, num_classes=bad),
                 lambda: metrics.theorem_terms(p, y, num_classes=bad),
                 lambda: metrics.cross_partner_counts(y, num_classes=bad),
                 lambda: metrics.smooth_labels(y, bad, 0.9)):
        with pytest.raises(TypeError) as err:
            call()
        type_error(err, "num_classes")


# --------------------------------------------------------------------------- labels
STRING_LABELS = [["a", "b", "c", "a"], np.array(["a", "b", "c", "a"]), ["0", "1", "2", "0"]]
NON_INT_LABELS = [torch.tensor([0.5, 1.5, 2.0, 0.0]), np.array([0.5, 1.5, 2.0, 0.0]), [0.0, 1.0, 2.0, 0.0],
                  torch.tensor([True, False, True, False])]


@pytest.mark.parametrize("bad", STRING_LABELS + NON_INT_LABELS, ids=lambda v: type(v).__name__)
def test_metrics_refuse_string_fractional_and_bool_labels(bad):
    p = softmax_rows(n=4, k=3)
    for call in (lambda: metrics.cckl(p, bad), lambda: metrics.theorem_terms(p, bad),
                 lambda: metrics.cross_partner_counts(bad), lambda: metrics.sample_cross_pairs(bad, 3),
                 lambda: metrics.smooth_labels(bad, 3, 0.9)):
        with pytest.raises(TypeError) as err:
            call()
        assert "integer class indices" in type_error(err, "labels")


@pytest.mark.parametrize("bad", [["a", "b", "c", "a"], torch.tensor([0.5, 1.5, 2.0, 0.0]),
                                 torch.tensor([True, False, True, False])], ids=lambda v: type(v).__name__)
def test_attacks_refuse_string_fractional_and_bool_labels(model, bad):
    x = images()
    for call in (lambda: attacks.pgd(model, x, bad, steps=1),
                 lambda: attacks.pgd(model, x, bad, loss="cw", steps=1),
                 lambda: attacks.attack_loss("ce", model(x).detach(), bad),
                 lambda: attacks.robust_accuracy(model, [(x, bad)], progress=False),
                 lambda: attacks.correctness(model, [(x, bad)], {}, progress=False)):
        with pytest.raises(TypeError) as err:
            call()
        assert "integer" in type_error(err, "y")


# --------------------------------------------------------------------------- batch_norm
@pytest.mark.parametrize("bad", ["no", "False", 0, 1])
def test_batch_norm_must_be_a_real_bool(bad):
    for name in ("vgg13", "resnet20"):
        with pytest.raises(TypeError) as err:
            models.build(name, width=0.125, batch_norm=bad)
        assert "True, False or None" in type_error(err, "batch_norm")
    with pytest.raises(TypeError) as err:
        models.VGG(width=0.125, batch_norm=bad)
    type_error(err, "batch_norm")


# --------------------------------------------------------------------------- statistics
def test_statistics_refuse_strings_and_non_int_counts():
    a = np.linspace(0, 1, 10)
    cases = [
        (lambda: stats.verdict("0.1", 0.2), "lo"),
        (lambda: stats.test_verdict(0.01, "0.5"), "p_opposite"),
        (lambda: stats.z_value("0.95"), "confidence"),
        (lambda: stats.wilson_interval("81", 263), "successes"),
        (lambda: stats.rank_trend(["a", "b", "c"], [1, 2, 3]), "x"),
        (lambda: stats.bootstrap_ci(a, np.mean, n_boot=2.5), "n_boot"),
        (lambda: stats.bootstrap_diff(a, a, n_boot=200, paired="yes"), "paired"),
        (lambda: stats.bootstrap_ci(a, "mean", n_boot=10), "statistic"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError) as err:
            call()
        type_error(err, name)


# --------------------------------------------------------------------------- still accepted
def test_valid_inputs_of_the_same_kinds_are_accepted(model):
    """Passes before and after: the checks refuse only what is wrong."""
    x = images()
    y = torch.tensor([0, 1, 2, 3], dtype=torch.int32)
    assert fisher.fisher_stats(model, x)["trace"].shape == (4,)
    assert attacks.pgd(model, x, y, steps=1).shape == x.shape
    assert fisher.g1(model, x, torch.randn(x.shape)).shape == (4,)  # a perturbation may leave [0, 1]
    resnet = models.build("resnet20", num_classes=np.int64(10), width=0.25, batch_norm=None).eval()
    assert fisher.fisher_stats(resnet, images(2, 12))["trace"].shape == (2,)  # adaptive pooling: any size
    assert any(isinstance(m, nn.BatchNorm2d) for m in models.build("vgg13", width=0.125, batch_norm=np.bool_(True)).modules())
    p = softmax_rows(n=4, k=3)
    ref = metrics.cckl(p, [0, 1, 2, 0])
    assert metrics.cckl(p, np.array([0, 1, 2, 0], dtype=np.int32), num_classes=np.int64(3)) == ref
    assert stats.verdict(np.float64(0.1), torch.tensor(0.2)) == stats.HOLDS
    assert stats.verdict(float("nan"), 0.2) == stats.INCONCLUSIVE


def test_empty_batches_still_give_empty_results(model):
    x = images(0)
    assert fisher.fisher_stats(model, x)["trace"].shape == (0,)
    assert attacks.pgd(model, x, torch.zeros(0, dtype=torch.long), steps=1).shape == (0, 3, 8, 8)
    assert metrics.kl(torch.empty(0, 4), torch.empty(0, 4)).shape == (0,)


def test_checks_module_counts_and_flags():
    from cckl_core import checks  # imported here: the other tests run on 06ea40b, which has no checks module

    assert checks.count(np.int64(3), "n") == 3
    assert checks.flag(np.bool_(False), "f") is False
    with pytest.raises(ValueError) as err:
        checks.count(0, "steps")
    assert "steps must be a positive integer" in message(err, "steps")
