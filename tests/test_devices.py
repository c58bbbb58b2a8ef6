"""Devices and threads: the job layout on the CPU cores (jobs side by side, threads each), thread counts
and device names from the environment checked, an empty variable a mistake."""
import pytest

from cckl_core import devices


@pytest.fixture(autouse=True)
def _no_thread_setting(monkeypatch):
    monkeypatch.delenv("CCKL_THREADS", raising=False)


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


def test_an_absurd_thread_count_is_refused(monkeypatch):
    monkeypatch.setenv("CCKL_THREADS", "100000")
    with pytest.raises(devices.DeviceError, match="far more than"):
        devices.configure_threads()


def test_an_empty_device_variable_is_a_mistake(monkeypatch):
    monkeypatch.setenv("CCKL_DEVICE", "")
    with pytest.raises(devices.DeviceError, match="CCKL_DEVICE is set but empty"):
        devices.resolve_device()


def test_an_unknown_device_from_the_environment_names_its_variable(monkeypatch):
    monkeypatch.setenv("CCKL_DEVICE", "gpu")
    with pytest.raises(devices.DeviceError, match=r"from \$CCKL_DEVICE"):
        devices.resolve_device("auto")
