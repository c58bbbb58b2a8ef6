"""What a warm ``make paper PROFILE=quick`` costs: with nothing changed, with one notebook to render again, and
with every notebook rendered again (``RERENDER=1``), measured in one run.

From the committed ``quick`` results (``results/quick.tar.gz`` unpacked into a temporary cache, so nothing is
trained; the live probes read the carried models, ``results/quick-models.tar``), with figures and executed
notebooks written to the same temporary folder (``figures/`` is not touched). Each command is a process of its
own, as ``make paper`` runs them:

- ``cckl evaluate --profile quick``, finding every run and evaluation in the cache;
- ``cckl render --profile quick --force``: every notebook (kernels: one per CPU at most), then the report;
- ``cckl render --profile quick`` with nothing changed: the check of :mod:`cckl_core.render_state` only;
- the same after touching one executed notebook (``04_appendix_c_table``): that notebook, then the report.

Wall seconds, median of ``--repeats``; then the warm ``make paper`` each gives (``evaluate`` plus the render;
``make paper`` also checks the carried models, about 2 s, not counted here) against issue 26's 10-second target.

    python benchmarks/warm_render.py [--repeats 3]
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


def seconds(args: list[str], env: dict, before=None) -> float:
    """Wall seconds of ``python -m cckl_core <args>`` in a fresh process (``before()`` runs first, untimed)."""
    if before is not None:
        before()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cckl_core", *args], check=True, cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cckl-warm-render-") as tmp:
        env = {**os.environ, "CCKL_ARTIFACTS": str(Path(tmp) / "artifacts"), "CCKL_DATA_ROOT": str(Path(tmp) / "no-data"),
               "CCKL_FIGURES": str(Path(tmp) / "figures"), "CCKL_CIFAR10_ZIP": str(Path(tmp) / "no-zip.zip")}
        subprocess.run([sys.executable, "-m", "cckl_core", "unbundle", str(REPO / "results" / "quick.tar.gz")],
                       check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        out = Path(tmp) / "build"
        render = ["render", "--profile", "quick", "--out", str(out)]
        executed = out / "04_appendix_c_table.ipynb"

        def touch() -> None:
            st = executed.stat()
            os.utime(executed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

        cases = {"evaluate, everything cached": (["evaluate", "--profile", "quick", "--device", "cpu"], None),
                 "render, every notebook (--force)": (render + ["--force"], None),
                 "render, nothing changed": (render, None),
                 "render, one notebook touched (04)": (render, touch)}
        measured = {name: statistics.median(seconds(cmd, env, before) for _ in range(args.repeats))
                    for name, (cmd, before) in cases.items()}
    for name, s in measured.items():
        print(f"{name:40s} {s:7.2f} s (median of {args.repeats})")
    evaluate = measured["evaluate, everything cached"]
    for name in list(measured)[1:]:
        total = evaluate + measured[name]
        print(f"warm make paper, {name[8:]:32s} {total:7.2f} s  / 10 s target: {total / 10:.2f}")


if __name__ == "__main__":
    main()
