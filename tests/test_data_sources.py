"""Data sources are not trusted, and the decoded-data cache is checked against its source.

Every bad source ends in one clear error, never a traceback or a silently different data set:
a truncated zip, a file that is not a zip, a damaged zip member, a zip or unpacked folder of
another data set given as the CIFAR-10 copy, an image that claims an enormous size. The cache is
keyed by the source's content and verified on every read: a cache entry copied from another
source, overwritten with garbage or edited (tensors or sidecar) is ignored with one printed line
and decoded again, never used. No network; small fake zips and folders stand in for CIFAR-10
(the expected counts are shrunk), and the real zip is used only where it exists.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cckl_core import data, paths, store
from cckl_core.data import decode_cache, files, sources
from cckl_core.data import DataError

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ORIGINAL_SHA256 = "1f246f18ee1c4b008b72b11e5d912c2b6a325d41b34a6c0136bab1e640200198"  # shared/data/README.md
IGNORED = "[cckl] ignoring the decoded-data cache"


# --------------------------------------------------------------------------- helpers
def _jpeg_bytes(seed: int, size=(32, 32)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (its pixel data is a few bytes)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _blank_png(width: int, height: int) -> bytes:
    """A real, blank PNG of ``width`` x ``height`` (1 bit per pixel: it compresses to almost nothing)."""
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def _members(classes=CIFAR10, per_class: int = 2, seed: int = 0) -> dict[str, bytes]:
    """``{split}/{class}/{k:04d}.jpg`` -> JPEG bytes, ``per_class`` images of each class in each split."""
    return {f"{split}/{cls}/{k:04d}.jpg": _jpeg_bytes(seed * 9973 + s * 1000 + c * 10 + k)
            for s, split in enumerate(("train", "test")) for c, cls in enumerate(classes) for k in range(per_class)}


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def _write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    for name, payload in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(payload)
    return folder


def _png(path: Path, seed: int, size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def _tree(root: Path, counts=(("cat", 3), ("dog", 3)), seed: int = 0) -> Path:
    """A user's image folder: ``counts`` gives the training images per class (the test split has 2 each)."""
    for c, (cls, n) in enumerate(counts):
        for k in range(n):
            _png(root / "train" / cls / f"{k:04d}.png", seed * 1000 + c * 10 + k)
        for k in range(2):
            _png(root / "test" / cls / f"{k:04d}.png", seed * 1000 + 500 + c * 10 + k)
    return root


def _one_line_error(call, *fragments: str, kind=DataError) -> str:
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


def _use_zip(monkeypatch, path: Path) -> Path:
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(path))
    return path


def _ignored_lines(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if IGNORED in line]


def _no_decoding(monkeypatch) -> None:
    monkeypatch.setattr(files, "decode_all", lambda *a, **k: pytest.fail("decoded again"))


# --------------------------------------------------------------------------- zips that are not zips
@pytest.mark.parametrize("keep", [0.5, 0.05, 0.0])
def test_truncated_zip_is_one_clear_error(tmp_path, small_cifar10, keep):
    good = _write_zip(tmp_path / "good.zip", _members())
    payload = good.read_bytes()
    bad = tmp_path / "cifar10-jpeg.zip"
    bad.write_bytes(payload[:int(len(payload) * keep)])
    _use_zip(small_cifar10, bad)
    for split in ("train", "test"):
        _one_line_error(lambda: data.load("cifar10", split, root=tmp_path / "root", download=False),
                        str(bad), "is not a zip file", "truncated or damaged", "CCKL_CIFAR10_ZIP",
                        ORIGINAL_SHA256)
    assert not (tmp_path / "root" / "cache").exists()


@pytest.mark.parametrize("what", ["text", "jpeg", "zip_magic_only"])
def test_file_that_is_not_a_zip_is_one_clear_error(tmp_path, small_cifar10, what):
    bad = tmp_path / "cifar10-jpeg.zip"
    if what == "text":
        bad.write_text("this is not a zip\n" * 100)
    elif what == "jpeg":
        bad.write_bytes(_jpeg_bytes(1))
    else:
        bad.write_bytes(b"PK\x03\x04" + os.urandom(2000))  # starts like a zip, is not one
    _use_zip(small_cifar10, bad)
    _one_line_error(lambda: data.load("cifar10", "test", root=tmp_path / "root", download=False),
                    str(bad), "is not a zip file", "copy it again", "CCKL_CIFAR10_ZIP")


def test_damaged_zip_member_is_one_clear_error(tmp_path, small_cifar10):
    members = _members()
    bad = _write_zip(tmp_path / "cifar10-jpeg.zip", members)
    payload = bytearray(bad.read_bytes())
    target = members["train/dog/0001.jpg"]
    at = payload.index(target) + len(target) // 2  # stored: the member's bytes are in the file as they are
    payload[at] ^= 0xFF
    bad.write_bytes(bytes(payload))
    _use_zip(small_cifar10, bad)
    _one_line_error(lambda: data.load("cifar10", "train", root=tmp_path / "root", download=False),
                    f"{bad}:train/dog/0001.jpg", "the zip is damaged", "copy it again", "CCKL_CIFAR10_ZIP")


# --------------------------------------------------------------------------- the CIFAR-10 copy must be CIFAR-10
def _wrong_data_set() -> dict[str, bytes]:
    """A valid zip's worth of another data set: two classes, a few images."""
    return _members(classes=("apple", "pear"), per_class=3)


def test_zip_of_another_data_set_is_not_called_cifar10(tmp_path, monkeypatch):
    """The real check (5,000 / 1,000 per class), nothing shrunk: a valid zip of two classes is refused."""
    wrong = _use_zip(monkeypatch, _write_zip(tmp_path / "cifar10-jpeg.zip", _wrong_data_set()))
    for split in ("train", "test"):
        _one_line_error(lambda: data.load("cifar10", split, root=tmp_path / "root", download=False),
                        str(wrong), "is not the CIFAR-10 copy", "[apple, pear]", "airplane", "truck",
                        "CCKL_CIFAR10_ZIP", ORIGINAL_SHA256)
    assert not (tmp_path / "root" / "cache").exists()


def test_folder_of_another_data_set_is_not_called_cifar10(tmp_path, monkeypatch):
    """An unpacked ``cifar10-jpeg`` folder under the data root is checked the same way."""
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "no-such.zip"))
    folder = _write_folder(tmp_path / "root" / "cifar10-jpeg", _wrong_data_set())
    for split in ("train", "test"):
        _one_line_error(lambda: data.load("cifar10", split, root=tmp_path / "root", download=False),
                        str(folder), "is not the CIFAR-10 copy", "[apple, pear]", "python -m zipfile -e")
    assert not (tmp_path / "root" / "cache").exists()


@pytest.mark.parametrize("source", ["zip", "folder"])
@pytest.mark.parametrize("case", ["few_images", "extra_class", "missing_class", "one_short"])
def test_cifar10_copy_with_wrong_classes_or_counts_is_refused(tmp_path, monkeypatch, source, case):
    if case == "few_images":  # the ten classes, two images each: the real counts are not met
        members, expect = _members(), ["is not the complete CIFAR-10 copy", "5,000", "train/airplane/ has 2"]
    else:
        monkeypatch.setattr(sources, "CIFAR10_PER_CLASS", {"train": 2, "test": 2})
        if case == "extra_class":
            members, expect = _members(classes=CIFAR10 + ("zebra",)), ["11 class folder(s)", "not CIFAR-10's: [zebra]"]
        elif case == "missing_class":
            members, expect = _members(classes=CIFAR10[:-1]), ["9 class folder(s)", "missing: [truck]"]
        else:
            members = {k: v for k, v in _members().items() if k != "train/cat/0001.jpg"}
            expect = ["is not the complete CIFAR-10 copy", "train/cat/ has 1"]
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "no-such.zip"))
    if source == "zip":
        where = _use_zip(monkeypatch, _write_zip(tmp_path / "cifar10-jpeg.zip", members))
    else:
        where = _write_folder(tmp_path / "root" / "cifar10-jpeg", members)
    _one_line_error(lambda: data.load("cifar10", "train", root=tmp_path / "root", download=False), str(where), *expect)


def test_small_fake_cifar10_passes_the_check_from_zip_and_folder(tmp_path, small_cifar10, capfd):
    members = _members()
    zip_path = _use_zip(small_cifar10, _write_zip(tmp_path / "cifar10-jpeg.zip", members))
    from_zip = data.load("cifar10", "test", root=tmp_path / "root_zip", download=False)
    _write_folder(tmp_path / "root_folder" / "cifar10-jpeg", members)
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
    bomb = _png_claiming(*size)
    if source == "folder":
        tree = _tree(tmp_path / "tree")
        bad = tree / "train" / "dog" / "0001.png"
        bad.write_bytes(bomb)
        load, name = (lambda: data.load(f"folder:{tree}", "train", root=tmp_path / "root")), str(bad)
    else:
        members = _members()
        members["train/dog/0001.jpg"] = bomb
        zip_path = _use_zip(small_cifar10, _write_zip(tmp_path / "cifar10-jpeg.zip", members))
        load, name = (lambda: data.load("cifar10", "train", root=tmp_path / "root", download=False)), \
            f"{zip_path}:train/dog/0001.jpg"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        msg = _one_line_error(load, name, "4,096 x 4,096", "pixels")
    if size != (20_000, 20_000):  # PIL refuses that one itself, from the same header, before we see it
        assert f"{size[0]:,} x {size[1]:,} pixels" in msg and "not decoded" in msg


def test_real_blank_image_over_the_limit_is_refused(tmp_path):
    tree = _tree(tmp_path / "tree")
    big = tree / "test" / "cat" / "0001.png"
    big.write_bytes(_blank_png(4097, 4097))
    assert big.stat().st_size < 100_000  # tiny on disk, 16.8 million pixels decoded
    _one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                    str(big), "4,097 x 4,097 pixels", "more than the 4,096 x 4,096")


def test_pixel_limit_is_a_module_setting(tmp_path, monkeypatch):
    tree = _tree(tmp_path / "tree")
    _png(tree / "train" / "cat" / "wide.png", 1, size=(40, 48))
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 32 * 32)
    _one_line_error(lambda: data.load(f"folder:{tree}", "train", root=tmp_path / "root"),
                    str(tree / "train" / "cat" / "wide.png"), "48 x 40 pixels", "more than the 32 x 32")


def test_zip_member_declaring_a_huge_size_is_not_read(tmp_path, small_cifar10):
    members = _members()
    assert max(len(v) for v in members.values()) < 4000
    members["test/ship/0000.jpg"] = _jpeg_bytes(5) + b"\0" * 5000
    zip_path = _use_zip(small_cifar10, _write_zip(tmp_path / "cifar10-jpeg.zip", members))
    small_cifar10.setattr(files, "MAX_IMAGE_BYTES", 4000)
    real_read = zipfile.ZipFile.read

    def read(self, name, *args, **kwargs):
        assert name != "test/ship/0000.jpg", "the oversized member was read"
        return real_read(self, name, *args, **kwargs)

    small_cifar10.setattr(zipfile.ZipFile, "read", read)
    _one_line_error(lambda: data.load("cifar10", "test", root=tmp_path / "root", download=False),
                    f"{zip_path}:test/ship/0000.jpg", "bytes unpacked", "more than the 4,000")


def test_image_file_over_the_byte_limit_is_not_read(tmp_path, monkeypatch):
    tree = _tree(tmp_path / "tree")
    big = tree / "test" / "dog" / "0000.png"
    big.write_bytes(big.read_bytes() + b"\0" * 10_000)  # trailing bytes: still a readable PNG
    monkeypatch.setattr(files, "MAX_IMAGE_BYTES", 8000)
    _one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                    str(big), "bytes, more than the 8,000", "not read")


# --------------------------------------------------------------------------- user folders keep clean errors
def test_folder_without_class_folders_is_one_clear_error(tmp_path):
    (tmp_path / "tree" / "train").mkdir(parents=True)
    (tmp_path / "tree" / "train" / "loose.png").write_bytes(_jpeg_bytes(1))
    _one_line_error(lambda: data.load(f"folder:{tmp_path / 'tree'}", "train", root=tmp_path / "root"),
                    str(tmp_path / "tree" / "train"), "holds no class folders")


# --------------------------------------------------------------------------- the cache: format and key
def test_cache_is_safetensors_with_a_sidecar_and_old_pt_caches_are_left_alone(tmp_path, small_cifar10, capfd):
    from safetensors import safe_open

    zip_path = _use_zip(small_cifar10, _write_zip(tmp_path / "cifar10-jpeg.zip", _members()))
    old = tmp_path / "root" / "cache" / "cifar10-jpeg-zip-0123456789abcdef-test.pt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an old torch.save cache: never read")
    d = data.load("cifar10", "test", root=tmp_path / "root", download=False)
    (tensors,) = (tmp_path / "root" / "cache").glob("*-test.safetensors")
    meta = json.loads(tensors.with_suffix(".json").read_text())
    assert meta["source_sha256"] == store.sha256_file(zip_path) and meta["sha256"] == store.sha256_file(tensors)
    assert meta["classes"] == list(CIFAR10) and meta["counts"] == [2] * 10 and meta["n"] == 20
    assert meta["version"] == decode_cache.CACHE_VERSION != "2"
    with safe_open(str(tensors), framework="pt") as fh:  # a plain safetensors file: no pickle anywhere
        assert set(fh.keys()) == {"images", "labels"}
        assert torch.equal(fh.get_tensor("labels"), d.labels)
    assert old.read_bytes() == b"an old torch.save cache: never read"
    assert sorted(p.suffix for p in old.parent.iterdir() if not p.name.startswith(".")) == [".json", ".pt", ".safetensors"]
    assert not _ignored_lines(capfd)


def test_zip_cache_is_keyed_by_content_not_path_or_time(tmp_path, small_cifar10):
    zip_path = _use_zip(small_cifar10, _write_zip(tmp_path / "cifar10-jpeg.zip", _members()))
    first = data.load("cifar10", "test", root=tmp_path / "root", download=False)
    moved = tmp_path / "elsewhere" / "copy.zip"
    moved.parent.mkdir()
    shutil.copyfile(zip_path, moved)
    os.utime(moved, ns=(10**18, 10**18))
    _use_zip(small_cifar10, moved)
    _no_decoding(small_cifar10)
    again = data.load("cifar10", "test", root=tmp_path / "root", download=False)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def _write_ppm(path: Path, seed: int) -> None:
    """A binary PPM: its size does not depend on its pixels."""
    arr = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path.write_bytes(b"P6\n32 32\n255\n" + arr.tobytes())


def test_folder_cache_is_keyed_by_content_not_time(tmp_path, monkeypatch):
    tree = _tree(tmp_path / "tree")
    first = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    for path in (tree / "train").rglob("*.png"):  # touched, unchanged: served from the cache
        os.utime(path, ns=(10**18, 10**18))
    with monkeypatch.context() as mp:
        _no_decoding(mp)
        assert torch.equal(data.load(f"folder:{tree}", "train", root=tmp_path / "root").images, first.images)
    # changed, with the same size and modification time as before: decoded again
    ppm = tree / "train" / "dog" / "0009.ppm"
    _write_ppm(ppm, 1)
    with_ppm = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    st = ppm.stat()
    _write_ppm(ppm, 2)
    os.utime(ppm, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ppm.stat().st_size == st.st_size and ppm.stat().st_mtime_ns == st.st_mtime_ns
    changed = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    assert not torch.equal(changed.images[-1], with_ppm.images[-1])
    assert torch.equal(changed.images[:-1], with_ppm.images[:-1])


# --------------------------------------------------------------------------- the cache: tampering
def _cache_files(root: Path) -> set[Path]:
    return {p for p in (root / "cache").iterdir() if not p.name.startswith(".")}


def test_cache_of_another_source_copied_over_is_not_used(tmp_path, capfd):
    """Two folders with the same classes and size but other labels: B's cache files copied over A's
    (whatever their format) must not give A B's labels."""
    root = tmp_path / "root"
    a = _tree(tmp_path / "a", counts=(("cat", 4), ("dog", 2)), seed=1)
    b = _tree(tmp_path / "b", counts=(("cat", 2), ("dog", 4)), seed=2)
    first_a = data.load(f"folder:{a}", "train", root=root)
    files_a = _cache_files(root)
    first_b = data.load(f"folder:{b}", "train", root=root)
    files_b = _cache_files(root) - files_a
    assert files_a and files_b and not torch.equal(first_a.labels, first_b.labels)
    for target in files_a:
        (source,) = [p for p in files_b if p.suffix == target.suffix]
        shutil.copyfile(source, target)
    capfd.readouterr()
    again = data.load(f"folder:{a}", "train", root=root)
    assert torch.equal(again.labels, first_a.labels) and torch.equal(again.images, first_a.images)
    assert len(_ignored_lines(capfd)) == 1


@pytest.mark.parametrize("which", ["tensors", "sidecar", "both"])
def test_garbage_cache_is_decoded_again_with_one_line(tmp_path, capfd, which):
    tree, root = _tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "train", root=root)
    for path in _cache_files(root):
        if which == "both" or (path.suffix == ".json") == (which == "sidecar"):
            path.write_bytes(b"\x00garbage" * 50)
    capfd.readouterr()
    again = data.load(f"folder:{tree}", "train", root=root)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    lines = _ignored_lines(capfd)
    assert len(lines) == 1 and "decoding" in lines[0] and "again" in lines[0]


def _entry(root: Path) -> tuple[Path, Path]:
    (tensors,) = (root / "cache").glob("*.safetensors")
    return tensors, tensors.with_suffix(".json")


def _edit(tensors: Path, sidecar: Path, case: str) -> None:
    """Tamper with a cache entry of the 6-image, two-class tree; tensor edits keep the recorded
    checksum right (as a deliberate edit would), so only the other checks can catch them."""
    meta, state = json.loads(sidecar.read_text()), store.load_state(tensors)
    labels = state["labels"]
    tensor_edits = {
        "labels_reversed": lambda: {**state, "labels": 1 - labels},  # same counts, other labels
        "labels_and_counts": lambda: {**state, "labels": torch.zeros_like(labels)},
        "label_out_of_range": lambda: {**state, "labels": torch.where(labels == 1, 7, labels)},
        "labels_float": lambda: {**state, "labels": labels.float()},
        "images_shape": lambda: {**state, "images": state["images"][:, :, :16, :16].contiguous()},
        "images_dtype": lambda: {**state, "images": state["images"].float()},
        "other_state": lambda: {"weights": torch.zeros(3)},
    }
    if case in tensor_edits:
        meta["sha256"] = store.save_state(tensors, tensor_edits[case]())
        if case == "labels_and_counts":
            meta["counts"] = [6, 0]
        store.atomic_write_json(sidecar, meta)
        return
    sidecar_edits = {
        "classes": {"classes": ["dog", "cat"]}, "source_digest": {"source_sha256": "0" * 64},
        "counts": {"counts": [4, 2]}, "checksum": {"sha256": "0" * 64}, "version": {"version": "2"},
        "n": {"n": 5, "counts": [3, 2]}, "counts_type": {"counts": "3,3"},
    }
    if case in sidecar_edits:
        store.atomic_write_json(sidecar, {**meta, **sidecar_edits[case]})
    elif case == "no_sidecar":
        sidecar.unlink()
    elif case == "no_tensors":
        tensors.unlink()
    elif case == "sidecar_list":
        sidecar.write_text("[1, 2, 3]")
    else:
        raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "labels_reversed", "labels_and_counts", "label_out_of_range", "labels_float", "images_shape", "images_dtype",
    "other_state", "classes", "source_digest", "counts", "checksum", "version", "n", "counts_type", "no_sidecar",
    "no_tensors", "sidecar_list"])
def test_edited_cache_is_never_used(tmp_path, capfd, monkeypatch, case):
    tree, root = _tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "train", root=root)
    _edit(*_entry(root), case)
    capfd.readouterr()
    again = data.load(f"folder:{tree}", "train", root=root)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.classes == ["cat", "dog"]
    assert len(_ignored_lines(capfd)) == 1
    _no_decoding(monkeypatch)  # the entry was written again: the next read is clean and decodes nothing
    assert torch.equal(data.load(f"folder:{tree}", "train", root=root).labels, first.labels)
    assert not _ignored_lines(capfd)


def test_edited_zip_cache_is_never_used(tmp_path, small_cifar10, capfd):
    _use_zip(small_cifar10, _write_zip(tmp_path / "cifar10-jpeg.zip", _members()))
    root = tmp_path / "root"
    first = data.load("cifar10", "test", root=root, download=False)
    tensors, sidecar = _entry(root)
    meta, state = json.loads(sidecar.read_text()), store.load_state(tensors)
    meta["sha256"] = store.save_state(tensors, {**state, "labels": state["labels"].flip(0)})  # same counts
    store.atomic_write_json(sidecar, meta)
    capfd.readouterr()
    again = data.load("cifar10", "test", root=root, download=False)
    assert torch.equal(again.labels, first.labels) and torch.equal(again.images, first.images)
    assert len(_ignored_lines(capfd)) == 1


def test_torchvision_cache_is_keyed_by_content_and_checked(tmp_path, monkeypatch, capfd):
    """The torchvision CIFAR-10 files go through the same cache (a stand-in for torchvision here)."""
    import torchvision

    built = []

    class FakeCIFAR10:
        classes = list(CIFAR10)

        def __init__(self, root, train=True, download=False):
            n = 20 if train else 10
            self.data = np.random.default_rng(len(built)).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [k % 10 for k in range(n)]
            built.append(train)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.setattr(sources, "_TORCHVISION_SIZES", {"train": 20, "test": 10})
    files = tmp_path / "cifar-10-batches-py"
    files.mkdir()
    (files / "test_batch").write_bytes(b"batch one")
    first = data.load("cifar10", "test", root=tmp_path, download=False)
    assert first.name == "CIFAR-10" and len(first) == 10 and len(built) == 1
    os.utime(files / "test_batch", ns=(10**18, 10**18))  # touched only: from the cache
    assert torch.equal(data.load("cifar10", "test", root=tmp_path, download=False).images, first.images)
    assert len(built) == 1
    tensors, sidecar = _entry(tmp_path)
    store.atomic_write_json(sidecar, {**json.loads(sidecar.read_text()), "counts": [2, 0] + [1] * 8})
    capfd.readouterr()
    data.load("cifar10", "test", root=tmp_path, download=False)
    assert len(built) == 2 and len(_ignored_lines(capfd)) == 1
    (files / "test_batch").write_bytes(b"batch two")  # other content: another cache entry
    data.load("cifar10", "test", root=tmp_path, download=False)
    assert len(built) == 3 and len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


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
    tree = _tree(tmp_path / "tree")
    (tree / "train" / "cat" / "loop").symlink_to(tree / "train" / "cat", target_is_directory=True)
    (tree / "train" / "dog" / "again.png").symlink_to(tree / "train" / "dog" / "0000.png")
    train = _within(30, lambda: data.load(f"folder:{tree}", "train", root=tmp_path / "root"))
    assert len(train) == 6 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]  # each image once
    err = capfd.readouterr().err
    assert "read once" in err and str(tree / "train" / "cat") in err


def test_links_to_folders_elsewhere_are_followed_in_imagefolders_order(tmp_path):
    """A class folder may link to images kept elsewhere: read, in ImageFolder's order."""
    from torchvision.datasets import ImageFolder
    tree = _tree(tmp_path / "tree")
    _png(tmp_path / "elsewhere" / "x" / "a.png", 77)
    (tree / "train" / "cat" / "more").symlink_to(tmp_path / "elsewhere" / "x", target_is_directory=True)
    train = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    reference = ImageFolder(str(tree / "train"))
    assert [p for p, _ in reference.samples] == sources._folder_listing(tree / "train", ["cat", "dog"]).samples
    assert len(train) == 7


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_a_device_named_like_an_image_is_refused_not_read(tmp_path, kind):
    tree = _tree(tmp_path / "tree")
    bad = tree / "test" / "dog" / "0005.png"
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to("/dev/zero")
    _within(30, lambda: _one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                                        str(bad), "not a regular file"))


def test_a_file_that_grows_past_the_limit_while_read_is_cut_off(tmp_path, monkeypatch):
    """The byte limit holds while reading too, not only by the size the file had when it was listed."""
    path = tmp_path / "x.png"
    path.write_bytes(b"\0" * 100)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    _one_line_error(lambda: files.read_bounded(path, 50), str(path), "more than the 50 bytes")


def _png16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)


def test_sixteen_bit_pngs_are_scaled_not_clipped_to_white(tmp_path):
    tree = _tree(tmp_path / "tree")
    grey = np.full((32, 32), 32896, dtype=np.uint16)  # mid grey in 16 bits (128 * 257)
    grey[0, 0] = 65535
    _png16(tree / "test" / "cat" / "0000.png", grey)
    test = data.load(f"folder:{tree}", "test", root=tmp_path / "root")
    img = test.images[0]
    assert img.shape == (3, 32, 32) and int(img[0, 1, 1]) == 128 and int(img[0, 0, 0]) == 255
    assert (img[0] == img[1]).all() and (img[1] == img[2]).all()


def test_a_bit_depth_it_does_not_read_is_one_clear_error(tmp_path):
    tree = _tree(tmp_path / "tree")
    bad = tree / "test" / "cat" / "0000.tif"
    Image.fromarray(np.full((32, 32), 0.5, dtype=np.float32)).save(bad)
    _one_line_error(lambda: data.load(f"folder:{tree}", "test", root=tmp_path / "root"),
                    str(bad), "bit depth this loader does not support", "floating-point")
