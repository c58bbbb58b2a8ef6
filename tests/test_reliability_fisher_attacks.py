"""Fisher statistics, G1/G2, attacks and accuracies: a wrong input is one clear ValueError,
an empty batch gives empty, well-shaped results.

Wrong inputs: an unbatched image (3, H, W) (it used to give three results), channels that do
not match the model's first convolution, NaN / inf pixels, integer images, float labels and
labels outside [0, K) (accuracy used to read 0.0).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cckl_core import attacks, fisher
from cckl_core.data import Batches, ImageData

K = 5


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, K)).eval()


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def calls(model, x):
    """Every public entry point, fed the image batch ``x`` (and a valid partner where needed)."""
    y = torch.zeros(len(x), dtype=torch.long) if x.ndim else torch.zeros(1, dtype=torch.long)
    return {
        "fisher_stats": lambda: fisher.fisher_stats(model, x),
        "materialized_fisher": lambda: fisher.materialized_fisher(model, x),
        "g1": lambda: fisher.g1(model, x, torch.zeros_like(x)),
        "kl_g1_g2": lambda: fisher.kl_g1_g2(model, x, x),
        "pgd": lambda: attacks.pgd(model, x, y[:len(x)] if x.ndim == 4 else y, steps=1),
    }


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("entry", ["fisher_stats", "materialized_fisher", "g1", "kl_g1_g2", "pgd"])
def test_unbatched_image_asks_for_a_batch_dimension(model, entry):
    with pytest.raises(ValueError) as err:
        calls(model, images(1)[0])[entry]()
    msg = one_line(err)
    assert "(N, C, H, W)" in msg and "(3, 8, 8)" in msg and "x[None]" in msg and "unsqueeze(0)" in msg


@pytest.mark.parametrize("entry", ["fisher_stats", "materialized_fisher", "g1", "kl_g1_g2", "pgd"])
def test_channel_mismatch_names_both(model, entry):
    with pytest.raises(ValueError) as err:
        calls(model, torch.rand(2, 1, 8, 8))[entry]()
    msg = one_line(err)
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
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double().eval()
    out = fisher.fisher_stats(lin, torch.rand(3, 2, 4, 4, dtype=torch.float64))
    assert out["frobenius"].shape == (3,)


# --------------------------------------------------------------------------- empty batches
def test_empty_batch_gives_empty_results(model):
    x = images(0)
    assert x.shape == (0, 3, 8, 8)
    out = fisher.fisher_stats(model, x, eigenvector=True)
    for key in ("frobenius", "spectral", "trace"):
        assert out[key].shape == (0,) and out[key].dtype == torch.float64
    assert out["probs"].shape == (0, K) and out["eigenvector"].shape == (0, 3, 8, 8)
    assert fisher.g1(model, x, x).shape == (0,)
    pairs = fisher.kl_g1_g2(model, x, x)
    assert {k: tuple(v.shape) for k, v in pairs.items()} == {"kl": (0,), "g1": (0,), "g2": (0,)}
    y = torch.zeros(0, dtype=torch.long)
    for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
        adv = attacks.pgd(model, x, y, eps=eps, norm=norm, steps=2)
        assert adv.shape == (0, 3, 8, 8) and adv.dtype == x.dtype
    assert attacks.pgd(model, x, None, loss="kl", random_start=True, steps=2).shape == (0, 3, 8, 8)


# --------------------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("entry", ["fisher_stats", "materialized_fisher", "g1", "kl_g1_g2", "pgd"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pixels_raise(model, entry, bad):
    x = images()
    x[1, 2, 3, 4] = bad
    with pytest.raises(ValueError) as err:
        calls(model, x)[entry]()
    assert "NaN or inf" in one_line(err)


def test_non_finite_delta_and_partner_raise(model):
    x, bad = images(), images()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="delta contains NaN"):
        fisher.g1(model, x, bad)
    with pytest.raises(ValueError, match="x_j contains NaN"):
        fisher.kl_g1_g2(model, x, bad)


# --------------------------------------------------------------------------- labels
def _batches(labels) -> list:
    return [(images(len(labels)), labels)]


@pytest.mark.parametrize("bad", [K, -1])
def test_accuracy_with_out_of_range_labels_raises(model, bad):
    labels = torch.tensor([0, 1, bad, 2])
    for run in (lambda: attacks.robust_accuracy(model, _batches(labels), progress=False),
                lambda: attacks.accuracies(model, _batches(labels), {"pgd": dict(steps=1)}, progress=False),
                lambda: attacks.correctness(model, _batches(labels), {}, progress=False)):
        with pytest.raises(ValueError) as err:
            run()
        msg = one_line(err)
        assert f"[0, {K})" in msg and f"{K} outputs" in msg and str(bad) in msg


def test_accuracy_with_float_labels_raises(model):
    with pytest.raises(ValueError, match="integer label tensor.*float32"):
        attacks.robust_accuracy(model, _batches(torch.tensor([0.0, 1.0, 2.0, 3.0])), progress=False)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_with_out_of_range_labels_raises(model, loss):
    x = images()
    with pytest.raises(ValueError, match=rf"\[0, {K}\) for a model with {K} outputs"):
        attacks.pgd(model, x, torch.tensor([0, 1, 2, K]), loss=loss, steps=1)
    with pytest.raises(ValueError, match=">= 0"):
        attacks.pgd(model, x, torch.tensor([0, 1, 2, -1]), loss=loss, steps=1)
    with pytest.raises(ValueError, match="integer label tensor"):
        attacks.pgd(model, x, torch.tensor([0.0, 1.0, 2.0, 3.0]), loss=loss, steps=1)


def test_valid_labels_still_give_exact_accuracy(model):
    x = images(6)
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[:2] = (y[:2] + 1) % K  # two wrong
    data = ImageData((x * 255).round().to(torch.uint8), y, [str(k) for k in range(K)])
    xb = data.float()
    with torch.no_grad():
        expected = (model(xb).argmax(1) == y).double().mean().item()
    assert attacks.robust_accuracy(model, Batches(data, batch_size=4), progress=False) == pytest.approx(expected)
