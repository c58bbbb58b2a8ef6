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


# --------------------------------------------------------------------------- shared tiny models, configs, checks
def small_cnn(num_classes: int = 5, seed: int = 0) -> torch.nn.Module:
    """A tiny float32 classifier in eval mode: conv 3 -> 4 (3x3, padded), tanh, adaptive average pooling to
    2x2, a linear layer to ``num_classes``; takes (N, 3, H, W) images of any size (seeded by ``seed``)."""
    nn = torch.nn
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, num_classes)).eval()


def flat_linear(in_features: int, num_classes: int, seed: int = 0, scale: float = 1.0) -> torch.nn.Module:
    """A float64 softmax-regression model in eval mode: flatten, then one linear layer (seeded by ``seed``)
    whose weights are multiplied by ``scale``; it has no convolution, so it takes any channel count."""
    nn = torch.nn
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes)).double()
    with torch.no_grad():
        model[1].weight.mul_(scale)
    return model.eval()


#: A run small enough to train in seconds on one CPU thread (synthetic data, a 1/8-width resnet20).
TINY_RUN = dict(dataset="synthetic", n_train=96, n_test=48, fisher_n=8, robust_n=16, model="resnet20", width=0.125,
                objective="standard", epochs=3, milestones=[2], lr=0.05, batch_size=32, attack_steps=2)


def tiny_run(name: str, profile: str = "test", **changes):
    """The checked run config of :data:`TINY_RUN` with ``changes``, as run ``name`` of profile ``profile``."""
    from cckl_core import profiles
    return profiles.run_config(name, profile, {**TINY_RUN, **changes})


def one_line(err: pytest.ExceptionInfo) -> str:
    """The message of the raised error, checked to be one line."""
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def one_line_naming(err: pytest.ExceptionInfo, name: str) -> str:
    """:func:`one_line`, checked to name the argument ``name`` (as a whole word)."""
    import re
    msg = one_line(err)
    assert re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", msg), f"{name!r} not named in: {msg}"
    return msg


def type_error_naming(err: pytest.ExceptionInfo, name: str) -> str:
    """:func:`one_line_naming` of a TypeError that is also a ValueError (callers catching either keep working)."""
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError), type(err.value)
    return one_line_naming(err, name)


# --------------------------------------------------------------------------- one render of the notebooks
#: The four notebooks, in the order `make paper` renders them.
NOTEBOOKS = ["01_theorem_check", "02_fisher_growth", "03_capacity_study", "04_appendix_c_table"]


def render_smoke(root: Path, figures: Path, monkeypatch) -> dict[str, str]:
    """Render the four notebooks' content (:func:`cckl_core.paper.render`, what each notebook's set-up cell
    calls; nbval executes the notebooks themselves in Jupyter) against the artifacts under ``root``, with no
    data root, and save it as the notebooks do; return every table (CSV) written, by file name."""
    from cckl_core import paper

    monkeypatch.setenv("CCKL_ARTIFACTS", str(root))
    monkeypatch.setenv("CCKL_FIGURES", str(figures))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(figures.parent / "no-data-here"))  # rendering reads no data
    figures.mkdir(parents=True, exist_ok=True)
    for nb in NOTEBOOKS:
        result = paper.render(nb, "smoke")
        result.save()
        result.close()
    assert not (figures.parent / "no-data-here").exists()
    return {p.name: p.read_text() for p in sorted((figures / "smoke").glob("*.csv"))}


@pytest.fixture(scope="session")
def smoke_render(smoke_fixture, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The notebooks rendered once (per test process) from a copy of the smoke fixture: (folder holding
    ``artifacts/`` and ``figures1/``, the tables written by file name). Tests copy what they change."""
    base = tmp_path_factory.mktemp("render")
    shutil.copytree(smoke_fixture / "artifacts", base / "artifacts")
    with pytest.MonkeyPatch.context() as mp:
        tables = render_smoke(base / "artifacts", base / "figures1", mp)
    return base, tables


def disk_full_for(monkeypatch, part: str):
    """Make every ``os.fsync`` of a file whose path holds ``part`` fail as on a full disk (ENOSPC); return the
    real ``os.fsync`` (to put back with ``monkeypatch.setattr(os, "fsync", real)``)."""
    import errno
    real_fsync = os.fsync

    def fsync(fd):
        if part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return real_fsync
