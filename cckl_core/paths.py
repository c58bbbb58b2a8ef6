"""Every location the project reads or writes, in one place.

Nothing in `cckl_core` writes into the current folder: runs go under
``artifacts/``, figures under ``figures/``, data under the data root.
Each can be moved with an environment variable.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding ``cckl_core/``).
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Data root: ``$CCKL_DATA_ROOT`` if set, else ``<repo>/data``."""
    return Path(os.environ.get("CCKL_DATA_ROOT", REPO_ROOT / "data")).expanduser()


def artifacts_root() -> Path:
    """Run cache: ``$CCKL_ARTIFACTS`` if set, else ``<repo>/artifacts``."""
    return Path(os.environ.get("CCKL_ARTIFACTS", REPO_ROOT / "artifacts")).expanduser()


def figures_root() -> Path:
    """Figures and tables: ``$CCKL_FIGURES`` if set, else ``<repo>/figures``."""
    return Path(os.environ.get("CCKL_FIGURES", REPO_ROOT / "figures")).expanduser()


#: Where the offline CIFAR-10 copy lives when ``shared/`` sits beside the checkout.
SHARED_CIFAR10_ZIP = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"


def cifar10_zip() -> Path:
    """The offline CIFAR-10 JPEG copy (a zip of ``{train,test}/<class>/NNNN.jpg``):
    ``$CCKL_CIFAR10_ZIP`` if set, else :data:`SHARED_CIFAR10_ZIP`. It may not exist."""
    env = os.environ.get("CCKL_CIFAR10_ZIP")
    return Path(env).expanduser() if env else SHARED_CIFAR10_ZIP
