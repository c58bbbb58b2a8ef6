"""The smoke fixture every rendering test and nbval read: all runs and evaluations of the `smoke`
profile, trained once into ``FOLDER/artifacts`` (data root ``FOLDER/data``) by the one scheduler.

    python tests/fixture.py build/test-fixture      # what `make test` runs first; a no-op when it is complete

Concurrent callers (pytest workers) wait on a lock and reuse the first one's result.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build(folder: Path) -> Path:
    """Train and evaluate every smoke run into ``folder`` unless it is there already; return ``folder``."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CCKL_ARTIFACTS": str(folder / "artifacts"), "CCKL_DATA_ROOT": str(folder / "data"),
           "CCKL_THREADS": "1"}
    env.pop("CCKL_PROFILE", None)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "complete"
        if not done.exists():
            subprocess.run([sys.executable, "-m", "cckl_core", "evaluate", "--profile", "smoke", "--device", "cpu",
                            "--no-plan", "--no-progress"], cwd=REPO, env=env, check=True)
            done.write_text("the smoke profile's runs and evaluations are under artifacts/\n")
    return folder


if __name__ == "__main__":
    print(f"[cckl] smoke fixture: {build(Path(sys.argv[1]))}")
