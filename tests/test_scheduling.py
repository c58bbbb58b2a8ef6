"""How `make paper` and `launch --executor local` lay jobs out: jobs side by side and threads each
(`devices.cpu_job_layout`, the `jobs` command), and runs ordered largest first (`plan.by_size`, `deps`)."""
import pytest

from cckl_core import devices, plan, profiles
from cckl_core.__main__ import main as cli_main


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("CCKL_THREADS", raising=False)
    monkeypatch.delenv("CCKL_DEVICE", raising=False)


@pytest.mark.parametrize("cpus, tasks, jobs, threads_env, expected", [
    (2, 10, None, None, (2, 1)),   # the 2-core machine: two one-thread jobs
    (8, 3, None, None, (3, 2)),    # fewer tasks than cores: the spare cores become threads
    (16, 10, None, None, (10, 1)),  # 16 // 10 = 1 thread each
    (8, 10, None, "4", (2, 4)),    # CCKL_THREADS fixes the threads, the jobs fill the cores
    (8, 10, None, "16", (1, 16)),  # more threads than cores: one job
    (8, 10, 1, None, (1, 8)),      # one job gets every core
    (8, 10, 3, "2", (3, 2)),       # both fixed: taken as given
    (1, 10, None, None, (1, 1)),
])
def test_cpu_job_layout(monkeypatch, cpus, tasks, jobs, threads_env, expected):
    monkeypatch.setattr(devices, "available_cpus", lambda: cpus)
    if threads_env is not None:
        monkeypatch.setenv("CCKL_THREADS", threads_env)
    assert devices.cpu_job_layout(tasks, jobs) == expected


def test_cpu_job_layout_refuses_no_jobs():
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        devices.cpu_job_layout(3, 0)


def test_jobs_command(capsys, monkeypatch):
    monkeypatch.setattr(devices, "available_cpus", lambda: 4)
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.split() == ["4", "1"]
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "1"]) == 0
    assert capsys.readouterr().out.split() == ["1", "4"]
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--jobs must be >= 1" in err[0]
    monkeypatch.setenv("CCKL_THREADS", "two")
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu"]) == 2
    assert "CCKL_THREADS='two'" in capsys.readouterr().err


def test_flop_costs_follow_the_objective_and_the_width():
    """A TRADES step costs more than a PGD-AT step of the same attack steps, which costs k + 1
    standard steps; conv FLOPs grow with the square of the width (VGG13 w0.5 vs w0.25: 4x,
    give or take the classifier)."""
    base = {**profiles.RUN_KEYS, "model": "vgg13", "width": 0.25, "batch_norm": True, "attack_steps": 5,
            "dataset": "cifar10"}
    step = {o: plan.flop_costs({**base, "objective": o})["step"] for o in ("standard", "pgd_at", "trades")}
    assert step["pgd_at"] == pytest.approx(6 * step["standard"])
    assert step["trades"] > step["pgd_at"]
    wide = plan.flop_costs({**base, "width": 0.5, "objective": "standard"})["fwd"]
    narrow = plan.flop_costs({**base, "objective": "standard"})["fwd"]
    assert 3.5 < wide / narrow < 4.1


def test_deps_lists_runs_largest_first(capsys):
    quick = profiles.load("quick")
    order = plan.by_size(quick)
    assert sorted(order) == sorted(quick.runs)
    # the resnet32 stand-in (138 MFLOP, TRADES) outweighs every other quick run; a run with the
    # same model and data but 15 standard epochs weighs less than its 5-epoch TRADES twin
    assert order[0] == "t1_resnet32_standin"
    assert order.index("resnet20_trades") < order.index("resnet20_standard")
    assert cli_main(["deps", "--profile", "quick"]) == 0
    runs_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("RUNS_quick := "))
    assert runs_line.split(" := ")[1].split() == order
