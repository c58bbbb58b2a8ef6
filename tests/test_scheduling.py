"""How `make paper` and `launch --executor local` lay jobs out (the one local scheduler,
`cckl_core.schedule`): jobs side by side and threads each (`devices.cpu_job_layout`, the `jobs`
command, GPU slots shared by memory), the largest job first, and what is left to run read from the
run cache."""
import pytest

from cckl_core import devices, evaluations, plan, profiles, runs, schedule
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
    with pytest.raises(ValueError, match=r"jobs must be in \[1, "):
        devices.cpu_job_layout(3, 0)


def test_jobs_command(capsys, monkeypatch):
    monkeypatch.setattr(devices, "available_cpus", lambda: 4)
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == "cpu: up to 4 runs side by side, 1 torch thread(s) each"
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "1"]) == 0
    assert capsys.readouterr().out.strip() == "cpu: up to 1 runs side by side, 4 torch thread(s) each"
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--jobs must be >= 1, got 0" in err[0]  # as evaluate
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu", "--jobs", "17"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "jobs must be in [1, 16]" in err[0]
    monkeypatch.setenv("CCKL_THREADS", "two")
    assert cli_main(["jobs", "--profile", "smoke", "--device", "cpu"]) == 2
    assert "CCKL_THREADS='two'" in capsys.readouterr().err


def test_flop_costs_follow_the_objective_and_the_width():
    """A TRADES step costs more than a PGD-AT step of the same attack steps, which costs k + 1
    standard steps; conv FLOPs grow with the square of the width (VGG13 w0.5 vs w0.25: 4x,
    give or take the classifier)."""
    base = {"model": "vgg13", "width": 0.25, "batch_norm": True, "attack_steps": 5, "dataset": "cifar10", "lr": 0.1}

    def cfg(**kw):
        return profiles.run_config("f", "test", {**base, **kw})

    step = {o: plan.flop_costs(cfg(objective=o))["step"] for o in ("standard", "pgd_at", "trades")}
    assert step["pgd_at"] == pytest.approx(6 * step["standard"])
    assert step["trades"] > step["pgd_at"]
    wide = plan.flop_costs(cfg(width=0.5, objective="standard"))["fwd"]
    narrow = plan.flop_costs(cfg(objective="standard"))["fwd"]
    assert 3.5 < wide / narrow < 4.1


def test_the_largest_job_starts_first():
    """With one place free at a time, the scheduler starts quick's runs in `plan.by_size` order (counted
    FLOPs, what it sizes jobs by without a timed plan): the resnet32 stand-in (138 MFLOP, TRADES)
    first; a run with the same model and data but 15 standard epochs after its 5-epoch TRADES twin."""
    quick = profiles.load("quick")
    order = plan.by_size(quick)
    assert sorted(order) == sorted(quick.runs)
    assert order[0] == "t1_resnet32_standin"
    assert order.index("resnet20_trades") < order.index("resnet20_standard")
    jobs = schedule.plan_jobs(quick, quick.configs(None, [0]), "cpu", 1, timed=False, out=print)  # one seed each
    slot = schedule.Slot("cpu", 1)
    started = []
    queue = list(jobs)
    while queue:
        job, where = schedule.next_job(queue, [slot])
        assert where is slot
        started.append(job.cfg.name)
        queue.remove(job)
        assert schedule.next_job(queue, [schedule.Slot("cpu", 1, running=[job])]) is None  # no free place
    assert started == order


def test_gpu_jobs_share_a_card_by_memory():
    gib = 2 ** 30
    slot = schedule.Slot("cuda:0", 4, memory=10 * gib)
    jobs = [schedule.Job(None, size=s, memory=m * gib) for s, m in ((3, 6), (2, 5), (1, 3))]
    first, _ = schedule.next_job(jobs, [slot])
    assert first is jobs[0]
    slot.running.append(first)
    second, _ = schedule.next_job(jobs[1:], [slot])
    assert second is jobs[2]  # 5 GiB do not fit beside 6 of 10; the 3 GiB job does
    huge = schedule.Job(None, size=9, memory=50 * gib)
    assert schedule.fits(huge, schedule.Slot("cuda:1", 4, memory=10 * gib))  # alone on a card it always starts
    assert not schedule.fits(huge, slot)
    # two cards: the emptiest one takes the next job
    cards = [schedule.Slot("cuda:0", 2, 10 * gib, running=[first]), schedule.Slot("cuda:1", 2, 10 * gib)]
    assert schedule.next_job([jobs[1]], cards)[1] is cards[1]


def test_gpu_slots(monkeypatch):
    import torch

    class Props:
        total_memory = 80 * 2 ** 30

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(devices, "available_cpus", lambda: 16)
    slots, threads = schedule.gpu_slots()
    assert [(s.device, s.capacity) for s in slots] == [("cuda:0", 8), ("cuda:1", 8)] and threads == 1
    assert slots[0].memory == pytest.approx(schedule.GPU_MEMORY_SHARE * 80 * 2 ** 30)
    slots, threads = schedule.gpu_slots(jobs=3)
    assert [s.capacity for s in slots] == [3, 3] and threads == 16 // 6


def test_makespan_simulates_the_rule():
    """Jobs of 4, 3, 2 and 1 s, two at a time, largest first: 4 and 3 start; 2 starts at 3 s, 1 at
    4 s; all end at 5 s (the ideal 10 / 2)."""
    jobs = [schedule.Job(None, size=t, seconds=t) for t in (1, 3, 2, 4)]
    assert schedule.makespan(jobs, [schedule.Slot("cpu", 2)]) == pytest.approx(5.0)
    assert schedule.makespan(jobs, [schedule.Slot("cpu", 1)]) == pytest.approx(10.0)


def test_what_is_left_to_run_is_read_from_the_cache(smoke_cache, monkeypatch):
    smoke = profiles.load("smoke")
    cifar100 = smoke.run("resnet20_standard_cifar100")  # optional, its data missing here: a note, no worker
    todo, notes = schedule.pending(smoke, smoke.configs())
    assert cifar100.optional and todo == [] and notes == [f"{cifar100.label}: optional, skipped: its data set cifar100 "
                                                          "cannot be had here"]
    finished = [c for c in smoke.configs() if c != cifar100]
    monkeypatch.setattr(schedule, "_Running", lambda *a, **k: pytest.fail("started a worker with nothing to do"))
    lines = []
    assert schedule.run(smoke, finished, device="cpu", out=lines.append) == []
    assert lines == ["[cckl] smoke: every run and evaluation asked for is in the cache"]
    # an evaluation missing: that run is to run again; missing with the weights removed: a note instead
    trades, table2 = smoke.run("resnet20_trades"), smoke.run("vgg13_trades")
    for cfg, name in ((trades, "fig5"), (table2, "table2")):
        s = evaluations.settings(smoke, name)
        (runs.path_of(cfg) / "evaluations" / f"{name}-{evaluations.settings_key(s)}.json").unlink()
    runs.remove_weights(runs.path_of(table2))
    todo, notes = schedule.pending(smoke, finished)
    assert todo == [trades]
    assert len(notes) == 1 and "smoke/vgg13_trades (seed 0): evaluations table2 missing" in notes[0]
    # another sampling seed: every run with evaluations is to run (but the one without weights)
    assert schedule.pending(smoke, finished, sample_seed=1)[0] == [c for c in finished
                                                                   if evaluations.needed(smoke, c.name) and c != table2]
