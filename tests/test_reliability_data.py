"""Data loading never returns a silently wrong result, and a user's mistake is one clear error.

Covers: the decode cache keyed by content (a changed folder or zip is decoded again, two
folders with the same relative name do not share a cache), train/test class sets, empty
class folders, unreadable images, subset sizes, the synthetic memory guard, and the
offline CIFAR-10 zip read without unpacking (same tensors as the unpacked folder, no
download attempt). No network; the real zip is used only where it exists.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cckl_core import data, paths
from cckl_core.data import files, images, sources
from cckl_core.data import DataError, DataNotFoundError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _png(path: Path, seed: int, size=(32, 32)) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _tree(root: Path, classes=("cat", "dog"), per_class=(3, 2), seed: int = 0) -> Path:
    for s, (split, n) in enumerate(zip(("train", "test"), per_class)):
        for c, cls in enumerate(classes):
            for k in range(n):
                _png(root / split / cls / f"{k:04d}.png", seed * 1000 + s * 100 + c * 10 + k)
    return root


def _jpeg_bytes(seed: int, size=(32, 32)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


# --------------------------------------------------------------------------- cache keyed by content
def test_folder_cache_follows_changes_to_the_files(tmp_path):
    tree, root = _tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "train", root=root)
    replaced = _png(tree / "train" / "cat" / "0000.png", seed=999)
    os.utime(tree / "train" / "cat" / "0000.png", ns=(1, 1))  # a different mtime for certain
    second = data.load(f"folder:{tree}", "train", root=root)
    np.testing.assert_array_equal(second.images[0].permute(1, 2, 0).numpy(), replaced)
    assert not torch.equal(first.images[0], second.images[0])
    _png(tree / "train" / "dog" / "0005.png", seed=7)  # a new file
    third = data.load(f"folder:{tree}", "train", root=root)
    assert len(third) == len(first) + 1
    # unchanged folder: served from the cache (nothing is decoded)
    assert torch.equal(data.load(f"folder:{tree}", "train", root=root).images, third.images)


def test_same_relative_folder_name_from_two_directories_is_not_confused(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _tree(tmp_path / "a" / "tree", seed=1)
    _tree(tmp_path / "b" / "tree", seed=2)
    monkeypatch.chdir(tmp_path / "a")
    from_a = data.load("folder:tree", "train", root=root)
    monkeypatch.chdir(tmp_path / "b")
    from_b = data.load("folder:tree", "train", root=root)
    assert not torch.equal(from_a.images, from_b.images)
    direct_b = data.load(f"folder:{tmp_path / 'b' / 'tree'}", "train", root=tmp_path / "fresh")
    assert torch.equal(from_b.images, direct_b.images)


def test_cached_folder_is_not_decoded_again(tmp_path, monkeypatch):
    tree, root = _tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "test", root=root)
    monkeypatch.setattr(files, "decode_all", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(data.load(f"folder:{tree}", "test", root=root).images, first.images)


# --------------------------------------------------------------------------- class sets
def test_test_split_with_other_classes_is_an_error(tmp_path):
    tree = _tree(tmp_path / "tree")
    (tree / "test" / "dog").rename(tree / "test" / "bird")
    for split in ("test", "train"):  # either split, cached or not
        with pytest.raises(DataError) as err:
            data.load(f"folder:{tree}", split, root=tmp_path / "root")
        msg = str(err.value)
        assert isinstance(err.value, ValueError) and "\n" not in msg
        assert "differ" in msg and str(tree) in msg
        assert "['cat', 'dog']" in msg and "['bird', 'cat']" in msg
        assert "only in train: ['dog']" in msg and "only in test: ['bird']" in msg


def test_train_alone_is_fine_without_a_test_split(tmp_path):
    tree = tmp_path / "tree"
    _png(tree / "train" / "a" / "x.png", 0)
    _png(tree / "train" / "b" / "y.png", 1)
    d = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    assert d.classes == ["a", "b"] and d.labels.tolist() == [0, 1]


# --------------------------------------------------------------------------- broken files
def test_empty_class_folder_is_one_clear_error(tmp_path):
    tree = _tree(tmp_path / "tree")
    (tree / "train" / "emu").mkdir()
    (tree / "test" / "emu").mkdir()
    (tree / "test" / "emu" / "notes.txt").write_text("not an image")  # ignored extension: still empty
    with pytest.raises(DataError) as err:
        data.load(f"folder:{tree}", "test", root=tmp_path / "root")
    msg = str(err.value)
    assert str(tree / "test" / "emu") in msg and "no image" in msg and "\n" not in msg


@pytest.mark.parametrize("what", ["truncated", "not_an_image"])
def test_unreadable_image_names_the_file(tmp_path, what):
    tree = _tree(tmp_path / "tree")
    bad = tree / "train" / "dog" / "0001.jpg"
    if what == "truncated":
        bad.write_bytes(_jpeg_bytes(3)[:300])
    else:
        bad.write_text("hello, I am text")
    with pytest.raises(DataError) as err:
        data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    msg = str(err.value)
    assert str(bad) in msg and "cannot decode" in msg and "\n" not in msg
    assert isinstance(err.value, ValueError)


# --------------------------------------------------------------------------- subset sizes
def test_n_larger_than_the_split_is_an_error_naming_both(tmp_path):
    tree = _tree(tmp_path / "tree")
    with pytest.raises(ValueError) as err:
        data.load(f"folder:{tree}", "train", root=tmp_path / "root", n=100)
    msg = str(err.value)
    assert "n=100" in msg and "6 samples" in msg and "train split" in msg and "\n" not in msg
    # n equal to the split is all of it
    assert len(data.load(f"folder:{tree}", "train", root=tmp_path / "root", n=6)) == 6
    with pytest.raises(ValueError, match=r"n=13 is more than the test split of synthetic holds \(12 samples\)"):
        data.synthetic("test", n=12).subset(13)


@pytest.mark.parametrize("n", [0, -3, 2.5, "10", True])
def test_n_must_be_a_positive_integer(n):
    with pytest.raises(ValueError, match="positive integer"):
        data.load("synthetic", "test", n=n)
    with pytest.raises(ValueError, match="positive integer"):
        data.balanced_indices(torch.arange(20) % 2, n)


def test_balanced_indices_n_equal_to_len_and_numpy_integer():
    labels = torch.arange(20) % 4
    assert data.balanced_indices(labels, 20) is None
    assert data.balanced_indices(labels, None) is None
    assert len(data.balanced_indices(labels, np.int64(8))) == 8
    with pytest.raises(ValueError, match=r"n=21 is more than the split holds \(20 samples\)"):
        data.balanced_indices(labels, 21)


# --------------------------------------------------------------------------- synthetic memory guard
def test_synthetic_that_cannot_fit_is_refused(monkeypatch):
    with pytest.raises(ValueError) as err:
        data.load("synthetic", "train", n=10**9)  # about 90 TiB of working memory
    msg = str(err.value)
    assert "n=1,000,000,000" in msg and "GiB" in msg and "fewer" in msg
    monkeypatch.setattr(images, "_available_memory", lambda: 1_000_000)  # 1 MB left
    with pytest.raises(ValueError, match="n=100 images needs about"):
        data.synthetic("train", n=100)
    assert len(data.synthetic("train", n=10)) == 10  # 10 * 3072 * 32 bytes < 1 MB
    with pytest.raises(ValueError, match="num_classes"):
        data.synthetic("train", n=10, num_classes=0)


# --------------------------------------------------------------------------- offline CIFAR-10 zip
def _expect_cifar10(monkeypatch, classes, train: int, test: int) -> None:
    """Make the loader's CIFAR-10 check expect a small fake copy: these classes, so many images each."""
    monkeypatch.setattr(sources, "CIFAR10_CLASSES", tuple(classes))
    monkeypatch.setattr(sources, "CIFAR10_PER_CLASS", {"train": train, "test": test})


def _write_zip(path: Path, seed: int = 0, classes=("bird", "airplane", "cat"), per_class=(4, 2)) -> Path:
    """A small CIFAR-like zip: directory entries, members in scrambled order, a nested folder,
    a non-image file, one 40x48 image (resized like the loader does), a top-level file; every
    class holds ``per_class + 1`` images of each split."""
    rng = np.random.default_rng(seed)
    members = []
    for s, (split, n) in enumerate(zip(("train", "test"), per_class)):
        members += [(f"{split}/", None), (f"{split}/README.txt", b"top-level file, not a class")]
        for c, cls in enumerate(classes):
            members.append((f"{split}/{cls}/", None))
            for k in range(n if c < 2 else n + 1):  # the first two classes get their extra image below
                members.append((f"{split}/{cls}/{k:04d}.jpg", _jpeg_bytes(seed * 997 + s * 100 + c * 10 + k)))
        members.append((f"{split}/{classes[0]}/sub/0000.jpg", _jpeg_bytes(seed * 997 + 77 + s)))
        members.append((f"{split}/{classes[1]}/notes.txt", b"ignored: not an image extension"))
        members.append((f"{split}/{classes[1]}/zz_big.JPG", _jpeg_bytes(seed * 997 + 55 + s, size=(40, 48))))
    order = rng.permutation(len(members))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in order:
            name, payload = members[i]
            if payload is None:
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, payload)
    return path


@pytest.fixture
def offline_zip(tmp_path, monkeypatch):
    zip_path = _write_zip(tmp_path / "cifar10-jpeg.zip")
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(zip_path))
    monkeypatch.setattr(sources, "_announced", set())
    _expect_cifar10(monkeypatch, ("airplane", "bird", "cat"), train=5, test=3)
    return zip_path


@pytest.mark.parametrize("split", ["train", "test"])
def test_zip_gives_the_same_tensors_as_the_unpacked_folder(tmp_path, offline_zip, split, capfd):
    from_zip = data.load("cifar10", split, root=tmp_path / "root_zip", download=False)
    unpacked = tmp_path / "root_folder" / "cifar10-jpeg"
    with zipfile.ZipFile(offline_zip) as zf:
        zf.extractall(unpacked)
    from_folder = data.load("cifar10", split, root=tmp_path / "root_folder", download=False)
    from_image_folder = data.load(f"folder:{unpacked}", split, root=tmp_path / "root_if")
    for other in (from_folder, from_image_folder):
        assert torch.equal(from_zip.images, other.images)
        assert torch.equal(from_zip.labels, other.labels)
        assert from_zip.classes == other.classes == ["airplane", "bird", "cat"]
    assert from_zip.name == from_folder.name == "CIFAR-10 (JPEG q75 copy)"
    n = 4 if split == "train" else 2
    assert len(from_zip) == 3 * (n + 1) and torch.bincount(from_zip.labels).tolist() == [n + 1] * 3
    err = capfd.readouterr().err
    assert err.count(f"using the offline JPEG q75 copy {offline_zip}") == 1
    assert "torchvision files not under" in err


def test_zip_is_announced_once_and_cached(tmp_path, offline_zip, capfd, monkeypatch):
    root = tmp_path / "root"
    first = data.load("cifar10", "test", root=root, download=False)
    assert list((root / "cache").glob("cifar10-jpeg-zip-*-test.safetensors"))
    monkeypatch.setattr(files, "decode_all", lambda *a, **k: pytest.fail("decoded again"))
    again = data.load("cifar10", "test", root=root, download=False, n=6)
    assert len(again) == 6 and torch.equal(first.images[again.indices], again.images)
    assert capfd.readouterr().err.count("[cckl] CIFAR-10: using the offline JPEG q75 copy") == 1


def test_changed_zip_is_decoded_again(tmp_path, offline_zip):
    root = tmp_path / "root"
    first = data.load("cifar10", "test", root=root, download=False)
    _write_zip(offline_zip, seed=5)
    os.utime(offline_zip, ns=(10**18, 10**18))
    second = data.load("cifar10", "test", root=root, download=False)
    assert not torch.equal(first.images, second.images)


def test_zip_is_used_before_any_download_attempt(tmp_path, offline_zip, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted although the offline copy is there")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    d = data.load("cifar10", "test", root=tmp_path / "root", download=True)
    assert d.name == "CIFAR-10 (JPEG q75 copy)"


def test_zip_with_broken_member_or_other_classes(tmp_path, monkeypatch):
    root = tmp_path / "root"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for split in ("train", "test"):
            zf.writestr(f"{split}/cat/0000.jpg", _jpeg_bytes(1))
            zf.writestr(f"{split}/dog/0000.jpg", _jpeg_bytes(2))
        zf.writestr("train/cat/0001.jpg", _jpeg_bytes(6))
        zf.writestr("train/dog/0001.jpg", _jpeg_bytes(3)[:200])
        zf.writestr("test/emu/", b"")
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(bad))
    _expect_cifar10(monkeypatch, ("cat", "dog", "emu"), train=2, test=1)
    with pytest.raises(DataError, match=r"only in test: \['emu'\]"):
        data.load("cifar10", "train", root=root, download=False)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("train/emu/", b"")
    with pytest.raises(DataError, match="test/emu/ hold no image"):
        data.load("cifar10", "test", root=root, download=False)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("train/emu/0000.jpg", _jpeg_bytes(4))
        zf.writestr("train/emu/0001.jpg", _jpeg_bytes(7))
        zf.writestr("test/emu/0000.jpg", _jpeg_bytes(5))
    with pytest.raises(DataError) as err:
        data.load("cifar10", "train", root=root, download=False)
    assert f"{bad}:train/dog/0001.jpg" in str(err.value) and "\n" not in str(err.value)
    assert len(data.load("cifar10", "test", root=root, download=False)) == 3


def test_zip_without_the_split_is_data_not_found(tmp_path, monkeypatch):
    only_train = tmp_path / "only-train.zip"
    with zipfile.ZipFile(only_train, "w") as zf:
        zf.writestr("train/cat/0000.jpg", _jpeg_bytes(1))
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(only_train))
    _expect_cifar10(monkeypatch, ("cat",), train=1, test=1)
    with pytest.raises(DataNotFoundError, match=r"no 'test/<class>/' folders in .*only-train.zip"):
        data.load("cifar10", "test", root=tmp_path / "root", download=False)
    assert len(data.load("cifar10", "train", root=tmp_path / "root", download=False)) == 1


def test_cifar10_zip_path_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("CCKL_CIFAR10_ZIP", raising=False)
    assert paths.cifar10_zip() == paths.SHARED_CIFAR10_ZIP
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "x.zip"))
    assert paths.cifar10_zip() == tmp_path / "x.zip"


@pytest.mark.skipif(not paths.SHARED_CIFAR10_ZIP.is_file(), reason="the offline CIFAR-10 zip is not beside the checkout")
def test_real_offline_zip_test_split(tmp_path, monkeypatch):
    monkeypatch.delenv("CCKL_CIFAR10_ZIP", raising=False)
    d = data.load("cifar10", "test", root=tmp_path, download=False)
    assert d.name == "CIFAR-10 (JPEG q75 copy)" and d.classes == CIFAR10_CLASSES
    assert d.images.shape == (10_000, 3, 32, 32) and torch.bincount(d.labels).tolist() == [1000] * 10
    with zipfile.ZipFile(paths.SHARED_CIFAR10_ZIP) as zf:  # the k-th cat of the test set is test/cat/k.jpg
        for label, k in ((0, 0), (3, 17), (9, 999)):
            with Image.open(io.BytesIO(zf.read(f"test/{CIFAR10_CLASSES[label]}/{k:04d}.jpg"))) as img:
                expected = np.array(img.convert("RGB"))
            np.testing.assert_array_equal(d.images[1000 * label + k].permute(1, 2, 0).numpy(), expected)
