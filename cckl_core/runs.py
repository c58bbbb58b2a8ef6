"""The run cache: one folder per trained run, keyed by its config, checked on every read.

A run lives in ``artifacts/<profile>/<name>-<key>/`` where ``key`` is
:attr:`~cckl_core.profiles.RunConfig.key` (12 hex digits of the SHA-256 of its config; the seed
is part of it, so every seed has its own folder). Files:

- ``config.json`` (the run's settings), ``environment.json`` (torch version, device, CPU and BLAS
  build, threads, git commit, host), ``dataset.json`` (data set name, classes and sizes: what a
  figure says without the data); each of the last two records the run's key;
- ``checkpoint-NNNN.safetensors`` and ``checkpoint.json`` (which one is current, its checksum, its
  epoch and the run's key): model, optimiser, schedule and history after the last finished epoch.
  A new checkpoint is written under a new name before ``checkpoint.json`` points to it, so a
  crash or a full disk leaves the previous one usable;
- ``history.json``: one record per epoch, epoch 0 being the initialisation (which records the
  run's key);
- ``model.safetensors`` and ``complete.json`` once finished. ``complete.json`` (sealed: it
  carries the checksum of its own content) records the run's key, the cache format and the
  SHA-256 of every file above;
- ``evaluations/``: cached evaluations (:mod:`cckl_core.evaluations`), each recording the run's
  key and the checksum of the weights it was computed from.

:func:`inspect` checks that every file agrees with the folder's key and with the others (the
config hashes to the key, each file matches its checksum, the history has one record per epoch
and names the key), so an edited, damaged or swapped file is reported, never served. Weights and
checkpoints may be deleted once the evaluations are computed: the run then reads as "complete,
weights removed" and still serves its config, history and evaluations (what the notebooks read).
Reading takes no lock, so a read-only artifacts root works; training (:mod:`cckl_core.trainer`)
takes the folder's lock.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from . import data as data_mod
from . import models, store
from .devices import resolve_device
from .paths import artifacts_root
from .profiles import Profile, ProfileError, RunConfig, config_key, run_config

#: Version of the run-folder layout; a folder written by another version is not served.
FORMAT = 2
#: Files whose checksums ``complete.json`` records and every read verifies.
RECORDED = ("config.json", "environment.json", "dataset.json", "history.json")
WEIGHTS = "model.safetensors"
CHECKPOINT_INDEX = "checkpoint.json"

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
    """A file of a finished run does not agree with its checksum, the run's key or the other files."""


class RunSkipped(RuntimeError):
    """An optional run whose data set cannot be had here."""


@dataclass
class Run:
    """A run read from the cache: its config, folder, history, data set info, manifest, and its
    model when the weights were asked for."""

    config: RunConfig
    path: Path
    model: nn.Module | None
    history: list[dict]
    complete: bool
    dataset_info: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    name = property(lambda self: self.config.name, doc="The run's name in its profile.")
    profile = property(lambda self: self.config.profile, doc="The profile the run belongs to.")
    seed = property(lambda self: self.config.seed, doc="The training seed.")
    key = property(lambda self: self.config.key, doc="The hash of the run's config (its cache key).")
    display_name = property(lambda self: self.config.display_name,
                            doc="``model (width w) objective`` for figure labels.")

    @property
    def dataset_name(self) -> str:
        """The data set's display name (e.g. "CIFAR-10 (JPEG q75 copy)"), recorded at training."""
        return self.dataset_info.get("name", self.config.dataset)

    @property
    def classes(self) -> list[str]:
        return list(self.dataset_info.get("classes", []))

    @property
    def model_sha256(self) -> str | None:
        """SHA-256 of the final weights (recorded in ``complete.json``): what evaluations are keyed by."""
        return self.manifest.get("files", {}).get(WEIGHTS)

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> data_mod.ImageData:
        """The run's data set split (a class-balanced subset of ``n``; ``None``: the run's own size)."""
        size = n if n is not None else (self.config.n_test if split == "test" else self.config.n_train)
        return data_mod.load(self.config.dataset, split, n=size or None, seed=seed)


def path_of(cfg: RunConfig) -> Path:
    """The folder of run ``cfg``: ``<artifacts root>/<profile>/<name>-<key>``. Both names must follow the one
    safe-name rule (:func:`cckl_core.profiles.check_safe_name`): a config made by hand cannot point outside."""
    from .profiles import check_safe_name
    check_safe_name(cfg.name, "run name")
    check_safe_name(cfg.profile, "profile name")
    return artifacts_root() / cfg.profile / cfg.folder


def train_command(cfg: RunConfig) -> str:
    """The command that trains and evaluates ``cfg``."""
    return f"python -m cckl_core evaluate --profile {cfg.profile} --run {cfg.name} --seed {cfg.seed}"


# --------------------------------------------------------------------------- state of a run folder
@dataclass
class State:
    """What a run folder holds, verified: ``state`` is one of the module's state constants."""

    state: str
    detail: str = ""
    config: RunConfig | None = None
    history: list[dict] | None = None
    dataset_info: dict | None = None
    manifest: dict | None = None


def _key_of(path: Path) -> str:
    return path.name.rsplit("-", 1)[-1]


def _agree(cfg_dict: dict, history: list, dataset_info: dict, env: dict, manifest: dict, key: str) -> str:
    """'' when a finished run's files agree with each other and with ``key``, else what disagrees."""
    if manifest.get("format") != FORMAT:
        return f"cache format {manifest.get('format')!r}, this code reads {FORMAT} (retrain it)"
    if manifest.get("key") != key:
        return f"complete.json names the key {manifest.get('key')!r}, the folder {key!r}"
    if config_key(cfg_dict) != key:
        return f"config.json hashes to {config_key(cfg_dict)}, not to the folder's key {key}"
    for name, record in (("environment.json", env), ("dataset.json", dataset_info)):
        if not isinstance(record, dict) or record.get("run_key") != key:
            return f"{name} belongs to another run"
    if not isinstance(history, list) or not history or not isinstance(history[0], dict):
        return "history.json holds no records"
    if history[0].get("run_key") != key:
        return "history.json came from another run"
    epochs = cfg_dict.get("epochs")
    if [rec.get("epoch") if isinstance(rec, dict) else None for rec in history] != list(range(len(history))) \
            or len(history) != epochs + 1 or manifest.get("epochs") != epochs:
        return f"history.json has {len(history) - 1} epochs where the run has {epochs}"
    return ""


def inspect(path: Path, expected: RunConfig | None = None) -> State:
    """The state of run folder ``path``, with every file checked against ``complete.json`` and the
    folder's key (and, when given, the expected config). Reads only; takes no lock."""
    path = Path(path)
    key = _key_of(path)
    if not (path / "complete.json").exists():
        try:
            history = json.loads((path / "history.json").read_text())
            return State(PARTIAL, f"{history[-1]['epoch']} epochs", history=history)
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return State(PARTIAL if (path / "config.json").exists() else NOT_STARTED)
    try:
        manifest = store.check_seal(store.read_json(path / "complete.json"), path / "complete.json")
        files = manifest["files"]
        parsed = {name: store.read_json(path / name, files[name]) for name in RECORDED}
        problem = _agree(parsed["config.json"], parsed["history.json"], parsed["dataset.json"],
                         parsed["environment.json"], manifest, key)
        if problem:
            raise store.CorruptedFileError(problem)
        cfg = _config_from_folder(path, parsed["config.json"], expected)
        if (path / WEIGHTS).exists():
            store.read_verified(path / WEIGHTS, files[WEIGHTS])
            state = COMPLETE
        else:
            state = NO_WEIGHTS
    except (store.CorruptedFileError, ProfileError, FileNotFoundError, KeyError, TypeError, AttributeError) as err:
        detail = f"missing {err}" if isinstance(err, (FileNotFoundError, KeyError)) else str(err)
        return State(CORRUPTED, detail)
    return State(state, "", cfg, parsed["history.json"], parsed["dataset.json"], manifest)


def _config_from_folder(path: Path, settings: dict, expected: RunConfig | None = None) -> RunConfig:
    """The :class:`RunConfig` a run folder's ``config.json`` describes: ``expected`` when it describes that very
    run (:meth:`~cckl_core.profiles.RunConfig.differences`), else one made from it (name and profile from its
    place). A config that is neither is a :class:`~cckl_core.store.CorruptedFileError`."""
    if expected is None:
        return run_config(path.name.rsplit("-", 1)[0], path.parent.name, settings, where=str(path / "config.json"))
    differs = expected.differences(settings)
    if differs:
        raise store.CorruptedFileError(f"config.json is not the profile's config of this run ({'; '.join(differs)})")
    return expected


def can_serve(st: State, weights: bool) -> bool:
    """Whether the inspected run ``st`` serves a request: complete, or without weights when none are asked for."""
    return st.state == COMPLETE or (st.state == NO_WEIGHTS and not weights)


def serve(st: State, path: Path, weights: bool, device) -> Run:
    """The :class:`Run` of the inspected run ``st`` at ``path`` (:func:`can_serve`), with its model, checked
    to be finite, in eval mode on ``device`` when ``weights``."""
    model = None
    if weights:
        model = models.of_run(st.config, st.dataset_info.get("num_classes"))
        model.load_state_dict(store.load_state(path / WEIGHTS, st.manifest["files"][WEIGHTS]))
        models.check_finite(model, f" in {path / WEIGHTS}")
        model = model.to(resolve_device(device)).eval()
    return Run(st.config, path, model, st.history, True, st.dataset_info, st.manifest)


def weights_removed_message(cfg: RunConfig, path: Path) -> str:
    return (f"run {cfg.label} is complete but its weights were removed from {path} (results unpacked from a "
            "bundle, or pruned after evaluation); its history and cached evaluations can be read, but this needs "
            "the model: copy model.safetensors back, or delete the folder to retrain")


def load(cfg: RunConfig, weights: bool = False, device: str | torch.device = "auto") -> Run:
    """The finished run ``cfg`` from the cache (its model too when ``weights``), verified.

    Raises :class:`RunNotFoundError` if it is not trained, :class:`RunCorruptedError` if a file
    disagrees with its checksum or the run's key, :class:`WeightsRemovedError` if the weights
    were asked for but removed.
    """
    path = path_of(cfg)
    st = inspect(path, cfg)
    if st.state == CORRUPTED:
        raise RunCorruptedError(f"run {cfg.label} at {path} is corrupted ({st.detail}); `{train_command(cfg)}` "
                                "rebuilds it")
    if st.state == NO_WEIGHTS and weights:
        raise WeightsRemovedError(weights_removed_message(cfg, path))
    if not can_serve(st, weights):
        raise RunNotFoundError(f"run {cfg.label} is not trained ({st.state}; looked in {path}); train it with "
                               f"`{train_command(cfg)}`")
    return serve(st, path, weights, device)


# --------------------------------------------------------------------------- writing a run folder
def write_start(path: Path, cfg: RunConfig, environment: dict, dataset_info: dict) -> None:
    """The files a run folder holds from its first epoch on: config, environment, data set info."""
    store.atomic_write_json(path / "config.json", cfg.as_dict())
    store.atomic_write_json(path / "environment.json", {**environment, "run_key": cfg.key})
    store.atomic_write_json(path / "dataset.json", {**dataset_info, "run_key": cfg.key})


def save_checkpoint(path: Path, cfg: RunConfig, state: dict, epoch: int) -> None:
    """Write the training state after ``epoch`` as ``checkpoint-<epoch>.safetensors``, then point
    ``checkpoint.json`` at it, then delete older checkpoints: at every moment one valid checkpoint
    is named. ``state`` holds ``model``, ``optimizer``, ``scheduler`` and ``history``."""
    name = f"checkpoint-{epoch:04d}.safetensors"
    digest = store.save_state(path / name, {**state, "epoch": epoch})
    store.atomic_write_json(path / CHECKPOINT_INDEX, {"file": name, "sha256": digest, "epoch": epoch,
                                                      "run_key": cfg.key})
    for old in path.glob("checkpoint-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(path: Path, cfg: RunConfig, device: torch.device) -> dict | None:
    """The state :func:`save_checkpoint` wrote last (verified: its checksum, the run's key, one history
    record per epoch), or None when there is none. An unusable checkpoint is reported and removed."""
    if not (path / CHECKPOINT_INDEX).exists():
        return None
    try:
        meta = store.read_json(path / CHECKPOINT_INDEX)
        if meta.get("run_key") != cfg.key or "/" in str(meta.get("file", "/")):
            raise store.CorruptedFileError("checkpoint.json belongs to another run")
        ckpt = store.load_state(path / meta["file"], meta["sha256"], device)
        history = ckpt["history"]
        if (ckpt["epoch"] != meta["epoch"] or history[0].get("run_key") != cfg.key
                or [r["epoch"] for r in history] != list(range(ckpt["epoch"] + 1))):
            raise store.CorruptedFileError("its history does not match its epoch or run")
        return ckpt
    except (store.CorruptedFileError, OSError, KeyError, TypeError, IndexError, AttributeError) as err:
        print(f"[cckl] the checkpoint of {path} is unusable ({err}); training {cfg.name} from the start", flush=True)
        remove_checkpoints(path)
        return None


def remove_checkpoints(path: Path) -> list[Path]:
    """Delete every checkpoint file of a run folder; returns what went."""
    gone = []
    for p in [*Path(path).glob("checkpoint-*.safetensors"), Path(path) / CHECKPOINT_INDEX]:
        if p.exists():
            p.unlink()
            gone.append(p)
    return gone


def finish(path: Path, cfg: RunConfig, model: nn.Module, history: list[dict], dataset_info: dict) -> Run:
    """Write the history and the weights, then the sealed ``complete.json`` with the checksum of every file."""
    files = {WEIGHTS: store.save_state(path / WEIGHTS, {k: v.contiguous() for k, v in model.state_dict().items()}),
             "history.json": store.atomic_write_json(path / "history.json", history)}
    for f in RECORDED:
        files.setdefault(f, store.sha256_file(path / f))
    manifest = store.sealed({"format": FORMAT, "key": cfg.key, "files": files, "epochs": cfg.epochs,
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    store.atomic_write_json(path / "complete.json", manifest)
    return Run(cfg, path, model.eval(), history, True, {**dataset_info, "run_key": cfg.key}, manifest)


def remove_weights(path: Path) -> list[Path]:
    """Delete the weights and checkpoints of a finished run (what a bundle leaves out); returns what went."""
    gone = remove_checkpoints(path)
    if (Path(path) / WEIGHTS).exists():
        (Path(path) / WEIGHTS).unlink()
        gone.append(Path(path) / WEIGHTS)
    return gone


def discard(path: Path) -> None:
    """Remove a run folder entirely."""
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- listing
def seeds_present(profile: Profile, name: str) -> list[int]:
    """Seeds of run ``name`` with a folder in the cache (any state), found by scanning
    ``artifacts/<profile>/<name>-*``: a folder counts when its config is the profile's with that seed."""
    found = set()
    for folder in (artifacts_root() / profile.name).glob(f"{name}-*"):
        try:
            seed = json.loads((folder / "config.json").read_text())["seed"]
            if path_of(profile.run(name, seed)) == folder:
                found.add(seed)
        except (OSError, ValueError, KeyError, TypeError, ProfileError):
            continue
    return sorted(found)


def seed_group(profile: Profile, run: Run) -> list[Run]:
    """``run`` and every other finished seed of it in the cache (``run`` first), without weights:
    what the notebooks average over when a profile was trained with several seeds."""
    group = [run]
    for seed in seeds_present(profile, run.name):
        if seed != run.seed:
            try:
                group.append(load(profile.run(run.name, seed)))
            except RunNotFoundError:
                continue
    return group


def status(profile: Profile, seeds: list[int] | None = None) -> list[dict]:
    """One row per (run, seed) of ``profile``: the state :func:`load` finds, epochs done, last metrics.

    Seeds: the profile's ``seeds`` and any other seed found in the cache (or ``seeds``).
    """
    rows = []
    for name in profile.runs:
        chosen = seeds if seeds is not None else sorted(set(profile.seeds_of(name)) | set(seeds_present(profile, name)))
        for cfg in profile.select([name], chosen):
            seed, path = cfg.seed, path_of(cfg)
            st = inspect(path, cfg)
            row = {"run": name, "seed": seed, "config": cfg, "model": cfg.model, "objective": cfg.objective,
                   "dataset": cfg.dataset, "epochs": f"0/{cfg.epochs}", "state": st.state, "detail": st.detail,
                   "test_acc": None, "robust_acc": None, "fisher_fro_mean": None, "path": str(path)}
            if st.history:
                last = st.history[-1]
                row.update(epochs=f"{last.get('epoch', '?')}/{cfg.epochs}", test_acc=last.get("test_acc"),
                           robust_acc=last.get("robust_acc"), fisher_fro_mean=last.get("fisher_fro_mean"))
            rows.append(row)
    return rows
