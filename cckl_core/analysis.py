"""The paper's analysis of any classifier in one call: :func:`analyze`.

For a model that returns logits and test images in [0, 1] with their labels, :func:`analyze` computes
what the paper measures, each by the tested function that computes it in the notebooks:

- accuracy, exact CCKL (:func:`cckl_core.metrics.cckl`), the Theorem 3.1 terms at label smoothing
  ``alpha`` (:func:`cckl_core.metrics.theorem_terms`);
- the input-space Fisher information at the images: mean and median of ``||F_x||_F`` and of
  ``||F_x||_2 = lambda_max(F_x)`` (:func:`cckl_core.fisher.fisher_stats`);
- over sampled cross-class pairs, ``KL(f(x_i)||f(x_j)) = G1 + G2`` (:func:`cckl_core.fisher.kl_g1_g2`);
- accuracy under L-inf PGD-k and CW-k at eps (Table 1's attacks, :func:`cckl_core.record.robust_correct`;
  an image counts as robust only if it is also correct when clean).

A model ending in Softmax or LogSoftmax, or one whose outputs are (log-)probabilities, is refused
(:func:`cckl_core.checks.logits`). It returns an :class:`Analysis`: ``table`` (a tidy frame: quantity, value, unit, what it is) and
``summary`` (a few lines). The model is put in eval mode and given back in the mode it came in.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from . import attacks, checks, fisher, metrics
from .models import eval_mode
from .record import robust_correct


@dataclass
class Analysis:
    """What :func:`analyze` found: ``table`` (quantity, value, unit, note) and ``summary`` (text)."""

    table: pd.DataFrame
    summary: str

    def value(self, quantity: str) -> float:
        """The value of ``quantity`` (a row of :attr:`table`)."""
        rows = self.table[self.table["quantity"] == quantity]
        if rows.empty:
            raise KeyError(f"no quantity {quantity!r}; the quantities: {', '.join(self.table['quantity'])}")
        return float(rows["value"].iloc[0])

    def _repr_html_(self) -> str:  # a notebook shows the table
        return self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}")

    def __str__(self) -> str:
        return self.summary


def analyze(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, n_pairs: int = 500, eps: float = 8 / 255,
            steps: int = 20, alpha: float = 0.9, seed: int = 0, attack: bool = True) -> Analysis:
    """The paper's analysis of ``model`` on ``images`` (N, C, H, W) in [0, 1] and integer ``labels`` (N,):
    accuracy, exact CCKL, the Theorem 3.1 terms at label smoothing ``alpha``, Fisher norms at the images,
    G1 and G2 over ``n_pairs`` sampled cross-class pairs (``seed``), and PGD-``steps`` / CW-``steps``
    accuracy at L-inf ``eps`` (step eps/4; skipped with ``attack=False``). The model must return logits."""
    model = checks.module(model)
    checks.images(model, images, "images")
    y = checks.labels(labels, n=len(images), name="labels").long().to(images.device)
    checks.count(n_pairs, "n_pairs")
    checks.count(steps, "steps")
    eps = checks.number(eps, "eps", 0.0, 1.0)
    with eval_mode(model):
        with torch.no_grad():
            logits = model(images)
        checks.logits(model, logits)
        if len(torch.unique(y)) < 2:
            raise ValueError("labels hold one class only: CCKL and cross-class pairs need at least two classes")
        logp = torch.log_softmax(logits.double(), 1)
        probs = logp.exp()
        rows = [("accuracy", float((logits.argmax(1) == y).double().mean()), "fraction", f"{len(y)} images")]
        rows.append(("CCKL", metrics.cckl(probs, y, log_probs=logp), "nats",
                     "exact mean KL(f(x_i)||f(x_j)) over every ordered pair of different classes"))
        terms = metrics.theorem_terms(probs, y, alpha=alpha)
        for key, note in (("js", "E[JS(y_i||y_j)] of the smoothed labels"), ("L", "E[KL(y||f(x))]"),
                          ("coL", "E[KL(f(x)||y)]"), ("bound", "E[JS] - L - coL (plain means)"),
                          ("bound_pair", "the bound with pair-weighted L and coL")):
            if key in terms:
                rows.append((f"Theorem 3.1 {key}", float(terms[key]), "nats", f"{note}, alpha {alpha:g}"))
        fs = fisher.fisher_stats(model, images)
        for key, name in (("frobenius", "||F_x||_F"), ("spectral", "||F_x||_2")):
            v = fs[key].double()
            rows.append((f"mean {name}", float(v.mean()), "nats / pixel unit^2", f"over the {len(v)} images"))
            rows.append((f"median {name}", float(v.median()), "nats / pixel unit^2", f"over the {len(v)} images"))
        i, j = metrics.sample_cross_pairs(y, n_pairs, seed=seed)
        n_pairs_drawn = len(i)
        kg = fisher.kl_g1_g2(model, images[i], images[j])
        kl, g1 = kg["kl"].double(), kg["g1"].double()
        g2 = kl - g1
        rows += [("mean KL over pairs", float(kl.mean()), "nats", f"{len(i)} cross-class pairs (seed {seed})"),
                 ("mean G1 over pairs", float(g1.mean()), "nats", "1/2 (x_j - x_i)^T F_{x_i} (x_j - x_i)"),
                 ("mean G2 over pairs", float(g2.mean()), "nats", "KL - G1"),
                 ("G2 share (ratio of means)", float(g2.sum() / kl.sum()), "fraction", "mean G2 / mean KL"),
                 ("share of pairs with G2 < 0", float((g2 < 0).double().mean()), "fraction", "G1 > KL")]
        if attack:
            clean = logits.argmax(1) == y
            for spec, name in ((attacks.PGD20, "PGD"), (attacks.CW20, "CW")):  # Table 1's attacks, at eps
                robust = robust_correct(model, images, y, {**spec, "eps": eps, "step": eps / 4, "steps": steps}) \
                    & clean.cpu()
                rows.append((f"{name}-{steps} accuracy", float(robust.double().mean()), "fraction",
                             f"L-inf eps {eps * 255:.3g}/255, step eps/4, no random start; robust only if also correct "
                             "when clean"))
    table = pd.DataFrame(rows, columns=["quantity", "value", "unit", "note"])
    return Analysis(table, _summary(table, len(y), n_pairs_drawn, steps if attack else None, eps))


def _summary(table: pd.DataFrame, n_images: int, n_pairs: int, steps: int | None, eps: float) -> str:
    """A few lines of :func:`analyze`'s table (``steps`` None: no attack was run)."""
    get = dict(zip(table["quantity"], table["value"]))
    lines = [f"accuracy {get['accuracy']:.3f}, CCKL {get['CCKL']:.4g} nats on {n_images} images",
             f"mean ||F_x||_F {get['mean ||F_x||_F']:.4g}, mean ||F_x||_2 {get['mean ||F_x||_2']:.4g}",
             f"over {n_pairs} cross-class pairs: KL {get['mean KL over pairs']:.4g} = G1 {get['mean G1 over pairs']:.4g}"
             f" + G2 {get['mean G2 over pairs']:.4g} nats; G2 < 0 for {get['share of pairs with G2 < 0']:.1%} of them"]
    if steps is not None:
        lines.append(f"PGD-{steps} accuracy {get[f'PGD-{steps} accuracy']:.3f}, CW-{steps} {get[f'CW-{steps} accuracy']:.3f}"
                     f" at eps {eps * 255:.3g}/255")
    return "\n".join(lines)


__all__ = ["Analysis", "analyze"]
