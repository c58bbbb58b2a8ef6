"""The claims of the paper and the criteria that judge them, read from ``claims.toml``.

Each claim is declared once in ``claims.toml`` (its text, the paper's value, the statistic, the
criterion with its alpha or threshold); the analysis modules compute the statistic and call
:func:`judge`, which applies the declared criterion and returns a :class:`ClaimRow`. The verdict
vocabulary is :data:`cckl_core.stats.VERDICTS`.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from scipy import stats as sstats

from .. import stats
from ..profiles import SeedSpread

FILE = Path(__file__).with_name("claims.toml")
KINDS = ("greater", "at_most", "at_least", "within", "test", "interval", "monotone_interval", "bound", "reported")
_FIELDS = {"claim", "paper", "statistic", "criterion", "shows", "holds", "test", "alpha", "direction", "threshold", "target",
           "tolerance", "interval", "side", "null", "training_noise"}


class ClaimsFileError(ValueError):
    """``claims.toml`` declares something the criteria cannot apply."""


@dataclass(frozen=True)
class Claim:
    """One declared claim and its criterion (see ``claims.toml`` for the kinds)."""

    id: str
    claim: str
    paper: str
    statistic: str
    criterion: str
    shows: str = ""
    holds: str = ""
    test: str = ""
    alpha: float = 0.05
    direction: str = "positive"
    threshold: float = math.nan
    target: float = math.nan
    tolerance: float = math.nan
    interval: str = ""
    side: str = "above"
    null: float = 0.0
    training_noise: bool = False

    def text(self, **fill: object) -> str:
        """The claim's text with its placeholders (``{arch}``, ``{steps}``) filled."""
        return self.claim.format(**fill) if fill else self.claim

    def rule(self) -> str:
        """The criterion in words, as the claims table's note states it."""
        k = self.criterion
        if k == "test":
            return f"{self.test}, alpha {self.alpha:g}"
        if k in ("interval", "monotone_interval"):
            where = f"{self.side} {self.null:g}"
            mono = "strictly increasing and " if k == "monotone_interval" else ""
            return f"yes if {mono}the {self.interval} lies {where}"
        if k == "at_most":
            return self.holds or f"yes if <= {self.threshold:g}"
        if k == "at_least":
            return f"yes if >= {self.threshold:g}"
        if k == "within":
            return self.holds or f"yes if within {self.tolerance:g} of {self.target:g}"
        if k == "greater":
            return f"yes if {self.holds}" if self.holds else "yes if greater"
        if k == "bound":
            return "yes if CCKL >= the bound; a bound <= 0 of a non-negative CCKL cannot fail (not informative)"
        return "reported, not judged"


@dataclass(frozen=True)
class ClaimRow:
    """A row of a claims table (``shows``: the figure or table that shows it)."""

    id: str
    claim: str
    paper: str
    measured: str
    verdict: str
    note: str
    shows: str = ""

    def as_dict(self) -> dict:
        return {"claim": self.claim, "paper value": self.paper, "measured value": self.measured,
                "holds": self.verdict, "note": self.note, "id": self.id, "shows": self.shows}


@dataclass(frozen=True)
class Declared:
    paper: Mapping
    claims: Mapping[str, Claim] = field(default_factory=dict)


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
        claim = Claim(id=cid, **spec)
        if claim.criterion not in KINDS:
            raise ClaimsFileError(f"{path}: claim {cid!r} has criterion {claim.criterion!r}; valid: {', '.join(KINDS)}")
        if claim.criterion == "test" and claim.direction not in ("positive", "negative"):
            raise ClaimsFileError(f"{path}: claim {cid!r}: direction must be positive or negative")
        if claim.criterion in ("interval", "monotone_interval") and claim.side not in ("above", "below"):
            raise ClaimsFileError(f"{path}: claim {cid!r}: side must be above or below")
        if claim.criterion in ("at_most", "at_least") and not math.isfinite(claim.threshold):
            raise ClaimsFileError(f"{path}: claim {cid!r} needs a threshold")
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


# --------------------------------------------------------------------------- criteria
def verdict_of(c: Claim, **ev: Any) -> str:
    """The verdict of claim ``c`` on the evidence ``ev`` (keys depend on the criterion:
    ``value``/``reference`` for greater, ``value`` for at_most/at_least, ``values`` for within,
    ``p_expected``/``p_opposite`` for test (``p_positive``/``p_negative`` are read by ``direction``),
    ``lo``/``hi`` (and ``monotone``) for the intervals, ``value``/``bound`` for bound)."""
    k = c.criterion
    if k == "reported":
        return stats.NOT_ASSESSED
    if k == "greater":
        return stats.HOLDS if ev["value"] > ev["reference"] else stats.DOES_NOT_HOLD
    if k in ("at_most", "at_least"):
        v = ev.get("value")
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return stats.NOT_ASSESSED
        ok = v <= c.threshold if k == "at_most" else v >= c.threshold
        return stats.HOLDS if ok else stats.DOES_NOT_HOLD
    if k == "within":
        return stats.HOLDS if all(abs(v - c.target) <= c.tolerance for v in ev["values"]) else stats.DOES_NOT_HOLD
    if k == "test":
        if "p_expected" in ev:
            p_exp, p_opp = ev["p_expected"], ev["p_opposite"]
        else:
            pos, neg = ev["p_positive"], ev["p_negative"]
            p_exp, p_opp = (pos, neg) if c.direction == "positive" else (neg, pos)
        return stats.test_verdict(p_exp, p_opp, alpha=c.alpha)
    if k in ("interval", "monotone_interval"):
        if k == "monotone_interval" and not ev["monotone"]:
            return stats.DOES_NOT_HOLD
        return stats.verdict(ev["lo"], ev["hi"], +1 if c.side == "above" else -1, null=c.null)
    if k == "bound":
        if not ev["bound"] > 0:
            return stats.NOT_INFORMATIVE
        return stats.HOLDS if ev["value"] >= ev["bound"] - 1e-12 else stats.DOES_NOT_HOLD
    raise ClaimsFileError(f"unknown criterion {k!r}")


def training_noise(c: Claim, verdict: str, effect: float, per_seed: list[float], spread: SeedSpread,
                   profile: str) -> tuple[str, str, str]:
    """Account for training noise in the verdict of a claim that compares trained models.

    With effects of two or more seeds (``per_seed``) the verdict is that of their t interval of
    the mean (in the claimed direction) and the sample verdict is not used. With one seed the sample
    verdict stands only if ``|effect| > t(0.975, m - 1) * sqrt(2) * sd``, where ``sd`` is the
    standard deviation of this claim's effect over the ``m`` seeds it was measured on: the 95% bound
    of the difference between the effects of two training runs, so that a rerun, whose effect
    differs by that much, could not reverse it. Else it is inconclusive. Returns ``(verdict, note, what
    to add to the measured value)``."""
    if not c.training_noise:
        return verdict, "", ""
    expected = +1 if (c.direction == "positive" if c.criterion == "test" else c.side == "above") else -1
    if len(per_seed) >= 2:
        iv = stats.seed_interval(per_seed)
        return (stats.verdict(iv["lo"], iv["hi"], expected),
                f"judged over {iv['n']} training seeds: mean effect {iv['mean']:+.3g}, 95% t interval "
                f"[{iv['lo']:+.3g}, {iv['hi']:+.3g}] (seed sd {iv['sd']:.3g}); the test-sample verdict of one seed is not used",
                f"; over {iv['n']} seeds: {iv['mean']:+.3g} [{iv['lo']:+.3g}, {iv['hi']:+.3g}]")
    sd = spread.sd.get(c.id)
    if sd is None:
        return verdict, (f"one training run; the seed-to-seed spread is not measured for profile {profile}, so this "
                         "verdict covers the test sample only, not training noise"), ""
    m = len(spread.seeds)
    bound = rerun_bound(sd, m)
    rule = (f"t(0.975, {m - 1}) x sqrt(2) x seed sd {sd:.3g} = {bound:.3g}, the spread between two training runs "
            f"(measured over seeds {', '.join(map(str, spread.seeds))})")
    if verdict in (stats.HOLDS, stats.DOES_NOT_HOLD) and abs(effect) <= bound:
        return stats.INCONCLUSIVE, (f"one training run; the test-sample verdict was {verdict}, but |effect| "
                                    f"{abs(effect):.3g} <= {rule}: within training noise"), ""
    return verdict, f"one training run; |effect| {abs(effect):.3g} against {rule}", ""


def rerun_bound(sd: float, seeds: int) -> float:
    """How far the effects of two training runs are apart at most (95%): ``t(0.975, seeds - 1) * sqrt(2) * sd``."""
    return float(sstats.t.ppf(0.975, seeds - 1)) * math.sqrt(2.0) * sd


def judge(cid: str, measured: str, context: str = "", fill: Mapping | None = None, noise: Mapping | None = None,
          **evidence: Any) -> ClaimRow:
    """The claims-table row of claim ``cid``: its declared text (placeholders from ``fill``), the
    paper's value, ``measured`` (text), the verdict of its criterion on ``evidence`` and the note
    (``context``, then the criterion; for a capacity claim ``noise`` holds ``effect``, ``per_seed``,
    ``spread`` and ``profile`` for :func:`training_noise`)."""
    c = claim(cid)
    verdict = verdict_of(c, **evidence)
    note = "; ".join(part for part in (context, c.rule()) if part)
    if noise is not None:
        verdict, extra, more = training_noise(c, verdict, noise["effect"], noise["per_seed"], noise["spread"],
                                              noise["profile"])
        note = "; ".join(part for part in (note, extra) if part)
        measured += more
    return ClaimRow(cid, c.text(**(fill or {})), c.paper, measured, verdict, note, c.shows)


def skipped(cid: str, measured: str, note: str, fill: Mapping | None = None) -> ClaimRow:
    """The row of a claim that cannot be judged here (its run is not in this profile's cache)."""
    c = claim(cid)
    return ClaimRow(cid, c.text(**(fill or {})), c.paper, measured, stats.NOT_ASSESSED, note, c.shows)
