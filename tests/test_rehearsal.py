"""The rehearsal of the `gpu` profile: its exact runs (resnet32x10 in bf16 included) trained,
evaluated, bundled, unpacked into a fresh cache and rendered on the CPU at a few images, so that a
crash, a shape error or a missing file cannot waste a GPU session."""
import pytest

from cckl_core import profiles
from cckl_core.__main__ import main as cli_main


def test_the_rehearsal_profile_keeps_the_runs_and_shrinks_the_sizes():
    gpu, rehearsal = profiles.load("gpu"), profiles.load("gpu-rehearsal")
    assert list(rehearsal.runs) == list(gpu.runs) and rehearsal.roles == gpu.roles
    for name, cfg in rehearsal.runs.items():
        real = gpu.runs[name]
        assert (cfg.model, cfg.width, cfg.objective, cfg.precision, cfg.batch_norm) == \
            (real.model, real.width, real.objective, real.precision, real.batch_norm)
        assert cfg.n_train // cfg.batch_size * cfg.epochs == 2 and cfg.dataset == "synthetic"
    assert rehearsal.runs["resnet32x10_trades"].precision == "bf16"


@pytest.mark.slow
def test_the_gpu_profile_rehearses_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CCKL_THREADS", "1")
    assert cli_main(["rehearse", "--profile", "gpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 runs trained and evaluated" in out and "passed" in out
    assert (tmp_path / "figures" / "gpu-rehearsal" / "index.html").exists()
    assert (tmp_path / "figures" / "gpu-rehearsal" / "table1_capacity.png").exists()
    assert (tmp_path / "bundle.tar.gz").exists()
