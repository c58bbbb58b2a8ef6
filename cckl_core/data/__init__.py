"""Data sets as in-memory uint8 tensors: where they come from, how they are decoded once, and how they
are batched. Four modules, one job each:

- :mod:`.images`: one split in memory (:class:`ImageData`), class-balanced subsets, the synthetic data
  set, per-sample crop and flip, and :class:`Batches`;
- :mod:`.sources`: the data sets by name (CIFAR via torchvision, the offline CIFAR-10 JPEG copy as a zip
  or an unpacked folder, any image folder, ``synthetic``), listed and checked: :func:`load` and
  :func:`available`;
- :mod:`.files`: untrusted image files opened, read within a bound, hashed and decoded (:class:`DataError`);
- :mod:`.decode_cache`: the decoded splits kept at ``<root>/cache/``, keyed and checked by content.

``from cckl_core import data`` then ``data.load(...)``, ``data.ImageData``, ``data.Batches`` and the
names below. Settings (the CIFAR-10 check's classes and counts, the image size limits) live in the module
that reads them, :mod:`.sources` and :mod:`.files`, and are changed there.
"""
from __future__ import annotations

from .files import DataError
from .images import SYNTHETIC_CLASSES, Batches, ImageData, balanced_indices, random_crop_flip, synthetic, to_float
from .sources import DataNotFoundError, available, load

__all__ = ["Batches", "DataError", "DataNotFoundError", "ImageData", "SYNTHETIC_CLASSES", "available",
           "balanced_indices", "load", "random_crop_flip", "synthetic", "to_float"]
