"""The plan: FLOP costs by objective and width, the estimate printed per run, the profile's sizing and the
timed ratio to it."""
import dataclasses
from types import MappingProxyType

import pytest

from cckl_core import plan as plan_mod
from cckl_core import profiles
from cckl_core.plan import plan, print_sizing

SMOKE = profiles.load("smoke")


def test_flop_costs_follow_the_objective_and_the_width():
    """A TRADES step costs more than a PGD-AT step of the same attack steps, which costs k + 1
    standard steps; conv FLOPs grow with the square of the width (VGG13 w0.5 vs w0.25: 4x,
    give or take the classifier)."""
    base = {"model": "vgg13", "width": 0.25, "batch_norm": True, "attack_steps": 5, "dataset": "cifar10", "lr": 0.1}

    def cfg(**kw):
        return profiles.run_config("f", "test", {**base, **kw})

    step = {o: plan_mod.flop_costs(cfg(objective=o))["step"] for o in ("standard", "pgd_at", "trades")}
    assert step["pgd_at"] == pytest.approx(6 * step["standard"])
    assert step["trades"] > step["pgd_at"]
    wide = plan_mod.flop_costs(cfg(width=0.5, objective="standard"))["fwd"]
    narrow = plan_mod.flop_costs(cfg(objective="standard"))["fwd"]
    assert 3.5 < wide / narrow < 4.1


def test_plan_prints_an_estimate_per_run(capsys):
    rows = plan(SMOKE, "cpu", probe=4, runs_=["vgg13_standard", "resnet20_trades"])
    out = capsys.readouterr().out
    assert [r["run"] for r in rows] == ["vgg13_standard", "resnet20_trades"]
    assert all(r["train"] > 0 and r["total"] >= r["train"] for r in rows)
    assert rows[1]["evaluations"] > rows[0]["evaluations"] > 0  # table1 + fig5 cost more than theorem
    assert "total" in out and "resnet20_trades" in out


def test_plan_prints_the_profiles_sizing_and_the_timed_ratio_to_it(capsys):
    sizing = profiles.Sizing("a test card", MappingProxyType({"vgg13_standard": (3.0, 1.0)}), overhead_s=2, margin=2)
    sized = dataclasses.replace(SMOKE, sizing=sizing)
    rows = plan(sized, "cpu", probe=4, runs_=["vgg13_standard"])
    out = capsys.readouterr().out
    assert "sizing of profile smoke" in out and "for a test card" in out
    assert "expected 6 s = 0.1 min" in out and "with the 2x margin on the throughputs: 10 s" in out
    assert "not sized: " not in out and "resnet20_trades" not in out  # the sizing follows the runs planned
    assert f"timed here / sized for a test card: {rows[0]['total'] / 4:.2f}x over the 1 sized run(s)" in out
    print_sizing(sized, runs_=["vgg13_standard", "resnet20_trades"])
    out = capsys.readouterr().out
    assert "not sized: resnet20_trades" in out and "expected 6 s" in out
