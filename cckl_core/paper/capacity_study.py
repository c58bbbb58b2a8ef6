"""Notebook 03: capacity, Table 1 and Figure 5, judged against test-sample and training noise.

- Table 1: standard, PGD-k and CW-k accuracy of five TRADES models of growing capacity on the
  same test images (``table1`` evaluation), with Wilson intervals; each step up in capacity
  judged per metric by an exact one-sided McNemar test;
- Figure 5: KL, G2 = KL - G1 and G2/KL over the same cross-class test pairs for resnet20x1 and
  the larger ResNet (``fig5`` evaluation), the differences judged by paired bootstrap intervals.

These claims compare separately trained models, so a test on the test sample alone can be decided
by training noise: :func:`seed_effects` gives each claim's effect for every training seed in the
cache, and the claim is judged over them (``claims.toml``). They are about the paper's exact models
trained near convergence: a profile with a stand-in (a resnet32 of width 1 for resnet32x10), reduced
widths or models far below the paper's accuracy gets "not tested at this scale", with the exact
McNemar test and the image-resampling (cluster) bootstrap of one seed shown as indicative only.
:func:`spread_toml` prints the seed-to-seed spread of each effect (``cckl spread``).
"""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np
import pandas as pd

from .. import plotting, runs, stats
from .. import profiles
from ..profiles import Profile
from . import criteria
from .inputs import Inputs, gather
from .result import Rendered, Table

NOTEBOOK = "03_capacity_study"
ROLES = ("table1", "fig5")
OPTIONAL: tuple[str, ...] = ()
#: The steps up in capacity of Table 1 (indices into the ``table1`` role) and their claim ids.
STEPS_UP = ((0, 1, "half_vs_pure"), (1, 2, "normal_vs_half"), (3, 4, "resnet32_vs_resnet20"))
METRICS = ("clean", "pgd", "cw")
#: The claim id of each row of :func:`comparisons` (STEPS_UP x METRICS, in that order).
TABLE1_CLAIMS = tuple(f"table1_{name}_{key}" for _, _, name in STEPS_UP for key in METRICS)
#: Figure 5's quantities, the statistic each is compared by (declared in ``claims.toml``), and their claim ids.
FIG5 = (("KL", "mean", "fig5_kl"), ("G2", "mean", "fig5_g2"), ("G2/KL", "ratio of means", "fig5_g2_share"))
#: The statistics of the share G2/KL: the declared one first (claim ``fig5_g2_share``), the others beside it.
SHARE_STATISTICS = ("ratio of means", "median of ratios", "mean of ratios")


def render(profile: Profile, seed: int = 0) -> Rendered:
    """Every figure, table and claim of notebook 03 for ``profile`` (``seed``: the sampling seed), in the
    notebook's steps."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    out = Rendered(NOTEBOOK, profile.name, inputs.dataset_name(ROLES[0]))
    effects = seed_effects(inputs)
    table1 = table1_frame(inputs.list_role("table1"), table1_evaluations(inputs))
    out.tables.update(table1_tables(inputs, table1, out))
    out.figures["table1_capacity"] = table1_figure(inputs, table1, out)
    table1_cmp = comparisons(inputs.list_role("table1"), table1_evaluations(inputs))
    out.tables["table1_comparisons"] = comparisons_table(inputs, table1_cmp, out)
    out.claims += table1_claims(inputs, table1_cmp, effects)
    fig5_stats, fig5_cmp = fig5_statistics(inputs, seed)
    out.tables.update(fig5_tables(inputs, fig5_stats, fig5_cmp, out))
    out.figures["fig5_kl_g2_resnets"] = fig5_figure(inputs, out)
    out.claims += fig5_claims(inputs, fig5_stats, fig5_cmp, effects)
    return out


def runs_table(inputs: Inputs) -> pd.DataFrame:
    """Each run of the notebook (its first training seed) at its last epoch: model, epochs, test and
    PGD-10 accuracy, and the training seeds in the cache."""
    return pd.DataFrame([{"run": r.name, "model": r.display_name, "epochs": r.history[-1]["epoch"],
                          "seeds": " ".join(str(g.seed) for g in inputs.seed_group(r)),
                          "test acc": r.history[-1]["test_acc"], "PGD-10 acc": r.history[-1]["robust_acc"]}
                         for r in inputs.runs.values()])


# --------------------------------------------------------------------------- Table 1
def attack_names(steps: int) -> dict[str, str]:
    return {"clean": "standard", "pgd": f"PGD-{steps}", "cw": f"CW-{steps}", "autoattack": "AutoAttack"}


def is_exact(run, plays: str) -> bool:
    """Whether ``run`` is the paper's own ``plays`` model (not a stand-in, a reduced width or a VGG13 with BatchNorm)."""
    return criteria.facts(run, plays, accuracy=0.0).exact


def model_labels(t1_runs) -> list[str]:
    """The paper's model names where ours is the paper's model; else our model's real name and what it
    stands in for (``resnet32 w1 trades (for resnet32x10)``)."""
    models, arch = criteria.paper("table1_models"), criteria.paper("table1_architectures")
    return [m if is_exact(r, a) else f"{r.display_name} (for {m})" for m, a, r in zip(models, arch, t1_runs)]


def capacity_facts(run, plays: str, table1_ev: Mapping | None) -> criteria.RunFacts:
    """The scale facts of a capacity-study run standing for the paper's ``plays``: its clean accuracy on Table 1's
    images (``table1_ev``; without it, its history's last test accuracy) against the paper's Table 1 accuracy."""
    k = criteria.paper("table1_architectures").index(plays)
    acc = correct(table1_ev, "clean").mean() if table1_ev is not None else None
    return criteria.facts(run, plays, paper_accuracies()["clean"][k] / 100, accuracy=acc)


def correct(ev: Mapping, key: str) -> np.ndarray:
    """Per-image correctness under ``key`` (``clean``, ``pgd``, ``cw``, ``autoattack``): under an attack an
    image counts as robust only if it is also correct when clean."""
    c = np.asarray(ev[f"correct_{key}"]).astype(bool)
    return c if key == "clean" else c & np.asarray(ev["correct_clean"]).astype(bool)


def paper_accuracies() -> dict[str, list[float]]:
    """The paper's Table 1 accuracies (%) per metric (``clean``, ``pgd``, ``cw``), in model order."""
    return {"clean": criteria.paper("table1_standard"), "pgd": criteria.paper("table1_pgd"),
            "cw": criteria.paper("table1_cw")}


def table1_frame(t1_runs: list[runs.Run], evs: list[Mapping]) -> pd.DataFrame:
    """Accuracy (%) per model and attack with 95% Wilson intervals, beside the paper's values."""
    models = criteria.paper("table1_models")
    paper_of = paper_accuracies()
    names = attack_names(int(evs[0]["pgd_steps"]))
    rows = []
    for k, (run, ev) in enumerate(zip(t1_runs, evs)):
        for key, attack in names.items():
            if f"correct_{key}" not in ev:
                continue
            c = correct(ev, key)
            lo, hi = stats.wilson_interval(int(c.sum()), len(c))
            rows.append({"paper model": models[k], "our run": run.display_name, "attack": attack, "n": len(c),
                         "acc": 100 * c.mean(), "acc_lo": 100 * lo, "acc_hi": 100 * hi,
                         "paper acc": paper_of[key][k] if key in paper_of else np.nan})
    return pd.DataFrame(rows)


def comparisons(t1_runs: list[runs.Run], evs: list[Mapping]) -> pd.DataFrame:
    """Each step up in capacity per metric on one training seed's test images: accuracies, the paired
    difference with Newcombe's 95% interval, the discordant counts and both one-sided exact McNemar p-values
    (the test sample of one seed: indicative; the claims are judged over training seeds)."""
    models = criteria.paper("table1_models")
    names = attack_names(int(evs[0]["pgd_steps"]))
    rows = []
    for a, b, _ in STEPS_UP:
        for key in METRICS:
            ca, cb = correct(evs[a], key), correct(evs[b], key)
            up, down = stats.mcnemar(ca, cb, ci="newcombe"), stats.mcnemar(cb, ca)
            rows.append({"smaller": models[a], "larger": models[b], "attack": names[key],
                         "acc smaller": 100 * up["acc_a"], "acc larger": 100 * up["acc_b"],
                         "diff": 100 * up["diff"], "diff_lo": 100 * up["lo"], "diff_hi": 100 * up["hi"],
                         "b (only smaller right)": up["b"], "c (only larger right)": up["c"],
                         "p larger better": up["p_b_better"], "p smaller better": down["p_b_better"]})
    return pd.DataFrame(rows)


def table1_evaluations(inputs: Inputs) -> list[Mapping]:
    """The cached ``table1`` evaluation of each Table 1 run (first training seed), checked to be on the
    same test images."""
    evs = [inputs.evaluation(r, "table1") for r in inputs.list_role("table1")]
    if not all(np.array_equal(ev["index"], evs[0]["index"]) for ev in evs):
        raise ValueError("the Table 1 runs were attacked on different test images; recompute their table1 evaluations")
    return evs


def correctness(inputs: Inputs) -> pd.DataFrame:
    """The cached per-image results Table 1 counts: one row per test image (its test-set position and
    label), one column per (run, attack): correct (under an attack only if also correct clean, :func:`correct`)."""
    t1_runs, evs = inputs.list_role("table1"), table1_evaluations(inputs)
    names = attack_names(int(evs[0]["pgd_steps"]))
    frame = pd.DataFrame({"image": np.asarray(evs[0]["index"]), "label": np.asarray(evs[0]["labels"])})
    for run, ev in zip(t1_runs, evs):
        for key, attack in names.items():
            if f"correct_{key}" in ev:
                frame[f"{run.name} | {attack}"] = correct(ev, key)
    return frame


def table1_tables(inputs: Inputs, table1: pd.DataFrame, out: Rendered) -> dict[str, Table]:
    """``table1_capacity`` (shown pivoted: models in the paper's order, attacks as columns) and
    ``table1_seeds`` (over the training seeds in the cache)."""
    t1_runs = inputs.list_role("table1")
    steps = int(table1_evaluations(inputs)[0]["pgd_steps"])
    names = attack_names(steps)
    models, labels = criteria.paper("table1_models"), model_labels(t1_runs)
    display = table1.assign(model=table1["paper model"].map(dict(zip(models, labels))))
    return {"table1_capacity": Table(
        table1, f"Table 1: accuracy (%) of TRADES models with 95% Wilson intervals, L-inf eps 8/255, step 2/255, {steps} "
                f"steps, {out.dataset}, profile {out.profile}; CW = margin loss solved by PGD (the paper's c = 5e2 not used)",
        display=display.pivot(index="model", columns="attack", values="acc").loc[labels][list(names.values())[:3]]),
            "table1_seeds": _seeds_table(inputs, t1_runs, names, models, out.profile)}


def table1_figure(inputs: Inputs, table1: pd.DataFrame, out: Rendered):
    """Table 1 as bars (ours with 95% Wilson intervals beside the paper's), one panel per attack."""
    t1_runs = inputs.list_role("table1")
    names = attack_names(int(table1_evaluations(inputs)[0]["pgd_steps"]))
    models, labels = criteria.paper("table1_models"), model_labels(t1_runs)
    fig, axes = plotting.panels(3)
    paper_of = paper_accuracies()
    starred = [m if label == m else f"{m} *" for m, label in zip(models, labels)]  # short ticks; the stamp names ours
    for ax, key in zip(axes, METRICS):
        sub = table1[table1["attack"] == names[key]].set_index("paper model").loc[models]
        plotting.paper_vs_measured_bars(ax, starred, sub["acc"], paper_of[key], ylabel="accuracy (%)", title=names[key],
                                        interval=(sub["acc_lo"], sub["acc_hi"]))
    fig.suptitle("Table 1: TRADES models of growing capacity (paper: PGD-20 / CW-20; bars: 95% Wilson intervals)"
                 + ("\n* ours is not the paper's model (a stand-in or a smaller width; our models are named in the stamp "
                    "above)" if starred != list(models) else ""))
    plotting.stamp(fig, out.dataset, out.profile, t1_runs)
    return fig


def comparisons_table(inputs: Inputs, cmp: pd.DataFrame, out: Rendered) -> Table:
    """:func:`comparisons` captioned as ``table1_comparisons``."""
    t1_runs, evs = inputs.list_role("table1"), table1_evaluations(inputs)
    return Table(cmp, f"Table 1, paired comparisons on the test sample of training seed {t1_runs[0].seed} (accuracy "
                      f"points, same {evs[0]['labels'].shape[0]} test images): exact one-sided McNemar tests, Newcombe 95% "
                      f"interval of the difference, profile {out.profile}; indicative only: the claims are judged over "
                      "training seeds")


def table1_claims(inputs: Inputs, cmp: pd.DataFrame, effects: dict) -> list[criteria.ClaimRow]:
    """Table 1's claims (each step up in capacity raises standard, PGD and CW accuracy), tested over the
    training seeds on the per-seed accuracy differences (``effects``, :func:`seed_effects`)."""
    t1_runs, evs = inputs.list_role("table1"), table1_evaluations(inputs)
    steps, labels = int(evs[0]["pgd_steps"]), model_labels(t1_runs)
    arch = criteria.paper("table1_architectures")
    rows = []
    for k, row in cmp.iterrows():
        cid = TABLE1_CLAIMS[k]
        a, b, _ = STEPS_UP[k // len(METRICS)]
        seeds, values = effects.get(cid, ([], []))
        scale = [capacity_facts(t1_runs[m], arch[m], evs[m]) for m in (a, b)]
        rows.append(criteria.judge(
            cid, f"ours: {labels[b]} vs {labels[a]}", f"the same {int(evs[0]['labels'].shape[0])} test images",
            fill={"steps": steps}, runs=scale,
            evidence=criteria.SeedEvidence(values, seeds, " points", indicative=(
                f"seed {t1_runs[0].seed}: {row['acc larger']:.1f} vs {row['acc smaller']:.1f}, diff {row['diff']:+.1f} "
                f"[{row['diff_lo']:+.1f}, {row['diff_hi']:+.1f}], exact McNemar p = {row['p larger better']:.2g} "
                f"(larger better) / {row['p smaller better']:.2g} (smaller better)"))))
    return rows


def _seeds_table(inputs: Inputs, t1_runs, names, models, profile: str) -> Table:
    rows = []
    for k, run in enumerate(t1_runs):
        pairs = inputs.seed_evaluations(run, "table1")
        for key, attack in names.items():
            accs = [100 * correct(ev, key).mean() for _, ev in pairs if f"correct_{key}" in ev]
            if accs:
                rows.append({"paper model": models[k], "attack": attack, "seeds": " ".join(str(r.seed) for r, _ in pairs),
                             "n seeds": len(accs), "acc mean": np.mean(accs),
                             "acc std": np.std(accs, ddof=1) if len(accs) > 1 else np.nan})
    frame = pd.DataFrame(rows)
    return Table(frame, f"Table 1 over the seeds in the cache: accuracy (%) mean and standard deviation, profile {profile}",
                 write=bool((frame["n seeds"] > 1).any()))


# --------------------------------------------------------------------------- Figure 5
def fig5_values(ev: Mapping) -> dict[str, np.ndarray]:
    """KL, G2 = KL - G1 and G2/KL (NaN where KL = 0) per pair."""
    kl, g2 = ev["kl"], ev["kl"] - ev["g1"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(kl > 0, g2 / kl, np.nan)
    return {"KL": kl, "G2": g2, "G2/KL": ratio}


def fig5_statistic(quantity: str, statistic: str, v: Mapping[str, np.ndarray], w: np.ndarray) -> np.ndarray:
    """Figure 5's ``statistic`` of ``quantity`` over pairs, under pair weights ``w`` (B x P; ones: the sample):
    the weighted mean of KL or G2; for G2/KL the ratio of means ``sum w G2 / sum w KL``, or the weighted
    median or mean of the per-pair ratios (pairs with KL = 0 weigh nothing there)."""
    if quantity in ("KL", "G2"):
        return stats.weighted_mean(w, v[quantity])
    if statistic == "ratio of means":
        with np.errstate(divide="ignore", invalid="ignore"):  # no KL drawn in a resample: NaN, left out
            return (w @ v["G2"]) / (w @ v["KL"])
    ok = np.isfinite(v["G2/KL"])
    ratio, wk = np.where(ok, v["G2/KL"], 0.0), w * ok
    return stats.weighted_median(wk, ratio) if statistic == "median of ratios" else stats.weighted_mean(wk, ratio)


def fig5_comparisons(evs: list[Mapping], n_boot: int, seed: int) -> pd.DataFrame:
    """Each Figure 5 statistic of the smaller and the larger model and their difference (larger - smaller)
    with a 95% interval and bootstrap p-values that resample test IMAGES (:func:`cckl_core.stats.cluster_bootstrap`):
    pairs share images, so resampling pairs would understate the uncertainty. Needs both models evaluated on
    the same pairs."""
    if not (np.array_equal(evs[0]["i"], evs[1]["i"]) and np.array_equal(evs[0]["j"], evs[1]["j"])):
        raise ValueError("the two Figure 5 models were evaluated on different pairs; recompute their fig5 evaluations "
                         "with the same sampling seed")
    vals = [fig5_values(ev) for ev in evs]
    ones = np.ones((1, len(vals[0]["KL"])))
    compared = [("KL", "mean"), ("G2", "mean")] + [("G2/KL", s) for s in SHARE_STATISTICS]
    diffs = {(q, st): lambda w, q=q, st=st: fig5_statistic(q, st, vals[1], w) - fig5_statistic(q, st, vals[0], w)
             for q, st in compared}
    boots = stats.cluster_bootstraps(diffs, evs[0]["i"], evs[0]["j"], n_boot=n_boot, seed=seed)  # one set of draws
    rows = []
    for quantity, statistic in compared:
        boot = boots[quantity, statistic]
        rows.append({"quantity": quantity, "statistic": statistic,
                     "smaller": float(fig5_statistic(quantity, statistic, vals[0], ones)[0]),
                     "larger": float(fig5_statistic(quantity, statistic, vals[1], ones)[0]),
                     "diff": boot["value"], "diff_lo": boot["lo"], "diff_hi": boot["hi"], "se (images resampled)": boot["se"],
                     "p larger higher": boot["p_above"], "p smaller higher": boot["p_below"]})
    return pd.DataFrame(rows)


def fig5_frame(labels: list[str], evs: list[Mapping]) -> tuple[pd.DataFrame, list[dict]]:
    """Per model and quantity: mean, median, share of G2 < 0 (and, for G2/KL, the ratio of means); and the
    per-pair values."""
    vals = [fig5_values(ev) for ev in evs]
    rows = []
    for label, v in zip(labels, vals):
        for q in ("KL", "G2", "G2/KL"):
            rows.append({"model": label, "quantity": q, "mean": np.nanmean(v[q]), "median": np.nanmedian(v[q]),
                         "ratio of means": float(v["G2"].sum() / v["KL"].sum()) if q == "G2/KL" else np.nan,
                         "share_g2_negative": float(np.mean(v["G2"] < 0))})
    return pd.DataFrame(rows), vals


#: The paper's models Figure 5 compares (ours may stand in for them).
FIG5_PLAYS = ("resnet20x1", "resnet32x10")


def fig5_labels(inputs: Inputs) -> list[str]:
    """Figure 5's two models by their real names (a stand-in says which paper model it stands for)."""
    return [r.display_name if is_exact(r, p) else f"{r.display_name} (stand-in for {p})"
            for r, p in zip(inputs.list_role("fig5"), FIG5_PLAYS)]


def fig5_pairs(inputs: Inputs) -> pd.DataFrame:
    """The cached ``fig5`` evaluations, one row per cross-class test pair (test-set positions ``i``,
    ``j``): KL, G1 and G2 = KL - G1 under each model (``fisher.kl_g1_g2`` computed them)."""
    evs = [inputs.evaluation(r, "fig5") for r in inputs.list_role("fig5")]
    frame = pd.DataFrame({"i": np.asarray(evs[0]["i"]), "j": np.asarray(evs[0]["j"])})
    for label, ev in zip(fig5_labels(inputs), evs):
        frame[f"KL | {label}"], frame[f"G1 | {label}"] = ev["kl"], ev["g1"]
        frame[f"G2 | {label}"] = ev["kl"] - ev["g1"]
    return frame


def fig5_statistics(inputs: Inputs, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model and quantity (:func:`fig5_frame`), and larger - smaller with image-resampling intervals
    (:func:`fig5_comparisons`, the profile's ``n_boot`` resamples, sampling seed ``seed``)."""
    evs = [inputs.evaluation(r, "fig5") for r in inputs.list_role("fig5")]
    frame, _ = fig5_frame(fig5_labels(inputs), evs)
    return frame, fig5_comparisons(evs, int(inputs.profile.evaluation.n_boot), seed)


def _fig5_counts(inputs: Inputs) -> tuple[int, int]:
    ev = inputs.evaluation(inputs.list_role("fig5")[0], "fig5")
    return len(ev["kl"]), len(np.unique(np.concatenate([ev["i"], ev["j"]])))


def fig5_tables(inputs: Inputs, frame: pd.DataFrame, cmp: pd.DataFrame, out: Rendered) -> dict[str, Table]:
    """``fig5_kl_g2_stats`` and ``fig5_comparisons``, captioned."""
    fig5_runs, labels = inputs.list_role("fig5"), fig5_labels(inputs)
    n_pairs, n_images = _fig5_counts(inputs)
    n_boot = int(inputs.profile.evaluation.n_boot)
    return {"fig5_kl_g2_stats": Table(
        frame, f"Figure 5 statistics (nats) per model, {n_pairs} cross-class pairs of {out.dataset} over {n_images} test "
               f"images, training seed {fig5_runs[0].seed}, profile {out.profile}"),
            "fig5_comparisons": Table(
        cmp, f"Figure 5, larger - smaller model ({labels[1]} vs {labels[0]}), training seed {fig5_runs[0].seed}: 95% "
             f"intervals and bootstrap p-values resampling the {n_images} test images ({n_boot} resamples), not the "
             f"pairs; profile {out.profile}")}


def fig5_figure(inputs: Inputs, out: Rendered):
    """Figure 5: the distributions of KL, G2 and G2/KL over the pairs under both models."""
    fig5_runs, labels = inputs.list_role("fig5"), fig5_labels(inputs)
    vals = [fig5_values(inputs.evaluation(r, "fig5")) for r in fig5_runs]
    fig, axes = plotting.panels(3, height=plotting.PANEL[1] * 1.45)
    plotting.distributions(axes[0], {lab: v["KL"] for lab, v in zip(labels, vals)}, xlabel=r"KL$(f(x_i)\|f(x_j))$ (nats)",
                           log=True, marker="mean", legend_below=True, legend_width=40)
    plotting.distributions(axes[1], {lab: v["G2"] for lab, v in zip(labels, vals)}, xlabel="G2 = KL - G1 (nats)",
                           clip_quantiles=(0.01, 0.99), marker="mean", legend_below=True, legend_width=40)
    plotting.distributions(axes[2], {lab: v["G2/KL"] for lab, v in zip(labels, vals)}, xlabel="G2 / KL",
                           symlog=1.0, marker="median", legend_below=True, legend_width=40)
    fig.suptitle(f"Figure 5: {_fig5_counts(inputs)[0]} cross-class test pairs")
    plotting.stamp(fig, out.dataset, out.profile, fig5_runs)
    return fig


def fig5_claims(inputs: Inputs, frame: pd.DataFrame, cmp: pd.DataFrame, effects: dict) -> list[criteria.ClaimRow]:
    """Figure 5's claims (the larger model has higher KL, G2 and share G2/KL), tested over training seeds
    on the per-seed differences (``effects``); the share needs its three statistics to agree. And the
    share of pairs with G2 < 0, reported."""
    fig5_runs, labels = inputs.list_role("fig5"), fig5_labels(inputs)
    n_pairs = _fig5_counts(inputs)[0]
    scale = [capacity_facts(r, p, inputs.evaluations.get((r.name, "table1"))) for r, p in zip(fig5_runs, FIG5_PLAYS)]
    out = []
    for q, stat, cid in FIG5:
        seeds, values = effects.get(cid, ([], []))
        rows = cmp[cmp["quantity"] == q].set_index("statistic")
        row = rows.loc[stat]
        indicative = "; ".join(f"{st} {r['diff']:+.3g} [{r['diff_lo']:+.3g}, {r['diff_hi']:+.3g}]" for st, r in rows.iterrows())
        others = {name: effects.get(f"{cid}:{name}", ([], []))[1] for name in SHARE_STATISTICS[1:]} if q == "G2/KL" else {}
        out.append(criteria.judge(
            cid, f"ours: {labels[1]} vs {labels[0]}; seed {fig5_runs[0].seed}: {stat} {row['larger']:.3g} vs "
                 f"{row['smaller']:.3g}", f"{stat} of {q} over {n_pairs} pairs", runs=scale,
            evidence=criteria.SeedEvidence(values, seeds, others=others,
                                           indicative=f"seed {fig5_runs[0].seed}, images resampled: {indicative}")))
    share = frame.groupby("model", sort=False)["share_g2_negative"].first()
    out.append(criteria.judge("fig5_g2_negative", " / ".join(f"{s:.1%}" for s in share.to_numpy()),
                              "where G2 < 0 the higher-order terms cancel part of the Fisher term, so G2 is not a "
                              "non-negative 'robust component' pair by pair (see figures/README.md)"))
    return out


# --------------------------------------------------------------------------- training noise
def effects_table(effects: dict[str, tuple[list[int], list[float]]]) -> pd.DataFrame:
    """:func:`seed_effects` as a table: one row per (claim, training seed) with its effect."""
    return pd.DataFrame([{"claim": cid, "seed": s, "effect (larger - smaller)": v}
                         for cid, (seeds, values) in effects.items() for s, v in zip(seeds, values)],
                        columns=["claim", "seed", "effect (larger - smaller)"])


def seed_effects(inputs: Inputs) -> dict[str, tuple[list[int], list[float]]]:
    """For each capacity claim, ``(seeds, effects)``: its effect (larger - smaller: accuracy points for
    Table 1, the compared statistic for Figure 5; ``"fig5_g2_share:<statistic>"`` for the other share
    statistics) for every training seed that both compared models have in the cache with the evaluation."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    t1_runs = inputs.list_role("table1")
    per_model = [{r.seed: ev for r, ev in inputs.seed_evaluations(run, "table1")} for run in t1_runs]
    for a, b, name in STEPS_UP:
        common = sorted(set(per_model[a]) & set(per_model[b]))
        for key in METRICS:
            out[f"table1_{name}_{key}"] = (common, [100 * (correct(per_model[b][s], key).mean()
                                                           - correct(per_model[a][s], key).mean()) for s in common])
    f5 = [{r.seed: ev for r, ev in inputs.seed_evaluations(run, "fig5")} for run in inputs.list_role("fig5")]
    common = sorted(set(f5[0]) & set(f5[1]))
    for q, stat, cid in FIG5:
        for st in (stat,) if q != "G2/KL" else SHARE_STATISTICS:
            key = cid if st == stat else f"{cid}:{st}"
            out[key] = (common, [float(fig5_statistic(q, st, fig5_values(f5[1][s]), np.ones((1, len(f5[1][s]["kl"]))))[0]
                                       - fig5_statistic(q, st, fig5_values(f5[0][s]), np.ones((1, len(f5[0][s]["kl"]))))[0])
                                 for s in common])
    return out


def spread_toml(profile: Profile, seed: int = 0, machine: str = "") -> str:
    """The ``[seed_spread]`` section of ``profile`` measured from the seeds in the cache: for each
    capacity claim the standard deviation (ddof 1) of its per-seed effects (``cckl spread``). It sizes a
    profile (how many seeds a claim needs); verdicts do not use it."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    effects = {cid: v for cid, v in seed_effects(inputs).items() if ":" not in cid and len(v[0]) >= 2}
    if not effects:
        raise ValueError(f"the cache holds one training seed of the capacity-study runs of profile {profile.name}; "
                         f"train more first, e.g. `python -m cckl_core evaluate --profile {profile.name} "
                         f"--runs {','.join(profile.runs_for(ROLES))} --seeds 0,1,2`")
    seeds = next(iter(effects.values()))[0]
    lines = ["[seed_spread]",
             f"# measured by `python -m cckl_core spread --profile {profile.name}` on {time.strftime('%Y-%m-%d')}"
             + (f", {profiles.toml_comment(machine)}" if machine else ""),  # escaped: the output is TOML
             "how = " + profiles.toml_string(f"python -m cckl_core spread --profile {profile.name}"
                                             f"{', ' + machine if machine else ''}"),
             f"seeds = [{', '.join(map(str, seeds))}]", "", "[seed_spread.sd]  # standard deviation over seeds of each effect"]
    for cid, (_, values) in effects.items():
        lines.append(f"{cid} = {float(np.std(values, ddof=1)):.4g}  # effects {', '.join(f'{v:+.4g}' for v in values)}")
    return "\n".join(lines) + "\n"
