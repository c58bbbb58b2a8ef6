"""cckl_core: CCKL, input-space Fisher statistics, G1/G2, attacks and cached training runs.

Modules: ``data``, ``models``, ``metrics`` (CCKL, KL/JS, Theorem 3.1 terms), ``fisher``
(input-space Fisher statistics, G1/G2), ``attacks``, ``objectives`` (losses, the SGD step), ``record`` (the
per-epoch record), ``trainer`` (the training loop), ``runs`` (cache,
resume), ``profiles``, ``plotting``, ``report`` (claims
tables, figures/README.md), ``zoo`` (trained models by name), ``analysis`` (``cckl_core.analyze``:
the paper's analysis of any model in one call). Import what you need, e.g.
``from cckl_core import metrics, fisher``.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    """``cckl_core.analyze`` (the paper's analysis of any model in one call) and ``cckl_core.zoo``
    (trained models by name), imported on first use so that ``import cckl_core`` stays light."""
    if name == "analyze":
        from .analysis import analyze
        return analyze
    if name in ("zoo", "analysis"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
