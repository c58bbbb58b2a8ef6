"""cckl_core.checks: the one image check, applied by every entry point that takes an image batch (the
Fisher statistics, G1/G2, PGD, accuracy), refuses with one line naming the argument: images in [0, 255]
or standardised, a model/image dtype mismatch, an image size or channel count the model cannot take, an
unbatched or channels-last image, NaN / inf pixels; the counts and flags; valid inputs of the same kinds
(and empty batches) still accepted. Wrong types raise a ``TypeError`` that is also a ``ValueError``.
The checks of one module's own arguments are tested with that module (labels and ``num_classes`` in
test_metrics and test_attacks, ``batch_norm`` in test_models, the statistics' arguments in test_stats).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from cckl_core import attacks, checks, fisher, metrics, models, stats
from conftest import flat_linear, one_line_naming, small_cnn, type_error_naming

K = 5


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return small_cnn(K)


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
    msg = one_line_naming(err, name)
    assert "[0, 1]" in msg and "divide uint8 pixels by 255" in msg and "255" in msg


def test_standardised_images_are_refused(model):
    x = (images() - 0.5) / 0.25
    with pytest.raises(ValueError) as err:
        fisher.fisher_stats(model, x)
    assert "[0, 1]" in one_line_naming(err, "x") and "standardise" in str(err.value)


# --------------------------------------------------------------------------- shapes and channels
@pytest.mark.parametrize("entry", ENTRIES)
def test_unbatched_image_asks_for_a_batch_dimension(model, entry):
    call, name = image_calls(model, images(1)[0], images())[entry]
    with pytest.raises(ValueError) as err:
        call()
    msg = one_line_naming(err, name)
    assert "(N, C, H, W)" in msg and "(3, 8, 8)" in msg and "x[None]" in msg and "unsqueeze(0)" in msg


@pytest.mark.parametrize("entry", ENTRIES)
def test_channel_mismatch_names_both(model, entry):
    call, name = image_calls(model, torch.rand(2, 1, 8, 8), images(2))[entry]
    with pytest.raises(ValueError) as err:
        call()
    msg = one_line_naming(err, name)
    assert "1 channels" in msg and "takes 3" in msg and "(2, 1, 8, 8)" in msg


def test_channels_last_images_get_a_permute_hint(model):
    with pytest.raises(ValueError, match=r"permute\(0, 3, 1, 2\)"):
        fisher.fisher_stats(model, torch.rand(2, 8, 8, 3))


def test_flat_or_integer_inputs_raise(model):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(4, 192\)"):
        fisher.fisher_stats(model, torch.rand(4, 192))
    with pytest.raises(ValueError, match="floating-point.*uint8"):
        fisher.fisher_stats(model, torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="floating-point"):
        attacks.pgd(model, torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))


def test_model_without_convolution_accepts_any_channels():
    lin = flat_linear(2 * 4 * 4, 3)
    out = fisher.fisher_stats(lin, torch.rand(3, 2, 4, 4, dtype=torch.float64))
    assert out["frobenius"].shape == (3,)


# --------------------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pixels_raise(model, entry, bad):
    x = images()
    x[1, 2, 3, 4] = bad
    call, name = image_calls(model, x, images())[entry]
    with pytest.raises(ValueError) as err:
        call()
    assert "NaN or inf" in one_line_naming(err, name)


def test_non_finite_delta_and_partner_raise(model):
    x, bad = images(), images()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="delta contains NaN"):
        fisher.g1(model, x, bad)
    with pytest.raises(ValueError, match="x_j contains NaN"):
        fisher.kl_g1_g2(model, x, bad)


# --------------------------------------------------------------------------- dtype mismatch
@pytest.mark.parametrize("entry", ENTRIES)
def test_float64_model_with_float32_images_is_refused(model, entry):
    call, name = image_calls(copy.deepcopy(model).double(), images(), images(dtype=torch.float64))[entry]
    with pytest.raises(TypeError) as err:
        call()
    msg = type_error_naming(err, name)
    assert "torch.float32" in msg and "torch.float64" in msg
    assert f"{name}.double()" in msg and "model.float()" in msg


def test_float32_model_with_float64_images_names_the_other_fix(model):
    with pytest.raises(TypeError) as err:
        fisher.fisher_stats(model, images(dtype=torch.float64))
    msg = type_error_naming(err, "x")
    assert "x.float()" in msg and "model.double()" in msg


def test_g1_delta_of_another_dtype_is_refused(model):
    with pytest.raises(TypeError) as err:
        fisher.g1(model, images(), torch.zeros(4, 3, 8, 8, dtype=torch.float64))
    assert "torch.float64" in type_error_naming(err, "delta")


# --------------------------------------------------------------------------- image size
@pytest.mark.parametrize("size", [16, 64])
@pytest.mark.parametrize("entry", ENTRIES)
def test_vgg13_refuses_images_it_cannot_take(vgg, entry, size):
    call, name = image_calls(vgg, images(2, size), images(2, 32))[entry]
    with pytest.raises(ValueError) as err:
        call()
    msg = one_line_naming(err, name)
    assert "(3, 32, 32)" in msg and f"(3, {size}, {size})" in msg and "input_shape" in msg


def test_image_size_is_read_from_the_model(model):
    """Any model can say what it takes: ``input_shape`` (exact) or ``min_input_shape`` (lower bounds)."""
    exact = nn.Sequential(*model)  # the same layers; its adaptive pooling would take any size
    exact.input_shape = (3, 8, 8)
    with pytest.raises(ValueError) as err:
        fisher.fisher_stats(exact, images(2, 6))
    assert "(3, 8, 8)" in one_line_naming(err, "x")
    least = nn.Sequential(*model)
    least.min_input_shape = (3, 7, 7)
    with pytest.raises(ValueError) as err:
        attacks.pgd(least, images(2, 6), labels(2), steps=1)
    assert "at least (3, 7, 7)" in one_line_naming(err, "x")
    assert fisher.fisher_stats(least, images(2, 7))["trace"].shape == (2,)


# --------------------------------------------------------------------------- counts and flags
def test_checks_module_counts_and_flags():
    assert checks.count(np.int64(3), "n") == 3
    assert checks.flag(np.bool_(False), "f") is False
    with pytest.raises(ValueError) as err:
        checks.count(0, "steps")
    assert "steps must be a positive integer" in one_line_naming(err, "steps")


# --------------------------------------------------------------------------- still accepted
def test_valid_inputs_of_the_same_kinds_are_accepted(model):
    """The checks refuse only what is wrong."""
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
