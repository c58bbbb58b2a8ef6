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
    """Every figure, table and claim of notebook 01 for ``profile`` (``seed``: the sampling seed)."""
    inputs = gather(profile, ROLES, OPTIONAL, seed, NOTEBOOK)
    run2 = inputs.by_role("fig2_standard")
    out = Rendered(NOTEBOOK, profile.name, run2.dataset_name)
    th = inputs.evaluation(run2, "theorem")
    _figure1(out, run2, th)
    _figure2(out, inputs, run2)
    _figure6(out, inputs)
    logp, labels = stage_log_probs(th)
    _pair_inequality(out, run2, logp, labels, seed)
    _dataset_bound(out, inputs, run2, logp, labels)
    return out


def stage_log_probs(th) -> tuple[dict, torch.Tensor]:
    """The ``theorem`` evaluation's log-probabilities at initialisation and after training, and its labels."""
    logp = {stage: torch.log_softmax(torch.as_tensor(th[key]).double(), 1)
            for stage, key in [("initialisation", "logits_init"), ("after training", "logits_final")]}
    return logp, torch.as_tensor(th["labels"]).long()


def change(run: runs.Run, key: str, start: int = 1) -> float:
    """``history[key]`` at the last epoch minus at epoch ``start`` (default 1, the first trained epoch)."""
    epochs, values = plotting.history_series(run, key)
    return float(values[-1] - values[epochs == start][0]) if np.any(epochs == start) else float("nan")


def within_run_pearson(run: runs.Run, x_key: str, y_key: str, from_epoch: int = 1) -> float:
    """Pearson's r of two history series over epochs ``from_epoch``..end of one run (NaN where undefined)."""
    epochs, x = plotting.history_series(run, x_key)
    _, y = plotting.history_series(run, y_key)
    return stats.pearson(x[epochs >= from_epoch], y[epochs >= from_epoch])[0]


def pair_kls(run: runs.Run) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The Figure 1 pair's outputs at initialisation and after training, and KL(f(x1)||f(x2)) of each."""
    h0, h_end = run.history[0], run.history[-1]
    p_init = torch.tensor(h0["pair_probs"], dtype=torch.float64)
    p_trained = torch.tensor(h_end["pair_probs"], dtype=torch.float64)
    return p_init, p_trained, float(metrics.kl(p_init[0], p_init[1])), float(metrics.kl(p_trained[0], p_trained[1]))


def _figure1(out: Rendered, run2, th) -> None:
    p_init, p_trained, kl_init, kl_trained = pair_kls(run2)
    paper_kl = tuple(criteria.paper("fig1_kl"))
    fig, _ = plotting.output_distributions(th["pair_images"], th["pair_labels"], p_init, p_trained, run2.classes,
                                           kl_init, kl_trained, paper_kl=paper_kl,
                                           title=f"Figure 1: output distributions of a cross-class pair ({run2.display_name})")
    plotting.stamp(fig, run2.dataset_name, out.profile, run2)
    out.figures["fig1_output_distributions"] = fig
    h0 = run2.history[0]
    out.text["fig1"] = (f"{run2.display_name} on {run2.dataset_name}: {len(run2.history) - 1} epochs, final test acc "
                        f"{run2.history[-1]['test_acc']:.4f}. Pair: test positions {h0['pair_index']}, classes "
                        f"{[run2.classes[int(c)] for c in th['pair_labels']]}. KL(f_init(x1)||f_init(x2)) = "
                        f"{kl_init:.4g} nats (paper {paper_kl[0]}); KL(f_trained(x1)||f_trained(x2)) = "
                        f"{kl_trained:.4f} nats (paper {paper_kl[1]}).")
    out.claims.append(criteria.judge("fig1_pair_kl", f"{kl_init:.3g} -> {kl_trained:.3g}",
                                     "one fixed pair (first test images of classes 0 and 1); the paper's 0.053 at "
                                     "initialisation depends on the initialisation: see figures/README.md"))


def _figure2(out: Rendered, inputs: Inputs, run2) -> None:
    group = inputs.seed_group(run2)
    fig, _ = plotting.history_figure([group], [("test_acc", "test accuracy"), ("test_ce", "test cross-entropy (nats)"),
                                               ("cckl", "CCKL (nats)")],
                                     title=f"Figure 2: {run2.display_name}, test set per epoch")
    plotting.stamp(fig, run2.dataset_name, out.profile, run2)
    out.figures["fig2_cckl_vgg13"] = fig
    seeds = [g.seed for g in group]
    d_cckl = [change(g, "cckl") for g in group]
    d_acc = [change(g, "test_acc") for g in group]
    r_ce = [within_run_pearson(g, "test_ce", "cckl") for g in group]
    last = int(run2.history[-1]["epoch"])
    out.text["fig2"] = (f"epochs 1..{last}, training seeds {seeds}: CCKL change " + " / ".join(f"{v:+.3g}" for v in d_cckl)
                        + " nats, test accuracy change " + " / ".join(f"{v:+.3f}" for v in d_acc)
                        + "; Pearson r(CCKL, test CE) " + " / ".join(f"{v:.3f}" for v in r_ce))
    scale = [criteria.facts(g, "vgg13") for g in group]
    context = f"{run2.display_name}, epochs 1..{last}; test accuracy change " + " / ".join(f"{v:+.3f}" for v in d_acc)
    out.claims.append(criteria.judge("fig2_cckl_acc", context=context, runs=scale,
                                     evidence=criteria.SeedEvidence(d_cckl, seeds, " nats")))
    out.claims.append(criteria.judge("fig2_cckl_ce", context=f"{run2.display_name}, epochs 1..{last}", runs=scale,
                                     evidence=criteria.SeedEvidence(r_ce, seeds)))


def _figure6(out: Rendered, inputs: Inputs) -> None:
    profile = inputs.profile
    fig, axes = plotting.panels(2)
    datasets, models = [], []
    paper_r = criteria.paper("fig6_r")
    for ax, role, key in zip(axes, ["fig6_cifar10", "fig6_cifar100"], ["cifar10", "cifar100"]):
        cid = f"fig6_{key}"
        if role in inputs.absent_optional:
            why = inputs.absent_optional[role]
            plotting.skipped_panel(ax, f"{key.upper().replace('CIFAR', 'CIFAR-')}: not shown. {why}.",
                                   title=f"{profile.role(role)} ({key})")
            datasets.append(f"{key}: not in the cache")
            out.claims.append(criteria.skipped(cid, "not in the cache", why))
            out.text[cid] = why
            continue
        run6 = inputs.by_role(role)
        res = plotting.cckl_vs_loss(ax, run6, title=f"{run6.display_name} on {run6.dataset_name}", paper_r=paper_r[key])
        datasets.append(run6.dataset_name)
        models.append(run6)
        group = inputs.seed_group(run6)
        r_seeds = [within_run_pearson(g, "test_ce", "cckl") for g in group]
        out.text[cid] = (f"{role}: {run6.display_name} on {run6.dataset_name}: Pearson r = {res['r']:.4f} over "
                         f"{res['n']} epochs (paper {paper_r[key]}); training seeds {[g.seed for g in group]}: r = "
                         + " / ".join(f"{r:.3f}" for r in r_seeds))
        context = f"Pearson r over epochs 1..end ({res['n']} points) of {run6.display_name}"
        out.claims.append(criteria.judge(cid, context=context, runs=[criteria.facts(g, "resnet20x1") for g in group],
                                         evidence=criteria.SeedEvidence(r_seeds, [g.seed for g in group])))
    fig.suptitle("Figure 6: CCKL against test cross-entropy over training")
    plotting.stamp(fig, datasets, profile.name, models or "no model (not in the cache)")
    out.figures["fig6_cckl_vs_loss_resnet20"] = fig


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


def _pair_inequality(out: Rendered, run2, logp: dict, labels: torch.Tensor, seed: int) -> None:
    gap_random = random_pair_gaps(seed)
    gap_model = model_pair_gaps(logp["after training"].exp(), labels, seed)
    out.text["thm31_pair"] = (f"random pairs: {len(gap_random)}, max(lhs - rhs) = {gap_random.max().item():.3e} nats; "
                              f"model pairs ({run2.display_name}, alpha {ALPHA}): {len(gap_model)}, max(lhs - rhs) = "
                              f"{gap_model.max().item():.3e} nats")
    fig, axes = plotting.panels(1, width=plotting.PANEL[0] * 1.6)
    plotting.distributions(axes[0], {"random Dirichlet pairs": (-gap_random).numpy(),
                                     f"{run2.display_name} test pairs": (-gap_model).numpy()},
                           xlabel="slack rhs - lhs of the per-pair inequality (nats)", log=True, kind="ecdf")
    axes[0].set_title("Theorem 3.1, per pair: rhs - lhs >= 0")
    plotting.stamp(fig, ["random distributions", run2.dataset_name], out.profile, run2)
    out.figures["theorem31_pair_slack"] = fig
    worst = max(gap_random.max().item(), gap_model.max().item())
    out.claims.append(criteria.judge("thm31_pair", f"max(lhs - rhs) = {worst:.3g}", evidence=criteria.ValueEvidence(worst),
                                     context=f"{len(gap_random)} random pairs (alpha 0.5-0.99) + {len(gap_model)} model "
                                             f"test pairs (alpha {ALPHA})"))


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


def _dataset_bound(out: Rendered, inputs: Inputs, run2, logp: dict, labels: torch.Tensor) -> None:
    theorem, scan = bound_terms(logp, labels)
    out.tables["theorem31_terms"] = Table(theorem, f"Theorem 3.1 terms (nats, alpha {ALPHA}), {run2.display_name} on "
                                                   f"{run2.dataset_name} ({len(labels)} test images), profile {out.profile}")
    for stage, sid in (("initialisation", "init"), ("after training", "trained")):
        row = theorem.loc[stage]
        part = scan[scan["stage"] == stage]
        for col, kind in (("bound", "plain"), ("bound_pair", "pair")):
            positive = part[part[col] > 0]["alpha"]
            where = (f"positive for alpha in [{positive.min():.3g}, {positive.max():.3g}]" if len(positive) else
                     f"negative for every alpha in [0.05, 0.995] (max {part[col].max():.3g} at alpha "
                     f"{part.loc[part[col].idxmax(), 'alpha']:.3g})")
            out.claims.append(criteria.judge(f"thm31_bound_{sid}_{kind}", f"CCKL {row['cckl']:.4g} vs bound {row[col]:.4g}",
                                             f"alpha {ALPHA}; the bound is {where}",
                                             evidence=criteria.BoundEvidence(row["cckl"], row[col])))
    bounds = {r.seed: plain_bounds(ev) for r, ev in inputs.seed_evaluations(run2, "theorem")}
    seeds = list(bounds)
    positive = [b for pair in bounds.values() for b in pair if b > 0]
    out.claims.append(criteria.judge(
        "thm31_bound_rises", "bound at init -> after training: " + " / ".join(f"{a:.4g} -> {b:.4g}" for a, b in bounds.values()),
        f"alpha {ALPHA}, training seeds {seeds}", runs=[criteria.facts(r, "vgg13") for r in inputs.seed_group(run2)],
        evidence=criteria.SeedEvidence([b - a for a, b in bounds.values()], seeds, " nats",
                                       not_informative="" if positive else "the bound is <= 0 at initialisation and after "
                                       "training for every seed, so it bounds nothing and its rise cannot support the claim")))


def plain_bounds(th) -> tuple[float, float]:
    """The Theorem 3.1 bound with plain means at :data:`ALPHA`, at initialisation and after training, of one
    ``theorem`` evaluation."""
    logp, labels = stage_log_probs(th)
    return tuple(float(metrics.theorem_terms(lp.exp(), labels, alpha=ALPHA)["bound"]) for lp in logp.values())
