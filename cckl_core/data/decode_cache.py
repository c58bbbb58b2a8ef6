"""The decode cache: every split of an image source is decoded once and kept at ``<root>/cache/`` as
safetensors (no pickle, written atomically through :mod:`cckl_core.store`) beside a JSON sidecar
recording the source's sha256, the cache file's sha256, the class names and the per-class counts.

The cache is keyed by the source's content (:class:`Expected`; the digests come from
:mod:`.files`): a zip by the sha256 of its bytes, an image folder by the relative path and sha256 of
every image, torchvision's files by the sha256 of each, so touching a file decodes nothing again and
changing one always does. Every read checks the entry (its checksum, source digest, shapes, label
range, counts and, for image sources, the labels themselves, which the file listing gives); an entry
that does not agree is ignored with one printed line and decoded again. A read-only data root works
without a cache.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..store import CorruptedFileError, atomic_write_json, load_state, read_json, save_state
from .images import ImageData

CACHE_VERSION = "3"  # in every cache entry's name and sidecar: bump when decoding or the cache format changes


@dataclass(frozen=True)
class Expected:
    """What a cache entry must agree with: its source (as messages name it, and the sha256 of its
    content) and what is known of the source without decoding it (classes, labels, image count)."""

    source: str
    digest: str
    classes: list[str] | None = None
    labels: torch.Tensor | None = None
    n: int | None = None


class _BadCache(Exception):
    """A cache entry that must not be used; the message says why."""


def _cache_paths(root: Path, key: str, split: str, digest: str) -> tuple[Path, Path]:
    """The tensors (``.safetensors``) and the sidecar (``.json``) of one cache entry. The name holds a
    short hash of the cache version and the source digest: a changed source, or a new cache
    version, never meets an old entry (old ``.pt`` caches are not read at all)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).strip("_")[:80]
    tag = hashlib.sha256((CACHE_VERSION + "\0" + digest).encode()).hexdigest()[:16]
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


def _check_sidecar(meta: dict, expected: Expected) -> None:
    """The sidecar must be of this cache version, made from this very source, and consistent."""
    if meta["version"] != CACHE_VERSION:
        raise _BadCache(f"it is of cache version {meta['version']!r}, not {CACHE_VERSION!r}")
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


def _check_tensors(state, meta: dict, expected: Expected) -> tuple[torch.Tensor, torch.Tensor]:
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


def _read_cache(tensors: Path, sidecar: Path, expected: Expected) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
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


def _write_cache(tensors: Path, sidecar: Path, data: ImageData, expected: Expected) -> None:
    """Keep ``data`` as a cache entry: the tensors as safetensors, then the sidecar, both written
    atomically through :mod:`.store`. A read-only data root simply goes without a cache."""
    counts = torch.bincount(data.labels, minlength=len(data.classes)).tolist()
    try:
        sha = save_state(tensors, {"images": data.images, "labels": data.labels})
        atomic_write_json(sidecar, {
            "version": CACHE_VERSION, "source": expected.source, "source_sha256": expected.digest,
            "file": tensors.name, "sha256": sha, "name": data.name, "split": data.split,
            "classes": list(data.classes), "counts": counts, "n": len(data), "shape": list(data.images.shape)})
    except OSError:
        pass


def cached(root: Path, key: str, split: str, name: str, expected: Expected,
           build: Callable[[], ImageData]) -> ImageData:
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

