"""Tests of cckl_core.attacks against torchattacks and independent reference loops (tiny models)."""
from __future__ import annotations

import functools
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cckl_core import attacks, models
from cckl_core.attacks import CW20, PGD20, TABLE1, TRADES10, accuracies, autoattack, pgd, robust_accuracy
from cckl_core.data import Batches, ImageData, synthetic
from conftest import one_line, small_cnn, type_error_naming

torchattacks = pytest.importorskip("torchattacks")

EPS, STEP = 8 / 255, 2 / 255
K = 5  # classes of the shared small_cnn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP hand-off costs on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Center(nn.Module):
    """``8 (x - 0.5)``: makes a randomly initialised net's prediction depend on the input."""

    def forward(self, x):
        return 8 * (x - 0.5)


def tiny_cnn(seed: int = 0, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        Center(), nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, num_classes),
    ).eval()


def images(n: int = 8, size: int = 16, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    """Random images in [0, 1] with some pixels exactly at 0 and 1 (exercises the clamp)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g, dtype=dtype) * 1.2 - 0.1).clamp(0, 1)


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def no_param_grads(model) -> bool:
    return all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- torchattacks equivalence
def _resnet_case():
    model = models.build("resnet20", width=0.25).double().eval()
    x = synthetic("test", n=8, seed=0).float().double()
    return model, x


def _cnn_case():
    model = tiny_cnn().double()
    return model, images(8, dtype=torch.float64)


@pytest.mark.parametrize("case,steps", [(_cnn_case, 20), (_resnet_case, 10)], ids=["tiny_cnn", "resnet20_w0.25"])
def test_linf_ce_matches_torchattacks_pgd(case, steps):
    # torchattacks uses the batch-mean CE, we the sum: with a power-of-2 batch the gradients
    # differ by an exact power-of-2 factor, so the signs (and all iterates) agree bitwise.
    model, x = case()
    y = predictions(model, x)
    ours = pgd(model, x, y, eps=EPS, step=STEP, steps=steps, norm="linf", loss="ce")
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    assert (ours - x).abs().amax() > EPS / 2  # it moved


def test_l2_matches_torchattacks_pgdl2():
    # Same conventions: step = alpha * g / (||g|| + 1e-10), delta *= min(1, eps/||delta||), clamp.
    # The only difference is torchattacks' 1e-10 in the gradient normalisation (relative ~1e-9 here).
    model, x = _cnn_case()
    y = predictions(model, x)
    ours = pgd(model, x, y, eps=0.5, step=0.1, steps=10, norm="l2", loss="ce")
    theirs = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
    assert (ours - x).flatten(1).norm(dim=1).min() > 0.25


def _cw_reference(model, x, y, eps, step, steps, kappa):
    """CW-inf PGD written independently: one sample at a time, margin from a list of the other logits."""
    out = []
    for xi, yi in zip(x, y):
        xi0 = xi[None].clone()
        xa = xi0.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            z = model(xa)[0]
            others = torch.stack([z[k] for k in range(len(z)) if k != int(yi)])
            objective = torch.minimum(others.max() - z[int(yi)], torch.tensor(kappa, dtype=z.dtype))
            objective.backward()
            with torch.no_grad():
                xa = xa + step * xa.grad.sign()
                xa = torch.min(torch.max(xa, xi0 - eps), xi0 + eps).clamp(0, 1)
        out.append(xa.detach()[0])
    model.zero_grad(set_to_none=True)
    return torch.stack(out)


@pytest.mark.parametrize("kappa", [0.0, 2.0])
def test_cw_matches_independent_loop(kappa):
    # torchattacks' CW is the L2 Adam formulation, not CW-inf solved by PGD: independent loop instead.
    model = tiny_cnn().double()
    x = images(6, dtype=torch.float64)
    y = predictions(model, x)
    ours = pgd(model, x, y, eps=EPS, step=STEP, steps=10, loss="cw", kappa=kappa)
    ref = _cw_reference(model, x, y, EPS, STEP, 10, kappa)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert (ours - x).abs().amax() > 0


def test_kl_matches_trades_reference():
    """TRADES' inner loop (Zhang et al. 2019, trades.py) with the same global seed."""
    model = tiny_cnn().double()
    x = images(8, dtype=torch.float64)
    torch.manual_seed(123)
    ours = pgd(model, x, None, eps=EPS, step=STEP, steps=10, loss="kl", random_start=True)
    torch.manual_seed(123)
    kl = nn.KLDivLoss(reduction="sum")
    with torch.no_grad():
        p_nat = F.softmax(model(x), dim=1)
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, dtype=x.dtype)
    for _ in range(10):
        x_adv.requires_grad_()
        loss_kl = kl(F.log_softmax(model(x_adv), dim=1), p_nat)
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + STEP * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0.0, 1.0)
    torch.testing.assert_close(ours, x_adv, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- generic properties
@pytest.mark.parametrize("norm,eps,step", [("linf", EPS, STEP), ("l2", 0.5, 0.1)])
@pytest.mark.parametrize("loss", ["ce", "cw", "kl"])
def test_attack_raises_loss_and_stays_feasible(norm, eps, step, loss):
    model = tiny_cnn()
    x = images(16)
    y = predictions(model, x)
    x_adv = pgd(model, x, y, eps=eps, step=step, steps=10, norm=norm, loss=loss,
                random_start=(loss == "kl"), seed=0)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    with torch.no_grad():
        clean_logits = model(x)
        before = attacks.attack_loss(loss, clean_logits, y, clean_logits).sum()
        after = attacks.attack_loss(loss, model(x_adv), y, clean_logits).sum()
    assert after > before + 1e-4
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps * (1 + 1e-5)
    if loss != "kl":  # all start correctly classified (y = prediction); the attack must flip some
        assert (predictions(model, x_adv) != y).any()


@pytest.mark.parametrize("norm,eps", [("linf", EPS), ("l2", 0.5)])
def test_random_start_in_ball_and_seeded(norm, eps):
    model = tiny_cnn()
    x = images(8)
    y = predictions(model, x)
    kw = dict(eps=eps, step=eps / 4, steps=1, norm=norm, random_start=True)
    a, b = pgd(model, x, y, seed=3, **kw), pgd(model, x, y, seed=3, **kw)
    c = pgd(model, x, y, seed=4, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    delta = (a - x).flatten(1)
    bound = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bound.max() <= eps * (1 + 1e-5)


class BNDropNet(nn.Module):
    """Output differs in train mode (dropout noise, batch statistics)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10))
        self.modes: list[bool] = []
        with torch.no_grad():
            self.net[1].running_mean.uniform_(-0.2, 0.2)
            self.net[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        self.modes.extend(m.training for m in self.modules())
        return self.net(x)


@pytest.mark.parametrize("loss", ["ce", "cw", "kl"])
@pytest.mark.parametrize("caller_training", [True, False])
def test_eval_mode_restore_and_no_param_grads(loss, caller_training):
    model = BNDropNet()
    x = images(8)
    y = torch.arange(8) % 10
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(caller_training)
    kw = dict(eps=EPS, step=STEP, steps=5, loss=loss, random_start=(loss == "kl"), seed=0)
    x_adv = pgd(model, x, y, **kw)
    assert model.modes and not any(model.modes)  # every forward in eval mode
    assert all(m.training == caller_training for m in model.modules())
    assert no_param_grads(model)
    for k, v in model.state_dict().items():  # no BN running-stat update
        assert torch.equal(v, buffers[k]), k
    model.eval()
    torch.testing.assert_close(x_adv, pgd(model, x, y, **kw), rtol=0, atol=0)  # eval outputs were used


def test_restarts_keep_worst_case():
    model = tiny_cnn()
    x = images(48, seed=5)
    y = predictions(model, x)
    kw = dict(eps=2 / 255, step=0.5 / 255, steps=1, random_start=True, seed=7)  # few steps: the start matters
    single = pgd(model, x, y, restarts=1, **kw)
    multi = pgd(model, x, y, restarts=4, **kw)
    with torch.no_grad():
        ls, lm = model(single), model(multi)
    wrong_s, wrong_m = ls.argmax(1) != y, lm.argmax(1) != y
    assert 0 < wrong_s.sum() < len(y)  # the setting is informative: neither 0 % nor 100 % fooled
    assert bool((wrong_s <= wrong_m).all())  # fooled once, fooled for good
    assert wrong_m.sum() > wrong_s.sum()
    both_right = ~wrong_s & ~wrong_m
    ce_s, ce_m = F.cross_entropy(ls, y, reduction="none"), F.cross_entropy(lm, y, reduction="none")
    assert bool((ce_m[both_right] >= ce_s[both_right] - 1e-6).all())
    # the first restart is the single-start attack (same seed)
    assert ((multi - single).flatten(1).abs().amax(1) == 0).any()
    batches = [(x, y)]
    assert robust_accuracy(model, batches, dict(restarts=4, **kw), progress=False) < \
        robust_accuracy(model, batches, dict(restarts=1, **kw), progress=False)


def test_restarts_kl_keep_highest_kl():
    model = tiny_cnn()
    x = images(16)
    kw = dict(eps=EPS, step=STEP, steps=2, loss="kl", random_start=True, seed=1)
    single, multi = pgd(model, x, None, **kw), pgd(model, x, None, restarts=3, **kw)
    with torch.no_grad():
        clean = model(x)
        kl_s = attacks.attack_loss("kl", model(single), None, clean)
        kl_m = attacks.attack_loss("kl", model(multi), None, clean)
    assert bool((kl_m >= kl_s - 1e-7).all()) and bool((kl_m > kl_s + 1e-7).any())


@pytest.mark.parametrize("kwargs,match", [
    (dict(eps=-0.1), "eps"),
    (dict(eps=8.0), "pixel units"),
    (dict(eps=100.0, norm="l2"), "L2 eps"),
    (dict(step=0.0), "step"),
    (dict(step=-1 / 255), "step"),
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(norm="l1"), "norm"),
    (dict(loss="mse"), "loss"),
    (dict(restarts=0), "restarts"),
    (dict(restarts=3), "random_start"),
    (dict(loss="kl"), "random_start"),
    (dict(random_start="gaussian"), "random_start"),
    (dict(kappa=-1.0, loss="cw"), "kappa"),
])
def test_bad_arguments_raise(kwargs, match):
    model, x = tiny_cnn(), images(4)
    with pytest.raises(ValueError, match=match) as err:
        pgd(model, x, torch.zeros(4, dtype=torch.long), **kwargs)
    assert "\n" not in str(err.value)


def test_bad_inputs_raise():
    model, x = tiny_cnn(), images(4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(model, x * 2 - 0.5, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="y must be"):
        pgd(model, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="y must be"):
        pgd(model, x, None)
    with pytest.raises(ValueError, match="attack must be"):
        robust_accuracy(model, [(x, torch.zeros(4, dtype=torch.long))], attack="pgd", progress=False)
    with pytest.raises(ValueError, match="unknown pgd arguments"):
        robust_accuracy(model, [(x, torch.zeros(4, dtype=torch.long))], attack=dict(epsilon=1.0), progress=False)


# --------------------------------------------------------------------------- accuracy
class MeanThreshold(nn.Module):
    """Class 1 iff the mean pixel exceeds 0.5: every pixel's gradient has the same sign, so
    PGD moves every pixel by exactly eps towards the boundary (as far as [0, 1] allows)."""

    def __init__(self, dummy_classes: int = 0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.dummy_classes = dummy_classes  # never-predicted classes (AutoAttack's DLR needs >= 4)

    def forward(self, x):
        s = self.scale * (x.flatten(1).mean(1) - 0.5)
        dummy = [torch.full_like(s, -100.0 - k) for k in range(self.dummy_classes)]
        return torch.stack([-s, s, *dummy], dim=1)


def _threshold_data():
    # pixel value (out of 255) and label; prediction is 1 iff value > 127.5
    values = [200, 140, 131, 132, 124, 120, 60, 0, 10, 255]
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]  # the last two are misclassified: clean 8/10
    imgs = torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    return ImageData(imgs, torch.tensor(labels), ["dark", "bright"], "threshold", "test")


def test_accuracy_exact_on_threshold_model():
    model, data = MeanThreshold().train(), _threshold_data()
    batches = Batches(data, batch_size=4)  # 4 + 4 + 2: a partial last batch
    assert robust_accuracy(model, batches, progress=False) == pytest.approx(0.8, abs=1e-12)
    # under eps = 8/255 a correct sample survives iff |value - 127.5| > 8: 200, 140, 60, 0
    assert robust_accuracy(model, batches, PGD20, progress=True) == pytest.approx(0.4, abs=1e-12)
    res = accuracies(model, batches, {"clean2": None, **TABLE1}, progress=False)
    assert res == pytest.approx({"clean": 0.8, "clean2": 0.8, "PGD-20": 0.4, "CW-20": 0.4}, abs=1e-12)
    weak = functools.partial(pgd, eps=4 / 255, step=1 / 255, steps=8)  # survives iff |value - 127.5| > 4
    assert robust_accuracy(model, batches, weak, progress=False) == pytest.approx(0.6, abs=1e-12)
    assert model.training and no_param_grads(model)


def test_accuracy_under_attack_not_above_clean():
    torch.manual_seed(0)
    model = tiny_cnn()
    data = synthetic("test", n=24, seed=0)
    res = accuracies(model, Batches(data, batch_size=16), {"pgd": dict(PGD20, steps=3), "cw": dict(CW20, steps=3)},
                     progress=False)
    assert 0 <= res["pgd"] <= res["clean"] <= 1 and 0 <= res["cw"] <= res["clean"]
    assert attacks.correctness(model, Batches(data, batch_size=16), {}, progress=False)["clean"].shape == (24,)


def test_constants_are_partial_friendly():
    model, x = tiny_cnn(), images(4)
    y = predictions(model, x)
    atk = functools.partial(pgd, **dict(PGD20, steps=2))
    assert atk(model, x, y).shape == x.shape
    assert TRADES10["loss"] == "kl" and CW20["loss"] == "cw" and PGD20["steps"] == 20
    with pytest.raises(TypeError):
        PGD20["steps"] = 10  # read-only


# --------------------------------------------------------------------------- AutoAttack
def test_autoattack_runs_on_tiny_model():
    model = tiny_cnn().train()
    x = images(8)
    y = predictions(model, x)
    rng = torch.get_rng_state()
    t0 = time.perf_counter()
    x_adv = autoattack(model, x, y, eps=EPS, version="standard", seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30, f"AutoAttack took {elapsed:.1f} s on 8 tiny images"
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (predictions(model.eval(), x_adv) != y).float().mean() > 0.5  # a random tiny net is not robust
    model.train()
    assert no_param_grads(model) and all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_autoattack_exact_on_threshold_model():
    # version="rand" (APGD-CE + APGD-DLR): "standard" spends ~60 s here running FAB and Square's
    # 5000 queries on the samples no attack can flip.
    model, data = MeanThreshold(dummy_classes=2), _threshold_data()
    x, y = data.float(), data.labels
    x_adv = autoattack(model, x, y, eps=EPS, version="rand")
    assert (predictions(model, x_adv) == y).double().mean().item() == pytest.approx(0.4, abs=1e-12)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and no_param_grads(model)
    with pytest.raises(ValueError, match="4 classes"):
        autoattack(MeanThreshold(), x, y)


def test_autoattack_bad_arguments():
    model, x = tiny_cnn(), images(2)
    y = predictions(model, x)
    with pytest.raises(ValueError, match="norm"):
        autoattack(model, x, y, norm="L1")
    with pytest.raises(ValueError, match="version"):
        autoattack(model, x, y, version="fast")


# --------------------------------------------------------------------------- labels and empty batches
@pytest.fixture(scope="module")
def small() -> nn.Module:
    """A 5-class model (labels outside [0, 5) are out of range)."""
    return small_cnn(K)


def _batches(labels) -> list:
    return [(images(len(labels)), labels)]


@pytest.mark.parametrize("bad", [K, -1])
def test_accuracy_with_out_of_range_labels_raises(small, bad):
    labels = torch.tensor([0, 1, bad, 2])
    for run in (lambda: attacks.robust_accuracy(small, _batches(labels), progress=False),
                lambda: attacks.accuracies(small, _batches(labels), {"pgd": dict(steps=1)}, progress=False),
                lambda: attacks.correctness(small, _batches(labels), {}, progress=False)):
        with pytest.raises(ValueError) as err:
            run()
        msg = one_line(err)
        assert f"[0, {K})" in msg and f"{K} outputs" in msg and str(bad) in msg


def test_accuracy_with_float_labels_raises(small):
    with pytest.raises(ValueError, match="integer label tensor.*float32"):
        attacks.robust_accuracy(small, _batches(torch.tensor([0.0, 1.0, 2.0, 3.0])), progress=False)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_with_out_of_range_labels_raises(small, loss):
    x = images(4)
    with pytest.raises(ValueError, match=rf"\[0, {K}\) for a model with {K} outputs"):
        attacks.pgd(small, x, torch.tensor([0, 1, 2, K]), loss=loss, steps=1)
    with pytest.raises(ValueError, match=">= 0"):
        attacks.pgd(small, x, torch.tensor([0, 1, 2, -1]), loss=loss, steps=1)
    with pytest.raises(ValueError, match="integer label tensor"):
        attacks.pgd(small, x, torch.tensor([0.0, 1.0, 2.0, 3.0]), loss=loss, steps=1)


def test_valid_labels_still_give_exact_accuracy(small):
    x = images(6)
    with torch.no_grad():
        pred = small(x).argmax(1)
    y = pred.clone()
    y[:2] = (y[:2] + 1) % K  # two wrong
    data = ImageData((x * 255).round().to(torch.uint8), y, [str(k) for k in range(K)])
    xb = data.float()
    with torch.no_grad():
        expected = (small(xb).argmax(1) == y).double().mean().item()
    assert attacks.robust_accuracy(small, Batches(data, batch_size=4), progress=False) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [["a", "b", "c", "a"], torch.tensor([0.5, 1.5, 2.0, 0.0]),
                                 torch.tensor([True, False, True, False])], ids=lambda v: type(v).__name__)
def test_attacks_refuse_string_fractional_and_bool_labels(small, bad):
    x = images(4)
    for call in (lambda: attacks.pgd(small, x, bad, steps=1),
                 lambda: attacks.pgd(small, x, bad, loss="cw", steps=1),
                 lambda: attacks.attack_loss("ce", small(x).detach(), bad),
                 lambda: attacks.robust_accuracy(small, [(x, bad)], progress=False),
                 lambda: attacks.correctness(small, [(x, bad)], {}, progress=False)):
        with pytest.raises(TypeError) as err:
            call()
        assert "integer" in type_error_naming(err, "y")


def test_an_empty_batch_gives_an_empty_attack(small):
    x, y = images(0), torch.zeros(0, dtype=torch.long)
    assert x.shape == (0, 3, 16, 16)
    for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
        adv = pgd(small, x, y, eps=eps, norm=norm, steps=2)
        assert adv.shape == x.shape and adv.dtype == x.dtype
    assert pgd(small, x, None, loss="kl", random_start=True, steps=2).shape == x.shape
