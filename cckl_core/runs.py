"""Run registry: cached, resumable training runs keyed by a hash of their config.

A run lives in ``artifacts/<profile>/<name>-<hash>/`` where ``hash`` is the first 12 hex
digits of the SHA-256 of its config (JSON, sorted keys; ``optional`` excluded; the seed is
part of it, so every seed of a run has its own folder). Files:

- ``config.json``, ``environment.json`` (torch version, device, git commit, host),
  ``dataset.json`` (data set name, classes and sizes: what a figure says without the data)
- ``checkpoint.safetensors`` + ``checkpoint.json`` (its checksum): model, optimiser,
  scheduler and history after the last finished epoch
- ``history.json``: one record per epoch, epoch 0 being the initialisation
- ``model.safetensors`` and ``complete.json`` once finished. ``complete.json`` holds the
  SHA-256 of every file above; each is verified when the run is read, so an edited or
  damaged file is detected and the run rebuilt (``train``) or reported (``load``), never reused.
- ``evaluations/``: cached evaluations (:mod:`cckl_core.evaluations`).

Weights and checkpoints may be deleted once the evaluations are computed: the run then
reads as "complete, weights removed" and still serves its config, history and evaluations
(what the notebooks read). Reading a finished run takes no lock, so a read-only artifacts
root works; training takes an exclusive ``fcntl`` lock, so a second process waits and then
reuses the result.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from . import data as data_mod
from . import models, profiles, store
from .devices import resolve_device
from .paths import REPO_ROOT, artifacts_root
from .training import check_finite_weights, evaluate, make_optimizer, train_epoch

_HASH_EXCLUDE = {"optional"}
#: Files whose checksums ``complete.json`` records and every read verifies.
RECORDED = ("config.json", "environment.json", "dataset.json", "history.json")
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"

COMPLETE = "complete"
NO_WEIGHTS = "complete, weights removed"
PARTIAL = "partial"
NOT_STARTED = "not started"
CORRUPTED = "corrupted"


class RunNotFoundError(FileNotFoundError):
    """The run has not been trained (or is incomplete) and training was not asked for."""


class WeightsRemovedError(RunNotFoundError):
    """The run is complete but its weights were removed, and the model was asked for."""


class RunCorruptedError(RunNotFoundError):
    """A file of a finished run does not match the checksum recorded when it finished."""


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
    dataset_info: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        """``model (width w), objective`` for figure labels."""
        c = self.config
        width = "" if c["model"] in ("resnet20x1", "resnet32x10") else f" w{c['width']:g}"
        return f"{c['model']}{width} {c['objective']}"

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def dataset_name(self) -> str:
        """The data set's display name (e.g. "CIFAR-10 (JPEG q75 copy)"), recorded at training."""
        return self.dataset_info.get("name", self.config["dataset"])

    @property
    def classes(self) -> list[str]:
        return list(self.dataset_info.get("classes", []))

    @property
    def model_sha256(self) -> str | None:
        """SHA-256 of the final weights (recorded in ``complete.json``): what evaluations are keyed by."""
        return self.manifest.get("files", {}).get(WEIGHTS)

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


# --------------------------------------------------------------------------- state of a run folder
@dataclass
class State:
    """What a run folder holds, verified: ``state`` is one of the module's state constants."""
    state: str
    detail: str = ""
    config: dict | None = None
    history: list[dict] | None = None
    dataset_info: dict | None = None
    manifest: dict | None = None


def inspect(path: Path) -> State:
    """The state of the run folder ``path``, with every recorded file checked against ``complete.json``.

    Reads only; takes no lock. The weights' checksum is verified too when they are present.
    """
    path = Path(path)
    if not (path / "complete.json").exists():
        try:
            history = json.loads((path / "history.json").read_text())
            return State(PARTIAL, f"{history[-1]['epoch']} epochs", history=history)
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return State(PARTIAL if (path / "config.json").exists() else NOT_STARTED)
    try:
        manifest = store.read_json(path / "complete.json")
        files = manifest["files"]
        parsed = {name: store.read_json(path / name, files[name]) for name in RECORDED}
        if (path / WEIGHTS).exists():
            store.read_verified(path / WEIGHTS, files[WEIGHTS])
            state = COMPLETE
        else:
            state = NO_WEIGHTS
    except (store.CorruptedFileError, FileNotFoundError, KeyError, TypeError) as err:
        detail = f"missing {err}" if isinstance(err, (FileNotFoundError, KeyError)) else str(err)
        return State(CORRUPTED, detail)
    return State(state, "", parsed["config.json"], parsed["history.json"], parsed["dataset.json"], manifest)


def _from_state(st: State, name: str, profile: str, path: Path, weights: bool, device) -> Run:
    model = None
    if weights:
        cfg = st.config
        model = build_model(cfg, st.dataset_info.get("num_classes"))
        model.load_state_dict(store.load_state(path / WEIGHTS, st.manifest["files"][WEIGHTS]))
        check_finite_weights(model, f" in {path / WEIGHTS}")
        model = model.to(resolve_device(device)).eval()
    return Run(name, profile, st.config, path, model, st.history, True, st.dataset_info, st.manifest)


def _usable(st: State, weights: bool) -> bool:
    return st.state == COMPLETE or (st.state == NO_WEIGHTS and not weights)


# --------------------------------------------------------------------------- models
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


# --------------------------------------------------------------------------- public entry points
def load(profile: str, name: str, device: str | torch.device = "auto", weights: bool = True,
         seed: int | None = None) -> Run:
    """A finished run from the cache (its model too when ``weights``), verified against its checksums.

    Raises :class:`RunNotFoundError` if it is not trained, :class:`RunCorruptedError` if a file
    changed since it finished, :class:`WeightsRemovedError` if the weights were asked for but removed.
    """
    prof = profiles.load(profile)
    cfg = prof.run(name, seed)
    path = run_path(prof.name, name, cfg)
    st = inspect(path)
    train_cmd = f"python -m cckl_core train --profile {prof.name} --run {name}" + ("" if seed is None else f" --seed {seed}")
    if st.state == CORRUPTED:
        raise RunCorruptedError(f"run {name!r} of profile {prof.name!r} at {path} is corrupted ({st.detail}); "
                                f"`{train_cmd}` rebuilds it")
    if st.state == NO_WEIGHTS and weights:
        raise WeightsRemovedError(_weights_removed_message(name, path))
    if not _usable(st, weights):
        raise RunNotFoundError(f"run {name!r} of profile {prof.name!r} is not trained ({st.state}; looked in {path}); "
                               f"train it with `{train_cmd}` or runs.get_or_train().")
    return _from_state(st, name, prof.name, path, weights, device)


def get_or_train(profile: str, name: str, device: str | torch.device = "auto", progress: bool = True,
                 weights: bool = True, seed: int | None = None) -> Run:
    """The trained run ``name`` of ``profile``: from the cache, else trained (or resumed) now.

    ``weights=False`` returns the run without its model (config, history, data set info),
    which is all the notebooks need and works after the weights were removed.
    """
    prof = profiles.load(profile)
    return train_config(prof.run(name, seed), name, prof.name, device=device, progress=progress, weights=weights)


def _weights_removed_message(name: str, path: Path) -> str:
    return (f"run {name!r} is complete but its weights were removed from {path} (results unpacked from a bundle, "
            "or pruned after evaluation); its history and cached evaluations can be read, but this needs the "
            "model: copy model.safetensors back, or delete the folder to retrain")


def train_config(cfg: dict, name: str, profile: str = "custom", device: str | torch.device = "auto",
                 progress: bool = True, stop_after: int | None = None, weights: bool = True) -> Run:
    """Train (or resume, or load) the run with config ``cfg``, cached under ``artifacts/<profile>/``.

    ``stop_after=e`` returns after epoch ``e`` as if the process had been killed there
    (for resume tests). An optional run whose data set is missing raises :class:`RunSkipped`.
    A finished entry whose files fail their checksums is rebuilt (resumed from a valid
    checkpoint when there is one).
    """
    cfg = profiles.validate_run_config({**profiles.RUN_KEYS, **cfg}, where=f"run {name!r}")
    device = resolve_device(device)
    path = run_path(profile, name, cfg)
    st = inspect(path)  # lock-free: a finished run is served from a read-only root too
    if _usable(st, weights):
        return _from_state(st, name, profile, path, weights, device)
    with store.locked(path):
        st = inspect(path)
        if _usable(st, weights):
            return _from_state(st, name, profile, path, weights, device)
        if st.state == NO_WEIGHTS:
            raise WeightsRemovedError(_weights_removed_message(name, path))
        if st.state == CORRUPTED:
            print(f"[cckl] {path} is corrupted ({st.detail}); rebuilding run {name}")
            for f in ("complete.json", WEIGHTS, "history.json"):
                (path / f).unlink(missing_ok=True)
        return _train(cfg, name, profile, path, device, progress, stop_after)


# --------------------------------------------------------------------------- training
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


def _load_data(cfg: dict, name: str):
    try:
        train = data_mod.load(cfg["dataset"], "train", n=cfg["n_train"] or None, seed=cfg["seed"])
        test = data_mod.load(cfg["dataset"], "test", n=cfg["n_test"] or None, seed=cfg["seed"])
    except data_mod.DataNotFoundError as err:
        if cfg.get("optional"):
            raise RunSkipped(f"optional run {name!r} skipped: {str(err).splitlines()[0]}") from err
        raise
    return train, test


@dataclass
class FixedPoints:
    """Test points every epoch is evaluated on: the Fisher subset, the Figure 1 pair, the robust subset."""
    fisher_x: torch.Tensor
    pair_x: torch.Tensor
    pair_index: list[int]
    robust_x: torch.Tensor
    robust_y: torch.Tensor


def fixed_points(test: data_mod.ImageData, cfg: dict, device: torch.device) -> FixedPoints:
    """Class-balanced Fisher (``fisher_n``) and robust-accuracy (``robust_n``) subsets of the test split
    (an error if larger than it) and the Figure 1 pair (first test image of classes 0 and 1)."""
    def subset(key: str, seed: int) -> data_mod.ImageData:
        n = cfg[key]
        if n > len(test):
            raise ValueError(f"{key}={n} is more than the run's test set ({len(test)} images; n_test={cfg['n_test']}): "
                             f"lower {key} or raise n_test")
        return test if n == len(test) else test.take(data_mod.balanced_indices(test.labels, n, seed=seed))

    fisher_data = subset("fisher_n", cfg["seed"] + 1)
    robust_data = subset("robust_n", cfg["seed"] + 2)
    first = [int(torch.nonzero(test.labels == c)[0]) for c in (0, 1)]
    return FixedPoints(fisher_data.float(device), test.take(torch.tensor(first)).float(device), first,
                       robust_data.float(device), robust_data.labels.to(device))


def _save_checkpoint(path: Path, model, opt, sched, history: list[dict], epoch: int) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "history": history, "epoch": epoch}
    digest = store.save_state(path / CHECKPOINT, state)
    store.atomic_write_json(path / "checkpoint.json", {"sha256": digest, "epoch": epoch})


def _resume(path: Path, model, opt, sched, device) -> tuple[list[dict], int]:
    """History and epoch of a valid checkpoint, loaded into model/opt/sched; ``([], 0)`` if there is none."""
    if not (path / CHECKPOINT).exists():
        return [], 0
    try:
        meta = store.read_json(path / "checkpoint.json")
        ckpt = store.load_state(path / CHECKPOINT, meta["sha256"], device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        return ckpt["history"], ckpt["epoch"]
    except Exception as err:  # unreadable checkpoint: the caller starts over from scratch
        print(f"[cckl] {path / CHECKPOINT} is unreadable ({type(err).__name__}: {err}); training from the start")
        for f in (CHECKPOINT, "checkpoint.json"):
            (path / f).unlink(missing_ok=True)
        return None, 0


def _train(cfg: dict, name: str, profile: str, path: Path, device: torch.device, progress: bool,
           stop_after: int | None) -> Run:
    train, test = _load_data(cfg, name)
    store.atomic_write_json(path / "config.json", cfg)
    store.atomic_write_json(path / "environment.json", _environment(device))
    dataset_info = {"name": train.name, "classes": list(train.classes), "num_classes": train.num_classes,
                    "n_train": len(train), "n_test": len(test)}
    store.atomic_write_json(path / "dataset.json", dataset_info)

    model, channels_last = fresh_model(cfg, train.num_classes, device)
    opt, sched = make_optimizer(model, cfg)
    history, start_epoch = _resume(path, model, opt, sched, device)
    if history is None:  # a half-loaded checkpoint may have touched the model: start clean
        model, channels_last = fresh_model(cfg, train.num_classes, device)
        opt, sched = make_optimizer(model, cfg)
        history, start_epoch = [], 0

    train_batches = data_mod.Batches(train, cfg["batch_size"], shuffle=True, augment=cfg["augment"],
                                     seed=cfg["seed"], device=device, channels_last=channels_last)
    test_batches = data_mod.Batches(test, 500, device=device)
    fixed = fixed_points(test, cfg, device)

    def record() -> dict:
        return evaluate(model, test_batches, fixed.fisher_x, fixed.pair_x, fixed.robust_x, fixed.robust_y,
                        precision=cfg["precision"])

    if not history:
        history = [{"epoch": 0, "lr": cfg["lr"], "train_loss": None, "train_seconds": 0.0,
                    "pair_index": fixed.pair_index, **record()}]
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
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        sched.step()
        check_finite_weights(model, f" after epoch {epoch + 1} of run {name!r}")
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_seconds": seconds, **record()})
        _save_checkpoint(path, model, opt, sched, history, epoch + 1)
        store.atomic_write_json(path / "history.json", history)
        if progress:
            epochs.set_postfix(acc=f"{history[-1]['test_acc']:.3f}", rob=f"{history[-1]['robust_acc']:.3f}",
                               fisher=f"{history[-1]['fisher_fro_mean']:.3g}", refresh=False)
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < cfg["epochs"]:
            return Run(name, profile, cfg, path, model.eval(), history, False, dataset_info)
    return _finish(cfg, name, profile, path, model, history, dataset_info)


def _finish(cfg, name, profile, path: Path, model: nn.Module, history: list[dict], dataset_info: dict) -> Run:
    """Write the history and the weights, then ``complete.json`` with the checksum of every recorded file."""
    files = {WEIGHTS: store.save_state(path / WEIGHTS, {k: v.contiguous() for k, v in model.state_dict().items()}),
             "history.json": store.atomic_write_json(path / "history.json", history)}
    for f in RECORDED:
        files.setdefault(f, store.sha256_file(path / f))
    manifest = {"files": files, "epochs": cfg["epochs"], "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    store.atomic_write_json(path / "complete.json", manifest)
    return Run(name, profile, cfg, path, model.eval(), history, True, dataset_info, manifest)


# --------------------------------------------------------------------------- listing
def seeds_present(profile: str, name: str) -> list[int]:
    """Seeds of run ``name`` with a folder in the cache (any state), found by scanning
    ``artifacts/<profile>/<name>-*``: a folder counts when its config is the profile's with that seed."""
    prof = profiles.load(profile)
    found = set()
    for folder in (artifacts_root() / prof.name).glob(f"{name}-*"):
        try:
            seed = json.loads((folder / "config.json").read_text())["seed"]
            if run_path(prof.name, name, prof.run(name, seed)) == folder:
                found.add(seed)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found)


def seed_group(run: Run) -> list[Run]:
    """``run`` and every other finished seed of it in the cache (``run`` first), without weights:
    what the notebooks average over when a profile was trained with several seeds."""
    group = [run]
    for seed in seeds_present(run.profile, run.name):
        if seed == run.seed:
            continue
        try:
            group.append(load(run.profile, run.name, weights=False, seed=seed))
        except RunNotFoundError:
            continue
    return group


def status(profile: str, seeds: list[int] | None = None) -> list[dict]:
    """One row per (run, seed) of ``profile``: the state :func:`load` finds, epochs done, last metrics.

    Seeds: the profile's ``seeds`` and any other seed found in the cache (or ``seeds``).
    """
    prof = profiles.load(profile)
    rows = []
    for name in prof.runs:
        for seed in seeds if seeds is not None else sorted(set(prof.seeds) | set(seeds_present(prof.name, name))):
            cfg = prof.run(name, seed)
            path = run_path(prof.name, name, cfg)
            st = inspect(path)
            row = {"run": name, "seed": seed, "model": cfg["model"], "objective": cfg["objective"],
                   "dataset": cfg["dataset"], "epochs": f"0/{cfg['epochs']}", "state": st.state,
                   "detail": st.detail, "test_acc": None, "robust_acc": None, "fisher_fro_mean": None,
                   "path": str(path)}
            if st.history:
                last = st.history[-1]
                row.update(epochs=f"{last.get('epoch', '?')}/{cfg['epochs']}", test_acc=last.get("test_acc"),
                           robust_acc=last.get("robust_acc"), fisher_fro_mean=last.get("fisher_fro_mean"))
            rows.append(row)
    return rows


def remove_weights(path: Path) -> list[Path]:
    """Delete the weights and checkpoint of a finished run (what a bundle leaves out); returns what went."""
    gone = []
    for f in (WEIGHTS, CHECKPOINT, "checkpoint.json"):
        p = Path(path) / f
        if p.exists():
            p.unlink()
            gone.append(p)
    return gone


def discard(path: Path) -> None:
    """Remove a run folder entirely."""
    shutil.rmtree(path, ignore_errors=True)
