"""The one local scheduler: which job starts where (largest first, by GPU memory), the simulated
wall time, what the cache says is pending; and, for real, two CPU workers side by side."""
from dataclasses import replace

import pytest

from cckl_core import profiles, runs, schedule

GiB = 2 ** 30


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
