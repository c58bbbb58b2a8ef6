"""Shared test set-up: one torch thread per test process (``make test`` runs two pytest
workers on two cores; oversubscribed threads make tiny ops many times slower), and the
helpers that give a test a finished smoke run of its own."""
import os
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("CCKL_THREADS", "1")))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Restore torch's thread count after every test: a CLI call (`train`, `evaluate`) sets it from
    $CCKL_THREADS, and a test that unsets that variable would leave the worker at every core, which
    changes the floating-point results of the tests that run after it in the same process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def train_smoke_once(tmp_path_factory, run: str) -> Path:
    """Train the smoke profile's run ``run`` into a fresh root (``<root>/artifacts``, ``<root>/data``); return the root."""
    from cckl_core import runs

    root = tmp_path_factory.mktemp(run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CCKL_ARTIFACTS", str(root / "artifacts"))
        mp.setenv("CCKL_DATA_ROOT", str(root / "data"))
        runs.get_or_train("smoke", run, device="cpu", progress=False)
    return root


def private_copy(root: Path, tmp_path: Path, monkeypatch) -> None:
    """Point the cache at a copy of ``root``'s artifacts (the test may damage it), and at its data."""
    shutil.copytree(root / "artifacts", tmp_path / "artifacts")
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("CCKL_DATA_ROOT", str(root / "data"))
