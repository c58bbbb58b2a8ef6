"""Every location the project reads or writes, in one place.

The roots default to the *project folder*: the nearest folder, from the current working
directory up, that holds this project's ``pyproject.toml`` (a checkout, wherever Python is run
from inside it, notebooks/ included), else the current working directory itself (an installed
package used from any folder). Nothing is ever written inside the installed package.

- ``artifacts/``: the run cache (``$CCKL_ARTIFACTS``);
- ``data/``: data sets and their decoded cache (``$CCKL_DATA_ROOT``);
- ``figures/``: what ``make paper`` publishes (``$CCKL_FIGURES``); a notebook run by hand writes
  to ``build/scratch/figures/`` instead (``make paper`` sets ``CCKL_FIGURES``), so the published
  figures and their summary change together or not at all;
- ``results/``: results bundles that travel with the repository (read only).

An environment variable that is set but empty is a mistake (it would put the cache in the
current folder): :class:`PathSettingError`.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The folder holding the ``cckl_core`` package (a checkout's root, or site-packages).
PACKAGE_PARENT = Path(__file__).resolve().parent.parent
_MARKER = 'name = "cckl-core"'


class PathSettingError(ValueError):
    """A path setting (environment variable) that cannot be used as it is."""


def project_root(start: Path | None = None) -> Path:
    """The nearest folder from ``start`` (default: the working directory) up holding this project's
    ``pyproject.toml``; else ``start`` itself."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        try:
            if _MARKER in (folder / "pyproject.toml").read_text(errors="replace"):
                return folder
        except OSError:
            continue
    return here


#: Kept for the code that asks where the checkout is (git commit, the offline data beside it).
REPO_ROOT = project_root(PACKAGE_PARENT) if (PACKAGE_PARENT / "pyproject.toml").exists() else project_root()


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    if value is None:
        return None
    if not value.strip():
        raise PathSettingError(f"{var} is set but empty; unset it (default: under {project_root()}) or set it to a "
                               "folder")
    return Path(value).expanduser()


def data_root() -> Path:
    """Data root: ``$CCKL_DATA_ROOT`` if set, else ``<project>/data``."""
    return _env_path("CCKL_DATA_ROOT") or project_root() / "data"


def artifacts_root() -> Path:
    """Run cache: ``$CCKL_ARTIFACTS`` if set, else ``<project>/artifacts``."""
    return _env_path("CCKL_ARTIFACTS") or project_root() / "artifacts"


def figures_root() -> Path:
    """Where figures and tables go: ``$CCKL_FIGURES`` if set (``make paper`` sets it to
    ``<project>/figures``, the published ones), else ``<project>/build/scratch/figures``."""
    return _env_path("CCKL_FIGURES") or project_root() / "build" / "scratch" / "figures"


def published_figures() -> Path:
    """The published figures: ``<project>/figures`` (what ``make paper`` writes)."""
    return project_root() / "figures"


def results_root() -> Path:
    """Results bundles that travel with the repository: ``<project>/results``."""
    return project_root() / "results"


def cifar10_zip() -> Path:
    """The offline CIFAR-10 JPEG copy (a zip of ``{train,test}/<class>/NNNN.jpg``):
    ``$CCKL_CIFAR10_ZIP`` if set, else ``shared/data/cifar10-jpeg.zip`` beside the project folder.
    It may not exist."""
    return _env_path("CCKL_CIFAR10_ZIP") or shared_cifar10_zip()


def shared_cifar10_zip() -> Path:
    """Where the offline CIFAR-10 copy lies when ``shared/`` sits beside the project folder."""
    return project_root().parent / "shared" / "data" / "cifar10-jpeg.zip"


#: The same, computed once at import (kept for messages that name the default place).
SHARED_CIFAR10_ZIP = shared_cifar10_zip()
