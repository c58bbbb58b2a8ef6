"""The store: training state saved and read back with its types and checksum, atomic writes whose
failures are one line naming the path and the fix, and the per-folder lock (a plain file, never a link,
that makes a second process wait)."""
import errno
import os
import threading
import time

import pytest
import torch

from cckl_core import store


def test_state_round_trip_keeps_types(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "history": [{"epoch": 1, "acc": 0.1 + 0.2}], "epoch": 1}
    digest = store.save_state(tmp_path / "s.safetensors", state)
    back = store.load_state(tmp_path / "s.safetensors", digest)
    assert back["history"] == state["history"] and back["epoch"] == 1
    opt2 = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])
    sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, milestones=[7], gamma=0.1)
    sched2.load_state_dict(back["scheduler"])
    assert sched2.milestones[3] == 0 and sched2.milestones[2] == 1  # still a Counter: missing epochs read 0


def test_load_state_rejects_a_changed_file(tmp_path):
    digest = store.save_state(tmp_path / "s.safetensors", {"w": torch.ones(4)})
    payload = bytearray((tmp_path / "s.safetensors").read_bytes())
    payload[-1] ^= 1
    (tmp_path / "s.safetensors").write_bytes(bytes(payload))
    with pytest.raises(store.CorruptedFileError, match="checksum"):
        store.load_state(tmp_path / "s.safetensors", digest)


# --------------------------------------------------------------------------- write failures
@pytest.mark.parametrize("code, words", [(30, "read-only"), (27, "ulimit -f"), (13, "permission denied")])
def test_every_write_failure_is_one_line_naming_the_path_and_the_fix(tmp_path, monkeypatch, code, words):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    target = tmp_path / "out" / "x.json"
    with pytest.raises(store.WriteError) as err:
        store.atomic_write_json(target, {"a": 1})
    msg = str(err.value)
    assert str(target) in msg and words in msg and "\n" not in msg and err.value.errno == code
    assert not list(target.parent.glob("*.tmp"))  # nothing half-written is left
    assert code != errno.ENOSPC


# --------------------------------------------------------------------------- locks
def test_lock_makes_second_process_wait(tmp_path):
    order = []
    with store.locked(tmp_path):
        t = threading.Thread(target=lambda: (store.locked(tmp_path).__enter__(), order.append("second")))
        t.start()
        time.sleep(0.3)
        order.append("first released")
    t.join(5)
    assert order == ["first released", "second"]


@pytest.mark.parametrize("kind", ["link to a file", "dangling link", "folder", "fifo"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_nothing_is_written_through_it(tmp_path, kind):
    """`folder/.lock` is opened by one opener that refuses links and non-files: a link planted in a
    shared artifacts root cannot get another user's file truncated, a folder or FIFO is one line."""
    folder, victim = tmp_path / "run", tmp_path / "outside" / "precious.txt"
    folder.mkdir()
    victim.parent.mkdir()
    victim.write_text("keep me")
    lock = folder / ".lock"
    if kind == "link to a file":
        lock.symlink_to(victim)
    elif kind == "dangling link":
        lock.symlink_to(tmp_path / "outside" / "new.txt")
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(store.UnsafeLockError) as err:
        with store.locked(folder):
            pass
    assert str(lock) in str(err.value) and "\n" not in str(err.value) and "remove it" in str(err.value)
    assert victim.read_text() == "keep me" and not (tmp_path / "outside" / "new.txt").exists()


def test_a_plain_lock_file_is_used_and_never_truncated(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text("pid 1")
    with store.locked(folder):
        pass
    assert (folder / ".lock").read_text() == "pid 1"
    with store.locked(tmp_path / "new"):
        assert (tmp_path / "new" / ".lock").is_file()
