"""Run registry: cached, resumable training runs keyed by a hash of their config.

A run lives in ``artifacts/<profile>/<name>-<hash>/`` where ``hash`` is the first 12 hex
digits of the SHA-256 of its config (JSON, sorted keys; ``optional`` excluded). Files:

- ``config.json``, ``environment.json`` (torch version, device, git commit, host)
- ``checkpoint.pt``: model, optimiser, scheduler and history after the last finished epoch
- ``history.json``: one record per epoch, epoch 0 being the initialisation
- ``model.pt`` and ``complete.json`` (with the SHA-256 of ``model.pt``) once finished

Every write goes to a temporary file and is renamed into place. A run is complete only
when ``complete.json`` names a ``model.pt`` with matching checksum; otherwise it is
resumed from ``checkpoint.pt``, or started over when that is unreadable. An exclusive
``fcntl`` lock on ``.lock`` makes a second process wait and then reuse the result.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from . import data as data_mod
from . import models, profiles
from .devices import resolve_device
from .paths import REPO_ROOT, artifacts_root
from .training import evaluate, make_optimizer, train_epoch

_HASH_EXCLUDE = {"optional"}


class RunNotFoundError(FileNotFoundError):
    """The run has not been trained (or is incomplete) and training was not asked for."""


class RunSkipped(RuntimeError):
    """An optional run whose data set cannot be had here."""


@dataclass
class Run:
    name: str
    profile: str
    config: dict
    path: Path
    model: nn.Module | None
    history: list[dict]
    complete: bool

    @property
    def display_name(self) -> str:
        """``model (width w), objective`` for figure labels."""
        c = self.config
        width = "" if c["model"] in ("resnet20x1", "resnet32x10") else f" w{c['width']:g}"
        return f"{c['model']}{width} {c['objective']}"

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> data_mod.ImageData:
        """The run's data set split (a class-balanced subset of ``n``; ``None``: the run's own size)."""
        size = n if n is not None else (self.config["n_test"] if split == "test" else self.config["n_train"])
        return data_mod.load(self.config["dataset"], split, n=size or None, seed=seed)


def config_hash(cfg: dict) -> str:
    """First 12 hex digits of SHA-256 of the config as sorted JSON (``optional`` left out)."""
    blob = json.dumps({k: v for k, v in cfg.items() if k not in _HASH_EXCLUDE}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_path(profile: str, name: str, cfg: dict) -> Path:
    return artifacts_root() / profile / f"{name}-{config_hash(cfg)}"


# --------------------------------------------------------------------------- atomic files
def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_json(path: Path, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def _atomic_torch(path: Path, obj) -> str:
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    _atomic_write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _environment(device: torch.device) -> dict:
    return {
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "git_commit": _git_commit(), "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------- loading
def _read_complete(path: Path, device: torch.device) -> tuple[nn.Module, list[dict]] | None:
    """The finished model and history, or None if the entry is incomplete or corrupted."""
    try:
        done = json.loads((path / "complete.json").read_text())
        payload = (path / "model.pt").read_bytes()
        if hashlib.sha256(payload).hexdigest() != done["sha256"]:
            return None
        cfg = json.loads((path / "config.json").read_text())
        history = json.loads((path / "history.json").read_text())
        model = build_model(cfg)
        model.load_state_dict(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True))
        return model.to(device).eval(), history
    except (OSError, ValueError, KeyError, RuntimeError, EOFError):
        return None


def _channels_last(model: nn.Module) -> bool:
    """channels_last pays off on the CPU for real widths (1.15-1.25x) but is many times slower
    for BatchNorm over a handful of channels (the tiny test models)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return bool(widths) and min(widths) >= 16


def fresh_model(cfg: dict, num_classes: int | None, device: torch.device) -> tuple[nn.Module, bool]:
    """The run's model at initialisation (seeded by ``cfg['seed']``) on ``device``, in
    channels_last memory format where that pays off; returns ``(model, channels_last)``."""
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg, num_classes).to(device)
    channels_last = _channels_last(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, channels_last


def build_model(cfg: dict, num_classes: int | None = None) -> nn.Module:
    """The (untrained) model of a run config."""
    if num_classes is None:
        num_classes = 100 if cfg["dataset"] == "cifar100" else 10
    return models.build(cfg["model"], num_classes=num_classes, width=cfg["width"], batch_norm=cfg["batch_norm"])


def load(profile: str, name: str, device: str | torch.device = "auto") -> Run:
    """A finished run from the cache; :class:`RunNotFoundError` if it is not there."""
    prof = profiles.load(profile)
    cfg = prof.run(name)
    path = run_path(prof.name, name, cfg)
    got = _read_complete(path, resolve_device(device))
    if got is None:
        raise RunNotFoundError(
            f"run {name!r} of profile {profile!r} is not trained (looked in {path}); "
            f"train it with `python -m cckl_core train --profile {profile} --run {name}` or runs.get_or_train().")
    return Run(name, prof.name, cfg, path, got[0], got[1], True)


def get_or_train(profile: str, name: str, device: str | torch.device = "auto", progress: bool = True) -> Run:
    """The trained run ``name`` of ``profile``: from the cache, else trained (or resumed) now."""
    prof = profiles.load(profile)
    return train_config(prof.run(name), name, prof.name, device=device, progress=progress)


def _fixed_points(test: data_mod.ImageData, cfg: dict, device: torch.device):
    """The fixed Fisher subset of the test split and the Figure 1 pair (first test image of classes 0 and 1)."""
    fisher_idx = data_mod.balanced_indices(test.labels, cfg["fisher_n"], seed=cfg["seed"] + 1)
    fisher_data = test if fisher_idx is None else test.take(fisher_idx)
    first = [int(torch.nonzero(test.labels == c)[0]) for c in (0, 1)]
    return fisher_data.float(device), test.take(torch.tensor(first)).float(device), first


def train_config(cfg: dict, name: str, profile: str = "custom", device: str | torch.device = "auto",
                 progress: bool = True, stop_after: int | None = None) -> Run:
    """Train (or resume, or load) the run with config ``cfg``, cached under ``artifacts/<profile>/``.

    ``stop_after=e`` returns after epoch ``e`` as if the process had been killed there
    (for resume tests). An optional run whose data set is missing raises :class:`RunSkipped`.
    """
    cfg = {**profiles.RUN_KEYS, **cfg}
    profiles.validate_run_config(cfg, where=f"run {name!r}")
    device = resolve_device(device)
    path = run_path(profile, name, cfg)
    with _locked(path):
        got = _read_complete(path, device)
        if got is not None:
            return Run(name, profile, cfg, path, got[0], got[1], True)
        try:
            train = data_mod.load(cfg["dataset"], "train", n=cfg["n_train"] or None, seed=cfg["seed"])
            test = data_mod.load(cfg["dataset"], "test", n=cfg["n_test"] or None, seed=cfg["seed"])
        except data_mod.DataNotFoundError as err:
            if cfg.get("optional"):
                raise RunSkipped(f"optional run {name!r} skipped: {str(err).splitlines()[0]}") from err
            raise
        _atomic_json(path / "config.json", cfg)
        _atomic_json(path / "environment.json", _environment(device))

        model, channels_last = fresh_model(cfg, train.num_classes, device)
        opt, sched = make_optimizer(model, cfg)
        history: list[dict] = []
        start_epoch = 0
        ckpt_file = path / "checkpoint.pt"
        if ckpt_file.exists():
            try:
                ckpt = torch.load(ckpt_file, map_location=device, weights_only=False)
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
                history, start_epoch = ckpt["history"], ckpt["epoch"]
            except Exception as err:  # unreadable checkpoint: start over from scratch
                print(f"[cckl] {ckpt_file} is unreadable ({type(err).__name__}); training {name} from the start")
                ckpt_file.unlink(missing_ok=True)
                model, channels_last = fresh_model(cfg, train.num_classes, device)
                opt, sched = make_optimizer(model, cfg)
                history, start_epoch = [], 0

        train_batches = data_mod.Batches(train, cfg["batch_size"], shuffle=True, augment=cfg["augment"],
                                         seed=cfg["seed"], device=device, channels_last=channels_last)
        test_batches = data_mod.Batches(test, 500, device=device)
        fisher_x, pair_x, pair_idx = _fixed_points(test, cfg, device)

        if not history:
            rec = evaluate(model, test_batches, fisher_x, pair_x)
            history = [{"epoch": 0, "lr": cfg["lr"], "train_loss": None, "train_seconds": 0.0,
                        "pair_index": pair_idx, **rec}]
        epochs = range(start_epoch, cfg["epochs"])
        if progress and start_epoch < cfg["epochs"]:
            from tqdm.auto import tqdm
            epochs = tqdm(epochs, desc=f"{profile}/{name}", initial=start_epoch, total=cfg["epochs"])
        for epoch in epochs:
            torch.manual_seed(cfg["seed"] * 7919 + epoch)  # attack starts: the same whether resumed or not
            train_batches.set_epoch(epoch)
            lr = opt.param_groups[0]["lr"]
            t0 = time.perf_counter()
            loss = train_epoch(model, opt, train_batches, cfg, progress=progress, desc=f"epoch {epoch + 1}")
            seconds = time.perf_counter() - t0
            sched.step()
            rec = evaluate(model, test_batches, fisher_x, pair_x)
            history.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_seconds": seconds, **rec})
            _atomic_torch(ckpt_file, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "scheduler": sched.state_dict(), "history": history, "epoch": epoch + 1})
            _atomic_json(path / "history.json", history)
            if progress:
                epochs.set_postfix(acc=f"{rec['test_acc']:.3f}", fisher=f"{rec['fisher_fro_mean']:.3g}", refresh=False)
            if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < cfg["epochs"]:
                return Run(name, profile, cfg, path, model.eval(), history, False)

        _atomic_json(path / "history.json", history)
        digest = _atomic_torch(path / "model.pt", {k: v.contiguous() for k, v in model.state_dict().items()})
        _atomic_json(path / "complete.json", {"sha256": digest, "epochs": cfg["epochs"],
                                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return Run(name, profile, cfg, path, model.eval(), history, True)


def status(profile: str) -> list[dict]:
    """One row per run of ``profile``: state (complete / partial / not started), epochs done, last metrics."""
    prof = profiles.load(profile)
    rows = []
    for name, cfg in prof.runs.items():
        path = run_path(prof.name, name, cfg)
        row = {"run": name, "model": cfg["model"], "objective": cfg["objective"], "dataset": cfg["dataset"],
               "epochs": f"0/{cfg['epochs']}", "state": "not started", "test_acc": None, "fisher_fro_mean": None,
               "path": str(path)}
        hist_file = path / "history.json"
        if hist_file.exists():
            try:
                hist = json.loads(hist_file.read_text())
                last = hist[-1]
                row.update(epochs=f"{last['epoch']}/{cfg['epochs']}", test_acc=last["test_acc"],
                           fisher_fro_mean=last["fisher_fro_mean"], state="partial")
            except (ValueError, IndexError, KeyError):
                row["state"] = "corrupted"
        if (path / "complete.json").exists():
            row["state"] = "complete"
        rows.append(row)
    return rows
