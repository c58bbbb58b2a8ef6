"""Where the project reads and writes: under the project folder from anywhere inside a checkout (the
notebooks' kernels start in notebooks/), under the working directory for an installed package, never
inside the package itself; an environment variable overrides, and an empty one is a mistake."""
from pathlib import Path

import pytest

from cckl_core import paths

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    for var in ("CCKL_ARTIFACTS", "CCKL_DATA_ROOT", "CCKL_FIGURES", "CCKL_CIFAR10_ZIP"):
        monkeypatch.delenv(var, raising=False)


def test_inside_a_checkout_the_roots_are_the_project_folders(monkeypatch):
    monkeypatch.chdir(REPO / "notebooks")
    assert paths.project_root() == REPO
    assert paths.artifacts_root() == REPO / "artifacts" and paths.data_root() == REPO / "data"
    assert paths.figures_root() == REPO / "build" / "scratch" / "figures"  # by hand: scratch, not the published ones
    assert paths.published_figures() == REPO / "figures" and paths.results_root() == REPO / "results"


def test_elsewhere_the_roots_are_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')  # not this project's
    monkeypatch.chdir(tmp_path)
    assert paths.project_root() == tmp_path.resolve()
    assert paths.artifacts_root() == tmp_path.resolve() / "artifacts"
    assert Path(paths.__file__).parent not in paths.artifacts_root().parents


def test_variables_override_and_an_empty_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "a"))
    assert paths.artifacts_root() == tmp_path / "a"
    monkeypatch.setenv("CCKL_ARTIFACTS", "  ")
    with pytest.raises(paths.PathSettingError, match="CCKL_ARTIFACTS is set but empty"):
        paths.artifacts_root()


@pytest.mark.parametrize("var, root", [("CCKL_ARTIFACTS", paths.artifacts_root), ("CCKL_DATA_ROOT", paths.data_root),
                                       ("CCKL_FIGURES", paths.figures_root), ("CCKL_CIFAR10_ZIP", paths.cifar10_zip)])
def test_an_empty_environment_variable_is_a_mistake_not_the_current_folder(monkeypatch, var, root):
    monkeypatch.setenv(var, "")
    with pytest.raises(paths.PathSettingError, match=f"{var} is set but empty"):
        root()
