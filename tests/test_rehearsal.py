"""The rehearsal of the `gpu` profile: its exact runs (resnet32x10 in bf16 included) trained,
evaluated, bundled, unpacked into a fresh cache and rendered on the CPU at a few images, so that a
crash, a shape error or a missing file cannot waste a GPU session. The test rehearses the float32
stand-in of every run (narrow models of the same families, the same runs, roles and evaluations);
``make rehearse`` rehearses the exact models."""
import os

import pytest

from cckl_core import models, profiles, rehearsal


def test_the_rehearsal_profile_keeps_the_runs_and_shrinks_the_sizes():
    gpu, rehearsal_ = profiles.load("gpu"), profiles.load("gpu-rehearsal")
    assert list(rehearsal_.runs) == list(gpu.runs) and rehearsal_.roles == gpu.roles
    for name, cfg in rehearsal_.runs.items():
        real = gpu.runs[name]
        assert (cfg.model, cfg.width, cfg.objective, cfg.precision, cfg.batch_norm) == \
            (real.model, real.width, real.objective, real.precision, real.batch_norm)
        assert cfg.n_train // cfg.batch_size * cfg.epochs == 2 and cfg.dataset == "synthetic"
    assert rehearsal_.runs["resnet32x10_trades"].precision == "bf16"


def test_the_stand_in_keeps_every_run_shape_with_narrow_float32_models():
    full = profiles.load("gpu-rehearsal")
    small = rehearsal.stand_in_profile(full)
    assert small.name == full.name and list(small.runs) == list(full.runs) and small.roles == full.roles
    assert small.evaluation == full.evaluation and small.seeds == full.seeds
    for name, cfg in small.runs.items():
        real = full.runs[name]
        assert cfg.precision == "fp32" and cfg.width == rehearsal.STAND_IN_WIDTH
        assert cfg.model == {"resnet20x1": "resnet20", "resnet32x10": "resnet32"}.get(real.model, real.model)
        same = ("objective", "batch_norm", "dataset", "n_train", "n_test", "batch_size", "epochs", "attack_steps", "seed")
        assert all(getattr(cfg, k) == getattr(real, k) for k in same), name
    big = models.count_parameters(models.build(full.runs["resnet32x10_trades"].model))
    tiny = models.count_parameters(models.build(small.runs["resnet32x10_trades"].model, width=rehearsal.STAND_IN_WIDTH))
    assert big > 40_000_000 and tiny < big / 1000  # the 46M-parameter model is what made the test take minutes
    with pytest.raises(ValueError, match="rehearsal profile"):
        rehearsal.stand_in_profile(profiles.load("gpu"))


def test_workers_of_a_stand_in_rehearsal_load_the_stand_in_by_name(monkeypatch):
    monkeypatch.setenv(rehearsal.STAND_IN_ENV, "1")
    assert profiles.load("gpu-rehearsal") == rehearsal.stand_in_profile(profiles.rehearsal(profiles.load("gpu")))
    assert profiles.load("gpu").runs["resnet32x10_trades"].precision == "bf16"  # only the rehearsal changes
    monkeypatch.delenv(rehearsal.STAND_IN_ENV)
    assert profiles.load("gpu-rehearsal").runs["resnet32x10_trades"].model == "resnet32x10"


@pytest.mark.slow
def test_the_gpu_profile_rehearses_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CCKL_THREADS", "1")
    for var in ("CCKL_ARTIFACTS", "CCKL_DATA_ROOT", "CCKL_FIGURES", rehearsal.STAND_IN_ENV):
        monkeypatch.delenv(var, raising=False)  # the rehearsal sets them: restored after the test
    assert rehearsal.main(profiles.load("gpu"), str(tmp_path), stand_in=True) == 0
    out = capsys.readouterr().out
    assert "5 runs trained and evaluated" in out and "passed" in out
    assert (tmp_path / "figures" / "gpu-rehearsal" / "index.html").exists()
    assert (tmp_path / "figures" / "gpu-rehearsal" / "table1_capacity.png").exists()
    assert (tmp_path / "bundle.tar.gz").exists()
    assert rehearsal.STAND_IN_ENV not in os.environ
