"""Fake data sources for the data tests, made in the test: random JPEG and PNG bytes, image folders and
zips shaped like the offline CIFAR-10 copy, and the loader setting that takes a small fake for CIFAR-10.
Nothing here touches the network. ``test_data_sources.py`` and ``test_data_cache.py`` import these.
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cckl_core.data import DataError, files, sources


CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ORIGINAL_SHA256 = "1f246f18ee1c4b008b72b11e5d912c2b6a325d41b34a6c0136bab1e640200198"  # shared/data/README.md
IGNORED = "[cckl] ignoring the decoded-data cache"


def jpeg_bytes(seed: int, size=(32, 32)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (its pixel data is a few bytes)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def blank_png(width: int, height: int) -> bytes:
    """A real, blank PNG of ``width`` x ``height`` (1 bit per pixel: it compresses to almost nothing)."""
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def cifar_members(classes=CIFAR10, per_class: int = 2, seed: int = 0) -> dict[str, bytes]:
    """``{split}/{class}/{k:04d}.jpg`` -> JPEG bytes, ``per_class`` images of each class in each split."""
    return {f"{split}/{cls}/{k:04d}.jpg": jpeg_bytes(seed * 9973 + s * 1000 + c * 10 + k)
            for s, split in enumerate(("train", "test")) for c, cls in enumerate(classes) for k in range(per_class)}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    for name, payload in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(payload)
    return folder


def random_png(path: Path, seed: int, size=(32, 32)) -> np.ndarray:
    """A random RGB PNG at ``path`` (folders made); returns its pixels (H, W, 3)."""
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def make_tree(root: Path, counts=(("cat", 3), ("dog", 3)), seed: int = 0) -> Path:
    """A user's image folder: ``counts`` gives the training images per class (the test split has 2 each)."""
    for c, (cls, n) in enumerate(counts):
        for k in range(n):
            random_png(root / "train" / cls / f"{k:04d}.png", seed * 1000 + c * 10 + k)
        for k in range(2):
            random_png(root / "test" / cls / f"{k:04d}.png", seed * 1000 + 500 + c * 10 + k)
    return root


def one_line_error(call, *fragments: str, kind=DataError) -> str:
    """``call()`` raises one ``kind`` whose one-line message holds every fragment; return the message."""
    with pytest.raises(kind) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg


@pytest.fixture
def small_cifar10(monkeypatch, tmp_path):
    """A loader that takes 2 images per class per split as CIFAR-10's counts (the class names stay
    CIFAR-10's), with no zip configured, no torchvision files and a fresh announcement set."""
    monkeypatch.setattr(sources, "CIFAR10_PER_CLASS", {"train": 2, "test": 2})
    monkeypatch.setattr(sources, "_announced", set())
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "no-such.zip"))
    return monkeypatch


def use_zip(monkeypatch, path: Path) -> Path:
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(path))
    return path


def ignored_lines(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if IGNORED in line]


def no_decoding(monkeypatch) -> None:
    monkeypatch.setattr(files, "decode_all", lambda *a, **k: pytest.fail("decoded again"))


def make_split_tree(root: Path, classes=("cat", "dog"), per_class=(3, 2), seed: int = 0) -> Path:
    """An image folder with ``per_class`` = (train, test) random PNGs in each class folder."""
    for s, (split, n) in enumerate(zip(("train", "test"), per_class)):
        for c, cls in enumerate(classes):
            for k in range(n):
                random_png(root / split / cls / f"{k:04d}.png", seed * 1000 + s * 100 + c * 10 + k)
    return root
