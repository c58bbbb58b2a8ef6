"""The claims of the paper and the criteria that judge them, read from ``claims.toml``.

Each claim is declared once in ``claims.toml``: its text, the paper's value, its *kind*, the
statistic, the criterion with its alpha or threshold, what a profile must have for the claim to be
tested (*scale*), when the criterion was fixed, and why. The analysis modules compute the
statistic and call :func:`judge` with the typed evidence its criterion reads; :func:`adjust` then
applies Holm's correction within each family of paper claims (one notebook) and decides their verdicts.
The verdict vocabulary is :data:`cckl_core.stats.VERDICTS`.

Each criterion is a function registered by its name in ``claims.toml`` (:func:`criterion`, :data:`REGISTRY`)
with the type of evidence it reads and its rule in words: ``seeds`` (:class:`SeedEvidence`), ``at_most`` and
``at_least`` (:class:`ValueEvidence`), ``within`` (:class:`ValuesEvidence`), ``bound``
(:class:`BoundEvidence`), ``reported`` (:class:`NoEvidence`).

Kinds:

- ``paper``: a scientific statement of the paper. Only these are counted in headlines. Every one
  depends on trained weights, so it is judged over training seeds (``criterion = "seeds"``: the
  per-seed statistic's one-sample t test and interval); with fewer than ``min_seeds`` seeds it is
  inconclusive (one training run says nothing about training noise).
- ``derivation``: our code against the paper's mathematics (a deterministic check with a tolerance).
- ``reported``: a number shown for context, with no verdict.

The order of the decision for a row: ``reported`` -> n/a; the profile below the claim's scale ->
``not tested at this scale`` (its measured value marked indicative); a criterion that cannot fail
on these data -> ``not informative``; too few seeds -> inconclusive; else the Holm-adjusted
two-sided p-value of the family decides (yes / no by the sign of the effect, else inconclusive).
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import KW_ONLY, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import stats

FILE = Path(__file__).with_name("claims.toml")
KINDS = ("paper", "derivation", "reported")
ARCHITECTURES = ("any", "family", "exact")
_FIELDS = {"claim", "paper", "statistic", "criterion", "kind", "family", "shows", "holds", "alpha", "side", "null",
           "threshold", "target", "tolerance", "min_seeds", "architecture", "min_accuracy_over_chance",
           "min_accuracy_of_paper", "scale_reason", "reason", "fixed", "after_data", "monotone", "statistics"}


class ClaimsFileError(ValueError):
    """``claims.toml`` declares something the criteria cannot apply."""


@dataclass(frozen=True)
class Stated:
    """What a claim is shown with wherever it appears (declared in ``claims.toml`` as :class:`Claim`, judged as
    :class:`ClaimRow`): its id, its words, the paper's value, and, by keyword, the figure or table that shows it,
    its kind, its family (for Holm's correction) and when its criterion was fixed."""

    id: str
    claim: str
    paper: str
    _: KW_ONLY
    shows: str = ""
    kind: str = "paper"
    family: str = ""
    fixed: str = ""


@dataclass(frozen=True)
class Claim(Stated):
    """One declared claim and its criterion (see ``claims.toml`` for the fields; :func:`declared` requires
    ``kind``, ``family`` and ``fixed``)."""

    statistic: str
    criterion: str
    holds: str = ""
    reason: str = ""
    after_data: str = ""
    alpha: float = 0.05
    side: str = "above"
    null: float = 0.0
    threshold: float = math.nan
    target: float = math.nan
    tolerance: float = math.nan
    min_seeds: int = 3
    monotone: bool = False
    statistics: tuple[str, ...] = ()
    architecture: str = "any"
    min_accuracy_over_chance: float = math.nan
    min_accuracy_of_paper: float = math.nan
    scale_reason: str = ""

    def text(self, **fill: object) -> str:
        """The claim's text with its placeholders (``{arch}``, ``{steps}``) filled."""
        return self.claim.format(**fill) if fill else self.claim

    @property
    def expected_sign(self) -> int:
        return +1 if self.side == "above" else -1

    def rule(self) -> str:
        """The criterion in words, as the claims table's note states it."""
        return REGISTRY[self.criterion].rule(self)

    def fixed_label(self) -> str:
        """When the criterion was fixed, marked where that was after its data were seen."""
        return f"{self.fixed}; after the data were seen" if self.after_data else f"{self.fixed}; before the data"

    def scale_rule(self) -> str:
        """What a profile must have for this claim to be tested, in words."""
        parts = []
        if self.architecture == "exact":
            parts.append("the paper's exact architectures (no stand-in, no reduced width)")
        elif self.architecture == "family":
            parts.append("the paper's architecture family (any width)")
        if math.isfinite(self.min_accuracy_over_chance):
            parts.append(f"every run at >= {self.min_accuracy_over_chance:g}x chance test accuracy")
        if math.isfinite(self.min_accuracy_of_paper):
            parts.append(f"every compared model at >= {self.min_accuracy_of_paper:.0%} of the paper's standard accuracy")
        return "; ".join(parts)


@dataclass(frozen=True)
class RunFacts:
    """What the scale check needs to know of one run a claim reads: its model and width, the paper's
    architecture it plays, its final clean test accuracy, its number of classes and the paper's
    accuracy for it (Table 1 only)."""

    name: str
    model: str
    width: float
    batch_norm: bool | None
    plays: str
    accuracy: float
    classes: int = 10
    paper_accuracy: float = math.nan

    @property
    def exact(self) -> bool:
        """The paper's own architecture: same model, full width (resnet20x1/resnet32x10 fix theirs), no BatchNorm
        added to a VGG13."""
        fixed_width = self.model.endswith(("x1", "x10"))
        return self.model == self.plays and (fixed_width or self.width == 1.0) and not (
            self.model.startswith("vgg13") and self.batch_norm)

    @property
    def in_family(self) -> bool:
        """Of the paper's architecture family: a VGG13 variant for a VGG13, a ResNet of the same depth."""
        base = self.plays[: self.plays.rindex("x")] if re.fullmatch(r"resnet\d+x\d+", self.plays) else self.plays
        return self.model in (self.plays, base) or self.model.startswith(base + "x")

    @property
    def label(self) -> str:
        width = "" if self.model.endswith(("x1", "x10")) else f" w{self.width:g}"
        return f"{self.model}{width}"


def facts(run, plays: str, paper_accuracy: float = math.nan, accuracy: float | None = None) -> RunFacts:
    """The :class:`RunFacts` of a cached run (``accuracy``: its final clean test accuracy unless given)."""
    cfg = run.config
    acc = float(run.history[-1]["test_acc"]) if accuracy is None else float(accuracy)
    classes = int(run.dataset_info.get("num_classes", cfg.num_classes)) if getattr(run, "dataset_info", None) else \
        cfg.num_classes
    return RunFacts(run.name, cfg.model, cfg.width, cfg.batch_norm, plays, acc, classes, paper_accuracy)


def scale_problems(c: Claim, runs: Sequence[RunFacts]) -> list[str]:
    """Why the profile cannot test claim ``c`` with ``runs`` (empty: it can)."""
    out = []
    for r in runs:
        if c.architecture == "exact" and not r.exact:
            out.append(f"{r.label} stands in for {r.plays}" if r.model != r.plays else
                       f"{r.label}{' with BatchNorm' if r.batch_norm else ''} is not the paper's {r.plays}")
        elif c.architecture == "family" and not r.in_family:
            out.append(f"{r.label} is not of {r.plays}'s family")
        if math.isfinite(c.min_accuracy_over_chance) and r.accuracy < c.min_accuracy_over_chance / r.classes:
            out.append(f"{r.label} {r.name} reached {r.accuracy:.1%} test accuracy, below "
                       f"{c.min_accuracy_over_chance:g}x chance ({c.min_accuracy_over_chance / r.classes:.0%})")
        if math.isfinite(c.min_accuracy_of_paper) and math.isfinite(r.paper_accuracy) and \
                r.accuracy < c.min_accuracy_of_paper * r.paper_accuracy:
            out.append(f"{r.label} reached {r.accuracy:.1%}, below {c.min_accuracy_of_paper:.0%} of the paper's "
                       f"{r.paper_accuracy:.1%}")
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class ClaimRow(Stated):
    """A row of a claims table (``shows``: the figure or table that shows it). ``p`` is the raw
    two-sided p-value of a tested paper claim and ``p_adjusted`` its Holm-adjusted value within
    ``family`` (NaN where no test was made)."""

    measured: str
    verdict: str
    note: str
    p: float = math.nan
    p_adjusted: float = math.nan
    effect: float = math.nan          # mean effect minus null (its sign decides the direction)
    expected_sign: int = 1
    blocked: str = ""                 # non-empty: a "yes" cannot stand (e.g. a curve that is not monotone)
    pending: bool = False             # a tested paper claim awaiting :func:`adjust`

    def as_dict(self) -> dict:
        return {"claim": self.claim, "kind": self.kind, "paper value": self.paper, "measured value": self.measured,
                "p": _p_text(self.p), "p (Holm)": _p_text(self.p_adjusted), "holds": self.verdict,
                "criterion fixed": self.fixed, "note": self.note, "id": self.id, "shows": self.shows,
                "family": self.family}


def _p_text(p: float) -> str:
    return "" if not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


@dataclass(frozen=True)
class Declared:
    paper: Mapping
    claims: Mapping[str, Claim] = field(default_factory=dict)


def _check(cid: str, claim: Claim, path: Path) -> None:
    where = f"{path}: claim {cid!r}"
    if claim.criterion not in CRITERIA:
        raise ClaimsFileError(f"{where} has criterion {claim.criterion!r}; valid: {', '.join(CRITERIA)}")
    if claim.kind not in KINDS:
        raise ClaimsFileError(f"{where} has kind {claim.kind!r}; valid: {', '.join(KINDS)}")
    if (claim.kind == "reported") != (claim.criterion == "reported"):
        raise ClaimsFileError(f"{where}: kind 'reported' and criterion 'reported' go together")
    if claim.kind == "paper" and claim.criterion != "seeds":
        raise ClaimsFileError(f"{where}: a paper claim depends on trained weights, so its criterion is 'seeds'")
    if claim.kind == "derivation" and claim.criterion == "seeds":
        raise ClaimsFileError(f"{where}: a derivation check is deterministic, so its criterion is not 'seeds'")
    if claim.side not in ("above", "below"):
        raise ClaimsFileError(f"{where}: side must be above or below")
    if claim.architecture not in ARCHITECTURES:
        raise ClaimsFileError(f"{where}: architecture must be one of {', '.join(ARCHITECTURES)}")
    if claim.criterion in ("at_most", "at_least") and not math.isfinite(claim.threshold):
        raise ClaimsFileError(f"{where} needs a threshold")
    if claim.min_seeds < 2:
        raise ClaimsFileError(f"{where}: min_seeds must be >= 2 (one seed cannot measure training noise)")
    if not claim.fixed:
        raise ClaimsFileError(f"{where} must say when its criterion was fixed (fixed = \"date (commit)\")")


@lru_cache(maxsize=4)
def declared(path: Path = FILE) -> Declared:
    """The paper's reference values and every claim of ``claims.toml``, checked."""
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    claims = {}
    for cid, spec in raw.get("claims", {}).items():
        unknown = set(spec) - _FIELDS
        if unknown:
            raise ClaimsFileError(f"{path}: claim {cid!r} has unknown fields {sorted(unknown)}")
        missing = {"claim", "paper", "statistic", "criterion", "kind", "family", "fixed"} - set(spec)
        if missing:
            raise ClaimsFileError(f"{path}: claim {cid!r} lacks {sorted(missing)}")
        spec = {**spec, "statistics": tuple(spec.get("statistics", ()))}
        claim = Claim(id=cid, **spec)
        _check(cid, claim, path)
        claims[cid] = claim
    return Declared(raw.get("paper", {}), claims)


def claim(cid: str) -> Claim:
    try:
        return declared().claims[cid]
    except KeyError:
        raise ClaimsFileError(f"{FILE} declares no claim {cid!r}") from None


def paper(key: str) -> Any:
    """A reference value of the paper (``[paper]`` in ``claims.toml``)."""
    return declared().paper[key]


# --------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class SeedEvidence:
    """A paper claim's evidence: its statistic per training seed (``per_seed``, aligned with ``seeds``;
    NaN where undefined for a seed). ``others`` holds the same statistic computed otherwise (e.g. other
    summaries of a heavy-tailed ratio), each per seed: the claim is decided only where all agree.
    ``not_informative``: why the criterion cannot fail on these data (then no test is made);
    ``blocked``: why a "yes" cannot stand although the test would say so (e.g. a curve not monotone);
    ``indicative``: test-sample evidence of one run, shown where the seeds cannot decide."""

    per_seed: Sequence[float]
    seeds: Sequence[int]
    unit: str = ""
    others: Mapping[str, Sequence[float]] = field(default_factory=dict)
    not_informative: str = ""
    blocked: str = ""
    indicative: str = ""


@dataclass(frozen=True)
class ValueEvidence:
    """A derivation check's one number (criteria ``at_most`` and ``at_least``); None or NaN: nothing to judge."""

    value: float | None = None


@dataclass(frozen=True)
class ValuesEvidence:
    """A derivation check's numbers, each of which must lie within the claim's tolerance of its target
    (criterion ``within``)."""

    values: Sequence[float]


@dataclass(frozen=True)
class BoundEvidence:
    """A measured ``value`` and the lower ``bound`` it must reach (criterion ``bound``)."""

    value: float
    bound: float


@dataclass(frozen=True)
class NoEvidence:
    """A reported number: there is nothing to judge (criterion ``reported``)."""


#: The evidence a criterion reads: one type per criterion (:attr:`Criterion.evidence`).
Evidence = SeedEvidence | ValueEvidence | ValuesEvidence | BoundEvidence | NoEvidence


# --------------------------------------------------------------------------- criteria
@dataclass(frozen=True)
class Draft:
    """A claims-table row before its criterion decides: the claim, the row's fixed fields (``base``), the
    measured text, the context, the notes (context, the rule in words, the reason) and the runs the claim
    reads (for the scale check)."""

    claim: Claim
    base: Mapping[str, Any]
    measured: str
    context: str
    notes: tuple[str, ...]
    runs: Sequence[RunFacts] = ()

    def row(self, verdict: str, measured: str | None = None, notes: Sequence[str] | None = None,
            **test: Any) -> ClaimRow:
        """The row with ``verdict`` (and, for a tested paper claim, its ``p``, ``effect``, ``blocked``, ``pending``)."""
        return ClaimRow(measured=self.measured if measured is None else measured, verdict=verdict,
                        note="; ".join(self.notes if notes is None else notes), **self.base, **test)


@dataclass(frozen=True)
class Criterion:
    """A criterion of ``claims.toml``: the type of evidence it reads, ``decide(draft, evidence)`` that makes the
    claim's row, and ``rule(claim)``, the criterion in words."""

    name: str
    evidence: type
    decide: Callable[[Draft, Any], ClaimRow]
    rule: Callable[[Claim], str]


#: Every criterion by its name in ``claims.toml`` (filled by :func:`criterion`, in the order below).
REGISTRY: dict[str, Criterion] = {}


def criterion(name: str, evidence: type, rule: Callable[[Claim], str]) -> Callable:
    """Register the decorated ``decide(draft, evidence) -> ClaimRow`` as criterion ``name`` reading ``evidence``."""
    def register(decide: Callable[[Draft, Any], ClaimRow]) -> Callable[[Draft, Any], ClaimRow]:
        if name in REGISTRY:
            raise ValueError(f"criterion {name!r} is registered twice")
        REGISTRY[name] = Criterion(name, evidence, decide, rule)
        return decide
    return register


def _summary(t: dict, unit: str, signed: bool = True) -> str:
    f = "{:+.3g}" if signed else "{:.3g}"
    if t["n"] >= 2:
        return f"{f.format(t['mean'])}{unit} [{f.format(t['lo'])}, {f.format(t['hi'])}] over {t['n']} seeds"
    return f"{f.format(t['mean'])}{unit} (one seed)" if t["n"] == 1 else "undefined (no seed)"


def _seeds_rule(c: Claim) -> str:
    where = f"{'above' if c.side == 'above' else 'below'} {c.null:g}"
    mono = " and the seed-mean curve strictly increasing" if c.monotone else ""
    several = (f"; decided only where all of {', '.join(c.statistics)} agree" if c.statistics else "")
    return (f"the mean over >= {c.min_seeds} training seeds {where}{mono}: two-sided one-sample t test at "
            f"{c.alpha:g}, Holm-adjusted within {c.family}{several}")


def _seed_measured(c: Claim, t: dict, evidence: SeedEvidence, per_seed: np.ndarray, measured: str) -> str:
    """The measured text of a paper claim: the caller's text, then the seed mean with its interval and the
    per-seed values (from two seeds on)."""
    seeds = ", ".join(str(s) for s in evidence.seeds)
    signed = c.null == 0
    shown = _summary({**t, "mean": t["mean"] + c.null, "lo": t["lo"] + c.null, "hi": t["hi"] + c.null}, evidence.unit,
                     signed)
    values_text = " / ".join(("{:+.3g}" if signed else "{:.3g}").format(v) for v in per_seed)
    lead = f"{c.statistics[0]}: " if c.statistics else ""
    return "; ".join(part for part in (measured, lead + shown + (f" (seeds {seeds}: {values_text})" if t["n"] >= 2
                                                                 else "")) if part)


def _all_statistics(c: Claim, t: dict, evidence: SeedEvidence, measured: str, blocked: str) -> tuple[float, str, str]:
    """A claim read by several statistics (``c.statistics``, the declared one's test ``t`` first): the largest
    p-value (intersection-union: every statistic must decide), the measured text with the others, and why a
    "yes" is blocked where they disagree on the direction."""
    tests = {c.statistics[0]: t, **{name: stats.seed_test(np.asarray(v, float) - c.null)
                                    for name, v in evidence.others.items()}}
    signs = {np.sign(x["mean"]) for x in tests.values()}
    ps = [x["p"] for x in tests.values()]
    p = max(ps) if all(math.isfinite(q) for q in ps) else math.nan
    measured += "; " + "; ".join(f"{name}: {_summary(x, evidence.unit)}" for name, x in list(tests.items())[1:])
    if len(signs) > 1:
        blocked = blocked or "the choice of statistic decides the direction (" + ", ".join(
            f"{name} {x['mean']:+.3g}" for name, x in tests.items()) + ")"
    return p, measured, blocked


@criterion("seeds", SeedEvidence, _seeds_rule)
def seeds(draft: Draft, evidence: SeedEvidence) -> ClaimRow:
    """A paper claim over training seeds: not tested at this scale (the runs below the claim's scale), not
    informative, inconclusive with fewer than ``min_seeds`` seeds, else the one-sample t test of the per-seed
    statistic against ``null``, its p-value awaiting :func:`adjust`."""
    c = draft.claim
    per_seed = np.asarray(evidence.per_seed, dtype=float)
    t = stats.seed_test(per_seed - c.null if per_seed.size else per_seed)
    measured = _seed_measured(c, t, evidence, per_seed, draft.measured)
    notes = list(draft.notes)
    notes.insert(len([draft.context] if draft.context else []), f"statistic: {c.statistic}")
    problems = scale_problems(c, draft.runs)
    if problems:
        notes.insert(0, f"not tested at this scale: {'; '.join(problems)} (the claim needs {c.scale_rule()}"
                        + (f": {c.scale_reason}" if c.scale_reason else "") + ")")
        ind = f"; test sample of one run: {evidence.indicative}" if evidence.indicative else ""
        return draft.row(stats.NOT_TESTED, f"indicative only: {measured}{ind}", notes)
    if evidence.not_informative:
        notes.insert(0, f"not informative: {evidence.not_informative}")
        return draft.row(stats.NOT_INFORMATIVE, measured, notes)
    if t["n"] < c.min_seeds:
        what = "one training run" if t["n"] <= 1 else f"{t['n']} training seeds"
        ind = f"; test sample of one run: {evidence.indicative}" if evidence.indicative else ""
        notes.insert(0, f"{what}: training noise is not measured (the criterion needs {c.min_seeds} seeds), so "
                        "the data cannot decide")
        return draft.row(stats.INCONCLUSIVE, measured + ind, notes)
    p, effect, blocked = t["p"], t["mean"], evidence.blocked
    if c.statistics:
        p, measured, blocked = _all_statistics(c, t, evidence, measured, blocked)
    return draft.row(stats.INCONCLUSIVE, measured, notes, p=p, effect=effect, blocked=blocked, pending=True)


def _against_threshold(value: float | None, ok: Callable[[float], bool]) -> str:
    """yes / no by ``ok(value)``; n/a where there is no value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return stats.NOT_ASSESSED
    return stats.HOLDS if ok(value) else stats.DOES_NOT_HOLD


@criterion("at_most", ValueEvidence, lambda c: c.holds or f"yes if <= {c.threshold:g}")
def at_most(draft: Draft, evidence: ValueEvidence) -> ClaimRow:
    """yes if the value is at most the claim's threshold."""
    return draft.row(_against_threshold(evidence.value, lambda v: v <= draft.claim.threshold))


@criterion("at_least", ValueEvidence, lambda c: f"yes if >= {c.threshold:g}")
def at_least(draft: Draft, evidence: ValueEvidence) -> ClaimRow:
    """yes if the value is at least the claim's threshold."""
    return draft.row(_against_threshold(evidence.value, lambda v: v >= draft.claim.threshold))


@criterion("within", ValuesEvidence, lambda c: c.holds or f"yes if within {c.tolerance:g} of {c.target:g}")
def within(draft: Draft, evidence: ValuesEvidence) -> ClaimRow:
    """yes if every value lies within the claim's tolerance of its target."""
    c = draft.claim
    ok = all(abs(v - c.target) <= c.tolerance for v in evidence.values)
    return draft.row(stats.HOLDS if ok else stats.DOES_NOT_HOLD)


@criterion("bound", BoundEvidence,
           lambda c: "yes if CCKL >= the bound; a bound <= 0 of a non-negative CCKL cannot fail (not informative)")
def bound(draft: Draft, evidence: BoundEvidence) -> ClaimRow:
    """yes if the value reaches the bound (to 1e-12); not informative where the bound is not positive (a
    non-negative value cannot fail it)."""
    if not evidence.bound > 0:
        return draft.row(stats.NOT_INFORMATIVE)
    return draft.row(stats.HOLDS if evidence.value >= evidence.bound - 1e-12 else stats.DOES_NOT_HOLD)


@criterion("reported", NoEvidence, lambda c: "reported, not judged")
def reported(draft: Draft, evidence: NoEvidence) -> ClaimRow:
    """A number shown for context: no verdict."""
    return draft.row(stats.NOT_ASSESSED)


#: The criteria ``claims.toml`` may name.
CRITERIA = tuple(REGISTRY)


def judge(cid: str, measured: str = "", context: str = "", fill: Mapping | None = None,
          evidence: Evidence | None = None, runs: Sequence[RunFacts] = ()) -> ClaimRow:
    """The claims-table row of claim ``cid``: its declared text (placeholders from ``fill``), the paper's
    value, ``measured`` (text), the note (``context``, then the criterion) and its verdict, or, for a
    tested paper claim, its p-value awaiting :func:`adjust`. The claim's criterion (:data:`REGISTRY`) decides
    from ``evidence`` of the type it reads: paper claims a :class:`SeedEvidence` (with ``runs`` for the scale
    check), derivation checks a :class:`ValueEvidence` (at_most / at_least), :class:`ValuesEvidence` (within)
    or :class:`BoundEvidence` (bound), reported rows none (:class:`NoEvidence`)."""
    c = claim(cid)
    entry = REGISTRY[c.criterion]
    if evidence is None:
        evidence = NoEvidence()
    if not isinstance(evidence, entry.evidence):
        raise TypeError(f"claim {cid!r} (criterion {c.criterion}) reads {entry.evidence.__name__}, got "
                        f"{type(evidence).__name__}")
    base = dict(id=cid, claim=c.text(**(fill or {})), paper=c.paper, shows=c.shows, kind=c.kind, family=c.family,
                fixed=c.fixed_label(), expected_sign=c.expected_sign)
    notes = tuple(part for part in (context, c.rule(), c.reason) if part)
    return entry.decide(Draft(c, base, measured, context, notes, tuple(runs)), evidence)


def adjust(rows: Iterable[ClaimRow]) -> list[ClaimRow]:
    """Holm's correction within each family: the tested paper claims' two-sided p-values are adjusted
    over the tests of their family (:func:`cckl_core.stats.holm`) and each verdict is decided on the
    adjusted value (:func:`cckl_core.stats.directional_verdict`); rows without a test pass unchanged."""
    rows = list(rows)
    out = list(rows)
    for family in dict.fromkeys(r.family for r in rows if r.pending):
        idx = [k for k, r in enumerate(rows) if r.pending and r.family == family]
        adjusted = stats.holm([rows[k].p for k in idx])
        m = int(np.isfinite([rows[k].p for k in idx]).sum())
        for k, p_adj in zip(idx, adjusted):
            r = rows[k]
            c = claim(r.id)
            v = stats.directional_verdict(p_adj, r.effect, r.expected_sign, c.alpha)
            extra = f"p {_p_text(r.p) or 'undefined'}, Holm-adjusted over the {m} tested paper claims of {family}: " \
                    f"{_p_text(p_adj) or 'undefined'}"
            if v == stats.HOLDS and r.blocked:
                v, extra = stats.INCONCLUSIVE, f"{extra}; but {r.blocked}"
            elif r.blocked and v == stats.INCONCLUSIVE:
                extra = f"{extra}; {r.blocked}"
            out[k] = replace(r, verdict=v, p_adjusted=float(p_adj), pending=False, note=f"{extra}; {r.note}")
    return out


def skipped(cid: str, measured: str, note: str, fill: Mapping | None = None) -> ClaimRow:
    """The row of a claim that cannot be judged here (its run is not in this profile's cache)."""
    c = claim(cid)
    return ClaimRow(cid, c.text(**(fill or {})), c.paper, measured, stats.NOT_ASSESSED, note, shows=c.shows, kind=c.kind,
                    family=c.family, fixed=c.fixed_label(), expected_sign=c.expected_sign)
