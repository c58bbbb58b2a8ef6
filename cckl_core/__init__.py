"""cckl_core: CCKL, input-space Fisher statistics, G1/G2, attacks and cached training runs.

Modules: ``data``, ``models``, ``metrics`` (CCKL, KL/JS, Theorem 3.1 terms), ``fisher``
(input-space Fisher statistics, G1/G2), ``attacks``, ``training``, ``runs`` (cache,
resume), ``profiles``, ``plotting``, ``report`` (claims
tables, figures/README.md). Import what you need, e.g.
``from cckl_core import metrics, fisher``.
"""
__version__ = "0.1.0"
