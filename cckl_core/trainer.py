"""Train a run into the cache: the one training loop, with resume and a checkpoint per epoch.

:func:`train` serves a finished run from the cache, or trains (resumes) it under the run folder's
lock and returns it. The loop (:func:`_fit`) reads top to bottom: data, model, optimiser, resume,
then per epoch: SGD (:func:`cckl_core.objectives.train_epoch`), the per-epoch record
(:func:`cckl_core.record.evaluate`), the checkpoint,
one line of progress. A killed run resumes from its last finished epoch and ends with the same
numbers as an uninterrupted one (on the CPU, same seed and threads); a full disk stops it with
one line naming the folder, the last finished epoch intact.
"""
from __future__ import annotations

import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import data as data_mod
from . import models, runs, store
from .devices import interactive, machine_info, resolve_device
from .paths import REPO_ROOT
from .profiles import RunConfig
from .objectives import make_optimizer, train_epoch
from .record import evaluate


def train(cfg: RunConfig, device: str | torch.device = "auto", progress: bool = True, weights: bool = False,
          stop_after: int | None = None, log: Callable[[str], None] | None = None) -> runs.Run:
    """The trained run ``cfg``: from the cache, else trained (or resumed) now into it.

    ``weights=False`` returns the run without its model (what the evaluations' caller needs first).
    ``stop_after=e`` returns after epoch ``e`` as if the process had been killed there (resume tests).
    An optional run whose data set is missing raises :class:`~cckl_core.runs.RunSkipped`. A finished
    folder whose files disagree with its checksums or key is rebuilt (from a valid checkpoint when
    there is one). ``log`` receives one line per epoch (default: print).
    """
    device = resolve_device(device)
    path = runs.path_of(cfg)
    st = runs.inspect(path, cfg)  # lock-free: a finished run is served from a read-only root too
    if runs.can_serve(st, weights):
        return runs.serve(st, path, weights, device)
    with store.locked(path):
        st = runs.inspect(path, cfg)
        if runs.can_serve(st, weights):
            return runs.serve(st, path, weights, device)
        if st.state == runs.NO_WEIGHTS:
            raise runs.WeightsRemovedError(runs.weights_removed_message(cfg, path))
        if st.state == runs.CORRUPTED:
            print(f"[cckl] {path} is corrupted ({st.detail}); rebuilding run {cfg.label}", flush=True)
            for f in ("complete.json", runs.WEIGHTS, "history.json"):
                (path / f).unlink(missing_ok=True)
        return _fit(cfg, path, device, progress, stop_after, log or _print)


def _print(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------- what a run is trained on
def load_data(cfg: RunConfig) -> tuple[data_mod.ImageData, data_mod.ImageData]:
    """The run's training and test splits (class-balanced subsets of ``n_train`` / ``n_test``)."""
    try:
        train_split = data_mod.load(cfg.dataset, "train", n=cfg.n_train or None, seed=cfg.seed)
        test_split = data_mod.load(cfg.dataset, "test", n=cfg.n_test or None, seed=cfg.seed)
    except data_mod.DataNotFoundError as err:
        if cfg.optional:
            raise runs.RunSkipped(f"optional run {cfg.label} skipped: its data set {cfg.dataset} is not under the data "
                                  "root and cannot be downloaded here") from err
        raise
    return train_split, test_split


@dataclass
class FixedPoints:
    """Test points every epoch is evaluated on: the Fisher subset, the Figure 1 pair, the robust subset."""

    fisher_x: torch.Tensor
    pair_x: torch.Tensor
    pair_index: list[int]
    robust_x: torch.Tensor
    robust_y: torch.Tensor


def fixed_points(test: data_mod.ImageData, cfg: RunConfig, device: torch.device) -> FixedPoints:
    """Class-balanced Fisher (``fisher_n``) and robust-accuracy (``robust_n``) subsets of the test split
    (an error if larger than it) and the Figure 1 pair (first test image of classes 0 and 1)."""
    cfg.check_fits_test_set(len(test))

    def subset(key: str, seed: int) -> data_mod.ImageData:
        n = getattr(cfg, key)
        return test if n == len(test) else test.take(data_mod.balanced_indices(test.labels, n, seed=seed))

    fisher_data = subset("fisher_n", cfg.seed + 1)
    robust_data = subset("robust_n", cfg.seed + 2)
    first = [int(torch.nonzero(test.labels == c)[0]) for c in (0, 1)]
    return FixedPoints(fisher_data.float(device), test.take(torch.tensor(first)).float(device), first,
                       robust_data.float(device), robust_data.labels.to(device))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    """What ran the training: versions, device, the CPU and its vector extensions, the BLAS build,
    threads, git commit, host, start time (what makes two machines' runs differ)."""
    return {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "threads": torch.get_num_threads(), **machine_info(), "git_commit": _git_commit(),
            "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# --------------------------------------------------------------------------- the loop
def _fit(cfg: RunConfig, path: Path, device: torch.device, progress: bool, stop_after: int | None,
         log: Callable[[str], None]) -> runs.Run:
    train_split, test_split = load_data(cfg)
    dataset_info = {"name": train_split.name, "classes": list(train_split.classes),
                    "num_classes": train_split.num_classes, "n_train": len(train_split), "n_test": len(test_split)}
    runs.write_start(path, cfg, environment(device), dataset_info)

    model, channels_last = models.fresh(cfg, train_split.num_classes, device)
    train_batches = data_mod.Batches(train_split, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed,
                                     device=device, channels_last=channels_last)
    opt, sched = make_optimizer(model, cfg, len(train_batches))
    history, start_epoch = [], 0
    ckpt = runs.load_checkpoint(path, cfg, device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        log(f"[cckl] {cfg.label}: resuming after epoch {start_epoch} of {cfg.epochs}")
    test_batches = data_mod.Batches(test_split, 500, device=device)
    fixed = fixed_points(test_split, cfg, device)

    def record() -> dict:
        return evaluate(model, test_batches, fixed.fisher_x, fixed.pair_x, fixed.robust_x, fixed.robust_y,
                        precision=cfg.precision)

    if not history:
        history = [{"epoch": 0, "lr": cfg.lr, "train_loss": None, "train_seconds": 0.0, "run_key": cfg.key,
                    "pair_index": fixed.pair_index, **record()}]
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 7919 + epoch)  # attack starts: the same whether resumed or not
        train_batches.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        loss = train_epoch(model, opt, sched, train_batches, cfg, progress=progress and interactive(),
                           desc=f"epoch {epoch + 1}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        models.check_finite(model, f" after epoch {epoch + 1} of run {cfg.label}")
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_seconds": seconds, **record()})
        _save_epoch(path, cfg, model, opt, sched, history, epoch + 1)
        if progress:
            log(_progress_line(cfg, history[-1], (time.perf_counter() - started) / (epoch + 1 - start_epoch)))
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < cfg.epochs:
            return runs.Run(cfg, path, model.eval(), history, False, dataset_info)
    return runs.finish(path, cfg, model, history, dataset_info)


def _save_epoch(path: Path, cfg: RunConfig, model, opt, sched, history: list[dict], epoch: int) -> None:
    """The checkpoint, then the history, of a finished epoch. A full disk ends in one line that names
    the folder and the space needed; the previous epoch's checkpoint is kept."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "history": history}
    try:
        runs.save_checkpoint(path, cfg, state, epoch)
        store.atomic_write_json(path / "history.json", history)
    except store.DiskFullError as err:
        raise store.DiskFullError(err.errno, f"{err.strerror}; run {cfg.label} keeps epoch {epoch - 1} in {path} and "
                                  "resumes from it") from None


def _progress_line(cfg: RunConfig, rec: dict, seconds_per_epoch: float) -> str:
    left = (cfg.epochs - rec["epoch"]) * seconds_per_epoch
    rob = f", PGD-10 acc {rec['robust_acc']:.3f}" if rec.get("robust_acc") is not None else ""
    return (f"[cckl] {cfg.label} epoch {rec['epoch']}/{cfg.epochs}: loss {rec['train_loss']:.3f}, test acc "
            f"{rec['test_acc']:.3f}{rob}; {seconds_per_epoch:.0f} s/epoch, "
            + ("done" if left <= 0 else f"about {_duration(left)} left"))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["train", "load_data", "fixed_points", "environment", "FixedPoints"]
