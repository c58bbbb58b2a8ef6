"""Files of the run cache: atomic writes, SHA-256 checksums, locks, tensors as safetensors.

Every write goes to a temporary file in the same folder and is renamed into place, so a
reader never sees half a file and a killed writer leaves at most a ``.tmp`` behind.
Tensors (model weights, checkpoints) are stored with ``safetensors`` (no pickle): a nested
state (the optimiser's, say) is split into its tensors and a JSON skeleton kept in the
file's metadata, see :func:`save_state` / :func:`load_state`.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import torch


class CorruptedFileError(ValueError):
    """A cache file does not match the checksum recorded for it, or cannot be parsed."""


class WriteError(OSError):
    """A write failed (read-only file system, no permission, a file-size limit, no space, ...); the
    message is one line naming the path and the fix, and the file it would have replaced is intact.
    Every write of the package goes through :func:`writing`, the one place that makes it."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()

    def _render_traceback_(self) -> list[str]:  # IPython (a notebook) shows this instead of a traceback
        return [f"WriteError: {self}"]


class DiskFullError(WriteError):
    """A write failed for want of space; the file it would have replaced is intact."""


#: errno -> (what happened, how to fix it), for :func:`write_error`.
_WRITE_FIXES = {
    errno.EROFS: ("the file system is read-only", "write somewhere writable (set CCKL_ARTIFACTS, CCKL_FIGURES or "
                  "the output path to a writable folder)"),
    errno.EACCES: ("permission denied", "fix the folder's permissions or write somewhere else (CCKL_ARTIFACTS, "
                   "CCKL_FIGURES or the output path)"),
    errno.EPERM: ("operation not permitted", "fix the folder's permissions or write somewhere else (CCKL_ARTIFACTS, "
                  "CCKL_FIGURES or the output path)"),
    errno.EFBIG: ("the file is larger than this process may write (a file-size limit: `ulimit -f`?)",
                  "raise the limit (`ulimit -f unlimited`) or write on another file system"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "remove that file or choose another path"),
    errno.EISDIR: ("the path is a folder", "choose a file name, or remove the folder"),
    errno.EEXIST: ("a file is in the way of the folder", "remove that file or choose another path"),
    errno.EDQUOT: ("the disk quota is exhausted", "free some space and run the same command again"),
    errno.ENOSPC: ("no space left on the device", "free some space and run the same command again"),
}


def write_error(err: OSError, path: Path, size: int | None = None) -> WriteError:
    """``err``, raised while writing ``path``, as one :class:`WriteError` line naming the path and the fix
    (:class:`DiskFullError` for want of space)."""
    path = Path(path)
    if isinstance(err, WriteError):
        return err
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        need = f", {size / 2 ** 20:.1f} MiB needed" if size is not None else ""
        return DiskFullError(err.errno, f"no space left to write {path.name} in {path.parent} "
                             f"({free_bytes(path.parent) / 2 ** 20:.1f} MiB free{need}); free some space and run the "
                             "same command again")
    what, fix = _WRITE_FIXES.get(err.errno, (err.strerror or type(err).__name__, "fix the cause or write somewhere "
                                             "else, then run the same command again"))
    where = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
    return WriteError(err.errno, f"cannot write {path}{where}: {what}; {fix}")


@contextlib.contextmanager
def writing(path: Path, size: int | None = None) -> Iterator[None]:
    """Turn every ``OSError`` of the write of ``path`` inside the block into one :class:`WriteError`."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        raise write_error(err, path, size) from None


def make_folder(folder: Path) -> Path:
    """``folder`` created (with its parents) if absent; a failure is one :class:`WriteError`."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_writable_folder(folder: Path) -> Path:
    """``folder`` created if absent and proved writable (a probe file written and removed) before any work
    goes into it; a failure is one :class:`WriteError` naming it and the fix."""
    folder = make_folder(Path(folder))
    probe = folder / f".cckl-probe-{os.getpid()}"
    atomic_write_bytes(probe, b"probe\n")
    with writing(probe):
        probe.unlink()
    return folder


# --------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, payload: bytes) -> str:
    """Write ``payload`` to ``path`` atomically; return its SHA-256 (hex).

    The bytes go to a temporary file in the same folder, are flushed to disk and renamed over
    ``path``: a reader sees the old file or the new one, never half of one. Any failure is one
    :class:`WriteError` line naming the path and the fix (:class:`DiskFullError` for a full disk,
    naming the space needed), the old file left intact.
    """
    path = Path(path)
    with writing(path, len(payload)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return sha256_bytes(payload)


def atomic_write_text(path: Path, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def free_bytes(folder: Path) -> int:
    """Bytes free to an unprivileged writer on the file system holding ``folder`` (0 if unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def json_bytes(obj: object) -> bytes:
    """The canonical JSON of ``obj`` (sorted keys, one-space indent): what every ``.json`` here holds."""
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode()


def atomic_write_json(path: Path, obj: object) -> str:
    """Write ``obj`` as canonical JSON atomically; return the file's SHA-256."""
    return atomic_write_bytes(path, json_bytes(obj))


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_verified(path: Path, sha256: str | None) -> bytes:
    """The bytes of ``path``, checked against ``sha256`` (skipped when None).

    Raises :class:`CorruptedFileError` on a mismatch, ``FileNotFoundError`` when absent.
    """
    payload = Path(path).read_bytes()
    if sha256 is not None and sha256_bytes(payload) != sha256:
        raise CorruptedFileError(f"{path} does not match the checksum recorded when it was written "
                                 "(edited or damaged since)")
    return payload


def read_json(path: Path, sha256: str | None = None) -> Any:
    """Parse a JSON file, verified against ``sha256`` when given."""
    payload = read_verified(path, sha256)
    try:
        return json.loads(payload)
    except ValueError as err:
        raise CorruptedFileError(f"{path} is not valid JSON ({err})") from err


# --------------------------------------------------------------------------- sealed records
SEAL = "seal"


def sealed(record: dict) -> dict:
    """``record`` with ``"seal"``: the SHA-256 of its canonical JSON without the seal. A record that
    no file's checksum covers (``complete.json``, an evaluation's ``.json``) carries its own."""
    body = {k: v for k, v in record.items() if k != SEAL}
    return {**body, SEAL: sha256_bytes(json_bytes(body))}


def check_seal(record: object, path: Path) -> dict:
    """``record`` if its seal matches its content, else :class:`CorruptedFileError` naming ``path``."""
    if not isinstance(record, dict) or SEAL not in record or sealed(record)[SEAL] != record[SEAL]:
        raise CorruptedFileError(f"{path} was changed after it was written (its seal does not match its content)")
    return record


# --------------------------------------------------------------------------- locks
class BusyError(RuntimeError):
    """Another process holds the lock of a folder (see :func:`locked` with ``wait=False``)."""


class UnsafeLockError(ValueError):
    """A folder's ``.lock`` is a symbolic link, a folder or another non-file: it is never opened."""


LOCK_FILE = ".lock"


def open_lock(folder: Path) -> int:
    """A descriptor on ``folder/.lock`` for :func:`locked`, the one opener of lock files: created if
    absent, never truncated, never through a symbolic link (``O_NOFOLLOW``), never blocking (a FIFO),
    and only if it is a regular file; anything else is one :class:`UnsafeLockError` line (a link planted
    in a shared artifacts root cannot make this process touch another file)."""
    path = Path(folder) / LOCK_FILE
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fix = f"remove it (rm {path}) and run the same command again; a lock file is an empty regular file"
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno in (errno.EISDIR, errno.ENXIO, errno.EEXIST) and path.is_symlink()):
            raise UnsafeLockError(f"refusing the lock file {path}: it is a symbolic link ({os.readlink(path)!r}), "
                                  f"which could make this process write to another file; {fix}") from None
        if err.errno in (errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
            raise UnsafeLockError(f"refusing the lock file {path}: it is not a regular file; {fix}") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeLockError(f"refusing the lock file {path}: it is not a regular file; {fix}")
    return fd


@contextlib.contextmanager
def locked(folder: Path, wait: bool = True) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``folder/.lock`` (opened by :func:`open_lock`) for the block: a
    second process waits, or with ``wait=False`` gets :class:`BusyError` at once.

    Only writers lock; reading a finished entry needs no lock (and works on a read-only root).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = open_lock(folder)
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise PermissionError(f"cannot write to {folder} ({err.strerror}): the artifacts root is read-only "
                                  "here; finished runs can still be read, but nothing can be trained or "
                                  "evaluated into it (set CCKL_ARTIFACTS to a writable folder)") from err
        raise write_error(err, folder / LOCK_FILE) from None
    with os.fdopen(fd, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{folder} is in use by another process (training, evaluating or unpacking into "
                            "it); wait for it to finish or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- tensors
def _split(obj, tensors: dict[str, torch.Tensor], path: str = ""):
    """A JSON skeleton of ``obj`` with every tensor replaced by a reference into ``tensors``.

    A tensor is stored under its path in the structure (``"model/conv.weight"``,
    ``"optimizer/state/0/momentum_buffer"``; a flat state dict keeps its own key names), so
    the file reads naturally with any safetensors tool.
    """
    def child(key) -> str:
        return f"{path}/{key}" if path else str(key)

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):  # keys may be ints (optimiser state): keep them as pairs
        kind = "__counter__" if isinstance(obj, Counter) else "__dict__"  # MultiStepLR's milestones
        return {kind: [[k, _split(v, tensors, child(k))] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split(v, tensors, child(i)) for i, v in enumerate(obj)], "tuple": isinstance(obj, tuple)}
    return obj


def _join(skeleton, tensors: dict[str, torch.Tensor]):
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: _join(v, tensors) for k, v in skeleton["__dict__"]}
        if "__counter__" in skeleton:
            return Counter({k: _join(v, tensors) for k, v in skeleton["__counter__"]})
        if "__list__" in skeleton:
            items = [_join(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("tuple") else items
    return skeleton


def save_state(path: Path, state: object) -> str:
    """Write a (nested) state of tensors and plain values to a ``.safetensors`` file atomically.

    Tensors go into the safetensors body; the structure and every non-tensor value into
    its metadata as JSON. Returns the file's SHA-256.
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors)
    return atomic_write_bytes(path, save(tensors, metadata={"skeleton": json.dumps(skeleton)}))


def load_state(path: Path, sha256: str | None = None, device: str | torch.device = "cpu") -> Any:
    """Read what :func:`save_state` wrote (verified against ``sha256`` when given)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    payload = read_verified(path, sha256)
    try:
        tensors = load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        meta = json.loads(payload[8:8 + header_len]).get("__metadata__", {})
        skeleton = json.loads(meta["skeleton"])
    except (SafetensorError, ValueError, KeyError, OverflowError) as err:
        raise CorruptedFileError(f"{path} is not a readable safetensors state ({type(err).__name__}: {err})") from err
    state = _join(skeleton, tensors)
    return _to_device(state, torch.device(device))


def _to_device(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return (Counter if isinstance(obj, Counter) else dict)({k: _to_device(v, device) for k, v in obj.items()})
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    return obj
