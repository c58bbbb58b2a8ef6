"""Notebook 02: the Fisher information grows with accuracy, and adversarial training holds it down.

- Figures 3 and 8: test and PGD-10 accuracy and ln mean ||F_x||_F (and the spectral norm) per
  epoch for standard training, PGD-AT and TRADES (VGG13; ResNet20); Figures 4 and 7: the standard
  run alone; growth judged by Spearman over epochs 1..end, standard / adversarial compared at
  matched epochs and at matched accuracy;
- robust accuracy per epoch, best and last (with Wilson intervals); the seeds in the cache;
- Figure 9: ||F_x||_F at robust against non-robust correct test images (``fig9`` evaluation);
- the eq. 12 check: worst-case KL in L2 and L-inf balls against the quadratic (Fisher) prediction
  (``eq12`` evaluation).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats as sstats

from .. import plotting, stats
from ..profiles import Profile
from . import criteria
from .inputs import Inputs, gather
from .result import Rendered, Table

NOTEBOOK = "02_fisher_growth"
ROLES = ("fig3_standard", "fig3_pgd_at", "fig3_trades", "fig8_standard", "fig8_pgd_at", "fig8_trades", "fig9_robust")
OPTIONAL: tuple[str, ...] = ()
FAMILIES = {"fig3": ("fig3_standard", "fig3_pgd_at", "fig3_trades"), "fig8": ("fig8_standard", "fig8_pgd_at", "fig8_trades")}
OBJECTIVES = ("standard", "PGD-AT", "TRADES")
#: The paper's architecture each family's runs stand for (their scale is checked against it).
PLAYS = {"fig3": "vgg13", "fig8": "resnet20x1"}


def render(profile: Profile, seed: int = 0) -> Rendered:
    """Every figure, table and claim of notebook 02 for ``profile`` (``seed``: the sampling seed)."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    runs_by_role = {role: inputs.by_role(role) for role in ROLES}
    out = Rendered(NOTEBOOK, profile.name, runs_by_role["fig3_standard"].dataset_name)
    out.text["runs"] = "\n".join(
        f"- {role}: {run.name}, {run.display_name}, {run.history[-1]['epoch']} epochs, test acc "
        f"{run.history[-1]['test_acc']:.4f}, PGD-10 acc {run.history[-1]['robust_acc']:.4f}, mean ||F||_F "
        f"{run.history[-1]['fisher_fro_mean']:.4g}, mean ||F||_2 {run.history[-1]['fisher_spec_mean']:.4g}"
        for role, run in runs_by_role.items())
    _growth_figures(out, inputs, runs_by_role)
    _growth_claims(out, inputs, runs_by_role)
    _robust_and_seeds(out, inputs)
    _figure9(out, inputs, profile)
    _eq12(out, inputs)
    return out


def _growth_figures(out: Rendered, inputs: Inputs, R: dict) -> None:
    for fam, (big, standard_fig) in (("fig3", ("fig3_fisher_vgg13", ("fig4_fisher_standard_vgg13", 4))),
                                     ("fig8", ("fig8_fisher_resnet20", ("fig7_fisher_standard_resnet20", 7)))):
        family = [R[r] for r in FAMILIES[fam]]
        number = fam[3:]
        fig, _ = plotting.fisher_growth([inputs.seed_group(r) for r in family], list(OBJECTIVES),
                                        title=f"Figure {number}: {family[0].config.model}, standard vs adversarial training")
        plotting.stamp(fig, out.dataset, out.profile, family)
        out.figures[big] = fig
        std = family[0]
        fig, _ = plotting.accuracy_and_fisher(std, title=f"Figure {standard_fig[1]}: {std.display_name}, accuracy and "
                                                          "Fisher norm")
        plotting.stamp(fig, out.dataset, out.profile, std)
        out.figures[standard_fig[0]] = fig


def log_fisher_change(run) -> float:
    """``ln mean ||F_x||_F`` at the last epoch minus at epoch 1 (the first trained epoch) of one run."""
    epochs, fro = plotting.history_series(run, "fisher_fro_mean")
    first = fro[epochs == 1]
    return float(np.log(fro[-1]) - np.log(first[0])) if first.size and fro[-1] > 0 and first[0] > 0 else np.nan


def matched_ratios(std, adv) -> dict:
    """Mean ||F_x||_F of a standard run over an adversarial one at the matched epoch (the last both have)
    and at matched accuracy (the standard run's first epoch reaching the adversarial run's final test
    accuracy, against the adversarial run's final epoch; NaN when it never does)."""
    e_std, acc_std = plotting.history_series(std, "test_acc")
    _, fro_std = plotting.history_series(std, "fisher_fro_mean")
    e, acc = plotting.history_series(adv, "test_acc")
    _, fro = plotting.history_series(adv, "fisher_fro_mean")
    common = int(min(e[-1], e_std[-1]))
    reach = np.nonzero(acc_std >= acc[-1])[0]
    reach = int(reach[0]) if len(reach) else None
    return {"matched epoch": common, "ratio at matched epoch": fro_std[common] / fro[common],
            "adversarial final acc": acc[-1], "standard epoch reaching it": reach,
            "ratio at matched accuracy": (fro_std[reach] / fro[-1]) if reach is not None else np.nan,
            "ratio at final epochs": fro_std[-1] / fro[-1]}


def growth_tables(R: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per run: Fisher norms, their change from epoch 1 and (descriptive) Spearman trend with accuracy
    over epochs 1..end; per adversarial run: :func:`matched_ratios` against the standard run."""
    fisher_rows, matched_rows = [], []
    for fam, fam_roles in FAMILIES.items():
        for role, objective in zip(fam_roles, OBJECTIVES):
            run = R[role]
            e, acc = plotting.history_series(run, "test_acc")
            _, fro = plotting.history_series(run, "fisher_fro_mean")
            _, rob = plotting.history_series(run, "robust_acc")
            trend = stats.rank_trend(acc[e >= 1], fro[e >= 1], method="exact")
            fisher_rows.append({"figure": fam, "objective": objective, "run": run.display_name, "epochs": int(e[-1]),
                                "acc first": acc[0], "acc last": acc[-1], "PGD-10 acc last": rob[-1],
                                "mean |F|_F init": fro[0], "mean |F|_F epoch 1": fro[1], "mean |F|_F last": fro[-1],
                                "mean |F|_2 last": run.history[-1]["fisher_spec_mean"],
                                "ln |F|_F last - epoch 1": log_fisher_change(run),
                                "spearman acc~|F| (epochs 1+, descriptive)": trend["rho"]})
            if objective != "standard":
                matched_rows.append({"figure": fam, "adversarial": objective, **matched_ratios(R[fam_roles[0]], run)})
    return pd.DataFrame(fisher_rows), pd.DataFrame(matched_rows)


def by_seed(inputs: Inputs, run) -> dict:
    """Every finished training seed of ``run`` in the cache: ``{seed: run}``."""
    return {r.seed: r for r in inputs.seed_group(run)}


def _growth_claims(out: Rendered, inputs: Inputs, R: dict) -> None:
    fisher_final, fisher_matched = growth_tables(R)
    out.tables["fisher_final"] = Table(fisher_final, "Mean Fisher norms (nats per pixel unit^2), training seed "
                                                     f"{R['fig3_standard'].seed}: the change of ln mean ||F_x||_F from "
                                                     "epoch 1 (the claims' statistic, judged over seeds) and the rank "
                                                     "correlation with test accuracy over epochs 1..end (descriptive: "
                                                     f"epochs are not independent), profile {out.profile}, {out.dataset}")
    out.tables["fisher_matched"] = Table(fisher_matched, "Mean ||F_x||_F, standard / adversarial training at matched "
                                                         f"epochs and at matched test accuracy, training seed "
                                                         f"{R['fig3_standard'].seed}, profile {out.profile}, {out.dataset}")
    groups_of = {fam: [by_seed(inputs, R[role]) for role in fam_roles] for fam, fam_roles in FAMILIES.items()}
    for fam, fam_roles in FAMILIES.items():  # the rises first, then the ratios (the order of claims.toml)
        groups = groups_of[fam]
        plays = PLAYS[fam]
        for role, objective, group in zip(fam_roles, OBJECTIVES, groups):
            number = {"fig3": ("4", "3"), "fig8": ("7", "8")}[fam][0 if objective == "standard" else 1]
            cid = f"fig{number}_{'standard' if objective == 'standard' else objective.lower().replace('-', '_')}_rises"
            d_acc = [float(r.history[-1]["test_acc"] - r.history[1]["test_acc"]) for r in group.values()]
            out.claims.append(criteria.judge(
                cid, context=f"{R[role].display_name}, epochs 1..{R[role].history[-1]['epoch']}; test accuracy change "
                             + " / ".join(f"{v:+.3f}" for v in d_acc),
                fill={"arch": R[role].display_name.split()[0]}, runs=[criteria.facts(r, plays) for r in group.values()],
                evidence=criteria.SeedEvidence([log_fisher_change(r) for r in group.values()], list(group))))
    for fam, fam_roles in FAMILIES.items():
        groups = groups_of[fam]
        plays = PLAYS[fam]
        arch = R[fam_roles[0]].config.model
        for role, objective, group in zip(fam_roles[1:], OBJECTIVES[1:], groups[1:]):
            seeds = [s for s in group if s in groups[0]]
            pairs = [matched_ratios(groups[0][s], group[s]) for s in seeds]
            both = [criteria.facts(r, plays) for g in (groups[0], group) for s, r in g.items() if s in seeds]
            base = f"{fam}_{objective.lower().replace('-', '_')}_ratio"
            for match, key in (("epoch", "ratio at matched epoch"), ("accuracy", "ratio at matched accuracy")):
                ratios = [p[key] for p in pairs]
                shown = "standard / " + objective + ": " + " / ".join("never reached" if not np.isfinite(v) else f"{v:.3g}x"
                                                                      for v in ratios)
                out.claims.append(criteria.judge(
                    f"{base}_{match}", shown, "seed s of the standard run against seed s of the adversarial one"
                    + ("" if match == "epoch" else "; the standard run at its first epoch reaching the adversarial run's "
                       "final accuracy"), fill={"arch": arch}, runs=both,
                    evidence=criteria.SeedEvidence([float(np.log10(v)) if np.isfinite(v) and v > 0 else np.nan
                                                    for v in ratios], seeds, " (log10)")))


def _robust_and_seeds(out: Rendered, inputs: Inputs) -> None:
    robust_rows, seed_rows = [], []
    for run in inputs.runs.values():
        e, rob = plotting.history_series(run, "robust_acc")
        n_rob = min(run.config.robust_n, run.dataset_info["n_test"])
        best = int(np.nanargmax(rob))
        lo_b, hi_b = stats.wilson_interval(round(rob[best] * n_rob), n_rob)
        lo_l, hi_l = stats.wilson_interval(round(rob[-1] * n_rob), n_rob)
        robust_rows.append({"run": run.display_name, "objective": run.config.objective, "epochs": int(e[-1]),
                            "lr decay at": str(list(run.config.milestones)), "robust_n": n_rob,
                            "best epoch": int(e[best]), "best PGD-10 acc": rob[best], "best lo": lo_b, "best hi": hi_b,
                            "last PGD-10 acc": rob[-1], "last lo": lo_l, "last hi": hi_l,
                            "last - best": rob[-1] - rob[best]})
        group = inputs.seed_group(run)
        final = pd.DataFrame([g.history[-1] for g in group])
        row = {"run": run.display_name, "seeds": " ".join(str(g.seed) for g in group), "n seeds": len(group)}
        for key in ("test_acc", "robust_acc", "fisher_fro_mean", "cckl"):
            row[f"{key} mean"], row[f"{key} std"] = final[key].mean(), final[key].std(ddof=1)
        seed_rows.append(row)
    out.tables["robust_acc_best_last"] = Table(pd.DataFrame(robust_rows), "PGD-10 accuracy (eps 8/255) per run: best and "
                                               f"last epoch, 95% Wilson intervals, profile {out.profile}, {out.dataset}")
    seeds = pd.DataFrame(seed_rows)
    out.tables["seeds_final"] = Table(seeds, "Final epoch over the seeds in the cache (mean, standard deviation), "
                                             f"profile {out.profile}, {out.dataset}",
                                      write=bool((seeds["n seeds"] > 1).any()))


def robust_split(ev9: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """||F_x||_F at the correct images that stay correct under PGD (robust) and those that do not."""
    correct = ev9["correct"].astype(bool)
    robust = correct & ev9["correct_pgd"].astype(bool)
    nonrobust = correct & ~ev9["correct_pgd"].astype(bool)
    return ev9["frobenius"][robust], ev9["frobenius"][nonrobust]


def robust_auc(ev9: Mapping) -> float:
    """P(||F_x||_F of a robust correct image < that of a non-robust correct one), ties counting one half:
    ``1 - U / (n_robust n_nonrobust)`` with ``U`` the Mann-Whitney statistic of the robust sample (NaN when a
    group is empty)."""
    fro_robust, fro_nonrobust = robust_split(ev9)
    if not len(fro_robust) or not len(fro_nonrobust):
        return float("nan")
    u = sstats.mannwhitneyu(fro_robust, fro_nonrobust).statistic
    return float(1.0 - u / (len(fro_robust) * len(fro_nonrobust)))


def _figure9(out: Rendered, inputs: Inputs, profile: Profile) -> None:
    run9 = inputs.by_role("fig9_robust")
    ev9 = inputs.evaluation(run9, "fig9")
    fro_robust, fro_nonrobust = robust_split(ev9)
    both = len(fro_robust) > 0 and len(fro_nonrobust) > 0
    mw_less = sstats.mannwhitneyu(fro_robust, fro_nonrobust, alternative="less") if both else None
    pgd_name = f"PGD-{profile.evaluation.pgd_steps}"
    correct = ev9["correct"].astype(bool)
    out.text["fig9"] = (f"{run9.display_name} on {len(correct)} test images of {out.dataset}: clean acc "
                        f"{correct.mean():.4f}, {pgd_name} acc {(ev9['correct_pgd'].astype(bool) & correct).mean():.4f}; "
                        f"correct {int(correct.sum())} = robust {len(fro_robust)} + non-robust {len(fro_nonrobust)}")
    fig, axes = plotting.panels(1, width=plotting.PANEL[0] * 1.7)
    plotting.distributions(axes[0], {"correct and robust": fro_robust, "correct, not robust": fro_nonrobust},
                           xlabel=r"$\|F_x\|_F$ (nats per pixel unit$^2$)", log=True)
    axes[0].set_title(f"Figure 9: {run9.display_name}, {pgd_name} at eps 8/255"
                      + ("" if mw_less is None else f"; Mann-Whitney p = {mw_less.pvalue:.2g} (one run)"))
    plotting.stamp(fig, out.dataset, out.profile, run9)
    out.figures["fig9_fisher_robust_vs_nonrobust"] = fig
    med_r = float(np.median(fro_robust)) if len(fro_robust) else float("nan")
    med_nr = float(np.median(fro_nonrobust)) if len(fro_nonrobust) else float("nan")
    pairs = inputs.seed_evaluations(run9, "fig9")
    indicative = (f"seed {run9.seed}: median {med_r:.3g} vs {med_nr:.3g}, one-sided Mann-Whitney p = "
                  + ("n/a" if mw_less is None else f"{mw_less.pvalue:.2g}"))
    out.claims.append(criteria.judge(
        "fig9_robust_smaller", context=f"n = {len(fro_robust)} robust, {len(fro_nonrobust)} non-robust (seed {run9.seed})",
        runs=[criteria.facts(r, "vgg13") for r, _ in pairs],
        evidence=criteria.SeedEvidence([robust_auc(ev) for _, ev in pairs], [r.seed for r, _ in pairs],
                                       indicative=indicative)))


def eq12_tolerance() -> float:
    """How close to 1 a median ratio must be for the quadratic approximation to hold at a radius: the
    tolerance of claim ``eq12_small_l2`` in ``claims.toml``, which the sweep reports against too."""
    return criteria.claim("eq12_small_l2").tolerance


def _holds_column() -> str:
    return f"quadratic holds ({eq12_tolerance():.0%})"


def eq12_table(ev12: Mapping) -> pd.DataFrame:
    """Per radius: medians (and quartiles) of the worst-case KL over its quadratic prediction, and
    whether the approximation holds within :func:`eq12_tolerance`."""
    rows = []
    for k, eps in enumerate(ev12["l2_radii"]):
        rows.append({"norm": "L2", "eps": eps, "eps x 255": np.nan,
                     "median KL_PGD/(1/2 lam eps^2)": np.median(ev12["l2_pgd"][k]),
                     "q25": np.quantile(ev12["l2_pgd"][k], 0.25), "q75": np.quantile(ev12["l2_pgd"][k], 0.75),
                     "median KL_eig/(1/2 lam eps^2)": np.median(ev12["l2_eig"][k]),
                     "median KL_random/(1/2 lam eps^2)": np.median(ev12["l2_random"][k]),
                     "median KL_PGD/G1": np.nan, "median |cos(eta_PGD, v)|": np.median(ev12["l2_cos"][k])})
    for k, r255 in enumerate(ev12["linf_radii_255"]):
        rows.append({"norm": "Linf", "eps": r255 / 255, "eps x 255": r255,
                     "median KL_PGD/(1/2 lam eps^2)": np.median(ev12["linf_pgd_over_lam"][k]),
                     "q25": np.quantile(ev12["linf_pgd_over_g1"][k], 0.25),
                     "q75": np.quantile(ev12["linf_pgd_over_g1"][k], 0.75),
                     "median KL_eig/(1/2 lam eps^2)": np.nan, "median KL_random/(1/2 lam eps^2)": np.nan,
                     "median KL_PGD/G1": np.median(ev12["linf_pgd_over_g1"][k]), "median |cos(eta_PGD, v)|": np.nan})
    table = pd.DataFrame(rows)
    tol = eq12_tolerance()
    table[_holds_column()] = np.where(table["norm"] == "L2", (table["median KL_PGD/(1/2 lam eps^2)"] - 1).abs() <= tol,
                                      (table["median KL_PGD/G1"] - 1).abs() <= tol)
    return table


def _eq12(out: Rendered, inputs: Inputs) -> None:
    run9 = inputs.by_role("fig9_robust")
    ev12 = inputs.evaluation(run9, "eq12")
    table = eq12_table(ev12)
    out.tables["eq12_check"] = Table(table, f"Eq. 12 check on {len(ev12['correct'])} test points "
                                            f"({int(ev12['correct'].sum())} correct), {run9.display_name}, profile "
                                            f"{out.profile}; L2 rows: KL / (1/2 lambda_max eps^2); L-inf rows: KL_PGD / G1 "
                                            "(q25, q75 of that ratio)")
    fig, axes = plotting.panels(3)
    plotting.quantile_lines(axes[0], ev12["l2_radii"], {"top eigenvector": ev12["l2_eig"], "random direction": ev12["l2_random"],
                                                        "L2 KL-PGD": ev12["l2_pgd"]},
                            ylabel=r"KL / ($\frac{1}{2}\lambda_{\max}\epsilon^2$)", xlabel=r"L2 radius $\epsilon$ (pixel units)",
                            reference=1.0, logx=True, logy=True)
    axes[0].set_title("L2: KL relative to eq. 12 (median, IQR)")
    plotting.quantile_lines(axes[1], ev12["l2_radii"], {"|cos(eta_PGD, v)|": ev12["l2_cos"]}, ylabel="|cosine|",
                            xlabel=r"L2 radius $\epsilon$ (pixel units)", reference=1.0, logx=True)
    axes[1].set_title("L2: PGD direction vs top eigenvector")
    plotting.quantile_lines(axes[2], ev12["linf_radii_255"], {"KL_PGD / G1": ev12["linf_pgd_over_g1"],
                                                              "KL_PGD / (1/2 lam ||eta||^2)": ev12["linf_pgd_over_lam"]},
                            ylabel="ratio", xlabel=r"L-inf radius $\epsilon$ (x 1/255)", reference=1.0, logx=True)
    axes[2].set_title("L-inf: KL-PGD vs its quadratic term")
    fig.suptitle(f"Eq. 12: worst-case KL against the Fisher prediction, {run9.display_name}")
    plotting.stamp(fig, out.dataset, out.profile, run9)
    out.figures["eq12_eigenvector_check"] = fig

    small = table[table["norm"] == "L2"].iloc[0]
    r_pgd, r_eig = small["median KL_PGD/(1/2 lam eps^2)"], small["median KL_eig/(1/2 lam eps^2)"]
    n_points = len(ev12["correct"])
    out.claims.append(criteria.judge("eq12_small_l2", f"KL_PGD / (1/2 lam eps^2) = {r_pgd:.3f}, KL_eig / (...) = {r_eig:.3f}",
                                     f"medians over {n_points} points at eps = {small['eps']:g} (L2)",
                                     evidence=criteria.ValuesEvidence([r_pgd, r_eig])))
    out.claims.append(criteria.judge("eq12_eigenvector", f"median |cos(eta_PGD, v)| = {small['median |cos(eta_PGD, v)|']:.3f}",
                                     f"eps = {small['eps']:g} (L2)",
                                     evidence=criteria.ValueEvidence(small["median |cos(eta_PGD, v)|"])))
    for norm in ("L2", "Linf"):
        sub = table[table["norm"] == norm]
        holds = sub[_holds_column()].astype(bool)
        fails, last_ok = sub[~holds], sub[holds]
        col, unit = ("eps", " (L2, pixel units)") if norm == "L2" else ("eps x 255", "/255")
        where = ("holds at every radius up to the budget" if fails.empty else
                 f"holds up to eps = {last_ok[col].max() if len(last_ok) else float('nan'):.3g}{unit}, fails from "
                 f"{fails[col].min():.3g}{unit}")
        out.claims.append(criteria.judge(f"eq12_sweep_{norm.lower()}", where,
                                         f"median KL_PGD over its quadratic prediction within {eq12_tolerance():.0%} of 1 "
                                         + ("(1/2 lambda_max eps^2)" if norm == "L2" else "(G1 at the same perturbation)")))
