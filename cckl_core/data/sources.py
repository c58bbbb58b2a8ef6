"""Where the images come from: the data sets by name, found, listed, checked and decoded (once; the
decode cache is :mod:`.decode_cache`), and whether one is here at all (:func:`available`).

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
- ``"synthetic"``: a small learnable dataset generated in code (:func:`.images.synthetic`).

Sources are not trusted. The offline CIFAR-10 copy, zip or folder, is named CIFAR-10 only once it
is checked to be it: exactly CIFAR-10's ten class folders, with 5,000 training and 1,000 test
images in each (:data:`CIFAR10_CLASSES`, :data:`CIFAR10_PER_CLASS`). A file that is not a zip
(truncated, damaged), an empty class folder, or a file that is not a readable image (:mod:`.files`
says which) is each one :class:`~.files.DataError` naming the file and saying how to fix it; a
missing data set is one :class:`DataNotFoundError`. An image folder is walked in ``ImageFolder``'s
order, following links, but every folder is entered once (a symbolic-link loop is not followed
again) and every file is read once; what that leaves out is said in one line.
"""
from __future__ import annotations

import io
import os
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..paths import SHARED_CIFAR10_ZIP, cifar10_zip, data_root
from . import files
from .decode_cache import Expected, cached
from .files import DataError
from .images import ImageData, check_n, synthetic

_SPLITS = ("train", "test")


class DataNotFoundError(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


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
    check_n(n)
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


def available(name: str, root: str | Path | None = None) -> bool:
    """Whether data set ``name`` is here: both of its splits found under ``root`` (default
    ``$CCKL_DATA_ROOT`` or ``./data``) without downloading anything.

    False when a split is missing (:class:`DataNotFoundError`). True when both load, and also when one
    is found but cannot be used as it is (:class:`~.files.DataError`): the run that reads it meets that
    error, which says how to fix it. An unknown ``name`` is a ``ValueError``, as for :func:`load`.
    Reading a split decodes it once (later reads come from the decode cache).
    """
    try:
        for split in _SPLITS:
            load(name, split, root, download=False)
    except DataNotFoundError:
        return False
    except DataError:
        return True
    return True


# --------------------------------------------------------------------------- the CIFAR-10 copy and torchvision
_JPEG_NAME = "CIFAR-10 (JPEG q75 copy)"
_announced: set[str] = set()

#: The offline CIFAR-10 copy must hold exactly these class folders (CIFAR-10's label order, which is
#: also the sorted order ``ImageFolder`` gives them) ...
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: ... with this many images in every class folder of each split (a test may shrink these).
CIFAR10_PER_CLASS = {"train": 5000, "test": 1000}
#: The sha256 of the original ``cifar10-jpeg.zip`` (``shared/data/README.md``), named in the fixes.
CIFAR10_ZIP_SHA256 = "1f246f18ee1c4b008b72b11e5d912c2b6a325d41b34a6c0136bab1e640200198"
#: The number of images of each split of torchvision's CIFAR-10 and CIFAR-100 (a cache of them must agree).
_TORCHVISION_SIZES = {"train": 50_000, "test": 10_000}


def _announce(message: str) -> None:
    """Print ``message`` once per process (which data a loader falls back to)."""
    if message not in _announced:
        _announced.add(message)
        print(message, file=sys.stderr, flush=True)


def announce_again() -> None:
    """Forget what :func:`_announce` has printed, so that the next reader says again which data it reads (a
    kernel that runs several notebooks: each one's page then says where its data came from)."""
    _announced.clear()


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
        found = _class_files(split_dir / c, IMG_EXTENSIONS)
        samples += found
        labels += [k] * len(found)
    listing = _Listing(list(classes), samples, labels)
    _check_not_empty(str(split_dir), listing, lambda c: str(split_dir / c), "add images or remove the folder")
    return listing


def _class_files(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """The image files of one class folder in ``ImageFolder``'s order (``os.walk`` following links, folders
    sorted by path, names sorted), resolved and bounded: every folder is entered once (a symbolic-link loop,
    or a second link to a folder already read, is not followed again) and every file is listed once (a
    file reached again through a link is left out); what was left out is said in one line. A path named
    like an image that is not a regular file (a FIFO, a device) is one :class:`DataError`
    (:func:`files.open_regular`), refused before it is read."""
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
                files.open_regular(Path(path))  # raises the one-line error, without reading
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
    digest = files.files_digest("image folder", split_dir, listing.samples, listing.classes, files.MAX_IMAGE_BYTES)
    expected = Expected(str(split_dir), digest, listing.classes, torch.tensor(listing.labels, dtype=torch.long),
                         len(listing.samples))
    return cached(root, key, split, name, expected, lambda: _decode_folder(listing, split, name))


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageData:
    """One split of torchvision's CIFAR-10 or CIFAR-100 under ``root`` (downloaded when ``download`` and
    absent), cached by the sha256 of each of its files; for CIFAR-10 without them, the offline copy."""
    tv_dir = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    display = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    if not tv_dir.exists() and name == "cifar10":  # the offline copy first: no download attempt then
        folder, zip_path = root / "cifar10-jpeg", cifar10_zip()
        if (folder / split).is_dir():
            return _load_folder(folder, split, _JPEG_NAME, root, "cifar10-jpeg", cifar10_copy=True)
        if zip_path.is_file():
            return _load_zip(zip_path, split, _JPEG_NAME, root, "cifar10-jpeg-zip")
    if not tv_dir.exists() and not download:  # said before torchvision is imported (seconds)
        raise DataNotFoundError(_missing_message(name, root, None))
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    if not tv_dir.exists():
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

    digest = files.files_digest(f"torchvision {name}", tv_dir, files.tree_files(tv_dir))
    return cached(root, name, split, display, Expected(str(tv_dir), digest, n=_TORCHVISION_SIZES[split]), build)


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




def _decode_folder(listing: _Listing, split: str, name: str) -> ImageData:
    """Decode the images of an ``ImageFolder`` listing into uint8 tensors, 32x32 RGB."""
    images = files.decode_all(listing.samples,
                              lambda path: io.BytesIO(files.read_bounded(Path(path), files.MAX_IMAGE_BYTES)),
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

    classes, members = set(), []
    for member in names:
        parts = member.split("/")
        if parts[0] != split or len(parts) < 3:  # a class is a folder: split/<class>/...
            continue
        classes.add(parts[1])
        if parts[-1] and member.lower().endswith(IMG_EXTENSIONS):
            members.append(member)
    if not classes:
        return None
    classes = sorted(classes)
    index = {c: k for k, c in enumerate(classes)}
    members.sort(key=lambda m: (index[m.split("/")[1]], m.rsplit("/", 1)[0], m.rsplit("/", 1)[1]))
    return _Listing(classes, members, [index[m.split("/")[1]] for m in members])


def _zip_reader(zf: zipfile.ZipFile, zip_path: Path):
    """``open_file`` for :func:`files.decode_all`: a member's bytes, refused before they are read when the
    zip declares more than :data:`files.MAX_IMAGE_BYTES`; a member that cannot be read (bad CRC, cut
    short, encrypted) is one :class:`DataError` naming it."""
    def open_member(member: str) -> io.BytesIO:
        size = zf.getinfo(member).file_size
        if size > files.MAX_IMAGE_BYTES:
            raise DataError(f"{zip_path}:{member} is {size:,} bytes unpacked, more than the "
                            f"{files.MAX_IMAGE_BYTES:,} an "
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
    digest = files.file_sha256(zip_path)
    if digest != CIFAR10_ZIP_SHA256:
        _announce(f"[cckl] note: {zip_path} is not byte for byte the original copy (sha256 {digest}, the original's "
                  f"{CIFAR10_ZIP_SHA256}); it has CIFAR-10's classes and image counts, so it is used")
    labels = torch.tensor(listing.labels, dtype=torch.long)

    def build() -> ImageData:
        with zipfile.ZipFile(zip_path) as zf:
            images = files.decode_all(listing.samples, _zip_reader(zf, zip_path),
                                 f"decoding {name} {split} from {zip_path.name}", where=f"{zip_path}:", fix=_zip_fix())
        return ImageData(images, labels, listing.classes, name, split)

    expected = Expected(str(zip_path), digest, listing.classes, labels, len(listing.samples))
    return cached(root, key, split, name, expected, build)

