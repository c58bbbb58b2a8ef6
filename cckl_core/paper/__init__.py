"""The paper as code: one module per notebook, each rendering from cached results only.

Each module (:mod:`.theorem_check`, :mod:`.fisher_growth`, :mod:`.capacity_study`,
:mod:`.appendix_c`) holds its notebook's steps as public functions: the cached data a figure uses
as a table, the statistic (one row per training seed where the claim is judged over seeds), the
figure and the claims rows. Its ``render(profile, seed) -> Rendered`` runs the steps in the
notebook's order (never training or evaluating; a missing result is one
:class:`~.inputs.ResultsMissing` message naming the command). The paper's reference values and
every claim's criterion are declared in ``claims.toml`` (:mod:`.criteria`). :data:`NOTEBOOKS` is the
one list of the notebooks; :mod:`.execute` runs them for ``make paper``.

A notebook's set-up cell calls :func:`setup`, which checks the notebook's parameters, picks the
profile (:func:`cckl_core.profiles.default_to_render` when none is given) and reads its inputs; the
cells below fill ``out`` step by step::

    inputs, out = paper.setup("03_capacity_study", profile=profile, seed=seed, namespace=globals())
    table1 = cs.table1_frame(inputs.list_role("table1"), cs.table1_evaluations(inputs))
"""
from __future__ import annotations

import difflib
import sys
from types import ModuleType

from .. import profiles
from . import appendix_c, capacity_study, fisher_growth, theorem_check
from .inputs import Inputs, ResultsMissing, gather, results_present
from .result import Rendered

#: The notebooks of the paper, in order, and the module that renders each.
NOTEBOOKS: dict[str, ModuleType] = {m.NOTEBOOK: m for m in (theorem_check, fisher_growth, capacity_study, appendix_c)}
#: A notebook's parameters (its cell tagged ``parameters``) and what each may hold.
PARAMETERS = {"profile": "None or a profile name", "seed": "a whole number >= 0 (the sampling seed)",
              "image": "a test image's position (live probe)", "image_i": "a test image's position (live probe)",
              "image_j": "a test image's position (live probe)", "eps_l2": "an L2 radius > 0 (live probe)",
              "eps_255": "the largest L-inf radius x 255 (live probe)"}
#: The value of every parameter but ``profile`` in a published render (``make paper``), per notebook: each
#: notebook's parameters cell defines exactly ``profile`` and these (a test checks it).
PUBLISHED = {"01_theorem_check": {"seed": 0, "image_i": 0, "image_j": 1},
             "02_fisher_growth": {"seed": 0, "image": 0, "eps_l2": 1.0},
             "03_capacity_study": {"seed": 0, "image_i": 0, "image_j": 1},
             "04_appendix_c_table": {"seed": 0, "image": 0, "eps_255": 8}}
#: Former parameters: notebooks only render now, so these have no effect and are refused.
RETIRED = {"device": "notebooks never call a model", "data_root": "notebooks read no data"}


class ParameterError(ValueError):
    """A notebook parameter that cannot be used; one line says which and what it may be."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"ParameterError: {self}"]


def _check_parameters(profile, seed, namespace: dict | None) -> tuple[str | None, int]:
    if profile is not None:
        if not isinstance(profile, str):
            raise ParameterError(f"profile must be None or one of {', '.join(profiles.names())}, got {profile!r}")
        try:
            profiles.check_name(profile)
        except profiles.ProfileError as err:
            raise ParameterError(str(err)) from None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= profiles.MAX_SEED:
        raise ParameterError(f"seed must be a whole number in [0, {profiles.MAX_SEED}], got {seed!r}")
    for name, value in (namespace or {}).items():
        if isinstance(value, (ModuleType, list, tuple, dict)) or callable(value) or name.startswith("_"):
            continue  # imports, functions and collections are not parameters
        if name in RETIRED:
            raise ParameterError(f"{name!r} is not a parameter of this notebook any more ({RETIRED[name]}); "
                                 f"its parameters: {', '.join(PARAMETERS)}")
        close = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.75)
        if close and name not in PARAMETERS:
            raise ParameterError(f"unknown parameter {name!r}: did you mean {close[0]!r}? This notebook's parameters: "
                                 + "; ".join(f"{k} ({v})" for k, v in PARAMETERS.items()))
    return profile, seed


def _module(notebook: str) -> ModuleType:
    """The module of ``notebook``; an unknown name is one ``ValueError`` listing the paper's notebooks."""
    if notebook not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {notebook!r}; the paper's notebooks: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[notebook]


def render(notebook: str, profile: str | profiles.Profile | None = None, seed: int = 0) -> Rendered:
    """Render ``notebook`` for ``profile`` (default :func:`cckl_core.profiles.default_to_render`)."""
    module = _module(notebook)
    prof = profiles.load(profile if profile is not None else profiles.default_to_render(results_present))
    if notebook not in notebooks_of(prof):
        return not_in_profile(notebook, prof)
    import matplotlib.pyplot as plt

    with plt.rc_context():
        from .. import plotting
        plotting.set_style()
        result = module.render(prof, seed)
    result.claims = result.judged()  # Holm within each family of paper claims decides their verdicts
    for fig in result.figures.values():
        plt.close(fig)  # a caller shows or saves them; none is left open for a backend to show
    return result


def not_in_profile(notebook: str, prof: profiles.Profile) -> Rendered:
    """What a notebook shows for a profile that gives no run its roles (e.g. ``gpu``, which runs the
    capacity study only): a sentence, no figure, no claim."""
    out = Rendered(notebook, prof.name, "none")
    out.text["summary"] = (f"Profile `{prof.name}` has no runs for {notebook}: {prof.description}. These figures come "
                           "from the other profiles (`quick` on a CPU, `paper` on a GPU).")
    return out


def notebooks_of(profile: str | profiles.Profile) -> list[str]:
    """The notebooks ``profile`` gives runs to (``make paper`` renders these; e.g. ``gpu``: 03 and 04)."""
    prof = profiles.load(profile)
    return [nb for nb, m in NOTEBOOKS.items() if prof.has_roles([r for r in m.ROLES if r not in m.OPTIONAL])]


class NotInProfile(ParameterError):
    """A notebook opened for a profile that has no runs for it (e.g. notebook 01 with ``gpu``)."""

    def _render_traceback_(self) -> list[str]:
        return [f"NotInProfile: {self}"]


def setup(notebook: str, profile: str | None = None, seed: int = 0,
          namespace: dict | None = None) -> tuple[Inputs, Rendered]:
    """A notebook's set-up: check its parameters (``namespace``: the notebook's globals, searched for
    misspelt parameter names), pick the profile, read its cached results. Returns the notebook's
    inputs (runs by role, cached evaluations) and an empty :class:`Rendered` that its cells fill
    with figures, tables and claims. A missing result stops the notebook with one message
    (:class:`ResultsMissing`), having trained, computed and written nothing."""
    module = _module(notebook)
    profile, seed = _check_parameters(profile, seed, namespace)
    prof = profiles.load(profile or profiles.default_to_render(results_present))
    if notebook not in notebooks_of(prof):
        raise NotInProfile(not_in_profile(notebook, prof).text["summary"] + f" Open it with profile = "
                           f"{', '.join(repr(p) for p in profiles.names() if notebook in notebooks_of(p))}.")
    print(f"profile {prof.name}{'' if profile else ' (the default: results present here)'}: {prof.description}; "
          f"sampling seed {seed}", file=sys.stdout, flush=True)
    from .. import plotting, tables
    plotting.set_style()
    tables.notebook_display()
    inputs = gather(prof, module.ROLES, module.OPTIONAL, seed, notebook)
    return inputs, Rendered(notebook, prof.name, inputs.dataset_name(module.ROLES[0]))


__all__ = ["NOTEBOOKS", "PARAMETERS", "PUBLISHED", "Inputs", "NotInProfile", "ParameterError", "Rendered", "ResultsMissing",
           "notebooks_of", "render", "setup"]
