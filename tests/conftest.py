"""Shared test set-up: one torch thread per test process (``make test`` runs two pytest workers on
two cores; oversubscribed threads make tiny ops many times slower), the smoke fixture (every smoke
run and evaluation, trained once), and helpers that give a test a cache of its own."""
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(int(os.environ.get("CCKL_THREADS", "1")))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Restore torch's thread count after every test: a CLI call (`train`, `evaluate`) sets it from
    $CCKL_THREADS, and a test that unsets that variable would leave the worker at every core, which
    changes the floating-point results of the tests that run after it in the same process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_inherited_profile(monkeypatch):
    """A CCKL_PROFILE or CCKL_DEVICE of the calling shell (or of `make nbval`) must not steer a test."""
    monkeypatch.delenv("CCKL_PROFILE", raising=False)
    monkeypatch.delenv("CCKL_DEVICE", raising=False)


@pytest.fixture(scope="session")
def smoke_fixture() -> Path:
    """The folder of the smoke fixture (``artifacts/``, ``data/``): ``$CCKL_TEST_FIXTURE`` (made by
    `make test` before pytest starts) or built here once (``build/test-fixture``)."""
    import fixture
    return fixture.build(Path(os.environ.get("CCKL_TEST_FIXTURE") or REPO / "build" / "test-fixture"))


@pytest.fixture
def smoke_cache(smoke_fixture, tmp_path, monkeypatch) -> Path:
    """A private copy of the smoke fixture's artifacts (the test may change it), as the artifacts root;
    the data root points at the fixture's data. Returns the artifacts root."""
    root = tmp_path / "artifacts"
    shutil.copytree(smoke_fixture / "artifacts", root)
    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(smoke_fixture / "data"))
    return root


def train_smoke_once(tmp_path_factory, run: str) -> Path:
    """Train the smoke profile's run ``run`` into a fresh root (``<root>/artifacts``, ``<root>/data``); return the root."""
    from cckl_core import profiles, trainer

    root = tmp_path_factory.mktemp(run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CCKL_ARTIFACTS", str(root / "artifacts"))
        mp.setenv("CCKL_DATA_ROOT", str(root / "data"))
        trainer.train(profiles.load("smoke").run(run), device="cpu", progress=False)
    return root


def private_copy(root: Path, tmp_path: Path, monkeypatch) -> None:
    """Point the cache at a copy of ``root``'s artifacts (the test may damage it), and at its data."""
    shutil.copytree(root / "artifacts", tmp_path / "artifacts")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(root / "data"))


def run_notebook(name: str, **parameters) -> dict:
    """Execute the code cells of ``notebooks/<name>.ipynb`` in order in this process (no kernel), with
    ``parameters`` replacing its parameters cell as papermill would inject them; returns the notebook's
    globals (``out``: what it rendered)."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    namespace: dict = {"__name__": "__main__"}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        exec(compile("".join(cell["source"]), f"{name} cell {cell.get('id')}", "exec"), namespace)
        if "parameters" in cell["metadata"].get("tags", []):
            namespace.update(parameters)
    plt.close("all")
    return namespace
