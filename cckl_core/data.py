"""Datasets as in-memory uint8 tensors, class-balanced subsets and tensor batching.

Images are kept as ``uint8`` tensors of shape ``(N, 3, 32, 32)`` and turned into
floats in ``[0, 1]`` per batch: no normalisation happens outside the model, so attack
budgets are in pixel units (``8/255`` is eight grey levels), as in the paper.

Sources, by name:
- ``"cifar10"``, ``"cifar100"``: ``torchvision.datasets`` files under the data root
  (downloaded on first use). For CIFAR-10, when the original files are absent, the
  offline JPEG copy is used instead, without any download attempt: the unpacked
  image folder ``<root>/cifar10-jpeg/{train,test}/<class>/`` if it is there, else the zip
  itself (``$CCKL_CIFAR10_ZIP``, or ``../shared/data/cifar10-jpeg.zip`` beside the
  checkout), read with ``zipfile`` in ``ImageFolder``'s order; both give the same tensors,
  named "CIFAR-10 (JPEG q75 copy)", and the choice is printed once per process.
- ``"folder:<path>"``: any ``torchvision.datasets.ImageFolder`` tree with ``train/``
  and ``test/`` beneath ``<path>``; both splits must have the same class folders.
- ``"synthetic"``: a small learnable dataset generated in code (tests, ``smoke``).

Decoding happens once; the decoded tensors are cached at ``<root>/cache/``, keyed by
the source's content: an image folder by its resolved path and the (name, size,
modification time) of every file, a zip by its resolved path, size and modification time.
An empty class folder or an unreadable image is one :class:`DataError` naming it.
"""
from __future__ import annotations

import hashlib
import io
import numbers
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .paths import SHARED_CIFAR10_ZIP, cifar10_zip, data_root

SYNTHETIC_CLASSES = [f"pattern{k}" for k in range(10)]
_SPLITS = ("train", "test")


class DataNotFoundError(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


class DataError(ValueError):
    """The data on disk cannot be used as it is: an empty class folder, a file that is not a
    readable image, or train and test splits with different class folders."""


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


def _check_n(n) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n (the number of samples) must be a positive integer or None for all, got {n!r}")


def balanced_indices(labels: torch.Tensor, n: int | None, seed: int = 0, *, what: str = "the split") -> torch.Tensor | None:
    """Indices of a class-balanced subset of size ``n``, sorted; ``None`` when ``n`` is None or ``len(labels)``.

    ``n`` larger than ``len(labels)`` is an error (``what`` names the split in its message).
    """
    if n is None:
        return None
    _check_n(n)
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
    ``root`` defaults to ``$CCKL_DATA_ROOT`` or ``./data``. ``n`` is None (all) or an
    integer from 1 to the split's size.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    _check_n(n)
    root = Path(root) if root is not None else data_root()
    if name == "synthetic":
        data = synthetic(split, n=n or (2000 if split == "train" else 500), seed=0)
        return data if n is None else data.subset(n, seed)
    if name.startswith("folder:"):
        data = _load_folder(Path(name[len("folder:"):]).expanduser(), split, name, root, name)
    elif name in ("cifar10", "cifar100"):
        data = _load_cifar(name, split, root, download)
    else:
        raise ValueError(f"unknown dataset {name!r}; use 'cifar10', 'cifar100', 'synthetic' or 'folder:<path>'")
    return data.subset(n, seed)


_CACHE_VERSION = "2"  # part of every cache key: bump when decoding changes
_JPEG_NAME = "CIFAR-10 (JPEG q75 copy)"
_announced: set[str] = set()


def _announce(message: str) -> None:
    """Print ``message`` once per process (which data a loader falls back to)."""
    if message not in _announced:
        _announced.add(message)
        print(message, file=sys.stderr, flush=True)


def _digest(*parts) -> str:
    h = hashlib.sha256(_CACHE_VERSION.encode())
    for part in parts:
        h.update(b"\0" + str(part).encode())
    return h.hexdigest()[:16]


def _listing_digest(folder: Path) -> str:
    """Hash of the resolved path and of every file below ``folder`` as (relative path, size, mtime_ns).

    Cheap (``os.scandir``, no file is read) and changes whenever a file is added, removed,
    replaced or touched, so a cache keyed by it never returns stale tensors.
    """
    entries, stack = [], [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                else:
                    st = entry.stat()
                    entries.append((os.path.relpath(entry.path, folder), st.st_size, st.st_mtime_ns))
    return _digest(folder.resolve(), *sorted(entries))


def _cache_file(root: Path, key: str, split: str, digest: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).strip("_")[:80]
    return root / "cache" / f"{safe}-{digest}-{split}.pt"


def _cached(root: Path, key: str, split: str, digest: str, build) -> ImageData:
    """Decode once with ``build()`` and keep the tensors at ``<root>/cache/`` (atomic write).

    ``digest`` identifies the source's content (see :func:`_listing_digest`); it is part of
    the file name, so a changed source is decoded again.
    """
    path = _cache_file(root, key, split, digest)
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


def _check_same_classes(where: str, split: str, classes: list[str], other: list[str] | None) -> None:
    """The two splits must have the same class folders, or labels would mean different classes."""
    if other is None or classes == other:
        return
    other_split = "test" if split == "train" else "train"
    raise DataError(
        f"{where}: the class folders of '{split}' and '{other_split}' differ, so their labels would not match: "
        f"{split} has {classes}, {other_split} has {other}; only in {split}: {sorted(set(classes) - set(other))}, "
        f"only in {other_split}: {sorted(set(other) - set(classes))}. Give both splits the same class folders.")


def _folder_classes(split_dir: Path) -> list[str] | None:
    """Class folder names under ``split_dir``, sorted as ``ImageFolder`` does; None if it is not a folder."""
    if not split_dir.is_dir():
        return None
    with os.scandir(split_dir) as it:
        return sorted(entry.name for entry in it if entry.is_dir())


def _load_folder(path: Path, split: str, name: str, root: Path, key: str) -> ImageData:
    """An ``ImageFolder`` tree ``<path>/<split>/<class>/*``, decoded once and cached by its listing."""
    split_dir = path / split
    classes = _folder_classes(split_dir)
    if classes is None:
        raise DataNotFoundError(
            f"no '{split}' folder under {path}: an image-folder data set needs {path}/train/<class>/ and {path}/test/<class>/"
        )
    _check_same_classes(str(path), split, classes, _folder_classes(path / ("test" if split == "train" else "train")))
    return _cached(root, key, split, _listing_digest(split_dir), lambda: _decode_folder(split_dir, split, name))


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageData:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    files = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    display = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    if not files.exists() and name == "cifar10":  # the offline copy first: no download attempt then
        folder, zip_path = root / "cifar10-jpeg", cifar10_zip()
        if (folder / split).is_dir():
            _announce(f"[cckl] CIFAR-10: using the offline JPEG q75 copy {folder} (torchvision files not under {root})")
            return _load_folder(folder, split, _JPEG_NAME, root, "cifar10-jpeg")
        if zip_path.is_file():
            _announce(f"[cckl] CIFAR-10: using the offline JPEG q75 copy {zip_path} (torchvision files not under {root})")
            return _load_zip(zip_path, split, _JPEG_NAME, root, "cifar10-jpeg-zip")
    if not files.exists():
        if not download:
            raise DataNotFoundError(_missing_message(name, root, None))
        try:
            cls(str(root), train=(split == "train"), download=True)
        except Exception as err:  # no network
            raise DataNotFoundError(_missing_message(name, root, err)) from err

    def build() -> ImageData:
        try:
            ds = cls(str(root), train=(split == "train"), download=False)
        except Exception as err:  # incomplete files
            raise DataNotFoundError(_missing_message(name, root, err)) from err
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), display, split)

    return _cached(root, name, split, _listing_digest(files), build)


def _missing_message(name: str, root: Path, err: Exception | None) -> str:
    lines = [f"{name} is not under the data root {root} and could not be downloaded"]
    if err is not None:
        lines[0] += f" ({type(err).__name__}: {err})"
    lines.append("Fix it one of two ways:")
    lines.append(f"  1. download it on a machine with internet (torchvision.datasets.{name.upper()}('{root}', download=True)) and copy {root} here, or set CCKL_DATA_ROOT to where it is;")
    if name == "cifar10":
        zip_path = cifar10_zip()
        lines.append(f"  2. use the offline JPEG copy cifar10-jpeg.zip, read directly: put it at {SHARED_CIFAR10_ZIP} or set "
                     f"CCKL_CIFAR10_ZIP=/path/to/cifar10-jpeg.zip (or unpack it: python -m zipfile -e cifar10-jpeg.zip "
                     f"{root / 'cifar10-jpeg'}, which `make data` does).")
        if os.environ.get("CCKL_CIFAR10_ZIP"):
            lines.append(f"     CCKL_CIFAR10_ZIP is set to {zip_path}, which is not a file.")
    else:
        lines.append("  2. point at an image folder with train/<class>/ and test/<class>/: dataset='folder:/path/to/it'.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- decoding
def _to_chw32(img) -> torch.Tensor:
    """A PIL image as uint8 (3, 32, 32) RGB (as ``ImageFolder``'s loader converts it); other sizes are
    resized (shorter side 32, antialiased) and centre-cropped."""
    t = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    if t.shape[-2:] != (32, 32):
        from torchvision.transforms.v2 import functional as TF

        t = TF.center_crop(TF.resize(t, 32, antialias=True), 32)
    return t


def _decode_all(sources: list[str], open_file, desc: str, where: str = "") -> torch.Tensor:
    """Decode every source (``open_file(source)`` gives a binary file) into one (N, 3, 32, 32) uint8 tensor.

    An unreadable file (not an image, truncated, corrupt) is one :class:`DataError` naming
    ``where + source``.
    """
    from PIL import Image

    images = torch.empty(len(sources), 3, 32, 32, dtype=torch.uint8)
    for i, source in enumerate(_progress(sources, desc)):
        try:
            with open_file(source) as fh, Image.open(fh) as img:
                images[i] = _to_chw32(img)
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile) as err:
            raise DataError(f"cannot decode the image {where}{source} ({type(err).__name__}: {err}); "
                            "replace or delete that file") from None
    return images


def _progress(items, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, mininterval=2.0)


def _decode_folder(split_dir: Path, split: str, name: str) -> ImageData:
    """Decode an ``ImageFolder`` tree (``<split_dir>/<class>/*``) into uint8 tensors, 32x32 RGB."""
    import torchvision
    from torchvision.datasets.folder import IMG_EXTENSIONS

    ds = torchvision.datasets.ImageFolder(str(split_dir), allow_empty=True)
    empty = sorted(set(ds.classes) - {ds.classes[t] for t in ds.targets})
    if empty:
        raise DataError(f"{split_dir}: the class folder(s) {', '.join(str(split_dir / c) for c in empty)} hold no image "
                        f"files ({', '.join(IMG_EXTENSIONS)}); add images or remove the folder")
    images = _decode_all([path for path, _ in ds.samples], lambda path: open(path, "rb"), f"decoding {name} {split}")
    return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), name, split)


def _zip_tree(names: list[str], split: str) -> tuple[list[str], list[tuple[str, int]]] | None:
    """Classes and (member, label) samples of ``<split>/<class>/...`` in a zip's name list, in the
    order ``ImageFolder`` gives on the unpacked tree (classes sorted; within a class, ``os.walk``
    folders sorted, then file names sorted). None if the zip has no ``<split>/`` folder."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes, files = set(), []
    for member in names:
        parts = member.split("/")
        if parts[0] != split or len(parts) < 3:  # a class is a folder: split/<class>/...
            continue
        classes.add(parts[1])
        if parts[-1] and member.lower().endswith(IMG_EXTENSIONS):
            files.append(member)
    if not classes:
        return None
    classes = sorted(classes)
    index = {c: k for k, c in enumerate(classes)}
    files.sort(key=lambda m: (index[m.split("/")[1]], m.rsplit("/", 1)[0], m.rsplit("/", 1)[1]))
    return classes, [(m, index[m.split("/")[1]]) for m in files]


def _load_zip(zip_path: Path, split: str, name: str, root: Path, key: str) -> ImageData:
    """The ``<split>/<class>/*`` images of a zip, read with ``zipfile`` (no unpacking), decoded once
    and cached by the zip's resolved path, size and modification time."""
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    tree = _zip_tree(names, split)
    if tree is None:
        raise DataNotFoundError(f"no '{split}/<class>/' folders in {zip_path}: "
                                "the zip must hold train/<class>/ and test/<class>/")
    classes, samples = tree
    other = _zip_tree(names, "test" if split == "train" else "train")
    _check_same_classes(str(zip_path), split, classes, None if other is None else other[0])
    empty = sorted(set(classes) - {classes[label] for _, label in samples})
    if empty:
        from torchvision.datasets.folder import IMG_EXTENSIONS

        raise DataError(f"{zip_path}: the class folder(s) {', '.join(f'{split}/{c}/' for c in empty)} hold no image "
                        f"files ({', '.join(IMG_EXTENSIONS)})")
    st = zip_path.stat()

    def build() -> ImageData:
        with zipfile.ZipFile(zip_path) as zf:
            images = _decode_all([m for m, _ in samples], lambda member: io.BytesIO(zf.read(member)),
                                 f"decoding {name} {split} from {zip_path.name}", where=f"{zip_path}:")
        labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        return ImageData(images, labels, classes, name, split)

    return _cached(root, key, split, _digest(zip_path.resolve(), st.st_size, st.st_mtime_ns), build)


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
    _check_n(n)
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
