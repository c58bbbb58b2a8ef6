"""The one local scheduler (how `make paper` and `launch --executor local` lay jobs out): which job starts
where (largest first, GPU slots shared by memory), the simulated wall time, what is left to run read from
the run cache; and, for real, two CPU workers side by side."""
from dataclasses import replace

import pytest

from cckl_core import devices, evaluations, plan, profiles, runs, schedule

GiB = 2 ** 30


@pytest.fixture(autouse=True)
def _no_thread_setting(monkeypatch):
    monkeypatch.delenv("CCKL_THREADS", raising=False)


def _jobs(sizes_and_memory):
    base = profiles.load("smoke").run("vgg13_standard")
    return [schedule.Job(replace(base, name=f"r{k}"), size, mem * GiB, size) for k, (size, mem) in
            enumerate(sizes_and_memory)]


def test_the_largest_job_that_fits_starts_first_on_the_emptiest_slot():
    jobs = _jobs([(10, 30), (50, 30), (30, 30)])
    slots = [schedule.Slot("cuda:0", 4, 80 * GiB), schedule.Slot("cuda:1", 4, 80 * GiB)]
    job, slot = schedule.next_job(jobs, slots)
    assert job.size == 50 and slot.device == "cuda:0"
    slot.running.append(job)
    job, slot = schedule.next_job([j for j in jobs if j.size != 50], slots)
    assert job.size == 30 and slot.device == "cuda:1"


def test_gpu_memory_decides_how_many_share_a_card():
    slot = schedule.Slot("cuda:0", 8, 80 * GiB)
    big, small = _jobs([(100, 60), (10, 15)])
    assert schedule.fits(big, slot)
    slot.running.append(big)
    assert schedule.fits(small, slot)            # 60 + 15 <= 80
    slot.running.append(small)
    assert not schedule.fits(_jobs([(5, 15)])[0], slot)   # 90 > 80
    lonely = schedule.Slot("cuda:0", 8, 10 * GiB)
    assert schedule.fits(big, lonely)            # alone on an empty card a job always starts
    full = schedule.Slot("cpu", 2)
    full.running += [small, small]
    assert not schedule.fits(small, full)        # capacity


def test_makespan_simulates_the_rule():
    # two CPU places: 30 + 10 on one, 20 + 20 on the other -> 40
    jobs = _jobs([(30, 0), (20, 0), (20, 0), (10, 0)])
    assert schedule.makespan(jobs, [schedule.Slot("cpu", 2)]) == pytest.approx(40)
    assert schedule.makespan(jobs, [schedule.Slot("cpu", 1)]) == pytest.approx(80)
    # on one GPU of 80 GiB a 60 GiB job runs alone: 60 GiB + 30 GiB cannot share it
    jobs = _jobs([(50, 60), (10, 30), (10, 30)])
    assert schedule.makespan(jobs, [schedule.Slot("cuda:0", 8, 80 * GiB)]) == pytest.approx(60)


def test_cpu_slots_follow_the_job_layout(monkeypatch):
    monkeypatch.setattr("cckl_core.devices.available_cpus", lambda: 2)
    monkeypatch.delenv("CCKL_THREADS", raising=False)
    slots, threads = schedule.cpu_slots(10)
    assert [s.capacity for s in slots] == [2] and threads == 1
    slots, threads = schedule.cpu_slots(10, jobs=1)
    assert [s.capacity for s in slots] == [1] and threads == 2


def test_pending_reads_the_cache_alone(smoke_cache):
    prof = profiles.load("smoke")
    todo, notes = schedule.pending(prof, prof.configs())
    assert not todo and notes == ["smoke/resnet20_standard_cifar100 (seed 0): optional, skipped: its data set "
                                  "cifar100 cannot be had here"]  # no worker is started for it
    folder = runs.path_of(prof.run("t1_vgg13_pure_linear"))
    for f in (folder / "evaluations").glob("table1-*"):
        f.unlink()
    todo, _ = schedule.pending(prof, prof.configs())
    assert "t1_vgg13_pure_linear" in [c.name for c in todo]
    runs.remove_weights(folder)
    todo, notes = schedule.pending(prof, prof.configs())
    assert "t1_vgg13_pure_linear" not in [c.name for c in todo] and "weights were removed" in notes[-1]


@pytest.mark.slow
def test_two_cpu_workers_side_by_side_finish_what_the_cache_lacks(smoke_cache, monkeypatch):
    prof = profiles.load("smoke")
    names = ["t1_vgg13_pure_linear", "t1_vgg13_half_linear"]
    for n in names:
        runs.discard(runs.path_of(prof.run(n)))
    monkeypatch.setattr("cckl_core.devices.available_cpus", lambda: 2)
    monkeypatch.setenv("CCKL_THREADS", "1")
    lines = []
    outcomes = schedule.run(prof, prof.configs(names), device="cpu", out=lines.append, plan_first=False)
    assert sorted(o.cfg.name for o in outcomes) == sorted(names)
    assert {o.status for o in outcomes} == {schedule.COMPLETED}
    assert any("2 at a time" in line for line in lines)
    assert any("epoch 2/2" in line for line in lines)  # the workers' progress lines, passed on whole
    assert schedule.run(prof, prof.configs(names), device="cpu", out=lines.append) == []  # nothing left to do


# --------------------------------------------------------------------------- the largest job first, GPU slots, what is left to run
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


def test_makespan_of_four_jobs_two_at_a_time():
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
