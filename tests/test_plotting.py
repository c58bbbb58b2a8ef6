"""The figure helpers whose look was a defect (issue 23): Figures 3/8 say per curve what its band is and keep
their legend off the panels; Figures 4/7 show the spectral norm beside the Frobenius one; a heavy-tailed
sample (Figure 5's G2/KL) is shown whole on a symmetric log axis."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.scale import SymmetricalLogTransform  # noqa: E402

from cckl_core import plotting  # noqa: E402


def _run(name: str, seed: int = 0, epochs: int = 4, robust: bool = True) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    history = []
    for e in range(epochs):
        fro = float(np.exp(e + rng.normal(0, 0.1)))
        history.append({"epoch": e, "test_acc": 0.1 + 0.1 * e, "fisher_fro_mean": fro, "fisher_fro_q25": fro / 2,
                        "fisher_fro_q75": fro * 2, "fisher_spec_mean": fro * 0.9, "fisher_spec_q25": fro / 3,
                        "fisher_spec_q75": fro * 1.5, **({"robust_acc": 0.05 * e} if robust else {})})
    return SimpleNamespace(history=history, display_name=name)


@pytest.fixture(autouse=True)
def _style():
    with plt.rc_context():
        plotting.set_style()
        yield
        plt.close("all")


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _overlaps(fig, artist) -> list:
    """The axes whose drawn area intersects ``artist``'s, once the figure is laid out."""
    fig.canvas.draw()
    box = artist.get_window_extent()
    return [ax for ax in fig.axes if ax.get_window_extent().overlaps(box)]


def test_each_curve_of_figures_3_and_8_says_what_its_band_is():
    single = [_run("standard"), _run("PGD-AT", 1)]
    fig, axes = plotting.fisher_growth(single, ["standard", "PGD-AT"])
    texts = _legend_texts(fig)
    assert texts[0] == "standard (one run, band q25\u2013q75 over images)"
    assert not any("seeds" in t for t in texts)
    assert not [t for ax in axes for t in ax.texts]  # no band note on a panel, where it could hide a curve
    grouped = [[_run("standard", s) for s in range(3)], _run("PGD-AT")]
    fig, _ = plotting.fisher_growth(grouped, ["standard", "PGD-AT"])
    texts = _legend_texts(fig)
    assert "standard (mean of 3 seeds, band \u00b11 sd over seeds)" in texts
    assert "PGD-AT (one run, band q25\u2013q75 over images)" in texts


def test_the_legend_of_figures_3_and_8_overlaps_no_panel_and_rows_runs_over_line_styles():
    runs = [_run("standard"), _run("PGD-AT", 1), _run("TRADES", 2)]
    fig, _ = plotting.fisher_growth(runs, ["standard", "PGD-AT", "TRADES"])
    (legend,) = fig.legends
    assert _overlaps(fig, legend) == []
    texts = [t.get_text() for t in legend.get_texts()]
    assert [t.split(" (")[0] for t in texts] == ["standard", "solid: clean test accuracy", "PGD-AT",
                                                 "dashed: PGD-10 accuracy", "TRADES"]  # column by column
    top = {t.get_text().split(" (")[0]: t.get_window_extent().y0 for t in legend.get_texts()}
    assert top["standard"] == top["PGD-AT"] == top["TRADES"] > top["solid: clean test accuracy"]


def test_figures_4_and_7_show_the_spectral_line_over_the_frobenius_one():
    run = _run("standard", robust=False)
    fig, axes = plotting.accuracy_and_fisher(run)
    twin = next(ax for ax in fig.axes if ax is not axes[0] and ax.get_shared_x_axes().joined(ax, axes[0]))
    fro, spec = twin.get_lines()
    assert fro.get_color() != spec.get_color() and fro.get_marker() != spec.get_marker()
    assert spec.get_zorder() > fro.get_zorder() and spec.get_markerfacecolor() == "white"  # hollow, on top
    h = run.history
    gap = max(np.log(r["fisher_fro_mean"]) - np.log(r["fisher_spec_mean"]) for r in h)  # ln(1/0.9)
    assert any(t.get_text().endswith(f"{gap:.2g}") for t in twin.texts)
    (legend,) = fig.legends
    assert _overlaps(fig, legend) == []


def test_symlog_bins_are_equally_wide_on_screen_and_span_the_sample():
    values = np.array([-45.0, -3.0, -0.2, 0.0, 0.3, 0.9, 1.0])
    edges = plotting.symlog_edges(values, 1.0, 10)
    assert edges[0] == pytest.approx(-45.0) and edges[-1] == pytest.approx(1.0) and len(edges) == 11
    # matplotlib's symlog with base 10, linscale 1: linear within +-1, log10 beyond
    t = SymmetricalLogTransform(10, 1.0, 1.0).transform(edges)
    assert np.allclose(np.diff(t), np.diff(t)[0])
    with pytest.raises(ValueError, match="positive linear threshold"):
        plotting.symlog_edges(values, 0.0, 10)


def test_a_heavy_tailed_sample_is_shown_whole_on_a_symlog_axis():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 1, 900), -np.exp(rng.uniform(0, np.log(45), 100))])
    fig, ax = plt.subplots()
    out = plotting.distributions(ax, {"a": a, "b": a[::2]}, xlabel="G2 / KL", symlog=1.0)
    assert out["a"] == {"n": 1000, "median": pytest.approx(np.median(a)), "mean": pytest.approx(np.mean(a)),
                        "shown": 1000}
    assert out["b"]["shown"] == 500
    assert ax.get_xscale() == "symlog" and ax.get_ylabel() == "percent per bin"
    assert "outside view" not in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "linear within \u00b11" in ax.get_xlabel()
    with pytest.raises(ValueError, match="one of log and symlog"):
        plotting.distributions(ax, {"a": a}, log=True, symlog=1.0)


def test_clipping_the_view_counts_what_it_hides_in_the_legend():
    a = np.arange(100.0)
    fig, ax = plt.subplots()
    out = plotting.distributions(ax, {"a": a}, clip_quantiles=(0.05, 0.95))
    inside = ((a >= np.quantile(a, 0.05)) & (a <= np.quantile(a, 0.95))).sum()
    assert out["a"]["shown"] == inside
    assert f"{100 - inside} outside view" in ax.get_legend().get_texts()[0].get_text()
