"""Model registry: VGG13 variants and CIFAR ResNets, built by name.

All models take inputs in [0, 1] of shape (N, 3, 32, 32) and return logits. The first
layer standardises with fixed CIFAR-10 channel statistics, an affine map, so the
linear variants stay affine in the input.

- ``vgg13``: conv3x3 + ReLU, max pooling; widths 64,64,M,128,128,M,256,256,M,512,512,M,512,512,M
  times ``width``; head Linear(512*width, classes).
- ``vgg13_half_linear``: the same without ReLU (max pooling is the only non-linearity).
- ``vgg13_pure_linear``: no ReLU and average pooling: an affine function of the input.
- ``resnet20``, ``resnet32`` (He et al. 2016, depth 6n+2): 16-channel stem, three stages of
  16w, 32w, 64w channels with basic blocks, 1x1 conv + BN projection when the shape
  changes. ``resnet20x1`` is width 1, ``resnet32x10`` width 10 (about 46M parameters).

Also the model of a run config (:func:`of_run`, :func:`fresh` at its seeded initialisation), the check
that its weights are finite (:func:`check_finite`, :class:`NonFiniteError`) and :func:`eval_mode`, the
one way a computation puts a model in eval mode for a block.

Each model says what input it takes, for :func:`cckl_core.checks.images`: a VGG has
``input_shape = (3, 32, 32)`` (its head is sized for the 1x1 map left after five 2x2
poolings), a ResNet ``min_input_shape = (3, 1, 1)`` (its pooling is adaptive: any size works).
Arguments are checked by :mod:`cckl_core.checks`; a wrong one raises ``ValueError`` or
``TypeError`` with one line saying how to fix it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks
from .profiles import FIXED_WIDTH

if TYPE_CHECKING:
    from .profiles import RunConfig

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
VGG13_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel, fixed (not learned): x in [0, 1] stays the model's input."""

    def __init__(self, mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD) -> None:
        for name, values in (("mean", mean), ("std", std)):
            if len(values) != 3:
                raise ValueError(f"{name} must have 3 entries, one per RGB channel, got {len(values)}")
            for v in values:
                checks.number(v, name, low=0.0, low_open=name == "std")
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1."""
    return max(1, int(round(channels * width)))



def _initialise(module: nn.Module, linear_std: float | None = None) -> None:
    """Kaiming-normal (fan-out, ReLU) convolution weights and zero convolution biases; with ``linear_std``, also
    N(0, linear_std^2) linear weights and zero linear biases. One pass over the modules in order (the order
    of the random draws is part of a run's initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif linear_std is not None and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)

class VGG(nn.Module):
    """VGG13 family; ``relu`` and ``pool`` ('max' or 'avg') pick the variant.

    ``input_shape``: the ``(3, 2**p, 2**p)`` images it takes, ``p`` the number of poolings
    (``(3, 32, 32)`` for VGG13): the head is a linear layer on the 1x1 map they leave.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, relu: bool = True, pool: str = "max",
                 batch_norm: bool = False, config: Sequence[int | str] = VGG13_CONFIG) -> None:
        checks.count(num_classes, "num_classes")
        checks.number(width, "width", low=0.0, low_open=True)
        checks.flag(relu, "relu")
        pool = checks.choice(pool, "pool", ("max", "avg"))
        checks.flag(batch_norm, "batch_norm")
        for item in config:
            if item != "M":
                checks.count(item, "config entry")
        super().__init__()
        side = 2 ** sum(1 for item in config if item == "M")
        self.input_shape = (3, side, side)
        layers: list[nn.Module] = [Standardize()]
        c_in = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                continue
            c_out = _scaled(item, width)
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            if relu:
                layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)
        _initialise(self, linear_std=0.01)  # torchvision's VGG initialisation: without it a BN-free VGG13 barely learns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity or 1x1 conv + BN shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        for value, name in ((c_in, "c_in"), (c_out, "c_out"), (stride, "stride")):
            checks.count(value, name)
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` with stage widths 16w, 32w, 64w.

    ``min_input_shape = (3, 1, 1)``: global average pooling makes any image size work (CIFAR: 32x32).
    """

    min_input_shape = (3, 1, 1)

    def __init__(self, depth: int = 20, num_classes: int = 10, width: float = 1.0) -> None:
        checks.count(depth, "depth", minimum=2)
        checks.count(num_classes, "num_classes")
        checks.number(width, "width", low=0.0, low_open=True)
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(Standardize(), nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        blocks, c_in = [], 16
        for stage, base in enumerate((16, 32, 64)):
            c_out = _scaled(base, width)
            for b in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if (stage > 0 and b == 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        _initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _vgg(relu: bool, pool: str) -> Callable[..., nn.Module]:
    """Registry entry: a VGG13 variant."""
    def make(num_classes: int = 10, width: float = 1.0, batch_norm: bool = False) -> nn.Module:
        return VGG(num_classes, width, relu=relu, pool=pool, batch_norm=batch_norm)
    return make


def _resnet(depth: int, fixed_width: float | None = None) -> Callable[..., nn.Module]:
    """Registry entry: a CIFAR ResNet of ``depth`` (width fixed by the name when ``fixed_width`` is given)."""
    def make(num_classes: int = 10, width: float = 1.0, batch_norm: bool = True) -> nn.Module:
        if not batch_norm:
            raise ValueError("CIFAR ResNets always use BatchNorm; batch_norm=False is not supported")
        return CifarResNet(depth, num_classes, fixed_width if fixed_width is not None else width)
    return make


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "vgg13": _vgg(True, "max"),
    "vgg13_half_linear": _vgg(False, "max"),
    "vgg13_pure_linear": _vgg(False, "avg"),
    "resnet20": _resnet(20),
    "resnet32": _resnet(32),
    "resnet20x1": _resnet(20, 1.0),
    "resnet32x10": _resnet(32, 10.0),
}


def names() -> list[str]:
    """Every model name :func:`build` accepts."""
    return sorted(_REGISTRY)


def build(name: str, num_classes: int = 10, width: float = 1.0, batch_norm: bool | None = None) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes with conv widths scaled by ``width``.

    ``batch_norm`` defaults to False for VGG13 models (as in the paper) and is always on
    for ResNets. ``resnet20x1`` / ``resnet32x10`` have their width fixed by their name.
    ``num_classes`` must be an int >= 2, ``width`` a number > 0, ``batch_norm`` True, False or None.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    checks.number(width, "width", low=0.0, low_open=True)
    checks.count(num_classes, "num_classes", minimum=2)
    checks.flag(batch_norm, "batch_norm", allow_none=True)
    kwargs = {} if batch_norm is None else {"batch_norm": batch_norm}
    if name in FIXED_WIDTH and width != 1.0:
        raise ValueError(f"{name} has its width fixed by its name; use '{FIXED_WIDTH[name]}' with width={width}")
    return _REGISTRY[name](num_classes=num_classes, width=width, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    checks.module(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- the model of a run
def of_run(cfg: RunConfig, num_classes: int | None = None) -> nn.Module:
    """The (untrained, unseeded) model of a run config; ``num_classes`` defaults to ``cfg.num_classes``."""
    return build(cfg.model, num_classes=num_classes or cfg.num_classes, width=cfg.width, batch_norm=cfg.batch_norm)


def _channels_last(model: nn.Module) -> bool:
    """channels_last pays off on the CPU for real widths (1.15-1.25x) but is many times slower
    for BatchNorm over a handful of channels (the tiny test models)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return bool(widths) and min(widths) >= 16


def fresh(cfg: RunConfig, num_classes: int | None, device: torch.device) -> tuple[nn.Module, bool]:
    """The run's model at initialisation (seeded by ``cfg.seed``) on ``device``, in channels_last
    memory format where that pays off; returns ``(model, channels_last)``."""
    torch.manual_seed(cfg.seed)
    model = of_run(cfg, num_classes).to(device)
    channels_last = _channels_last(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, channels_last


class NonFiniteError(FloatingPointError):
    """Training diverged: the training loss, a weight or the model's outputs became NaN or infinite."""


def check_finite(model: nn.Module, where: str = "") -> None:
    """Raise :class:`NonFiniteError` if a parameter or buffer (BatchNorm statistics) is NaN or infinite;
    ``where`` ends the message (`` after epoch 3 of run ...``, `` in <file>``)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"the model's {name} became non-finite{where}; lower the learning rate "
                                 "or check the data (training diverged)")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore the caller's mode afterwards."""
    checks.module(model)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
