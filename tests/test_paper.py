"""The paper as code: every claim's criterion can come out yes and no; the analysis modules turn
made-up results into the claims they should; notebooks only render (a missing result is one
message, nothing is written); the notebooks are views; parameters are checked."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cckl_core import evaluations, profiles, runs, stats
from cckl_core.paper import (NOTEBOOKS, ParameterError, ResultsMissing, appendix_c, capacity_study, criteria,
                             fisher_growth, inputs, render, setup, theorem_check)

REPO = Path(__file__).resolve().parent.parent
CLAIMS = criteria.declared().claims


# --------------------------------------------------------------------------- every criterion can fail
def _evidence(c: criteria.Claim, outcome: str) -> dict:
    """Evidence that makes claim ``c`` come out ``outcome`` ("yes" or "no") by its declared criterion."""
    yes = outcome == "yes"
    k = c.criterion
    if k == "greater":
        return {"value": 2.0, "reference": 1.0} if yes else {"value": 1.0, "reference": 2.0}
    if k == "at_most":
        return {"value": c.threshold / 2 if yes else c.threshold * 2 + 1}
    if k == "at_least":
        return {"value": c.threshold * 2 if yes else c.threshold / 2}
    if k == "within":
        return {"values": [c.target, c.target + c.tolerance / 2] if yes else [c.target, c.target + 2 * c.tolerance]}
    if k == "test":
        small, big = c.alpha / 10, 0.9
        want_positive = (c.direction == "positive") == yes
        return {"p_positive": small if want_positive else big, "p_negative": big if want_positive else small}
    if k in ("interval", "monotone_interval"):
        above = (c.side == "above") == yes
        lo, hi = (c.null + 0.1, c.null + 0.2) if above else (c.null - 0.2, c.null - 0.1)
        return {"lo": lo, "hi": hi, **({"monotone": True} if k == "monotone_interval" else {})}
    if k == "bound":
        return {"value": 1.0, "bound": 0.5} if yes else {"value": 0.2, "bound": 0.5}
    raise AssertionError(k)


JUDGED = [cid for cid, c in CLAIMS.items() if c.criterion != "reported"]


@pytest.mark.parametrize("cid", JUDGED)
def test_every_claim_can_come_out_yes_and_no(cid):
    c = CLAIMS[cid]
    for outcome in ("yes", "no"):
        row = criteria.judge(cid, "measured", "context", fill={"arch": "vgg13", "steps": 20}, **_evidence(c, outcome))
        assert row.verdict == outcome, (cid, outcome, row)
        assert row.note.startswith("context") and c.rule() in row.note
        assert "{" not in row.claim  # placeholders filled


def test_reported_claims_have_no_verdict_and_the_others_cover_every_notebook():
    for cid in set(CLAIMS) - set(JUDGED):
        assert criteria.judge(cid, "x").verdict == stats.NOT_ASSESSED
    shown = {c.shows for c in CLAIMS.values()}
    assert all(shown) and len(CLAIMS) == 45


def test_interval_and_test_edges():
    c = CLAIMS["table2_fisher_dominates"]  # below 0.3
    assert criteria.verdict_of(c, lo=0.2, hi=0.3) == stats.INCONCLUSIVE  # touching counts as containing
    assert criteria.verdict_of(c, lo=math.nan, hi=0.1) == stats.INCONCLUSIVE
    t = CLAIMS["fig2_cckl_acc"]
    assert criteria.verdict_of(t, p_positive=math.nan, p_negative=0.5) == stats.INCONCLUSIVE
    assert criteria.verdict_of(t, p_positive=0.06, p_negative=0.9) == stats.INCONCLUSIVE
    assert criteria.verdict_of(CLAIMS["thm31_bound_init_plain"], value=0.0, bound=-1.0) == stats.NOT_INFORMATIVE
    assert criteria.verdict_of(CLAIMS["table2_rises"], lo=0.1, hi=0.2, monotone=False) == stats.DOES_NOT_HOLD
    assert criteria.verdict_of(CLAIMS["fig3_trades_ratio_accuracy"], value=None) == stats.NOT_ASSESSED


def test_a_wrong_claims_file_is_refused(tmp_path):
    bad = tmp_path / "claims.toml"
    bad.write_text('[claims.x]\nclaim = "c"\npaper = "p"\nstatistic = "s"\ncriterion = "vibes"\n')
    with pytest.raises(criteria.ClaimsFileError, match="criterion 'vibes'"):
        criteria.declared(bad)
    bad.write_text('[claims.x]\nclaim = "c"\npaper = "p"\nstatistic = "s"\ncriterion = "test"\nwhat = 1\n')
    with pytest.raises(criteria.ClaimsFileError, match="unknown fields"):
        criteria.declared(bad)


# --------------------------------------------------------------------------- training noise
SPREAD = profiles.SeedSpread(sd={"table1_half_vs_pure_clean": 1.0}, seeds=(0, 1, 2), how="test")


def _noise(effect, per_seed=(), spread=SPREAD):
    return {"effect": effect, "per_seed": list(per_seed), "spread": spread, "profile": "quick"}


def test_one_seed_effect_within_the_seed_spread_is_inconclusive():
    yes = _evidence(CLAIMS["table1_half_vs_pure_clean"], "yes")
    t = 4.302652729911275 * math.sqrt(2)  # t(0.975, 2) x sqrt(2): two runs' spread, sd 1
    within = criteria.judge("table1_half_vs_pure_clean", "m", noise=_noise(t - 0.1), **yes)
    assert within.verdict == stats.INCONCLUSIVE and "within training noise" in within.note
    beyond = criteria.judge("table1_half_vs_pure_clean", "m", noise=_noise(t + 0.1), **yes)
    assert beyond.verdict == stats.HOLDS and "one training run" in beyond.note
    unmeasured = criteria.judge("table1_half_vs_pure_clean", "m", noise=_noise(5, spread=profiles.SeedSpread()), **yes)
    assert unmeasured.verdict == stats.HOLDS and "covers the test sample only" in unmeasured.note


def test_several_seeds_are_judged_over_seeds_not_by_one_test_sample():
    yes = _evidence(CLAIMS["fig5_kl"], "yes")
    row = criteria.judge("fig5_kl", "m", noise=_noise(0.3, [0.3, -0.2, 0.1]), **yes)
    assert row.verdict == stats.INCONCLUSIVE and "over 3 training seeds" in row.note
    row = criteria.judge("fig5_kl", "m", noise=_noise(0.3, [0.30, 0.31, 0.29]), **yes)
    assert row.verdict == stats.HOLDS
    row = criteria.judge("fig5_kl", "m", noise=_noise(-0.3, [-0.30, -0.31, -0.29]), **yes)
    assert row.verdict == stats.DOES_NOT_HOLD  # the seeds overrule a test sample that said yes


def test_seed_interval_is_scipys_t_interval():
    from scipy import stats as sstats
    d = [1.2, 0.4, 2.0, 0.9]
    got = stats.seed_interval(d)
    lo, hi = sstats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=np.std(d, ddof=1) / math.sqrt(len(d)))
    assert got["lo"] == pytest.approx(lo) and got["hi"] == pytest.approx(hi) and got["n"] == 4
    assert math.isnan(stats.seed_interval([1.0])["lo"])


# --------------------------------------------------------------------------- the modules on made-up results
def _run(profile, name, history=None, seed=0):
    cfg = profile.run(name, seed)
    history = history or [{"epoch": e, "test_acc": 0.1 + 0.1 * e, "robust_acc": 0.1, "fisher_fro_mean": 1.0 + e,
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


def _capacity_inputs(monkeypatch, accuracies, kl_larger):
    prof = profiles.load("smoke")
    names = list(prof.role("table1"))
    n = 400
    rs = {name: _run(prof, name) for name in names}
    evals = {}
    for name, acc in zip(names, accuracies):
        evals[name, "table1"] = _result(correct_clean=_table1(n, acc), correct_pgd=_table1(n, acc / 2, 1),
                                        correct_cw=_table1(n, acc / 3, 2), labels=np.arange(n) % 10,
                                        index=np.arange(n), pgd_steps=3)
    i, j = np.arange(300), (np.arange(300) + 1) % 300
    rng = np.random.default_rng(0)
    kl_small = rng.uniform(0.5, 1.5, 300)
    for name, kl in zip(prof.role("fig5"), (kl_small, kl_small + kl_larger)):
        evals[name, "fig5"] = _result(i=i, j=j, labels=np.arange(300) % 10, kl=kl, g1=0.5 * kl_small, n_test=300)
    fake = FakeInputs(prof, rs, evals)
    monkeypatch.setattr(capacity_study, "gather", lambda *a, **k: fake)
    return prof


def test_capacity_claims_follow_the_results(monkeypatch):
    verdicts = {}
    for case, accs, dkl in (("up", [0.2, 0.5, 0.8, 0.3, 0.6], 0.5), ("down", [0.8, 0.5, 0.2, 0.6, 0.3], -0.3)):
        prof = _capacity_inputs(monkeypatch, accs, dkl)
        out = capacity_study.render(prof, 0)
        verdicts[case] = {r.id: r.verdict for r in out.claims}
        out.close()
    for cid in [c for c in verdicts["up"] if c.startswith(("table1_", "fig5_kl", "fig5_g2"))
                and c != "fig5_g2_negative"]:
        assert verdicts["up"][cid] == stats.HOLDS, cid
        assert verdicts["down"][cid] == stats.DOES_NOT_HOLD, cid
    assert list(verdicts["up"]) == [c for c in CLAIMS if CLAIMS[c].shows in ("table1_capacity", "fig5_kl_g2_resnets")]


def test_capacity_claims_use_several_seeds_when_the_cache_has_them(monkeypatch):
    prof = _capacity_inputs(monkeypatch, [0.2, 0.5, 0.8, 0.3, 0.6], 0.5)
    fake = capacity_study.gather()
    names = list(prof.role("table1"))
    for seed, accs in ((1, [0.5, 0.2, 0.8, 0.6, 0.3]), (2, [0.4, 0.3, 0.8, 0.5, 0.4])):  # other seeds disagree
        for name, acc in zip(names, accs):
            other = _run(prof, name, seed=seed)
            res = _result(**{**fake.evaluations[name, "table1"], "correct_clean": _table1(400, acc, seed)})
            fake.seeds.setdefault((name, "table1"), []).append((other, res))
    out = capacity_study.render(prof, 0)
    row = next(r for r in out.claims if r.id == "table1_half_vs_pure_clean")
    assert row.verdict == stats.INCONCLUSIVE and "over 3 training seeds" in row.note
    assert capacity_study.seed_effects(fake)["table1_half_vs_pure_clean"] == pytest.approx([30.0, -30.0, -10.0])
    out.close()


def test_table2_claims_follow_the_results(monkeypatch):
    prof = profiles.load("smoke")
    run = _run(prof, prof.role("table2"))
    rng = np.random.default_rng(0)
    kl = rng.uniform(0.5, 1.0, (8, 50))
    for errors, expect in ((np.linspace(0.05, 0.2, 8), stats.HOLDS), (np.linspace(0.6, 0.4, 8), stats.DOES_NOT_HOLD)):
        g1 = kl * (1 - errors[:, None] * rng.uniform(0.9, 1.1, (8, 50)))
        ev = _result(eps_255=np.arange(1, 9), kl=kl, g1=g1, linf=np.ones((8, 50)), labels=np.arange(50) % 10)
        monkeypatch.setattr(appendix_c, "gather", lambda *a, **k: FakeInputs(prof, {run.name: run},
                                                                              {(run.name, "table2"): ev}))
        out = appendix_c.render(prof, 0)
        assert [r.verdict for r in out.claims] == [expect, expect]
        out.close()


def test_fisher_ratio_and_trend_claims_follow_the_histories():
    prof = profiles.load("smoke")

    def hist(fro, acc):
        return [{"epoch": e, "test_acc": a, "robust_acc": 0.1, "fisher_fro_mean": f, "fisher_spec_mean": f / 2}
                for e, (f, a) in enumerate(zip(fro, acc))]

    up = [0.1, 0.2, 0.3]
    grows = {"std": hist([1, 50, 100], up), "adv": hist([1, 2, 3], up)}
    equal = {"std": hist([1, 3, 5], up), "adv": hist([1, 3, 5], up)}
    for case, expect in ((grows, stats.HOLDS), (equal, stats.DOES_NOT_HOLD)):
        R = {role: _run(prof, prof.role(role), case["std" if role.endswith("standard") else "adv"])
             for role in fisher_growth.ROLES}
        final, matched = fisher_growth.growth_tables(R)
        assert len(final) == 6 and len(matched) == 4
        rows = [criteria.judge("fig3_trades_ratio_epoch", "m", value=v) for v in matched["ratio at matched epoch"]]
        assert {r.verdict for r in rows} == {expect}
    falling = fisher_growth.growth_tables({r: _run(prof, prof.role(r), hist([1, 3, 2, 1, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]))
                                           for r in fisher_growth.ROLES})[0]
    assert (falling["spearman acc~|F| (epochs 1+)"] < 0).all()


def test_pair_kl_and_the_per_pair_inequality():
    prof = profiles.load("smoke")
    run = _run(prof, prof.role("fig2_standard"))
    run.history[0]["pair_probs"] = [[0.1] * 10, [0.1] * 10]
    run.history[-1]["pair_probs"] = [[0.91] + [0.01] * 9, [0.01] * 9 + [0.91]]
    *_, kl_init, kl_trained = theorem_check.pair_kls(run)
    assert kl_init == 0 and kl_trained > 3
    row = criteria.judge("fig1_pair_kl", "m", value=kl_trained, reference=kl_init)
    assert row.verdict == stats.HOLDS
    assert criteria.judge("fig1_pair_kl", "m", value=kl_init, reference=kl_trained).verdict == stats.DOES_NOT_HOLD
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
    assert "Error" not in row.note and "/" not in out.text["fig6_cifar100"].split("`")[0]
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
    out = setup("04_appendix_c_table", "smoke", 0, namespace={"profile": "smoke", "seed": 0, "paper": cckl_core,
                                                            "result": None, "In": [], "_": 1, "profiles": profiles,
                                                            "seeds": [0, 1]})
    assert out.claims and "profile smoke" in capsys.readouterr().out
    out.close()


# --------------------------------------------------------------------------- the notebooks are views
def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_notebooks_are_views():
    found = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
    assert found == list(NOTEBOOKS)
    total = 0
    for name in NOTEBOOKS:
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        cells = _code_cells(nb)
        assert cells[0]["metadata"].get("tags") == ["parameters"]
        for c in cells:
            src = "".join(c["source"])
            total += len(src.splitlines())
            assert not c["outputs"] and c.get("execution_count") is None, name
            assert not re.search(r"^\s*(def|class|for|while|with|lambda)\b|\blambda\b", src, re.M), (name, src)
            assert not re.search(r"\b(train|evaluate|compute|fit|torch)\b", src), (name, src)
        assert f'paper.setup("{name}"' in "".join(cells[1]["source"])
    assert total <= 667 // 3, total


@pytest.mark.parametrize("machine", ["", 'one "H100"\n[runs.x]\\ tab\there \x7f \x00 é'])
def test_the_spread_and_each_seeds_own_verdict_come_from_the_cache(monkeypatch, machine):
    """`cckl spread` prints TOML: a --machine with quotes, newlines, backslashes or control characters is
    escaped (it parses back to the same text) and cannot add a section."""
    prof = _capacity_inputs(monkeypatch, [0.2, 0.5, 0.8, 0.3, 0.6], 0.5)
    fake = capacity_study.gather()
    for seed, shift in ((1, 0.01), (2, -0.01)):  # two more seeds, nearly the same effects
        for name, acc in zip(prof.role("table1"), [0.2, 0.5, 0.8, 0.3, 0.6]):
            other = _run(prof, name, seed=seed)
            res = _result(**{**fake.evaluations[name, "table1"], "correct_clean": _table1(400, acc + shift, seed)})
            fake.seeds.setdefault((name, "table1"), []).append((other, res))
        for name in prof.role("fig5"):
            other = _run(prof, name, seed=seed)
            ev = fake.evaluations[name, "fig5"]
            fake.seeds.setdefault((name, "fig5"), []).append((other, _result(**{**ev, "kl": ev["kl"] * (1 + shift)})))
    text = capacity_study.spread_toml(prof, machine=machine)
    import tomllib
    parsed = tomllib.loads(text)["seed_spread"]
    assert set(tomllib.loads(text)) == {"seed_spread"}
    assert parsed["how"] == f"python -m cckl_core spread --profile {prof.name}" + (f", {machine}" if machine else "")
    assert parsed["seeds"] == [0, 1, 2] and set(parsed["sd"]) == {c for c in CLAIMS if CLAIMS[c].training_noise}
    spread = profiles.SeedSpread(parsed["sd"], tuple(parsed["seeds"]))
    alone = capacity_study.one_seed_verdicts(fake, spread)
    assert alone["table1_half_vs_pure_clean"] == {0: stats.HOLDS, 1: stats.HOLDS, 2: stats.HOLDS}
    assert "alone: seed 0 yes, seed 1 yes, seed 2 yes" in text
