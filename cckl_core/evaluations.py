"""Cached evaluations of a trained run: every computation the notebooks need from a model.

An evaluation is computed once per run by ``python -m cckl_core evaluate`` (:func:`compute`) and
stored in the run's folder as ``evaluations/<name>-<key>.npz`` (arrays) beside ``<name>-<key>.json``
(settings, scalar values, the SHA-256 of the ``.npz``, the run's key and the SHA-256 of the model it
was computed from; the record is sealed with the checksum of its own content). ``key`` hashes the
evaluation's settings and code version; the run key, the model checksum and the seal are checked
on every read, so a changed setting, a retrained model or an edited value is never reused. The
notebooks read these files (:func:`read`, :func:`require`) and never call a model, so they render
anywhere, from a results bundle, without weights or data.

Evaluations (the profile role whose runs need them, the settings from ``[evaluation]``):

- ``theorem`` (``fig2_standard``): logits of the test set at initialisation (the network
  rebuilt from the run's seed) and after training; the Figure 1 pair's images.
- ``table1`` (``table1``): per-image correctness, clean and under L-inf PGD-k and CW-k
  (eps 8/255, step 2/255, no random start), optionally AutoAttack, on ``n_eval`` test images.
- ``fig5`` (``fig5``): ``KL(f(x_i)||f(x_j))`` and ``G1`` over ``n_pairs`` sampled cross-class test pairs.
- ``fig9`` (``fig9_robust``): per-image ``||F_x||_F``, correctness and PGD-k robustness.
- ``eq12`` (``fig9_robust``): worst-case KL in L2 and L-inf balls against the quadratic
  (Fisher) prediction, from tiny radii up to the attack budget 8/255.
- ``table2`` (``table2``): KL and G1 at the KL-PGD perturbation for eps = 1/255 ... 8/255.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import attacks, fisher, metrics, models, runs, store
from .data import Batches
from .devices import resolve_device
from .profiles import Profile, RunConfig
from .record import predict, robust_correct

#: L2 radii of the eq. 12 check (pixel units; 8/255 in L-inf has the L2 norm 8/255 * sqrt(3072) = 1.74).
EQ12_L2_RADII = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 8 / 255 * 3072 ** 0.5)
#: L-inf radii of the eq. 12 sweep, up to the attack budget (in units of 1/255).
EQ12_LINF_RADII = (0.0625, 0.25, 1.0, 2.0, 4.0, 8.0)
TABLE2_EPS = tuple(range(1, 9))  # x 1/255


class EvaluationMissingError(LookupError):
    """An evaluation is not cached and computing it was not allowed (or is impossible here)."""


@dataclass(frozen=True)
class Spec:
    name: str
    version: int
    role: str
    keys: tuple[str, ...]  # [evaluation] keys it depends on
    compute: Callable


_REGISTRY: dict[str, Spec] = {}


def _register(name: str, version: int, role: str, keys: tuple[str, ...]):
    def wrap(fn):
        _REGISTRY[name] = Spec(name, version, role, keys, fn)
        return fn
    return wrap


def names() -> list[str]:
    return list(_REGISTRY)


def needed(profile: Profile, run_name: str) -> list[str]:
    """The evaluations run ``run_name`` needs, given the roles it plays in ``profile``."""
    roles = profile.roles_of(run_name)
    return [s.name for s in _REGISTRY.values() if s.role in roles]


def settings(profile: Profile, name: str, sample_seed: int = 0) -> dict:
    """The settings of evaluation ``name`` under ``profile``: its ``[evaluation]`` keys, the sampling seed
    and the code version (all of which key the cache)."""
    spec = _spec(name)
    out = {k: profile.evaluation[k] for k in spec.keys}
    out.update(name=name, version=spec.version, sample_seed=int(sample_seed))
    return out


def settings_key(s: dict) -> str:
    return hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]


def _spec(name: str) -> Spec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown evaluation {name!r}; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# --------------------------------------------------------------------------- storage
class Result(dict):
    """An evaluation's arrays (numpy) and scalar values by name, with ``.meta`` (settings, checksums, time)."""
    meta: dict


def _files(run: runs.Run, s: dict):
    stem = run.path / "evaluations" / f"{s['name']}-{settings_key(s)}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def read(run: runs.Run, s: dict) -> Result | None:
    """The cached result for settings ``s``, or None if absent, stale (other model or run), edited or damaged."""
    npz, meta_file = _files(run, s)
    try:
        meta = store.check_seal(store.read_json(meta_file), meta_file)
        if meta["run_key"] != run.key or meta["model_sha256"] != run.model_sha256 or meta["settings"] != s:
            return None
        payload = store.read_verified(npz, meta["npz_sha256"])
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            out = Result({k: z[k] for k in z.files})
    except (FileNotFoundError, store.CorruptedFileError, KeyError, ValueError, OSError, TypeError):
        return None
    out.update(meta.get("values", {}))
    out.meta = meta
    return out


def _write(run: runs.Run, s: dict, result: dict, seconds: float, device: torch.device) -> Result:
    arrays = {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
              for k, v in result.items() if isinstance(v, (np.ndarray, torch.Tensor))}
    values = {k: v for k, v in result.items() if k not in arrays}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    npz, meta_file = _files(run, s)
    digest = store.atomic_write_bytes(npz, buf.getvalue())
    meta = store.sealed({"settings": s, "run_key": run.key, "model_sha256": run.model_sha256, "npz_sha256": digest,
                         "values": values, "seconds": seconds, "device": str(device), "torch": torch.__version__,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    store.atomic_write_json(meta_file, meta)
    out = Result({**arrays, **values})
    out.meta = meta
    return out


def command(cfg: RunConfig, sample_seed: int = 0) -> str:
    """The command that computes the evaluations of run ``cfg`` (the one that trains it, with the sampling seed)."""
    return runs.train_command(cfg) + (f" --sample-seed {sample_seed}" if sample_seed else "")


def require(run: runs.Run, name: str, s: dict) -> Result:
    """The cached evaluation ``name`` of ``run`` with settings ``s``; :class:`EvaluationMissingError`
    naming the command that computes it when it is not cached (nothing is computed)."""
    cached = read(run, s)
    if cached is None:
        raise EvaluationMissingError(f"evaluation {name!r} of run {run.config.label} is not cached; compute it with "
                                     f"`{command(run.config, s['sample_seed'])}`")
    return cached


def compute(run: runs.Run, name: str, s: dict, device: str | torch.device = "auto", progress: bool = False) -> Result:
    """Evaluation ``name`` of ``run`` with settings ``s``: from the cache, else computed from the
    run's weights and stored (under the run folder's lock)."""
    if s.get("name") != name:
        raise ValueError(f"settings are for {s.get('name')!r}, not {name!r}")
    cached = read(run, s)
    if cached is not None:
        return cached
    with store.locked(run.path):
        cached = read(run, s)
        if cached is not None:
            return cached
        try:
            full = runs.load(run.config, weights=True, device=device)
        except runs.WeightsRemovedError as err:
            raise EvaluationMissingError(f"evaluation {name!r} of run {run.config.label} is not cached and {err}") from None
        dev = resolve_device(device)
        start = time.perf_counter()
        result = _spec(name).compute(full, s, dev, progress)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return _write(full, s, result, time.perf_counter() - start, dev)


def missing(profile: Profile, run: runs.Run, sample_seed: int = 0) -> list[str]:
    """The evaluations run ``run`` needs in ``profile`` that are not cached."""
    return [e for e in needed(profile, run.name) if read(run, settings(profile, e, sample_seed)) is None]


def evaluate_run(profile: Profile, cfg: RunConfig, device: str | torch.device = "auto", sample_seed: int = 0,
                 progress: bool = True, train: bool = True,
                 log: Callable[[str], None] | None = None) -> list[tuple[str, str, float]]:
    """Compute every missing evaluation of run ``cfg`` (training it first when ``train``).

    Returns ``(evaluation, "cached" | "computed", seconds)`` per evaluation.
    """
    from .trainer import train as train_run

    run = train_run(cfg, device=device, progress=progress, log=log) if train else runs.load(cfg)
    out = []
    for name in needed(profile, cfg.name):
        s = settings(profile, name, sample_seed)
        if read(run, s) is not None:
            out.append((name, "cached", 0.0))
            continue
        res = compute(run, name, s, device=device, progress=progress)
        out.append((name, "computed", res.meta["seconds"]))
    return out


# --------------------------------------------------------------------------- helpers
def _test_subset(run: runs.Run, n: int, seed: int):
    """``n`` class-balanced images of the run's test set (0: all of it; more than it has: an error)."""
    test = run.dataset("test", seed=run.seed)
    return test.subset(n, seed) if n else test


def _origin(data) -> np.ndarray:
    return np.arange(len(data)) if data.indices is None else data.indices.numpy()


def _attack_specs(steps: int) -> dict:
    return {"pgd": {**attacks.PGD20, "steps": steps}, "cw": {**attacks.CW20, "steps": steps}}


# --------------------------------------------------------------------------- the evaluations
@_register("theorem", 1, "fig2_standard", ("n_theorem",))
def _theorem(run: runs.Run, s: dict, dev: torch.device, progress: bool) -> dict:
    """Test-set logits at initialisation and after training (Theorem 3.1), and the Figure 1 pair."""
    test = _test_subset(run, s["n_theorem"], s["sample_seed"])
    batches = Batches(test, 500, device=dev)
    init_model, _ = models.fresh(run.config, test.num_classes, dev)
    logits_init, labels = predict(init_model, batches)
    logits_final, _ = predict(run.model, batches)
    h0, h_end = run.history[0], run.history[-1]
    pair_test = run.dataset("test", seed=run.seed)
    pair = pair_test.take(torch.tensor(h0["pair_index"]))
    with torch.no_grad():
        p_trained = torch.softmax(run.model.eval()(pair.float(dev)).double(), 1).cpu()
        p_init = torch.softmax(init_model.eval()(pair.float(dev)).double(), 1).cpu()
    # the recorded per-epoch outputs must be those of the models rebuilt here
    if not (torch.allclose(p_trained, torch.tensor(h_end["pair_probs"], dtype=torch.float64), atol=1e-3)
            and torch.allclose(p_init, torch.tensor(h0["pair_probs"], dtype=torch.float64), atol=1e-3)):
        raise RuntimeError(f"run {run.name}: the Figure 1 pair's outputs differ from those recorded in its history")
    return {"logits_init": logits_init, "logits_final": logits_final, "labels": labels, "index": _origin(test),
            "pair_images": pair.images, "pair_labels": pair.labels, "classes": list(test.classes)}


@_register("table1", 1, "table1", ("n_eval", "pgd_steps", "autoattack", "n_autoattack"))
def _table1(run: runs.Run, s: dict, dev: torch.device, progress: bool) -> dict:
    """Per-image correctness clean / PGD-k / CW-k (attacks under the run's precision, predictions in fp32)."""
    test = _test_subset(run, s["n_eval"], s["sample_seed"])
    x, y = test.float(dev), test.labels.to(dev)
    out = {"labels": test.labels, "index": _origin(test), "pgd_steps": s["pgd_steps"]}
    with torch.no_grad(), models.eval_mode(run.model):
        out["correct_clean"] = torch.cat([(run.model(x[i:i + 500]).argmax(1) == y[i:i + 500]).cpu()
                                          for i in range(0, len(x), 500)])
    for key, spec in _attack_specs(s["pgd_steps"]).items():
        out[f"correct_{key}"] = robust_correct(run.model, x, y, spec, run.config.precision, batch_size=250)
    if s["autoattack"] and s["n_autoattack"] > 0:
        n_aa = min(s["n_autoattack"], len(test))
        x_adv = attacks.autoattack(run.model, x[:n_aa], y[:n_aa], eps=attacks.EPS, seed=s["sample_seed"])
        with torch.no_grad():
            out["correct_autoattack"] = (run.model(x_adv).argmax(1) == y[:n_aa]).cpu()
    return out


@_register("fig5", 1, "fig5", ("n_pairs",))
def _fig5(run: runs.Run, s: dict, dev: torch.device, progress: bool) -> dict:
    """KL(f(x_i)||f(x_j)) and G1 = 1/2 (x_j - x_i)^T F_{x_i} (x_j - x_i) over sampled cross-class pairs."""
    test = run.dataset("test", seed=run.seed)
    i, j = metrics.sample_cross_pairs(test.labels, s["n_pairs"], seed=s["sample_seed"])
    x = test.float(dev)
    parts = []
    chunk = 2048
    for a in range(0, len(i), chunk):
        ii = torch.as_tensor(i[a:a + chunk], device=dev)
        jj = torch.as_tensor(j[a:a + chunk], device=dev)
        parts.append(fisher.kl_g1_g2(run.model, x[ii], x[jj]))
    return {"i": i, "j": j, "labels": test.labels, "kl": torch.cat([p["kl"] for p in parts]),
            "g1": torch.cat([p["g1"] for p in parts]), "n_test": len(test)}


@_register("fig9", 1, "fig9_robust", ("n_fig9", "pgd_steps"))
def _fig9(run: runs.Run, s: dict, dev: torch.device, progress: bool) -> dict:
    """Per-image ||F_x||_F, clean correctness and PGD-k correctness on ``n_fig9`` test images."""
    test = _test_subset(run, s["n_fig9"], s["sample_seed"])
    x, y = test.float(dev), test.labels.to(dev)
    with torch.no_grad(), models.eval_mode(run.model):
        correct = torch.cat([(run.model(x[i:i + 500]).argmax(1) == y[i:i + 500]).cpu() for i in range(0, len(x), 500)])
    robust = robust_correct(run.model, x, y, _attack_specs(s["pgd_steps"])["pgd"], run.config.precision, 250)
    stats = fisher.fisher_stats(run.model, x, batch_size=128)
    return {"labels": test.labels, "index": _origin(test), "correct": correct, "correct_pgd": robust,
            "frobenius": stats["frobenius"], "spectral": stats["spectral"]}


# --------------------------------------------------------------------------- one image's measurements
# The evaluations below and the notebooks' live probes (:mod:`cckl_core.probes`) measure through these
# functions, so a probe on an evaluation's images gives the evaluation's numbers.
def _kl_at(model64: nn.Module, p: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
    """``KL(p || f(x_new))`` per image (CPU), ``p`` the model's outputs at the clean images."""
    with torch.no_grad():
        return metrics.kl(p, torch.softmax(model64(x_new), 1)).cpu()


def l2_ball(model64: nn.Module, x: torch.Tensor, p: torch.Tensor, v: torch.Tensor, eps: float,
            seed: int) -> dict[str, torch.Tensor]:
    """Eq. 12 in the L2 ball of radius ``eps`` around the images ``x`` (float64 model and images, ``p`` its
    outputs at ``x``, ``v`` the unit top eigenvectors of ``F_x``): ``kl_plus`` / ``kl_minus`` = KL(f(x)||f(x +- eps v)),
    ``eta`` = the L2 KL-PGD perturbation (20 steps of eps/4, uniform start drawn from ``seed``), ``kl_pgd`` =
    KL(f(x)||f(x + eta)) and ``cos`` = |cos(eta, v)|, per image."""
    x_adv = attacks.pgd(model64, x, None, eps=eps, step=eps / 4, steps=20, norm="l2", loss="kl",
                        random_start="uniform", seed=seed)
    eta = x_adv - x
    flat = eta.flatten(1)
    return {"kl_plus": _kl_at(model64, p, x + eps * v), "kl_minus": _kl_at(model64, p, x - eps * v),
            "eta": eta, "kl_pgd": _kl_at(model64, p, x_adv),
            "cos": ((flat * v.flatten(1)).sum(1).abs() / flat.norm(dim=1).clamp_min(1e-300)).cpu()}


def linf_kl_g1(model: nn.Module, x: torch.Tensor, eps_255: Sequence[float], seed: int) -> dict[str, torch.Tensor]:
    """Table 2's measurement of the images ``x``: for each radius in ``eps_255`` (units of 1/255), the L-inf
    KL-PGD perturbation ``eta`` (10 steps of eps/4, TRADES start drawn from ``seed``; the attack in the model's
    own dtype), then in float64 ``kl`` = KL(f(x)||f(x + eta)), ``g1`` = 1/2 eta^T F_x eta and ``linf`` =
    ||eta||_inf. CPU tensors (len(eps_255), N). The model is not changed (a float64 copy measures)."""
    model64 = copy.deepcopy(model).double().eval()
    x64 = x.double()
    with torch.no_grad():
        p64 = torch.softmax(model64(x64), 1)
    kls, g1s, linfs = [], [], []
    for k in eps_255:
        eps = k / 255
        x_adv = attacks.pgd(model, x, None, eps=eps, step=eps / 4, steps=10, loss="kl", random_start="trades",
                            seed=seed)
        eta = x_adv.double() - x64
        kls.append(_kl_at(model64, p64, x64 + eta))
        g1s.append(fisher.g1(model64, x64, eta).cpu())
        linfs.append(eta.flatten(1).abs().amax(1).cpu())
    return {"kl": torch.stack(kls), "g1": torch.stack(g1s), "linf": torch.stack(linfs)}


@_register("eq12", 2, "fig9_robust", ("n_eq12", "n_fig9"))
def _eq12(run: runs.Run, s: dict, dev: torch.device, progress: bool) -> dict:
    """Worst-case KL in a ball against the quadratic prediction of eqs. 10-12, in float64.

    L2 (radius ``eps``): the KL along ``+-eps v`` (top eigenvector ``v`` of ``F_x``), along a random
    unit direction and after L2 KL-PGD (20 steps of eps/4, uniform start), each over
    ``1/2 lambda_max eps^2``, and ``|cos(eta_PGD, v)|`` (:func:`l2_ball`). L-inf (radius ``eps``): the KL after
    L-inf KL-PGD (20 steps of eps/4, TRADES start) over its own quadratic term
    ``G1 = 1/2 eta^T F_x eta`` and over ``1/2 lambda_max ||eta||_2^2`` (the largest KL a
    perturbation of that L2 norm can reach in the quadratic model). Points: the first
    ``n_eq12`` correctly classified of ``n_fig9`` test images, then misclassified ones.
    """
    test = _test_subset(run, s["n_fig9"], s["sample_seed"])
    x_all = test.float(dev)
    with torch.no_grad(), models.eval_mode(run.model):
        correct = (run.model(x_all).argmax(1).cpu() == test.labels)
    order = torch.cat([torch.nonzero(correct).flatten(), torch.nonzero(~correct).flatten()])[: s["n_eq12"]]
    model64 = copy.deepcopy(run.model).double().eval()
    x = x_all.double()[order.to(dev)]
    st = fisher.fisher_stats(model64, x, eigenvector=True)
    lam, v = st["spectral"], st["eigenvector"].to(dev)
    gen = torch.Generator().manual_seed(s["sample_seed"])
    rand = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    rand = (rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).to(dev)
    with torch.no_grad():
        p = torch.softmax(model64(x), 1)
    l2 = {"eig": [], "random": [], "pgd": [], "cos": []}
    for eps in EQ12_L2_RADII:
        ball = l2_ball(model64, x, p, v, eps, s["sample_seed"])
        quad = 0.5 * lam * eps ** 2
        l2["eig"].append(torch.maximum(ball["kl_plus"], ball["kl_minus"]) / quad)
        l2["random"].append(_kl_at(model64, p, x + eps * rand) / quad)
        l2["pgd"].append(ball["kl_pgd"] / quad)
        l2["cos"].append(ball["cos"])
    linf = {"pgd_over_g1": [], "pgd_over_lam": [], "kl": []}
    for k in EQ12_LINF_RADII:
        eps = k / 255
        x_adv = attacks.pgd(model64, x, None, eps=eps, step=eps / 4, steps=20, norm="linf", loss="kl",
                            random_start="trades", seed=s["sample_seed"])
        eta = x_adv - x
        kl = _kl_at(model64, p, x_adv)
        g1 = fisher.g1(model64, x, eta).cpu()
        linf["kl"].append(kl)
        linf["pgd_over_g1"].append(kl / g1.clamp_min(1e-300))
        linf["pgd_over_lam"].append(kl / (0.5 * lam * eta.flatten(1).norm(dim=1).cpu() ** 2).clamp_min(1e-300))
    out = {f"l2_{k}": torch.stack(v_) for k, v_ in l2.items()}
    out.update({f"linf_{k}": torch.stack(v_) for k, v_ in linf.items()})
    out.update(l2_radii=np.array(EQ12_L2_RADII), linf_radii_255=np.array(EQ12_LINF_RADII),
               correct=correct[order], lambda_max=lam)
    return out


@_register("table2", 1, "table2", ("n_table2",))
def _table2(run: runs.Run, s: dict, dev: torch.device, progress: bool) -> dict:
    """KL(f(x)||f(x+eta)) and G1 = 1/2 eta^T F_x eta (float64) at the L-inf KL-PGD perturbation
    (10 steps of eps/4, TRADES start; attack in the model's float32) for eps = 1/255 ... 8/255 (:func:`linf_kl_g1`)."""
    test = _test_subset(run, s["n_table2"], s["sample_seed"])
    measured = linf_kl_g1(run.model, test.float(dev), TABLE2_EPS, s["sample_seed"])
    return {"eps_255": np.array(TABLE2_EPS), **measured, "labels": test.labels}
