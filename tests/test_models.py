"""Model registry: shapes, parameter counts, errors, and the (non-)linearity of the VGG13 variants; the model
of a run config, the finite-weights check and ``eval_mode``."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cckl_core import models
from conftest import tiny_run, type_error_naming


ALL = ["resnet20", "resnet20x1", "resnet32", "resnet32x10", "vgg13", "vgg13_half_linear", "vgg13_pure_linear"]


def test_names_lists_the_registry():
    assert models.names() == sorted(ALL)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", ALL)
def test_every_model_builds_and_gives_logits(name, num_classes):
    torch.manual_seed(0)
    model = models.build(name, num_classes=num_classes).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, num_classes)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert isinstance(model, nn.Module)


@pytest.mark.parametrize("name", ["resnet20", "vgg13"])
def test_train_mode_forward_and_backward(name):
    model = models.build(name, width=0.125).train()
    x = torch.rand(3, 3, 32, 32)
    model(x).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    "name,num_classes,expected",
    [
        ("resnet20x1", 10, 272_474),
        ("resnet20", 10, 272_474),
        ("vgg13", 10, 9_410_122),
        ("vgg13_half_linear", 10, 9_410_122),
        ("vgg13_pure_linear", 10, 9_410_122),
        ("resnet32x10", 10, 46_162_714),
    ],
)
def test_parameter_counts(name, num_classes, expected):
    assert models.count_parameters(models.build(name, num_classes)) == expected


def test_parameter_counts_by_hand():
    """Counts from the architecture description, independent of the module tree."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    c_in, total = 3, 0
    for item in cfg:
        if item != "M":
            total += 9 * c_in * item + item
            c_in = item
    assert models.count_parameters(models.build("vgg13", 10)) == total + 512 * 10 + 10

    def resnet(depth, w, classes):
        n, (a, b, c) = (depth - 2) // 6, (16 * w, 32 * w, 64 * w)
        count = 27 * 16 + 2 * 16  # stem conv + BN
        c_in = 16
        for c_out in (a, b, c):
            for blk in range(n):
                count += 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out
                if c_in != c_out:
                    count += c_in * c_out + 2 * c_out
                c_in = c_out
        return count + c_in * classes + classes

    assert models.count_parameters(models.build("resnet20x1")) == resnet(20, 1, 10)
    assert models.count_parameters(models.build("resnet32", 100, width=2.0)) == resnet(32, 2, 100)
    assert resnet(32, 10, 10) == 46_162_714


def test_more_classes_more_parameters():
    assert (models.count_parameters(models.build("resnet20", 100)) - models.count_parameters(models.build("resnet20", 10))
            == 90 * (64 + 1))
    assert (models.count_parameters(models.build("vgg13", 100, width=0.25))
            - models.count_parameters(models.build("vgg13", 10, width=0.25)) == 90 * (128 + 1))


@pytest.mark.parametrize("name", ["vgg13", "vgg13_half_linear", "vgg13_pure_linear", "resnet20", "resnet32"])
def test_width_multiplier_shrinks_parameters(name):
    counts = [models.count_parameters(models.build(name, width=w)) for w in (1.0, 0.5, 0.25)]
    assert counts[0] > counts[1] > counts[2]
    assert counts[0] / counts[2] > 8  # conv parameters scale about quadratically
    small = models.build(name, width=0.25).eval()
    with torch.no_grad():
        assert small(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_batch_norm_option():
    assert not any(isinstance(m, nn.BatchNorm2d) for m in models.build("vgg13", width=0.125).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in models.build("vgg13", width=0.125, batch_norm=True).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in models.build("resnet20", width=0.25).modules())
    with pytest.raises(ValueError):
        models.build("resnet20", batch_norm=False)


def test_errors():
    with pytest.raises(ValueError) as err:
        models.build("resnet18")
    for name in ALL:
        assert name in str(err.value)
    assert "resnet18" in str(err.value)
    with pytest.raises(ValueError):
        models.build("vgg13", width=0.0)
    with pytest.raises(ValueError):
        models.build("vgg13", num_classes=1)
    with pytest.raises(ValueError):
        models.build("resnet20x1", width=0.5)
    with pytest.raises(ValueError):
        models.CifarResNet(depth=21)


def test_standardize_is_fixed_and_first():
    for name in ("vgg13", "resnet20"):
        model = models.build(name, width=0.25)
        std = next(m for m in model.modules() if isinstance(m, models.Standardize))
        assert not any(p.requires_grad for p in std.parameters())
        x = torch.rand(2, 3, 32, 32)
        mean = torch.tensor(models.CIFAR_MEAN).view(1, 3, 1, 1)
        sd = torch.tensor(models.CIFAR_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(std(x), (x - mean) / sd)


# --------------------------------------------------------------------------- linear variants
def _affinity_gap(model: nn.Module, seed: int = 0) -> float:
    """max |f(a + b) - f(a) - f(b) + f(0)| / max |f(a) - f(0)|, float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64)
    b = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64) - 0.5
    zero = torch.zeros_like(a)
    with torch.no_grad():
        fa, fb, fab, f0 = model(a), model(b), model(a + b), model(zero)
    return float((fab - fa - fb + f0).abs().max() / (fa - f0).abs().max())


def test_pure_linear_is_affine():
    torch.manual_seed(1)
    model = models.build("vgg13_pure_linear", width=0.125).double().eval()
    assert _affinity_gap(model) < 1e-10
    # and scaling: f(c x) - f(0) = c (f(x) - f(0))
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        f0 = model(torch.zeros_like(x))
        torch.testing.assert_close(model(2.5 * x) - f0, 2.5 * (model(x) - f0), rtol=1e-10, atol=1e-12)
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in model.modules())
    assert any(isinstance(m, nn.AvgPool2d) for m in model.modules())


def test_half_linear_is_not_affine_and_has_no_relu():
    torch.manual_seed(1)
    model = models.build("vgg13_half_linear", width=0.125).double().eval()
    assert _affinity_gap(model) > 1e-3
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_vgg13_has_relu_and_is_not_affine():
    torch.manual_seed(1)
    model = models.build("vgg13", width=0.125).double().eval()
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    assert any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert _affinity_gap(model) > 1e-3


# --------------------------------------------------------------------------- the model of a run
def test_of_run_is_the_registry_model_the_config_names():
    cfg = tiny_run("t", model="vgg13", width=0.25, batch_norm=True)
    torch.manual_seed(3)
    got = models.of_run(cfg, num_classes=7)
    torch.manual_seed(3)
    want = models.build("vgg13", num_classes=7, width=0.25, batch_norm=True)
    assert got.state_dict().keys() == want.state_dict().keys()
    for (k, a), b in zip(got.state_dict().items(), want.state_dict().values()):
        assert torch.equal(a, b), k
    assert models.of_run(cfg).classifier.out_features == cfg.num_classes  # the config's classes by default


@pytest.mark.parametrize("width, channels_last", [(0.125, False), (1.0, True)])
def test_fresh_is_seeded_by_the_config_and_channels_last_only_for_real_widths(width, channels_last):
    cfg = tiny_run("t", width=width, seed=5)
    model, cl = models.fresh(cfg, 10, torch.device("cpu"))
    torch.manual_seed(5)
    reference = models.build("resnet20", num_classes=10, width=width)
    assert cl is channels_last
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last


@pytest.mark.parametrize("where", ["parameter", "buffer"])
def test_check_finite_names_the_non_finite_tensor(where):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    models.check_finite(model, " here")  # finite: nothing raised
    with torch.no_grad():
        (model[0].weight if where == "parameter" else model[1].running_var)[0] = float("nan" if where == "buffer" else "inf")
    name = "0.weight" if where == "parameter" else "1.running_var"
    with pytest.raises(models.NonFiniteError, match=rf"the model's {name} became non-finite after epoch 2; lower"):
        models.check_finite(model, " after epoch 2")


def test_eval_mode_restores_the_callers_mode_even_on_an_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with models.eval_mode(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError, match="boom"):
        with models.eval_mode(model):
            raise RuntimeError("boom")
    assert model.training
    model.eval()
    with models.eval_mode(model):
        pass
    assert not model.training  # a model in eval mode stays there
    with pytest.raises(TypeError):
        with models.eval_mode("not a model"):
            pass


# --------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("bad", ["10", 10.0, True])
def test_models_build_refuses_non_int_num_classes(bad):
    with pytest.raises(TypeError) as err:
        models.build("vgg13", num_classes=bad, width=0.125)
    msg = type_error_naming(err, "num_classes")
    if bad is not True:
        assert "num_classes=10" in msg  # the fix


@pytest.mark.parametrize("bad", ["no", "False", 0, 1])
def test_batch_norm_must_be_a_real_bool(bad):
    for name in ("vgg13", "resnet20"):
        with pytest.raises(TypeError) as err:
            models.build(name, width=0.125, batch_norm=bad)
        assert "True, False or None" in type_error_naming(err, "batch_norm")
    with pytest.raises(TypeError) as err:
        models.VGG(width=0.125, batch_norm=bad)
    type_error_naming(err, "batch_norm")
