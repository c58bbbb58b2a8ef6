"""The decode cache (:mod:`cckl_core.data.decode_cache`): keyed by the source's content, verified on every read.

A changed folder or zip is decoded again, two folders with the same relative name do not share an entry,
touching a file decodes nothing again; a cache entry copied from another source, overwritten with garbage
or edited (tensors or sidecar) is ignored with one printed line and decoded again, never used. No network;
small fake zips and folders stand in for CIFAR-10 (the expected counts are shrunk).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fakes import (CIFAR10, cifar_members, ignored_lines, make_split_tree, make_tree, no_decoding, random_png,
                        small_cifar10, use_zip, write_zip)

from cckl_core import data, store
from cckl_core.data import decode_cache, files, sources


# --------------------------------------------------------------------------- cache keyed by content
def test_folder_cache_follows_changes_to_the_files(tmp_path):
    tree, root = make_split_tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "train", root=root)
    replaced = random_png(tree / "train" / "cat" / "0000.png", seed=999)
    os.utime(tree / "train" / "cat" / "0000.png", ns=(1, 1))  # a different mtime for certain
    second = data.load(f"folder:{tree}", "train", root=root)
    np.testing.assert_array_equal(second.images[0].permute(1, 2, 0).numpy(), replaced)
    assert not torch.equal(first.images[0], second.images[0])
    random_png(tree / "train" / "dog" / "0005.png", seed=7)  # a new file
    third = data.load(f"folder:{tree}", "train", root=root)
    assert len(third) == len(first) + 1
    # unchanged folder: served from the cache (nothing is decoded)
    assert torch.equal(data.load(f"folder:{tree}", "train", root=root).images, third.images)


def test_same_relative_folder_name_from_two_directories_is_not_confused(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make_split_tree(tmp_path / "a" / "tree", seed=1)
    make_split_tree(tmp_path / "b" / "tree", seed=2)
    monkeypatch.chdir(tmp_path / "a")
    from_a = data.load("folder:tree", "train", root=root)
    monkeypatch.chdir(tmp_path / "b")
    from_b = data.load("folder:tree", "train", root=root)
    assert not torch.equal(from_a.images, from_b.images)
    direct_b = data.load(f"folder:{tmp_path / 'b' / 'tree'}", "train", root=tmp_path / "fresh")
    assert torch.equal(from_b.images, direct_b.images)


def test_cached_folder_is_not_decoded_again(tmp_path, monkeypatch):
    tree, root = make_split_tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "test", root=root)
    monkeypatch.setattr(files, "decode_all", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(data.load(f"folder:{tree}", "test", root=root).images, first.images)


# --------------------------------------------------------------------------- the cache: format and key
def test_cache_is_safetensors_with_a_sidecar_and_old_pt_caches_are_left_alone(tmp_path, small_cifar10, capfd):
    from safetensors import safe_open

    zip_path = use_zip(small_cifar10, write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members()))
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
    assert not ignored_lines(capfd)


def test_zip_cache_is_keyed_by_content_not_path_or_time(tmp_path, small_cifar10):
    zip_path = use_zip(small_cifar10, write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members()))
    first = data.load("cifar10", "test", root=tmp_path / "root", download=False)
    moved = tmp_path / "elsewhere" / "copy.zip"
    moved.parent.mkdir()
    shutil.copyfile(zip_path, moved)
    os.utime(moved, ns=(10**18, 10**18))
    use_zip(small_cifar10, moved)
    no_decoding(small_cifar10)
    again = data.load("cifar10", "test", root=tmp_path / "root", download=False)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def _write_ppm(path: Path, seed: int) -> None:
    """A binary PPM: its size does not depend on its pixels."""
    arr = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path.write_bytes(b"P6\n32 32\n255\n" + arr.tobytes())


def test_folder_cache_is_keyed_by_content_not_time(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    first = data.load(f"folder:{tree}", "train", root=tmp_path / "root")
    for path in (tree / "train").rglob("*.png"):  # touched, unchanged: served from the cache
        os.utime(path, ns=(10**18, 10**18))
    with monkeypatch.context() as mp:
        no_decoding(mp)
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
    a = make_tree(tmp_path / "a", counts=(("cat", 4), ("dog", 2)), seed=1)
    b = make_tree(tmp_path / "b", counts=(("cat", 2), ("dog", 4)), seed=2)
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
    assert len(ignored_lines(capfd)) == 1


@pytest.mark.parametrize("which", ["tensors", "sidecar", "both"])
def test_garbage_cache_is_decoded_again_with_one_line(tmp_path, capfd, which):
    tree, root = make_tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "train", root=root)
    for path in _cache_files(root):
        if which == "both" or (path.suffix == ".json") == (which == "sidecar"):
            path.write_bytes(b"\x00garbage" * 50)
    capfd.readouterr()
    again = data.load(f"folder:{tree}", "train", root=root)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    lines = ignored_lines(capfd)
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
    tree, root = make_tree(tmp_path / "tree"), tmp_path / "root"
    first = data.load(f"folder:{tree}", "train", root=root)
    _edit(*_entry(root), case)
    capfd.readouterr()
    again = data.load(f"folder:{tree}", "train", root=root)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.classes == ["cat", "dog"]
    assert len(ignored_lines(capfd)) == 1
    no_decoding(monkeypatch)  # the entry was written again: the next read is clean and decodes nothing
    assert torch.equal(data.load(f"folder:{tree}", "train", root=root).labels, first.labels)
    assert not ignored_lines(capfd)


def test_edited_zip_cache_is_never_used(tmp_path, small_cifar10, capfd):
    use_zip(small_cifar10, write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members()))
    root = tmp_path / "root"
    first = data.load("cifar10", "test", root=root, download=False)
    tensors, sidecar = _entry(root)
    meta, state = json.loads(sidecar.read_text()), store.load_state(tensors)
    meta["sha256"] = store.save_state(tensors, {**state, "labels": state["labels"].flip(0)})  # same counts
    store.atomic_write_json(sidecar, meta)
    capfd.readouterr()
    again = data.load("cifar10", "test", root=root, download=False)
    assert torch.equal(again.labels, first.labels) and torch.equal(again.images, first.images)
    assert len(ignored_lines(capfd)) == 1


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
    assert len(built) == 2 and len(ignored_lines(capfd)) == 1
    (files / "test_batch").write_bytes(b"batch two")  # other content: another cache entry
    data.load("cifar10", "test", root=tmp_path, download=False)
    assert len(built) == 3 and len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
