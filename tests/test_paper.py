"""The paper as code: every claim's criterion can come out yes and no (and, for paper claims,
inconclusive, not tested at this scale and not informative); Holm's correction changes verdicts;
the analysis modules turn made-up results into the claims they should; notebooks only render (a
missing result is one message, nothing is written); the notebooks are views; parameters are checked."""
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from cckl_core import evaluations, profiles, runs, stats
from cckl_core.paper import (NOTEBOOKS, ParameterError, ResultsMissing, appendix_c, capacity_study, criteria,
                             fisher_growth, inputs, render, setup, theorem_check)

REPO = Path(__file__).resolve().parent.parent
CLAIMS = criteria.declared().claims
PAPER = [cid for cid, c in CLAIMS.items() if c.kind == "paper"]
DERIVATION = [cid for cid, c in CLAIMS.items() if c.kind == "derivation"]
FILL = {"arch": "vgg13", "steps": 20}


def _at_scale(c: criteria.Claim) -> list[criteria.RunFacts]:
    """Runs that meet claim ``c``'s scale: the paper's own architectures, well trained."""
    return [criteria.RunFacts("a", "resnet20x1", 1.0, None, "resnet20x1", 0.9, 10, 0.7),
            criteria.RunFacts("b", "vgg13", 1.0, None, "vgg13", 0.9, 10, 0.7)]


def _seeds(c: criteria.Claim, outcome: str, n: int = 3) -> criteria.SeedEvidence:
    """Per-seed statistics of claim ``c`` that lie clearly on the claimed side ("yes"), the other ("no"),
    or on both ("mixed")."""
    spread = np.array([1.0, 1.1, 0.9, 1.05, 0.95])[:n]
    side = c.expected_sign * {"yes": 1, "no": -1, "mixed": 0}[outcome]
    values = c.null + (side * spread if outcome != "mixed" else np.array([1.0, -1.0, 0.5, -0.4, 0.1])[:n])
    others = {name: values for name in c.statistics[1:]}
    return criteria.SeedEvidence(values, list(range(n)), others=others)


def _decide(cid: str, evidence, runs=None) -> criteria.ClaimRow:
    """A paper claim's row judged alone (a family of one)."""
    return criteria.adjust([criteria.judge(cid, "m", "context", fill=FILL, evidence=evidence,
                                           runs=_at_scale(CLAIMS[cid]) if runs is None else runs)])[0]


# --------------------------------------------------------------------------- every criterion can fail
@pytest.mark.parametrize("cid", PAPER)
def test_every_paper_claim_flips_with_its_seeds(cid):
    c = CLAIMS[cid]
    assert _decide(cid, _seeds(c, "yes")).verdict == stats.HOLDS
    assert _decide(cid, _seeds(c, "no")).verdict == stats.DOES_NOT_HOLD
    assert _decide(cid, _seeds(c, "mixed")).verdict == stats.INCONCLUSIVE
    one = _decide(cid, _seeds(c, "yes", n=1))
    assert one.verdict == stats.INCONCLUSIVE and "one training run" in one.note and math.isnan(one.p)
    two = _decide(cid, _seeds(c, "yes", n=2))
    assert two.verdict == stats.INCONCLUSIVE and "2 training seeds" in two.note
    row = _decide(cid, _seeds(c, "yes"))
    assert row.note.startswith("p ") and c.rule() in row.note and "{" not in row.claim
    assert row.kind == "paper" and row.family == c.family and row.fixed.startswith(c.fixed)


@pytest.mark.parametrize("cid", DERIVATION)
def test_every_derivation_check_flips(cid):
    c = CLAIMS[cid]
    k = c.criterion
    V, Vs, B = criteria.ValueEvidence, criteria.ValuesEvidence, criteria.BoundEvidence
    yes, no = {"at_most": (V(c.threshold / 2 - 1), V(c.threshold * 2 + 1)),
               "at_least": (V(c.threshold * 2), V(c.threshold / 2)),
               "within": (Vs([c.target, c.target + c.tolerance / 2]), Vs([c.target, c.target + 2 * c.tolerance])),
               "bound": (B(1.0, 0.5), B(0.2, 0.5))}[k]
    assert criteria.judge(cid, "m", evidence=yes).verdict == stats.HOLDS
    assert criteria.judge(cid, "m", evidence=no).verdict == stats.DOES_NOT_HOLD
    with pytest.raises(TypeError, match=f"reads {type(yes).__name__}, got SeedEvidence"):
        criteria.judge(cid, "m", evidence=criteria.SeedEvidence([1.0, 2.0, 3.0], [0, 1, 2]))
    if k == "bound":  # a bound <= 0 of a non-negative CCKL cannot fail
        assert criteria.judge(cid, "m", evidence=criteria.BoundEvidence(0.0, -1.0)).verdict == stats.NOT_INFORMATIVE


def test_kinds_cover_the_claims_and_reported_rows_have_no_verdict():
    assert len(CLAIMS) == 45 and all(c.shows and c.fixed for c in CLAIMS.values())
    for cid in (c for c in CLAIMS if CLAIMS[c].kind == "reported"):
        assert criteria.judge(cid, "x").verdict == stats.NOT_ASSESSED
    assert CLAIMS["fig1_pair_kl"].kind == "reported"  # KL at initialisation ~ 0: "after > before" could not fail
    assert {CLAIMS[c].kind for c in ("thm31_pair", "eq12_small_l2", "eq12_eigenvector")} == {"derivation"}
    # every criterion fixed after its data were seen says so in the row
    marked = [c for c in CLAIMS.values() if c.after_data]
    assert marked and all("after the data were seen" in c.fixed_label() for c in marked)
    assert all("before the data" in c.fixed_label() for c in CLAIMS.values() if not c.after_data)


def test_a_wrong_claims_file_is_refused(tmp_path):
    bad = tmp_path / "claims.toml"
    common = 'claim = "c"\npaper = "p"\nstatistic = "s"\nfamily = "f"\nfixed = "today"\n'
    for body, message in ((f'[claims.x]\n{common}kind = "paper"\ncriterion = "vibes"\n', "criterion 'vibes'"),
                          (f'[claims.x]\n{common}kind = "paper"\ncriterion = "seeds"\nwhat = 1\n', "unknown fields"),
                          (f'[claims.x]\n{common}kind = "paper"\ncriterion = "at_most"\nthreshold = 1\n', "'seeds'"),
                          (f'[claims.x]\n{common}kind = "guess"\ncriterion = "seeds"\n', "kind 'guess'"),
                          ('[claims.x]\nclaim = "c"\npaper = "p"\nstatistic = "s"\nfamily = "f"\nkind = "paper"\n'
                           'criterion = "seeds"\n', "lacks \\['fixed'\\]"),
                          (f'[claims.x]\n{common}kind = "paper"\ncriterion = "seeds"\nmin_seeds = 1\n', "min_seeds")):
        bad.write_text(body)
        with pytest.raises(criteria.ClaimsFileError, match=message):
            criteria.declared(bad)


# --------------------------------------------------------------------------- scale, multiplicity, statistics
def test_a_stand_in_or_an_undertrained_model_is_not_tested_at_this_scale():
    evidence = _seeds(CLAIMS["table1_resnet32_vs_resnet20_clean"], "yes")
    standin = [criteria.RunFacts("r20", "resnet20x1", 1.0, None, "resnet20x1", 0.7, 10, 0.7288),
               criteria.RunFacts("r32", "resnet32", 1.0, None, "resnet32x10", 0.8, 10, 0.7945)]
    row = _decide("table1_resnet32_vs_resnet20_clean", evidence, standin)
    assert row.verdict == stats.NOT_TESTED and "resnet32 w1 stands in for resnet32x10" in row.note
    assert row.measured.startswith("indicative only") and math.isnan(row.p)
    low = [criteria.RunFacts("r20", "resnet20x1", 1.0, None, "resnet20x1", 0.30, 10, 0.7288),
           criteria.RunFacts("r32", "resnet32x10", 10.0, None, "resnet32x10", 0.78, 10, 0.7945)]
    row = _decide("table1_resnet32_vs_resnet20_clean", evidence, low)
    assert row.verdict == stats.NOT_TESTED and "below 80% of the paper's 72.9%" in row.note
    narrow_vgg = [criteria.RunFacts("v", "vgg13", 0.25, True, "vgg13", 0.6)]
    assert _decide("fig4_standard_rises", _seeds(CLAIMS["fig4_standard_rises"], "yes"), narrow_vgg).verdict == stats.HOLDS
    chance = [criteria.RunFacts("v", "vgg13", 0.25, True, "vgg13", 0.25)]  # 2.5x chance on 10 classes
    row = _decide("fig4_standard_rises", _seeds(CLAIMS["fig4_standard_rises"], "yes"), chance)
    assert row.verdict == stats.NOT_TESTED and "below 3x chance" in row.note
    other_family = [criteria.RunFacts("v", "resnet32", 1.0, None, "vgg13", 0.9)]
    assert _decide("fig4_standard_rises", _seeds(CLAIMS["fig4_standard_rises"], "yes"), other_family).verdict == \
        stats.NOT_TESTED


def test_holm_within_a_family_turns_two_marginal_yeses_inconclusive():
    c = CLAIMS["fig3_trades_rises"]
    values = np.array([1.0, 1.5, 2.0])  # t = 5.2 on 2 degrees of freedom: p = 0.035, yes alone, not after Holm over 2
    p = stats.seed_test(values)["p"]
    assert 0.025 < p < 0.05
    alone = _decide("fig3_trades_rises", criteria.SeedEvidence(values, [0, 1, 2]))
    assert alone.verdict == stats.HOLDS and alone.p_adjusted == pytest.approx(p)
    rows = [criteria.judge(cid, "m", fill=FILL, evidence=criteria.SeedEvidence(c.null + c.expected_sign * values, [0, 1, 2]),
                           runs=_at_scale(c)) for cid in ("fig3_trades_rises", "fig3_pgd_at_rises")]
    both = criteria.adjust(rows)
    assert [r.verdict for r in both] == [stats.INCONCLUSIVE] * 2
    assert all(r.p_adjusted == pytest.approx(2 * p) for r in both) and "over the 2 tested paper claims" in both[0].note
    other_family = criteria.judge("table2_rises", "m", evidence=_seeds(CLAIMS["table2_rises"], "yes"), runs=_at_scale(c))
    assert criteria.adjust([rows[0], other_family])[0].verdict == stats.HOLDS  # families are adjusted apart


def test_holm_is_the_step_down_procedure():
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.2, rng.integers(1, 8))
        adj = stats.holm(p)
        for alpha in (0.01, 0.05, 0.1):
            order, rejected = np.argsort(p), set()
            for k, idx in enumerate(order):  # Holm (1979): reject while p_(k) <= alpha / (m - k)
                if p[idx] > alpha / (len(p) - k):
                    break
                rejected.add(int(idx))
            assert {int(i) for i in np.flatnonzero(adj <= alpha)} == rejected
    assert np.isnan(stats.holm([np.nan, 0.01])[0]) and stats.holm([np.nan, 0.01])[1] == pytest.approx(0.01)


def test_seed_test_is_scipys_t_test_and_interval():
    d = [1.2, 0.4, 2.0, 0.9]
    got = stats.seed_test(d, null=0.5)
    lo, hi = sstats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=np.std(d, ddof=1) / math.sqrt(len(d)))
    assert got["lo"] == pytest.approx(lo) and got["hi"] == pytest.approx(hi) and got["n"] == 4
    assert got["p"] == pytest.approx(sstats.ttest_1samp(d, 0.5).pvalue)
    assert got["p_above"] == pytest.approx(sstats.ttest_1samp(d, 0.5, alternative="greater").pvalue)
    assert math.isnan(stats.seed_test([1.0])["p"]) and math.isnan(stats.seed_test([1.0, 1.0])["p"])
    assert stats.seed_test([1.0, np.nan, 2.0, 3.0])["n"] == 3  # a seed whose statistic is undefined is left out


def test_weighted_median_is_the_lower_median_of_the_repeated_sample():
    rng = np.random.default_rng(0)
    for _ in range(100):
        x = rng.normal(size=rng.integers(1, 9))
        w = rng.integers(0, 4, size=(3, x.size)).astype(float)
        w[:, 0] += 1
        got = stats.weighted_median(w, x)
        for row, g in zip(w, got):
            rep = np.sort(np.repeat(x, row.astype(int)))
            assert g == rep[(rep.size - 1) // 2]


def test_cluster_bootstrap_resamples_images_not_pairs():
    rng = np.random.default_rng(1)
    n_img, n_pairs = 30, 90
    i = rng.integers(0, n_img, n_pairs)
    j = (i + rng.integers(1, n_img, n_pairs)) % n_img
    effect = rng.normal(size=n_img)
    x = effect[i] + effect[j] + 0.1 * rng.normal(size=n_pairs)
    got = stats.cluster_bootstrap(lambda w: stats.weighted_mean(w, x), i, j, n_boot=4000, seed=0)
    # the oracle: draw images with replacement and enumerate every pair of drawn positions that is a sampled pair
    where = {}
    for p, (a, b) in enumerate(zip(i, j)):
        where.setdefault((a, b), []).append(p)
    brute = []
    for _ in range(1500):
        drawn = rng.integers(0, n_img, n_img)
        picked = [p for a in drawn for b in drawn for p in where.get((a, b), [])]
        brute.append(x[picked].mean())
    assert got["value"] == pytest.approx(x.mean())
    assert got["se"] == pytest.approx(np.std(brute, ddof=1), rel=0.12)
    pair_se = stats.bootstrap_ci(x, np.mean, n_boot=2000)["se"]
    assert got["se"] > 1.5 * pair_se  # pairs share images: resampling pairs understates the uncertainty
    disjoint = np.arange(0, 60, 2), np.arange(1, 60, 2)  # every image in one pair only: conservative by about sqrt(3)
    y = rng.normal(size=30)
    cl = stats.cluster_bootstrap(lambda w: stats.weighted_mean(w, y), *disjoint, n_boot=4000, seed=0)
    assert cl["se"] / stats.bootstrap_ci(y, np.mean, n_boot=4000)["se"] == pytest.approx(math.sqrt(3), rel=0.2)
    assert cl["lo"] < y.mean() < cl["hi"] and 0 < cl["p_above"] <= 1


def test_the_share_is_decided_only_where_its_three_statistics_agree():
    c = CLAIMS["fig5_g2_share"]
    runs_ = [criteria.RunFacts("r20", "resnet20x1", 1.0, None, "resnet20x1", 0.7, 10, 0.7288),
             criteria.RunFacts("r32", "resnet32x10", 10.0, None, "resnet32x10", 0.78, 10, 0.7945)]
    agree = criteria.SeedEvidence([0.3, 0.31, 0.29], [0, 1, 2], others={"median of ratios": [0.2, 0.21, 0.19],
                                                                        "mean of ratios": [0.1, 0.12, 0.11]})
    assert _decide("fig5_g2_share", agree, runs_).verdict == stats.HOLDS
    split = criteria.SeedEvidence([0.3, 0.31, 0.29], [0, 1, 2], others={"median of ratios": [0.2, 0.21, 0.19],
                                                                        "mean of ratios": [-0.1, -0.12, -0.11]})
    row = _decide("fig5_g2_share", split, runs_)
    assert row.verdict == stats.INCONCLUSIVE and "the choice of statistic decides" in row.note
    assert c.statistics[0] == "ratio of means"


def test_not_informative_and_blocked_evidence():
    c = CLAIMS["thm31_bound_rises"]
    row = _decide("thm31_bound_rises", criteria.SeedEvidence([1.0, 1.1, 0.9], [0, 1, 2], not_informative="bound <= 0"))
    assert row.verdict == stats.NOT_INFORMATIVE and math.isnan(row.p) and c.kind == "paper"
    blocked = _decide("table2_rises", criteria.SeedEvidence([0.1, 0.11, 0.09], [0, 1, 2], blocked="not monotone"))
    assert blocked.verdict == stats.INCONCLUSIVE and "not monotone" in blocked.note


# --------------------------------------------------------------------------- the modules on made-up results
def _run(profile, name, history=None, seed=0):
    cfg = profile.run(name, seed)
    history = history or [{"epoch": e, "test_acc": 0.4 + 0.1 * e, "robust_acc": 0.1, "fisher_fro_mean": 1.0 + e,
                           "fisher_spec_mean": 0.5 + e, "test_ce": 2.0 - 0.1 * e, "cckl": 0.1 * e,
                           "train_seconds": 1.0} for e in range(cfg.epochs + 1)]
    info = {"name": "synthetic", "classes": [f"c{k}" for k in range(10)], "num_classes": 10, "n_test": 200}
    return runs.Run(cfg, Path("/nonexistent") / cfg.folder, None, history, True, info, {})


class FakeInputs(inputs.Inputs):
    """Inputs made up in the test: no cache; seed groups as given."""

    def __init__(self, profile, runs_, evals, seeds=None):
        super().__init__(profile, 0, runs_, evals)
        self.seeds = seeds or {}

    def seed_group(self, run):
        return [run] + [r for r, _ in self.seeds.get((run.name, "any"), [])]

    def seed_evaluations(self, run, name):
        return [(run, self.evaluations[run.name, name])] + self.seeds.get((run.name, name), [])


def _result(**arrays):
    out = evaluations.Result(arrays)
    out.meta = {}
    return out


def _table1(n, acc, seed=0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    correct = np.zeros(n, bool)
    correct[order[:int(acc * n)]] = True
    return correct


def _capacity_inputs(monkeypatch, accuracies, kl_larger, prof=None):
    prof = prof or profiles.load("smoke")
    names = list(prof.role("table1"))
    n = 400
    rs = {name: _run(prof, name) for name in names}
    evals = {}
    for name, acc in zip(names, accuracies):
        clean = _table1(n, acc)
        evals[name, "table1"] = _result(correct_clean=clean, correct_pgd=clean & _table1(n, 0.6, 1),
                                        correct_cw=clean & _table1(n, 0.5, 2), labels=np.arange(n) % 10,
                                        index=np.arange(n), pgd_steps=3)
    i, j = np.arange(300), (np.arange(300) + 1) % 300
    rng = np.random.default_rng(0)
    kl_small = rng.uniform(0.5, 1.5, 300)
    for name, kl in zip(prof.role("fig5"), (kl_small, kl_small + kl_larger)):
        evals[name, "fig5"] = _result(i=i, j=j, labels=np.arange(300) % 10, kl=kl, g1=0.5 * kl_small, n_test=300)
    fake = FakeInputs(prof, rs, evals)
    monkeypatch.setattr(capacity_study, "gather", lambda *a, **k: fake)
    return prof


def _more_capacity_seeds(fake, prof, accs_by_seed, shifts):
    for (seed, accs), shift in zip(accs_by_seed, shifts):
        for name, acc in zip(prof.role("table1"), accs):
            clean = _table1(400, acc, seed)
            res = _result(**{**fake.evaluations[name, "table1"], "correct_clean": clean,
                             "correct_pgd": clean & _table1(400, 0.6, seed + 10)})
            fake.seeds.setdefault((name, "table1"), []).append((_run(prof, name, seed=seed), res))
        for name in prof.role("fig5"):
            ev = fake.evaluations[name, "fig5"]
            fake.seeds.setdefault((name, "fig5"), []).append(
                (_run(prof, name, seed=seed), _result(**{**ev, "kl": ev["kl"] * (1 + shift)})))


def test_capacity_claims_on_a_stand_in_are_not_tested_at_this_scale(monkeypatch):
    prof = _capacity_inputs(monkeypatch, [0.2, 0.5, 0.8, 0.3, 0.6], 0.5)
    out = capacity_study.render(prof, 0)
    rows = {r.id: r for r in out.claims}
    assert [r.id for r in out.claims] == [c for c in CLAIMS if CLAIMS[c].shows in ("table1_capacity", "fig5_kl_g2_resnets")]
    assert all(rows[c].verdict == stats.NOT_TESTED for c in rows if c != "fig5_g2_negative")
    assert "stand-in for resnet32x10" in rows["fig5_kl"].measured and "indicative only" in rows["fig5_kl"].measured
    assert "exact McNemar p" in rows["table1_half_vs_pure_clean"].measured  # the one-seed test sample, indicative
    display = out.table("table1_capacity")
    assert any("for resnet32x10" in label for label in display.index)  # the stand-in keeps its real name
    out.close()


def _exact_capacity_profile():
    """The smoke profile with the paper's exact Table 1 models (no stand-in, full width, no BatchNorm)."""
    from dataclasses import replace
    from types import MappingProxyType
    smoke = profiles.load("smoke")
    models = dict(zip(smoke.role("table1"), criteria.paper("table1_architectures")))
    runs_ = {n: (replace(cfg, model=models[n], width=1.0, batch_norm=None if models[n].startswith("resnet") else False)
                 if n in models else cfg) for n, cfg in smoke.runs.items()}
    return replace(smoke, runs=MappingProxyType(runs_))


def test_capacity_claims_at_scale_follow_the_seeds(monkeypatch):
    prof = _exact_capacity_profile()
    verdicts = {}
    for case, accs, dkl in (("up", [0.70, 0.78, 0.90, 0.72, 0.85], 0.5), ("down", [0.90, 0.80, 0.70, 0.85, 0.72], -0.3)):
        _capacity_inputs(monkeypatch, accs, dkl, prof)
        fake = capacity_study.gather()
        _more_capacity_seeds(fake, prof, [(1, np.add(accs, [0.01, 0.02, 0.0, 0.01, 0.02])),
                                          (2, np.add(accs, [-0.02, 0.0, -0.01, 0.0, -0.01]))], (0.01, -0.02))
        out = render_module(capacity_study, prof)
        verdicts[case] = {r.id: r.verdict for r in out.claims}
        out.close()
    for cid in ("table1_half_vs_pure_clean", "table1_normal_vs_half_clean", "table1_resnet32_vs_resnet20_clean",
                "fig5_kl"):
        assert verdicts["up"][cid] == stats.HOLDS, cid
        assert verdicts["down"][cid] == stats.DOES_NOT_HOLD, cid


def test_capacity_claims_at_scale_with_one_seed_are_inconclusive(monkeypatch):
    prof = _exact_capacity_profile()
    _capacity_inputs(monkeypatch, [0.70, 0.78, 0.90, 0.72, 0.85], 0.5, prof)
    out = render_module(capacity_study, prof)
    row = next(r for r in out.claims if r.id == "table1_half_vs_pure_clean")
    assert row.verdict == stats.INCONCLUSIVE and "one training run" in row.note and "McNemar" in row.measured
    out.close()


def render_module(module, prof):
    """A module's render with Holm's correction applied, as :func:`cckl_core.paper.render` does."""
    out = module.render(prof, 0)
    out.claims = criteria.adjust(out.claims)
    return out


def test_seed_effects_and_the_robust_count():
    prof = profiles.load("smoke")
    names = list(prof.role("table1"))
    clean = np.array([True, True, False, False])
    pgd = np.array([True, False, True, False])  # image 2: wrong when clean, right under attack
    ev = _result(correct_clean=clean, correct_pgd=pgd)
    assert capacity_study.correct(ev, "pgd").tolist() == [True, False, False, False]
    assert names and capacity_study.correct(ev, "clean").tolist() == clean.tolist()


def test_table2_claims_follow_the_seeds(monkeypatch):
    prof = profiles.load("smoke")
    run = _run(prof, prof.role("table2"))
    rng = np.random.default_rng(0)
    kl = rng.uniform(0.5, 1.0, (8, 50))

    def ev_of(errors):
        g1 = kl * (1 - errors[:, None] * rng.uniform(0.9, 1.1, (8, 50)))
        return _result(eps_255=np.arange(1, 9), kl=kl, g1=g1, linf=np.ones((8, 50)), labels=np.arange(50) % 10)

    for errors, expect in ((np.linspace(0.05, 0.2, 8), stats.HOLDS), (np.linspace(0.6, 0.4, 8), stats.DOES_NOT_HOLD)):
        fake = FakeInputs(prof, {run.name: run}, {(run.name, "table2"): ev_of(errors)})
        fake.seeds[(run.name, "table2")] = [(_run(prof, run.name, seed=s), ev_of(errors * f)) for s, f in ((1, 1.05), (2, 0.95))]
        fake.seeds[(run.name, "any")] = [(r, None) for r, _ in fake.seeds[(run.name, "table2")]]
        monkeypatch.setattr(appendix_c, "gather", lambda *a, **k: fake)
        out = render_module(appendix_c, prof)
        assert [r.verdict for r in out.claims] == [expect, expect], [r.note for r in out.claims]
        out.close()
    fake = FakeInputs(prof, {run.name: run}, {(run.name, "table2"): ev_of(np.linspace(0.05, 0.2, 8))})
    monkeypatch.setattr(appendix_c, "gather", lambda *a, **k: fake)
    out = render_module(appendix_c, prof)
    assert {r.verdict for r in out.claims} == {stats.INCONCLUSIVE}  # one training run cannot decide
    out.close()


def test_fisher_trend_and_ratio_statistics_follow_the_histories():
    prof = profiles.load("smoke")

    def hist(fro, acc):
        return [{"epoch": e, "test_acc": a, "robust_acc": 0.1, "fisher_fro_mean": f, "fisher_spec_mean": f / 2}
                for e, (f, a) in enumerate(zip(fro, acc))]

    std, adv = _run(prof, "vgg13_standard", hist([1, 50, 100], [0.1, 0.5, 0.6])), _run(prof, "vgg13_pgd_at",
                                                                                     hist([1, 2, 3], [0.1, 0.3, 0.45]))
    assert fisher_growth.log_fisher_change(std) == pytest.approx(math.log(100 / 50))
    m = fisher_growth.matched_ratios(std, adv)
    assert m["ratio at matched epoch"] == pytest.approx(100 / 3) and m["standard epoch reaching it"] == 1
    assert m["ratio at matched accuracy"] == pytest.approx(50 / 3)
    never = fisher_growth.matched_ratios(std, _run(prof, "vgg13_pgd_at", hist([1, 2, 3], [0.1, 0.3, 0.9])))
    assert math.isnan(never["ratio at matched accuracy"])
    R = {role: _run(prof, prof.role(role), hist([1, 3, 2], [0.1, 0.2, 0.3])) for role in fisher_growth.ROLES}
    final, matched = fisher_growth.growth_frames(R)
    assert len(final) == 6 and len(matched) == 4 and (final["ln |F|_F last - epoch 1"] < 0).all()


def test_the_robust_auc_is_the_share_of_pairs_ordered_as_claimed():
    ev9 = _result(correct=np.array([1, 1, 1, 1, 1, 0], bool), correct_pgd=np.array([1, 1, 0, 0, 0, 1], bool),
                  frobenius=np.array([1.0, 3.0, 2.0, 4.0, 5.0, 0.1]))
    robust, nonrobust = fisher_growth.robust_split(ev9)
    brute = np.mean([(r < n) + 0.5 * (r == n) for r in robust for n in nonrobust])
    assert fisher_growth.robust_auc(ev9) == pytest.approx(brute) == pytest.approx(5 / 6)


def test_the_pair_kl_and_the_trend_statistics_of_notebook_01():
    prof = profiles.load("smoke")
    run = _run(prof, prof.role("fig2_standard"))
    run.history[0]["pair_probs"] = [[0.1] * 10, [0.1] * 10]
    run.history[-1]["pair_probs"] = [[0.91] + [0.01] * 9, [0.01] * 9 + [0.91]]
    kl = theorem_check.pair_kl(theorem_check.pair_outputs(run))
    assert kl["init"] == 0 and kl["trained"] > 3
    assert criteria.judge("fig1_pair_kl", "m").verdict == stats.NOT_ASSESSED  # an illustration, not a test
    from cckl_core.histories import table
    per_seed = theorem_check.trends(table([run], theorem_check.HISTORY_KEYS))
    assert per_seed["cckl change"].iloc[0] == pytest.approx(run.history[-1]["cckl"] - run.history[1]["cckl"])
    rng = np.random.default_rng(0)
    run.history[:] = [{"epoch": e, "test_ce": 2 - 0.1 * e + rng.normal(0, 0.05), "cckl": 0.2 * e + rng.normal(0, 0.1)}
                      for e in range(7)]
    epochs, ce = np.arange(len(run.history)), np.array([h["test_ce"] for h in run.history])
    cckl = np.array([h["cckl"] for h in run.history])
    per_seed = theorem_check.trends(table([run], theorem_check.HISTORY_KEYS))
    assert per_seed["r(test CE, CCKL)"].iloc[0] == pytest.approx(
        sstats.pearsonr(ce[epochs >= 1], cckl[epochs >= 1]).statistic)
    assert per_seed["epochs"].iloc[0] == 6
    gaps = theorem_check.random_pair_gaps(0, n=500)
    assert gaps.max() <= 1e-12  # the corrected inequality holds on every random pair


# --------------------------------------------------------------------------- rendering the smoke fixture
def test_every_notebook_renders_the_smoke_fixture_in_claims_file_order(smoke_cache):
    prof = profiles.load("smoke")
    for nb, module in NOTEBOOKS.items():
        out = render(nb, prof)
        declared = [cid for cid in CLAIMS if CLAIMS[cid].shows in set(out.figures) | set(out.tables)]
        assert [r.id for r in out.claims] == declared, nb
        assert all(" · profile smoke · " in getattr(f, "_cckl_stamp", "") for f in out.figures.values())
        assert {r.verdict for r in out.claims} <= set(stats.VERDICTS)
        out.close()


def test_rendering_writes_nothing_under_the_artifacts_root(smoke_cache):
    before = sorted((p, p.stat().st_mtime_ns) for p in smoke_cache.rglob("*"))
    out = render("03_capacity_study", "smoke")
    out.close()
    assert sorted((p, p.stat().st_mtime_ns) for p in smoke_cache.rglob("*")) == before


def test_a_missing_result_is_one_message_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "empty"))
    for nb in NOTEBOOKS:
        with pytest.raises(ResultsMissing) as err:
            render(nb, "paper")
        msg = str(err.value)
        assert "profile 'paper'" in msg and "make evaluations PROFILE=paper" in msg and "plan --profile paper" in msg
        assert "\n" not in msg
    assert not (tmp_path / "empty").exists()


def test_a_missing_evaluation_names_its_command(smoke_cache):
    folder = next((smoke_cache / "smoke").glob("vgg13_trades-*"))
    for f in (folder / "evaluations").glob("table2-*"):
        f.unlink()
    with pytest.raises(ResultsMissing, match="table2 of vgg13_trades"):
        render("04_appendix_c_table", "smoke")


def test_an_edited_evaluation_value_is_not_served(smoke_cache):
    meta_file = next((smoke_cache / "smoke").glob("vgg13_standard-*/evaluations/theorem-*.json"))
    meta = json.loads(meta_file.read_text())
    meta["seconds"] = meta["seconds"] + 1  # any edit breaks the seal
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ResultsMissing, match="theorem of vgg13_standard"):
        render("01_theorem_check", "smoke")


def test_an_absent_optional_run_is_said_in_words(smoke_cache):
    out = render("01_theorem_check", "smoke")
    row = next(r for r in out.claims if r.id == "fig6_cifar100")
    assert row.verdict == stats.NOT_ASSESSED and "cifar100" in row.note
    assert "Error" not in row.note and "/" not in row.note.split("`")[0]
    out.close()


def test_a_profile_without_a_notebooks_runs_says_so_and_writes_nothing(tmp_path):
    out = render("01_theorem_check", "gpu")
    assert not out.claims and "no runs for 01_theorem_check" in out.text["summary"]
    out.save(tmp_path)
    assert not list(tmp_path.iterdir())
    assert "no runs" in out.figure("fig1_output_distributions").data


# --------------------------------------------------------------------------- defaults and parameters
def test_the_default_profile_is_one_whose_results_are_present(monkeypatch):
    present = {("smoke", "cache"), ("quick", "bundle")}
    assert profiles.default_to_render(lambda n, w: (n, w) in present) == "smoke"
    assert profiles.default_to_render(lambda n, w: (n, w) in {("quick", "bundle")}) == "quick"
    assert profiles.default_to_render(lambda n, w: False) == "quick"
    monkeypatch.setenv("CCKL_PROFILE", "paper")
    assert profiles.default_to_render(lambda n, w: (n, w) in present) == "paper"
    monkeypatch.setenv("CCKL_PROFILE", "nope")
    with pytest.raises(profiles.ProfileError, match=r"from \$CCKL_PROFILE"):
        profiles.default_to_render(lambda n, w: True)


def test_results_present_looks_at_files_only(smoke_cache):
    assert inputs.results_present("smoke", "cache")
    assert not inputs.results_present("paper", "cache")
    next((smoke_cache / "smoke").glob("t1_vgg13_half_linear-*/complete.json")).unlink()
    assert not inputs.results_present("smoke", "cache")


@pytest.mark.parametrize("kwargs, message", [
    (dict(profile="nope"), "unknown profile 'nope'"),
    (dict(profile=3), "profile must be None"),
    (dict(seed=-1), "seed must be a whole number"),
    (dict(seed="1"), "seed must be a whole number"),
    (dict(seed=True), "seed must be a whole number"),
    (dict(namespace={"profle": "smoke"}), "did you mean 'profile'"),
    (dict(namespace={"sede": 1}), "did you mean 'seed'"),
    (dict(namespace={"device": "cpu"}), "not a parameter of this notebook any more"),
])
def test_bad_notebook_parameters_are_one_line(kwargs, message):
    with pytest.raises(ParameterError, match=message) as err:
        setup("04_appendix_c_table", **kwargs)
    assert "\n" not in str(err.value)


def test_a_notebooks_own_globals_are_not_taken_for_parameters(smoke_cache, capsys):
    import cckl_core
    inputs, out = setup("04_appendix_c_table", "smoke", 0, namespace={
        "profile": "smoke", "seed": 0, "paper": cckl_core, "result": None, "In": [], "_": 1, "profiles": profiles,
        "seeds": [0, 1], "out": None, "inputs": None})
    assert inputs.by_role("table2").name == "vgg13_trades" and not out.claims and out.notebook == "04_appendix_c_table"
    assert "profile smoke" in capsys.readouterr().out


def test_a_notebook_opened_for_a_profile_without_its_runs_stops_with_one_line():
    from cckl_core.paper import NotInProfile, notebooks_of
    assert notebooks_of("gpu") == ["03_capacity_study", "04_appendix_c_table"] and notebooks_of("smoke") == list(NOTEBOOKS)
    with pytest.raises(NotInProfile, match="no runs for 01_theorem_check.*profile = 'paper', 'quick', 'smoke'") as err:
        setup("01_theorem_check", "gpu")
    assert "\n" not in str(err.value) and err.value._render_traceback_()[0].startswith("NotInProfile: ")


# --------------------------------------------------------------------------- the notebooks are views
def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_notebooks_show_the_method_in_short_steps():
    """Each notebook: a parameters cell, then calls of tested functions whose results are named variables;
    no function definitions, loops or training; 60 code lines at most; no outputs committed."""
    found = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
    assert found == list(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        cells = _code_cells(nb)
        assert cells[0]["metadata"].get("tags") == ["parameters"]
        lines = 0
        for c in cells:
            src = "".join(c["source"])
            lines += len([line for line in src.splitlines() if line.strip()])
            assert not c["outputs"] and c.get("execution_count") is None, name
            assert not re.search(r"^\s*(def|class|for|while|with|lambda|import torch)\b|\blambda\b", src, re.M), (name, src)
            assert not re.search(r"\b(train|fit|backward|pgd)\b|\.evaluate\(|\bcompute\(", src), (name, src)
        assert f'paper.setup("{name}"' in "".join(cells[1]["source"])
        assert lines <= 60, (name, lines)
        assert "out.claims_table()" in "".join(cells[-2]["source"]) and "out.save()" in "".join(cells[-1]["source"])


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_a_notebooks_steps_give_the_packages_claims_and_tables(name, smoke_cache, tmp_path, monkeypatch):
    """Run in order, a notebook's cells build exactly what `paper.render` builds: the same claims rows,
    tables and figures; its save writes them."""
    from conftest import run_notebook
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path / "figures"))
    ns = run_notebook(name, profile="smoke", seed=0)
    package = render(name, "smoke")
    assert [r.as_dict() for r in ns["out"].judged()] == [r.as_dict() for r in package.claims]
    assert list(ns["out"].tables) == list(package.tables) and set(ns["out"].figures) == set(package.figures)
    for key, table in package.tables.items():
        pd.testing.assert_frame_equal(ns["out"].tables[key].frame, table.frame)
    written = json.loads((tmp_path / "figures" / "smoke" / f"claims_{name}.json").read_text())["rows"]
    assert written == [r.as_dict() for r in package.claims]
    package.close()


def test_a_section_run_again_replaces_its_claims_and_holm_counts_each_claim_once(smoke_cache, tmp_path, monkeypatch):
    from conftest import run_notebook
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path / "figures"))
    ns = run_notebook("01_theorem_check", profile="smoke", seed=0)
    out, tc = ns["out"], ns["tc"]
    before = [r.as_dict() for r in out.judged()]
    out.claims += tc.figure2_claims(ns["vgg"], tc.trends(ns["fig2_history"]))  # the Figure 2 cell, run again
    assert [r.as_dict() for r in out.judged()] == before and len(out.claims) == len(before)
    out.claims += tc.figure2_claims(ns["vgg"], tc.trends(ns["fig2_history"], from_epoch=2))  # a changed statistic
    assert len(out.claims) == len(before) and [r.id for r in out.claims] == [r["id"] for r in before]


@pytest.mark.parametrize("machine", ["", 'one "H100"\n[runs.x]\\ tab\there \x7f \x00 é'])
def test_the_spread_of_the_capacity_effects_comes_from_the_seeds_in_the_cache(monkeypatch, machine):
    """`cckl spread` prints TOML from the seeds in the cache: a --machine with quotes, newlines, backslashes or
    control characters is escaped (it parses back to the same text) and cannot add a section."""
    import tomllib
    prof = _capacity_inputs(monkeypatch, [0.2, 0.5, 0.8, 0.3, 0.6], 0.5)
    fake = capacity_study.gather()
    with pytest.raises(ValueError, match="one training seed"):
        capacity_study.spread_toml(prof)
    _more_capacity_seeds(fake, prof, [(1, [0.21, 0.52, 0.8, 0.31, 0.62]), (2, [0.18, 0.5, 0.79, 0.3, 0.59])], (0.01, -0.01))
    text = capacity_study.spread_toml(prof, machine=machine)
    assert set(tomllib.loads(text)) == {"seed_spread"}
    parsed = tomllib.loads(text)["seed_spread"]
    assert parsed["how"] == f"python -m cckl_core spread --profile {prof.name}" + (f", {machine}" if machine else "")
    effects = capacity_study.seed_effects(fake)
    assert parsed["seeds"] == [0, 1, 2] and set(parsed["sd"]) == {c for c in effects if ":" not in c}
    seeds, values = effects["table1_half_vs_pure_clean"]
    assert seeds == [0, 1, 2] and parsed["sd"]["table1_half_vs_pure_clean"] == pytest.approx(np.std(values, ddof=1), rel=1e-3)


def test_the_exported_notebook_page_links_published_figures_and_keeps_probe_figures(tmp_path):
    import nbformat

    from cckl_core import report
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('out.figures["fig_a"] = m.a()\nout.figures["fig_b"] = m.b()', outputs=[
            nbformat.v4.new_output("display_data", data=dict(png)), nbformat.v4.new_output("display_data", data=dict(png))]),
        nbformat.v4.new_code_cell("probe.figure()", outputs=[nbformat.v4.new_output("display_data", data=dict(png))])])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    page = report.export_notebook(tmp_path / "nb.ipynb", tmp_path / "nb.html").read_text()
    assert "../fig_a.png" in page and "../fig_b.png" in page
    assert page.index("fig_a.png") < page.index("fig_b.png") and page.count("data:image/png;base64") == 1


def test_a_published_render_injects_every_parameter_of_each_notebook():
    """Each notebook's parameters cell defines `profile` and exactly the parameters `make paper` injects
    (paper.PUBLISHED), with the same values, so nothing saved in a source notebook steers a published render."""
    import ast

    from cckl_core.paper import PARAMETERS, PUBLISHED
    from cckl_core.paper.execute import parameters_of
    for name in NOTEBOOKS:
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        cell = "".join(_code_cells(nb)[0]["source"])
        defined = {t.targets[0].id: ast.literal_eval(t.value) for t in ast.parse(cell).body}
        assert set(defined) == {"profile", *PUBLISHED[name]} and set(defined) <= set(PARAMETERS), name
        assert {k: defined[k] for k in PUBLISHED[name]} == PUBLISHED[name], name
        assert parameters_of(name, "quick") == {"profile": "quick", **PUBLISHED[name]}


def test_a_render_runs_a_kernel_per_notebook_up_to_one_per_cpu_and_shares_the_cpus():
    from cckl_core.paper.execute import kernels_for
    assert kernels_for(4, cpus=2) == (2, 1)
    assert kernels_for(2, cpus=16) == (2, 8)
    assert kernels_for(1, cpus=2) == (1, 2)
    assert kernels_for(4, cpus=1) == (1, 1)
    assert kernels_for(3, cpus=8) == (3, 2)


def test_a_notebook_without_runs_is_left_out_and_a_missing_result_is_one_line(smoke_cache, tmp_path, monkeypatch):
    """A notebook the profile has no runs for (01 under gpu) is left out; a missing result is one line."""
    from cckl_core.paper.execute import RenderError, execute_all
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path / "figures"))
    assert execute_all("gpu", tmp_path / "gpu", ["01_theorem_check"], say=lambda line: None) == []
    for f in (smoke_cache / "smoke").glob("vgg13_trades-*/evaluations/table2-*"):
        f.unlink()
    with pytest.raises(RenderError, match=r"^04_appendix_c_table: ResultsMissing: .*table2 of vgg13_trades") as err:
        execute_all("smoke", tmp_path / "again", ["04_appendix_c_table"], say=lambda line: None)
    assert "\n" not in str(err.value)


def test_cckl_render_runs_again_only_the_notebooks_whose_inputs_or_outputs_changed(smoke_cache, tmp_path, monkeypatch,
                                                                                   capsys):
    """`cckl render` (make paper) runs a profile's notebooks in kernels (one per CPU at most), each notebook with its
    parameters injected, and records what it read (cckl_core.render_state): run again with nothing changed it
    renders nothing; with one executed notebook touched, that notebook alone."""
    import nbformat

    from cckl_core import paper
    from cckl_core.cli import main
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr(paper, "notebooks_of", lambda profile: ["03_capacity_study", "04_appendix_c_table"])
    args = ["render", "--profile", "smoke", "--out", str(tmp_path / "build")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "rendering 03_capacity_study" in first and "rendering 04_appendix_c_table" in first
    for name in ("03_capacity_study", "04_appendix_c_table"):
        nb = nbformat.read(tmp_path / "build" / f"{name}.ipynb", as_version=4)
        injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
        assert "profile = \"smoke\"" in injected.source and "seed = 0" in injected.source
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        written = json.loads((tmp_path / "figures" / "smoke" / f"claims_{name}.json").read_text())["rows"]
        assert written == [r.as_dict() for r in render(name, "smoke").claims]
    assert main(args) == 0
    assert "[cckl] smoke: up to date, nothing rendered" in capsys.readouterr().out
    executed = tmp_path / "build" / "04_appendix_c_table.ipynb"
    st = executed.stat()
    os.utime(executed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert main(args) == 0
    third = capsys.readouterr().out
    assert "rendering 04_appendix_c_table" in third and "rendering 03_capacity_study" not in third
    assert "up to date, not rendered again: 03_capacity_study" in third
    assert main(args) == 0 and "nothing rendered" in capsys.readouterr().out
    assert (tmp_path / "figures" / "smoke" / "index.html").is_file()  # the report ran, in the same process


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, not yet reaped by whoever adopted it)."""
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]


def test_ctrl_c_stops_a_render_and_its_kernels_in_one_line(smoke_cache, tmp_path):
    """Ctrl+C during `cckl render`: exit status 130, the one line, every kernel shut down, no state recorded."""
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "CCKL_FIGURES": str(tmp_path / "figures")}
    proc = subprocess.Popen([sys.executable, "-m", "cckl_core", "render", "--profile", "smoke", "--out",
                             str(tmp_path / "build"), "--force"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "rendering" in line, line
    deadline = time.monotonic() + 60
    while not (kernels := _children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernels
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, rest
    assert "interrupted:" in rest and "Traceback" not in rest
    assert not [pid for pid in kernels if _running(pid)]
    assert not (tmp_path / "build" / "render-state.json").exists()


def test_cckl_render_without_results_is_one_line(tmp_path, monkeypatch, capsys):
    from cckl_core.cli import main
    monkeypatch.setenv("CCKL_ARTIFACTS", str(tmp_path / "empty"))
    monkeypatch.setenv("CCKL_FIGURES", str(tmp_path / "figures"))
    assert main(["render", "--profile", "gpu", "--out", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 03_capacity_study: ResultsMissing: ") and "\n" not in err and "make evaluations" in err


def test_an_exported_page_names_no_path_of_the_machine(tmp_path):
    import nbformat

    from cckl_core import report
    from cckl_core.paths import project_root
    root = project_root().resolve()
    said = f"[cckl] CIFAR-10: using {root.parent}/shared/data/cifar10-jpeg.zip (torchvision files not under {root}/data)\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=said)])])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    page = report.export_notebook(tmp_path / "nb.ipynb", tmp_path / "nb.html").read_text()
    assert str(root.parent) not in page and "using ../shared/data/cifar10-jpeg.zip (torchvision files not under ./data)" in page
