"""What a notebook reads, and the one check that it is all there before anything is drawn.

:func:`gather` loads, for one notebook of one profile, every run that plays one of its roles (no
weights) and every cached evaluation those runs need, from the artifacts root, and nothing else:
it never trains or evaluates, takes no lock and writes nothing. When something is missing it
raises :class:`ResultsMissing` with one message naming the profile, what is missing and the
command that makes it. The one exception: when the artifacts root holds nothing of a profile and
the repository carries that profile's results (``results/<profile>.tar.gz``, verified on
unpacking), they are unpacked first (once, under the profile folder's lock, however many notebooks
start together), so a fresh clone renders the committed results at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import evaluations, runs, store
from ..paths import artifacts_root, results_root
from ..profiles import Profile, load


class ResultsMissing(RuntimeError):
    """The cache lacks results a notebook needs; the message says which and how to make them."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"ResultsMissing: {self}"]


@dataclass
class Inputs:
    """The runs (by role) and cached evaluations (by run name and evaluation) one notebook reads."""

    profile: Profile
    sample_seed: int
    runs: dict[str, runs.Run] = field(default_factory=dict)            # by run name
    evaluations: dict[tuple[str, str], evaluations.Result] = field(default_factory=dict)
    absent_optional: dict[str, str] = field(default_factory=dict)      # role -> why it is absent
    _groups: dict[tuple[str, int], list[runs.Run]] = field(default_factory=dict, repr=False)
    _seed_results: dict[tuple[str, int, str], list] = field(default_factory=dict, repr=False)

    def by_role(self, role: str) -> runs.Run:
        return self.runs[self.profile.role(role)]

    def list_role(self, role: str) -> list[runs.Run]:
        return [self.runs[n] for n in self.profile.role(role)]

    def dataset_name(self, role: str) -> str:
        """The data set of ``role``'s run (of the first run where the role names several)."""
        name = self.profile.role(role)
        return self.runs[name if isinstance(name, str) else name[0]].dataset_name

    def evaluation(self, run: runs.Run, name: str) -> evaluations.Result:
        return self.evaluations[run.name, name]

    def seed_group(self, run: runs.Run) -> list[runs.Run]:
        """``run`` and the other finished seeds of it in the cache (``run`` first), read once."""
        key = (run.name, run.seed)
        if key not in self._groups:
            self._groups[key] = runs.seed_group(self.profile, run)
        return self._groups[key]

    def seed_evaluations(self, run: runs.Run, name: str) -> list[tuple[runs.Run, evaluations.Result]]:
        """``(run, evaluation)`` for every finished seed of ``run`` whose evaluation ``name`` is cached
        (each read once)."""
        key = (run.name, run.seed, name)
        if key not in self._seed_results:
            out = []
            for r in self.seed_group(run):
                res = self.evaluations.get((run.name, name)) if r is run else evaluations.read(
                    r, evaluations.settings(self.profile, name, self.sample_seed))
                if res is not None:
                    out.append((r, res))
            self._seed_results[key] = out
        return self._seed_results[key]


def bundle_path(name: str) -> Path:
    """Where the repository carries a profile's results: ``results/<profile>.tar.gz``."""
    return results_root() / f"{name}.tar.gz"


def results_present(name: str, where: str) -> bool:
    """Whether profile ``name``'s results are in the local cache (``where="cache"``: every run of
    its roles finished with its evaluations, by the files' presence) or carried by the repository
    (``"bundle"``). Cheap: nothing is parsed or verified (:func:`gather` verifies)."""
    if where == "bundle":
        return bundle_path(name).is_file()
    try:
        profile = load(name)
    except ValueError:
        return False
    needed = [n for n in profile.runs_for(profile.roles) if not profile.runs[n].optional]
    if not needed:
        return False
    for n in needed:
        folder = runs.path_of(profile.run(n))
        if not (folder / "complete.json").is_file():
            return False
        for e in evaluations.needed(profile, n):
            key = evaluations.settings_key(evaluations.settings(profile, e))
            if not (folder / "evaluations" / f"{e}-{key}.json").is_file():
                return False
    return True


def _holds_runs(prof_dir: Path) -> bool:
    """Whether the profile folder holds any run folder (hidden entries, such as staging folders and
    the lock file, do not count)."""
    return prof_dir.is_dir() and any(not p.name.startswith(".") for p in prof_dir.iterdir())


def _unpack_committed(profile: Profile) -> str:
    """Unpack ``results/<profile>.tar.gz`` when the cache holds no run of the profile; the line to print.
    Notebooks started together unpack it once: the first holds the profile folder's lock while it
    unpacks, the others wait for it and then find the runs in place."""
    from .. import bundle

    path = bundle_path(profile.name)
    prof_dir = artifacts_root() / profile.name
    if not path.is_file() or _holds_runs(prof_dir):
        return ""
    try:  # the bundle is checked (bundle.stale reads it bounded, every error a BundleError) before anything else
        problems = bundle.stale(path)
        if problems:
            return (f"[cckl] not unpacking {path}: it no longer matches profile {profile.name} and this code "
                    f"({problems[0]}{'; ...' if len(problems) > 1 else ''}); make its results again")
        with store.locked(prof_dir):
            if _holds_runs(prof_dir):
                return ""
            bundle.extract(path, profile.name)
    except (PermissionError, store.WriteError, store.UnsafeLockError, bundle.BundleError) as err:
        return f"[cckl] could not unpack {path}: {' '.join(str(err).split())}"
    return (f"[cckl] unpacked the results this repository carries for profile {profile.name} ({path.name}, checksums "
            f"verified) into {prof_dir}")


def gather(profile: Profile, roles: tuple[str, ...], optional: tuple[str, ...] = (), sample_seed: int = 0,
           notebook: str = "") -> Inputs:
    """Every run playing one of ``roles`` (first seed, no weights) and every evaluation they need,
    read from the cache; optional roles may be absent. :class:`ResultsMissing` lists what is not there."""
    note = _unpack_committed(profile)
    if note:
        print(note, flush=True)
    inputs = Inputs(profile, sample_seed)
    not_trained, not_evaluated, seen = [], [], set()
    for role in roles:
        names = profile.role(role)
        for name in (names,) if isinstance(names, str) else names:
            if name in seen:
                continue
            seen.add(name)
            cfg = profile.run(name)
            try:
                run = runs.load(cfg)
            except runs.RunNotFoundError as err:
                if role in optional:
                    inputs.absent_optional[role] = _why_absent(cfg, err)
                    continue
                not_trained.append(f"{name} ({runs.inspect(runs.path_of(cfg), cfg).state})")
                continue
            inputs.runs[name] = run
            for e in evaluations.needed(profile, name):
                res = evaluations.read(run, evaluations.settings(profile, e, sample_seed))
                if res is None:
                    not_evaluated.append(f"{e} of {name}")
                else:
                    inputs.evaluations[name, e] = res
    if not_trained or not_evaluated:
        raise ResultsMissing(_missing_message(profile, notebook, not_trained, not_evaluated, sample_seed))
    return inputs


def _why_absent(cfg, err: Exception) -> str:
    if cfg.optional:
        return (f"optional run {cfg.name} ({cfg.dataset}) is not in the cache: it is skipped where its data set cannot "
                f"be had (offline, {cfg.dataset} cannot be downloaded); on a machine that has it, "
                f"`python -m cckl_core evaluate --profile {cfg.profile} --run {cfg.name}` adds it")
    return f"run {cfg.name} is not in the cache"


def _missing_message(profile: Profile, notebook: str, not_trained: list[str], not_evaluated: list[str],
                     sample_seed: int) -> str:
    parts = []
    if not_trained:
        parts.append(f"{len(not_trained)} run(s) not trained: {', '.join(not_trained)}")
    if not_evaluated:
        parts.append(f"{len(not_evaluated)} evaluation(s) not computed: {', '.join(not_evaluated)}")
    where = artifacts_root()
    seed = f" --sample-seed {sample_seed}" if sample_seed else ""
    make = f"`make evaluations PROFILE={profile.name}`" if not seed else \
        f"`python -m cckl_core evaluate --profile {profile.name}{seed}`"
    carried = f" (this repository carries them: `python -m cckl_core unbundle {bundle_path(profile.name)}`)" \
        if bundle_path(profile.name).is_file() else ""
    return (f"profile {profile.name!r} has no results for {notebook or 'this notebook'} under {where}: "
            f"{'; '.join(parts)}. Nothing was trained or computed here (notebooks only render). Make them with {make} "
            f"(trains what is missing, then evaluates; profile {profile.name}: {profile.description}); "
            f"`python -m cckl_core plan --profile {profile.name}` estimates the time on this machine; or unpack "
            f"results made elsewhere with `python -m cckl_core unbundle FILE.tar.gz`{carried}.")
