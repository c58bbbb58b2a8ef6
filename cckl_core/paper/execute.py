"""Run the paper's notebooks for a profile in one Jupyter kernel, as papermill would, from one process.

``make paper`` renders through :func:`execute_all`: one kernel (torch and the package are imported once,
not once per notebook) runs every notebook the profile has runs for (:func:`cckl_core.paper.notebooks_of`),
one after another, its namespace cleared between them; each notebook first gets its parameters injected
(papermill's ``parameterize_notebook``, the cell tagged ``injected-parameters``) with the published values
of :data:`cckl_core.paper.PUBLISHED`, so that nothing saved in a source notebook steers a published
render. The executed notebooks are written to ``out_dir`` (``build/<profile>/``), where the report
exports them to HTML in the same process.

An expected stop (results missing, a bad parameter, a write that failed) is one line
(:class:`RenderError`), not a traceback; the kernel's full output of a failed notebook is written to
``out_dir/<notebook>.log``.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..paths import project_root
from . import NOTEBOOKS, PUBLISHED, notebooks_of

#: Errors a notebook raises on purpose: shown as their one line.
ONE_LINE_ERRORS = ("ResultsMissing", "ParameterError", "NotInProfile", "WriteError", "DiskFullError")
#: What the kernel runs between two notebooks: a clean namespace and no open figure.
_RESET = "%reset -f\nimport matplotlib.pyplot as _plt\n_plt.close('all')\ndel _plt"


class RenderError(RuntimeError):
    """A notebook that stopped: its one line (``<notebook>: <error>: <message>``)."""


def parameters_of(notebook: str, profile: str) -> dict:
    """The parameters injected into ``notebook`` for a published render of ``profile``: the profile and
    :data:`cckl_core.paper.PUBLISHED` (every other parameter of its parameters cell, at its published value)."""
    return {"profile": profile, **PUBLISHED[notebook]}


def _kernel(log: Path):
    """A started python3 kernel in the project folder; what the kernel process itself prints goes to ``log``."""
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name="python3")
    with open(log, "ab") as sink:
        km.start_kernel(cwd=str(project_root()), env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
                        stdout=sink, stderr=sink)
    return km


def _reset(km) -> None:
    """Clear the kernel's namespace and close its figures (:data:`_RESET`) before the next notebook."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive(_RESET, timeout=60, output_hook=lambda msg: None)
    finally:
        kc.stop_channels()


def _one_line(err: Exception) -> str | None:
    """The error's one line when it is an expected stop (:data:`ONE_LINE_ERRORS`), else None."""
    ename = getattr(err, "ename", "")
    return f"{ename}: {getattr(err, 'evalue', '')}" if ename in ONE_LINE_ERRORS else None


def execute(km, notebook: str, profile: str, out_dir: Path) -> Path | None:
    """Run ``notebook`` with its published parameters in kernel ``km``; write it to ``out_dir``. Returns its
    path, or None when the profile has no runs for it (nothing written)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    source = project_root() / "notebooks" / f"{notebook}.ipynb"
    nb = parameterize_notebook(load_notebook_node(str(source)), parameters_of(notebook, profile),
                               kernel_name="python3", language="python")
    for cell in nb.cells:  # papermill names its cell at random: a fixed id keeps the executed pages the same
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
    target = out_dir / f"{notebook}.ipynb"
    try:
        NotebookClient(nb, km=km, timeout=None, allow_errors=False, resources={"metadata": {"path": str(project_root())}}
                       ).execute()
    except CellExecutionError as err:
        (out_dir / f"{notebook}.log").write_text(str(err))
        line = _one_line(err)
        if line is not None and line.startswith("NotInProfile"):
            return None
        raise RenderError(f"{notebook}: {line or 'failed'}; its log: {out_dir / (notebook + '.log')}") from None
    finally:
        _reset(km)
    nbformat.write(nb, target)
    return target


def execute_all(profile: str, out_dir: Path, notebooks: list[str] | None = None, say=print) -> list[Path]:
    """Run every notebook of ``profile`` (or ``notebooks``) in one kernel, in order; write the executed
    notebooks to ``out_dir``. Returns their paths."""
    chosen = notebooks or notebooks_of(profile)
    unknown = [nb for nb in chosen if nb not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; the paper's notebooks: {', '.join(NOTEBOOKS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    km = _kernel(out_dir / "kernel.log")
    try:
        done = []
        for nb in chosen:
            say(f"[cckl] rendering {nb} ({profile})")
            path = execute(km, nb, profile, out_dir)
            if path is not None:
                done.append(path)
        return done
    finally:
        km.shutdown_kernel(now=True)
