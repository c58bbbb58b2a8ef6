"""Figures: one style for all of them, stamped with dataset / profile / model, saved as PDF and PNG.

Every figure the notebooks make goes through three calls:

1. :func:`set_style` once per notebook (one seaborn theme, font sizes and panel size);
2. :func:`stamp` puts ``"<dataset> · profile <profile> · <model(s)>"`` on the figure itself,
   above the panels, so a figure found on its own still says what it shows;
3. :func:`save` writes ``<folder>/<name>.pdf`` and ``.png`` (it refuses an unstamped figure).

The plot functions below are the reusable pieces of the paper's figures: per-epoch history
curves of several runs (Figures 2, 3, 4, 7, 8), CCKL against test loss with Pearson's r
(Figure 6), the output distributions of a cross-class pair (Figure 1), histograms of
per-sample or per-pair quantities (Figures 5 and 9) and measured-vs-paper comparisons
(Tables 1 and 2). Units: divergences in nats, Fisher norms in nats per (pixel unit)^2,
inputs in [0, 1]; ``ln`` is the natural logarithm, as in the paper's figures.
"""
from __future__ import annotations

import io
import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import ArrayLike
import seaborn as sns

from . import store
from .histories import is_seed_group as _is_seed_group
from .histories import ln as _ln
from .histories import seed_series, series as history_series
from .profiles import check_safe_name

#: Size of one panel in inches (width, height); figures are ``n`` panels side by side.
PANEL = (3.7, 2.9)
#: Resolution of the saved PNG files.
SAVE_DPI = 150
#: Attribute under which :func:`stamp` leaves its text on the figure (read by :func:`save`).
_STAMP_ATTR = "_cckl_stamp"


# --------------------------------------------------------------------------- style, stamp, save
def set_style() -> None:
    """One look for every figure: seaborn ``whitegrid`` theme, ``paper`` context, colour-blind palette.

    Also turns on constrained layout and sets the saved resolution (150 dpi PNG).
    """
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "figure.constrained_layout.use": True,
                      "axes.titlesize": "medium", "legend.fontsize": "small", "legend.frameon": False,
                      "lines.linewidth": 1.6, "lines.markersize": 4, "axes.formatter.useoffset": False})


def panels(n: int = 1, rows: int = 1, width: float | None = None, height: float | None = None,
           **kwargs: Any) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``rows x n`` panels of :data:`PANEL` size; the axes come back as a flat array."""
    fig, axes = plt.subplots(rows, n, figsize=(width or PANEL[0] * n, height or PANEL[1] * rows),
                             squeeze=False, **kwargs)
    return fig, axes.ravel()


def _names(obj) -> list[str]:
    """Display names of a run, a string, or a sequence of runs/strings (duplicates dropped, order kept)."""
    if obj is None:
        return []
    if isinstance(obj, str):
        return [obj]
    if hasattr(obj, "display_name"):
        return [obj.display_name]
    if hasattr(obj, "name") and not isinstance(obj, (Sequence, Mapping)):
        return [str(obj.name)]
    out: list[str] = []
    for item in obj:
        for name in _names(item):
            if name not in out:
                out.append(name)
    return out


def stamp_text(dataset: Any, profile: str, model: Any) -> str:
    """``"<dataset> · profile <profile> · <model>"``; ``dataset`` may be an ``ImageData`` (its ``.name``),
    a string or a sequence of either; ``model`` a run (its ``display_name``), a string or a sequence."""
    datasets = " / ".join(_names(dataset)) or "dataset unknown"
    models = " | ".join(_names(model)) or "model unknown"
    return f"{datasets} · profile {profile} · {models}"


def stamp(fig: plt.Figure, dataset: Any, profile: str, model: Any) -> Any:
    """Write ``"<dataset> · profile <profile> · <model>"`` on ``fig``, above its panels.

    ``dataset``: an ``ImageData`` (its ``.name``, e.g. ``"CIFAR-10 (JPEG q75 copy)"``,
    ``"synthetic"``) or a string, or a sequence of them; ``model``: a ``Run`` (its
    ``display_name``), a string, or a sequence. Calling it again replaces the stamp.
    Returns the text artist.
    """
    text = stamp_text(dataset, profile, model)
    old = getattr(fig, "_cckl_stamp_artist", None)
    if old is not None:
        old.remove()
    width_chars = max(60, int(fig.get_figwidth() * 17))
    artist = fig.text(0.5, 1.0, textwrap.fill(text, width_chars), ha="center", va="bottom",
                      fontsize=7.5, color="0.3", transform=fig.transFigure)
    setattr(fig, _STAMP_ATTR, text)
    fig._cckl_stamp_artist = artist
    return artist


def save(fig: plt.Figure, name: str, folder: Path) -> tuple[Path, Path]:
    """Write ``fig`` to ``folder/<name>.pdf`` and ``.png``; return both paths.

    The figure must have been stamped (:func:`stamp`): every figure names its dataset,
    profile and model. The stamp also goes into the files' metadata; the PDF carries no
    creation date, so re-running gives the same file.
    """
    text = getattr(fig, _STAMP_ATTR, None)
    if not text:
        raise ValueError(f"figure {name!r} has no stamp: call plotting.stamp(fig, dataset, profile, model) before save()")
    check_safe_name(name, "figure name (a file stem like 'fig3_fisher_vgg13')")  # the one rule for names of paths
    folder = store.make_folder(Path(folder))
    pdf, png = folder / f"{name}.pdf", folder / f"{name}.png"
    for path, kwargs in ((pdf, dict(format="pdf", metadata={"Title": name, "Subject": text, "CreationDate": None})),
                         (png, dict(format="png", dpi=SAVE_DPI, metadata={"Title": name, "Description": text}))):
        buf = io.BytesIO()  # drawn in memory, written atomically: a failed write is one WriteError line
        fig.savefig(buf, bbox_inches="tight", **kwargs)
        store.atomic_write_bytes(path, buf.getvalue())
    return pdf, png


# --------------------------------------------------------------------------- history curves
def plot_history(ax: plt.Axes, runs: Sequence, key: str, labels: Sequence[str] | None = None,
                 ylabel: str | None = None, log: bool = False, band: tuple[str, str] | None = None,
                 colors: Sequence | None = None, **line_kw: Any) -> None:
    """One line per run of ``history[key]`` against the epoch (epoch 0 = initialisation).

    An item of ``runs`` may be a list of runs of several seeds: its line is the mean over the
    seeds, shaded +- one standard deviation (and the label says how many seeds).
    ``log=True`` plots the natural log of the values (as the paper does for Fisher norms);
    ``band=(lo_key, hi_key)`` shades between two other history keys (e.g. the q25 and q75
    of the per-sample Frobenius norms), transformed the same way (single runs only).
    """
    labels = list(labels) if labels is not None else [_names(r[0] if _is_seed_group(r) else r)[0] for r in runs]
    colors = list(colors) if colors is not None else sns.color_palette(n_colors=max(len(runs), 1))
    for run, label, color in zip(runs, labels, colors):
        epochs, values, std, n_seeds = seed_series(run, key, log=log)
        if n_seeds > 1:
            ax.plot(epochs, values, marker="o", label=f"{label} (mean of {n_seeds} seeds)", color=color, **line_kw)
            ax.fill_between(epochs, values - std, values + std, color=color, alpha=0.2, lw=0)
            continue
        run = run[0] if _is_seed_group(run) else run
        ax.plot(epochs, values, marker="o", label=label, color=color, **line_kw)
        if band is not None:
            _, lo = history_series(run, band[0])
            _, hi = history_series(run, band[1])
            ax.fill_between(epochs, _ln(lo) if log else lo, _ln(hi) if log else hi, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or (f"ln {key}" if log else key))


def history_figure(runs: Sequence, keys: Sequence[tuple[str, str]], labels: Sequence[str] | None = None,
                   title: str | None = None, log_keys: Sequence[str] = ()) -> tuple[plt.Figure, np.ndarray]:
    """A row of panels, one per ``(history key, y label)`` in ``keys``, each with one line per run.

    E.g. Figure 2: ``history_figure([run], [("test_acc", "test accuracy"), ("test_ce", "test CE (nats)"),
    ("cckl", "CCKL (nats)")])``. Keys in ``log_keys`` are plotted as natural logs.
    """
    fig, axes = panels(len(keys))
    for ax, (key, ylabel) in zip(axes, keys):
        plot_history(ax, runs, key, labels, ylabel=ylabel, log=key in log_keys)
    if len(runs) > 1:
        axes[0].legend()
    if title:
        fig.suptitle(title)
    return fig, axes


def band_note(item: Any, band: bool = True) -> str:
    """What the shaded band around ``item``'s Fisher-norm curve is: ``"mean of n seeds, band +-1 sd over
    seeds"`` for a group of several training seeds (:func:`plot_history`), ``"one run, band q25-q75 over
    images"`` for a single run (the interquartile range of the per-sample norms), ``"one run"`` without band."""
    n_seeds = len(item) if _is_seed_group(item) else 1
    if n_seeds > 1:
        return f"mean of {n_seeds} seeds, band \u00b11 sd over seeds"
    return "one run, band q25\u2013q75 over images" if band else "one run"


def _two_rows(first: list, second: list) -> list:
    """Legend entries ordered so that a legend of ``len(first)`` columns (filled column by column) shows
    ``first`` on its top row and ``second`` (at most as many) under it."""
    if len(second) > len(first):
        return first + second
    return [h for i, top in enumerate(first) for h in [top, *second[i:i + 1]]]


def fisher_growth(runs: Sequence, labels: Sequence[str] | None = None, title: str | None = None,
                  spectral: bool = True, band: bool = True) -> tuple[plt.Figure, np.ndarray]:
    """Figures 3 and 8: test accuracy, ln mean ||F_x||_F and (``spectral``) ln mean ||F_x||_2 per epoch.

    Means are over the run's fixed Fisher subset of the test set (``fisher_n`` points). Each curve's
    band is said in its legend entry (:func:`band_note`): +-1 sd over training seeds for a mean of
    several seeds, else (``band``) ln q25 .. ln q75 of the run's per-sample norms. Where the histories
    record ``robust_acc`` (PGD-10 accuracy on the fixed robust subset), it is drawn dashed beside the
    clean accuracy. The legend sits under the panels, clear of every curve. The spectral norm
    ``lambda_max(F_x)`` is computed exactly (the paper plots the Frobenius norm only).
    """
    fig, axes = panels(3 if spectral else 2, height=PANEL[1] * 1.25)
    labels = list(labels) if labels is not None else [_names(r[0] if _is_seed_group(r) else r)[0] for r in runs]
    colors = sns.color_palette(n_colors=max(len(runs), 1))
    plot_history(axes[0], runs, "test_acc", labels, ylabel="accuracy", colors=colors)
    handles = [plt.Line2D([], [], color=c, marker="o", label=f"{lab} ({band_note(item, band)})")
               for item, lab, c in zip(runs, labels, colors)]
    flat = [r for item in runs for r in (item if _is_seed_group(item) else [item])]
    if any(rec.get("robust_acc") is not None for run in flat for rec in getattr(run, "history", run)):
        for run, color in zip(runs, colors):
            epochs, rob, _, _ = seed_series(run, "robust_acc")
            axes[0].plot(epochs, rob, ls="--", marker="x", color=color, lw=1.2)
        handles += [plt.Line2D([], [], color="0.4", marker="o", label="solid: clean test accuracy"),
                    plt.Line2D([], [], color="0.4", ls="--", marker="x", label="dashed: PGD-10 accuracy (eps 8/255)")]
    plot_history(axes[1], runs, "fisher_fro_mean", labels, ylabel=r"ln mean $\|F_x\|_F$", log=True,
                 band=("fisher_fro_q25", "fisher_fro_q75") if band else None, colors=colors)
    if spectral:
        plot_history(axes[2], runs, "fisher_spec_mean", labels, ylabel=r"ln mean $\|F_x\|_2=\lambda_{\max}$",
                     log=True, band=("fisher_spec_q25", "fisher_spec_q75") if band else None, colors=colors)
    fig.legend(handles=_two_rows(handles[:len(runs)], handles[len(runs):]), loc="outside lower center",
               ncols=len(runs), fontsize="small")
    if title:
        fig.suptitle(title)
    return fig, axes


def accuracy_and_fisher(run: Any, title: str | None = None) -> tuple[plt.Figure, np.ndarray]:
    """Figures 4 and 7 (one training run): accuracy and ln mean ||F_x||_F per epoch on twin y axes, with
    ln mean ||F_x||_2 in its own colour, dashed, with hollow markers drawn over the Frobenius line (the two
    differ by at most ln sqrt(rank F_x), often by less than a marker: the panel states the largest gap);
    beside it ln mean ||F_x||_F against test accuracy, epoch by epoch."""
    fig, axes = panels(2)
    epochs, acc = history_series(run, "test_acc")
    _, fro = history_series(run, "fisher_fro_mean")
    _, spec = history_series(run, "fisher_spec_mean")
    c_acc, c_fro, c_spec = sns.color_palette(n_colors=3)
    ax = axes[0]
    ax.plot(epochs, acc, marker="o", color=c_acc, label="test accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy", color=c_acc)
    twin = ax.twinx()
    twin.grid(False)
    twin.plot(epochs, _ln(fro), marker="s", ms=5, color=c_fro, label=r"ln mean $\|F_x\|_F$", zorder=2)
    twin.plot(epochs, _ln(spec), ls="--", marker="^", ms=6, mfc="white", mew=1.2, color=c_spec, zorder=3,
              label=r"ln mean $\|F_x\|_2$")
    twin.set_ylabel(r"ln mean $\|F_x\|$")
    with np.errstate(invalid="ignore"):
        gap = _ln(fro) - _ln(spec)
    if np.isfinite(gap).any():
        twin.text(0.98, 0.02, f"ln $\\|F\\|_F$ - ln $\\|F\\|_2$ \u2264 {np.nanmax(gap):.2g}", transform=twin.transAxes,
                  ha="right", va="bottom", fontsize=7, color="0.35")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=3, fontsize="small")
    ax = axes[1]
    points = ax.scatter(acc, _ln(fro), c=epochs, cmap="viridis", zorder=3)
    ax.plot(acc, _ln(fro), color="0.6", lw=0.8, zorder=2)
    fig.colorbar(points, ax=ax, label="epoch")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel(r"ln mean $\|F_x\|_F$")
    if title:
        fig.suptitle(title)
    return fig, axes


# --------------------------------------------------------------------------- Figure 6
def cckl_vs_loss(ax: plt.Axes, run: Any, r: float, from_epoch: int = 1, title: str | None = None,
                 paper_r: float | None = None) -> None:
    """Figure 6 panel: CCKL (y) against test cross-entropy (x), one point per epoch coloured by epoch,
    with Pearson's ``r`` over epochs ``from_epoch``..end (computed by the caller, e.g.
    :func:`cckl_core.paper.theorem_check.trends`) written on the panel."""
    epochs, ce = history_series(run, "test_ce")
    _, cckl = history_series(run, "cckl")
    points = ax.scatter(ce, cckl, c=epochs, cmap="viridis", zorder=3, clip_on=False)
    ax.margins(0.1)
    ax.figure.colorbar(points, ax=ax, label="epoch")
    ax.set_xlabel("test cross-entropy (nats)")
    ax.set_ylabel("CCKL (nats)")
    text = (f"Pearson r = {r:.4f} (epochs {from_epoch}+)" if math.isfinite(r)
            else "Pearson r undefined (constant or < 3 epochs)")
    if paper_r is not None:
        text += f"\npaper: r = {paper_r:.4f}"
    ax.text(0.97, 0.97, text, transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox=dict(boxstyle="round", fc="white", ec="0.8"))
    if title:
        ax.set_title(title)


def skipped_panel(ax: plt.Axes, message: str, title: str | None = None) -> None:
    """A panel that says, in text, why it has no data (e.g. an optional run whose data set is missing)."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, textwrap.fill(message, 48), transform=ax.transAxes, ha="center", va="center",
            fontsize=8, color="0.25", bbox=dict(boxstyle="round", fc="0.95", ec="0.7"))
    if title:
        ax.set_title(title)


# --------------------------------------------------------------------------- Figure 1
def output_distributions(images: ArrayLike, labels: ArrayLike, probs_init: ArrayLike, probs_trained: ArrayLike,
                         classes: Sequence[str],
                         kl_init: float, kl_trained: float, paper_kl: tuple[float, float] | None = None,
                         title: str | None = None) -> tuple[plt.Figure, np.ndarray]:
    """Figure 1: two cross-class samples (rows) with their image, ground-truth label, and the network's
    output distribution at initialisation and after training (bar plots over the classes).

    ``images``: uint8 (2, 3, H, W) or float in [0, 1]; ``labels``: (2,) ints; ``probs_*``: (2, K).
    ``kl_*`` are ``KL(f(x_1) || f(x_2))`` in nats, written under the columns (with the paper's
    values if ``paper_kl`` is given).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(float) / 255.0
    probs_init, probs_trained = np.asarray(probs_init, dtype=float), np.asarray(probs_trained, dtype=float)
    labels = np.asarray(labels).astype(int)
    k = probs_init.shape[1]
    fig, axes = plt.subplots(2, 4, figsize=(PANEL[0] * 3.4, PANEL[1] * 1.75), squeeze=False,
                             gridspec_kw={"width_ratios": [0.8, 1.3, 1.3, 1.3]})
    palette = sns.color_palette(n_colors=3)
    columns = ["ground-truth label", "output at initialisation", "output after training"]
    ticks = np.arange(k)
    short = list(classes) if k <= 20 else None  # class names as ticks where they fit
    for row in range(2):
        ax = axes[row, 0]
        ax.imshow(np.clip(images[row].transpose(1, 2, 0), 0, 1), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"$x_{row + 1}$: {classes[labels[row]]}", fontsize=9)
        onehot = np.eye(k)[labels[row]]
        for col, (values, color) in enumerate(zip([onehot, probs_init[row], probs_trained[row]], palette), start=1):
            ax = axes[row, col]
            ax.bar(ticks, values, color=color, width=0.8)
            ax.set_ylim(0, 1.02)
            ax.set_xticks(ticks if short is not None else [])
            if short is not None:
                ax.set_xticklabels(short if row == 1 else [], rotation=90, fontsize=6.5)
            if row == 0:
                ax.set_title(columns[col - 1])
            if col == 1:
                ax.set_ylabel("probability")
    notes = [f"KL(f_init(x1)||f_init(x2)) = {kl_init:.3g}", f"KL(f_trained(x1)||f_trained(x2)) = {kl_trained:.3g}"]
    if paper_kl is not None:
        notes[0] += f"  (paper {paper_kl[0]:.3f})"
        notes[1] += f"  (paper {paper_kl[1]:.3f})"
    axes[1, 2].set_xlabel(notes[0], fontsize=8)
    axes[1, 3].set_xlabel(notes[1], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig, axes


# --------------------------------------------------------------------------- distributions (Figs 5, 9)
def symlog_edges(values: np.ndarray, linthresh: float, bins: int) -> np.ndarray:
    """``bins + 1`` bin edges spanning ``values``, equally spaced on a symmetric log axis that is linear
    within +-``linthresh`` (matplotlib's ``"symlog"`` scale): each bar is as wide as the next on screen."""
    from matplotlib.scale import SymmetricalLogTransform

    if not linthresh > 0:
        raise ValueError(f"symlog must be a positive linear threshold, got {linthresh!r}")
    transform = SymmetricalLogTransform(10, linthresh, 1.0)
    lo, hi = transform.transform(np.array([np.min(values), np.max(values)], dtype=float))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return transform.inverted().transform(np.linspace(lo, hi, bins + 1))


def _draw_sample(ax: plt.Axes, shown: np.ndarray, color, legend: str, kind: str, log: bool, bins,
                 kde: bool, stat: str) -> None:
    """One sample of :func:`distributions`: its ECDF, histogram (with KDE), a line if constant, or an empty entry."""
    if kind == "ecdf" and len(shown):
        sns.ecdfplot(shown, ax=ax, log_scale=log, color=color, label=legend)
    elif len(shown) >= 2 and np.ptp(shown) > 0:
        sns.histplot(shown, ax=ax, bins=bins, stat=stat, element="step", fill=True, alpha=0.25,
                     kde=kde and len(shown) >= 5, log_scale=log, color=color, label=legend)
    elif len(shown):
        ax.axvline(shown[0], color=color, lw=2, label=legend)
    else:
        ax.plot([], [], color=color, label=legend)


def distributions(ax: plt.Axes, samples: Mapping[str, np.ndarray], xlabel: str | None = None, log: bool = False,
                  clip_quantiles: tuple[float, float] | None = None, bins: int = 40, kde: bool = True,
                  marker: str = "median", colors: Sequence | None = None, kind: str = "hist",
                  legend_below: bool = False, legend_width: int = 48, symlog: float | None = None) -> dict[str, dict]:
    """Overlaid density histograms (with KDE; ``kind="hist"``) or empirical CDFs (``kind="ecdf"``,
    better when the spreads differ by orders of magnitude) of several samples, each with its
    ``marker`` line (``"median"`` or ``"mean"``). ``legend_below`` puts the legend under the
    axes (for narrow panels); legend entries are wrapped at ``legend_width`` characters.

    ``log=True`` puts the x axis on a log scale (non-positive values cannot be shown and are
    counted in the legend). ``symlog=t`` puts it on a symmetric log scale, linear within +-t, for a
    peak near 0 with a long tail on either side (such as G2/KL): every value is shown, in bins of equal
    on-screen width shared by the samples, as the percent of each sample per bin (no KDE: its
    bandwidth would be in the original units). ``clip_quantiles=(lo, hi)`` limits the *displayed*
    range to the pooled quantiles (the values outside are counted in the legend); the statistics
    returned (``{"n", "median", "mean", "shown"}`` per label) are over all finite values.
    """
    if kind not in ("hist", "ecdf"):
        raise ValueError(f"kind must be 'hist' or 'ecdf', got {kind!r}")
    if symlog is not None and log:
        raise ValueError("choose one of log and symlog for the x axis")
    colors = list(colors) if colors is not None else sns.color_palette(n_colors=max(len(samples), 1))
    finite = {k: np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))] for k, v in samples.items()}
    pooled = np.concatenate([v for v in finite.values() if len(v)] or [np.zeros(0)])
    lo, hi = np.quantile(pooled, clip_quantiles) if clip_quantiles is not None and len(pooled) else (None, None)
    if symlog is not None and len(pooled):
        bins = symlog_edges(pooled if lo is None else pooled[(pooled >= lo) & (pooled <= hi)], symlog, bins)
    out = {}
    for (label, values), color in zip(finite.items(), colors):
        shown = values[values > 0] if log else values
        if lo is not None:
            shown = shown[(shown >= lo) & (shown <= hi)]
        dropped = len(values) - len(shown)
        center = float(np.mean(values) if marker == "mean" else np.median(values)) if len(values) else math.nan
        said = f", {dropped} outside view)" if dropped else ")"
        legend = (f"{label} (n={len(values)}, {marker} {center:.3g}{said}" if len(shown)
                  else f"{label} (n={len(values)}, nothing to show)")
        _draw_sample(ax, shown, color, textwrap.fill(legend, legend_width), kind, log, bins,
                     kde and symlog is None, "density" if symlog is None else "percent")
        if math.isfinite(center) and (not log or center > 0):
            ax.axvline(center, color=color, ls="--", lw=1.2)
        out[label] = {"n": len(values), "median": float(np.median(values)) if len(values) else math.nan,
                      "mean": float(np.mean(values)) if len(values) else math.nan, "shown": len(shown)}
    if log:
        ax.set_xscale("log")
    elif symlog is not None:
        ax.set_xscale("symlog", linthresh=symlog)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))  # -100, -10, -1, 0, 1
    if xlabel:
        scale = f" (symmetric log scale, linear within \u00b1{symlog:g})" if symlog is not None else ""
        ax.set_xlabel(xlabel + scale)
    ax.set_ylabel("fraction <= x" if kind == "ecdf" else "density" if symlog is None else "percent per bin")
    if legend_below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="x-small")
    else:
        ax.legend(loc="best")
    return out


# --------------------------------------------------------------------------- curves over a parameter
def quantile_lines(ax: plt.Axes, x: Sequence[float], series: Mapping[str, np.ndarray], ylabel: str | None = None,
                   xlabel: str | None = None, reference: float | None = None, logx: bool = False,
                   logy: bool = False, band: tuple[float, float] = (0.25, 0.75)) -> None:
    """For each series (array ``(len(x), n_points)``): the median over points against ``x``, with
    a shaded band between the ``band`` quantiles; an optional horizontal ``reference`` line.

    Used for the eq. 12 check (KL / (1/2 lambda_max eps^2) against the L2 radius eps).
    """
    x = np.asarray(x, dtype=float)
    for (label, values), color in zip(series.items(), sns.color_palette(n_colors=max(len(series), 1))):
        values = np.asarray(values, dtype=float).reshape(len(x), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(values, axis=1)
            lo, hi = np.nanquantile(values, band, axis=1)
        ax.plot(x, med, marker="o", color=color, label=label)
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    if reference is not None:
        ax.axhline(reference, color="0.3", ls=":", lw=1)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.legend()


def scatter_diagonal(ax: plt.Axes, x: ArrayLike, y: ArrayLike, hue: ArrayLike | None = None, hue_label: str | None = None, xlabel: str | None = None,
                     ylabel: str | None = None, log: bool = True) -> None:
    """Scatter ``y`` against ``x`` with the line ``y = x``; log-log by default (non-positive points dropped)."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) & (y > 0) if log else True)
    c = None if hue is None else np.asarray(hue, dtype=float).ravel()[keep]
    points = ax.scatter(x[keep], y[keep], c=c, s=10, alpha=0.7, cmap="viridis" if c is not None else None)
    if c is not None:
        ax.figure.colorbar(points, ax=ax, label=hue_label)
    if keep.any():
        lo, hi = min(x[keep].min(), y[keep].min()), max(x[keep].max(), y[keep].max())
        ax.plot([lo, hi], [lo, hi], color="0.3", ls=":", lw=1, label="y = x")
        ax.legend(loc="upper left")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


# --------------------------------------------------------------------------- measured vs paper
def paper_vs_measured_bars(ax: plt.Axes, categories: Sequence[str], measured: Sequence[float],
                           paper: Sequence[float] | None = None, ylabel: str | None = None,
                           title: str | None = None, color: Any = None,
                           interval: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
    """Bars of our measured values per category (with ``interval = (lo, hi)`` as error bars, e.g.
    95% Wilson intervals), with the paper's values as black diamonds."""
    pos = np.arange(len(categories))
    measured = np.asarray(measured, dtype=float)
    yerr = None
    if interval is not None:
        lo, hi = (np.asarray(v, dtype=float) for v in interval)
        yerr = np.vstack([measured - lo, hi - measured])
    ax.bar(pos, measured, color=color or sns.color_palette()[0], width=0.65, label="measured",
           yerr=yerr, capsize=3, error_kw={"lw": 1, "ecolor": "0.25"})
    if paper is not None:
        ax.scatter(pos, np.asarray(paper, dtype=float), marker="D", color="black", zorder=3, label="paper")
    ax.set_xticks(pos)
    ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=7.5)
    top = np.nanmax(np.concatenate([np.asarray(measured, dtype=float), np.asarray(paper if paper is not None else [0], dtype=float)]))
    ax.set_ylim(0, max(top, 1e-12) * 1.3)  # room for the legend above the bars
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", ncol=2)


def paper_vs_measured_lines(ax: plt.Axes, x: Sequence[float], measured: Mapping[str, Sequence[float]],
                            paper: Sequence[float] | None = None, xticklabels: Sequence[str] | None = None,
                            xlabel: str | None = None, ylabel: str | None = None) -> None:
    """Lines of one or more measured series against ``x``, with the paper's values as a dashed black line."""
    for label, values in measured.items():
        ax.plot(x, values, marker="o", label=label)
    if paper is not None:
        ax.plot(x, paper, marker="D", color="black", ls="--", label="paper")
    if xticklabels is not None:
        ax.set_xticks(list(x))
        ax.set_xticklabels(xticklabels)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.legend()
