"""Run the paper's notebooks for a profile in Jupyter kernels, as papermill would, from one process.

``make paper`` renders through :func:`execute_all`: one kernel per CPU at most (:func:`kernels_for`; torch and
the package are imported once per kernel, not once per notebook) runs the notebooks the profile has runs for
(:func:`cckl_core.paper.notebooks_of`), each kernel taking the next one in order, its namespace cleared
between them; each notebook first gets its parameters injected
(papermill's ``parameterize_notebook``, the cell tagged ``injected-parameters``) with the published values
of :data:`cckl_core.paper.PUBLISHED`, so that nothing saved in a source notebook steers a published
render. The executed notebooks are written to ``out_dir`` (``build/<profile>/``), where the report
exports them to HTML in the same process.

An expected stop (results missing, a bad parameter, a write that failed) is one line
(:class:`RenderError`), not a traceback; the kernel's full output of a failed notebook is written to
``out_dir/<notebook>.log``.
"""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from ..paths import project_root
from . import NOTEBOOKS, PUBLISHED, notebooks_of

#: Errors a notebook raises on purpose: shown as their one line.
ONE_LINE_ERRORS = ("ResultsMissing", "ParameterError", "NotInProfile", "WriteError", "DiskFullError")
#: What the kernel runs between two notebooks: a clean namespace, no open figure, and the data's source said
#: again by the next notebook that reads data (its page is then the same whichever kernel ran it, and after what).
_RESET = ("%reset -f\nimport matplotlib.pyplot as _plt\n_plt.close('all')\ndel _plt\n"
          "from cckl_core.data.sources import announce_again as _again\n_again()\ndel _again")


class RenderError(RuntimeError):
    """A notebook that stopped: its one line (``<notebook>: <error>: <message>``)."""


def parameters_of(notebook: str, profile: str) -> dict:
    """The parameters injected into ``notebook`` for a published render of ``profile``: the profile and
    :data:`cckl_core.paper.PUBLISHED` (every other parameter of its parameters cell, at its published value)."""
    return {"profile": profile, **PUBLISHED[notebook]}


def kernels_for(count: int, cpus: int | None = None) -> tuple[int, int]:
    """``(kernels, torch threads per kernel)`` for ``count`` notebooks on ``cpus`` CPUs (default: those this
    process may use): a kernel per notebook up to one per CPU, the CPUs shared among them."""
    cpus = cpus or len(os.sched_getaffinity(0))
    kernels = max(1, min(count, cpus))
    return kernels, max(1, cpus // kernels)


async def _start(km, log: Path, threads: int) -> None:
    """Start kernel ``km`` (python3) in the project folder with ``threads`` torch threads; what the kernel
    process itself prints goes to ``log``."""
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    with open(log, "ab") as sink:
        await km.start_kernel(cwd=str(project_root()), env=env, stdout=sink, stderr=sink)


async def _reset(km) -> None:
    """Clear the kernel's namespace and close its figures (:data:`_RESET`) before the next notebook."""
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        await kc.execute_interactive(_RESET, timeout=60, output_hook=lambda msg: None)
    finally:
        kc.stop_channels()


def _one_line(err: Exception) -> str | None:
    """The error's one line when it is an expected stop (:data:`ONE_LINE_ERRORS`), else None."""
    ename = getattr(err, "ename", "")
    return f"{ename}: {getattr(err, 'evalue', '')}" if ename in ONE_LINE_ERRORS else None


def _parameterized(notebook: str, profile: str):
    """The source notebook with its parameters injected (papermill), in a cell of fixed id."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    source = project_root() / "notebooks" / f"{notebook}.ipynb"
    nb = parameterize_notebook(load_notebook_node(str(source)), parameters_of(notebook, profile),
                               kernel_name="python3", language="python")
    for cell in nb.cells:  # papermill names its cell at random: a fixed id keeps the executed pages the same
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
    return nb


def _carry_interrupt(interrupted: threading.Event | None) -> None:
    """Carry on a Ctrl+C (``interrupted`` set by :meth:`_Render.stop`): the render's tasks are being cancelled,
    which nbclient may report as a dead kernel or a failed cell; the cancellation is raised instead."""
    if interrupted is not None and interrupted.is_set():
        raise asyncio.CancelledError


def _quiet_poller(loop, context: dict) -> None:
    """The event loop's exception handler: nbclient's kernel-alive poller, left behind by a notebook that was
    stopped, is not reported; anything else is, as asyncio would."""
    task = context.get("future")
    if getattr(getattr(task, "get_coro", lambda: None)(), "__name__", "") == "_async_poll_kernel_alive":
        return
    loop.default_exception_handler(context)


async def execute(km, notebook: str, profile: str, out_dir: Path, interrupted: threading.Event | None = None
                  ) -> Path | None:
    """Run ``notebook`` with its published parameters in kernel ``km``; write it to ``out_dir``. Returns its
    path, or None when the profile has no runs for it (nothing written). A notebook that stops is a
    :class:`RenderError` (its kernel cleared for the next one); a render being stopped (Ctrl+C) cancels it; a cell
    interrupted in the kernel itself is a ``KeyboardInterrupt``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    nb = _parameterized(notebook, profile)
    log = out_dir / f"{notebook}.log"
    try:
        await NotebookClient(nb, km=km, timeout=None, allow_errors=False,
                             resources={"metadata": {"path": str(project_root())}}).async_execute()
    except CellExecutionError as err:
        _carry_interrupt(interrupted)
        if getattr(err, "ename", "") == "KeyboardInterrupt":
            raise KeyboardInterrupt from None
        log.write_text(str(err))
        await _reset(km)
        line = _one_line(err)
        if line is not None and line.startswith("NotInProfile"):
            return None
        raise RenderError(f"{notebook}: {line or 'failed'}; its log: {log}") from None
    except DeadKernelError:
        _carry_interrupt(interrupted)
        raise RenderError(f"{notebook}: its kernel died (out of memory, or killed); what the kernel printed: "
                          f"{out_dir / 'kernel.log'}") from None
    await _reset(km)
    target = out_dir / f"{notebook}.ipynb"
    nbformat.write(nb, target)
    return target


async def _worker(queue: list[str], profile: str, out_dir: Path, threads: int, done: dict, failed: dict,
                  interrupted: threading.Event, say) -> None:
    """One kernel that runs the notebooks it takes from ``queue`` (in order) until none is left; a notebook that
    stops goes to ``failed`` and empties the queue (the other kernels finish the notebook they are running)."""
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3")
    try:  # a Ctrl+C while the kernel starts shuts it down too
        await _start(km, out_dir / "kernel.log", threads)
        while queue:
            nb = queue.pop(0)
            say(f"[cckl] rendering {nb} ({profile})")
            try:
                done[nb] = await execute(km, nb, profile, out_dir, interrupted)
            except Exception as err:  # noqa: BLE001 - raised by execute_all, the first in the notebooks' order
                failed[nb] = err
                queue.clear()
    finally:
        if km.has_kernel:
            await km.shutdown_kernel(now=True)


async def _execute_all(chosen: list[str], profile: str, out_dir: Path, interrupted: threading.Event, say) -> dict:
    """The workers of :func:`execute_all`, each with its kernel; the first failure in the notebooks' order."""
    asyncio.get_running_loop().set_exception_handler(_quiet_poller)
    kernels, threads = kernels_for(len(chosen))
    queue, done, failed = list(chosen), {}, {}
    await asyncio.gather(*(_worker(queue, profile, out_dir, threads, done, failed, interrupted, say)
                           for _ in range(kernels)))
    if failed:  # the same error whichever kernel met it first
        raise failed[min(failed, key=chosen.index)]
    return done


class _Render(threading.Thread):
    """:func:`_execute_all` in an event loop of its own thread. nbclient adds SIGINT handlers to the loop of the
    main thread that shut its kernel down (one handler for several notebooks at once, removed by the first to
    end); off the main thread it adds none, and Ctrl+C reaches :func:`execute_all`, which calls :meth:`stop`."""

    def __init__(self, chosen: list[str], profile: str, out_dir: Path, say) -> None:
        super().__init__(name="cckl-render", daemon=True)
        self.args, self.interrupted = (chosen, profile, out_dir), threading.Event()
        self.say, self.loop, self.task = say, None, None
        self.result: dict = {}
        self.error: BaseException | None = None
        self.ended = threading.Event()  # waited on, not join(): a join that Ctrl+C interrupts may say "ended" early

    def run(self) -> None:
        async def main() -> dict:
            self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
            return await _execute_all(*self.args, self.interrupted, self.say)
        try:
            self.result = asyncio.run(main())
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self.error = err
        finally:
            self.ended.set()

    def stop(self) -> None:
        """Cancel the render (its kernels are shut down as their workers end)."""
        self.interrupted.set()
        if self.loop is not None and self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)


def execute_all(profile: str, out_dir: Path, notebooks: list[str] | None = None, say=print) -> list[Path]:
    """Run every notebook of ``profile`` (or ``notebooks``) in as many kernels as :func:`kernels_for` gives (one
    per CPU at most), each kernel taking the next notebook in order; write the executed notebooks to
    ``out_dir``. Returns their paths, in the notebooks' order. A notebook that stops leaves the rest unstarted;
    of those that stopped, the first in the notebooks' order is raised. Ctrl+C stops every kernel and is raised."""
    chosen = notebooks_of(profile) if notebooks is None else list(notebooks)
    unknown = [nb for nb in chosen if nb not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; the paper's notebooks: {', '.join(NOTEBOOKS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not chosen:
        return []
    render = _Render(chosen, profile, out_dir, say)
    render.start()
    try:
        while not render.ended.wait(0.2):
            pass
    except KeyboardInterrupt:
        render.stop()
        render.ended.wait()
        raise
    if render.error is not None:
        raise render.error
    return [render.result[nb] for nb in chosen if render.result.get(nb) is not None]
