"""The Makefile's wiring, read with `make -n` in a scratch copy (nothing is trained or installed)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here")


def _dry_run(tmp_path: Path, *args: str) -> list[str]:
    """The commands `make -n ARGS` would run, in a scratch folder holding a copy of the Makefile and
    a link to the package (deps.mk is made from it: `python -m cckl_core deps`)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    installed = tmp_path / "installed"  # stands in for the environment's stamp: nothing is installed
    installed.write_text("")
    common = ["--no-print-directory", f"PY={sys.executable}", f"STAMP={installed}"]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # not `make test`'s
    made = subprocess.run(["make", *common, "PROFILE=smoke", "build/smoke/deps.mk"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # `make -n` would not make it
    assert made.returncode == 0, made.stderr
    out = subprocess.run(["make", "-n", *common, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_bundle_is_unpacked_before_any_run_is_trained(tmp_path):
    """With BUNDLE=..., every training rule waits for the unpacked bundle (its runs are then found
    in the cache, nothing is trained); deps.mk's rules must see BUNDLE_DONE when they are read."""
    bundle = tmp_path / "results.tar.gz"
    bundle.write_bytes(b"")
    lines = _dry_run(tmp_path, "evaluations", "PROFILE=smoke", f"BUNDLE={bundle}")
    steps = [line.split(" -m cckl_core ")[1].split()[0] for line in lines if " -m cckl_core " in line]
    assert "unbundle" in steps and "train" in steps, lines
    assert steps.index("unbundle") < steps.index("train"), steps


def test_without_a_bundle_every_run_is_trained_then_evaluated(tmp_path):
    lines = _dry_run(tmp_path, "evaluations", "PROFILE=smoke")
    steps = [line.split(" -m cckl_core ")[1].split()[0] for line in lines if " -m cckl_core " in line]
    assert "unbundle" not in steps
    from cckl_core import profiles
    n = len(profiles.load("smoke").runs)
    assert steps.count("train") == n and steps.count("evaluate") == n, steps
