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
from ..histories import series as history_series
from ..histories import table as history_table
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
    """Every figure, table and claim of notebook 02 for ``profile`` (``seed``: the sampling seed), in the
    notebook's steps."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    out = Rendered(NOTEBOOK, profile.name, inputs.dataset_name(ROLES[0]))
    groups = seed_groups(inputs)
    out.figures["fig3_fisher_vgg13"] = growth_figure(inputs, out, "fig3")
    out.figures["fig4_fisher_standard_vgg13"] = standard_figure(inputs, out, "fig3")
    out.figures["fig8_fisher_resnet20"] = growth_figure(inputs, out, "fig8")
    out.figures["fig7_fisher_standard_resnet20"] = standard_figure(inputs, out, "fig8")
    growth = growth_statistics(groups)
    out.tables.update(growth_tables(inputs, out))
    out.claims += growth_claims(groups, growth)
    out.tables.update(robust_tables(inputs, out))
    run9 = inputs.by_role("fig9_robust")
    fig9_auc = robust_auc_by_seed(inputs.seed_evaluations(run9, "fig9"))
    out.figures["fig9_fisher_robust_vs_nonrobust"] = figure9(inputs, out)
    out.claims += figure9_claims(inputs, fig9_auc)
    eq12 = eq12_table(inputs.evaluation(run9, "eq12"))
    out.tables["eq12_check"] = eq12_check(inputs, eq12, out)
    out.figures["eq12_eigenvector_check"] = eq12_figure(inputs, out)
    out.claims += eq12_claims(inputs, eq12)
    return out


def runs_table(inputs: Inputs) -> pd.DataFrame:
    """Each role's run (its first training seed) at its last epoch: model, epochs, test and PGD-10
    accuracy, mean Frobenius and spectral norm of ``F_x``."""
    rows = []
    for role in ROLES:
        run = inputs.by_role(role)
        last = run.history[-1]
        rows.append({"role": role, "run": run.name, "model": run.display_name, "epochs": last["epoch"],
                     "seeds": len(inputs.seed_group(run)), "test acc": last["test_acc"], "PGD-10 acc": last["robust_acc"],
                     "mean |F|_F": last["fisher_fro_mean"], "mean |F|_2": last["fisher_spec_mean"]})
    return pd.DataFrame(rows)


def histories(inputs: Inputs, keys: tuple[str, ...] = ("test_acc", "robust_acc", "fisher_fro_mean",
                                                        "fisher_spec_mean")) -> pd.DataFrame:
    """The per-epoch record Figures 3, 4, 7 and 8 draw: one row per (role, training seed, epoch)
    (:func:`cckl_core.histories.table` of each role's training seeds)."""
    return pd.concat([history_table(inputs.seed_group(inputs.by_role(role)), keys).assign(role=role)
                      for role in ROLES[:-1]], ignore_index=True)


#: The figures of each family: (Figure number of all three objectives, Figure number of the standard run alone).
FIGURE_NUMBERS = {"fig3": (3, 4), "fig8": (8, 7)}


def growth_figure(inputs: Inputs, out: Rendered, family: str):
    """Figure 3 (``family`` ``fig3``, VGG13) or 8 (``fig8``, ResNet20): test and PGD-10 accuracy and the Fisher
    norms per epoch under the three objectives (:func:`cckl_core.plotting.fisher_growth`)."""
    runs_of = [inputs.by_role(r) for r in FAMILIES[family]]
    fig, _ = plotting.fisher_growth([inputs.seed_group(r) for r in runs_of], list(OBJECTIVES),
                                    title=f"Figure {FIGURE_NUMBERS[family][0]}: {runs_of[0].config.model}, standard vs "
                                          "adversarial training")
    plotting.stamp(fig, out.dataset, out.profile, runs_of)
    return fig


def standard_figure(inputs: Inputs, out: Rendered, family: str):
    """Figure 4 (``family`` ``fig3``) or 7 (``fig8``): the standard run alone, accuracy and Fisher norm
    (:func:`cckl_core.plotting.accuracy_and_fisher`)."""
    std = inputs.by_role(FAMILIES[family][0])
    fig, _ = plotting.accuracy_and_fisher(std, title=f"Figure {FIGURE_NUMBERS[family][1]}: {std.display_name}, "
                                                      "accuracy and Fisher norm")
    plotting.stamp(fig, out.dataset, out.profile, std)
    return fig


def log_fisher_change(run) -> float:
    """``ln mean ||F_x||_F`` at the last epoch minus at epoch 1 (the first trained epoch) of one run."""
    epochs, fro = history_series(run, "fisher_fro_mean")
    first = fro[epochs == 1]
    return float(np.log(fro[-1]) - np.log(first[0])) if first.size and fro[-1] > 0 and first[0] > 0 else np.nan


def matched_ratios(std, adv) -> dict:
    """Mean ||F_x||_F of a standard run over an adversarial one at the matched epoch (the last both have)
    and at matched accuracy (the standard run's first epoch reaching the adversarial run's final test
    accuracy, against the adversarial run's final epoch; NaN when it never does)."""
    e_std, acc_std = history_series(std, "test_acc")
    _, fro_std = history_series(std, "fisher_fro_mean")
    e, acc = history_series(adv, "test_acc")
    _, fro = history_series(adv, "fisher_fro_mean")
    common = int(min(e[-1], e_std[-1]))
    reach = np.nonzero(acc_std >= acc[-1])[0]
    reach = int(reach[0]) if len(reach) else None
    return {"matched epoch": common, "ratio at matched epoch": fro_std[common] / fro[common],
            "adversarial final acc": acc[-1], "standard epoch reaching it": reach,
            "ratio at matched accuracy": (fro_std[reach] / fro[-1]) if reach is not None else np.nan,
            "ratio at final epochs": fro_std[-1] / fro[-1]}


def growth_frames(R: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per run: Fisher norms, their change from epoch 1 and (descriptive) Spearman trend with accuracy
    over epochs 1..end; per adversarial run: :func:`matched_ratios` against the standard run."""
    fisher_rows, matched_rows = [], []
    for fam, fam_roles in FAMILIES.items():
        for role, objective in zip(fam_roles, OBJECTIVES):
            run = R[role]
            e, acc = history_series(run, "test_acc")
            _, fro = history_series(run, "fisher_fro_mean")
            _, rob = history_series(run, "robust_acc")
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


def growth_tables(inputs: Inputs, out: Rendered) -> dict[str, Table]:
    """``fisher_final`` and ``fisher_matched`` (:func:`growth_frames` of the first training seeds), captioned."""
    R = {role: inputs.by_role(role) for role in ROLES}
    fisher_final, fisher_matched = growth_frames(R)
    seed = R["fig3_standard"].seed
    return {"fisher_final": Table(fisher_final, "Mean Fisher norms (nats per pixel unit^2), training seed "
                                                f"{seed}: the change of ln mean ||F_x||_F from "
                                                "epoch 1 (the claims' statistic, judged over seeds) and the rank "
                                                "correlation with test accuracy over epochs 1..end (descriptive: "
                                                f"epochs are not independent), profile {out.profile}, {out.dataset}"),
            "fisher_matched": Table(fisher_matched, "Mean ||F_x||_F, standard / adversarial training at matched "
                                                    f"epochs and at matched test accuracy, training seed "
                                                    f"{seed}, profile {out.profile}, {out.dataset}")}


def seed_groups(inputs: Inputs) -> dict[str, dict[int, object]]:
    """Every finished training seed of each growth role's run in the cache: ``{role: {seed: run}}``."""
    return {role: {r.seed: r for r in inputs.seed_group(inputs.by_role(role))} for fam in FAMILIES.values()
            for role in fam}


def growth_statistics(groups: dict) -> pd.DataFrame:
    """The per-seed statistics of the growth claims, one row per (role, training seed): the change of
    test accuracy and of ``ln mean ||F_x||_F`` from epoch 1 to the last epoch (:func:`log_fisher_change`)
    and, for an adversarial run, the ratio standard / adversarial of mean ``||F_x||_F`` against the
    standard run of the same seed (:func:`matched_ratios`; NaN where that seed has no standard run)."""
    rows = []
    for fam, fam_roles in FAMILIES.items():
        standard = groups[fam_roles[0]]
        for role, objective in zip(fam_roles, OBJECTIVES):
            for seed, run in groups[role].items():
                paired = objective != "standard" and seed in standard
                m = matched_ratios(standard[seed], run) if paired else {}
                rows.append({"figure": fam, "role": role, "objective": objective, "seed": seed,
                             "accuracy change": float(run.history[-1]["test_acc"] - run.history[1]["test_acc"]),
                             "ln |F|_F change": log_fisher_change(run),
                             "ratio at matched epoch": m.get("ratio at matched epoch", np.nan),
                             "ratio at matched accuracy": m.get("ratio at matched accuracy", np.nan), "paired": paired})
    return pd.DataFrame(rows)


def growth_claims(groups: dict, per_seed: pd.DataFrame) -> list[criteria.ClaimRow]:
    """The growth claims, tested over training seeds: the Fisher norm rises (per objective), then the
    standard / adversarial ratios at matched epoch and matched accuracy exceed 10x (log10 > 1)."""
    rows = []
    for fam, fam_roles in FAMILIES.items():  # the rises first, then the ratios (the order of claims.toml)
        for role, objective in zip(fam_roles, OBJECTIVES):
            group, sub = groups[role], per_seed[per_seed["role"] == role]
            first = next(iter(group.values()))
            number = FIGURE_NUMBERS[fam][1 if objective == "standard" else 0]  # the standard run alone: Fig. 4 / 7
            cid = f"fig{number}_{'standard' if objective == 'standard' else objective.lower().replace('-', '_')}_rises"
            rows.append(criteria.judge(
                cid, context=f"{first.display_name}, epochs 1..{first.history[-1]['epoch']}; test accuracy change "
                             + " / ".join(f"{v:+.3f}" for v in sub["accuracy change"]),
                fill={"arch": first.display_name.split()[0]}, runs=[criteria.facts(r, PLAYS[fam]) for r in group.values()],
                evidence=criteria.SeedEvidence(sub["ln |F|_F change"].tolist(), sub["seed"].tolist())))
    for fam, fam_roles in FAMILIES.items():
        standard = groups[fam_roles[0]]
        arch = next(iter(standard.values())).config.model
        for role, objective in zip(fam_roles[1:], OBJECTIVES[1:]):
            sub = per_seed[(per_seed["role"] == role) & per_seed["paired"]]
            seeds = sub["seed"].tolist()
            both = [criteria.facts(r, PLAYS[fam]) for g in (standard, groups[role]) for s, r in g.items() if s in seeds]
            base = f"{fam}_{objective.lower().replace('-', '_')}_ratio"
            for match, key in (("epoch", "ratio at matched epoch"), ("accuracy", "ratio at matched accuracy")):
                ratios = sub[key].tolist()
                shown = "standard / " + objective + ": " + " / ".join("never reached" if not np.isfinite(v) else f"{v:.3g}x"
                                                                      for v in ratios)
                rows.append(criteria.judge(
                    f"{base}_{match}", shown, "seed s of the standard run against seed s of the adversarial one"
                    + ("" if match == "epoch" else "; the standard run at its first epoch reaching the adversarial run's "
                       "final accuracy"), fill={"arch": arch}, runs=both,
                    evidence=criteria.SeedEvidence([float(np.log10(v)) if np.isfinite(v) and v > 0 else np.nan
                                                    for v in ratios], seeds, " (log10)")))
    return rows


def robust_tables(inputs: Inputs, out: Rendered) -> dict[str, Table]:
    """Per run: PGD-10 accuracy at its best and its last epoch with 95% Wilson intervals
    (``robust_acc_best_last``), and the final epoch's mean and standard deviation over the training
    seeds in the cache (``seeds_final``; written only when some run has several seeds)."""
    robust_rows, seed_rows = [], []
    for run in inputs.runs.values():
        e, rob = history_series(run, "robust_acc")
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
    seeds = pd.DataFrame(seed_rows)
    return {"robust_acc_best_last": Table(pd.DataFrame(robust_rows), "PGD-10 accuracy (eps 8/255) per run: best and "
                                          f"last epoch, 95% Wilson intervals, profile {out.profile}, {out.dataset}"),
            "seeds_final": Table(seeds, "Final epoch over the seeds in the cache (mean, standard deviation), "
                                        f"profile {out.profile}, {out.dataset}", write=bool((seeds["n seeds"] > 1).any()))}


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


def robust_auc_by_seed(seed_evaluations) -> pd.DataFrame:
    """Per training seed of the Figure 9 run: how many correct test images are robust and not, their
    median ``||F_x||_F`` and :func:`robust_auc` (the statistic the claim tests over seeds)."""
    rows = []
    for run, ev in seed_evaluations:
        robust, nonrobust = robust_split(ev)
        rows.append({"seed": run.seed, "robust": len(robust), "not robust": len(nonrobust),
                     "median |F|_F robust": float(np.median(robust)) if len(robust) else np.nan,
                     "median |F|_F not robust": float(np.median(nonrobust)) if len(nonrobust) else np.nan,
                     "AUC P(robust < not robust)": robust_auc(ev)})
    return pd.DataFrame(rows)


def fisher_by_image(ev9: Mapping) -> pd.DataFrame:
    """The cached ``fig9`` evaluation, one row per test image: ``||F_x||_F``, clean and PGD correctness,
    and its group (correct and robust / correct, not robust / wrong)."""
    correct, robust = ev9["correct"].astype(bool), ev9["correct_pgd"].astype(bool)
    group = np.where(~correct, "wrong", np.where(robust, "correct and robust", "correct, not robust"))
    return pd.DataFrame({"|F|_F": ev9["frobenius"], "correct": correct, "correct under PGD": robust, "group": group})


def _mann_whitney_less(ev9: Mapping):
    fro_robust, fro_nonrobust = robust_split(ev9)
    both = len(fro_robust) > 0 and len(fro_nonrobust) > 0
    return sstats.mannwhitneyu(fro_robust, fro_nonrobust, alternative="less") if both else None


def figure9(inputs: Inputs, out: Rendered):
    """Figure 9: the distributions of ``||F_x||_F`` at correct robust and correct non-robust test images."""
    run9 = inputs.by_role("fig9_robust")
    ev9 = inputs.evaluation(run9, "fig9")
    fro_robust, fro_nonrobust = robust_split(ev9)
    mw_less = _mann_whitney_less(ev9)
    fig, axes = plotting.panels(1, width=plotting.PANEL[0] * 1.7)
    plotting.distributions(axes[0], {"correct and robust": fro_robust, "correct, not robust": fro_nonrobust},
                           xlabel=r"$\|F_x\|_F$ (nats per pixel unit$^2$)", log=True)
    axes[0].set_title(f"Figure 9: {run9.display_name}, PGD-{inputs.profile.evaluation.pgd_steps} at eps 8/255"
                      + ("" if mw_less is None else f"; Mann-Whitney p = {mw_less.pvalue:.2g} (one run)"))
    plotting.stamp(fig, out.dataset, out.profile, run9)
    return fig


def figure9_claims(inputs: Inputs, per_seed: pd.DataFrame) -> list[criteria.ClaimRow]:
    """Figure 9's claim (robust samples have the smaller Fisher norm), tested over seeds on the AUC."""
    run9 = inputs.by_role("fig9_robust")
    first = per_seed.iloc[0]
    mw_less = _mann_whitney_less(inputs.evaluation(run9, "fig9"))
    indicative = (f"seed {run9.seed}: median {first['median |F|_F robust']:.3g} vs {first['median |F|_F not robust']:.3g}, "
                  "one-sided Mann-Whitney p = " + ("n/a" if mw_less is None else f"{mw_less.pvalue:.2g}"))
    return [criteria.judge(
        "fig9_robust_smaller", context=f"n = {int(first['robust'])} robust, {int(first['not robust'])} non-robust (seed {run9.seed})",
        runs=[criteria.facts(r, "vgg13") for r, _ in inputs.seed_evaluations(run9, "fig9")],
        evidence=criteria.SeedEvidence(per_seed["AUC P(robust < not robust)"].tolist(), per_seed["seed"].tolist(),
                                       indicative=indicative))]


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


def eq12_check(inputs: Inputs, table: pd.DataFrame, out: Rendered) -> Table:
    """:func:`eq12_table` captioned as ``eq12_check``."""
    run9 = inputs.by_role("fig9_robust")
    ev12 = inputs.evaluation(run9, "eq12")
    return Table(table, f"Eq. 12 check on {len(ev12['correct'])} test points "
                        f"({int(ev12['correct'].sum())} correct), {run9.display_name}, profile "
                        f"{out.profile}; L2 rows: KL / (1/2 lambda_max eps^2); L-inf rows: KL_PGD / G1 "
                        "(q25, q75 of that ratio)")


def eq12_figure(inputs: Inputs, out: Rendered):
    """The eq. 12 figure: per radius, the worst-case KL over its quadratic prediction (median, IQR)."""
    run9 = inputs.by_role("fig9_robust")
    ev12 = inputs.evaluation(run9, "eq12")
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
    return fig


def eq12_claims(inputs: Inputs, table: pd.DataFrame) -> list[criteria.ClaimRow]:
    """The eq. 12 rows: the quadratic prediction at the smallest L2 radius, the PGD direction against the
    top eigenvector, and up to which radius the approximation holds (L2 and L-inf)."""
    ev12 = inputs.evaluation(inputs.by_role("fig9_robust"), "eq12")
    rows = []
    small = table[table["norm"] == "L2"].iloc[0]
    r_pgd, r_eig = small["median KL_PGD/(1/2 lam eps^2)"], small["median KL_eig/(1/2 lam eps^2)"]
    n_points = len(ev12["correct"])
    rows.append(criteria.judge("eq12_small_l2", f"KL_PGD / (1/2 lam eps^2) = {r_pgd:.3f}, KL_eig / (...) = {r_eig:.3f}",
                               f"medians over {n_points} points at eps = {small['eps']:g} (L2)",
                               evidence=criteria.ValuesEvidence([r_pgd, r_eig])))
    rows.append(criteria.judge("eq12_eigenvector", f"median |cos(eta_PGD, v)| = {small['median |cos(eta_PGD, v)|']:.3f}",
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
        rows.append(criteria.judge(f"eq12_sweep_{norm.lower()}", where,
                                   f"median KL_PGD over its quadratic prediction within {eq12_tolerance():.0%} of 1 "
                                   + ("(1/2 lambda_max eps^2)" if norm == "L2" else "(G1 at the same perturbation)")))
    return rows
