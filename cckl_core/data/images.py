"""Images in memory: one split as uint8 tensors, class-balanced subsets, a synthetic data set made in code,
and the batches (with per-sample crop and flip) that training and evaluation iterate over.

Images are kept as ``uint8`` tensors of shape ``(N, 3, 32, 32)`` and turned into floats in ``[0, 1]``
per batch: no normalisation happens outside the model, so attack budgets are in pixel units (``8/255``
is eight grey levels), as in the paper. Where the images come from is :mod:`.sources`.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F

SYNTHETIC_CLASSES = [f"pattern{k}" for k in range(10)]


@dataclass(frozen=True)
class ImageData:
    """Images (uint8, N x 3 x 32 x 32), integer labels and class names of one split."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = "dataset"
    split: str = "train"
    indices: torch.Tensor | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W); got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def float(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """All images as float32 in [0, 1] on ``device``."""
        return to_float(self.images.to(device))

    def take(self, index: torch.Tensor) -> "ImageData":
        """The samples at ``index`` (positions in this split), keeping track of their origin."""
        index = torch.as_tensor(index, dtype=torch.long)
        origin = index if self.indices is None else self.indices[index]
        return ImageData(self.images[index], self.labels[index], self.classes, self.name, self.split, origin)

    def subset(self, n: int | None, seed: int = 0) -> "ImageData":
        """A deterministic class-balanced subset of ``n`` samples (``None`` or ``len(self)``: all;
        more than ``len(self)`` is an error).

        Each class gets ``n // K`` samples, the first ``n % K`` classes one more;
        the choice within a class is a seeded random permutation.
        """
        index = balanced_indices(self.labels, n, seed, what=f"the {self.split} split of {self.name}")
        return self if index is None else self.take(index)


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]: ``x / 255``."""
    return images_uint8.float().div_(255.0)


def check_n(n) -> None:
    """Raise unless ``n`` (a number of samples) is a positive integer or None (all of them)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n (the number of samples) must be a positive integer or None for all, got {n!r}")


def balanced_indices(labels: torch.Tensor, n: int | None, seed: int = 0, *, what: str = "the split") -> torch.Tensor | None:
    """Indices of a class-balanced subset of size ``n``, sorted; ``None`` when ``n`` is None or ``len(labels)``.

    ``n`` larger than ``len(labels)`` is an error (``what`` names the split in its message).
    """
    if n is None:
        return None
    check_n(n)
    if n > len(labels):
        raise ValueError(f"n={n} is more than {what} holds ({len(labels)} samples); ask for at most {len(labels)}, "
                         "or n=None for all")
    if n == len(labels):
        return None
    labels = torch.as_tensor(labels)
    classes = torch.unique(labels).tolist()
    k = len(classes)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for rank, c in enumerate(classes):
        want = n // k + (1 if rank < n % k else 0)
        members = torch.nonzero(labels == c).flatten()
        if want > len(members):
            raise ValueError(f"a class-balanced subset of n={n} from {what} needs {want} samples of class {c}, "
                             f"which has {len(members)}")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:want]])
    return torch.sort(torch.cat(chosen)).values


# --------------------------------------------------------------------------- synthetic
#: Peak memory of :func:`synthetic` per pixel: the uint8 result plus the float32 working
#: tensors alive at once (peak RSS measured 20 bytes at n = 20,000; 32 leaves a margin).
_SYNTHETIC_BYTES_PER_PIXEL = 32


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; else free pages), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def synthetic(split: str = "train", n: int = 2000, seed: int = 0, num_classes: int = 10) -> ImageData:
    """A learnable 3x32x32 data set made in code, deterministic by ``seed``.

    Class ``c`` has a smooth colour template ``T_c`` (low-frequency, amplitude 0.25) and a
    faint high-frequency pattern ``H_c`` (amplitude 3/255, below the 8/255 attack budget).
    A sample is ``clip(0.5 + a * shift(T_c) + H_c + 0.08 * noise, 0, 1)`` with a random
    amplitude ``a`` in [0.3, 1.2] and a random shift of up to 3 pixels. Templates depend
    only on ``seed``; train and test draw different samples from them.
    """
    check_n(n)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    need, free = n * 3 * 32 * 32 * _SYNTHETIC_BYTES_PER_PIXEL, _available_memory()
    if free is not None and need > free:
        raise ValueError(f"synthetic data of n={n:,} images needs about {need / 2**30:.1f} GiB of memory to generate, "
                         f"more than the {free / 2**30:.1f} GiB available; ask for fewer images")
    tmpl_gen = torch.Generator().manual_seed(10_000 + seed)
    low = torch.randn(num_classes, 3, 4, 4, generator=tmpl_gen)
    templates = F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)
    templates = 0.25 * templates / templates.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    high = torch.sign(torch.randn(num_classes, 3, 32, 32, generator=tmpl_gen)) * (3.0 / 255)

    gen = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=gen)]
    amp = 0.3 + 0.9 * torch.rand(n, 1, 1, 1, generator=gen)
    shifts = torch.randint(-3, 4, (n, 2), generator=gen)
    base = templates[labels] * amp
    base = torch.stack([torch.roll(b, (int(s[0]), int(s[1])), dims=(1, 2)) for b, s in zip(base, shifts)])
    x = 0.5 + base + high[labels] + 0.08 * torch.randn(n, 3, 32, 32, generator=gen)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    classes = SYNTHETIC_CLASSES if num_classes == 10 else [f"pattern{k}" for k in range(num_classes)]
    return ImageData(images, labels.long(), list(classes), "synthetic", split)


# --------------------------------------------------------------------------- batching
def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip of a batch.

    torchvision's v2 transforms draw one set of parameters per call, i.e. one crop for
    a whole batch; here every image gets its own offset and flip, drawn from
    ``generator`` on the CPU so the result does not depend on the device.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy, ox = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    bidx = torch.arange(b, device=x.device)[:, None, None, None]
    cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bidx, cidx, rows, cols]


class Batches:
    """Iterate over ``(x, y)`` batches of an :class:`ImageData` on ``device``.

    ``x`` is float32 in [0, 1]. With ``shuffle`` and ``augment`` the order and the
    crop/flip of epoch ``e`` are fixed by ``(seed, e)`` (call :meth:`set_epoch`), so a
    resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, data: ImageData, batch_size: int = 128, shuffle: bool = False, augment: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", drop_last: bool = False,
                 channels_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.shuffle, self.augment = data, batch_size, shuffle, augment
        self.seed, self.device, self.drop_last, self.channels_last = seed, torch.device(device), drop_last, channels_last
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(1_000_003 * self.seed + self.epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size].to(self.device)
            x = to_float(self.images[idx])
            if self.augment:
                x = random_crop_flip(x, gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]