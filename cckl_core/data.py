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

Sources are not trusted. The offline CIFAR-10 copy, zip or folder, is named CIFAR-10 only once it
is checked to be it: exactly CIFAR-10's ten class folders, with 5,000 training and 1,000 test
images in each (:data:`CIFAR10_CLASSES`, :data:`CIFAR10_PER_CLASS`). A file that is not a zip
(truncated, damaged), an empty class folder, an unreadable image, an image of more than
4,096 x 4,096 pixels (refused from its header, before it is decoded), an image file of more
than 128 MiB (refused before it is read, and read through a bounded read), a path named like an
image that is not a regular file (a FIFO, a link to a device: never opened for reading) and an
image of a bit depth the loader does not read (32-bit or floating-point pixels; 16-bit grey is
scaled to 8 bits) are each one
:class:`DataError` naming the file and saying how to fix it; a missing data set is one
:class:`DataNotFoundError`. An image folder is walked in ``ImageFolder``'s order, following links,
but every folder is entered once (a symbolic-link loop is not followed again) and every file is
read once; what that leaves out is said in one line.

Decoding happens once; the decoded tensors are cached at ``<root>/cache/`` as safetensors (no
pickle, written atomically through :mod:`.store`) beside a JSON sidecar recording the source's
sha256, the cache file's sha256, the class names and the per-class counts. The cache is keyed by
the source's content: a zip by the sha256 of its bytes, an image folder by the relative path and
sha256 of every image, torchvision's files by the sha256 of each, so touching a file decodes
nothing again and changing one always does. Every read checks the entry (its checksum, source
digest, shapes, label range, counts and, for image sources, the labels themselves, which the file
listing gives); an entry that does not agree is ignored with one printed line and decoded again.
A read-only data root works without a cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import os
import stat
import struct
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .paths import SHARED_CIFAR10_ZIP, cifar10_zip, data_root
from .store import CorruptedFileError, atomic_write_json, load_state, read_json, save_state, sha256_file

SYNTHETIC_CLASSES = [f"pattern{k}" for k in range(10)]
_SPLITS = ("train", "test")


class DataNotFoundError(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


class DataError(ValueError):
    """The data on disk cannot be used as it is: an empty class folder, a file that is not a
    readable image or is too large to decode, train and test splits with different class
    folders, a CIFAR-10 copy that is not a zip or not CIFAR-10."""


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


_CACHE_VERSION = "3"  # in every cache entry's name and sidecar: bump when decoding or the cache format changes
_JPEG_NAME = "CIFAR-10 (JPEG q75 copy)"
_announced: set[str] = set()

#: The offline CIFAR-10 copy must hold exactly these class folders (CIFAR-10's label order, which is
#: also the sorted order ``ImageFolder`` gives them) ...
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: ... with this many images in every class folder of each split (a test may shrink these).
CIFAR10_PER_CLASS = {"train": 5000, "test": 1000}
#: The sha256 of the original ``cifar10-jpeg.zip`` (``shared/data/README.md``), named in the fixes.
CIFAR10_ZIP_SHA256 = "1f246f18ee1c4b008b72b11e5d912c2b6a325d41b34a6c0136bab1e640200198"
#: An image with more pixels than this (4,096 x 4,096) is refused from its header, before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
#: An image file larger than this (a zip member: unpacked, as the zip declares it) is refused before it is read.
MAX_IMAGE_BYTES = 128 * 2**20
#: The number of images of each split of torchvision's CIFAR-10 and CIFAR-100 (a cache of them must agree).
_TORCHVISION_SIZES = {"train": 50_000, "test": 10_000}


def _announce(message: str) -> None:
    """Print ``message`` once per process (which data a loader falls back to)."""
    if message not in _announced:
        _announced.add(message)
        print(message, file=sys.stderr, flush=True)


def _other(split: str) -> str:
    """The other split."""
    return "test" if split == "train" else "train"


@dataclass(frozen=True)
class _Listing:
    """One split of an image source before anything is decoded: its class names and its samples
    (file paths or zip members) with their labels, in ``ImageFolder``'s order."""

    classes: list[str]
    samples: list[str]
    labels: list[int]

    def counts(self) -> list[int]:
        """The number of images of each class, in class order."""
        counts = [0] * len(self.classes)
        for label in self.labels:
            counts[label] += 1
        return counts


@dataclass(frozen=True)
class _Expected:
    """What a cache entry must agree with: its source (as messages name it, and the sha256 of its
    content) and what is known of the source without decoding it (classes, labels, image count)."""

    source: str
    digest: str
    classes: list[str] | None = None
    labels: torch.Tensor | None = None
    n: int | None = None


# --------------------------------------------------------------------------- content digests
_sha256_memo: dict[tuple, str] = {}


def _open_regular(path: Path, max_bytes: int | None = None):
    """``path`` opened for reading (binary) if it is a regular file (after following links) of at most
    ``max_bytes``; anything else, a FIFO or a device (``/dev/zero``) included, is one :class:`DataError`
    before a byte is read. Opened without blocking, so a FIFO cannot hang the loader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err}); fix its permissions or remove it") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        link = f", through a link to {os.path.realpath(path)}" if os.path.islink(path) else ""
        raise DataError(f"{path} is not a regular file (a FIFO, a device or a socket{link}); an image must be a "
                        "plain file: remove it or replace it with the image")
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise DataError(f"{path} is {st.st_size:,} bytes, more than the {max_bytes:,} an image file may have "
                        "here; it was not read: replace or delete it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, never more than ``max_bytes`` (a file that grows while it is
    read is refused too): one :class:`DataError` otherwise."""
    fh, _ = _open_regular(path, max_bytes)
    try:
        with fh:
            payload = fh.read(max_bytes + 1)
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err}); fix its permissions or remove it") from None
    if len(payload) > max_bytes:
        raise DataError(f"{path} holds more than the {max_bytes:,} bytes an image file may have here; replace or "
                        "delete it")
    return payload


def _file_sha256(path: Path, max_bytes: int | None = None) -> str:
    """The sha256 of a regular file's bytes (:func:`_open_regular`); a file that cannot be read, is not a
    regular file, or holds more than ``max_bytes`` (refused before it is read, and while reading) is one
    :class:`DataError`.

    Files of 1 MiB or more (a zip, torchvision's batches) are remembered for the process while
    their (device, inode, size, mtime, ctime) stay the same, so loading both splits of a zip reads
    it once; any write to a file changes its ctime.
    """
    if max_bytes is not None:
        return hashlib.sha256(_read_bounded(path, max_bytes)).hexdigest()
    fh, st = _open_regular(path)
    with fh:
        key = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if st.st_size >= 2**20 and key in _sha256_memo:
            return _sha256_memo[key]
        h = hashlib.sha256()
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        except OSError as err:
            raise DataError(f"cannot read {path} ({err.strerror or err}); fix its permissions or remove it") from None
    if st.st_size >= 2**20:
        _sha256_memo[key] = h.hexdigest()
    return h.hexdigest()


def _files_digest(kind: str, base: Path, files, classes=(), max_bytes: int | None = None) -> str:
    """The content key of a folder source: sha256 over ``kind``, the class names and, for every
    file of ``files``, its path relative to ``base`` and the sha256 of its bytes (no file times).
    A file over ``max_bytes`` is refused (:func:`_file_sha256`)."""
    h = hashlib.sha256(f"cckl {kind}\0".encode())
    h.update(json.dumps(list(classes)).encode())
    for path in files:
        h.update(f"\0{os.path.relpath(path, base)}\0{_file_sha256(Path(path), max_bytes)}".encode())
    return h.hexdigest()


def _tree_files(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the decoded-data cache
class _BadCache(Exception):
    """A cache entry that must not be used; the message says why."""


def _cache_paths(root: Path, key: str, split: str, digest: str) -> tuple[Path, Path]:
    """The tensors (``.safetensors``) and the sidecar (``.json``) of one cache entry. The name holds a
    short hash of the cache version and the source digest: a changed source, or a new cache
    version, never meets an old entry (old ``.pt`` caches are not read at all)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).strip("_")[:80]
    tag = hashlib.sha256((_CACHE_VERSION + "\0" + digest).encode()).hexdigest()[:16]
    stem = root / "cache" / f"{safe}-{tag}-{split}"
    return stem.parent / f"{stem.name}.safetensors", stem.parent / f"{stem.name}.json"


_SIDECAR_FIELDS = {"version": str, "source_sha256": str, "sha256": str, "classes": list, "counts": list, "n": int}


def _read_sidecar(sidecar: Path) -> dict:
    """The sidecar's fields, each of the type it must have; else :class:`_BadCache`."""
    try:
        meta = read_json(sidecar)
    except FileNotFoundError:
        raise _BadCache(f"its sidecar {sidecar.name} is missing") from None
    except (CorruptedFileError, OSError) as err:
        raise _BadCache(f"its sidecar cannot be read ({err})") from None
    if not isinstance(meta, dict):
        raise _BadCache("its sidecar is not a JSON object")
    for name, kind in _SIDECAR_FIELDS.items():
        if not isinstance(meta.get(name), kind) or isinstance(meta.get(name), bool):
            raise _BadCache(f"its sidecar has no valid {name!r}")
    return meta


def _check_sidecar(meta: dict, expected: _Expected) -> None:
    """The sidecar must be of this cache version, made from this very source, and consistent."""
    if meta["version"] != _CACHE_VERSION:
        raise _BadCache(f"it is of cache version {meta['version']!r}, not {_CACHE_VERSION!r}")
    if meta["source_sha256"] != expected.digest:
        raise _BadCache("it was made from other data (its source sha256 is not this source's)")
    if len(meta["sha256"]) != 64:
        raise _BadCache("its sidecar records no valid sha256 of the cache file")
    classes, counts = meta["classes"], meta["counts"]
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise _BadCache("its sidecar's class names are not valid")
    if expected.classes is not None and classes != list(expected.classes):
        raise _BadCache(f"its classes {classes} are not the source's {list(expected.classes)}")
    if (len(counts) != len(classes) or sum(counts) != meta["n"]
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in counts)):
        raise _BadCache("its sidecar's image counts do not add up")
    if expected.n is not None and meta["n"] != expected.n:
        raise _BadCache(f"it holds {meta['n']:,} images, the source {expected.n:,}")


def _check_tensors(state, meta: dict, expected: _Expected) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached images and labels: they must have the shapes, label range and per-class counts the
    sidecar records, and, where the source's labels are known without decoding, be those labels."""
    if not isinstance(state, dict) or not all(isinstance(state.get(k), torch.Tensor) for k in ("images", "labels")):
        raise _BadCache("it holds no images and labels")
    images, labels, n, k = state["images"], state["labels"], meta["n"], len(meta["classes"])
    if images.dtype != torch.uint8 or tuple(images.shape) != (n, 3, 32, 32):
        raise _BadCache(f"its images are {images.dtype} {tuple(images.shape)}, not uint8 {(n, 3, 32, 32)}")
    if labels.dtype != torch.long or tuple(labels.shape) != (n,):
        raise _BadCache(f"its labels are {labels.dtype} {tuple(labels.shape)}, not int64 ({n},)")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise _BadCache(f"its labels are not all in 0..{k - 1}")
    if torch.bincount(labels, minlength=k).tolist() != meta["counts"]:
        raise _BadCache("its labels do not have the per-class counts its sidecar records")
    if expected.labels is not None and not torch.equal(labels, expected.labels):
        raise _BadCache("its labels are not the source's")
    return images, labels


def _read_cache(tensors: Path, sidecar: Path, expected: _Expected) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The images, labels and classes of a cache entry, checked against its sidecar (which records
    the cache file's sha256) and against ``expected``; None when nothing is cached; raises
    :class:`_BadCache` when the entry must not be used."""
    if not sidecar.exists() and not tensors.exists():
        return None
    meta = _read_sidecar(sidecar)
    _check_sidecar(meta, expected)
    try:
        state = load_state(tensors, meta["sha256"])
    except FileNotFoundError:
        raise _BadCache(f"{tensors.name} is missing") from None
    except CorruptedFileError as err:  # "<path> does not match the checksum ..." / "<path> is not a readable ..."
        raise _BadCache(str(err).replace(str(tensors), "it", 1)) from None
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise _BadCache(f"it cannot be read ({type(err).__name__}: {err})") from None
    images, labels = _check_tensors(state, meta, expected)
    return images, labels, list(meta["classes"])


def _write_cache(tensors: Path, sidecar: Path, data: ImageData, expected: _Expected) -> None:
    """Keep ``data`` as a cache entry: the tensors as safetensors, then the sidecar, both written
    atomically through :mod:`.store`. A read-only data root simply goes without a cache."""
    counts = torch.bincount(data.labels, minlength=len(data.classes)).tolist()
    try:
        sha = save_state(tensors, {"images": data.images, "labels": data.labels})
        atomic_write_json(sidecar, {
            "version": _CACHE_VERSION, "source": expected.source, "source_sha256": expected.digest,
            "file": tensors.name, "sha256": sha, "name": data.name, "split": data.split,
            "classes": list(data.classes), "counts": counts, "n": len(data), "shape": list(data.images.shape)})
    except OSError:
        pass


def _cached(root: Path, key: str, split: str, name: str, expected: _Expected, build) -> ImageData:
    """One split of a source: from its cache entry at ``<root>/cache/`` when that agrees with the
    source (:func:`_read_cache`), else decoded by ``build()`` and cached. An entry that does not
    agree is never used: one printed line says so, and it is decoded again and replaced."""
    tensors, sidecar = _cache_paths(root, key, split, expected.digest)
    try:
        found = _read_cache(tensors, sidecar, expected)
    except _BadCache as why:
        print(f"[cckl] ignoring the decoded-data cache {tensors}: {why}; decoding {expected.source} again",
              file=sys.stderr, flush=True)
        found = None
    if found is not None:
        images, labels, classes = found
        return ImageData(images, labels, classes, name, split)
    data = build()
    _write_cache(tensors, sidecar, data, expected)
    return data


# --------------------------------------------------------------------------- checking a source
def _check_same_classes(where: str, split: str, classes: list[str], other: list[str] | None) -> None:
    """The two splits must have the same class folders, or labels would mean different classes."""
    if other is None or classes == other:
        return
    other_split = _other(split)
    raise DataError(
        f"{where}: the class folders of '{split}' and '{other_split}' differ, so their labels would not match: "
        f"{split} has {classes}, {other_split} has {other}; only in {split}: {sorted(set(classes) - set(other))}, "
        f"only in {other_split}: {sorted(set(other) - set(classes))}. Give both splits the same class folders.")


def _check_not_empty(where: str, listing: _Listing, folder_name, fix: str) -> None:
    """Every class folder must hold at least one image (``folder_name(c)`` names class ``c``'s folder)."""
    empty = [c for c, n in zip(listing.classes, listing.counts()) if n == 0]
    if empty:
        from torchvision.datasets.folder import IMG_EXTENSIONS

        raise DataError(f"{where}: the class folder(s) {', '.join(folder_name(c) for c in empty)} hold no image "
                        f"files ({', '.join(IMG_EXTENSIONS)}); {fix}")


def _names(items: list[str], most: int = 12) -> str:
    """``items`` for a one-line message: at most ``most`` of them, then how many in all."""
    shown = ", ".join(items[:most])
    return f"[{shown}, ... ({len(items):,} in all)]" if len(items) > most else f"[{shown}]"


def _check_cifar10(where: str, split: str, listing: _Listing, fix: str) -> None:
    """The offline CIFAR-10 copy must BE CIFAR-10 before it is named so: exactly the class folders
    :data:`CIFAR10_CLASSES` and :data:`CIFAR10_PER_CLASS` images in each; else one :class:`DataError`."""
    want = list(CIFAR10_CLASSES)
    if listing.classes != want:
        missing, extra = sorted(set(want) - set(listing.classes)), sorted(set(listing.classes) - set(want))
        which = ("none of them CIFAR-10's" if not set(want) & set(listing.classes)
                 else f"missing: {_names(missing)}, not CIFAR-10's: {_names(extra)}")
        raise DataError(
            f"{where} is not the CIFAR-10 copy: its {split}/ has {len(listing.classes)} class folder(s) "
            f"{_names(listing.classes)} ({which}) where CIFAR-10 has the ten {', '.join(want)}; {fix}")
    per_class = CIFAR10_PER_CLASS[split]
    wrong = [f"{split}/{c}/ has {n:,}" for c, n in zip(listing.classes, listing.counts()) if n != per_class]
    if wrong:
        more = f" (and {len(wrong) - 3} more class folders)" if len(wrong) > 3 else ""
        raise DataError(f"{where} is not the complete CIFAR-10 copy: CIFAR-10 has {per_class:,} {split} images in "
                        f"each class, but {', '.join(wrong[:3])}{more}; {fix}")


# --------------------------------------------------------------------------- image folders
def _folder_classes(split_dir: Path) -> list[str] | None:
    """Class folder names under ``split_dir``, sorted as ``ImageFolder`` does; None if it is not a folder."""
    if not split_dir.is_dir():
        return None
    try:
        with os.scandir(split_dir) as it:
            return sorted(entry.name for entry in it if entry.is_dir())
    except OSError as err:
        raise DataError(f"cannot read the folder {split_dir} ({err.strerror or err}); fix its permissions") from None


def _folder_listing(split_dir: Path, classes: list[str]) -> _Listing:
    """The ``ImageFolder`` listing of ``split_dir`` (no image is opened); a split without class
    folders, or a class folder without images, is one :class:`DataError`."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not classes:
        raise DataError(f"{split_dir} holds no class folders: an image-folder data set needs "
                        f"{split_dir}/<class>/<image files>; add them, or point at the right folder")
    samples, labels = [], []
    for k, c in enumerate(classes):
        files = _class_files(split_dir / c, IMG_EXTENSIONS)
        samples += files
        labels += [k] * len(files)
    listing = _Listing(list(classes), samples, labels)
    _check_not_empty(str(split_dir), listing, lambda c: str(split_dir / c), "add images or remove the folder")
    return listing


def _class_files(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """The image files of one class folder in ``ImageFolder``'s order (``os.walk`` following links, folders
    sorted by path, names sorted), resolved and bounded: every folder is entered once (a symbolic-link loop,
    or a second link to a folder already read, is not followed again) and every file is listed once (a
    file reached again through a link is left out); what was left out is said in one line. A path named
    like an image that is not a regular file (a FIFO, a device) is one :class:`DataError`
    (:func:`_open_regular`), refused before it is read."""
    groups, seen_dirs, seen_files, repeats = [], set(), set(), []

    def key(path: str):
        st = os.stat(path)
        return st.st_dev, st.st_ino

    def walk_error(err: OSError) -> None:
        raise DataError(f"cannot read the folder {err.filename} ({err.strerror or err}); fix its permissions or "
                        "remove it")

    seen_dirs.add(key(folder))
    for root, dirs, fnames in os.walk(folder, followlinks=True, onerror=walk_error):
        keep = []
        for d in sorted(dirs):
            try:
                k = key(os.path.join(root, d))
            except OSError:
                continue  # a dangling link
            if k in seen_dirs:
                repeats.append(os.path.join(root, d))
            else:
                seen_dirs.add(k)
                keep.append(d)
        dirs[:] = keep
        groups.append((root, fnames))
    out = []
    for root, fnames in sorted(groups):
        for name in sorted(fnames):
            if not name.lower().endswith(extensions):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError as err:  # a dangling link, say
                raise DataError(f"cannot read {path} ({err.strerror or err}); fix it or remove it") from None
            if not stat.S_ISREG(st.st_mode):
                _open_regular(Path(path))  # raises the one-line error, without reading
            if (st.st_dev, st.st_ino) in seen_files:
                repeats.append(path)
                continue
            seen_files.add((st.st_dev, st.st_ino))
            out.append(path)
    if repeats:
        _announce(f"[cckl] {folder}: {len(repeats)} path(s) lead through links to a folder or image already read "
                  f"(e.g. {repeats[0]}); each folder and image is read once")
    return out


def _folder_fix(folder: Path) -> str:
    """How to repair a broken unpacked CIFAR-10 copy."""
    return (f"delete {folder} and unpack the offline copy there again (python -m zipfile -e cifar10-jpeg.zip {folder}), "
            f"or remove it to read the zip itself")


def _load_folder(path: Path, split: str, name: str, root: Path, key: str, cifar10_copy: bool = False) -> ImageData:
    """An ``ImageFolder`` tree ``<path>/<split>/<class>/*``, decoded once and cached by its content
    (every image's relative path and bytes). With ``cifar10_copy`` it is the unpacked offline
    CIFAR-10 copy: checked to be CIFAR-10 (:func:`_check_cifar10`), then announced."""
    split_dir = path / split
    classes = _folder_classes(split_dir)
    if classes is None:
        raise DataNotFoundError(
            f"no '{split}' folder under {path}: an image-folder data set needs {path}/train/<class>/ and {path}/test/<class>/"
        )
    _check_same_classes(str(path), split, classes, _folder_classes(path / _other(split)))
    listing = _folder_listing(split_dir, classes)
    if cifar10_copy:
        _check_cifar10(str(path), split, listing, _folder_fix(path))
        _announce(f"[cckl] CIFAR-10: using the offline JPEG q75 copy {path} (torchvision files not under {root})")
    digest = _files_digest("image folder", split_dir, listing.samples, listing.classes, MAX_IMAGE_BYTES)
    expected = _Expected(str(split_dir), digest, listing.classes, torch.tensor(listing.labels, dtype=torch.long),
                         len(listing.samples))
    return _cached(root, key, split, name, expected, lambda: _decode_folder(listing, split, name))


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageData:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    files = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    display = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    if not files.exists() and name == "cifar10":  # the offline copy first: no download attempt then
        folder, zip_path = root / "cifar10-jpeg", cifar10_zip()
        if (folder / split).is_dir():
            return _load_folder(folder, split, _JPEG_NAME, root, "cifar10-jpeg", cifar10_copy=True)
        if zip_path.is_file():
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
        except Exception as err:  # incomplete files (torchvision checks their md5)
            raise DataNotFoundError(_missing_message(name, root, err)) from err
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), display, split)

    digest = _files_digest(f"torchvision {name}", files, _tree_files(files))
    return _cached(root, name, split, display, _Expected(str(files), digest, n=_TORCHVISION_SIZES[split]), build)


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
    t = torch.from_numpy(_rgb8(img)).permute(2, 0, 1)
    if t.shape[-2:] != (32, 32):
        from torchvision.transforms.v2 import functional as TF

        t = TF.center_crop(TF.resize(t, 32, antialias=True), 32)
    return t


#: PIL modes of 16-bit grey pixels (a 16-bit PNG): scaled to 8 bits, not clipped.
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")


class _BitDepthError(ValueError):
    """An image whose pixels are of a depth the loader does not read (32-bit integers, floats)."""


def _rgb8(img) -> np.ndarray:
    """``img`` as uint8 RGB (H, W, 3). 16-bit grey (a 16-bit PNG) is scaled to 8 bits (PIL's own conversion
    would clip it to white); 32-bit integer or floating-point pixels are refused (:class:`_BitDepthError`)."""
    if img.mode in _GREY16 or (img.mode == "I" and img.format == "PNG"):  # "I": a 16-bit PNG in older PIL
        grey = np.asarray(img, dtype=np.uint32)
        if grey.max(initial=0) > 65535:
            raise _BitDepthError(f"its pixels exceed 16 bits (mode {img.mode})")
        grey = ((grey * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("I", "F") or img.mode.startswith(("I;", "F;")):
        raise _BitDepthError(f"its pixels are {'32-bit integers' if img.mode.startswith('I') else 'floating-point'} "
                             f"(mode {img.mode}); this loader reads 8-bit and 16-bit images")
    return np.array(img.convert("RGB"))


def _pixel_limit() -> str:
    """:data:`MAX_IMAGE_PIXELS` for a message: ``4,096 x 4,096`` when it is a square."""
    side = math.isqrt(MAX_IMAGE_PIXELS)
    return f"{side:,} x {side:,}" if side * side == MAX_IMAGE_PIXELS else f"{MAX_IMAGE_PIXELS:,}"


def _check_pixels(size: tuple[int, int], label: str, fix: str) -> None:
    """Refuse an image of more than :data:`MAX_IMAGE_PIXELS` pixels from the size in its header,
    before anything is decoded (a small file can claim an enormous image)."""
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(f"the image {label} is {w:,} x {h:,} pixels, more than the {_pixel_limit()} an image may have "
                        f"here (a decompression bomb?); it was not decoded: {fix}")


#: What PIL raises on a file that is not an image, or a truncated or corrupt one.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)


def _decode_one(open_file, source: str, label: str, fix: str) -> torch.Tensor:
    """Decode one image (``open_file(source)`` gives a binary file) to uint8 (3, 32, 32); any
    failure, a too-large image included, is one :class:`DataError` naming ``label``."""
    from PIL import Image

    try:
        with open_file(source) as fh, Image.open(fh) as img:
            _check_pixels(img.size, label, fix)
            return _to_chw32(img)
    except DataError:
        raise
    except _BitDepthError as err:
        raise DataError(f"the image {label} has a bit depth this loader does not support: {err}; convert it to an "
                        f"8-bit (or 16-bit) PNG or JPEG: {fix}") from None
    except Image.DecompressionBombError as err:
        raise DataError(f"the image {label} is too large to decode ({err}); an image here may have at most "
                        f"{_pixel_limit()} pixels: {fix}") from None
    except _DECODE_ERRORS as err:
        raise DataError(f"cannot decode the image {label} ({type(err).__name__}: {err}); {fix}") from None


def _decode_all(sources: list[str], open_file, desc: str, where: str = "",
                fix: str = "replace or delete that file") -> torch.Tensor:
    """Decode every source (``open_file(source)`` gives a binary file) into one (N, 3, 32, 32) uint8 tensor.

    An unreadable file (not an image, truncated, corrupt, more than :data:`MAX_IMAGE_PIXELS`
    pixels) is one :class:`DataError` naming ``where + source`` and saying ``fix``.
    """
    from PIL import Image

    images = torch.empty(len(sources), 3, 32, 32, dtype=torch.uint8)
    with warnings.catch_warnings():  # sizes are checked here, below PIL's own (warning) limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for i, source in enumerate(_progress(sources, desc)):
            images[i] = _decode_one(open_file, source, f"{where}{source}", fix)
    return images


def _progress(items, desc: str):
    """A progress bar over ``items`` where a person watches (a terminal or a notebook); none in a log or a
    pipe, where a bar's redrawn lines are noise (the scheduler's workers print their own lines)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return items
    from .devices import interactive
    return tqdm(items, desc=desc, mininterval=2.0, disable=not interactive())


def _decode_folder(listing: _Listing, split: str, name: str) -> ImageData:
    """Decode the images of an ``ImageFolder`` listing into uint8 tensors, 32x32 RGB."""
    images = _decode_all(listing.samples, lambda path: io.BytesIO(_read_bounded(Path(path), MAX_IMAGE_BYTES)),
                         f"decoding {name} {split}")
    return ImageData(images, torch.tensor(listing.labels, dtype=torch.long), list(listing.classes), name, split)


# --------------------------------------------------------------------------- the offline zip
def _zip_fix() -> str:
    """How to repair a broken offline CIFAR-10 zip."""
    return f"copy it again, or point CCKL_CIFAR10_ZIP at a good copy; sha256 of the original: {CIFAR10_ZIP_SHA256}"


def _zip_names(zip_path: Path) -> list[str]:
    """The member names of ``zip_path``; a file that is not a readable zip is one :class:`DataError`."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return zf.namelist()
    except OSError as err:
        raise DataError(f"cannot read {zip_path} ({err.strerror or err}): fix its permissions, or point "
                        "CCKL_CIFAR10_ZIP at a readable copy") from None
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise DataError(f"{zip_path} is not a zip file (truncated or damaged? {err}): {_zip_fix()}") from None


def _zip_tree(names: list[str], split: str) -> _Listing | None:
    """The classes and samples of ``<split>/<class>/...`` in a zip's name list, in the order
    ``ImageFolder`` gives on the unpacked tree (classes sorted; within a class, ``os.walk``
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
    return _Listing(classes, files, [index[m.split("/")[1]] for m in files])


def _zip_reader(zf: zipfile.ZipFile, zip_path: Path):
    """``open_file`` for :func:`_decode_all`: a member's bytes, refused before they are read when the
    zip declares more than :data:`MAX_IMAGE_BYTES`; a member that cannot be read (bad CRC, cut
    short, encrypted) is one :class:`DataError` naming it."""
    def open_member(member: str) -> io.BytesIO:
        size = zf.getinfo(member).file_size
        if size > MAX_IMAGE_BYTES:
            raise DataError(f"{zip_path}:{member} is {size:,} bytes unpacked, more than the {MAX_IMAGE_BYTES:,} an "
                            f"image may have here; it was not read: {_zip_fix()}")
        try:
            return io.BytesIO(zf.read(member))
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError, zlib.error) as err:
            raise DataError(f"cannot read {zip_path}:{member} ({type(err).__name__}: {err}): the zip is damaged; "
                            f"{_zip_fix()}") from None
    return open_member


def _load_zip(zip_path: Path, split: str, name: str, root: Path, key: str) -> ImageData:
    """The ``<split>/<class>/*`` images of the offline CIFAR-10 zip, read with ``zipfile`` (no
    unpacking), checked to be CIFAR-10 (:func:`_check_cifar10`), decoded once and cached by the
    sha256 of the zip's bytes."""
    names = _zip_names(zip_path)
    listing = _zip_tree(names, split)
    if listing is None:
        raise DataNotFoundError(f"no '{split}/<class>/' folders in {zip_path}: the zip must hold train/<class>/ and "
                                f"test/<class>/; {_zip_fix()}")
    other = _zip_tree(names, _other(split))
    _check_same_classes(str(zip_path), split, listing.classes, None if other is None else other.classes)
    _check_not_empty(str(zip_path), listing, lambda c: f"{split}/{c}/", _zip_fix())
    _check_cifar10(str(zip_path), split, listing, _zip_fix())
    _announce(f"[cckl] CIFAR-10: using the offline JPEG q75 copy {zip_path} (torchvision files not under {root})")
    digest = _file_sha256(zip_path)
    if digest != CIFAR10_ZIP_SHA256:
        _announce(f"[cckl] note: {zip_path} is not byte for byte the original copy (sha256 {digest}, the original's "
                  f"{CIFAR10_ZIP_SHA256}); it has CIFAR-10's classes and image counts, so it is used")
    labels = torch.tensor(listing.labels, dtype=torch.long)

    def build() -> ImageData:
        with zipfile.ZipFile(zip_path) as zf:
            images = _decode_all(listing.samples, _zip_reader(zf, zip_path),
                                 f"decoding {name} {split} from {zip_path.name}", where=f"{zip_path}:", fix=_zip_fix())
        return ImageData(images, labels, listing.classes, name, split)

    expected = _Expected(str(zip_path), digest, listing.classes, labels, len(listing.samples))
    return _cached(root, key, split, name, expected, build)


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
