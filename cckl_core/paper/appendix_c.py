"""Notebook 04: appendix C, Table 2: how well the Fisher term G1 approximates the KL.

For a test point ``x`` and its KL-PGD perturbation ``eta`` in the L-inf ball of radius eps (the
TRADES inner maximisation), the relative error ``|KL(f(x)||f(x+eta)) - G1| / KL`` with
``G1 = 1/2 eta^T F_x eta``, averaged over the ``table2`` evaluation's test points, for eps =
1/255 ... 8/255, with 95% bootstrap intervals (the same points at every eps, so the rise is paired).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .. import plotting, stats
from ..profiles import Profile
from . import criteria
from .inputs import Inputs, gather
from .result import Rendered, Table

NOTEBOOK = "04_appendix_c_table"
ROLES = ("table2",)
OPTIONAL: tuple[str, ...] = ()
#: A KL below this (nats) is treated as zero: its relative error is undefined.
KL_FLOOR = 1e-15


def relative_errors(kl: np.ndarray, g1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|KL - G1| / KL`` per (eps, point), NaN where KL <= :data:`KL_FLOOR`; and that mask's complement."""
    positive = kl > KL_FLOOR
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(positive, np.abs(kl - g1) / np.where(positive, kl, 1.0), np.nan)
    return rel, positive


def mean_errors(ev: Mapping) -> np.ndarray:
    """Mean ``|KL - G1| / KL`` per eps over the points of one ``table2`` evaluation (points with KL = 0 left out)."""
    rel, _ = relative_errors(ev["kl"], ev["g1"])
    return np.nanmean(rel, axis=1)


def table2_frame(ev: Mapping, n_boot: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Per eps: the paper's and our mean relative error (with its bootstrap interval), our median,
    mean KL and G1, and how many points have KL > 0; and the per-point relative errors."""
    kl, g1, eps_k = ev["kl"], ev["g1"], [int(k) for k in ev["eps_255"]]
    rel, positive = relative_errors(kl, g1)
    ci = [stats.bootstrap_ci(r[np.isfinite(r)], np.mean, n_boot=n_boot, seed=seed) for r in rel]
    frame = pd.DataFrame({"eps": [f"{k}/255" for k in eps_k], "paper mean |KL-G1|/KL": criteria.paper("table2"),
                          "ours mean |KL-G1|/KL": np.nanmean(rel, axis=1),
                          "ci_lo": [c["lo"] for c in ci], "ci_hi": [c["hi"] for c in ci],
                          "ours median |KL-G1|/KL": np.nanmedian(rel, axis=1),
                          "ours mean KL (nats)": kl.mean(1), "ours mean G1 (nats)": g1.mean(1),
                          "points with KL > 0": positive.sum(1)})
    return frame, rel


def render(profile: Profile, seed: int = 0) -> Rendered:
    """Table 2, its figure and its two claims for ``profile`` (``seed``: the bootstrap's seed), in the
    notebook's steps."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    out = Rendered(NOTEBOOK, profile.name, inputs.dataset_name(ROLES[0]))
    run = inputs.by_role("table2")
    table2, rel = table2_frame(inputs.evaluation(run, "table2"), int(profile.evaluation.n_boot), seed)
    curves = errors_by_seed(inputs.seed_evaluations(run, "table2"))
    out.tables["table2_kl_vs_g1"] = table2_table(inputs, table2, out)
    out.figures["table2_kl_vs_g1"] = table2_figure(inputs, table2, out)
    out.claims += table2_claims(inputs, table2, rel, curves, seed)
    return out


def points(ev: Mapping) -> pd.DataFrame:
    """The cached ``table2`` evaluation, one row per (eps, test point): KL, G1 and ``|KL - G1| / KL``."""
    rel, _ = relative_errors(ev["kl"], ev["g1"])
    n = ev["kl"].shape[1]
    return pd.DataFrame({"eps x 255": np.repeat([int(k) for k in ev["eps_255"]], n), "point": np.tile(np.arange(n), len(rel)),
                         "KL": np.asarray(ev["kl"]).ravel(), "G1": np.asarray(ev["g1"]).ravel(), "|KL-G1|/KL": rel.ravel()})


def errors_by_seed(seed_evaluations) -> pd.DataFrame:
    """Mean ``|KL - G1| / KL`` per eps (columns, x 1/255) for each training seed (rows): :func:`mean_errors`."""
    rows = {r.seed: mean_errors(ev) for r, ev in seed_evaluations}
    eps = [int(k) for k in seed_evaluations[0][1]["eps_255"]]
    return pd.DataFrame.from_dict(rows, orient="index", columns=eps).rename_axis(index="seed", columns="eps x 255")


def table2_table(inputs: Inputs, table2: pd.DataFrame, out: Rendered) -> Table:
    """:func:`table2_frame` captioned as ``table2_kl_vs_g1``."""
    run = inputs.by_role("table2")
    n_points = inputs.evaluation(run, "table2")["kl"].shape[1]
    return Table(table2, "Table 2: relative error of G1 = 1/2 eta^T F_x eta against KL(f(x)||f(x+eta)), eta = KL-PGD (10 "
                         f"steps of eps/4) in the L-inf ball, with 95% bootstrap intervals of the mean; {run.display_name}, "
                         f"{n_points} test images of {run.dataset_name}, profile {out.profile}")


def table2_figure(inputs: Inputs, table2: pd.DataFrame, out: Rendered):
    """Table 2 as lines beside the paper's, and KL against G1 per point."""
    run = inputs.by_role("table2")
    ev = inputs.evaluation(run, "table2")
    n_points, eps_k = ev["kl"].shape[1], [int(k) for k in ev["eps_255"]]
    fig, axes = plotting.panels(2)
    plotting.paper_vs_measured_lines(axes[0], eps_k, {"ours (mean)": table2["ours mean |KL-G1|/KL"],
                                                      "ours (median)": table2["ours median |KL-G1|/KL"]},
                                     paper=criteria.paper("table2"), xticklabels=[str(k) for k in eps_k],
                                     xlabel=r"L-inf budget $\epsilon$ (x 1/255)", ylabel="|KL - G1| / KL")
    axes[0].fill_between(eps_k, table2["ci_lo"], table2["ci_hi"], alpha=0.2, lw=0)
    axes[0].set_title("Table 2: relative error of the Fisher term")
    plotting.scatter_diagonal(axes[1], ev["g1"], ev["kl"], hue=np.repeat(eps_k, n_points).reshape(len(eps_k), -1),
                              hue_label="eps x 255", xlabel=r"G1 = $\frac{1}{2}\eta^T F_x \eta$ (nats)",
                              ylabel=r"KL$(f(x)\|f(x+\eta))$ (nats)")
    axes[1].set_title("per point")
    plotting.stamp(fig, run.dataset_name, out.profile, run)
    return fig



def table2_claims(inputs: Inputs, table2: pd.DataFrame, rel: np.ndarray, curves: pd.DataFrame,
                  seed: int) -> list[criteria.ClaimRow]:
    """Table 2's claims over training seeds: the error rises with eps (the per-seed rise 8/255 - 1/255,
    blocked unless the seed-mean curve rises at every step), and the Fisher term dominates up to 8/255
    (per-seed mean error at 8/255 below 0.3)."""
    run = inputs.by_role("table2")
    n_points = rel.shape[1]
    n_boot = int(inputs.profile.evaluation.n_boot)
    ours = table2["ours mean |KL-G1|/KL"].to_numpy()
    both = np.isfinite(rel[0]) & np.isfinite(rel[-1])
    rise = stats.bootstrap_diff(rel[0][both], rel[-1][both], np.mean, n_boot=n_boot, seed=seed, paired=True)
    seeds, values = curves.index.tolist(), curves.to_numpy()
    mean_curve = values.mean(axis=0)
    monotone = bool(np.all(np.diff(mean_curve) > 0))
    scale = [criteria.facts(r, "vgg13") for r, _ in inputs.seed_evaluations(run, "table2")]
    shown = "seed-mean curve " + " ".join(f"{v:.3f}" for v in mean_curve)
    return [criteria.judge(
        "table2_rises", shown, f"mean over {n_points} test points, training seeds {seeds}", runs=scale,
        evidence=criteria.SeedEvidence(values[:, -1] - values[:, 0], seeds,
                                       blocked="" if monotone else "the seed-mean curve is not strictly increasing",
                                       indicative=f"seed {run.seed}: 8/255 - 1/255 = {rise['diff']:.3f} "
                                                  f"[{rise['lo']:.3f}, {rise['hi']:.3f}] (bootstrap over test points)")),
            criteria.judge(
        "table2_fisher_dominates", context=f"seed {run.seed}: {ours[-1]:.3f} [{table2['ci_lo'].iloc[-1]:.3f}, "
                                           f"{table2['ci_hi'].iloc[-1]:.3f}] (bootstrap over test points)", runs=scale,
        evidence=criteria.SeedEvidence(values[:, -1], seeds))]
