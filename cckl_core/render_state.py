"""Is a profile's published render up to date? A digest of everything a render reads, kept beside it.

A render (``cckl render``, ``make paper``) executes the paper's notebooks from the run cache; what it
writes is a function of what it reads. Each notebook's **inputs key** is the SHA-256 of:

- the notebook's source file (``notebooks/<notebook>.ipynb``) and the profile's name;
- every file of the package ``cckl_core`` (code, profiles, claims criteria, the published parameters);
- the profile's run cache (``<artifacts root>/<profile>/``: each file's path, size and modification
  time; hidden entries such as ``.lock`` left out), the results bundles (``results/``) and the data a
  live probe may read (the data root two levels deep, the offline CIFAR-10 zip);
- the environment: the Python version and those of the packages a render uses (:data:`PACKAGES`), every
  ``CCKL_*`` variable and the thread and plotting settings (:data:`ENVIRONMENT`).

After a render, :func:`record` writes ``<out>/render-state.json``: each notebook's key (taken before the
render began) and the size and modification time of what it left (the executed notebook in ``out``; the
profile's figures folder as a whole). :func:`stale` names the notebooks whose key changed or whose outputs
were touched since; a render executes only those (all of them when the figures folder changed: which
notebook wrote a file is not known), then the report. Changed notes (``NOTES.md``, which the report shows)
render the report alone. The check reads files and metadata only (no torch), so ``make paper`` with nothing
new costs one short process. ``--force`` (``make paper RERENDER=1``) renders everything regardless.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterable

from .paths import artifacts_root, cifar10_zip, data_root, project_root, results_root

#: The file beside the executed notebooks that holds the last render's keys and outputs.
STATE_FILE = "render-state.json"
#: Packages whose version can change what a render writes.
PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "torch", "torchvision", "safetensors", "tqdm",
            "nbclient", "nbconvert", "nbformat", "papermill", "ipykernel", "jinja2")
#: Variables (beside every ``CCKL_*``) that can change what a render writes.
ENVIRONMENT = ("MPLBACKEND", "MPLCONFIGDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _stats(root: Path, max_depth: int | None = None) -> list[tuple[str, int, int]]:
    """``(path relative to root, size, mtime_ns)`` of every file under ``root`` (none when it is absent),
    hidden files and folders left out, at most ``max_depth`` folders deep when given; sorted."""
    out = []
    if root.is_file():
        st = root.stat()
        return [(root.name, st.st_size, st.st_mtime_ns)]
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = [] if max_depth is not None and depth >= max_depth else [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                st = path.stat()
            except OSError:  # removed while we looked
                continue
            out.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(out)


def package_files(package: Path | None = None) -> list[tuple[str, str]]:
    """``(path, SHA-256 of its bytes)`` of every file of ``package`` (default: ``cckl_core``; ``__pycache__``
    left out); sorted."""
    package = package or Path(__file__).resolve().parent
    out = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
            out.append((path.relative_to(package).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    return out


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """The Python version, :data:`PACKAGES`' versions, ``CCKL_*`` and :data:`ENVIRONMENT` variables."""
    variables = {k: v for k, v in os.environ.items() if k.startswith("CCKL_") or k in ENVIRONMENT}
    return {"python": sys.version, "packages": {p: _version(p) for p in PACKAGES}, "variables": dict(sorted(variables.items()))}


def shared_inputs(profile: str, figures_root: Path) -> dict:
    """What every notebook of ``profile`` reads besides its own source (see the module docstring)."""
    return {"profile": profile, "figures_root": str(figures_root), "package": package_files(),
            "cache": _stats(artifacts_root() / profile), "results": _stats(results_root(), max_depth=0),
            "data": _stats(data_root(), max_depth=1), "cifar10_zip": _stats(cifar10_zip()),
            "environment": environment()}


def notebook_key(notebook: str, shared: dict) -> str:
    """SHA-256 of ``notebook``'s source file and the shared inputs (:func:`shared_inputs`)."""
    source = project_root() / "notebooks" / f"{notebook}.ipynb"
    digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode())
    digest.update(notebook.encode() + b"\0" + (source.read_bytes() if source.is_file() else b"<absent>"))
    return digest.hexdigest()


def load(out_dir: Path) -> dict:
    """The last render's state in ``out_dir`` (empty when there is none or it cannot be read)."""
    try:
        state = json.loads((out_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


#: The profile's notes (written by a person, read by the report): not a notebook's output.
NOTES = "NOTES.md"


def _figures(figures_root: Path, profile: str) -> list[list]:
    """The profile's figures folder as :func:`record` keeps it (lists, as JSON gives them back), :data:`NOTES`
    left out."""
    return [list(r) for r in _stats(figures_root / profile) if r[0] != NOTES]


def _notes(figures_root: Path, profile: str) -> list[list]:
    """The profile's :data:`NOTES` as :func:`record` keeps it: a change renders the report again, no notebook."""
    return [list(r) for r in _stats(figures_root / profile / NOTES)]


def _executed(out_dir: Path, notebook: str) -> list[list]:
    """The executed notebook in ``out_dir`` as :func:`record` keeps it (empty when there is none)."""
    return [list(r) for r in _stats(out_dir / f"{notebook}.ipynb")]


def stale(notebooks: Iterable[str], profile: str, out_dir: Path, figures_root: Path,
          keys_now: dict[str, str] | None = None) -> list[str]:
    """The notebooks of ``notebooks`` to render again: those whose inputs key (``keys_now``, default :func:`keys`
    now) differs from the last render's in ``out_dir``, or whose executed notebook changed since; every one when
    the figures folder changed."""
    notebooks = list(notebooks)
    state = load(out_dir)
    last = state.get("notebooks") if isinstance(state.get("notebooks"), dict) else {}
    if state.get("profile") != profile or state.get("figures") != _figures(figures_root, profile):
        return notebooks
    keys_now = keys_now if keys_now is not None else keys(notebooks, profile, figures_root)
    return [nb for nb in notebooks
            if not isinstance(last.get(nb), dict) or last[nb].get("key") != keys_now[nb]
            or last[nb].get("executed") != _executed(out_dir, nb)]


def up_to_date(profile: str, out_dir: Path, figures_root: Path) -> list[str] | None:
    """The notebooks of the last render in ``out_dir`` when every one of them is up to date (:func:`stale`
    finds none), else None. Reads the state's list of notebooks, so it needs no import of the paper."""
    state = load(out_dir)
    notebooks = state.get("notebooks")
    if not isinstance(notebooks, dict) or not notebooks or state.get("notes") != _notes(figures_root, profile):
        return None
    return None if stale(notebooks, profile, out_dir, figures_root) else list(notebooks)


def forget(out_dir: Path) -> None:
    """Remove the state (a render has begun: until it ends, nothing in ``out_dir`` counts as up to date)."""
    (out_dir / STATE_FILE).unlink(missing_ok=True)


def keys(notebooks: Iterable[str], profile: str, figures_root: Path) -> dict[str, str]:
    """Each notebook's inputs key now (:func:`notebook_key`); taken before a render, kept by :func:`record`."""
    shared = shared_inputs(profile, figures_root)
    return {nb: notebook_key(nb, shared) for nb in notebooks}


def record(keys_before: dict[str, str], profile: str, out_dir: Path, figures_root: Path) -> Path:
    """Write the state of a render that has just ended: the notebooks' keys taken before it began
    (:func:`keys`; inputs that changed during the render make it stale) and its outputs now. Returns its path."""
    state = {"profile": profile, "figures": _figures(figures_root, profile), "notes": _notes(figures_root, profile),
             "notebooks": {nb: {"key": key, "executed": _executed(out_dir, nb)} for nb, key in keys_before.items()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{STATE_FILE}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=1)
    os.replace(tmp, out_dir / STATE_FILE)
    return out_dir / STATE_FILE
