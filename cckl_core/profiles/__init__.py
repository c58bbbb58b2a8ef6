"""Profiles: one TOML file of settings each (``paper``, ``quick``, ``smoke``).

A profile holds ``[defaults]`` for every run, ``[runs.<name>]`` overrides, ``[roles]``
saying which run plays which part in the notebooks, and ``[evaluation]`` sizes for the
notebooks' own computations. :func:`load` merges defaults into each run's config.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch

_DIR = Path(__file__).resolve().parent

#: Keys a run config may carry, with the value used when neither defaults nor the run set them.
RUN_KEYS: dict[str, object] = {
    "dataset": "cifar10", "n_train": 0, "n_test": 0, "fisher_n": 256,
    "model": None, "width": 1.0, "batch_norm": None, "objective": None,
    "epochs": 160, "lr": None, "milestones": [80, 120], "momentum": 0.9, "weight_decay": 1e-4,
    "batch_size": 128, "augment": True,
    "eps": 8 / 255, "step": 2 / 255, "attack_steps": 10, "beta": 5.0, "seed": 0,
    "optional": False,
}
OBJECTIVES = ("standard", "pgd_at", "trades")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    runs: dict[str, dict]
    roles: dict[str, object]
    evaluation: dict[str, object]

    def run(self, name: str) -> dict:
        """The full config of run ``name`` (a copy)."""
        if name not in self.runs:
            raise KeyError(f"profile {self.name!r} has no run {name!r}; its runs: {', '.join(self.runs)}")
        return dict(self.runs[name])

    def role(self, role: str):
        """The run name(s) that play ``role`` (e.g. ``'fig3_standard'``, ``'table1'``)."""
        if role not in self.roles:
            raise KeyError(f"profile {self.name!r} defines no role {role!r}; roles: {', '.join(self.roles)}")
        return self.roles[role]


def names() -> list[str]:
    """The profiles shipped with the package."""
    return sorted(p.stem for p in _DIR.glob("*.toml"))


def default_name() -> str:
    """``$CCKL_PROFILE`` if set, else ``paper`` with CUDA and ``quick`` without."""
    return os.environ.get("CCKL_PROFILE") or ("paper" if torch.cuda.is_available() else "quick")


def load(name: str | None = None) -> Profile:
    """Read profile ``name`` (default :func:`default_name`) and build every run's full config."""
    name = name or default_name()
    path = _DIR / f"{name}.toml"
    if not path.exists():
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(names())}")
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    defaults = raw.get("defaults", {})
    runs = {}
    for run_name, overrides in raw.get("runs", {}).items():
        cfg = {**RUN_KEYS, **defaults, **overrides}
        unknown = set(cfg) - set(RUN_KEYS)
        if unknown:
            raise ValueError(f"profile {name!r}, run {run_name!r}: unknown keys {sorted(unknown)}; valid keys: {sorted(RUN_KEYS)}")
        validate_run_config(cfg, where=f"profile {name!r}, run {run_name!r}")
        runs[run_name] = cfg
    return Profile(name, raw.get("description", ""), runs, raw.get("roles", {}), raw.get("evaluation", {}))


def validate_run_config(cfg: dict, where: str = "run config") -> None:
    """One-line errors for settings that cannot work."""
    from .. import models

    if cfg.get("model") not in models.names():
        raise ValueError(f"{where}: unknown model {cfg.get('model')!r}; valid: {', '.join(models.names())}")
    if cfg.get("objective") not in OBJECTIVES:
        raise ValueError(f"{where}: unknown objective {cfg.get('objective')!r}; valid: {', '.join(OBJECTIVES)}")
    if not 0 <= cfg["eps"] <= 1:
        raise ValueError(f"{where}: eps must be in [0, 1] (pixel units, e.g. 8/255), got {cfg['eps']}")
    if not cfg["step"] > 0:
        raise ValueError(f"{where}: attack step must be positive (e.g. 2/255), got {cfg['step']}")
    if cfg["attack_steps"] < 1:
        raise ValueError(f"{where}: attack_steps must be >= 1, got {cfg['attack_steps']}")
    if cfg["epochs"] < 1:
        raise ValueError(f"{where}: epochs must be >= 1, got {cfg['epochs']}")
    if cfg.get("lr") is None or not cfg["lr"] > 0:
        raise ValueError(f"{where}: lr must be positive, got {cfg.get('lr')}")
    if cfg["batch_size"] < 1:
        raise ValueError(f"{where}: batch_size must be >= 1, got {cfg['batch_size']}")
