"""Live probes for the notebooks: the paper's measurements on any test image, in seconds on a CPU.

Models and images of a profile's run (``profile`` a name or a :class:`~cckl_core.profiles.Profile`,
``run_name`` as ``profile.role(...)`` names it; the run of the profile's first training seed):

- :func:`trained`: the trained model (from the run cache, else from the models the repository carries,
  :mod:`cckl_core.zoo`), :func:`initial`: the same network at initialisation (rebuilt from the run's seed as
  the ``theorem`` evaluation does), :func:`test_images`: test images by their position in the run's test split.

The probes, one per notebook (each measures as the cached evaluation behind the notebook does):

- 01 :func:`pair_outputs`: two test images' output distributions and ``KL(f(x_i)||f(x_j))`` at initialisation
  and after training (Figure 1 for any pair; :meth:`PairOutputs.figure` draws it).
- 02 :func:`fisher_direction`: the top eigenvector ``v`` of ``F_x`` beside the L2 KL-PGD perturbation, and eq. 12's
  prediction ``1/2 lambda_max eps^2`` against the attained KL (:func:`plot_fisher_direction` draws it).
- 03 :func:`pair_decomposition`: ``KL = G1 + G2`` of one pair under several models.
- 04 :func:`fisher_term_error`: ``|KL - G1| / KL`` at the L-inf KL-PGD perturbation of Table 2, for any radii.

Every probe runs on the CPU in float64 where its evaluation does, and leaves the model it is given as it was.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import checks, data, evaluations, fisher, metrics, models, profiles, runs, zoo


#: Columns of :attr:`PairOutputs.probs`.
PAIR_COLUMNS = ("x_i init", "x_j init", "x_i trained", "x_j trained")
#: Columns of :func:`pair_decomposition`'s table.
DECOMPOSITION_COLUMNS = ("KL", "G1", "G2", "G2/KL")
#: Columns of :func:`fisher_term_error`'s table.
TERM_ERROR_COLUMNS = ("KL", "G1", "|KL-G1|/KL", "linf_255")


class ModelUnavailableError(LookupError):
    """A run's trained model is neither in the run cache nor among the models the repository carries."""


# --------------------------------------------------------------------------- models and images of a run
def _config(profile: str | profiles.Profile, run_name: str) -> tuple[profiles.Profile, profiles.RunConfig]:
    prof = profiles.load(profile)
    return prof, prof.run(run_name)


def trained(profile: str | profiles.Profile, run_name: str) -> nn.Module:
    """The trained model of run ``run_name`` (the profile's first training seed), float32, eval mode, CPU: from
    the run cache when its weights are there, else from the repository's carried models (:func:`zoo.load`)."""
    prof, cfg = _config(profile, run_name)
    try:
        return runs.load(cfg, weights=True, device="cpu").model.eval()
    except runs.WeightsRemovedError:
        cache = "the run cache holds it without its weights"
    except runs.RunCorruptedError:
        cache = "its folder in the run cache is corrupted"
    except runs.RunNotFoundError:
        cache = f"the run cache ({runs.path_of(cfg).parent}) does not hold it"
    try:
        return zoo.load(prof.name, run_name)
    except zoo.ZooError as err:
        carried = str(err).split("; ")[0]  # what is missing; the fix is said once, below
    raise ModelUnavailableError(f"no trained model of run {cfg.label} here: {cache}, and {carried}; train it with "
                                f"`{runs.train_command(cfg)}` (or all of the profile's: `make paper PROFILE={prof.name}`)")


def initial(profile: str | profiles.Profile, run_name: str) -> nn.Module:
    """The network of run ``run_name`` at initialisation, rebuilt from the run's seed as the ``theorem``
    evaluation rebuilds it (:func:`cckl_core.models.fresh`), float32, eval mode, CPU. The global
    random state is left as it was."""
    _, cfg = _config(profile, run_name)
    return _initial(cfg, _test_split(cfg).num_classes)


def _initial(cfg: profiles.RunConfig, num_classes: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        model, _ = models.fresh(cfg, num_classes, torch.device("cpu"))
    return model.eval()


def _test_split(cfg: profiles.RunConfig) -> data.ImageData:
    """The run's test split as its evaluations read it (``run.dataset("test", seed=run.seed)``); needs no run folder."""
    return runs.Run(cfg, runs.path_of(cfg), None, [], False).dataset("test", seed=cfg.seed)


class TestImages(NamedTuple):
    """Test images of a run: ``images`` float32 (N, C, H, W) in [0, 1], ``labels`` int64 (N,), ``classes`` (names)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


def _positions(indices: Any, n: int, label: str, held: str | None = None, fix: str = "") -> torch.Tensor:
    """``indices`` (one int or a sequence of them) as a long tensor of positions among ``n`` images; out of range
    is one error saying what holds the ``n`` images (``held``; default the run's test split) and ``fix``."""
    flat = np.atleast_1d(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=object))
    if flat.ndim != 1 or not len(flat):
        raise ValueError(f"indices must be one test-set position or a non-empty list of them, got {indices!r}")
    for i in flat:
        checks.integer(i, "test image position")
        if not 0 <= int(i) < n:
            raise IndexError(f"test image position {int(i)} is out of range: "
                             f"{held or f'the test split of run {label} has {n} images'} (positions 0 to {n - 1}){fix}")
    return torch.tensor([int(i) for i in flat], dtype=torch.long)


def test_images(profile: str | profiles.Profile, run_name: str, indices: int | Sequence[int]) -> TestImages:
    """The test images at positions ``indices`` of run ``run_name``'s test split (the split its evaluations and
    its recorded Figure 1 pair index; synthetic on the smoke profile), with their labels and the class names.
    Where the data set is not here, the first test images the repository carries (:func:`cckl_core.zoo.test_images`)."""
    prof, cfg = _config(profile, run_name)
    held, fix = None, ""
    try:
        test = _test_split(cfg)
    except data.DataNotFoundError as err:
        try:
            test = zoo.test_images(prof.name, run_name)
        except zoo.ZooError:
            raise err from None
        held = f"the data set is not here, and the repository carries the first {len(test)} test images of run " \
               f"{run_name} only"
        fix = f"; for any position get the data ({str(err).splitlines()[0]})"
    part = test.take(_positions(indices, len(test), cfg.label, held, fix))
    return TestImages(part.float(), part.labels.long(), list(test.classes))


test_images.__test__ = False  # a library function, not a test, for pytest
TestImages.__test__ = False


# --------------------------------------------------------------------------- 01: a pair's outputs
@dataclass
class PairOutputs:
    """Two test images' outputs at initialisation and after training (:func:`pair_outputs`).

    ``probs``: a frame, one row per class, columns :data:`PAIR_COLUMNS` (softmax outputs in float64);
    ``kl_init`` / ``kl_trained``: ``KL(f(x_i)||f(x_j))`` in nats at each stage.
    """

    positions: tuple[int, int]
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    probs: pd.DataFrame
    kl_init: float
    kl_trained: float

    def figure(self, title: str | None = None, stamp: tuple | None = None) -> tuple[Any, np.ndarray]:
        """Figure 1 for this pair (:func:`cckl_core.plotting.output_distributions`); ``stamp`` = (data set,
        profile, model) names them (:func:`cckl_core.plotting.stamp`)."""
        from . import plotting
        p = self.probs.to_numpy().T  # rows: x_i init, x_j init, x_i trained, x_j trained
        fig, axes = plotting.output_distributions(self.images, self.labels, p[:2], p[2:], self.classes, self.kl_init,
                                                  self.kl_trained, title=title)
        if stamp is not None:
            plotting.stamp(fig, *stamp)
        return fig, axes


def _softmax64(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``softmax`` of the model's logits in float64, eval mode (as the per-epoch record and ``theorem`` compute it)."""
    with torch.no_grad(), models.eval_mode(model):
        return torch.softmax(model(x).double(), 1)


def pair_outputs(profile: str | profiles.Profile, run_name: str, i: int, j: int) -> PairOutputs:
    """Probe 01: the softmax outputs of test images ``i`` and ``j`` (positions in the run's test split) under the
    run's network at initialisation and after training, and ``KL(f(x_i)||f(x_j))`` at both stages."""
    pair = test_images(profile, run_name, [i, j])
    if int(i) == int(j):
        raise ValueError(f"i and j are the same test image ({int(i)}); pick two different positions")
    p_init = _softmax64(_initial(_config(profile, run_name)[1], len(pair.classes)), pair.images)
    p_trained = _softmax64(trained(profile, run_name), pair.images)
    probs = pd.DataFrame(torch.cat([p_init, p_trained]).T.numpy(), columns=list(PAIR_COLUMNS),
                         index=pd.Index(pair.classes, name="class"))
    return PairOutputs((int(i), int(j)), pair.images, pair.labels, pair.classes, probs,
                       float(metrics.kl(p_init[0], p_init[1])), float(metrics.kl(p_trained[0], p_trained[1])))


# --------------------------------------------------------------------------- checks of the probes' inputs
def _one_image(model: nn.Module, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x`` (C, H, W) or (1, C, H, W), checked against the model, as a batch of one."""
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        x = x[None]
    checks.images(model, x, name)
    if len(x) != 1:
        raise ValueError(f"{name} must be one image (C, H, W), got a batch of {len(x)}")
    return x.detach()


def _radius(eps: Any, name: str = "eps") -> float:
    """``eps`` checked to be a finite number > 0."""
    return checks.number(eps, name, 0.0, low_open=True)


# --------------------------------------------------------------------------- 02: the Fisher direction
@dataclass
class FisherDirection:
    """One image's top Fisher eigen-direction against its L2 KL-PGD perturbation (:func:`fisher_direction`).

    ``eigenvector`` ``v`` (unit, float64, shape of the image; its sign is arbitrary) and ``eta`` (the PGD
    perturbation, ``||eta||_2 <= eps``); ``kl_plus`` / ``kl_minus`` = KL(f(x)||f(x +- eps v)), ``kl_pgd`` =
    KL(f(x)||f(x + eta)), nats; ``cos`` = |cos(eta, v)|.
    """

    image: torch.Tensor
    label: int | str | None
    eps: float
    lambda_max: float
    eigenvector: torch.Tensor
    eta: torch.Tensor
    kl_plus: float
    kl_minus: float
    kl_pgd: float
    cos: float

    @property
    def prediction(self) -> float:
        """Eq. 12's worst-case KL in the ball, ``1/2 lambda_max eps^2`` (nats)."""
        return 0.5 * self.lambda_max * self.eps ** 2

    @property
    def table(self) -> pd.DataFrame:
        """The attained KL along ``+eps v``, ``-eps v`` and after KL-PGD against the prediction (and their ratio)."""
        kl = [self.kl_plus, self.kl_minus, self.kl_pgd]
        return pd.DataFrame({"KL": kl, "1/2 lambda_max eps^2": self.prediction,
                             "KL / prediction": np.array(kl) / self.prediction},
                            index=pd.Index(["+eps v", "-eps v", "L2 KL-PGD"], name="perturbation"))


def fisher_direction(model: nn.Module, x: torch.Tensor, y: int | str | None = None, eps: float = 1.0,
                     seed: int = 0) -> FisherDirection:
    """Probe 02 on one image ``x`` (C, H, W) in [0, 1] (``y``: its label, kept for display): ``lambda_max`` and the
    top eigenvector ``v`` of ``F_x``, and in the L2 ball of radius ``eps`` (pixel units; 8/255 in L-inf has the L2
    norm 1.74 on 32 x 32 colour images) the KL along ``+-eps v`` and after L2 KL-PGD (20 steps of eps/4, uniform
    start drawn from ``seed``): eq. 12 of the ``eq12`` evaluation (:func:`cckl_core.evaluations.l2_ball`), float64."""
    x = _one_image(model, x)
    eps = _radius(eps)
    checks.integer(seed, "seed", minimum=0)
    model64 = copy.deepcopy(model).double().eval()
    x64 = x.double()
    stats = fisher.fisher_stats(model64, x64, eigenvector=True)
    v = stats["eigenvector"]
    with torch.no_grad():
        p = torch.softmax(model64(x64), 1)
    ball = evaluations.l2_ball(model64, x64, p, v, eps, seed)
    return FisherDirection(x[0], y, eps, float(stats["spectral"][0]), v[0], ball["eta"][0].cpu(),
                           float(ball["kl_plus"][0]), float(ball["kl_minus"][0]), float(ball["kl_pgd"][0]),
                           float(ball["cos"][0]))


def _display(t: torch.Tensor) -> np.ndarray:
    """A signed perturbation (C, H, W) as an RGB image: 0 is grey, the largest |value| reaches 0 or 1."""
    a = t.detach().double().cpu().numpy()
    scale = np.abs(a).max()
    return (0.5 + 0.5 * a / scale if scale > 0 else 0.5 + 0 * a).transpose(1, 2, 0)


def plot_fisher_direction(result: FisherDirection, title: str | None = None,
                          stamp: tuple | None = None) -> tuple[Any, np.ndarray]:
    """The image, the top eigenvector ``v`` of ``F_x`` and the KL-PGD perturbation ``eta`` side by side (``v``
    and ``eta`` scaled for display: grey is 0; ``v`` drawn with the sign that points it along ``eta``), with
    lambda_max, eq. 12's prediction and the attained KL; ``stamp`` = (data set, profile, model) names them
    (:func:`cckl_core.plotting.stamp`)."""
    from . import plotting
    fig, axes = plotting.panels(3, layout="constrained")
    label = "" if result.label is None else f" (label {result.label})"
    sign = 1.0 if float((result.eta.double() * result.eigenvector.double()).sum()) >= 0 else -1.0  # v's sign is free
    panels = [(result.image.detach().cpu().numpy().transpose(1, 2, 0).clip(0, 1), f"image x{label}"),
              (_display(sign * result.eigenvector), f"top eigenvector {'' if sign > 0 else '-'}v of F_x\n"
                                                    f"lambda_max = {result.lambda_max:.3g}"),
              (_display(result.eta), f"L2 KL-PGD eta, ||eta||_2 <= {result.eps:.3g}\n|cos(eta, v)| = {result.cos:.3f}")]
    for ax, (img, text) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(text, fontsize=9)
    fig.suptitle(title or (f"eq. 12: 1/2 lambda_max eps^2 = {result.prediction:.3g}; attained KL: "
                           f"+-eps v {max(result.kl_plus, result.kl_minus):.3g}, PGD {result.kl_pgd:.3g} nats"),
                 fontsize=9)
    if stamp is not None:
        plotting.stamp(fig, *stamp)
    return fig, axes


# --------------------------------------------------------------------------- 03: KL = G1 + G2 of a pair
def pair_decomposition(models: Mapping[str, nn.Module], x_i: torch.Tensor, x_j: torch.Tensor) -> pd.DataFrame:
    """Probe 03: for each model (by name), ``KL(f(x_i)||f(x_j))``, ``G1 = 1/2 (x_j - x_i)^T F_{x_i} (x_j - x_i)``,
    ``G2 = KL - G1`` and ``G2/KL`` of one pair of images (C, H, W) (:func:`cckl_core.fisher.kl_g1_g2`, as the
    ``fig5`` evaluation measures its pairs). Rows: the models; columns :data:`DECOMPOSITION_COLUMNS`."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping of name -> model")
    rows = {}
    for name, model in models.items():
        a, b = _one_image(model, x_i, "x_i"), _one_image(model, x_j, "x_j")
        if torch.equal(a, b):
            raise ValueError("x_i and x_j are the same image (KL = G1 = 0, G2/KL undefined); pick two different images")
        r = fisher.kl_g1_g2(model, a, b)
        kl, g1, g2 = (float(r[k][0]) for k in ("kl", "g1", "g2"))
        rows[name] = [kl, g1, g2, g2 / kl if kl > 0 else float("nan")]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(DECOMPOSITION_COLUMNS)).rename_axis("model")


# --------------------------------------------------------------------------- 04: the Fisher term's error
def fisher_term_error(model: nn.Module, x: torch.Tensor, eps_255: Sequence[float] = evaluations.TABLE2_EPS,
                      seed: int = 0) -> pd.DataFrame:
    """Probe 04: at the L-inf KL-PGD perturbation ``eta`` of radius eps = k/255 for each ``k`` of ``eps_255``,
    ``KL(f(x)||f(x + eta))``, ``G1 = 1/2 eta^T F_x eta``, ``|KL - G1| / KL`` (NaN where KL = 0) and the attained
    ``||eta||_inf`` in units of 1/255 (``linf_255``), exactly as the ``table2`` evaluation measures
    (:func:`cckl_core.evaluations.linf_kl_g1`: 10 steps of eps/4, TRADES start from ``seed``, attack in float32,
    KL and G1 in float64). ``x``: one image (C, H, W) -> rows by ``eps_255``; a batch (N, C, H, W) -> rows by
    (``image``, ``eps_255``). The TRADES start of an image depends on its place in the batch, so an image gives
    the evaluation's numbers when it is measured in the evaluation's batch."""
    batch = x[None] if isinstance(x, torch.Tensor) and x.ndim == 3 else x
    checks.images(model, batch, "x")
    if isinstance(eps_255, (int, float)) or not len(eps_255):
        raise ValueError(f"eps_255 must be a non-empty list of radii in units of 1/255, got {eps_255!r}")
    radii = [_radius(k, "each eps_255") for k in eps_255]
    checks.integer(seed, "seed", minimum=0)
    m = {k: v.double().numpy().T for k, v in evaluations.linf_kl_g1(model, batch.detach(), radii, seed).items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(m["kl"] > 0, np.abs(m["kl"] - m["g1"]) / m["kl"], np.nan)
    frame = pd.DataFrame({"KL": m["kl"].ravel(), "G1": m["g1"].ravel(), "|KL-G1|/KL": rel.ravel(),
                          "linf_255": 255 * m["linf"].ravel()},
                         index=pd.MultiIndex.from_product([range(len(batch)), list(eps_255)], names=["image", "eps_255"]))
    return frame.loc[0] if x.ndim == 3 else frame


__all__ = ["DECOMPOSITION_COLUMNS", "FisherDirection", "ModelUnavailableError", "PAIR_COLUMNS", "PairOutputs",
           "TERM_ERROR_COLUMNS", "TestImages", "fisher_direction", "fisher_term_error", "initial", "pair_decomposition",
           "pair_outputs", "plot_fisher_direction", "test_images", "trained"]
