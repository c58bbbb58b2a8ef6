"""Notebook 01: Figure 1, Figure 2, Figure 6 and Theorem 3.1, from cached runs and evaluations.

- Figure 1: a cross-class pair's output distributions at initialisation and after training, and
  their KL (from the run's history, which records the pair's outputs every epoch, and the
  ``theorem`` evaluation, which holds the pair's images);
- Figure 2: test accuracy, test cross-entropy and exact CCKL per epoch (VGG13);
- Figure 6: CCKL against test loss with Pearson's r over epochs 1..end (ResNet20, CIFAR-10 and
  the optional CIFAR-100 run);
- Theorem 3.1: the per-pair inequality (appendix eq. 22, corrected) on random Dirichlet pairs
  and on the trained model's test pairs, and both sides of the dataset-level bound at
  initialisation and after training, with an alpha scan.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import metrics, plotting, runs, stats
from ..histories import table as history_table
from ..profiles import Profile
from . import criteria
from .inputs import Inputs, gather
from .result import Rendered, Table

NOTEBOOK = "01_theorem_check"
ROLES = ("fig2_standard", "fig6_cifar10", "fig6_cifar100")
OPTIONAL = ("fig6_cifar100",)
#: Random distributions of the per-pair check: Dirichlet concentrations and label-smoothing levels.
CONCENTRATIONS = (0.05, 0.3, 1.0, 5.0)
ALPHAS = (0.5, 0.8, 0.9, 0.99)
N_RANDOM_PAIRS = 4000
N_MODEL_PAIRS = 4000
ALPHA = 0.9
ALPHA_GRID = np.round(np.linspace(0.05, 0.995, 190), 4)


def render(profile: Profile, seed: int = 0) -> Rendered:
    """Every figure, table and claim of notebook 01 for ``profile`` (``seed``: the sampling seed), in the
    notebook's steps."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    vgg = inputs.seed_group(inputs.by_role("fig2_standard"))
    th = inputs.evaluation(vgg[0], "theorem")
    out = Rendered(NOTEBOOK, profile.name, vgg[0].dataset_name)
    fig1_outputs = pair_outputs(vgg[0])
    out.figures["fig1_output_distributions"] = figure1(vgg[0], th, fig1_outputs, profile.name)
    out.claims += figure1_claims(fig1_outputs)
    fig2_history = history_table(vgg, HISTORY_KEYS)
    fig2_trends = trends(fig2_history)
    out.figures["fig2_cckl_vgg13"] = figure2(vgg, profile.name)
    out.claims += figure2_claims(vgg, fig2_trends)
    fig6_runs = figure6_runs(inputs)
    fig6_trends = trends(history_table([r for group in fig6_runs.values() if isinstance(group, list) for r in group],
                                       HISTORY_KEYS))
    out.figures["fig6_cckl_vs_loss_resnet20"] = figure6(fig6_runs, fig6_trends, profile)
    out.claims += figure6_claims(fig6_runs, fig6_trends)
    pair_gaps = pair_inequality_gaps(th, seed)
    out.figures["theorem31_pair_slack"] = figure_pair_slack(pair_gaps, vgg[0], profile.name)
    out.claims += pair_claims(pair_gaps)
    terms, scan = bound_terms(*stage_log_probs(th))
    seed_bounds = bounds_by_seed(inputs.seed_evaluations(vgg[0], "theorem"))
    out.tables["theorem31_terms"] = terms_table(terms, th, vgg[0], profile.name)
    out.claims += bound_claims(terms, scan, seed_bounds, vgg)
    return out


def stage_log_probs(th) -> tuple[dict, torch.Tensor]:
    """The ``theorem`` evaluation's log-probabilities at initialisation and after training, and its labels."""
    logp = {stage: torch.log_softmax(torch.as_tensor(th[key]).double(), 1)
            for stage, key in [("initialisation", "logits_init"), ("after training", "logits_final")]}
    return logp, torch.as_tensor(th["labels"]).long()


# --------------------------------------------------------------------------- per-epoch histories
#: What Figures 2 and 6 read from a run's per-epoch record.
HISTORY_KEYS = ("test_acc", "test_ce", "cckl")


def trends(history: pd.DataFrame, from_epoch: int = 1) -> pd.DataFrame:
    """Per (run, training seed) of ``history``: the change of CCKL and of test accuracy from epoch
    ``from_epoch`` to the last epoch, and Pearson's r of test cross-entropy and CCKL over epochs
    ``from_epoch``..end (:func:`cckl_core.stats.pearson`; NaN where undefined). Epochs of one run are
    not independent samples: these are the per-seed statistics the claims test over seeds."""
    rows = []
    for (run, seed), h in history.groupby(["run", "seed"], sort=False):
        start = h[h["epoch"] == from_epoch]
        late = h[h["epoch"] >= from_epoch]
        rows.append({"run": run, "seed": seed,
                     "cckl change": float(h["cckl"].iloc[-1] - start["cckl"].iloc[0]) if len(start) else np.nan,
                     "accuracy change": float(h["test_acc"].iloc[-1] - start["test_acc"].iloc[0]) if len(start) else np.nan,
                     "r(test CE, CCKL)": stats.pearson(late["test_ce"].to_numpy(), late["cckl"].to_numpy())[0],
                     "epochs": int((np.isfinite(late["test_ce"]) & np.isfinite(late["cckl"])).sum())})
    return pd.DataFrame(rows, columns=["run", "seed", "cckl change", "accuracy change", "r(test CE, CCKL)", "epochs"])


def pair_outputs(run: runs.Run) -> pd.DataFrame:
    """The Figure 1 pair's recorded softmax outputs, one row per class: ``x1``/``x2`` at initialisation
    (epoch 0) and after training (the last epoch), from the run's per-epoch record."""
    h0, h_end = run.history[0], run.history[-1]
    p_init, p_trained = np.asarray(h0["pair_probs"], dtype=float), np.asarray(h_end["pair_probs"], dtype=float)
    return pd.DataFrame({"x1 init": p_init[0], "x2 init": p_init[1], "x1 trained": p_trained[0],
                         "x2 trained": p_trained[1]}, index=pd.Index(list(run.classes)[:p_init.shape[1]], name="class"))


def pair_kl(outputs: pd.DataFrame) -> dict[str, float]:
    """``KL(f(x1) || f(x2))`` in nats at initialisation and after training (:func:`cckl_core.metrics.kl`)."""
    return {stage: float(metrics.kl(torch.tensor(outputs[f"x1 {stage}"].to_numpy()),
                                    torch.tensor(outputs[f"x2 {stage}"].to_numpy()))) for stage in ("init", "trained")}


def figure1(run: runs.Run, th, outputs: pd.DataFrame, profile: str):
    """Figure 1: the pair's images and output distributions (:func:`cckl_core.plotting.output_distributions`)."""
    kl = pair_kl(outputs)
    fig, _ = plotting.output_distributions(th["pair_images"], th["pair_labels"],
                                           outputs[["x1 init", "x2 init"]].to_numpy().T,
                                           outputs[["x1 trained", "x2 trained"]].to_numpy().T, run.classes,
                                           kl["init"], kl["trained"], paper_kl=tuple(criteria.paper("fig1_kl")),
                                           title=f"Figure 1: output distributions of a cross-class pair ({run.display_name})")
    plotting.stamp(fig, run.dataset_name, profile, run)
    return fig


def figure1_claims(outputs: pd.DataFrame) -> list[criteria.ClaimRow]:
    """Figure 1's row: reported (one pair), not judged."""
    kl = pair_kl(outputs)
    return [criteria.judge("fig1_pair_kl", f"{kl['init']:.3g} -> {kl['trained']:.3g}",
                           "one fixed pair (first test images of classes 0 and 1); the paper's 0.053 at "
                           "initialisation depends on the initialisation: see figures/README.md")]


# --------------------------------------------------------------------------- Figure 2
def figure2(group: list[runs.Run], profile: str):
    """Figure 2: test accuracy, test cross-entropy and CCKL per epoch over the training seeds of ``group``."""
    fig, _ = plotting.history_figure([group], [("test_acc", "test accuracy"), ("test_ce", "test cross-entropy (nats)"),
                                               ("cckl", "CCKL (nats)")],
                                     title=f"Figure 2: {group[0].display_name}, test set per epoch")
    plotting.stamp(fig, group[0].dataset_name, profile, group[0])
    return fig


def figure2_claims(group: list[runs.Run], per_seed: pd.DataFrame) -> list[criteria.ClaimRow]:
    """Figure 2's claims, tested over the training seeds: CCKL rises (its change from epoch 1 to the
    last epoch) and falls with test cross-entropy (within-run Pearson r)."""
    seeds = per_seed["seed"].tolist()
    last = int(group[0].history[-1]["epoch"])
    scale = [criteria.facts(g, "vgg13") for g in group]
    acc = " / ".join(f"{v:+.3f}" for v in per_seed["accuracy change"])
    return [criteria.judge("fig2_cckl_acc", context=f"{group[0].display_name}, epochs 1..{last}; test accuracy change {acc}",
                           runs=scale, evidence=criteria.SeedEvidence(per_seed["cckl change"].tolist(), seeds, " nats")),
            criteria.judge("fig2_cckl_ce", context=f"{group[0].display_name}, epochs 1..{last}", runs=scale,
                           evidence=criteria.SeedEvidence(per_seed["r(test CE, CCKL)"].tolist(), seeds))]


# --------------------------------------------------------------------------- Figure 6
def figure6_runs(inputs: Inputs) -> dict[str, list[runs.Run] | str]:
    """Figure 6's runs by data set (``cifar10``, ``cifar100``): the training seeds of each, or, for the
    optional CIFAR-100 run where it is not in the cache, why (a sentence)."""
    out = {}
    for role, key in (("fig6_cifar10", "cifar10"), ("fig6_cifar100", "cifar100")):
        out[key] = inputs.absent_optional[role] if role in inputs.absent_optional else \
            inputs.seed_group(inputs.by_role(role))
    return out


def figure6(fig6_runs: dict, per_seed: pd.DataFrame, profile: Profile):
    """Figure 6: CCKL against test cross-entropy per epoch of each data set's first training seed, with its
    Pearson r from ``per_seed`` (:func:`trends`), one panel per data set (a sentence where absent)."""
    fig, axes = plotting.panels(2)
    paper_r = criteria.paper("fig6_r")
    for ax, (key, group) in zip(axes, fig6_runs.items()):
        if isinstance(group, str):
            plotting.skipped_panel(ax, f"{key.upper().replace('CIFAR', 'CIFAR-')}: not shown. {group}.",
                                   title=f"{profile.role('fig6_' + key)} ({key})")
            continue
        first = per_seed[(per_seed["run"] == group[0].name) & (per_seed["seed"] == group[0].seed)]
        plotting.cckl_vs_loss(ax, group[0], float(first["r(test CE, CCKL)"].iloc[0]),
                              title=f"{group[0].display_name} on {group[0].dataset_name}", paper_r=paper_r[key])
    fig.suptitle("Figure 6: CCKL against test cross-entropy over training")
    present = [g[0] for g in fig6_runs.values() if not isinstance(g, str)]
    plotting.stamp(fig, [g[0].dataset_name if not isinstance(g, str) else f"{k}: not in the cache"
                         for k, g in fig6_runs.items()], profile.name, present or "no model (not in the cache)")
    return fig


def figure6_claims(fig6_runs: dict, per_seed: pd.DataFrame) -> list[criteria.ClaimRow]:
    """Figure 6's claims, one per data set: Pearson's r of test CE and CCKL, tested over training seeds."""
    rows = []
    for key, group in fig6_runs.items():
        cid = f"fig6_{key}"
        if isinstance(group, str):
            rows.append(criteria.skipped(cid, "not in the cache", group))
            continue
        r = per_seed[per_seed["run"] == group[0].name]
        rows.append(criteria.judge(cid, context=f"Pearson r over epochs 1..end ({int(r['epochs'].iloc[0])} points) of {group[0].display_name}",
                                   runs=[criteria.facts(g, "resnet20x1") for g in group],
                                   evidence=criteria.SeedEvidence(r["r(test CE, CCKL)"].tolist(), r["seed"].tolist())))
    return rows


def random_pair_gaps(seed: int, k: int = 10, n: int = N_RANDOM_PAIRS) -> torch.Tensor:
    """lhs - rhs of the per-pair inequality on ``n`` random pairs: Dirichlet outputs (concentrations
    :data:`CONCENTRATIONS`, nearly one-hot to nearly uniform), random classes ``y_i != y_j`` and
    label-smoothing levels :data:`ALPHAS`."""
    rng = np.random.default_rng(seed)
    concentration = rng.choice(CONCENTRATIONS, size=(2, n, 1))
    gamma = rng.gamma(np.broadcast_to(concentration, (2, n, k)))
    probs = torch.tensor(gamma / gamma.sum(-1, keepdims=True)).clamp_min(1e-12)
    probs = probs / probs.sum(-1, keepdim=True)
    y_i = torch.tensor(rng.integers(0, k, n))
    y_j = (y_i + torch.tensor(rng.integers(1, k, n))) % k
    alphas = torch.tensor(rng.choice(ALPHAS, size=n))
    gaps = torch.empty(n, dtype=torch.float64)
    for alpha in alphas.unique().tolist():
        sel = alphas == alpha
        lhs, rhs = metrics.pair_inequality_sides(probs[0][sel], probs[1][sel], metrics.smooth_labels(y_i[sel], k, alpha),
                                                 metrics.smooth_labels(y_j[sel], k, alpha))
        gaps[sel] = lhs - rhs
    return gaps


def model_pair_gaps(probs: torch.Tensor, labels: torch.Tensor, seed: int, n: int = N_MODEL_PAIRS,
                    alpha: float = ALPHA) -> torch.Tensor:
    """lhs - rhs of the per-pair inequality on ``n`` sampled cross-class pairs of a model's test outputs."""
    k = probs.shape[1]
    pi, pj = metrics.sample_cross_pairs(labels, n, seed=seed)
    lhs, rhs = metrics.pair_inequality_sides(probs[pi], probs[pj], metrics.smooth_labels(labels[pi], k, alpha),
                                             metrics.smooth_labels(labels[pj], k, alpha))
    return lhs - rhs


def pair_inequality_gaps(th, seed: int) -> pd.DataFrame:
    """lhs - rhs of the per-pair inequality, one row per pair: :data:`N_RANDOM_PAIRS` random Dirichlet
    pairs (:func:`random_pair_gaps`) and :data:`N_MODEL_PAIRS` cross-class pairs of the trained model's
    cached test outputs (:func:`model_pair_gaps`, label smoothing :data:`ALPHA`)."""
    logp, labels = stage_log_probs(th)
    gap_random = random_pair_gaps(seed)
    gap_model = model_pair_gaps(logp["after training"].exp(), labels, seed)
    return pd.DataFrame({"pairs": ["random Dirichlet"] * len(gap_random) + ["model test pairs"] * len(gap_model),
                         "lhs - rhs": torch.cat([gap_random, gap_model]).numpy()})


def figure_pair_slack(gaps: pd.DataFrame, run: runs.Run, profile: str):
    """The slack ``rhs - lhs`` of every pair (empirical CDF, log scale): Theorem 3.1 holds where it is >= 0."""
    fig, axes = plotting.panels(1, width=plotting.PANEL[0] * 1.6)
    slack = {("random Dirichlet pairs" if k == "random Dirichlet" else f"{run.display_name} test pairs"):
             -g["lhs - rhs"].to_numpy() for k, g in gaps.groupby("pairs", sort=False)}
    plotting.distributions(axes[0], slack, xlabel="slack rhs - lhs of the per-pair inequality (nats)", log=True,
                           kind="ecdf")
    axes[0].set_title("Theorem 3.1, per pair: rhs - lhs >= 0")
    plotting.stamp(fig, ["random distributions", run.dataset_name], profile, run)
    return fig


def pair_claims(gaps: pd.DataFrame) -> list[criteria.ClaimRow]:
    """The per-pair inequality's row: it holds when no pair has ``lhs > rhs``."""
    worst = float(gaps["lhs - rhs"].max())
    n = gaps["pairs"].value_counts()
    return [criteria.judge("thm31_pair", f"max(lhs - rhs) = {worst:.3g}", evidence=criteria.ValueEvidence(worst),
                           context=f"{n.get('random Dirichlet', 0)} random pairs (alpha 0.5-0.99) + "
                                   f"{n.get('model test pairs', 0)} model test pairs (alpha {ALPHA})")]


def bound_terms(logp: dict, labels: torch.Tensor) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Theorem 3.1 terms at alpha 0.9 per stage (with exact CCKL and test accuracy), and the
    bounds over :data:`ALPHA_GRID`."""
    rows, scan = [], []
    for stage, lp in logp.items():
        terms = metrics.theorem_terms(lp.exp(), labels, alpha=ALPHA)
        terms["cckl_exact"] = metrics.cckl(lp.exp(), labels, log_probs=lp)
        rows.append({"stage": stage, "test_acc": float((lp.argmax(1) == labels).double().mean()), **terms})
        for a in ALPHA_GRID:
            t = metrics.theorem_terms(lp.exp(), labels, alpha=float(a))
            scan.append({"stage": stage, "alpha": float(a), "bound": t["bound"], "bound_pair": t["bound_pair"],
                         "cckl": t["cckl"]})
    return pd.DataFrame(rows).set_index("stage"), pd.DataFrame(scan)


def terms_table(terms: pd.DataFrame, th, run: runs.Run, profile: str) -> Table:
    """The Theorem 3.1 terms as the table written to ``theorem31_terms``."""
    return Table(terms, f"Theorem 3.1 terms (nats, alpha {ALPHA}), {run.display_name} on {run.dataset_name} "
                        f"({len(th['labels'])} test images), profile {profile}")


def bounds_by_seed(seed_evaluations) -> pd.DataFrame:
    """Per training seed: the plain-mean bound at :data:`ALPHA` at initialisation and after training
    (:func:`plain_bounds` of each seed's ``theorem`` evaluation) and its rise."""
    rows = [{"seed": r.seed, **dict(zip(("bound init", "bound trained"), plain_bounds(ev)))} for r, ev in seed_evaluations]
    frame = pd.DataFrame(rows, columns=["seed", "bound init", "bound trained"])
    frame["rise"] = frame["bound trained"] - frame["bound init"]
    return frame


def bound_claims(terms: pd.DataFrame, scan: pd.DataFrame, seed_bounds: pd.DataFrame,
                 group: list[runs.Run]) -> list[criteria.ClaimRow]:
    """The dataset-level bound's rows: CCKL >= bound at each stage (plain and pair-weighted means; not
    informative where the bound is negative), and the bound's rise with training over seeds."""
    rows = []
    for stage, sid in (("initialisation", "init"), ("after training", "trained")):
        row, part = terms.loc[stage], scan[scan["stage"] == stage]
        for col, kind in (("bound", "plain"), ("bound_pair", "pair")):
            positive = part[part[col] > 0]["alpha"]
            where = (f"positive for alpha in [{positive.min():.3g}, {positive.max():.3g}]" if len(positive) else
                     f"negative for every alpha in [0.05, 0.995] (max {part[col].max():.3g} at alpha "
                     f"{part.loc[part[col].idxmax(), 'alpha']:.3g})")
            rows.append(criteria.judge(f"thm31_bound_{sid}_{kind}", f"CCKL {row['cckl']:.4g} vs bound {row[col]:.4g}",
                                       f"alpha {ALPHA}; the bound is {where}",
                                       evidence=criteria.BoundEvidence(row["cckl"], row[col])))
    seeds = seed_bounds["seed"].tolist()
    informative = bool((seed_bounds[["bound init", "bound trained"]] > 0).to_numpy().any())
    shown = " / ".join(f"{a:.4g} -> {b:.4g}" for a, b in zip(seed_bounds["bound init"], seed_bounds["bound trained"]))
    rows.append(criteria.judge(
        "thm31_bound_rises", "bound at init -> after training: " + shown, f"alpha {ALPHA}, training seeds {seeds}",
        runs=[criteria.facts(r, "vgg13") for r in group],
        evidence=criteria.SeedEvidence(seed_bounds["rise"].tolist(), seeds, " nats",
                                       not_informative="" if informative else "the bound is <= 0 at initialisation and "
                                       "after training for every seed, so it bounds nothing and its rise cannot support "
                                       "the claim")))
    return rows


def plain_bounds(th) -> tuple[float, float]:
    """The Theorem 3.1 bound with plain means at :data:`ALPHA`, at initialisation and after training, of one
    ``theorem`` evaluation."""
    logp, labels = stage_log_probs(th)
    return tuple(float(metrics.theorem_terms(lp.exp(), labels, alpha=ALPHA)["bound"]) for lp in logp.values())
