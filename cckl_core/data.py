"""Datasets as in-memory uint8 tensors, class-balanced subsets and tensor batching.

Images are kept as ``uint8`` tensors of shape ``(N, 3, 32, 32)`` and turned into
floats in ``[0, 1]`` per batch: no normalisation happens outside the model, so attack
budgets are in pixel units (``8/255`` is eight grey levels), as in the paper.

Sources, by name:
- ``"cifar10"``, ``"cifar100"``: ``torchvision.datasets`` files under the data root
  (downloaded on first use). For CIFAR-10, an image-folder copy at
  ``<root>/cifar10-jpeg/{train,test}/<class>/`` (the offline JPEG copy) is used when
  the original files are absent.
- ``"folder:<path>"``: any ``torchvision.datasets.ImageFolder`` tree with ``train/``
  and ``test/`` beneath ``<path>``.
- ``"synthetic"``: a small learnable dataset generated in code (tests, ``smoke``).

Decoding happens once; the decoded tensors are cached at ``<root>/cache/``.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .paths import SHARED_CIFAR10_ZIP, data_root

SYNTHETIC_CLASSES = [f"pattern{k}" for k in range(10)]
_SPLITS = ("train", "test")


class DataNotFoundError(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


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
        """A deterministic class-balanced subset of ``n`` samples (``None``: all).

        Each class gets ``n // K`` samples, the first ``n % K`` classes one more;
        the choice within a class is a seeded random permutation.
        """
        index = balanced_indices(self.labels, n, seed)
        return self if index is None else self.take(index)


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]: ``x / 255``."""
    return images_uint8.float().div_(255.0)


def balanced_indices(labels: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor | None:
    """Indices of a class-balanced subset of size ``n``, sorted; ``None`` when ``n`` covers all."""
    if n is None or n >= len(labels):
        return None
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    labels = torch.as_tensor(labels)
    classes = torch.unique(labels).tolist()
    k = len(classes)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for rank, c in enumerate(classes):
        want = n // k + (1 if rank < n % k else 0)
        members = torch.nonzero(labels == c).flatten()
        if want > len(members):
            raise ValueError(f"class {c} has {len(members)} samples, {want} were asked for")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:want]])
    return torch.sort(torch.cat(chosen)).values


# --------------------------------------------------------------------------- loading
def load(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    n: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageData:
    """Load one split of a data set as an :class:`ImageData`, optionally a balanced subset of ``n``.

    ``name`` is ``"cifar10"``, ``"cifar100"``, ``"synthetic"`` or ``"folder:<path>"``;
    ``root`` defaults to ``$CCKL_DATA_ROOT`` or ``./data``.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = Path(root) if root is not None else data_root()
    if name == "synthetic":
        data = synthetic(split, n=n or (2000 if split == "train" else 500), seed=0)
        return data if n is None else data.subset(n, seed)
    if name.startswith("folder:"):
        data = _cached(root, name, split, lambda: _load_image_folder(Path(name[len("folder:"):]).expanduser(), split, name))
    elif name in ("cifar10", "cifar100"):
        data = _load_cifar(name, split, root, download)
    else:
        raise ValueError(f"unknown dataset {name!r}; use 'cifar10', 'cifar100', 'synthetic' or 'folder:<path>'")
    return data.subset(n, seed)


def _cache_file(root: Path, key: str, split: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).strip("_")
    return root / "cache" / f"{safe}-{split}.pt"


def _cached(root: Path, key: str, split: str, build) -> ImageData:
    """Decode once with ``build()`` and keep the tensors at ``<root>/cache/`` (atomic write)."""
    path = _cache_file(root, key, split)
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return ImageData(blob["images"], blob["labels"], list(blob["classes"]), blob["name"], split)
        except Exception:  # corrupted cache: decode again
            path.unlink(missing_ok=True)
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save({"images": data.images, "labels": data.labels, "classes": data.classes, "name": data.name}, tmp)
        os.replace(tmp, path)
    except OSError:  # a read-only root still works, just without the cache
        pass
    return data


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageData:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    marker = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    display = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    folder = root / "cifar10-jpeg"
    if not (root / marker).exists() and name == "cifar10" and (folder / split).is_dir():
        return _cached(root, "cifar10-jpeg", split, lambda: _load_image_folder(folder, split, "CIFAR-10 (JPEG q75 copy)"))

    def build() -> ImageData:
        try:
            ds = cls(str(root), train=(split == "train"), download=download and not (root / marker).exists())
        except Exception as err:  # no network, no files
            raise DataNotFoundError(_missing_message(name, root, err)) from err
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), display, split)

    if not (root / marker).exists() and not download:
        raise DataNotFoundError(_missing_message(name, root, None))
    return _cached(root, name, split, build)


def _missing_message(name: str, root: Path, err: Exception | None) -> str:
    lines = [f"{name} is not under the data root {root} and could not be downloaded"]
    if err is not None:
        lines[0] += f" ({type(err).__name__}: {err})"
    lines.append("Fix it one of two ways:")
    lines.append(f"  1. download it on a machine with internet (torchvision.datasets.{name.upper()}('{root}', download=True)) and copy {root} here, or set CCKL_DATA_ROOT to where it is;")
    if name == "cifar10":
        zip_hint = SHARED_CIFAR10_ZIP if SHARED_CIFAR10_ZIP.exists() else "cifar10-jpeg.zip"
        lines.append(f"  2. unpack the offline image-folder copy: python -m zipfile -e {zip_hint} {root / 'cifar10-jpeg'}  (or `make data`).")
    else:
        lines.append("  2. point at an image folder with train/<class>/ and test/<class>/: dataset='folder:/path/to/it'.")
    return "\n".join(lines)


def _load_image_folder(path: Path, split: str, name: str) -> ImageData:
    """Decode an ``ImageFolder`` tree (``<path>/<split>/<class>/*``) into uint8 tensors, 32x32 RGB."""
    import torchvision
    from torchvision.transforms.v2 import functional as TF

    split_dir = path / split
    if not split_dir.is_dir():
        raise DataNotFoundError(
            f"no '{split}' folder under {path}: an image-folder data set needs {path}/train/<class>/ and {path}/test/<class>/"
        )
    ds = torchvision.datasets.ImageFolder(str(split_dir))  # PIL loader, converted to RGB
    images = torch.empty(len(ds), 3, 32, 32, dtype=torch.uint8)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = lambda it, **_: it  # noqa: E731
    for i, (path_i, _) in enumerate(tqdm(ds.samples, desc=f"decoding {name} {split}", mininterval=2.0)):
        img = TF.pil_to_tensor(ds.loader(path_i))
        if img.shape[-2:] != (32, 32):
            img = TF.center_crop(TF.resize(img, 32, antialias=True), 32)
        images[i] = img
    return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), name, split)


# --------------------------------------------------------------------------- synthetic
def synthetic(split: str = "train", n: int = 2000, seed: int = 0, num_classes: int = 10) -> ImageData:
    """A learnable 3x32x32 data set made in code, deterministic by ``seed``.

    Class ``c`` has a smooth colour template ``T_c`` (low-frequency, amplitude 0.25) and a
    faint high-frequency pattern ``H_c`` (amplitude 3/255, below the 8/255 attack budget).
    A sample is ``clip(0.5 + a * shift(T_c) + H_c + 0.08 * noise, 0, 1)`` with a random
    amplitude ``a`` in [0.3, 1.2] and a random shift of up to 3 pixels. Templates depend
    only on ``seed``; train and test draw different samples from them.
    """
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
