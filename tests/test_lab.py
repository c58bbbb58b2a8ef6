"""The lab leaves git clean, in a scratch repository holding this checkout's notebooks, Makefile and
.gitattributes: ``make notebook-filter`` (what ``make env`` and ``make lab`` run) makes git see a notebook
without what a run adds (outputs, execution counts, the Python version that ran it), whatever saved it;
``make lab``'s pre-save hook (:mod:`cckl_core.lab`) saves it that way, so ``git status`` stays clean; an edit
of a cell's source still shows."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cckl_core import lab as cckl_lab

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
nbformat = pytest.importorskip("nbformat")
pytestmark = [pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="no make or git"),
              pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import nbstripout"]).returncode != 0,
                                 reason="nbstripout is not installed (requirements.lock has it)")]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", f"PY={sys.executable}", f"STAMP={folder / 'installed'}",
                           *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """A git repository with this checkout's Makefile, .gitattributes and notebooks committed, the filter
    configured by ``make notebook-filter``."""
    repo = tmp_path_factory.mktemp("lab")
    for name in ("Makefile", "pyproject.toml", "requirements.lock", ".gitattributes", *NOTEBOOKS):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    (repo / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    (repo / ".gitignore").write_text("cckl_core\ninstalled\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notebooks as committed")
    (repo / "installed").write_text("")
    out = _make(repo, "notebook-filter")
    assert out.returncode == 0 and "filter configured" in out.stdout, out.stdout + out.stderr
    return repo


def _run_as_jupyter_would(path: Path) -> None:
    """Write ``path`` back as JupyterLab saves a run notebook: outputs, execution counts, timing metadata,
    the running kernel's language info."""
    nb = nbformat.read(path, as_version=4)
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"ran {n}\n"),
                        nbformat.v4.new_output("execute_result", {"text/plain": "42"}, execution_count=n + 1)]
        cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
        cell.metadata["scrolled"] = True
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python",
                                    "codemirror_mode": {"name": "ipython", "version": 3}}
    nbformat.write(nb, path)


def test_the_filter_is_configured_as_make_env_does(lab):
    clean = _git(lab, "config", "filter.nbstripout.clean").strip()
    assert clean.startswith(f'"{sys.executable}" -m nbstripout --keep-id')
    assert _git(lab, "config", "filter.nbstripout.required").strip() == "true"
    assert _git(lab, "check-attr", "filter", NOTEBOOKS[0]).strip().endswith("filter: nbstripout")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_committed_notebooks_are_what_the_filter_makes_of_them(lab, notebook):
    """Else every save would show as a change: commit a notebook through the filter
    (`make notebook-filter`, then `git add --renormalize notebooks/`)."""
    cleaned = subprocess.run(_git(lab, "config", "filter.nbstripout.clean").strip(), shell=True, cwd=lab,
                             input=(lab / notebook).read_bytes(), capture_output=True, check=True).stdout
    assert cleaned == (REPO / notebook).read_bytes(), f"{notebook} is not committed in stripped form"


@pytest.fixture
def restored(lab):
    """The notebooks of ``lab`` put back as committed after the test (and git clean again)."""
    yield lab
    _git(lab, "checkout", "--", "notebooks")
    _git(lab, "reset", "-q")
    assert _git(lab, "status", "--porcelain") == ""


@pytest.mark.parametrize("notebook", NOTEBOOKS[:1])
def test_any_editor_saving_a_run_notebook_shows_git_no_output_and_a_source_edit_shows(restored, notebook):
    """The filter alone, whatever saved the notebook: outputs never reach a diff or the index; `git status`
    lists the file (its size changed) until `git add` finds nothing to stage."""
    lab, path = restored, restored / notebook
    committed = path.read_bytes()
    _run_as_jupyter_would(path)
    assert any(c.get("outputs") for c in json.loads(path.read_text())["cells"]) and path.read_bytes() != committed
    assert _git(lab, "diff") == ""
    _git(lab, "add", notebook)
    assert _git(lab, "status", "--porcelain") == ""  # nothing staged: the index holds the committed notebook
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\nAn edit."
    nbformat.write(nb, path)
    assert _git(lab, "status", "--porcelain") == f" M {notebook}\n"
    diff = _git(lab, "diff")
    added = [x for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++")]
    assert added[-1] == '+    "An edit."' and len(added) == 2 and "ran 0" not in diff and "3.11.7" not in diff, diff


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_make_lab_saves_a_run_notebook_as_committed_and_git_status_stays_clean(restored, notebook):
    """JupyterLab's pre-save hook (what `make lab` installs) writes what the filter would commit."""
    lab, path = restored, restored / notebook
    _run_as_jupyter_would(path)
    model = {"type": "notebook", "content": json.loads(path.read_text())}
    manager = SimpleNamespace(root_dir=str(lab))
    cckl_lab.strip_before_save(model=model, path=f"/{notebook}", contents_manager=manager)
    nbformat.write(nbformat.from_dict(model["content"]), path)  # as Jupyter's FileContentsManager writes
    assert path.read_bytes() == (REPO / notebook).read_bytes()
    assert _git(lab, "status", "--porcelain") == ""
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\nAn edit."
    model = {"type": "notebook", "content": json.loads(nbformat.writes(nb))}
    cckl_lab.strip_before_save(model=model, path=notebook, contents_manager=manager)
    assert "".join(model["content"]["cells"][0]["source"]).endswith("An edit.")  # the edit is saved, and shows
    other = {"type": "notebook", "content": json.loads(nbformat.writes(nb)) | {"metadata": {"language_info": {}}}}
    cckl_lab.strip_before_save(model=other, path="build/copy.ipynb", contents_manager=manager)
    assert other["content"]["metadata"] == {"language_info": {}}  # a notebook git does not filter is left alone


def test_make_lab_starts_jupyterlab_with_the_hook(tmp_path):
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    (tmp_path / "installed").write_text("")
    out = _make(tmp_path, "-n", "lab")
    assert out.returncode == 0, out.stderr
    (line,) = [x for x in out.stdout.replace("\\\n", " ").splitlines() if "jupyter lab" in x]
    assert cckl_lab.SERVER_OPTION in line.split()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_notebooks_name_the_kernel_make_env_installs(notebook):
    """JupyterLab opens them without asking for a kernel, and saves the same kernelspec back."""
    spec = json.loads((REPO / notebook).read_text())["metadata"].get("kernelspec")
    assert spec == {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}, spec
    kernelspec = pytest.importorskip("jupyter_client.kernelspec")
    installed = kernelspec.KernelSpecManager().get_kernel_spec("python3")
    assert (installed.display_name, installed.language) == (spec["display_name"], spec["language"])


def test_outside_a_git_checkout_there_is_nothing_to_configure(tmp_path):
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "cckl_core").symlink_to(REPO / "cckl_core", target_is_directory=True)
    (tmp_path / "installed").write_text("")
    out = _make(tmp_path, "notebook-filter")
    assert out.returncode == 0 and "not a git checkout" in out.stdout, out.stdout + out.stderr
