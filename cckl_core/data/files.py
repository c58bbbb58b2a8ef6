"""Untrusted image files: opened only when they are regular files, read within a bound, hashed, and
decoded to uint8 RGB 32x32.

An image of more than :data:`MAX_IMAGE_PIXELS` pixels is refused from its header, before it is
decoded; an image file of more than :data:`MAX_IMAGE_BYTES` is refused before it is read, and read
through a bounded read; a path named like an image that is not a regular file (a FIFO, a link to a
device) is never opened for reading; an image of a bit depth the loader does not read (32-bit or
floating-point pixels) is refused, 16-bit grey is scaled to 8 bits. Each is one :class:`DataError`
naming the file and saying how to fix it. The sha256 digests here key the decode cache
(:mod:`.decode_cache`) by the content of a source.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """The data on disk cannot be used as it is: an empty class folder, a file that is not a
    readable image or is too large to decode, train and test splits with different class
    folders, a CIFAR-10 copy that is not a zip or not CIFAR-10."""


#: An image with more pixels than this (4,096 x 4,096) is refused from its header, before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
#: An image file larger than this (a zip member: unpacked, as the zip declares it) is refused before it is read.
MAX_IMAGE_BYTES = 128 * 2**20


# --------------------------------------------------------------------------- reading and hashing
_sha256_memo: dict[tuple, str] = {}


def open_regular(path: Path, max_bytes: int | None = None):
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


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, never more than ``max_bytes`` (a file that grows while it is
    read is refused too): one :class:`DataError` otherwise."""
    fh, _ = open_regular(path, max_bytes)
    try:
        with fh:
            payload = fh.read(max_bytes + 1)
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err}); fix its permissions or remove it") from None
    if len(payload) > max_bytes:
        raise DataError(f"{path} holds more than the {max_bytes:,} bytes an image file may have here; replace or "
                        "delete it")
    return payload


def file_sha256(path: Path, max_bytes: int | None = None) -> str:
    """The sha256 of a regular file's bytes (:func:`open_regular`); a file that cannot be read, is not a
    regular file, or holds more than ``max_bytes`` (refused before it is read, and while reading) is one
    :class:`DataError`.

    Files of 1 MiB or more (a zip, torchvision's batches) are remembered for the process while
    their (device, inode, size, mtime, ctime) stay the same, so loading both splits of a zip reads
    it once; any write to a file changes its ctime.
    """
    if max_bytes is not None:
        return hashlib.sha256(read_bounded(path, max_bytes)).hexdigest()
    fh, st = open_regular(path)
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


def files_digest(kind: str, base: Path, files, classes=(), max_bytes: int | None = None) -> str:
    """The content key of a folder source: sha256 over ``kind``, the class names and, for every
    file of ``files``, its path relative to ``base`` and the sha256 of its bytes (no file times).
    A file over ``max_bytes`` is refused (:func:`file_sha256`)."""
    h = hashlib.sha256(f"cckl {kind}\0".encode())
    h.update(json.dumps(list(classes)).encode())
    for path in files:
        h.update(f"\0{os.path.relpath(path, base)}\0{file_sha256(Path(path), max_bytes)}".encode())
    return h.hexdigest()


def tree_files(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


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


def decode_all(sources: list[str], open_file, desc: str, where: str = "",
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
    from ..devices import interactive
    return tqdm(items, desc=desc, mininterval=2.0, disable=not interactive())

