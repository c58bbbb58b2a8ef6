"""cckl_core.render_state: a render is up to date exactly while nothing it reads or wrote has changed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cckl_core import render_state

REPO = Path(__file__).resolve().parent.parent
NBS = ["03_capacity_study", "04_appendix_c_table"]


@pytest.fixture
def rendered(tmp_path, monkeypatch):
    """A profile 'smoke' rendered (as far as the state can tell) into tmp_path: a cache, data, figures and two
    executed notebooks, with the state recorded. Returns (out, figures root)."""
    for var in [v for v in os.environ if v.startswith("CCKL_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CCKL_CIFAR10_ZIP", str(tmp_path / "absent.zip"))
    (tmp_path / "artifacts" / "smoke" / "run-abc").mkdir(parents=True)
    (tmp_path / "artifacts" / "smoke" / "run-abc" / "history.json").write_text("[]")
    (tmp_path / "data").mkdir()
    figures, out = tmp_path / "figures", tmp_path / "out"
    (figures / "smoke").mkdir(parents=True)
    (figures / "smoke" / "fig.png").write_bytes(b"png")
    out.mkdir()
    for nb in NBS:
        (out / f"{nb}.ipynb").write_text("{}")
    render_state.record(render_state.keys(NBS, "smoke", figures), "smoke", out, figures)
    return out, figures


def _bump(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_recorded_render_is_up_to_date(rendered):
    out, figures = rendered
    assert render_state.up_to_date("smoke", out, figures) == NBS
    assert render_state.stale(NBS, "smoke", out, figures) == []
    assert json.loads((out / render_state.STATE_FILE).read_text())["profile"] == "smoke"


def test_a_changed_cache_file_data_or_setting_makes_every_notebook_stale(rendered, tmp_path, monkeypatch):
    out, figures = rendered
    history = tmp_path / "artifacts" / "smoke" / "run-abc" / "history.json"
    before = history.stat()
    _bump(history)
    assert render_state.stale(NBS, "smoke", out, figures) == NBS
    os.utime(history, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert render_state.stale(NBS, "smoke", out, figures) == []
    (tmp_path / "artifacts" / "smoke" / "run-abc" / ".lock").write_text("")  # hidden: not an input
    assert render_state.stale(NBS, "smoke", out, figures) == []
    (tmp_path / "data" / "cifar-10-batches-py").mkdir()
    (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").write_bytes(b"x")
    assert render_state.stale(NBS, "smoke", out, figures) == NBS
    shutil.rmtree(tmp_path / "data" / "cifar-10-batches-py")
    monkeypatch.setenv("CCKL_THREADS", "1")
    assert render_state.stale(NBS, "smoke", out, figures) == NBS
    monkeypatch.delenv("CCKL_THREADS")
    assert render_state.stale(NBS, "smoke", out, figures) == []
    assert render_state.stale(NBS, "quick", out, figures) == NBS  # another profile's render: not this one


def test_a_touched_output_makes_its_notebook_or_every_one_stale(rendered):
    out, figures = rendered
    _bump(out / "04_appendix_c_table.ipynb")
    assert render_state.stale(NBS, "smoke", out, figures) == ["04_appendix_c_table"]
    assert render_state.up_to_date("smoke", out, figures) is None
    render_state.record(render_state.keys(NBS, "smoke", figures), "smoke", out, figures)
    (figures / "smoke" / "fig.png").unlink()  # which notebook wrote it is not known: all of them
    assert render_state.stale(NBS, "smoke", out, figures) == NBS


def test_changed_notes_render_the_report_alone(rendered):
    """NOTES.md is a person's, shown by the report: a change is not up to date, yet no notebook is stale."""
    out, figures = rendered
    (figures / "smoke" / "NOTES.md").write_text("**Re-rendered.**\n")
    assert render_state.up_to_date("smoke", out, figures) is None
    assert render_state.stale(NBS, "smoke", out, figures) == []
    render_state.record(render_state.keys(NBS, "smoke", figures), "smoke", out, figures)
    assert render_state.up_to_date("smoke", out, figures) == NBS


def test_a_changed_notebook_source_makes_that_notebook_stale(rendered, tmp_path, monkeypatch):
    out, figures = rendered
    project = tmp_path / "project"
    shutil.copytree(REPO / "notebooks", project / "notebooks")
    monkeypatch.setattr(render_state, "project_root", lambda: project)
    assert render_state.stale(NBS, "smoke", out, figures) == []  # the same bytes: the same key
    source = project / "notebooks" / "03_capacity_study.ipynb"
    source.write_text(source.read_text().replace("seed = 0", "seed = 1"))
    assert render_state.stale(NBS, "smoke", out, figures) == ["03_capacity_study"]


def test_a_state_that_is_absent_or_unreadable_is_not_up_to_date(rendered):
    out, figures = rendered
    (out / render_state.STATE_FILE).write_text("{not json")
    assert render_state.up_to_date("smoke", out, figures) is None
    assert render_state.stale(NBS, "smoke", out, figures) == NBS
    render_state.forget(out)
    assert not (out / render_state.STATE_FILE).exists() and render_state.load(out) == {}


def test_the_package_digest_sees_every_byte_but_not_the_bytecode(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "claims.toml").write_text("[c]\n")
    first = render_state.package_files(tmp_path / "pkg")
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert render_state.package_files(tmp_path / "pkg") == first
    assert [p for p, _ in first] == ["a.py", "claims.toml"]
    (tmp_path / "pkg" / "claims.toml").write_text("[d]\n")
    assert render_state.package_files(tmp_path / "pkg") != first
    names = [p for p, _ in render_state.package_files()]
    assert {"cli.py", "paper/claims.toml", "profiles/quick.toml", "render_state.py"} <= set(names)


def test_cckl_render_of_an_up_to_date_profile_says_so_without_importing_torch(rendered):
    out, figures = rendered
    code = ("import sys; from cckl_core.cli import main; "
            f"code = main(['render', '--profile', 'smoke', '--out', {str(out)!r}, '--root', {str(figures)!r}]); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "smoke: up to date, nothing rendered" in done.stdout and "torch imported: False" in done.stdout
