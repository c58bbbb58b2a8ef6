"""Argument checks of the public API: the one place that says what a valid input is.

``models``, ``fisher``, ``attacks``, ``metrics`` and ``stats`` call these helpers on their
arguments. A check raises on the first problem found, with ONE line that names the argument,
says what is wrong and how to fix it:

- a wrong type or dtype (a string count, float labels, a uint8 image, ``batch_norm="no"``)
  raises :class:`ArgumentTypeError`, a ``TypeError`` that is also a ``ValueError`` (callers
  that caught the ``ValueError`` of earlier versions still catch it);
- a wrong value (out of range, wrong shape, NaN) raises ``ValueError``.

What is valid:

- images (:func:`images`): a floating tensor ``(N, C, H, W)`` of finite values in [0, 1]
  whose channels match the model's first ``nn.Conv2d``, whose ``(C, H, W)`` fits the model's
  ``input_shape`` (exact) or ``min_input_shape`` (lower bounds) attribute where it has one,
  and whose dtype is the model's (unless autocast is on for the images' device);
  a perturbation (``unit_range=False``): the same without the [0, 1] range;
- labels (:func:`labels`): integer class indices (tensor, array or sequence; not strings,
  floats, even whole ones, or bools), one per sample, in ``[0, num_classes)``;
- probabilities (:func:`probabilities`): finite, non-negative rows summing to 1 within
  :func:`tolerance`;
- counts (:func:`count`, :func:`integer`): an ``int`` (not bool, str or float), at least a minimum;
- numbers (:func:`number`): a real number (not bool or str), finite unless allowed
  otherwise, within bounds; flags (:func:`flag`): ``True`` or ``False`` (or ``None`` where
  allowed); choices (:func:`choice`): one of a few strings.

Checks never cast or copy a valid tensor (they only read it); a check of tensor values costs
one device synchronisation.
"""
from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class _OnFirstUse:
    """Module ``name`` as the global ``alias`` of this module, imported when one of its attributes is first read,
    and from then on the module itself (the global rebound: no cost on the tensor checks' hot paths). The
    scalar checks (what :mod:`cckl_core.profiles` and the command line use) thus do not import torch."""

    def __init__(self, name: str, alias: str) -> None:
        self._name, self._alias = name, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        globals()[self._alias] = module
        return getattr(module, attr)


torch = _OnFirstUse("torch", "torch")
nn = _OnFirstUse("torch.nn", "nn")

__all__ = [
    "ArgumentTypeError", "describe", "module", "model_dtype", "images", "as_labels", "labels", "as_float_tensor",
    "tolerance", "probabilities", "integer", "count", "number", "real", "flag", "choice", "function", "float_array",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type or dtype: a ``TypeError`` that is also a ``ValueError``."""


def describe(value: object) -> str:
    """``value``'s type for a message: ``'a torch.uint8 tensor'``, ``'str'``, ..."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array"
    return type(value).__name__


# --------------------------------------------------------------------------- models and images
def module(model: object, name: str = "model") -> nn.Module:
    """``model`` itself if it is a ``torch.nn.Module``, else :class:`ArgumentTypeError`."""
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"{name} must be a torch.nn.Module, got {describe(model)}")
    return model


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (else buffer); None if it has neither."""
    for tensors in (model.parameters(), model.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t.dtype
    return None


def _convert(obj: str, dtype: torch.dtype) -> str:
    """How to convert ``obj`` to ``dtype``: ``'x.double()'``, ``'model.float()'``, ``'x.to(...)'``."""
    method = {torch.float64: "double", torch.float32: "float", torch.float16: "half",
              torch.bfloat16: "bfloat16"}.get(dtype)
    return f"{obj}.{method}()" if method else f"{obj}.to({dtype})"


def _check_fits_model(model: nn.Module, x: torch.Tensor, name: str) -> None:
    """Channels, size and dtype of the batch ``x`` (already 4-d and floating) against ``model``."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and x.shape[1] != conv.in_channels:
        hint = "; channels-last (N, H, W, C) images need x.permute(0, 3, 1, 2)" if x.shape[-1] == conv.in_channels else ""
        raise ValueError(f"{name} has {x.shape[1]} channels (shape {tuple(x.shape)}) but the model's first "
                         f"convolution takes {conv.in_channels}{hint}")
    exact = getattr(model, "input_shape", None)
    if exact is not None and tuple(x.shape[1:]) != tuple(exact):
        h, w = tuple(exact)[-2:]
        raise ValueError(f"{name} has images of shape {tuple(x.shape[1:])} but the model takes exactly {tuple(exact)} "
                         f"(its input_shape); resize them, e.g. torch.nn.functional.interpolate({name}, size=({h}, {w}))")
    least = getattr(model, "min_input_shape", None)
    if least is not None and any(s < m for s, m in zip(x.shape[1:], least)):
        raise ValueError(f"{name} has images of shape {tuple(x.shape[1:])} but the model takes at least "
                         f"{tuple(least)} (its min_input_shape); pass larger images")
    dtype = model_dtype(model)
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise ArgumentTypeError(f"{name} is {x.dtype} but the model's parameters are {dtype}; convert one to "
                                f"match: {_convert(name, dtype)} or {_convert('model', x.dtype)}")


def images(model: nn.Module, x: object, name: str = "x", *, unit_range: bool = True) -> None:
    """Raise unless ``x`` is an image batch that ``model`` takes (see the module docstring).

    ``unit_range=False`` checks a perturbation (``delta`` of :func:`cckl_core.fisher.g1`):
    everything but the [0, 1] range. An empty batch passes the value checks.
    """
    module(model)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating-point image batch (N, C, H, W) in [0, 1], got "
                                f"{describe(x)}; uint8 images: use data.to_float(x) or ImageData.float()")
    if x.ndim != 4:
        hint = "; for one image add a batch dimension: x[None] or x.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{name} must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}{hint}")
    _check_fits_model(model, x, name)
    if not x.numel():
        return
    low, high = torch.stack(torch.aminmax(x)).tolist()  # NaN propagates into both, inf into one
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} contains NaN or inf values; pass finite images in [0, 1]")
    if unit_range and (low < 0 or high > 1):
        hint = ("divide uint8 pixels by 255" if low >= 0 else
                "pass unnormalised pixels (the models standardise internally)")
        raise ValueError(f"{name} has values in [{low:.3g}, {high:.3g}], but images must be floats in [0, 1]; {hint}")


# --------------------------------------------------------------------------- labels
def logits(model: nn.Module, out: torch.Tensor) -> None:
    """Refuse a model whose outputs are probabilities or log-probabilities rather than logits: it ends in
    ``nn.Softmax``/``nn.LogSoftmax``, or every row of ``out`` is >= 0 and sums to 1 (or has logsumexp 0).
    The softmax of probabilities is not the model's distribution, so its Fisher information would be
    silently wrong (about two orders of magnitude too small)."""
    leaves = [m for m in model.modules() if not list(m.children())]
    if leaves and isinstance(leaves[-1], (nn.Softmax, nn.LogSoftmax)):
        name = type(leaves[-1]).__name__
        raise ValueError(f"the model ends in {name}: pass a model that returns logits (drop its final {name}; the "
                         "softmax is applied where it is needed)")
    with torch.no_grad():
        o = out.detach().double()
        if o.ndim != 2 or o.shape[0] == 0 or o.shape[1] < 2:
            return
        ones = torch.ones_like(o[:, 0])
        probs = bool((o >= 0).all()) and bool(torch.allclose(o.sum(1), ones, atol=1e-4))
        logprobs = bool((o <= 0).all()) and bool(torch.allclose(torch.logsumexp(o, 1), 0 * ones, atol=1e-4))
    if probs or logprobs:
        what = "probabilities (every row >= 0, summing to 1)" if probs else "log-probabilities (logsumexp 0 in every row)"
        raise ValueError(f"the model returns {what}, not logits: pass the model without its final softmax")


def as_labels(y: object, name: str = "labels", *, tensor: bool = False) -> torch.Tensor:
    """``y`` as an integer tensor (a tensor unchanged; arrays and sequences through numpy), else
    :class:`ArgumentTypeError`: strings, floats (even whole ones), bools and complex refused.
    ``tensor=True`` accepts a ``torch.Tensor`` only."""
    hint = ("pass class indices, e.g. y.long() (float labels are not truncated silently)" if tensor else
            "pass e.g. torch.as_tensor(y, dtype=torch.long) (float labels are not truncated silently)")
    want = f"{name} must be integer class indices (an integer label tensor)"
    if isinstance(y, torch.Tensor):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ArgumentTypeError(f"{want}, got dtype {y.dtype}; {hint}")
        return y
    if tensor:
        raise ArgumentTypeError(f"{want}, got {describe(y)}; pass a torch.Tensor of class indices, torch.as_tensor(y)")
    arr = y if isinstance(y, np.ndarray) else np.asarray(y)
    if arr.dtype.kind not in "iu":
        what = {"U": "strings", "S": "strings", "O": "Python objects"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise ArgumentTypeError(f"{want}, got {what}; {hint}")
    return torch.as_tensor(arr)


def labels(y: object, n: int | None = None, num_classes: int | None = None, name: str = "labels", *,
           tensor: bool = False, source: str | None = None) -> torch.Tensor:
    """``y`` (see :func:`as_labels`) checked to be ``n`` labels (shape ``(n,)``) in ``[0, num_classes)``
    (only ``>= 0`` when ``num_classes`` is None); returned without a cast. ``source`` says where
    ``num_classes`` comes from in the message (default ``"(K = num_classes classes)"``)."""
    y = as_labels(y, name, tensor=tensor)
    if y.ndim != 1 or (n is not None and len(y) != n):
        want = f"{n} labels of shape ({n},), one per sample" if n is not None else "a 1-d array of labels (N,)"
        raise ValueError(f"{name} must be {want}; got shape {tuple(y.shape)}")
    if len(y):
        low, high = torch.stack(torch.aminmax(y)).tolist()
        if low < 0 or (num_classes is not None and high >= num_classes):
            if num_classes is None:
                allowed = ">= 0"
            else:
                allowed = f"[0, {num_classes}) " + (source or f"(K = {num_classes} classes)")
            raise ValueError(f"{name} must be class indices in {allowed}; got values in [{low}, {high}]")
    return y


# --------------------------------------------------------------------------- probabilities
def as_float_tensor(x: object, name: str = "x") -> torch.Tensor:
    """A floating tensor as it is, an integer or bool tensor as float64; arrays, lists and numbers
    through numpy (float64). Strings, objects and complex values raise :class:`ArgumentTypeError`."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ArgumentTypeError(f"{name} must be numbers, got {describe(arr)}; pass a float tensor or array")
        t = torch.as_tensor(arr) if isinstance(x, np.ndarray) else torch.from_numpy(arr)
    if t.is_complex():
        raise ArgumentTypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    return t if t.is_floating_point() else t.double()


def tolerance(dtype: torch.dtype, k: int) -> float:
    """Allowed ``|row sum - 1|`` (and ``|exp(log_probs) - probs|``) for rows of ``k`` entries of ``dtype``:
    ``1e-4 + k * eps(dtype)``."""
    return 1e-4 + k * torch.finfo(dtype).eps


def probabilities(x: object, name: str = "probs") -> torch.Tensor:
    """``x`` as a floating tensor of probability rows (last axis): finite, ``>= 0``, rows summing
    to 1 within :func:`tolerance`. An empty tensor passes."""
    p = as_float_tensor(x, name)
    if p.ndim == 0:
        raise ValueError(f"{name} must be probability rows (..., K), got a scalar")
    if p.numel() == 0:
        return p
    sums = p.sum(-1)
    # one pass each and one device sync; NaN propagates into amin and the sums, +-inf into the sums
    low, s_min, s_max = torch.stack([p.amin(), *torch.aminmax(sums)]).tolist()
    if not all(map(math.isfinite, (low, s_min, s_max))):
        raise ValueError(f"{name} contains NaN or inf; check the model's outputs (a diverged model gives NaN logits)")
    if low < 0:
        raise ValueError(f"{name} has negative entries (min {low:.3g}): probabilities are >= 0; "
                         "pass softmax(logits), not logits or log-probabilities")
    tol = tolerance(p.dtype, p.shape[-1])
    if max(abs(s_min - 1), abs(s_max - 1)) > tol:
        raise ValueError(f"{name} rows must sum to 1 (got row sums in [{s_min:.4g}, {s_max:.4g}], tolerance {tol:.1e}); "
                         "pass softmax(logits) over the last axis, not logits or a scaled copy")
    return p


# --------------------------------------------------------------------------- scalars
def _scalar_hint(value: object, name: str) -> str:
    """How to pass ``value`` as an int: ``'pass num_classes=10, not a string'``."""
    if isinstance(value, str) and value.strip().isdigit():
        return f"pass {name}={int(value)}, not a string"
    if isinstance(value, float) and value.is_integer():
        return f"pass {name}={int(value)}, an int"
    return "pass an int"


def integer(value: object, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not bool, str or float), ``>= minimum`` if given."""
    want = ("an integer" if minimum is None else "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {want}, got {value!r} ({type(value).__name__}); "
                                f"{_scalar_hint(value, name)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {want}, got {value}")
    return int(value)


def count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (not bool, str or float) ``>= minimum`` (default 1)."""
    return integer(value, name, minimum)


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """The bounds of :func:`number` in words: ``'in [0, 1]'``, ``'in (0, 1]'``, ``'positive'``, ``'>= 0'``, ``''``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low == 0 and low_open:
        return "positive"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return "" if high is None else f"{'<' if high_open else '<='} {high:g}"


def number(value: object, name: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, finite: bool = True, hint: str = "") -> float:
    """``value`` as a ``float`` if it is a real number (not bool or str; never NaN), finite unless
    ``finite=False``, within ``[low, high]`` (``(low`` / ``high)`` when open). The message names the
    range (``'eps must be in [0, 1], got 2.0'``, ``'lr must be positive, got 0'``); ``hint`` ends it."""
    bounds = _range(low, high, low_open, high_open)
    tail = f"; {hint}" if hint else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){tail}")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        what = "finite" if finite else "a number (not NaN)"
        raise ValueError(f"{name} must be {what}{' and ' + bounds if bounds else ''}, got {value!r}{tail}")
    if (low is not None and (v <= low if low_open else v < low)) or \
            (high is not None and (v >= high if high_open else v > high)):
        raise ValueError(f"{name} must be {bounds}, got {value!r}{tail}")
    return v


def real(value: object, name: str) -> float:
    """``float(value)`` for a real number (NaN, numpy scalars and 0-d arrays or tensors included); strings,
    bools and anything ``float()`` refuses raise :class:`ArgumentTypeError`."""
    if not isinstance(value, (str, bytes, bool, np.bool_)):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ArgumentTypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")


def flag(value: object, name: str, allow_none: bool = False) -> bool | None:
    """``value`` if it is ``True`` or ``False`` (numpy bools too; ``None`` if ``allow_none``); any other
    value, a truthy string such as ``"no"`` included, raises :class:`ArgumentTypeError`."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        allowed = "True, False or None" if allow_none else "True or False"
        raise ArgumentTypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    return bool(value)


def choice(value: object, name: str, options: Sequence[str], *, hint: str | None = None) -> str:
    """``value.lower()`` if it is a string among ``options`` (case-insensitive), else an error saying
    ``"unknown {name} {value!r}; use {hint}"`` (``hint`` defaults to the options)."""
    use = hint or " or ".join(repr(o) for o in options)
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a string, got {value!r} ({type(value).__name__}); use {use}")
    if value.lower() not in options:
        raise ValueError(f"unknown {name} {value!r}; use {use}")
    return value.lower()


def function(value: object, name: str) -> Callable[..., Any]:
    """``value`` if it is callable, else :class:`ArgumentTypeError`."""
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be a callable, got {describe(value)}")
    return value


def float_array(value: object, name: str) -> np.ndarray:
    """``np.asarray(value, dtype=float)``; strings and other non-numbers raise :class:`ArgumentTypeError`."""
    try:
        strings = np.asarray(value).dtype.kind in "USV"
        if not strings:
            return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        strings = False
    got = "strings" if strings else describe(value)
    raise ArgumentTypeError(f"{name} must be numbers (an array of floats), got {got}")
