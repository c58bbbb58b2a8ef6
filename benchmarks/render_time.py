"""Where a warm re-render's time goes: importing, then rendering each notebook's analyses in-process.

Measured in one run, from the committed ``quick`` results (``results/quick.tar.gz``, unpacked into a
temporary cache; nothing is trained or evaluated):

- the import of torch and of :mod:`cckl_core.paper` (which imports torch too), each in a fresh
  Python process (an import is cached after the first), median of ``--imports`` processes;
- per notebook, :func:`cckl_core.paper.render` in this process: the first render (it pays the
  lazy imports, e.g. matplotlib) and the median of ``--repeats`` further ones, wall and CPU seconds
  (``time.process_time``, less sensitive to a loaded machine);
- the total of one warm render of every notebook plus one import of ``cckl_core.paper``, against
  issue 26's target of a 10-second warm re-render.

    python benchmarks/render_time.py [--repeats 3] [--imports 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str, repeats: int) -> float:
    """Median wall seconds of ``import module`` in a fresh interpreter (this one's environment)."""
    times = [float(subprocess.run([sys.executable, "-c", _IMPORT.format(module=module)], check=True,
                                  capture_output=True, text=True, cwd=REPO).stdout.strip().splitlines()[-1])
             for _ in range(repeats)]
    return statistics.median(times)


def render_seconds(notebook: str, repeats: int) -> tuple[float, float, float]:
    """(first, median of ``repeats`` later) wall seconds of rendering ``notebook`` for quick, and the later
    renders' median CPU seconds."""
    from cckl_core import paper

    def once() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        paper.render(notebook, "quick").close()
        return time.perf_counter() - wall, time.process_time() - cpu

    first = once()[0]
    later = [once() for _ in range(repeats)]
    return first, statistics.median(w for w, _ in later), statistics.median(c for _, c in later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm renders per notebook (median)")
    parser.add_argument("--imports", type=int, default=3, help="fresh processes per import (median)")
    args = parser.parse_args()
    imports = {m: import_seconds(m, args.imports) for m in ("torch", "cckl_core.paper")}
    with tempfile.TemporaryDirectory(prefix="cckl-render-time-") as tmp:
        os.environ.update(CCKL_ARTIFACTS=str(Path(tmp) / "artifacts"), CCKL_DATA_ROOT=str(Path(tmp) / "no-data"),
                          CCKL_FIGURES=str(Path(tmp) / "figures"))
        from cckl_core import bundle, paper
        bundle.extract(REPO / "results" / "quick.tar.gz", "quick")
        renders = {nb: render_seconds(nb, args.repeats) for nb in paper.NOTEBOOKS}
    for module, seconds in imports.items():
        print(f"import {module:34s} {seconds:7.2f} s (fresh process, median of {args.imports})")
    print(f"{'render (quick)':41s} {'first s':>7s} {'warm s':>7s} {'warm CPU s':>10s}")
    for nb, (first, warm, cpu) in renders.items():
        print(f"  {nb:39s} {first:7.2f} {warm:7.2f} {cpu:10.2f}")
    warm_total = sum(w for _, w, _ in renders.values())
    total = imports["cckl_core.paper"] + warm_total
    print(f"warm renders of every notebook: {warm_total:.2f} s; with one import of cckl_core.paper: {total:.2f} s")
    print(f"in-process warm re-render / 10 s target: {total / 10:.2f}")


if __name__ == "__main__":
    main()
