"""Notebook 03: capacity, Table 1 and Figure 5, judged against test-sample and training noise.

- Table 1: standard, PGD-k and CW-k accuracy of five TRADES models of growing capacity on the
  same test images (``table1`` evaluation), with Wilson intervals; each step up in capacity
  judged per metric by an exact one-sided McNemar test;
- Figure 5: KL, G2 = KL - G1 and G2/KL over the same cross-class test pairs for resnet20x1 and
  the larger ResNet (``fig5`` evaluation), the differences judged by paired bootstrap intervals.

These claims compare separately trained models, so a test on the test sample alone can be decided
by training noise. :func:`seed_effects` gives each claim's effect for every training seed in the
cache; with several seeds the claim is judged over them, with one the effect must also exceed the
seed-to-seed spread measured for the profile (``[seed_spread]``; :func:`spread_toml` writes that
section from a cache that holds several seeds). See ``claims.toml``.
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
#: Figure 5's quantities, the statistic each is compared by, and their claim ids.
FIG5 = (("KL", "mean", "fig5_kl"), ("G2", "mean", "fig5_g2"), ("G2/KL", "median", "fig5_g2_share"))


def render(profile: Profile, seed: int = 0) -> Rendered:
    """Every figure, table and claim of notebook 03 for ``profile`` (``seed``: the sampling seed)."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    t1_runs = inputs.list_role("table1")
    out = Rendered(NOTEBOOK, profile.name, t1_runs[0].dataset_name)
    out.text["runs"] = "\n".join(f"- {r.name}: {r.display_name}, {r.history[-1]['epoch']} epochs, test acc "
                                 f"{r.history[-1]['test_acc']:.4f}, PGD-10 acc {r.history[-1]['robust_acc']:.4f}"
                                 for r in inputs.runs.values())
    effects = seed_effects(inputs)
    _table1(out, inputs, effects)
    _figure5(out, inputs, effects, seed)
    return out


# --------------------------------------------------------------------------- Table 1
def attack_names(steps: int) -> dict[str, str]:
    return {"clean": "standard", "pgd": f"PGD-{steps}", "cw": f"CW-{steps}", "autoattack": "AutoAttack"}


def _labels(t1_runs) -> list[str]:
    """The paper's model names, starred where our model differs (a smaller width or a stand-in)."""
    models, arch = criteria.paper("table1_models"), criteria.paper("table1_architectures")
    return [m + (" *" if r.config.model != a or (not a.endswith(("x1", "x10")) and r.config.width != 1) else "")
            for m, a, r in zip(models, arch, t1_runs)]


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
            c = ev[f"correct_{key}"].astype(bool)
            lo, hi = stats.wilson_interval(int(c.sum()), len(c))
            rows.append({"paper model": models[k], "our run": run.display_name, "attack": attack, "n": len(c),
                         "acc": 100 * c.mean(), "acc_lo": 100 * lo, "acc_hi": 100 * hi,
                         "paper acc": paper_of[key][k] if key in paper_of else np.nan})
    return pd.DataFrame(rows)


def comparisons(t1_runs: list[runs.Run], evs: list[Mapping]) -> pd.DataFrame:
    """Each step up in capacity per metric: accuracies, the paired difference with Newcombe's 95%
    interval, the discordant counts and both one-sided exact McNemar p-values."""
    models = criteria.paper("table1_models")
    names = attack_names(int(evs[0]["pgd_steps"]))
    rows = []
    for a, b, _ in STEPS_UP:
        for key in METRICS:
            ca, cb = evs[a][f"correct_{key}"].astype(bool), evs[b][f"correct_{key}"].astype(bool)
            up, down = stats.mcnemar(ca, cb, ci="newcombe"), stats.mcnemar(cb, ca)
            rows.append({"smaller": models[a], "larger": models[b], "attack": names[key],
                         "acc smaller": 100 * up["acc_a"], "acc larger": 100 * up["acc_b"],
                         "diff": 100 * up["diff"], "diff_lo": 100 * up["lo"], "diff_hi": 100 * up["hi"],
                         "b (only smaller right)": up["b"], "c (only larger right)": up["c"],
                         "p larger better": up["p_b_better"], "p smaller better": down["p_b_better"],
                         "verdict": stats.test_verdict(up["p_b_better"], down["p_b_better"])})
    return pd.DataFrame(rows)


def _table1(out: Rendered, inputs: Inputs, effects: dict) -> None:
    t1_runs = inputs.list_role("table1")
    evs = [inputs.evaluation(r, "table1") for r in t1_runs]
    if not all(np.array_equal(ev["index"], evs[0]["index"]) for ev in evs):
        raise ValueError("the Table 1 runs were attacked on different test images; recompute their table1 evaluations")
    steps = int(evs[0]["pgd_steps"])
    names = attack_names(steps)
    models = criteria.paper("table1_models")
    table1 = table1_frame(t1_runs, evs)
    out.tables["table1_capacity"] = Table(
        table1, f"Table 1: accuracy (%) of TRADES models with 95% Wilson intervals, L-inf eps 8/255, step 2/255, {steps} "
                f"steps, {out.dataset}, profile {out.profile}; CW = margin loss solved by PGD (the paper's c = 5e2 not used)",
        display=table1.pivot(index="paper model", columns="attack", values="acc").loc[models])
    out.tables["table1_seeds"] = _seeds_table(inputs, t1_runs, names, models, out.profile)

    labels = _labels(t1_runs)
    fig, axes = plotting.panels(3)
    paper_of = paper_accuracies()
    for ax, key in zip(axes, METRICS):
        sub = table1[table1["attack"] == names[key]].set_index("paper model").loc[models]
        plotting.paper_vs_measured_bars(ax, labels, sub["acc"], paper_of[key], ylabel="accuracy (%)", title=names[key],
                                        interval=(sub["acc_lo"], sub["acc_hi"]))
    fig.suptitle("Table 1: TRADES models of growing capacity (paper: PGD-20 / CW-20; bars: 95% Wilson intervals)"
                 + ("\n* our model differs from the paper's (smaller width or a stand-in; names in the stamp above)"
                    if any(label.endswith("*") for label in labels) else ""))
    plotting.stamp(fig, out.dataset, out.profile, t1_runs)
    out.figures["table1_capacity"] = fig

    cmp = comparisons(t1_runs, evs)
    out.tables["table1_comparisons"] = Table(
        cmp, f"Table 1, paired comparisons (accuracy points, same {evs[0]['labels'].shape[0]} test images): exact one-sided "
             f"McNemar tests, Newcombe 95% interval of the difference, profile {out.profile}")
    for k, row in cmp.iterrows():
        cid, larger = TABLE1_CLAIMS[k], STEPS_UP[k // len(METRICS)][1]
        standin = f"; ours: {t1_runs[larger].display_name} for {models[larger]}" if labels[larger].endswith("*") else ""
        out.claims.append(criteria.judge(
            cid, f"{row['acc larger']:.1f} vs {row['acc smaller']:.1f} (diff {row['diff']:+.1f} "
                 f"[{row['diff_lo']:+.1f}, {row['diff_hi']:+.1f}])",
            f"the same {int(evs[0]['labels'].shape[0])} images{standin}", fill={"steps": steps},
            noise={"effect": row["diff"], "per_seed": effects.get(cid, []), "spread": inputs.profile.spread,
                   "profile": out.profile},
            p_positive=row["p larger better"], p_negative=row["p smaller better"]))


def _seeds_table(inputs: Inputs, t1_runs, names, models, profile: str) -> Table:
    rows = []
    for k, run in enumerate(t1_runs):
        pairs = inputs.seed_evaluations(run, "table1")
        for key, attack in names.items():
            accs = [100 * ev[f"correct_{key}"].mean() for _, ev in pairs if f"correct_{key}" in ev]
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


_STATISTIC = {"mean": np.mean, "median": np.nanmedian}
#: The statistic (name) each Figure 5 quantity is compared by.
_COMPARED_BY = {q: stat for q, stat, _ in FIG5}


def fig5_frame(labels: list[str], evs: list[Mapping], n_boot: int, seed: int) -> tuple[pd.DataFrame, list[dict], bool]:
    """Per model and quantity: mean, median, share of G2 < 0, and for the larger model the paired
    bootstrap interval of the difference of the named statistic; also the per-pair values and
    whether both models were evaluated on the same pairs."""
    paired = np.array_equal(evs[0]["i"], evs[1]["i"]) and np.array_equal(evs[0]["j"], evs[1]["j"])
    vals = [fig5_values(ev) for ev in evs]
    rows = []
    for k, (label, v) in enumerate(zip(labels, vals)):
        for q, stat in _COMPARED_BY.items():
            row = {"model": label, "quantity": q, "mean": np.nanmean(v[q]), "median": np.nanmedian(v[q]),
                   "share_g2_negative": float(np.mean(v["G2"] < 0)), "statistic": stat,
                   "diff": np.nan, "diff_lo": np.nan, "diff_hi": np.nan}
            if k == 1:
                a, b = vals[0][q], v[q]
                keep = np.isfinite(a) & np.isfinite(b) if paired else None
                d = stats.bootstrap_diff(a[keep] if paired else a[np.isfinite(a)], b[keep] if paired else b[np.isfinite(b)],
                                         _STATISTIC[stat], n_boot=n_boot, seed=seed, paired=paired)
                row.update(diff=d["diff"], diff_lo=d["lo"], diff_hi=d["hi"])
            rows.append(row)
    return pd.DataFrame(rows), vals, paired


def _figure5(out: Rendered, inputs: Inputs, effects: dict, seed: int) -> None:
    fig5_runs = inputs.list_role("fig5")
    evs = [inputs.evaluation(r, "fig5") for r in fig5_runs]
    labels = [r.display_name + ("" if r.config.model in ("resnet20x1", "resnet32x10") or k == 0 else
                                " (stand-in for resnet32x10)") for k, r in enumerate(fig5_runs)]
    n_boot = int(inputs.profile.evaluation.n_boot)
    frame, vals, paired = fig5_frame(labels, evs, n_boot, seed)
    n_pairs = len(evs[0]["kl"])
    out.tables["fig5_kl_g2_stats"] = Table(
        frame, f"Figure 5 statistics (nats), {n_pairs} cross-class pairs of {out.dataset}, profile {out.profile}; diff = "
               f"larger - smaller model of the named statistic, 95% {'paired ' if paired else ''}bootstrap interval "
               f"({n_boot} resamples)")
    fig, axes = plotting.panels(3, height=plotting.PANEL[1] * 1.45)
    plotting.distributions(axes[0], {lab: v["KL"] for lab, v in zip(labels, vals)}, xlabel=r"KL$(f(x_i)\|f(x_j))$ (nats)",
                           log=True, marker="mean", legend_below=True, legend_width=40)
    plotting.distributions(axes[1], {lab: v["G2"] for lab, v in zip(labels, vals)}, xlabel="G2 = KL - G1 (nats)",
                           clip_quantiles=(0.01, 0.99), marker="mean", legend_below=True, legend_width=40)
    plotting.distributions(axes[2], {lab: v["G2/KL"] for lab, v in zip(labels, vals)}, xlabel="G2 / KL",
                           clip_quantiles=(0.01, 0.99), marker="median", legend_below=True, legend_width=40)
    fig.suptitle(f"Figure 5: {n_pairs} cross-class test pairs")
    plotting.stamp(fig, out.dataset, out.profile, fig5_runs)
    out.figures["fig5_kl_g2_resnets"] = fig

    larger = frame[frame["model"] == labels[1]].set_index("quantity")
    smaller = frame[frame["model"] == labels[0]].set_index("quantity")
    context = (f"{labels[1]} vs {labels[0]}, {n_pairs} pairs")
    for q, stat, cid in FIG5:
        row = larger.loc[q]
        out.claims.append(criteria.judge(
            cid, f"{stat} {row[stat]:.3g} vs {smaller.loc[q, stat]:.3g}; diff {row['diff']:+.3g} "
                 f"[{row['diff_lo']:+.3g}, {row['diff_hi']:+.3g}]",
            f"{stat} of {q}; {context}" + ("" if paired else "; the models saw different pairs (unpaired bootstrap)"),
            noise={"effect": row["diff"], "per_seed": effects.get(cid, []), "spread": inputs.profile.spread,
                   "profile": out.profile},
            lo=row["diff_lo"], hi=row["diff_hi"]))
    share = frame.groupby("model", sort=False)["share_g2_negative"].first()
    out.claims.append(criteria.judge("fig5_g2_negative", " / ".join(f"{s:.1%}" for s in share.to_numpy()),
                                     "where G2 < 0 the higher-order terms cancel part of the Fisher term, so G2 is not a "
                                     "non-negative 'robust component' pair by pair (see figures/README.md)"))


# --------------------------------------------------------------------------- training noise
def seed_effects(inputs: Inputs) -> dict[str, list[float]]:
    """For each capacity claim, its effect (larger - smaller: accuracy points for Table 1, the
    compared statistic for Figure 5) for every training seed that both models have in the cache
    with the evaluation; empty where only one seed is there."""
    out: dict[str, list[float]] = {}
    t1_runs = inputs.list_role("table1")
    per_model = [{r.seed: ev for r, ev in inputs.seed_evaluations(run, "table1")} for run in t1_runs]
    for a, b, name in STEPS_UP:
        common = sorted(set(per_model[a]) & set(per_model[b]))
        if len(common) < 2:
            continue
        for key in METRICS:
            out[f"table1_{name}_{key}"] = [100 * (per_model[b][s][f"correct_{key}"].mean()
                                                  - per_model[a][s][f"correct_{key}"].mean()) for s in common]
    f5 = [{r.seed: ev for r, ev in inputs.seed_evaluations(run, "fig5")} for run in inputs.list_role("fig5")]
    common = sorted(set(f5[0]) & set(f5[1]))
    if len(common) >= 2:
        for q, stat, cid in FIG5:
            out[cid] = [float(_STATISTIC[stat](fig5_values(f5[1][s])[q]) - _STATISTIC[stat](fig5_values(f5[0][s])[q]))
                        for s in common]
    return out


def one_seed_verdicts(inputs: Inputs, spread) -> dict[str, dict[int, str]]:
    """For each capacity claim and each training seed in the cache, the verdict that seed ALONE would
    get (its test-sample criterion, then the one-run rule against ``spread``): what a fresh rerun with
    that seed would publish. Seeds that agree on every claim are verdicts that survive a rerun."""
    t1_names, f5_names = inputs.profile.role("table1"), inputs.profile.role("fig5")
    by_seed = {(r.name, r.seed, e): ev for e, names in (("table1", t1_names), ("fig5", f5_names)) for name in names
               for r, ev in inputs.seed_evaluations(inputs.runs[name], e)}
    seeds = sorted({s for (_, s, _) in by_seed})
    out: dict[str, dict[int, str]] = {}
    for s in seeds:
        evs = [by_seed.get((n, s, "table1")) for n in t1_names]
        if all(ev is not None for ev in evs):
            for k, row in comparisons([inputs.runs[n] for n in t1_names], evs).iterrows():
                cid = TABLE1_CLAIMS[k]
                out.setdefault(cid, {})[s] = criteria.judge(
                    cid, "", noise={"effect": row["diff"], "per_seed": [], "spread": spread, "profile": ""},
                    p_positive=row["p larger better"], p_negative=row["p smaller better"]).verdict
        f5 = [by_seed.get((n, s, "fig5")) for n in f5_names]
        if all(ev is not None for ev in f5):
            frame, _, _ = fig5_frame(["smaller", "larger"], f5, int(inputs.profile.evaluation.n_boot), inputs.sample_seed)
            larger = frame[frame["model"] == "larger"].set_index("quantity")
            for q, _, cid in FIG5:
                row = larger.loc[q]
                out.setdefault(cid, {})[s] = criteria.judge(
                    cid, "", noise={"effect": row["diff"], "per_seed": [], "spread": spread, "profile": ""},
                    lo=row["diff_lo"], hi=row["diff_hi"]).verdict
    return out


def spread_toml(profile: Profile, seed: int = 0, machine: str = "") -> str:
    """The ``[seed_spread]`` section of ``profile`` measured from the seeds in the cache: for each
    capacity claim the standard deviation (ddof 1) of its per-seed effects (``cckl spread``)."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    effects = seed_effects(inputs)
    if not effects:
        raise ValueError(f"the cache holds one training seed of the capacity-study runs of profile {profile.name}; "
                         f"train more first, e.g. `python -m cckl_core evaluate --profile {profile.name} "
                         f"--runs {','.join(profile.runs_for(ROLES))} --seeds 0,1,2`")
    seeds = sorted({r.seed for r, _ in inputs.seed_evaluations(inputs.list_role("table1")[0], "table1")})
    sd = {cid: float(np.std(values, ddof=1)) for cid, values in effects.items()}
    measured = profiles.SeedSpread(sd, tuple(seeds), "measured")
    alone = one_seed_verdicts(inputs, measured)
    lines = ["[seed_spread]",
             f"# measured by `python -m cckl_core spread --profile {profile.name}` on {time.strftime('%Y-%m-%d')}"
             + (f", {profiles.toml_comment(machine)}" if machine else ""),  # escaped: the output is TOML
             "how = " + profiles.toml_string(f"python -m cckl_core spread --profile {profile.name}"
                                             f"{', ' + machine if machine else ''}"),
             f"seeds = [{', '.join(map(str, seeds))}]", "", "[seed_spread.sd]  # standard deviation over seeds of each effect"]
    for cid, values in effects.items():
        verdicts = ", ".join(f"seed {k} {v}" for k, v in sorted(alone.get(cid, {}).items()))
        lines.append(f"{cid} = {sd[cid]:.4g}  # effects {', '.join(f'{v:+.4g}' for v in values)}; alone: {verdicts}")
    return "\n".join(lines) + "\n"
