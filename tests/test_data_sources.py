"""Data sources (:mod:`cckl_core.data.sources` and :mod:`cckl_core.data.files`): image folders, the offline
CIFAR-10 copy as a zip or a folder, torchvision's CIFAR, and :func:`cckl_core.data.available`; none is trusted.

Every bad source ends in one clear error, never a traceback or a silently different data set:
a truncated zip, a file that is not a zip, a damaged zip member, a zip or unpacked folder of
another data set given as the CIFAR-10 copy, an image that claims an enormous size, class folders
that differ between the splits, an empty class folder, an unreadable image. The zip gives the same
tensors as the unpacked folder, without any download attempt. The decode cache is tested in
``test_data_cache.py``. No network; small fake zips and folders stand in for CIFAR-10
(the expected counts are shrunk), and the real zip is used only where it exists.
"""
from __future__ import annotations

import io
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from data_fakes import (CIFAR10, ORIGINAL_SHA256, blank_png, cifar_members, jpeg_bytes, make_split_tree, make_tree,
                        one_line_error, png_claiming, random_png, small_cifar10, use_zip, write_folder, write_zip)

from cckl_core import data, paths, store
from cckl_core.data import DataError, DataNotFoundError, files, sources


# --------------------------------------------------------------------------- zips that are not zips
@pytest.mark.parametrize("keep", [0.5, 0.05, 0.0])
def test_truncated_zip_is_one_clear_error(tmp_path, small_cifar10, keep):
    good = write_zip(tmp_path / "good.zip", cifar_members())
    payload = good.read_bytes()
    bad = tmp_path / "cifar10-jpeg.zip"
    bad.write_bytes(payload[:int(len(payload) * keep)])
    use_zip(small_cifar10, bad)
    for split in ("train", "test"):
        one_line_error(lambda: data.load("cifar10", split, root=tmp_path / "root", download=False),
                        str(bad), "is not a zip file", "truncated or damaged", "CCKL_CIFAR10_ZIP",
                        ORIGINAL_SHA256)
    assert not (tmp_path / "root" / "cache").exists()


@pytest.mark.parametrize("what", ["text", "jpeg", "zip_magic_only"])
def test_file_that_is_not_a_zip_is_one_clear_error(tmp_path, small_cifar10, what):
    bad = tmp_path / "cifar10-jpeg.zip"
    if what == "text":
        bad.write_text("this is not a zip\n" * 100)
    elif what == "jpeg":
        bad.write_bytes(jpeg_bytes(1))
    else:
        bad.write_bytes(b"PK\x03\x04" + os.urandom(2000))  # starts like a zip, is not one
    use_zip(small_cifar10, bad)
    one_line_error(lambda: data.load("cifar10", "test", root=tmp_path / "root", download=False),
                    str(bad), "is not a zip file", "copy it again", "CCKL_CIFAR10_ZIP")


def test_damaged_zip_member_is_one_clear_error(tmp_path, small_cifar10):
    members = cifar_members()
    bad = write_zip(tmp_path / "cifar10-jpeg.zip", members)
    payload = bytearray(bad.read_bytes())
    target = members["train/dog/0001.jpg"]
    at = payload.index(target) + len(target) // 2  # stored: the member's bytes are in the file as they are
    payload[at] ^= 0xFF
    bad.write_bytes(bytes(payload))
    use_zip(small_cifar10, bad)
    one_line_error(lambda: data.load("cifar10", "train", root=tmp_path / "root", download=False),
                    f"{bad}:train/dog/0001.jpg", "the zip is damaged", "copy it again", "CCKL_CIFAR10_ZIP")


# --------------------------------------------------------------------------- the CIFAR-10 copy must be CIFAR-10
def _wrong_data_set() -> dict[str, bytes]:
    """A valid zip's worth of another data set: two classes, a few images."""
    return cifar_members(classes=("apple", "pear"), per_class=3)


def test_zip_of_another_data_set_is_not_called_cifar10(tmp_path, monkeypatch):
    """The real check (5,000 / 1,000 per class), nothing shrunk: a valid zip of two classes is refused."""
    wrong = use_zip(monkeypatch, write_zip(tmp_path / "cifar10-jpeg.zip", _wrong_data_set()))
    for split in ("train", "test"):
        one_line_error(lambda: data.load("cifar10", split, root=tmp_path / "root", download=False),
                        str(wrong), "is not the CIFAR-10 copy", "[apple, pear]", "airplane", "truck",
                        "CCKL_CIFAR10_ZIP", ORIGINAL_SHA256)
    assert not (tmp_path / "root" / "cache").exists()


def test_folder_of_another_data_set_is_not_called_cifar10(tmp_path, monkeypatch):
    """An unpacked ``cifar10-jpeg`` folder under the data root is checked the same way."""
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "no-such.zip"))
    folder = write_folder(tmp_path / "root" / "cifar10-jpeg", _wrong_data_set())
    for split in ("train", "test"):
        one_line_error(lambda: data.load("cifar10", split, root=tmp_path / "root", download=False),
                        str(folder), "is not the CIFAR-10 copy", "[apple, pear]", "python -m zipfile -e")
    assert not (tmp_path / "root" / "cache").exists()


@pytest.mark.parametrize("source", ["zip", "folder"])
@pytest.mark.parametrize("case", ["few_images", "extra_class", "missing_class", "one_short"])
def test_cifar10_copy_with_wrong_classes_or_counts_is_refused(tmp_path, monkeypatch, source, case):
    if case == "few_images":  # the ten classes, two images each: the real counts are not met
        members, expect = cifar_members(), ["is not the complete CIFAR-10 copy", "5,000", "train/airplane/ has 2"]
    else:
        monkeypatch.setattr(sources, "CIFAR10_PER_CLASS", {"train": 2, "test": 2})
        if case == "extra_class":
            members, expect = cifar_members(classes=CIFAR10 + ("zebra",)), ["11 class folder(s)", "not CIFAR-10's: [zebra]"]
        elif case == "missing_class":
            members, expect = cifar_members(classes=CIFAR10[:-1]), ["9 class folder(s)", "missing: [truck]"]
        else:
            members = {k: v for k, v in cifar_members().items() if k != "train/cat/0001.jpg"}
            expect = ["is not the complete CIFAR-10 copy", "train/cat/ has 1"]
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "no-such.zip"))
    if source == "zip":
        where = use_zip(monkeypatch, write_zip(tmp_path / "cifar10-jpeg.zip", members))
    else:
        where = write_folder(tmp_path / "root" / "cifar10-jpeg", members)
    one_line_error(lambda: data.load("cifar10", "train", root=tmp_path / "root", download=False), str(where), *expect)


def test_small_fake_cifar10_passes_the_check_from_zip_and_folder(tmp_path, small_cifar10, capfd):
    members = cifar_members()
    zip_path = use_zip(small_cifar10, write_zip(tmp_path / "cifar10-jpeg.zip", members))
    from_zip = data.load("cifar10", "test", root=tmp_path / "root_zip", download=False)
    write_folder(tmp_path / "root_folder" / "cifar10-jpeg", members)
    from_folder = data.load("cifar10", "test", root=tmp_path / "root_folder", download=False)
    for d in (from_zip, from_folder):
        assert d.name == "CIFAR-10 (JPEG q75 copy)" and d.classes == list(CIFAR10)
        assert torch.bincount(d.labels).tolist() == [2] * 10
    assert torch.equal(from_zip.images, from_folder.images) and torch.equal(from_zip.labels, from_folder.labels)
    err = capfd.readouterr().err
    assert err.count(f"using the offline JPEG q75 copy {zip_path}") == 1
    assert "not byte for byte the original copy" in err  # it is not the real zip: said once, then used


@pytest.mark.skipif(not paths.SHARED_CIFAR10_ZIP.is_file(), reason="the offline CIFAR-10 zip is not beside the checkout")
def test_real_zip_is_cifar10_and_the_original():
    names = sources._zip_names(paths.SHARED_CIFAR10_ZIP)
    for split in ("train", "test"):
        listing = sources._zip_tree(names, split)
        sources._check_cifar10(str(paths.SHARED_CIFAR10_ZIP), split, listing, "")
        assert listing.classes == list(CIFAR10) and len(listing.samples) == 10 * sources.CIFAR10_PER_CLASS[split]
    assert store.sha256_file(paths.SHARED_CIFAR10_ZIP) == ORIGINAL_SHA256


# --------------------------------------------------------------------------- images too large to decode
@pytest.mark.parametrize("source", ["folder", "zip"])
@pytest.mark.parametrize("size", [(20_000, 20_000), (10_000, 10_000), (5_000, 5_000), (100_000, 200)])
def test_image_claiming_an_enormous_size_is_refused_before_decoding(tmp_path, small_cifar10, source, size):
    """Over PIL's error limit (20,000^2), over its warning limit (10,000^2), over ours only (5,000^2):
    each is one error naming the file and its size, and no PIL warning escapes."""
    bomb = png_claiming(*size)
    if source == "folder":
        tree = make_tree(tmp_path / "tree")
        bad = tree / "train" / "dog" / "0001.png"
        bad.write_bytes(bomb)
        load, name = (lambda: data.load(f"folder:{tree}", "train", root=tmp_path / "root")), str(bad)
    else:
        members = cifar_members()
        members["train/dog/0001.jpg"] = bomb
        zip_path = use_zip(small_cifar10, write_zip(tmp_path / "cifar10-jpeg.zip", members))
        load, name = (lambda: data.load("cifar10", "train", root=tmp_path / "root", download=False)), \
            f"{zip_path}:train/dog/0001.jpg"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        msg = one_line_error(load, name, "4,096 x 4,096", "pixels")
    if size != (20_000, 20_000):  # PIL refuses that one itself, from the same header, before we see it
        assert f"{size[0]:,} x {size[1]:,} pixels" in msg and "not decoded" in msg


def test_real_blank_image_over_the_limit_is_refused(tmp_path):
    tree = make_tree(tmp_path / "tree")
    big = tree / "test" / "cat" / "0001.png"
    big.write_bytes(blank_png(4097, 4097))
    assert big.stat().st_size < 100_000  # tiny on disk, 16.8 million pixels decoded
    one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                    str(big), "4,097 x 4,097 pixels", "more than the 4,096 x 4,096")


def test_pixel_limit_is_a_module_setting(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    random_png(tree / "train" / "cat" / "wide.png", 1, size=(40, 48))
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 32 * 32)
    one_line_error(lambda: data.load(f"folder:{tree}", "train", root=tmp_path / "root"),
                    str(tree / "train" / "cat" / "wide.png"), "48 x 40 pixels", "more than the 32 x 32")


def test_zip_member_declaring_a_huge_size_is_not_read(tmp_path, small_cifar10):
    members = cifar_members()
    assert max(len(v) for v in members.values()) < 4000
    members["test/ship/0000.jpg"] = jpeg_bytes(5) + b"\0" * 5000
    zip_path = use_zip(small_cifar10, write_zip(tmp_path / "cifar10-jpeg.zip", members))
    small_cifar10.setattr(files, "MAX_IMAGE_BYTES", 4000)
    real_read = zipfile.ZipFile.read

    def read(self, name, *args, **kwargs):
        assert name != "test/ship/0000.jpg", "the oversized member was read"
        return real_read(self, name, *args, **kwargs)

    small_cifar10.setattr(zipfile.ZipFile, "read", read)
    one_line_error(lambda: data.load("cifar10", "test", root=tmp_path / "root", download=False),
                    f"{zip_path}:test/ship/0000.jpg", "bytes unpacked", "more than the 4,000")


def test_image_file_over_the_byte_limit_is_not_read(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    big = tree / "test" / "dog" / "0000.png"
    big.write_bytes(big.read_bytes() + b"\0" * 10_000)  # trailing bytes: still a readable PNG
    monkeypatch.setattr(files, "MAX_IMAGE_BYTES", 8000)
    one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                    str(big), "bytes, more than the 8,000", "not read")


# --------------------------------------------------------------------------- user folders keep clean errors
def test_folder_without_class_folders_is_one_clear_error(tmp_path):
    (tmp_path / "tree" / "train").mkdir(parents=True)
    (tmp_path / "tree" / "train" / "loose.png").write_bytes(jpeg_bytes(1))
    one_line_error(lambda: data.load(f"folder:{tmp_path / 'tree'}", "train", root=tmp_path / "root"),
                    str(tmp_path / "tree" / "train"), "holds no class folders")


# --------------------------------------------------------------------------- image folders and errors
def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _make_folder(root: Path) -> dict:
    rng = np.random.default_rng(0)
    written = {}
    for split, per_class in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            for n in range(per_class):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                _write_png(root / split / cls / f"img{n}.png", arr)
                written[(split, cls, n)] = arr
    # one larger, uniformly coloured image to exercise resize + center crop
    _write_png(root / "train" / "dog" / "big.png", np.full((40, 48, 3), (10, 200, 99), dtype=np.uint8))
    return written


def test_load_image_folder(tmp_path):
    tree, cache_root = tmp_path / "tree", tmp_path / "root"
    written = _make_folder(tree)
    d = data.load(f"folder:{tree}", "train", root=cache_root)
    assert d.classes == ["cat", "dog"]
    assert d.images.dtype == torch.uint8 and d.images.shape == (7, 3, 32, 32)
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # ImageFolder order: sorted file names within each class (big.png before img*.png)
    for k, n in enumerate(range(3)):
        np.testing.assert_array_equal(d.images[k].permute(1, 2, 0).numpy(), written[("train", "cat", n)])
    big = d.images[3].int()
    assert (big - torch.tensor([10, 200, 99]).view(3, 1, 1)).abs().max() <= 1
    for n in range(3):
        np.testing.assert_array_equal(d.images[4 + n].permute(1, 2, 0).numpy(), written[("train", "dog", n)])
    # decoded once, cached under <root>/cache, and the cache gives the same tensors
    assert list((cache_root / "cache").glob("*-train.safetensors")) and list((cache_root / "cache").glob("*-train.json"))
    again = data.load(f"folder:{tree}", "train", root=cache_root)
    assert torch.equal(again.images, d.images) and torch.equal(again.labels, d.labels)
    test = data.load(f"folder:{tree}", "test", root=cache_root, n=2)
    assert len(test) == 2 and test.labels.tolist() == [0, 1] and test.split == "test"


def test_load_image_folder_missing_split(tmp_path):
    (tmp_path / "tree" / "train" / "a").mkdir(parents=True)
    _write_png(tmp_path / "tree" / "train" / "a" / "x.png", np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataNotFoundError, match="test"):
        data.load(f"folder:{tmp_path / 'tree'}", "test", root=tmp_path / "root")


def test_user_folder_keeps_any_classes(tmp_path):
    """Only the offline CIFAR-10 copy is checked to be CIFAR-10; a user's folder may hold any classes."""
    for split, per_class in (("train", (1, 3, 2)), ("test", (1, 1, 1))):
        for cls, n in zip(("apple", "pear", "plum"), per_class):
            for k in range(n):
                _write_png(tmp_path / "tree" / split / cls / f"{k}.png", np.full((32, 32, 3), k, dtype=np.uint8))
    d = data.load(f"folder:{tmp_path / 'tree'}", "train", root=tmp_path / "root")
    assert d.classes == ["apple", "pear", "plum"] and d.labels.tolist() == [0, 1, 1, 1, 2, 2]


def test_unwritable_cache_folder_still_loads(tmp_path, capfd):
    """Where the cache cannot be written (a read-only data root) the data is decoded each time, silently."""
    tree, root = tmp_path / "tree", tmp_path / "root"
    _make_folder(tree)
    root.mkdir()
    (root / "cache").write_text("a file where the cache folder would be: nothing can be written under it")
    first = data.load(f"folder:{tree}", "test", root=root)
    again = data.load(f"folder:{tree}", "test", root=root)
    assert len(first) == 4 and torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert "ignoring" not in capfd.readouterr().err


def test_cifar10_falls_back_to_image_folder_copy(tmp_path, monkeypatch):
    _make_folder(tmp_path / "cifar10-jpeg")
    monkeypatch.setattr(sources, "CIFAR10_CLASSES", ("cat", "dog"))  # what the CIFAR-10 check expects of this copy
    monkeypatch.setattr(sources, "CIFAR10_PER_CLASS", {"train": 3, "test": 2})
    d = data.load("cifar10", "test", root=tmp_path, download=False)
    assert len(d) == 4 and d.classes == ["cat", "dog"] and d.name == "CIFAR-10 (JPEG q75 copy)"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_without_download_is_a_clear_error(tmp_path, name, monkeypatch):
    root = tmp_path / "empty"
    root.mkdir()
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "absent.zip"))  # no offline copy either
    with pytest.raises(DataNotFoundError) as err:
        data.load(name, "train", root=root, download=False)
    msg = str(err.value)
    assert str(root) in msg
    assert "1." in msg and "2." in msg
    assert "download" in msg  # fix 1: download elsewhere / CCKL_DATA_ROOT
    assert ("cifar10-jpeg" in msg) if name == "cifar10" else ("folder:" in msg)  # fix 2: an image folder
    if name == "cifar10":  # the offline zip, and that the one named by the variable is missing
        assert "CCKL_CIFAR10_ZIP" in msg and str(tmp_path / "absent.zip") in msg
    assert "CCKL_DATA_ROOT" in msg
    assert isinstance(err.value, FileNotFoundError)
    assert not any(root.iterdir())  # nothing was written or downloaded


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="cifar10"):
        data.load("imagenet", root="/nonexistent")
    with pytest.raises(ValueError):
        data.load("synthetic", split="val")


# --------------------------------------------------------------------------- class sets
def test_test_split_with_other_classes_is_an_error(tmp_path):
    tree = make_split_tree(tmp_path / "tree")
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
    random_png(tree / "train" / "a" / "x.png", 0)
    random_png(tree / "train" / "b" / "y.png", 1)
    d = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    assert d.classes == ["a", "b"] and d.labels.tolist() == [0, 1]


# --------------------------------------------------------------------------- broken files
def test_empty_class_folder_is_one_clear_error(tmp_path):
    tree = make_split_tree(tmp_path / "tree")
    (tree / "train" / "emu").mkdir()
    (tree / "test" / "emu").mkdir()
    (tree / "test" / "emu" / "notes.txt").write_text("not an image")  # ignored extension: still empty
    with pytest.raises(DataError) as err:
        data.load(f"folder:{tree}", "test", root=tmp_path / "root")
    msg = str(err.value)
    assert str(tree / "test" / "emu") in msg and "no image" in msg and "\n" not in msg


@pytest.mark.parametrize("what", ["truncated", "not_an_image"])
def test_unreadable_image_names_the_file(tmp_path, what):
    tree = make_split_tree(tmp_path / "tree")
    bad = tree / "train" / "dog" / "0001.jpg"
    if what == "truncated":
        bad.write_bytes(jpeg_bytes(3)[:300])
    else:
        bad.write_text("hello, I am text")
    with pytest.raises(DataError) as err:
        data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    msg = str(err.value)
    assert str(bad) in msg and "cannot decode" in msg and "\n" not in msg
    assert isinstance(err.value, ValueError)


# --------------------------------------------------------------------------- subset sizes
def test_n_larger_than_the_split_is_an_error_naming_both(tmp_path):
    tree = make_split_tree(tmp_path / "tree")
    with pytest.raises(ValueError) as err:
        data.load(f"folder:{tree}", "train", root=tmp_path / "root", n=100)
    msg = str(err.value)
    assert "n=100" in msg and "6 samples" in msg and "train split" in msg and "\n" not in msg
    # n equal to the split is all of it
    assert len(data.load(f"folder:{tree}", "train", root=tmp_path / "root", n=6)) == 6
    with pytest.raises(ValueError, match=r"n=13 is more than the test split of synthetic holds \(12 samples\)"):
        data.synthetic("test", n=12).subset(13)


# --------------------------------------------------------------------------- offline CIFAR-10 zip
def _expect_cifar10(monkeypatch, classes, train: int, test: int) -> None:
    """Make the loader's CIFAR-10 check expect a small fake copy: these classes, so many images each."""
    monkeypatch.setattr(sources, "CIFAR10_CLASSES", tuple(classes))
    monkeypatch.setattr(sources, "CIFAR10_PER_CLASS", {"train": train, "test": test})


def _scrambled_zip(path: Path, seed: int = 0, classes=("bird", "airplane", "cat"), per_class=(4, 2)) -> Path:
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
                members.append((f"{split}/{cls}/{k:04d}.jpg", jpeg_bytes(seed * 997 + s * 100 + c * 10 + k)))
        members.append((f"{split}/{classes[0]}/sub/0000.jpg", jpeg_bytes(seed * 997 + 77 + s)))
        members.append((f"{split}/{classes[1]}/notes.txt", b"ignored: not an image extension"))
        members.append((f"{split}/{classes[1]}/zz_big.JPG", jpeg_bytes(seed * 997 + 55 + s, size=(40, 48))))
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
    zip_path = _scrambled_zip(tmp_path / "cifar10-jpeg.zip")
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


def test_the_source_is_said_again_after_announce_again(tmp_path, offline_zip, capfd):
    """A kernel running several notebooks calls sources.announce_again between them: each page says its source."""
    root = tmp_path / "root"
    data.load("cifar10", "test", root=root, download=False, n=6)
    data.load("cifar10", "test", root=root, download=False, n=6)
    sources.announce_again()
    data.load("cifar10", "test", root=root, download=False, n=6)
    assert capfd.readouterr().err.count("[cckl] CIFAR-10: using the offline JPEG q75 copy") == 2


def test_changed_zip_is_decoded_again(tmp_path, offline_zip):
    root = tmp_path / "root"
    first = data.load("cifar10", "test", root=root, download=False)
    _scrambled_zip(offline_zip, seed=5)
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
            zf.writestr(f"{split}/cat/0000.jpg", jpeg_bytes(1))
            zf.writestr(f"{split}/dog/0000.jpg", jpeg_bytes(2))
        zf.writestr("train/cat/0001.jpg", jpeg_bytes(6))
        zf.writestr("train/dog/0001.jpg", jpeg_bytes(3)[:200])
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
        zf.writestr("train/emu/0000.jpg", jpeg_bytes(4))
        zf.writestr("train/emu/0001.jpg", jpeg_bytes(7))
        zf.writestr("test/emu/0000.jpg", jpeg_bytes(5))
    with pytest.raises(DataError) as err:
        data.load("cifar10", "train", root=root, download=False)
    assert f"{bad}:train/dog/0001.jpg" in str(err.value) and "\n" not in str(err.value)
    assert len(data.load("cifar10", "test", root=root, download=False)) == 3


def test_zip_without_the_split_is_data_not_found(tmp_path, monkeypatch):
    only_train = tmp_path / "only-train.zip"
    with zipfile.ZipFile(only_train, "w") as zf:
        zf.writestr("train/cat/0000.jpg", jpeg_bytes(1))
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
    assert d.name == "CIFAR-10 (JPEG q75 copy)" and d.classes == list(CIFAR10)
    assert d.images.shape == (10_000, 3, 32, 32) and torch.bincount(d.labels).tolist() == [1000] * 10
    with zipfile.ZipFile(paths.SHARED_CIFAR10_ZIP) as zf:  # the k-th cat of the test set is test/cat/k.jpg
        for label, k in ((0, 0), (3, 17), (9, 999)):
            with Image.open(io.BytesIO(zf.read(f"test/{CIFAR10[label]}/{k:04d}.jpg"))) as img:
                expected = np.array(img.convert("RGB"))
            np.testing.assert_array_equal(d.images[1000 * label + k].permute(1, 2, 0).numpy(), expected)


# --------------------------------------------------------------------------- a loader that trusts no tree
def _within(seconds: float, call):
    """``call()``, failed (not hung) if it takes longer than ``seconds``."""
    import signal

    def stop(*_):
        raise TimeoutError(f"still reading after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_symbolic_link_loop_in_a_class_folder_is_read_once_with_a_word(tmp_path, capfd):
    tree = make_tree(tmp_path / "tree")
    (tree / "train" / "cat" / "loop").symlink_to(tree / "train" / "cat", target_is_directory=True)
    (tree / "train" / "dog" / "again.png").symlink_to(tree / "train" / "dog" / "0000.png")
    train = _within(30, lambda: data.load(f"folder:{tree}", "train", root=tmp_path / "root"))
    assert len(train) == 6 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]  # each image once
    err = capfd.readouterr().err
    assert "read once" in err and str(tree / "train" / "cat") in err


def test_links_to_folders_elsewhere_are_followed_in_imagefolders_order(tmp_path):
    """A class folder may link to images kept elsewhere: read, in ImageFolder's order."""
    from torchvision.datasets import ImageFolder
    tree = make_tree(tmp_path / "tree")
    random_png(tmp_path / "elsewhere" / "x" / "a.png", 77)
    (tree / "train" / "cat" / "more").symlink_to(tmp_path / "elsewhere" / "x", target_is_directory=True)
    train = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    reference = ImageFolder(str(tree / "train"))
    assert [p for p, _ in reference.samples] == sources._folder_listing(tree / "train", ["cat", "dog"]).samples
    assert len(train) == 7


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_a_device_named_like_an_image_is_refused_not_read(tmp_path, kind):
    tree = make_tree(tmp_path / "tree")
    bad = tree / "test" / "dog" / "0005.png"
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to("/dev/zero")
    _within(30, lambda: one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                                        str(bad), "not a regular file"))


def test_a_file_that_grows_past_the_limit_while_read_is_cut_off(tmp_path, monkeypatch):
    """The byte limit holds while reading too, not only by the size the file had when it was listed."""
    path = tmp_path / "x.png"
    path.write_bytes(b"\0" * 100)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    one_line_error(lambda: files.read_bounded(path, 50), str(path), "more than the 50 bytes")


def _png16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)


def test_sixteen_bit_pngs_are_scaled_not_clipped_to_white(tmp_path):
    tree = make_tree(tmp_path / "tree")
    grey = np.full((32, 32), 32896, dtype=np.uint16)  # mid grey in 16 bits (128 * 257)
    grey[0, 0] = 65535
    _png16(tree / "test" / "cat" / "0000.png", grey)
    test = data.load(f"folder:{tree}", "test", root=tmp_path / "root")
    img = test.images[0]
    assert img.shape == (3, 32, 32) and int(img[0, 1, 1]) == 128 and int(img[0, 0, 0]) == 255
    assert (img[0] == img[1]).all() and (img[1] == img[2]).all()


def test_a_bit_depth_it_does_not_read_is_one_clear_error(tmp_path):
    tree = make_tree(tmp_path / "tree")
    bad = tree / "test" / "cat" / "0000.tif"
    Image.fromarray(np.full((32, 32), 0.5, dtype=np.float32)).save(bad)
    one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                    str(bad), "bit depth this loader does not support", "floating-point")


# --------------------------------------------------------------------------- is a data set here?
def test_available_says_whether_both_splits_are_here_without_downloading(tmp_path, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", no_network)
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "no-such.zip"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "root"))  # the default root
    assert data.available("synthetic")
    assert not data.available("cifar100") and not data.available("cifar10")
    tree = make_split_tree(tmp_path / "tree")
    assert data.available(f"folder:{tree}")
    shutil.rmtree(tree / "test")
    assert not data.available(f"folder:{tree}", tmp_path / "other-root")  # one split alone is not the data set
    assert not data.available(f"folder:{tmp_path / 'absent'}")


def test_a_data_set_here_but_broken_is_available_and_its_reader_meets_the_error(tmp_path):
    tree = make_split_tree(tmp_path / "tree")
    (tree / "test" / "dog").rename(tree / "test" / "bird")  # the splits' class folders differ
    assert data.available(f"folder:{tree}", tmp_path / "root")
    with pytest.raises(DataError, match="differ"):
        data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.available("mnist")
