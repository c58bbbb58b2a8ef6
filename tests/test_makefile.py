"""The Makefile's wiring, read with `make -n` in a scratch copy (nothing is trained or installed), and
its checks of PROFILE, JOBS and BUNDLE, which stop make before anything runs."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
#: Variables of the calling shell that must not reach the scratch make (the Makefile ignores some on purpose).
_CALLER = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PROFILE", "DEVICE", "JOBS", "BUNDLE", "CCKL_PROFILE",
           "CCKL_DEVICE")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here")


@pytest.fixture
def scratch(tmp_path) -> Path:
    """A folder holding a copy of the Makefile (and what it reads) and links to the package and the
    notebooks; ``installed`` stands in for the environment's stamp, so nothing is installed."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    (tmp_path / "notebooks").symlink_to(REPO / "notebooks", target_is_directory=True)
    (tmp_path / "installed").write_text("")  # newer than pyproject.toml and requirements.lock
    return tmp_path


def _make(folder: Path, *args: str, py: str = sys.executable, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in _CALLER}
    return subprocess.run(["make", "--no-print-directory", f"PY={py}", f"STAMP={folder / 'installed'}", *args],
                          cwd=folder, env={**base, **(env or {})}, capture_output=True, text=True, timeout=300)


def _dry_run(folder: Path, *args: str, env: dict | None = None) -> list[str]:
    """The commands `make -n ARGS` would run (make's own sub-makes included), one per line (a recipe
    line continued with a backslash joined into one)."""
    out = _make(folder, "-n", *args, env=env)
    assert out.returncode == 0, out.stderr
    assert not (folder / "build").exists(), "make -n wrote files (a stamp or a generated makefile)"
    return out.stdout.replace("\\\n", " ").splitlines()


def _steps(lines: list[str]) -> list[str]:
    """The package commands in order: ``evaluate``, ``unbundle``, ``render``, ``zoo``, ..."""
    return [line.split(" -m cckl_core ")[1].split()[0] for line in lines if " -m cckl_core " in line]


def _evaluate_args(lines: list[str]) -> list[str]:
    """The arguments of the one `evaluate` command, split as the shell would split them."""
    found = [line for line in lines if " -m cckl_core evaluate " in line]
    assert len(found) == 1, lines
    return shlex.split(found[0].split(" -m cckl_core ", 1)[1])


# --------------------------------------------------------------------------- what `make paper` runs, in order
def test_paper_evaluates_the_profile_once_then_renders_then_reports(scratch):
    """One `evaluate` for the whole profile (the scheduler inside it trains and evaluates; completion
    is read from the cache: no per-run rules, no generated makefile), then one `render` (the notebooks whose
    inputs changed, in kernels of one process, then the report), and for quick the carried models."""
    lines = _dry_run(scratch, "paper", "PROFILE=smoke")
    assert _steps(lines) == ["evaluate", "render"], lines
    assert _evaluate_args(lines) == ["evaluate", "--profile", "smoke", "--device", "auto"]
    render = next(line for line in lines if " -m cckl_core render " in line)
    assert shlex.split(render.split(" -m cckl_core ", 1)[1]) == ["render", "--profile", "smoke", "--out",
                                                                 f"{scratch}/build/smoke"]
    assert f"CCKL_FIGURES={scratch}/figures" in shlex.split(render)
    assert not [line for line in lines if "papermill" in line or ".done" in line or "deps" in line]
    quick = _dry_run(scratch, "paper", "PROFILE=quick")  # make -n prints the recipe (render && zoo) before the sub-make
    assert _steps(quick)[0] == "evaluate" and sorted(_steps(quick)[1:]) == ["render", "zoo"]
    assert re.search(r"render PROFILE=quick && .* -m cckl_core zoo --profile quick --if-complete", " ".join(quick))
    again = next(line for line in _dry_run(scratch, "render", "PROFILE=smoke", "RERENDER=1") if " render " in line)
    assert shlex.split(again.split(" -m cckl_core ", 1)[1])[-1] == "--force"


def test_a_bundle_is_unpacked_before_anything_is_evaluated(scratch):
    """With BUNDLE=..., the results are unpacked first; `evaluate` then finds them in the cache."""
    bundle = scratch / "results.tar.gz"
    bundle.write_bytes(b"")
    lines = _dry_run(scratch, "paper", "PROFILE=smoke", f"BUNDLE={bundle}")
    steps = _steps(lines)
    assert steps[:2] == ["unbundle", "evaluate"] and steps.count("unbundle") == 1, steps
    assert "train" not in steps
    unbundle = shlex.split(next(line for line in lines if " unbundle " in line).split(" -m cckl_core ", 1)[1])
    assert unbundle == ["unbundle", "--profile", "smoke", str(bundle)]


def test_without_a_bundle_nothing_is_unpacked(scratch):
    lines = _dry_run(scratch, "evaluations", "PROFILE=smoke", "JOBS=3", "DEVICE=cpu")
    assert _steps(lines) == ["evaluate"]
    assert _evaluate_args(lines) == ["evaluate", "--profile", "smoke", "--device", "cpu", "--jobs", "3"]


# --------------------------------------------------------------------------- settings of the calling shell
def test_a_profile_in_the_environment_is_ignored_with_a_note(scratch):
    """A PROFILE (or DEVICE, JOBS) left in the shell must not silently change what is built; the
    default profile is the package's (`default-profile`: $CCKL_PROFILE here)."""
    out = _make(scratch, "-n", "evaluations", env={"PROFILE": "quick", "DEVICE": "cuda", "JOBS": "7",
                                                   "CCKL_PROFILE": "smoke"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.replace("\\\n", " ").splitlines()
    notes = [line for line in lines if line.startswith("[cckl] ignoring")]
    assert len(notes) == 3 and "ignoring PROFILE=quick from the shell environment" in notes[0], out.stdout
    assert _evaluate_args(lines) == ["evaluate", "--profile", "smoke", "--device", "auto"]


# --------------------------------------------------------------------------- mistakes stop make first
@pytest.mark.parametrize("setting, message", [
    ("PROFILE=nope", "unknown PROFILE 'nope'; valid: gpu paper quick smoke"),
    ("PROFILE=", "unknown PROFILE ''"),
    ("JOBS=abc", "JOBS must be a whole number >= 1, got 'abc'"),
    ("BUNDLE=no-such.tar.gz", "BUNDLE=no-such.tar.gz: no such file"),
])
def test_a_bad_setting_stops_make_before_anything_runs(scratch, setting, message):
    """Checked when the Makefile is read: one line naming the setting, and no command has run (the
    Python make would call records every call; it records none)."""
    log = scratch / "calls.log"
    fake = scratch / "fake-python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    args = ["paper", setting] if setting.startswith("PROFILE") else ["paper", "PROFILE=smoke", setting]
    out = _make(scratch, *args, py=str(fake))
    assert out.returncode != 0
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 1 and f"*** {message}" in errors[0], out.stderr
    assert not log.exists(), log.read_text()
    assert not (scratch / "build").exists()


# --------------------------------------------------------------------------- values reach commands as data
@pytest.mark.parametrize("device, received", [
    ("; touch pwned", "; touch pwned"),
    ("$$(touch pwned)", "$(touch pwned)"),  # make turns $$ into $: the shell would see $(touch pwned)
    ("$(touch pwned)", ""),  # make reads $(...) as a variable (none of that name): empty, `evaluate` refuses it
    ("`touch pwned`", "`touch pwned`"),
])
def test_a_device_value_is_never_executed(scratch, device, received):
    """DEVICE is passed to `evaluate` as one word; no part of it runs as a command, not even under
    `make -n` (which does run the lines that call $(MAKE))."""
    lines = _dry_run(scratch, "paper", "PROFILE=smoke", f"DEVICE={device}", "JOBS=2")
    assert not (scratch / "pwned").exists()
    args = _evaluate_args(lines)
    assert args[args.index("--device") + 1] == received
    assert args[-2:] == ["--jobs", "2"]
    # and run for real (the Python make calls just records its arguments): still nothing executed
    log = scratch / "calls.log"
    fake = scratch / "fake-python"
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {log}\necho >> {log}\n')
    fake.chmod(0o755)
    _make(scratch, "evaluations", "PROFILE=smoke", f"DEVICE={device}", py=str(fake))
    assert not (scratch / "pwned").exists()
    assert "|--device|" in log.read_text()


# --------------------------------------------------------------------------- paths with spaces, one-line stops
@pytest.fixture
def spaced(tmp_path) -> Path:
    """The scratch copy in a folder whose path holds a space."""
    folder = tmp_path / "my checkout"
    folder.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, folder / name)
    (folder / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    (folder / "notebooks").symlink_to(REPO / "notebooks", target_is_directory=True)
    (folder / "installed").write_text("")
    return folder


def _make_spaced(folder: Path, *args: str, py: str) -> subprocess.CompletedProcess:
    """As :func:`_make`, with the stamp named relative to the folder (make cannot name a target whose path
    holds a space; the Makefile's own stamp, .venv/.installed, is relative too)."""
    base = {k: v for k, v in os.environ.items() if k not in _CALLER}
    return subprocess.run(["make", "--no-print-directory", f"PY={py}", "STAMP=installed", *args],
                          cwd=folder, env=base, capture_output=True, text=True, timeout=60)


def _recorder(folder: Path, body: str = "") -> tuple[Path, Path]:
    log = folder.parent / "calls.log"
    fake = folder.parent / "fake-python"
    fake.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$CCKL_FIGURES" "$*" >> "{log}"\n{body}')
    fake.chmod(0o755)
    return fake, log


def test_report_works_in_a_checkout_whose_path_holds_a_space(spaced):
    fake, log = _recorder(spaced)
    out = _make_spaced(spaced, "report", "PROFILE=smoke", py=str(fake))
    assert out.returncode == 0, out.stderr
    figures, args = log.read_text().splitlines()[0].split("|")
    assert figures == f"{spaced}/figures" and args == "-m cckl_core report --profile smoke --notebooks build/smoke"


def test_a_bundle_whose_name_holds_a_space_is_found(spaced):
    fake, log = _recorder(spaced)
    bundle = spaced / "gpu results.tar.gz"
    bundle.write_bytes(b"")
    out = _make_spaced(spaced, "evaluations", "PROFILE=smoke", f"BUNDLE={bundle}", py=str(fake))
    assert out.returncode == 0 and "no such file" not in out.stderr, out.stderr
    assert f"-m cckl_core unbundle --profile smoke {bundle}" in log.read_text()


def test_render_in_a_checkout_whose_path_holds_a_space_stops_with_renders_status(spaced):
    """`make render` runs `cckl render` once (figures under the checkout, notebooks into build/<profile>/) and
    stops with its status; the one line it prints on a missing result is all make shows."""
    body = 'echo "error: 04_appendix_c_table: ResultsMissing: profile \'smoke\' has no results" >&2\nexit 2\n'
    fake, log = _recorder(spaced, body)
    out = _make_spaced(spaced, "render", "PROFILE=smoke", py=str(fake))
    assert out.returncode != 0 and "Traceback" not in out.stdout + out.stderr
    assert "ResultsMissing: profile 'smoke' has no results" in out.stderr
    figures, args = log.read_text().splitlines()[0].split("|")
    assert figures == f"{spaced}/figures" and args == f"-m cckl_core render --profile smoke --out {spaced}/build/smoke"
