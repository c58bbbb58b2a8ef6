"""``make docs`` (:mod:`cckl_core.docs`): the API reference of every public module, the executed notebooks
that ``make paper`` published beside it (only what exists), and one index page whose links all resolve."""
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cckl_core import docs
from cckl_core.paper import NOTEBOOKS

REPO = Path(__file__).resolve().parent.parent


def _published(figures: Path, profile: str, notebooks: list[str]) -> Path:
    """A figures root as `make paper` leaves it: the report, some executed notebooks, a figure (PNG and PDF)."""
    folder = figures / profile
    (folder / "notebooks").mkdir(parents=True)
    for nb in notebooks:
        (folder / "notebooks" / f"{nb}.html").write_text(f'<h1>{nb}</h1><img src="../fig.png">')
    (folder / "index.html").write_text('<h1>report</h1><a href="../README.md">index</a>')
    (folder / "fig.png").write_bytes(b"png")
    (folder / "fig.pdf").write_bytes(b"pdf")
    (figures / "README.md").write_text("# figures")
    return folder


def test_every_public_module_is_listed_with_its_first_paragraph():
    mods = docs.modules()
    assert list(mods)[0] == "cckl_core" and "cckl_core.paper.theorem_check" in mods and "cckl_core.lab" in mods
    assert not [n for n in mods if "._" in n]  # no __main__, no private module
    first = importlib.import_module("cckl_core.plotting").__doc__.strip().split("\n\n")[0]
    assert mods["cckl_core.plotting"] == " ".join(first.split())


def test_what_make_paper_published_is_copied_in_the_papers_order(tmp_path):
    names = list(NOTEBOOKS)
    _published(tmp_path / "figures", "quick", [names[2], names[0]])
    out = tmp_path / "docs" / "figures" / "quick"
    found = docs.published(tmp_path / "figures", "quick", out)
    assert found == [names[0], names[2]]
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {
        "notebooks", f"notebooks/{found[0]}.html", f"notebooks/{found[1]}.html", "index.html", "fig.png"}
    assert (out.parent / "README.md").read_text() == "# figures"  # the report links it


def test_a_profile_not_rendered_yet_is_said_on_the_page(tmp_path):
    out = tmp_path / "docs" / "figures" / "paper"
    out.mkdir(parents=True)
    (out / "stale.html").write_text("from an earlier make docs")
    assert docs.published(tmp_path / "figures", "paper", out) == []
    assert not out.exists()
    page = docs.index_page({"cckl_core": "The package."}, "paper", [], report=False)
    assert "No executed notebooks for profile <code>paper</code>" in page and "make paper PROFILE=paper" in page
    assert 'href="api/cckl_core.html"' in page and "figures/paper" not in page


def test_docstring_markup_is_shown_as_code_on_the_index():
    page = docs.index_page({"cckl_core.x": "Call :func:`analyze` on a ``.tar.gz`` <b>"}, "quick", [], False)
    assert "Call <code>analyze</code> on a <code>.tar.gz</code> &lt;b&gt;" in page


def test_make_docs_writes_pages_whose_links_all_resolve(tmp_path):
    pytest.importorskip("pdoc")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from check_report import broken_links
    finally:
        sys.path.remove(str(REPO / "scripts"))
    _published(tmp_path / "figures", "quick", list(NOTEBOOKS))
    out = tmp_path / "docs"
    assert docs.build(out, "quick", tmp_path / "figures") == list(NOTEBOOKS)
    seen: set[Path] = set()
    assert broken_links(out / "index.html", seen) == []
    reached = {p.relative_to(out).as_posix() for p in seen}
    assert {"api/cckl_core.html", "api/cckl_core/paper/theorem_check.html", "figures/quick/index.html"} <= reached
    assert {f"figures/quick/notebooks/{nb}.html" for nb in NOTEBOOKS} <= reached
    assert "symlog_edges" in (out / "api" / "cckl_core" / "plotting.html").read_text()  # built from the docstrings


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_make_docs_runs_the_docs_module_for_the_profile(tmp_path):
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    (tmp_path / "installed").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PROFILE")}
    out = subprocess.run(["make", "--no-print-directory", "-n", f"PY={sys.executable}", "STAMP=installed", "docs",
                          "PROFILE=smoke"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{sys.executable} -m cckl_core.docs --out build/docs --profile smoke"
