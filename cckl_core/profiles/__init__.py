"""Profiles: one TOML file of settings each (``paper``, ``gpu``, ``quick``, ``smoke``).

A profile holds ``[defaults]`` for every run, ``[runs.<name>]`` overrides, ``[roles]``
saying which run plays which part in the notebooks, ``[evaluation]`` sizes of the cached
evaluations (see :mod:`cckl_core.evaluations`) and optionally ``seeds = [...]`` (each run
is trained once per seed; the first is the default). :func:`load` merges defaults into each
run's config and type-checks every key: a mistake names the key and the file.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_DIR = Path(__file__).resolve().parent

#: Keys a run config may carry, with the value used when neither defaults nor the run set them.
RUN_KEYS: dict[str, object] = {
    "dataset": "cifar10", "n_train": 0, "n_test": 0, "fisher_n": 256, "robust_n": 500,
    "model": None, "width": 1.0, "batch_norm": None, "objective": None,
    "epochs": 160, "lr": None, "milestones": [80, 120], "momentum": 0.9, "weight_decay": 1e-4,
    "batch_size": 128, "augment": True, "precision": "fp32",
    "eps": 8 / 255, "step": 2 / 255, "attack_steps": 10, "beta": 5.0, "seed": 0,
    "optional": False,
}
OBJECTIVES = ("standard", "pgd_at", "trades")
PRECISIONS = ("fp32", "bf16")

#: ``[evaluation]`` keys, their defaults and meaning (see cckl_core.evaluations).
EVALUATION_KEYS: dict[str, object] = {
    "n_eval": 0,          # test images attacked for Table 1 (0 = the run's whole test set)
    "pgd_steps": 20,      # PGD and CW steps of Table 1 / Figure 9 (step 2/255, eps 8/255)
    "autoattack": False,  # AutoAttack beside PGD/CW (beyond the paper)
    "n_autoattack": 0,    # images for AutoAttack
    "n_pairs": 25896,     # cross-class test pairs for Figure 5
    "n_table2": 1000,     # test points for Table 2
    "n_fig9": 1000,       # test points for Figure 9
    "n_eq12": 64,         # test points for the eq. 12 check
    "n_theorem": 0,       # test images for the Theorem 3.1 terms (0 = the run's whole test set)
    "n_boot": 2000,       # bootstrap resamples for the intervals of the claims
}
_TOP_LEVEL = {"description", "seeds", "defaults", "runs", "roles", "evaluation"}
_ROLES = ("fig2_standard", "fig6_cifar10", "fig6_cifar100", "fig3_standard", "fig3_pgd_at", "fig3_trades",
          "fig8_standard", "fig8_pgd_at", "fig8_trades", "fig9_robust", "table2", "table1", "fig5")
_LIST_ROLES = {"table1": 5, "fig5": 2}


class ProfileError(ValueError):
    """A profile file that cannot be used as it is; the message names the file and the key."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    runs: dict[str, dict]
    roles: dict[str, object]
    evaluation: dict[str, object]
    seeds: list[int] = field(default_factory=lambda: [0])
    path: Path | None = None

    def run(self, name: str, seed: int | None = None) -> dict:
        """The full config of run ``name`` (a copy), with ``seed`` replacing the profile's when given."""
        if name not in self.runs:
            raise KeyError(f"profile {self.name!r} has no run {name!r}; its runs: {', '.join(self.runs)}")
        cfg = dict(self.runs[name])
        if seed is not None:
            cfg["seed"] = _check_int("seed", seed, 0, f"run {name!r}")
        return cfg

    def role(self, role: str):
        """The run name(s) that play ``role`` (e.g. ``'fig3_standard'``, ``'table1'``)."""
        if role not in self.roles:
            raise KeyError(f"profile {self.name!r} defines no role {role!r}; roles: {', '.join(self.roles)}")
        return self.roles[role]

    def roles_of(self, run: str) -> list[str]:
        """Every role that run ``run`` plays."""
        return [r for r, names in self.roles.items() if run == names or (isinstance(names, list) and run in names)]


def names() -> list[str]:
    """The profiles shipped with the package."""
    return sorted(p.stem for p in _DIR.glob("*.toml"))


def default_name() -> str:
    """``$CCKL_PROFILE`` if set, else ``paper`` with CUDA and ``quick`` without."""
    if os.environ.get("CCKL_PROFILE"):
        return os.environ["CCKL_PROFILE"]
    import torch
    return "paper" if torch.cuda.is_available() else "quick"


def load(name: str | None = None) -> Profile:
    """Read profile ``name`` (default :func:`default_name`) and build every run's full config."""
    name = name or default_name()
    if not isinstance(name, str) or name not in names():
        raise ProfileError(f"unknown profile {name!r}; valid profiles: {', '.join(names())}")
    return parse(_DIR / f"{name}.toml")


def parse(path: Path) -> Profile:
    """Read and check one profile file (the name is the file's stem)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: TOML syntax error: {err}") from None
    except OSError as err:
        raise ProfileError(f"cannot read profile {path}: {err.strerror}") from None
    where = str(path)
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise ProfileError(f"{where}: unknown section(s) or key(s) {sorted(unknown)}; valid: {sorted(_TOP_LEVEL)}")
    for section in ("defaults", "runs", "roles", "evaluation"):
        if not isinstance(raw.get(section, {}), dict):
            raise ProfileError(f"{where}: [{section}] must be a table")
    defaults = raw.get("defaults", {})
    bad = set(defaults) - set(RUN_KEYS)
    if bad:
        raise ProfileError(f"{where}: [defaults] has unknown keys {sorted(bad)}; valid keys: {sorted(RUN_KEYS)}")
    runs = {}
    for run_name, overrides in raw.get("runs", {}).items():
        if not isinstance(overrides, dict):
            raise ProfileError(f"{where}: runs.{run_name} must be a table")
        cfg = {**RUN_KEYS, **defaults, **overrides}
        bad = set(cfg) - set(RUN_KEYS)
        if bad:
            raise ProfileError(f"{where}, run {run_name!r}: unknown keys {sorted(bad)}; valid keys: {sorted(RUN_KEYS)}")
        runs[run_name] = validate_run_config(cfg, where=f"{where}, run {run_name!r}")
    if not runs:
        raise ProfileError(f"{where}: no [runs.<name>] tables")
    seeds = raw.get("seeds", [runs[next(iter(runs))]["seed"]])
    if not isinstance(seeds, list) or not seeds:
        raise ProfileError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
    seeds = [_check_int("seeds", s, 0, where) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ProfileError(f"{where}: seeds has duplicates: {seeds}")
    roles = _check_roles(raw.get("roles", {}), runs, where)
    evaluation = _check_evaluation(raw.get("evaluation", {}), where)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{where}: description must be a string")
    return Profile(path.stem, description, runs, roles, evaluation, seeds, path)


def _check_roles(roles: dict, runs: dict, where: str) -> dict:
    for role, value in roles.items():
        if role not in _ROLES:
            raise ProfileError(f"{where}: unknown role {role!r} in [roles]; valid roles: {', '.join(_ROLES)}")
        names_ = value if isinstance(value, list) else [value]
        if role in _LIST_ROLES and (not isinstance(value, list) or len(value) != _LIST_ROLES[role]):
            raise ProfileError(f"{where}: role {role!r} must be a list of {_LIST_ROLES[role]} run names")
        if role not in _LIST_ROLES and not isinstance(value, str):
            raise ProfileError(f"{where}: role {role!r} must be one run name (a string)")
        for n in names_:
            if n not in runs:
                raise ProfileError(f"{where}: role {role!r} names run {n!r}, which the profile does not define; "
                                   f"its runs: {', '.join(runs)}")
    missing = [r for r in _ROLES if r not in roles]
    if missing:
        raise ProfileError(f"{where}: [roles] lacks {', '.join(missing)} (every notebook role needs a run)")
    return roles


def _check_evaluation(ev: dict, where: str) -> dict:
    bad = set(ev) - set(EVALUATION_KEYS)
    if bad:
        raise ProfileError(f"{where}: [evaluation] has unknown keys {sorted(bad)}; valid: {sorted(EVALUATION_KEYS)}")
    out = {**EVALUATION_KEYS, **ev}
    for key, value in out.items():
        if key == "autoattack":
            _check_bool(f"evaluation.{key}", value, where)
        else:
            minimum = 1 if key in ("pgd_steps", "n_pairs", "n_table2", "n_fig9", "n_eq12", "n_boot") else 0
            _check_int(f"evaluation.{key}", value, minimum, where)
    return out


# --------------------------------------------------------------------------- run configs
def _check_int(key: str, value, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{where}: {key} must be a whole number, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ProfileError(f"{where}: {key} must be >= {minimum}, got {value}")
    return value


def _check_float(key: str, value, where: str, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileError(f"{where}: {key} must be a number, got {value!r} ({type(value).__name__})")
    if value < low or value > high or (low_open and value == low):
        if low_open and low == 0 and high == math.inf:
            raise ProfileError(f"{where}: {key} must be positive, got {value}")
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ProfileError(f"{where}: {key} must be in {bounds}, got {value}")
    return float(value)


def _check_bool(key: str, value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(f"{where}: {key} must be true or false, got {value!r} ({type(value).__name__})")
    return value


def _check_choice(key: str, value, choices, where: str) -> str:
    if value not in choices:
        raise ProfileError(f"{where}: unknown {key} {value!r}; valid: {', '.join(map(str, choices))}")
    return value


def validate_run_config(cfg: dict, where: str = "run config") -> dict:
    """Type- and range-check a full run config; one-line :class:`ProfileError` naming the key. Returns it."""
    from .. import models

    if not isinstance(cfg.get("model"), str):
        raise ProfileError(f"{where}: model must be a model name; valid: {', '.join(models.names())}")
    _check_choice("model", cfg["model"], models.names(), where)
    _check_choice("objective", cfg.get("objective"), OBJECTIVES, where)
    _check_choice("precision", cfg.get("precision"), PRECISIONS, where)
    if not isinstance(cfg.get("dataset"), str) or not cfg["dataset"]:
        raise ProfileError(f"{where}: dataset must be 'cifar10', 'cifar100', 'synthetic' or 'folder:<path>'")
    for key in ("n_train", "n_test"):
        _check_int(key, cfg[key], 0, where)
    for key in ("fisher_n", "robust_n", "epochs", "batch_size", "attack_steps"):
        _check_int(key, cfg[key], 1, where)
    _check_int("seed", cfg["seed"], 0, where)
    if cfg.get("lr") is None:
        raise ProfileError(f"{where}: lr must be set (a positive number)")
    _check_float("lr", cfg["lr"], where, 0.0, low_open=True)
    _check_float("width", cfg["width"], where, 0.0, low_open=True)
    _check_float("momentum", cfg["momentum"], where, 0.0, 1.0)
    _check_float("weight_decay", cfg["weight_decay"], where, 0.0)
    _check_float("beta", cfg["beta"], where, 0.0)
    _check_float("eps", cfg["eps"], where, 0.0, 1.0)
    _check_float("step", cfg["step"], where, 0.0, 1.0, low_open=True)
    if cfg["batch_norm"] is not None:
        _check_bool("batch_norm", cfg["batch_norm"], where)
        if cfg["batch_norm"] is False and cfg["model"].startswith("resnet"):
            raise ProfileError(f"{where}: batch_norm = false but {cfg['model']} always has BatchNorm; "
                               "leave batch_norm unset (VGG13 models default to none)")
    if cfg["model"] in ("resnet20x1", "resnet32x10") and cfg["width"] != 1.0:
        raise ProfileError(f"{where}: {cfg['model']} has its width fixed by its name; use model = "
                           f"\"{cfg['model'][:8]}\" with width = {cfg['width']}")
    _check_bool("augment", cfg["augment"], where)
    _check_bool("optional", cfg["optional"], where)
    milestones = cfg["milestones"]
    if not isinstance(milestones, list):
        raise ProfileError(f"{where}: milestones must be a list of epochs, e.g. [80, 120]; got {milestones!r}")
    for m in milestones:
        _check_int("milestones", m, 1, where)
    if milestones != sorted(milestones):
        raise ProfileError(f"{where}: milestones must be increasing, got {milestones}")
    return cfg
