"""JupyterLab leaves the repository clean: a notebook that git filters is saved as the filter leaves it.

Two pieces, both set up by ``make env`` / ``make lab``:

* git's clean filter for ``notebooks/*.ipynb`` (``.gitattributes``; ``make notebook-filter`` configures nbstripout
  as ``filter.nbstripout``): ``git diff``, ``git add`` and commits see a notebook without outputs, execution
  counts or the Python version that ran it (``language_info``), whichever editor wrote it. That alone does not
  quiet ``git status``: git compares a file's size with the index before its contents, so a notebook saved with
  outputs is listed as modified (``git diff`` shows nothing; ``git add`` clears it).
* in ``make lab``, JupyterLab's pre-save hook :func:`strip_before_save` (:data:`SERVER_OPTION`): a notebook
  git filters is written exactly as the clean filter would leave it, so saving after a run leaves
  ``git status`` clean, and an edit of a cell's source is saved and shows. The outputs stay on screen; the
  executed notebooks with their outputs are ``make paper``'s, in ``build/<profile>/``. A notebook saved
  elsewhere (``build/``, say) keeps its outputs.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

#: The JupyterLab option that installs :func:`strip_before_save` (``make lab`` and ``scripts/check_lab.py``).
SERVER_OPTION = "--ContentsManager.pre_save_hook=cckl_core.lab.strip_before_save"


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def clean_filter(root: Path, path: str) -> str | None:
    """The shell command of git's clean filter for ``path`` (relative to the checkout ``root``), or ``None``
    where git applies none (no checkout, no filter attribute, the filter not configured)."""
    attribute = _git(root, "check-attr", "filter", "--", path).rsplit(": ", 1)[-1]
    if attribute in ("", "unspecified", "unset", "set"):
        return None
    return _git(root, "config", f"filter.{attribute}.clean") or None


def strip_before_save(model: dict, path: str, contents_manager: Any, **_: Any) -> None:
    """JupyterLab's pre-save hook: pass a notebook that git filters through the filter before it is written.

    ``model["content"]`` is replaced by the filter's output; anything else (another file, a notebook git
    does not filter) is saved as it is. A filter that fails raises, and Jupyter saves the notebook unchanged
    and logs the error (a save is never lost)."""
    if model.get("type") != "notebook" or not model.get("content"):
        return
    root = Path(contents_manager.root_dir)
    command = clean_filter(root, path.lstrip("/"))
    if command is None:
        return
    out = subprocess.run(command, shell=True, cwd=root, input=json.dumps(model["content"]), capture_output=True,
                         text=True, timeout=60, check=True)
    model["content"] = json.loads(out.stdout)
