"""Results bundles: everything the notebooks read, in one ``.tar.gz``, without weights.

Train and evaluate where the GPU is, copy one file back, render anywhere::

    python -m cckl_core bundle --profile gpu --out gpu-results.tar.gz     # on the GPU node
    make paper PROFILE=gpu BUNDLE=gpu-results.tar.gz                       # on a laptop

A bundle holds, per finished run (every seed in the cache), ``config.json``,
``environment.json``, ``dataset.json``, ``history.json``, ``complete.json`` and
``evaluations/*``, under ``<profile>/<run folder>/``, plus ``bundle.json`` (what is in it).
Unpacking checks every member (plain files under the profile's folder only) and every run
against the checksums in its ``complete.json``.
"""
from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path, PurePosixPath

from . import profiles, runs, store
from .paths import artifacts_root

MANIFEST = "bundle.json"


class BundleError(ValueError):
    """A bundle that cannot be made or unpacked as asked; the message says why."""


def _run_files(path: Path) -> list[Path]:
    files = [path / f for f in (*runs.RECORDED, "complete.json")]
    files += sorted(p for p in (path / "evaluations").glob("*") if p.suffix in (".npz", ".json"))
    return files


def create(profile: str, out: str | Path) -> dict:
    """Write the bundle of ``profile`` to ``out``; return its manifest. Runs that are not finished are
    listed under ``missing`` (and left out)."""
    prof = profiles.load(profile)
    out = Path(out)
    entries, missing, members = [], [], []
    for row in runs.status(prof.name):
        path = Path(row["path"])
        if row["state"] not in (runs.COMPLETE, runs.NO_WEIGHTS):
            missing.append(f"{row['run']} (seed {row['seed']}): {row['state']}")
            continue
        entries.append({"run": row["run"], "seed": row["seed"], "folder": path.name})
        members += [(p, PurePosixPath(prof.name, path.name, p.relative_to(path).as_posix())) for p in _run_files(path)]
    if not entries:
        raise BundleError(f"profile {prof.name!r} has no finished run under {artifacts_root() / prof.name}; "
                          f"train and evaluate first (make runs evaluations PROFILE={prof.name})")
    manifest = {"profile": prof.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": entries,
                "missing": missing, "files": len(members)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        blob = store.json_bytes(manifest)
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(blob), int(time.time())
        tar.addfile(info, io.BytesIO(blob))
        for src, arc in members:
            tar.add(src, arcname=str(arc), recursive=False)
    store.atomic_write_bytes(out, buf.getvalue())
    manifest["bytes"] = out.stat().st_size
    return manifest


def extract(bundle: str | Path, profile: str | None = None, replace: bool = False) -> dict:
    """Unpack ``bundle`` into the artifacts root and verify every run in it; return its manifest.

    A run folder that exists here with a different ``complete.json`` (another training of the
    same config) is an error unless ``replace``, which deletes the local folder first.
    """
    bundle = Path(bundle)
    if not bundle.is_file():
        raise BundleError(f"no bundle at {bundle}")
    try:
        tar = tarfile.open(bundle, mode="r:gz")
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{bundle} is not a readable .tar.gz bundle ({err})") from None
    with tar:
        try:
            manifest = json.loads(tar.extractfile(MANIFEST).read())
        except (KeyError, AttributeError, ValueError) as err:
            raise BundleError(f"{bundle} has no valid {MANIFEST}; was it made by `python -m cckl_core bundle`?") from err
        name = manifest.get("profile")
        if profile is not None and name != profile:
            raise BundleError(f"{bundle} holds results of profile {name!r}, not {profile!r}")
        prof = profiles.load(name)
        members = [m for m in tar.getmembers() if m.name != MANIFEST]
        folders = {e["folder"] for e in manifest["runs"]}
        for m in members:
            parts = PurePosixPath(m.name).parts
            if not m.isfile() or len(parts) < 3 or parts[0] != prof.name or parts[1] not in folders or ".." in parts:
                raise BundleError(f"{bundle}: unexpected member {m.name!r}; refusing to unpack")
        root = artifacts_root()
        for folder in sorted(folders):
            here = root / prof.name / folder
            theirs = tar.extractfile(f"{prof.name}/{folder}/complete.json").read()
            if (here / "complete.json").exists() and (here / "complete.json").read_bytes() != theirs:
                if not replace:
                    raise BundleError(f"{here} already holds another training of this run; move it away or "
                                      "unpack with --replace (deletes it)")
                runs.discard(here)
        tar.extractall(root, members=members, filter="data")
    for folder in sorted(folders):
        st = runs.inspect(root / prof.name / folder)
        if st.state not in (runs.COMPLETE, runs.NO_WEIGHTS):
            raise BundleError(f"run {folder} from {bundle} does not verify: {st.state} {st.detail}")
    return manifest
