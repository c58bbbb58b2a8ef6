"""Results bundles: everything the notebooks read, in one ``.tar.gz``, without weights.

Train and evaluate where the GPU is, copy one file back, render anywhere::

    python -m cckl_core bundle --profile gpu --out gpu-results.tar.gz     # on the GPU node
    make paper PROFILE=gpu BUNDLE=gpu-results.tar.gz                       # on a laptop

A bundle holds, per finished run (every seed in the cache), ``config.json``,
``environment.json``, ``dataset.json``, ``history.json``, ``complete.json`` and the verified
pairs ``evaluations/<name>-<key>.json|.npz``, under ``<profile>/<run folder>/``, plus
``bundle.json`` first (format :data:`FORMAT`): the profile, its runs, and the size and SHA-256
of every member.

Unpacking trusts nothing in the file. It reads the archive as a stream (no ``extractall``)
with bounded member count and sizes (:data:`MAX_MEMBERS`, :data:`MAX_BYTES`,
:data:`MAX_MEMBER_BYTES`), accepts only plain files named ``<profile>/<run folder>/<file>`` or
``.../evaluations/<file>`` that its manifest lists with matching size and checksum, and writes
them into a fresh hidden folder inside ``<artifacts root>/<profile>/``. There every run is
verified: its folder name must be ``<run>-<hash>`` of a run of the profile whose config is the
profile's (for the config's seed) and hashes to ``hash``, its files must match its
``complete.json``, and each evaluation must match its checksum. Only then are runs moved into
place by renames: a new run is renamed in; one already here with the same ``complete.json``
only gains the evaluations it lacks; another training here is an error unless ``replace``.
Any failure before that leaves the artifacts root as it was.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import profiles, runs, store
from .paths import artifacts_root
from .profiles import Profile

MANIFEST = "bundle.json"
#: Version of the manifest: 2 lists every member with its size and SHA-256 (1 did not).
FORMAT = 2
#: Default limits of :func:`extract` (each can be lowered or raised by an argument).
MAX_MEMBERS = 20_000
MAX_BYTES = 4 * 2 ** 30          # all members together, uncompressed
MAX_MEMBER_BYTES = 1 * 2 ** 30   # one member, uncompressed
MAX_MANIFEST_BYTES = 16 * 2 ** 20
#: Uncompressed bytes a member may take beyond its data: header, long-name or pax blocks, padding.
_HEADER_ALLOWANCE = 4096
_CHUNK = 1 << 20

_RUN_FILES = (*runs.RECORDED, "complete.json")
_FOLDER = re.compile(rf"(?P<run>{profiles.SAFE_NAME})-(?P<hash>[0-9a-f]{{12}})")  # the one safe-name rule
_EVAL_FILE = re.compile(r"(?P<stem>[A-Za-z0-9][A-Za-z0-9_-]{0,63}-[0-9a-f]{12})\.(?P<ext>json|npz)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STAGING_PREFIX = ".unbundle-"
_ASIDE_PREFIX = ".replaced-"
_REMAKE = "make it again with `python -m cckl_core bundle`"


class BundleError(ValueError):
    """A bundle that cannot be made or unpacked as asked; the message says why."""


# --------------------------------------------------------------------------- names
def _key(folder: str) -> str:
    """The run key a run folder's name ends with."""
    return folder.rsplit("-", 1)[-1]


def _member_target(name: str, profile: str) -> tuple[str, str] | None:
    """``(run folder, path inside it)`` for a member name of the only allowed shapes
    ``<profile>/<run folder>/<run file>`` and ``<profile>/<run folder>/evaluations/<name>-<key>.json|npz``;
    None for any other name."""
    if not isinstance(name, str):
        return None
    parts = name.split("/")
    if len(parts) not in (3, 4) or parts[0] != profile or not _FOLDER.fullmatch(parts[1]):
        return None
    if len(parts) == 3:
        return (parts[1], parts[2]) if parts[2] in _RUN_FILES else None
    if parts[2] == "evaluations" and _EVAL_FILE.fullmatch(parts[3]):
        return parts[1], f"evaluations/{parts[3]}"
    return None


def _evaluation_problem(stem: str, meta_bytes: bytes, npz_sha256: str, run_key: str) -> str | None:
    """Why the evaluation pair ``stem`` (its JSON's bytes, its npz's checksum) is not a valid cached
    evaluation of the run with key ``run_key``, or None: the JSON must be sealed, belong to that run,
    record the npz's checksum and settings that key to ``stem``."""
    from .evaluations import settings_key

    try:
        meta = store.check_seal(json.loads(meta_bytes), Path(stem))
        settings = meta["settings"]
        if meta["run_key"] != run_key:
            return "its .json belongs to another run"
        if meta["npz_sha256"] != npz_sha256:
            return "its .npz does not match the checksum its .json records"
        if f"{settings['name']}-{settings_key(settings)}" != stem:
            return "its file name is not the one its settings give"
    except store.CorruptedFileError:
        return "its .json was changed after it was written"
    except (ValueError, KeyError, TypeError, RecursionError):
        return "its .json is not a cached evaluation"
    return None


# --------------------------------------------------------------------------- create
def _evaluation_files(path: Path) -> list[Path]:
    """The evaluation pairs of run folder ``path`` that verify (``.npz`` then ``.json``); a damaged or
    half-written pair is left out, so every bundle made here unpacks."""
    files = []
    for meta in sorted((path / "evaluations").glob("*.json")):
        m = _EVAL_FILE.fullmatch(meta.name)
        npz = meta.with_suffix(".npz")
        if not m or not npz.is_file() or meta.is_symlink() or npz.is_symlink():
            continue
        if _evaluation_problem(m["stem"], meta.read_bytes(), store.sha256_file(npz), _key(path.name)) is None:
            files += [npz, meta]
    return files


def _run_files(path: Path) -> list[Path]:
    return [path / f for f in _RUN_FILES] + _evaluation_files(path)


def _check_out(out: Path, root: Path) -> None:
    """Refuse a bundle path that is a folder or lies inside a profile's folder of the run cache."""
    if out.is_dir():
        raise BundleError(f"the bundle path {out} is a folder; give a file name, e.g. {out / 'results.tar.gz'}")
    try:
        inside = out.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return
    if len(inside) >= 2:
        raise BundleError(f"the bundle path {out} is inside the run cache {root / inside[0]}; "
                          "write it outside the profiles' folders")


def create(profile: Profile | str, out: str | Path) -> dict:
    """Write the bundle of ``profile`` to ``out``; return its manifest. Runs that are not finished are
    listed under ``missing`` (and left out)."""
    prof = profiles.load(profile)
    out = Path(out)
    _check_out(out, artifacts_root())
    entries, missing, members = [], [], []
    for row in runs.status(prof):
        path = Path(row["path"])
        if row["state"] not in (runs.COMPLETE, runs.NO_WEIGHTS):
            missing.append(f"{row['run']} (seed {row['seed']}): {row['state']}")
            continue
        entries.append({"run": row["run"], "seed": row["seed"], "folder": path.name})
        members += [(str(PurePosixPath(prof.name, path.name, p.relative_to(path).as_posix())), p.read_bytes())
                    for p in _run_files(path)]
    if not entries:
        raise BundleError(f"profile {prof.name!r} has no finished run under {artifacts_root() / prof.name}; "
                          f"train and evaluate first (make evaluations PROFILE={prof.name})")
    manifest = {"format": FORMAT, "profile": prof.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "runs": entries, "missing": missing, "files": len(members),
                "members": {arc: {"size": len(blob), "sha256": store.sha256_bytes(blob)} for arc, blob in members}}
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for arc, blob in [(MANIFEST, store.json_bytes(manifest)), *members]:
            info = tarfile.TarInfo(arc)
            info.size, info.mtime, info.mode = len(blob), now, 0o600
            tar.addfile(info, io.BytesIO(blob))
    try:
        store.atomic_write_bytes(out, buf.getvalue())
    except OSError as err:
        raise BundleError(f"cannot write the bundle {out} ({err.strerror or err}); choose another --out") from None
    manifest["bytes"] = out.stat().st_size
    return manifest


# --------------------------------------------------------------------------- reading the archive
@dataclass(frozen=True)
class _Limits:
    members: int
    total: int
    member: int


class _BoundedReader:
    """The decompressed bytes of a ``.tar.gz``, refusing to yield more than ``limit`` in all, and turning
    every read error (not gzip, truncated, damaged) into one :class:`BundleError`."""

    def __init__(self, fh, bundle: Path, limit: int):
        self._fh, self._bundle, self.limit, self.count = fh, bundle, limit, 0

    def read(self, size: int = -1) -> bytes:
        want = self.limit + 1 - self.count if size is None or size < 0 else min(size, self.limit + 1 - self.count)
        try:
            data = self._fh.read(max(want, 0))
        except (OSError, EOFError, zlib.error) as err:
            raise _unreadable(self._bundle, err) from None
        self.count += len(data)
        if self.count > self.limit:
            raise BundleError(f"{self._bundle} unpacks to more than its manifest allows ({self.limit} bytes); "
                              f"refusing to unpack it (damaged or crafted); {_REMAKE}")
        return data

    def drain(self) -> None:
        """Read to the end of the gzip stream, so that its checksum and length are checked too."""
        while self.read(_CHUNK):
            pass


def _unreadable(bundle: Path, err: BaseException) -> BundleError:
    what = str(err).strip() or type(err).__name__
    return BundleError(f"{bundle} is not a readable .tar.gz bundle ({what}): truncated or damaged? "
                       f"copy it again, or {_REMAKE}")


@contextlib.contextmanager
def _reading(bundle: Path):
    """Turn the archive's own read errors inside the block into one :class:`BundleError`."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise _unreadable(bundle, err) from None


def _next_member(tar: tarfile.TarFile, bundle: Path) -> tarfile.TarInfo | None:
    with _reading(bundle):
        return tar.next()


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, bundle: Path, out=None, limit: int = -1):
    """The bytes of ``member`` (into ``out`` when given; then its SHA-256 is returned), never more than
    ``limit`` (default: its header's size)."""
    limit = member.size if limit < 0 else limit
    digest, kept, total = hashlib.sha256(), [], 0
    with _reading(bundle):
        fh = tar.extractfile(member)
        while True:
            block = fh.read(min(_CHUNK, limit - total + 1))
            if not block:
                break
            total += len(block)
            if total > limit:
                raise BundleError(f"{bundle}: member {member.name!r} is larger than the {limit} bytes declared "
                                  f"for it; refusing to unpack (damaged or crafted); {_REMAKE}")
            digest.update(block)
            if out is None:
                kept.append(block)
            else:
                out.write(block)
    if total != member.size:
        raise _unreadable(bundle, EOFError(f"member {member.name!r} ends early"))
    return digest.hexdigest() if out is not None else b"".join(kept)


# --------------------------------------------------------------------------- the manifest
def _read_manifest(tar: tarfile.TarFile, bundle: Path, profile: str | None, limits: _Limits) -> tuple[dict, object]:
    """The bundle's manifest (its first member), checked: format, profile, runs, and every member's name,
    size and checksum within ``limits``. Returns it and the profile."""
    manifest = _manifest_only(tar, bundle)
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{bundle} is a bundle of format {manifest.get('format', 1)!r}, which records no "
                          f"checksum of its members; this version unpacks format {FORMAT} only: {_REMAKE}")
    name = manifest.get("profile")
    if profile is not None and name != profile:
        raise BundleError(f"{bundle} holds results of profile {name!r}, not {profile!r}")
    try:
        prof = profiles.load(profiles.check_name(name))
    except profiles.ProfileError:
        raise BundleError(f"{bundle} holds results of unknown profile {name!r}; valid: "
                          f"{', '.join(profiles.names())}") from None
    manifest["_folders"] = _check_runs(manifest, bundle)
    _check_members(manifest, prof.name, bundle, limits)
    return manifest, prof


def _check_runs(manifest: dict, bundle: Path) -> dict[str, dict]:
    """The manifest's run entries by folder; each must name a run, an integer seed and a folder of the
    run-folder shape, once."""
    entries = manifest.get("runs")
    if not isinstance(entries, list):
        raise BundleError(f"{bundle}: {MANIFEST} lists no runs; {_REMAKE}")
    folders = {}
    for e in entries:
        ok = (isinstance(e, dict) and isinstance(e.get("run"), str) and isinstance(e.get("seed"), int)
              and isinstance(e.get("folder"), str) and _FOLDER.fullmatch(e["folder"])
              and _FOLDER.fullmatch(e["folder"])["run"] == e["run"] and e["folder"] not in folders)
        if not ok:
            raise BundleError(f"{bundle}: {MANIFEST} has an invalid run entry {str(e)[:200]!r}; refusing to unpack")
        folders[e["folder"]] = e
    return folders


def _check_members(manifest: dict, profile: str, bundle: Path, limits: _Limits) -> None:
    """Every listed member: an allowed name inside a listed run folder, an integer size within the
    limits, a SHA-256; the count and the total within the limits; every run's own files listed."""
    members = manifest.get("members")
    if not isinstance(members, dict) or not members:
        raise BundleError(f"{bundle}: {MANIFEST} lists no members; {_REMAKE}")
    if len(members) > limits.members:
        raise BundleError(f"{bundle} lists {len(members)} members, more than the limit of {limits.members}; "
                          "refusing to unpack it")
    total = 0
    for name, m in members.items():
        target = _member_target(name, profile)
        if target is None or target[0] not in manifest["_folders"]:
            raise BundleError(f"{bundle}: {MANIFEST} lists {name[:200]!r}, which is not a file of a listed run "
                              f"folder of profile {profile!r}; refusing to unpack")
        size = m.get("size") if isinstance(m, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > limits.member:
            raise BundleError(f"{bundle}: member {name!r} has size {size!r}, outside 0..{limits.member} bytes; "
                              "refusing to unpack it")
        if not isinstance(m.get("sha256"), str) or not _SHA256.fullmatch(m["sha256"]):
            raise BundleError(f"{bundle}: member {name!r} has no valid SHA-256 in {MANIFEST}; {_REMAKE}")
        total += size
    if total > limits.total:
        raise BundleError(f"{bundle} unpacks to {total} bytes, more than the limit of {limits.total}; "
                          "refusing to unpack it")
    for folder in manifest["_folders"]:
        lacking = [f for f in _RUN_FILES if f"{profile}/{folder}/{f}" not in members]
        if lacking:
            raise BundleError(f"{bundle}: run {folder} lacks {', '.join(lacking)}; {_REMAKE}")
    manifest["_total"] = total


def _public(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if not k.startswith("_")}


# --------------------------------------------------------------------------- unpacking into a staging folder
def _unpack_members(tar: tarfile.TarFile, bundle: Path, manifest: dict, staging: Path, limits: _Limits) -> None:
    """Write every member after the manifest into ``staging/<run folder>/...``: each must be a plain file
    of an allowed name, listed once in the manifest, of the listed size and checksum; none listed may be
    missing."""
    listed, seen, profile = manifest["members"], set(), manifest["profile"]
    while (m := _next_member(tar, bundle)) is not None:
        if len(seen) >= limits.members:
            raise BundleError(f"{bundle} has more than {limits.members} members; refusing to unpack it")
        target = _member_target(m.name, profile)
        if target is None:
            raise BundleError(f"{bundle}: unexpected member {m.name[:200]!r} (only {profile}/<run folder>/<file> "
                              "is allowed); refusing to unpack")
        if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(f"{bundle}: member {m.name!r} is a link, folder or device, not a plain file; "
                              "refusing to unpack")
        if m.name not in listed or m.name in seen:
            why = "appears twice" if m.name in seen else f"is not listed in its {MANIFEST}"
            raise BundleError(f"{bundle}: member {m.name!r} {why}; refusing to unpack (damaged or crafted)")
        want = listed[m.name]
        if m.size != want["size"]:
            raise BundleError(f"{bundle}: member {m.name!r} holds {m.size} bytes, its {MANIFEST} says "
                              f"{want['size']}; refusing to unpack (damaged or crafted)")
        seen.add(m.name)
        if _write_member(tar, m, bundle, staging / target[0] / target[1], want["size"]) != want["sha256"]:
            raise BundleError(f"{bundle}: member {m.name!r} does not match the checksum in its {MANIFEST}; "
                              f"refusing to unpack (damaged or tampered with); {_REMAKE}")
    absent = sorted(set(listed) - seen)
    if absent:
        raise BundleError(f"{bundle} lacks {len(absent)} file(s) its {MANIFEST} lists (e.g. {absent[0]!r}): "
                          f"truncated or damaged? copy it again, or {_REMAKE}")


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, bundle: Path, path: Path, size: int) -> str:
    """Write ``member`` to the new file ``path`` (never through a link, never over a file); its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        digest = _read_member(tar, member, bundle, out=fh, limit=size)
        fh.flush()
        os.fsync(fh.fileno())
    return digest


#: A staging folder without its owner's lock file is an orphan once it is this old (seconds).
_ORPHAN_AGE = 3600.0


@contextlib.contextmanager
def _staging(prof_dir: Path):
    """A fresh hidden folder inside ``prof_dir`` (same file system, so runs move in by renames), owned
    by a lock on its ``.lock`` for as long as the unpack runs, removed afterwards with any folder
    created for it that is still empty. Staging folders that an unpack killed before it could clean
    up are removed first (:func:`_remove_orphans`)."""
    created = [p for p in (prof_dir, *prof_dir.parents) if not p.exists()]
    try:
        prof_dir.mkdir(parents=True, exist_ok=True)
        _remove_orphans(prof_dir)
        staging = prof_dir / Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=prof_dir)).name
    except OSError as err:
        raise BundleError(f"cannot unpack into {prof_dir} ({err.strerror or err}); set CCKL_ARTIFACTS to a "
                          "writable folder") from None
    try:
        with store.locked(staging):
            yield staging
    finally:
        _remove_own(staging, prof_dir, _STAGING_PREFIX)
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()


def _remove_orphans(prof_dir: Path) -> None:
    """Remove the staging folders in ``prof_dir`` whose unpack is gone: its lock on ``.lock`` is free
    (the process that held it ended), or, without a lock file, the folder is over :data:`_ORPHAN_AGE`
    seconds old. A staging folder whose unpack still runs is left alone."""
    for path in prof_dir.glob(_STAGING_PREFIX + "*"):
        if path.is_symlink() or not path.is_dir():
            continue
        lock = path / store.LOCK_FILE
        if lock.is_symlink() or (lock.exists() and not lock.is_file()):
            continue  # not a lock this module made: left alone (never opened)
        if not lock.is_file():
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _ORPHAN_AGE:
                    _remove_own(path, prof_dir, _STAGING_PREFIX)
            continue
        try:
            with store.locked(path, wait=False):
                pass
        except (store.BusyError, store.UnsafeLockError, OSError):
            continue
        _remove_own(path, prof_dir, _STAGING_PREFIX)


def _remove_own(path: Path, prof_dir: Path, prefix: str) -> None:
    """Delete ``path``, a folder this module made: only a real folder directly inside ``prof_dir`` whose
    name starts with ``prefix`` (a staging folder or a set-aside run folder), never anything else."""
    if path.parent != prof_dir or not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
        return
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- verifying the runs
@dataclass
class _Verified:
    """A run folder of the staging folder that verified, and where it goes."""
    folder: str
    source: Path
    complete: bytes
    evaluations: dict[str, dict[str, Path]] = field(default_factory=dict)  # stem -> {".json": p, ".npz": p}


def _verify_run(source: Path, prof, bundle: Path, entry: dict) -> _Verified:
    """Check the unpacked run folder ``source``: a run of ``prof`` whose config is the profile's for its
    seed and names the folder, complete by its ``complete.json``, with valid evaluation pairs."""
    folder = source.name
    run = _FOLDER.fullmatch(folder)["run"]
    if run not in prof.runs:
        raise BundleError(f"{bundle}: {folder} is not a run of profile {prof.name!r} (its runs: "
                          f"{', '.join(prof.runs)}); refusing to unpack")
    try:
        cfg = json.loads((source / "config.json").read_bytes())
        seed = cfg["seed"]
        profile_cfg = prof.run(run, seed)
    except (ValueError, KeyError, TypeError, RecursionError):
        raise BundleError(f"{bundle}: the config of {folder} is not a config of run {run!r}; "
                          "refusing to unpack") from None
    if not isinstance(cfg, dict) or profiles.config_key(cfg) != _key(folder):
        raise BundleError(f"{bundle}: run folder {folder} is not named after its config (hash "
                          f"{profiles.config_key(cfg) if isinstance(cfg, dict) else '?'}); refusing to unpack "
                          "(damaged or crafted)")
    if profile_cfg.differences(cfg) or profile_cfg.folder != folder:
        raise BundleError(f"{bundle}: the config of {folder} is not the config of run {run!r} (seed {seed}) in "
                          f"profile {prof.name!r}: made with another version of the profile? refusing to unpack")
    if entry["seed"] != seed:
        raise BundleError(f"{bundle}: {MANIFEST} gives seed {entry['seed']} for {folder}, its config {seed}")
    st = runs.inspect(source, profile_cfg)
    if st.state not in (runs.COMPLETE, runs.NO_WEIGHTS):
        raise BundleError(f"{bundle}: run {folder} does not verify against its complete.json ({st.state}: "
                          f"{st.detail}); refusing to unpack (damaged or tampered with)")
    return _Verified(folder, source, (source / "complete.json").read_bytes(), _verify_evaluations(source, bundle))


def _verify_evaluations(source: Path, bundle: Path) -> dict[str, dict[str, Path]]:
    """The evaluation pairs of an unpacked run folder, each checked (both files, matching checksum and name)."""
    pairs: dict[str, dict[str, Path]] = {}
    for p in sorted((source / "evaluations").glob("*")) if (source / "evaluations").is_dir() else []:
        m = _EVAL_FILE.fullmatch(p.name)
        pairs.setdefault(m["stem"], {})[p.suffix] = p
    for stem, pair in pairs.items():
        problem = ("its .json or .npz is missing" if len(pair) != 2 else
                   _evaluation_problem(stem, pair[".json"].read_bytes(), store.sha256_file(pair[".npz"]),
                                       _key(source.name)))
        if problem:
            raise BundleError(f"{bundle}: evaluation {source.name}/evaluations/{stem} does not verify ({problem}); "
                              "refusing to unpack (damaged or tampered with)")
    return pairs


# --------------------------------------------------------------------------- moving into place
def _plan(v: _Verified, prof_dir: Path, replace: bool) -> str:
    """What to do with verified run ``v``: ``new`` (rename in), ``merge`` (the same training is here:
    add the evaluations it lacks) or ``replace`` (another training is here and ``replace`` was asked)."""
    dest = prof_dir / v.folder
    if not os.path.lexists(dest):
        return "new"
    if dest.is_symlink() or not dest.is_dir():
        raise BundleError(f"{dest} exists but is not a run folder; move it away and unpack again")
    here = runs.inspect(dest)
    same = (dest / "complete.json").is_file() and (dest / "complete.json").read_bytes() == v.complete
    if same and here.state in (runs.COMPLETE, runs.NO_WEIGHTS):
        return "merge"
    if replace:
        return "replace"
    if same or here.state == runs.CORRUPTED:
        raise BundleError(f"{dest} holds this run damaged ({here.detail or here.state}); move it away or unpack "
                          "with --replace (deletes it)")
    if here.state in (runs.PARTIAL, runs.NOT_STARTED):
        raise BundleError(f"{dest} holds an unfinished training of this run ({here.state}); finish or move it "
                          "away, or unpack with --replace (deletes it)")
    raise BundleError(f"{dest} already holds another training of this run; move it away or unpack with "
                      "--replace (deletes it)")


def _lacks_evaluations(v: _Verified, dest: Path) -> bool:
    """Whether the local run ``dest`` lacks a file of any evaluation pair that ``v`` carries."""
    return any(not os.path.lexists(dest / "evaluations" / f"{stem}{ext}") for stem in v.evaluations
               for ext in (".npz", ".json"))


def _merge(v: _Verified, dest: Path) -> None:
    """Add to the local run ``dest`` (the same training) the evaluation files it lacks, ``.npz`` before
    ``.json``, only where the pair stays consistent; its own files are left as they are."""
    evals = dest / "evaluations"
    if os.path.lexists(evals) and (evals.is_symlink() or not evals.is_dir()):
        raise BundleError(f"{evals} is not a folder; move it away and unpack again")
    for stem, pair in v.evaluations.items():
        have = {ext: evals / f"{stem}{ext}" for ext in (".npz", ".json") if os.path.lexists(evals / f"{stem}{ext}")}
        if len(have) == 2:
            continue
        key = _key(dest.name)
        if ".json" in have and _evaluation_problem(stem, have[".json"].read_bytes(), store.sha256_file(pair[".npz"]), key):
            continue  # a local .json of another result: adding this .npz would not make a pair
        if ".npz" in have and _evaluation_problem(stem, pair[".json"].read_bytes(), store.sha256_file(have[".npz"]), key):
            continue
        evals.mkdir(exist_ok=True)
        for ext in (".npz", ".json"):
            if ext not in have:
                os.rename(pair[ext], evals / f"{stem}{ext}")


def _replace(v: _Verified, dest: Path, prof_dir: Path) -> None:
    """Swap the local run folder ``dest`` for ``v``: set it aside (a rename inside ``prof_dir``), rename
    ``v`` in, then delete the set-aside folder (put back if the second rename fails)."""
    aside = prof_dir / f"{_ASIDE_PREFIX}{v.folder}-{secrets.token_hex(4)}"
    os.rename(dest, aside)
    try:
        os.rename(v.source, dest)
    except OSError:
        os.rename(aside, dest)
        raise
    _remove_own(aside, prof_dir, _ASIDE_PREFIX)


def _move_into_place(verified: list[_Verified], prof_dir: Path, replace: bool) -> None:
    """Plan every run and lock every local run folder it merges into or replaces (so that a refused
    run, or one another process is training or evaluating now, leaves the cache untouched), then
    move them in, run by run."""
    plans = [(v, action) for v in verified for action in [_plan(v, prof_dir, replace)]
             if action != "merge" or _lacks_evaluations(v, prof_dir / v.folder)]
    with contextlib.ExitStack() as held:
        for v, action in plans:
            if action != "new":
                try:
                    held.enter_context(store.locked(prof_dir / v.folder, wait=False))
                except store.BusyError as err:
                    raise BundleError(f"{err}; then unpack again") from None
        for v, action in plans:
            dest = prof_dir / v.folder
            if action == "new":
                os.rename(v.source, dest)
            elif action == "merge":
                _merge(v, dest)
            else:
                _replace(v, dest, prof_dir)


# --------------------------------------------------------------------------- extract
def extract(bundle: str | Path, profile: str | None = None, replace: bool = False, *,
            max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES,
            max_member_bytes: int = MAX_MEMBER_BYTES) -> dict:
    """Unpack ``bundle`` into the artifacts root, verifying everything first; return its manifest.

    Members are written into a fresh staging folder inside ``<root>/<profile>/`` and checked
    there (see the module's docstring); nothing else is ever written, replaced or deleted. At
    most ``max_members`` members, ``max_member_bytes`` each and ``max_bytes`` in all are read.
    A run folder that exists here with a different ``complete.json`` (another training of the
    same config) is an error unless ``replace``, which deletes the local folder once the
    bundle's copy is verified and in place.
    """
    bundle = Path(bundle)
    limits = _Limits(max_members, max_bytes, max_member_bytes)
    with _stream(bundle, MAX_MANIFEST_BYTES + 4 * _HEADER_ALLOWANCE + 2 * tarfile.RECORDSIZE) as (tar, reader):
        manifest, prof = _read_manifest(tar, bundle, profile, limits)
        reader.limit = (reader.count + manifest["_total"] + (len(manifest["members"]) + 2) * _HEADER_ALLOWANCE
                        + 2 * tarfile.RECORDSIZE)
        prof_dir = artifacts_root() / prof.name
        try:
            with _staging(prof_dir) as staging:
                _unpack_members(tar, bundle, manifest, staging, limits)
                reader.drain()
                verified = [_verify_run(staging / folder, prof, bundle, entry)
                            for folder, entry in sorted(manifest["_folders"].items())]
                _move_into_place(verified, prof_dir, replace)
        except OSError as err:
            raise BundleError(f"cannot unpack {bundle} into {prof_dir} ({err.strerror or err}); "
                              "free some space or set CCKL_ARTIFACTS to a writable folder") from None
    return _public(manifest)


# --------------------------------------------------------------------------- is a bundle still current?
@contextlib.contextmanager
def _stream(bundle: Path, limit: int):
    """The bundle as a tar stream (``r|``) of at most ``limit`` decompressed bytes, with the bounded reader:
    every read error, an empty, truncated or non-gzip file included, is one :class:`BundleError`."""
    if not bundle.is_file():
        raise BundleError(f"no bundle at {bundle} (or it is not a regular file)")
    try:
        raw = open(bundle, "rb")
    except OSError as err:
        raise BundleError(f"cannot read {bundle} ({err.strerror})") from None
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        reader = _BoundedReader(gz, bundle, limit)
        with _reading(bundle):
            tar = tarfile.open(fileobj=reader, mode="r|")
        with tar:
            yield tar, reader


def _manifest_only(tar: tarfile.TarFile, bundle: Path) -> dict:
    """The first member of ``tar``, which must be a JSON object ``bundle.json`` of bounded size."""
    first = _next_member(tar, bundle)
    if first is None or first.name != MANIFEST or not first.isreg() or first.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{bundle} does not start with a valid {MANIFEST}; {_REMAKE}")
    return _json_object(tar, first, bundle, f"its {MANIFEST}")


def _json_object(tar: tarfile.TarFile, member: tarfile.TarInfo, bundle: Path, what: str) -> dict:
    """``member`` of ``tar`` parsed as a JSON object; anything else is one :class:`BundleError` naming ``what``."""
    try:
        value = json.loads(_read_member(tar, member, bundle))
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise BundleError(f"{bundle}: {what} is not a JSON object; {_REMAKE}")
    return value


def read_manifest(bundle: str | Path) -> dict:
    """The manifest of ``bundle`` (read only, nothing unpacked): a JSON object; :class:`BundleError` if it
    has none, or the file is empty, truncated or not a ``.tar.gz``."""
    bundle = Path(bundle)
    with _stream(bundle, MAX_MANIFEST_BYTES + 4 * _HEADER_ALLOWANCE + 2 * tarfile.RECORDSIZE) as (tar, _):
        return _manifest_only(tar, bundle)


def stale(bundle: str | Path) -> list[str]:
    """Why ``bundle`` no longer matches the current profile and code, or [] when it does: its format,
    every run of the profile, with every training seed the profile trains it with, present under the folder
    name its current config gives,
    its ``complete.json`` of the current run format, and every evaluation the profile needs for it
    under the key its current settings give (sampling seed 0).

    The file is checked before anything in it is parsed: read as a bounded stream (at most
    :data:`MAX_BYTES`), a manifest that is a JSON object whose ``runs`` is a list and ``members`` an
    object; an empty, truncated or non-tar file, or a manifest or ``complete.json`` of the wrong shape,
    is one :class:`BundleError`."""
    from . import evaluations

    bundle = Path(bundle)
    with _stream(bundle, MAX_BYTES) as (tar, _):
        manifest = _manifest_only(tar, bundle)
        members, entries = manifest.get("members", {}), manifest.get("runs", [])
        if not isinstance(members, dict) or not isinstance(entries, list) or \
                not all(isinstance(e, dict) for e in entries):
            raise BundleError(f"{bundle}: its {MANIFEST} does not have the shape of a bundle's (runs: a list of "
                              f"objects, members: an object); {_REMAKE}")
        problems = []
        if manifest.get("format") != FORMAT:
            problems.append(f"bundle format {manifest.get('format')!r}, not {FORMAT}")
        try:
            prof = profiles.load(profiles.check_name(manifest.get("profile")))
        except profiles.ProfileError as err:
            return problems + [str(err)]
        folders = {e.get("folder") for e in entries}
        for cfg in prof.configs():
            name, want = cfg.name, cfg.folder
            if want not in folders:
                if not cfg.optional:
                    seed = f" (seed {cfg.seed})" if cfg.seed != prof.seeds[0] else ""
                    problems.append(f"run {name}{seed}: no folder {want} (its config changed, or it is missing)")
                continue
            for e in evaluations.needed(prof, name):
                stem = f"{e}-{evaluations.settings_key(evaluations.settings(prof, e))}"
                if f"{prof.name}/{want}/evaluations/{stem}.json" not in members:
                    problems.append(f"run {name}: evaluation {stem} missing (its settings or code version changed)")
        while (m := _next_member(tar, bundle)) is not None:
            if m.name.endswith("/complete.json") and m.isreg():
                if m.size > MAX_MANIFEST_BYTES:
                    raise BundleError(f"{bundle}: member {m.name!r} is too large for a complete.json; {_REMAKE}")
                record = _json_object(tar, m, bundle, f"member {m.name!r}")
                if record.get("format") != runs.FORMAT:
                    problems.append(f"{m.name}: run format is not {runs.FORMAT}")
    return problems
