"""Profiles: one TOML file of settings each (``paper``, ``gpu``, ``quick``, ``smoke``), parsed once.

A profile file holds ``[defaults]`` for every run, ``[runs.<name>]`` overrides, ``[roles]``
saying which run plays which part in the notebooks, ``[evaluation]`` sizes of the cached
evaluations (see :mod:`cckl_core.evaluations`), optionally ``seeds = [...]`` (each run is
trained once per seed; the first is every run's default ``seed``, and a ``seed`` that differs is
refused) and ``[seed_spread]`` (the seed-to-seed spread
of the capacity-study effects, measured once, see :mod:`cckl_core.paper.capacity_study`) and
``[sizing]`` (the seconds each run was sized to take on a named device; ``cckl plan`` prints it).

:func:`load` parses and checks a file once into frozen objects: a :class:`Profile` holding one
:class:`RunConfig` per run and one :class:`EvaluationSettings`. Those objects, not names and
dicts, travel through the package (runs, evaluations, plan, costs, bundle, launch). A mistake in
a file is one :class:`ProfileError` line naming the file and the key. Profile and run names become
folder names, so they follow one rule (:data:`SAFE_NAME`, also the bundle's).

Each run setting is checked in one place, by the :class:`RunConfig` itself (however it is made: parsed,
``dataclasses.replace``'d, :func:`rehearsal`), in the words of :mod:`cckl_core.checks`; a seed by
:func:`check_seed` (one bound everywhere: the command line's options too); runs and seeds are chosen
by :meth:`Profile.select`; a stored config is compared with the profile's by
:meth:`RunConfig.differences`.

Two default-profile rules, each written here once: :func:`default_to_compute` (what ``make
paper`` and the command line use: ``$CCKL_PROFILE``, else ``paper`` with CUDA and ``quick``
without) and :func:`default_to_render` (what a notebook shows: ``$CCKL_PROFILE``, else a profile
whose results are present).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterable, Iterator, Mapping

from .. import checks

_DIR = Path(__file__).resolve().parent

OBJECTIVES = ("standard", "pgd_at", "trades")
PRECISIONS = ("fp32", "bf16")
#: Seeds are whole numbers in [0, MAX_SEED] (torch, numpy and the per-epoch seeds derived from them take them);
#: :func:`check_seed` is the one check of a training or sampling seed.
MAX_SEED = 2 ** 32 - 1
#: The order in which profiles are listed and preferred (for rendering): the largest first.
ORDER = ("paper", "gpu", "quick", "smoke")
#: Suffix of a profile derived from another for a CPU rehearsal (see :func:`rehearsal`).
REHEARSAL = "-rehearsal"

#: ``[evaluation]`` keys, their defaults and meaning (see cckl_core.evaluations).
EVALUATION_DOC: dict[str, str] = {
    "n_eval": "test images attacked for Table 1 (0 = the run's whole test set)",
    "pgd_steps": "PGD and CW steps of Table 1 / Figure 9 (step 2/255, eps 8/255)",
    "autoattack": "AutoAttack beside PGD/CW (beyond the paper)",
    "n_autoattack": "images for AutoAttack",
    "n_pairs": "cross-class test pairs for Figure 5",
    "n_table2": "test points for Table 2",
    "n_fig9": "test points for Figure 9",
    "n_eq12": "test points for the eq. 12 check",
    "n_theorem": "test images for the Theorem 3.1 terms (0 = the run's whole test set)",
    "n_boot": "bootstrap resamples for the intervals of the claims",
}
#: Roles a profile may give a run (``[roles]``); the list roles name exactly that many runs.
ROLES = ("fig2_standard", "fig6_cifar10", "fig6_cifar100", "fig3_standard", "fig3_pgd_at", "fig3_trades",
         "fig8_standard", "fig8_pgd_at", "fig8_trades", "fig9_robust", "table2", "table1", "fig5")
LIST_ROLES = {"table1": 5, "fig5": 2}
_TOP_LEVEL = {"description", "seeds", "defaults", "runs", "roles", "evaluation", "seed_spread", "sizing"}
#: The one rule for a name that becomes a path (a profile's, a run's: ``artifacts/<profile>/<run>-<key>/``):
#: a letter or digit, then letters, digits, ``_`` or ``-``, at most 100 characters. The bundle's member
#: names use the same pattern, so every run a profile can hold can travel in a bundle.
SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"
_SAFE_NAME = re.compile(SAFE_NAME)
#: The most seconds a ``[sizing]`` entry may give (about 30 years): sums and margins stay finite.
MAX_SIZING_S = 1e9
#: The largest ``sizing.margin``.
MAX_MARGIN = 100.0


class ProfileError(ValueError):
    """A profile (or a setting) that cannot be used as it is; the message names the file and the key."""


class SettingError(ProfileError):
    """A setting (of a run, of ``[evaluation]``) of the wrong type or out of its range; ``problem`` says what,
    without saying where."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.problem = problem


@contextlib.contextmanager
def _at(where: str) -> Iterator[None]:
    """A check's ``ValueError`` (a wrong type included: :class:`cckl_core.checks.ArgumentTypeError`) as one
    :class:`ProfileError` line that starts with ``where``."""
    try:
        yield
    except SettingError as err:
        raise ProfileError(f"{where}: {err.problem}") from None
    except ProfileError:
        raise
    except ValueError as err:
        raise ProfileError(f"{where}: {err}") from None


def check_seed(value: object, name: str = "seed") -> int:
    """``value`` if it is a seed (training or sampling): a whole number in [0, :data:`MAX_SEED`]. The one check
    of a seed: run settings, ``seeds`` lists, :meth:`Profile.select` and the command line's options use it."""
    seed = checks.integer(value, name)
    if not 0 <= seed <= MAX_SEED:
        bound = ">= 0" if seed < 0 else f"<= {MAX_SEED} (the largest seed torch and the notebooks take)"
        raise ValueError(f"{name} must be {bound}, got {seed}")
    return seed


def check_safe_name(name: object, what: str, where: str = "") -> str:
    """``name`` if it follows :data:`SAFE_NAME` (it becomes a folder name), else one :class:`ProfileError`."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        at = f"{where}: " if where else ""
        raise ProfileError(f"{at}{what} {name!r} cannot be used as a file or folder name: a name must start with a letter or "
                           "digit and hold only letters, digits, '_' and '-' (at most 100 characters); rename it")
    return name


# --------------------------------------------------------------------------- the frozen objects
@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run. ``name`` and ``profile`` say where it lives
    (``artifacts/<profile>/<name>-<key>/``) and ``optional`` whether a missing data set skips it;
    neither is part of :attr:`key`, the hash of every other field. Every field is checked when the
    config is made (:meth:`__post_init__`); a mistake is a :class:`SettingError`."""

    name: str
    profile: str
    model: str
    objective: str
    lr: float
    dataset: str = "cifar10"
    n_train: int = 0               # training images, class-balanced subset (0: all)
    n_test: int = 0                # test images for accuracy, CE and CCKL per epoch (0: all)
    fisher_n: int = 256            # fixed test images for the per-epoch Fisher statistics
    robust_n: int = 500            # fixed test images for the per-epoch PGD-10 accuracy
    width: float = 1.0             # width multiplier of every conv layer
    batch_norm: bool | None = None  # VGG13 only; None: the model's own default (VGG none, ResNet always)
    epochs: int = 160
    milestones: tuple[float, ...] = (80, 120)  # lr / 10 at these epochs (fractions allowed: within an epoch)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    augment: bool = True           # random crop 32 (padding 4) + horizontal flip
    precision: str = "fp32"        # "bf16": autocast for the training step and the attacks
    eps: float = 8 / 255           # L-inf budget of the training attack (pixel units)
    step: float = 2 / 255
    attack_steps: int = 10
    beta: float = 5.0              # TRADES weight of the KL term
    seed: int = 0
    optional: bool = False

    def __post_init__(self) -> None:
        """Check every field (:func:`_checked_settings`), however the config is made (:func:`run_config`,
        ``dataclasses.replace``, :meth:`with_seed`); store the values as checked."""
        try:
            settings = _checked_settings(self)
        except ValueError as err:
            raise SettingError(f"run {self.name!r} of profile {self.profile!r}", str(err)) from None
        for key, value in settings.items():
            object.__setattr__(self, key, value)

    def as_dict(self) -> dict:
        """The run's settings as stored in ``config.json`` (every field but ``name`` and ``profile``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "profile")}
        out["milestones"] = list(self.milestones)
        return out

    @property
    def key(self) -> str:
        """First 12 hex digits of SHA-256 of :meth:`as_dict` as sorted JSON, ``optional`` left out."""
        return config_key(self.as_dict())

    @property
    def folder(self) -> str:
        """The run folder's name: ``<name>-<key>``."""
        return f"{self.name}-{self.key}"

    @property
    def label(self) -> str:
        """``name`` with ``(seed S)``, for messages."""
        return f"{self.profile}/{self.name} (seed {self.seed})"

    @property
    def display_name(self) -> str:
        """``model (width w) objective``, for figure labels."""
        width = "" if self.model in FIXED_WIDTH else f" w{self.width:g}"
        return f"{self.model}{width} {self.objective}"

    @property
    def num_classes(self) -> int:
        """Classes of the data set when it is known without reading it (CIFAR-100: 100, else 10)."""
        return 100 if self.dataset == "cifar100" else 10

    def with_seed(self, seed: int | None) -> "RunConfig":
        """The same run trained with another seed (``None``: this one), checked like every field."""
        if seed is None or seed == self.seed:
            return self
        return replace(self, seed=seed)

    def differences(self, settings: object) -> list[str]:
        """Where ``settings`` (a run folder's ``config.json`` as read) differs from this run's :meth:`as_dict`, one
        ``"key: <theirs>, not <ours>"`` per key, sorted; ``[]`` when it describes this very run. The one
        comparison of a stored config with the profile's (:func:`cckl_core.runs.inspect`, the bundle's check)."""
        if not isinstance(settings, Mapping):
            return [f"not a table of settings but {type(settings).__name__}"]
        ours = json.loads(json.dumps(self.as_dict()))
        return [f"{k}: {settings.get(k, 'missing')!r}, not {ours.get(k, 'missing')!r}"
                for k in sorted(set(ours) | set(settings)) if k not in ours or k not in settings or ours[k] != settings[k]]

    def check_fits_test_set(self, n_images: int) -> None:
        """Raise unless the fixed per-epoch subsets (``fisher_n``, ``robust_n``) fit a test split of ``n_images``
        (known once the data set is read; ``n_test = 0`` takes the whole split)."""
        for key in ("fisher_n", "robust_n"):
            n = getattr(self, key)
            if n > n_images:
                raise ProfileError(f"{key}={n} is more than the run's test set ({n_images} images; n_test={self.n_test}): "
                                   f"lower {key} or raise n_test")


def config_key(config: Mapping) -> str:
    """The cache key of a run's settings: SHA-256 of their sorted JSON (``optional`` excluded), 12 hex digits."""
    blob = json.dumps({k: v for k, v in config.items() if k != "optional"}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


#: Keys a run may set, with their defaults (those of :class:`RunConfig`; ``None``: required).
RUN_KEYS: dict[str, object] = {f.name: (None if f.default is MISSING else f.default)
                               for f in fields(RunConfig) if f.name not in ("name", "profile")}


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``[evaluation]`` section: sizes of the cached evaluations (see :data:`EVALUATION_DOC`)."""

    n_eval: int = 0
    pgd_steps: int = 20
    autoattack: bool = False
    n_autoattack: int = 0
    n_pairs: int = 25896
    n_table2: int = 1000
    n_fig9: int = 1000
    n_eq12: int = 64
    n_theorem: int = 0
    n_boot: int = 2000

    def __post_init__(self) -> None:
        """Check every field, however the settings are made (parsed, or ``dataclasses.replace``'d by
        :func:`rehearsal`): ``autoattack`` a flag, the sizes whole numbers (those of :data:`_AT_LEAST_ONE` >= 1)."""
        try:
            for key, value in asdict(self).items():
                if key == "autoattack":
                    checks.flag(value, f"evaluation.{key}")
                else:
                    checks.integer(value, f"evaluation.{key}", 1 if key in _AT_LEAST_ONE else 0)
        except ValueError as err:
            raise SettingError("[evaluation]", str(err)) from None

    def __getitem__(self, key: str):
        return getattr(self, key)

    def as_dict(self) -> dict:
        return asdict(self)


#: ``[evaluation]`` sizes that must be at least 1 (the others may be 0).
_AT_LEAST_ONE = ("pgd_steps", "n_pairs", "n_table2", "n_fig9", "n_eq12", "n_boot")
EVALUATION_KEYS: dict[str, object] = EvaluationSettings().as_dict()


@dataclass(frozen=True)
class SeedSpread:
    """``[seed_spread]``: the standard deviation over training seeds of each capacity-study effect
    (by claim id), measured once on ``seeds`` (``how``: the command and machine)."""

    sd: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    seeds: tuple[int, ...] = ()
    how: str = ""


@dataclass(frozen=True)
class Sizing:
    """``[sizing]``: what the profile was sized to take on ``device``, worked out from measured
    throughputs (the arithmetic is in the profile file's comments). ``runs`` maps a run to its
    (training, cached evaluations) seconds. Expected wall time, one run after another:
    ``sum(training + evaluations) + overhead_s``; with the margin on the throughputs:
    ``margin * sum(training + evaluations) + overhead_s``."""

    device: str
    runs: Mapping[str, tuple[float, float]]
    overhead_s: float = 0.0
    margin: float = 1.0

    def compute_s(self) -> float:
        """Seconds of training and evaluation summed over the sized runs."""
        return sum(train + evals for train, evals in self.runs.values())

    def expected_s(self) -> float:
        return self.compute_s() + self.overhead_s

    def with_margin_s(self) -> float:
        return self.margin * self.compute_s() + self.overhead_s


@dataclass(frozen=True)
class Profile:
    """A parsed, checked profile: runs by name, roles, evaluation settings, seeds, seed spread."""

    name: str
    description: str
    runs: Mapping[str, RunConfig]
    roles: Mapping[str, str | tuple[str, ...]]
    evaluation: EvaluationSettings
    seeds: tuple[int, ...] = (0,)
    spread: SeedSpread = field(default_factory=SeedSpread)
    path: Path | None = None
    sizing: Sizing | None = None
    #: Training seeds of a run that sets its own (``seeds = [...]`` in its ``[runs.<name>]`` table).
    run_seeds: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def seeds_of(self, name: str) -> tuple[int, ...]:
        """The training seeds ``make paper`` trains run ``name`` with: its own ``seeds``, else the profile's."""
        return self.run_seeds.get(name, self.seeds)

    def run(self, name: str, seed: int | None = None) -> RunConfig:
        """The config of run ``name``, trained with ``seed`` (default: the run's first seed), checked by
        :meth:`select`."""
        return self.select([name], None if seed is None else [seed])[0]

    def select(self, names: Iterable[str] | None = None, seeds: Iterable[int] | None = None) -> list[RunConfig]:
        """The config of each run of ``names`` (default: every run, in profile order) trained with each of ``seeds``
        (default: each run's own :meth:`seeds_of`), run by run. The one choice of runs and seeds: an empty list,
        a name or seed given twice (a mistake, not a wish to run it twice), an unknown run or a seed that
        :func:`check_seed` refuses is one :class:`ProfileError` line."""
        names = list(self.runs) if names is None else list(names)
        seeds = None if seeds is None else list(seeds)
        for what, items in (("run", names), ("seed", seeds)):
            if items is not None and not items:
                raise ProfileError(f"no {what}s given")
            twice = sorted({str(i) for i in items or [] if items.count(i) > 1})
            if twice:
                raise ProfileError(f"{what} {', '.join(twice)} given twice; name each once")
        for n in names:
            if n not in self.runs:
                raise ProfileError(f"profile {self.name!r} has no run {n!r}; its runs: {', '.join(self.runs)}")
        with _at(f"profile {self.name!r}"):
            seeds = None if seeds is None else [check_seed(s) for s in seeds]
        return [self.runs[n].with_seed(s) for n in names for s in (seeds or self.seeds_of(n))]

    #: Every (run, seed) of the profile, or of ``names`` x ``seeds``: :meth:`select`.
    configs = select

    def role(self, role: str) -> str | tuple[str, ...]:
        """The run name(s) that play ``role`` (e.g. ``'fig3_standard'``, ``'table1'``)."""
        if role not in self.roles:
            raise ProfileError(f"profile {self.name!r} gives no run the role {role!r}; its roles: "
                               f"{', '.join(self.roles) or 'none'}")
        return self.roles[role]

    def has_roles(self, roles: Iterable[str]) -> bool:
        return all(r in self.roles for r in roles)

    def roles_of(self, run: str) -> list[str]:
        """Every role that run ``run`` plays."""
        return [r for r, names in self.roles.items() if run == names or (isinstance(names, tuple) and run in names)]

    def runs_for(self, roles: Iterable[str]) -> list[str]:
        """The runs that play any of ``roles`` (in the order the roles name them, each once)."""
        out: list[str] = []
        for role in roles:
            value = self.roles.get(role, ())
            for n in (value,) if isinstance(value, str) else value:
                if n not in out:
                    out.append(n)
        return out


# --------------------------------------------------------------------------- loading
def _usable_stem(stem: str) -> bool:
    """Whether a profile file's name can name a profile: a :data:`SAFE_NAME` that does not end like a
    derived rehearsal (``<name>-rehearsal`` is :func:`rehearsal` of ``<name>``, never a file)."""
    return bool(_SAFE_NAME.fullmatch(stem)) and not stem.endswith(REHEARSAL)


def names() -> list[str]:
    """The profiles shipped with the package, largest first (a file whose name cannot name a profile is
    not one: asking for it by name says why, :func:`check_name`)."""
    found = {p.stem for p in _DIR.glob("*.toml") if _usable_stem(p.stem)}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def check_name(name: object, source: str = "") -> str:
    """``name`` if it is a profile (or the rehearsal of one), else one :class:`ProfileError` line."""
    where = f" (from {source})" if source else ""
    if isinstance(name, str) and name and (_DIR / f"{name}.toml").is_file() and not _usable_stem(name):
        why = (f"its name ends with {REHEARSAL!r}, which names the CPU rehearsal derived from profile "
               f"{name[: -len(REHEARSAL)]!r}" if name.endswith(REHEARSAL) else
               "its name is not a safe folder name (letters, digits, '_' and '-', starting with a letter or digit)")
        raise ProfileError(f"profile file {_DIR / (name + '.toml')} cannot be used{where}: {why}; rename the file")
    base = name[: -len(REHEARSAL)] if isinstance(name, str) and name.endswith(REHEARSAL) else name
    if not isinstance(name, str) or not name or base not in names():
        raise ProfileError(f"unknown profile {name!r}{where}; valid profiles: {', '.join(names())}")
    return name


_LOADED: dict[tuple, Profile] = {}


def load(name: str | Profile | None = None) -> Profile:
    """Profile ``name`` (default :func:`default_to_compute`), parsed once per file version; a
    :class:`Profile` is returned as it is. ``"<name>-rehearsal"`` gives :func:`rehearsal` of it."""
    if isinstance(name, Profile):
        return name
    if name is None:
        name = default_to_compute()
    check_name(name)
    if name.endswith(REHEARSAL):
        target = rehearsal(load(name[: -len(REHEARSAL)]))
        if os.environ.get(STAND_IN_ENV) == "1":  # a stand-in rehearsal's worker (cckl_core.rehearsal)
            target = stand_in_profile(target)
        return target
    path = _DIR / f"{name}.toml"
    st = path.stat()
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if stamp not in _LOADED:
        _LOADED[stamp] = parse(path)
    return _LOADED[stamp]


def parse(path: Path) -> Profile:
    """Read and check one profile file (the profile's name is the file's stem)."""
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
    for section in ("defaults", "runs", "roles", "evaluation", "seed_spread", "sizing"):
        if not isinstance(raw.get(section, {}), dict):
            raise ProfileError(f"{where}: [{section}] must be a table")
    defaults = raw.get("defaults", {})
    bad = set(defaults) - set(RUN_KEYS)
    if bad:
        raise ProfileError(f"{where}: [defaults] has unknown keys {sorted(bad)}; valid keys: {sorted(RUN_KEYS)}")
    check_safe_name(path.stem, "profile name", where)
    given = _check_seed_list(raw["seeds"], where) if "seeds" in raw else None
    runs, run_seeds = {}, {}
    for run_name, overrides in raw.get("runs", {}).items():
        check_safe_name(run_name, "run name", where)
        if not isinstance(overrides, dict):
            raise ProfileError(f"{where}: runs.{run_name} must be a table")
        overrides = dict(overrides)
        if "seeds" in overrides:
            run_seeds[run_name] = _check_seed_list(overrides.pop("seeds"), f"{where}, run {run_name!r}")
        settings = {**defaults, **overrides}
        if given is not None and "seed" not in settings:
            settings["seed"] = given[0]  # the default seed is the first of the profile's seeds
        runs[run_name] = run_config(run_name, path.stem, settings, where=f"{where}, run {run_name!r}")
    if not runs:
        raise ProfileError(f"{where}: no [runs.<name>] tables")
    seeds = given or (next(iter(runs.values())).seed,)
    for run_name, cfg in runs.items():
        if cfg.seed != seeds[0]:
            source = f"seeds = {list(seeds)}" if given else f"run {next(iter(runs))!r}'s seed {seeds[0]}"
            raise ProfileError(f"{where}, run {run_name!r}: seed = {cfg.seed}, but the profile's default training seed "
                               f"is {seeds[0]} ({source}): `train` without --seed would train a seed that `make paper` "
                               "does not; set the seeds in `seeds = [...]` only (the first is every run's default)")
    for run_name, own in run_seeds.items():
        if own[0] != seeds[0]:
            raise ProfileError(f"{where}, run {run_name!r}: its seeds {list(own)} must start with the profile's first "
                               f"seed {seeds[0]} (the seed every notebook renders by default)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{where}: description must be a string")
    return Profile(path.stem, description, MappingProxyType(runs), _check_roles(raw.get("roles", {}), runs, where),
                   _check_evaluation(raw.get("evaluation", {}), where), tuple(seeds),
                   _check_spread(raw.get("seed_spread", {}), where), path,
                   _check_sizing(raw.get("sizing", {}), runs, where), MappingProxyType(run_seeds))


def _check_seed_list(seeds, where: str) -> tuple[int, ...]:
    """A non-empty list of distinct training seeds, checked."""
    if not isinstance(seeds, list) or not seeds:
        raise ProfileError(f"{where}: seeds must be a non-empty list of whole numbers, got {seeds!r}")
    with _at(where):
        seeds = [check_seed(s, "seeds") for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ProfileError(f"{where}: seeds has duplicates: {seeds}")
    return tuple(seeds)


def run_config(name: str, profile: str, settings: Mapping, where: str | None = None) -> RunConfig:
    """A :class:`RunConfig` from a mapping of run keys (missing keys take their defaults), checked by
    :meth:`RunConfig.__post_init__`; a mistake is one :class:`ProfileError` line that starts with ``where``."""
    where = where or f"run {name!r}"
    bad = set(settings) - set(RUN_KEYS)
    if bad:
        raise ProfileError(f"{where}: unknown keys {sorted(bad)}; valid keys: {sorted(RUN_KEYS)}")
    with _at(where):
        return RunConfig(name=name, profile=profile, **{**RUN_KEYS, **settings})


def _check_roles(roles: dict, runs: dict, where: str) -> Mapping:
    out = {}
    for role, value in roles.items():
        if role not in ROLES:
            raise ProfileError(f"{where}: unknown role {role!r} in [roles]; valid roles: {', '.join(ROLES)}")
        if role in LIST_ROLES and (not isinstance(value, list) or len(value) != LIST_ROLES[role]):
            raise ProfileError(f"{where}: role {role!r} must be a list of {LIST_ROLES[role]} run names")
        if role not in LIST_ROLES and not isinstance(value, str):
            raise ProfileError(f"{where}: role {role!r} must be one run name (a string)")
        names_ = value if isinstance(value, list) else [value]
        for n in names_:
            if n not in runs:
                raise ProfileError(f"{where}: role {role!r} names run {n!r}, which the profile does not define; "
                                   f"its runs: {', '.join(runs)}")
        if len(set(names_)) != len(names_):
            raise ProfileError(f"{where}: role {role!r} names the same run twice ({names_}); it compares "
                               "different runs, so give each place its own run")
        out[role] = tuple(value) if isinstance(value, list) else value
    return MappingProxyType(out)


def _check_evaluation(ev: dict, where: str) -> EvaluationSettings:
    bad = set(ev) - set(EVALUATION_KEYS)
    if bad:
        raise ProfileError(f"{where}: [evaluation] has unknown keys {sorted(bad)}; valid: {sorted(EVALUATION_KEYS)}")
    with _at(where):
        return EvaluationSettings(**ev)


def _check_spread(raw: dict, where: str) -> SeedSpread:
    if not raw:
        return SeedSpread()
    bad = set(raw) - {"sd", "seeds", "how"}
    if bad:
        raise ProfileError(f"{where}: [seed_spread] has unknown keys {sorted(bad)}; valid: how, seeds, sd")
    seeds = raw.get("seeds", [])
    if not isinstance(seeds, list) or len(seeds) < 2:
        raise ProfileError(f"{where}: seed_spread.seeds must list the (at least two) seeds it was measured on")
    with _at(where):
        seeds = [check_seed(s, "seed_spread.seeds") for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ProfileError(f"{where}: seed_spread.seeds has duplicates: {seeds}; a spread over seeds needs distinct "
                           "seeds")
    sd = raw.get("sd", {})
    if not isinstance(sd, dict):
        raise ProfileError(f"{where}: [seed_spread.sd] must be a table of claim id = standard deviation")
    if sd:
        from ..paper.criteria import declared  # claims.toml: imported here, when a spread names claims
        known = declared().claims
        unknown = sorted(k for k in sd if k not in known)
        if unknown:
            raise ProfileError(f"{where}: [seed_spread.sd] names claim(s) {unknown} that cckl_core/paper/claims.toml "
                               "does not declare; use its claim ids (`python -m cckl_core spread` writes them)")
    with _at(where):
        sd = {k: checks.number(v, f"seed_spread.sd.{k}", 0.0) for k, v in sd.items()}
    how = raw.get("how", "")
    if not isinstance(how, str):
        raise ProfileError(f"{where}: seed_spread.how must be a string")
    return SeedSpread(MappingProxyType(sd), tuple(seeds), how)


def _check_sizing(raw: dict, runs: dict, where: str) -> Sizing | None:
    if not raw:
        return None
    bad = set(raw) - {"device", "runs", "overhead_s", "margin"}
    if bad:
        raise ProfileError(f"{where}: [sizing] has unknown keys {sorted(bad)}; valid: device, margin, overhead_s, runs")
    device = raw.get("device")
    if not isinstance(device, str) or not device.strip():
        raise ProfileError(f"{where}: sizing.device must name the device the profile was sized for, e.g. \"one H100\"")
    sized = raw.get("runs")
    if not isinstance(sized, dict) or not sized:
        raise ProfileError(f"{where}: [sizing.runs] must give each sized run = [training seconds, evaluation seconds]")
    out = {}
    for name, value in sized.items():
        if name not in runs:
            raise ProfileError(f"{where}: sizing.runs names run {name!r}, which the profile does not define; "
                               f"its runs: {', '.join(runs)}")
        if not isinstance(value, list) or len(value) != 2:
            raise ProfileError(f"{where}: sizing.runs.{name} must be [training seconds, evaluation seconds], "
                               f"got {value!r}")
        with _at(where):
            out[name] = tuple(checks.number(v, f"sizing.runs.{name}", 0.0, MAX_SIZING_S) for v in value)
    with _at(where):
        overhead = checks.number(raw.get("overhead_s", 0.0), "sizing.overhead_s", 0.0, MAX_SIZING_S)
        margin = checks.number(raw.get("margin", 1.0), "sizing.margin", 1.0, MAX_MARGIN)
    return Sizing(device.strip(), MappingProxyType(out), overhead, margin)


# --------------------------------------------------------------------------- writing TOML
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quoted, every quote, backslash and control character escaped), for
    output that a profile file will hold (``cckl spread`` prints a ``[seed_spread]`` section)."""
    out = []
    for ch in str(text):
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:  # controls; a lone surrogate
            out.append(f"\\u{ord(ch) if ord(ch) < 0xD800 else 0xFFFD:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_comment(text: str) -> str:
    """``text`` fit for a TOML comment: one line, no control characters (each run of them one space)."""
    return re.sub(r"[\x00-\x1f\x7f\ud800-\udfff]+", " ", str(text)).strip()


# --------------------------------------------------------------------------- the checks of a run's settings
#: Run settings that count something: the least each may be.
_COUNTS = {"n_train": 0, "n_test": 0, "fisher_n": 1, "robust_n": 1, "epochs": 1, "batch_size": 1, "attack_steps": 1}
#: Run settings that are real numbers: (low, high, open at low).
_REALS = {"lr": (0.0, None, True), "width": (0.0, None, True), "momentum": (0.0, 1.0, False),
          "weight_decay": (0.0, None, False), "beta": (0.0, None, False), "eps": (0.0, 1.0, False),
          "step": (0.0, 1.0, True)}
#: Models whose name fixes their width, each with its variable-width twin (the same architecture at any width).
FIXED_WIDTH = MappingProxyType({"resnet20x1": "resnet20", "resnet32x10": "resnet32"})


def _checked_settings(cfg: RunConfig) -> dict:
    """Every field of ``cfg`` checked in :mod:`cckl_core.checks`' vocabulary (one ``ValueError``, naming the
    key, on the first mistake), as stored: real numbers as floats, milestones as a tuple."""
    from .. import models  # imports torch: when a run is checked, not when the profiles are listed

    check_safe_name(cfg.name, "run name")
    check_safe_name(cfg.profile, "profile name")
    out = {key: checks.choice(getattr(cfg, key), key, options, hint="one of " + ", ".join(options))
           for key, options in (("model", models.names()), ("objective", OBJECTIVES), ("precision", PRECISIONS))}
    if not isinstance(cfg.dataset, str) or not cfg.dataset:
        raise ValueError("dataset must be 'cifar10', 'cifar100', 'synthetic' or 'folder:<path>'")
    out.update({key: checks.integer(getattr(cfg, key), key, least) for key, least in _COUNTS.items()})
    out["seed"] = check_seed(cfg.seed)
    if cfg.lr is None:
        raise ValueError("lr must be set (a positive number)")
    out.update({key: checks.number(getattr(cfg, key), key, low, high, low_open=low_open)
                for key, (low, high, low_open) in _REALS.items()})
    out.update({key: checks.flag(getattr(cfg, key), key, allow_none=key == "batch_norm")
                for key in ("batch_norm", "augment", "optional")})
    if out["batch_norm"] is False and out["model"].startswith("resnet"):
        raise ValueError(f"batch_norm = false but {out['model']} always has BatchNorm; leave batch_norm unset "
                         "(VGG13 models default to none)")
    if out["model"] in FIXED_WIDTH and out["width"] != 1.0:
        raise ValueError(f"{out['model']} has its width fixed by its name; use model = \"{FIXED_WIDTH[out['model']]}\" with "
                         f"width = {out['width']}")
    out["milestones"] = _checked_milestones(cfg.milestones, out["epochs"])
    return out


def _checked_milestones(milestones: object, epochs: int) -> tuple[float, ...]:
    """Epochs (fractions allowed) after which the lr is divided by 10: increasing, in (0, epochs)."""
    if not isinstance(milestones, (list, tuple)):
        raise ValueError(f"milestones must be a list of epochs, e.g. [80, 120]; got {milestones!r}")
    out = []
    for m in milestones:
        m = checks.number(m, "milestones", 0.0, low_open=True)
        if m >= epochs:
            raise ValueError(f"milestone {m:g} is not before the last epoch ({epochs}), so it would never lower the lr; "
                             f"use milestones below {epochs} (fractions such as 0.5 mean within an epoch)")
        out.append(int(m) if m.is_integer() else m)
    if out != sorted(out) or len(set(out)) != len(out):
        raise ValueError(f"milestones must be increasing, got {list(milestones)}")
    return tuple(out)


# --------------------------------------------------------------------------- derived profiles and defaults
def rehearsal(profile: Profile) -> Profile:
    """``profile`` shrunk to seconds on a CPU, for a rehearsal of its exact runs before a GPU run:
    the same models, widths, objectives, precisions and roles, with two SGD steps of batch 2, one
    epoch, one attack step, ten synthetic test images and tiny evaluations (the data path is the one
    thing it does not rehearse: the runs read the synthetic data set)."""
    runs = {}
    for name, cfg in profile.runs.items():
        runs[name] = replace(cfg, profile=profile.name + REHEARSAL, dataset="synthetic", n_train=4,
                             n_test=10, fisher_n=1, robust_n=1, batch_size=2, epochs=1, milestones=(0.5,),
                             attack_steps=1)
    evaluation = replace(profile.evaluation, n_eval=4, pgd_steps=1, n_autoattack=min(profile.evaluation.n_autoattack, 2),
                         n_pairs=4, n_table2=2, n_fig9=4, n_eq12=1, n_theorem=10, n_boot=20)
    return replace(profile, name=profile.name + REHEARSAL, runs=MappingProxyType(runs), evaluation=evaluation,
                   description=f"CPU rehearsal of {profile.name}: its runs at a few images", seeds=profile.seeds[:1],
                   spread=SeedSpread(), sizing=None, run_seeds=MappingProxyType({}))


#: Set to "1" while a stand-in rehearsal runs (:mod:`cckl_core.rehearsal`): its workers load the rehearsal profile
#: by name, and :func:`load` then gives them the stand-in too.
STAND_IN_ENV = "CCKL_REHEARSAL_STAND_IN"
#: The stand-in's width multiplier.
STAND_IN_WIDTH = 0.25


def stand_in_profile(target: Profile) -> Profile:
    """A reduced, float32 stand-in of the rehearsal profile ``target``: every run keeps its name, objective,
    images and schedule, the profile its roles and evaluations, and each model becomes the same architecture
    family at width :data:`STAND_IN_WIDTH` (``resnet20x1`` / ``resnet32x10`` as ``resnet20`` / ``resnet32``,
    :data:`FIXED_WIDTH`) in fp32, since bf16 autocast on a CPU is many times slower than fp32."""
    if not target.name.endswith(REHEARSAL):
        raise ValueError(f"a stand-in is made of a rehearsal profile, not of {target.name!r}")
    runs = {name: replace(cfg, model=FIXED_WIDTH.get(cfg.model, cfg.model), width=STAND_IN_WIDTH, precision="fp32")
            for name, cfg in target.runs.items()}
    return replace(target, runs=MappingProxyType(runs),
                   description=f"{target.description}, each model a float32 stand-in at width {STAND_IN_WIDTH:g}")


def _env_profile() -> str | None:
    value = os.environ.get("CCKL_PROFILE")
    if value is None:
        return None
    if not value.strip():
        raise ProfileError("CCKL_PROFILE is set but empty; unset it or set it to one of " + ", ".join(names()))
    return check_name(value.strip(), "$CCKL_PROFILE")


def default_to_compute() -> str:
    """The profile to train and evaluate when none is named: ``$CCKL_PROFILE``, else ``paper``
    where CUDA is available and ``quick`` where it is not."""
    env = _env_profile()
    if env:
        return env
    import torch
    return "paper" if torch.cuda.is_available() else "quick"


def default_to_render(present: Callable[[str, str], bool]) -> str:
    """The profile a notebook shows when none is named: ``$CCKL_PROFILE``, else the largest
    profile (:data:`ORDER`) whose results are in the local cache, else the largest one whose
    results the repository carries (a committed bundle), else ``quick``. ``present(name, where)``
    says whether results are present (``where`` is ``"cache"`` or ``"bundle"``;
    :func:`cckl_core.paper.inputs.results_present` looks at the files)."""
    env = _env_profile()
    if env:
        return env
    for where in ("cache", "bundle"):
        for name in names():
            if present(name, where):
                return name
    return "quick"


def iter_profiles() -> Iterator[Profile]:
    for name in names():
        yield load(name)
