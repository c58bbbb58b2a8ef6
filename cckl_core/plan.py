"""``python -m cckl_core plan``: how long a profile takes on this device, before running it.

For every run, a few steps of its model and objective are timed on random inputs on the
present device (no data needed), and per-image unit costs are combined with the profile's
sizes:

- training: ``epochs * ceil(n_train / batch) * t_step``;
- per-epoch evaluation (``epochs + 1`` times): ``n_test * t_fwd + fisher_n * t_fisher + robust_n * 10 * t_fb``;
- cached evaluations (the roles the run plays): Table 1 ``n_eval * (t_fwd + 2 k t_fb)``, Figure 5
  ``n_pairs * t_pair``, Figure 9 ``n_fig9 * (k t_fb + t_fisher)``, eq. 12 ``n_eq12 * (t_fisher64 +
  280 t_fb64)``, Table 2 ``n_table2 * (80 t_fb + 8 t_pair64)``, Theorem 3.1 ``2 n_test t_fwd``,

where ``t_fb`` is one forward + input-gradient pass (an attack step), ``t_pair`` one
``kl_g1_g2`` pair, ``k`` the attack steps. The training step is timed at the run's own batch
size (see :func:`unit_costs` for the CPU exception). Data loading and start-up are not included.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from types import MappingProxyType
from typing import Callable

import torch

from . import attacks, evaluations, fisher, models
from .devices import autocast, resolve_device
from .profiles import Profile, RunConfig
from .objectives import make_optimizer, step

#: Images in the full splits, for ``n_train = 0`` / ``n_test = 0`` (no data is read).
FULL_SIZES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000), "synthetic": (2000, 500)}


def _timeit(fn, device: torch.device, budget: float = 1.0, max_reps: int = 5) -> float:
    """Seconds per call of ``fn``: one warm-up call, then repeats until ``budget`` seconds or ``max_reps``."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    reps, start = 0, time.perf_counter()
    while reps < max_reps:
        fn()
        reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if time.perf_counter() - start > budget:
            break
    return (time.perf_counter() - start) / reps


def unit_costs(cfg: RunConfig, device: torch.device, probe: int | None = None, eval_probe: int | None = None,
               max_step_seconds: float = 20.0, budget: float = 1.0) -> dict[str, float]:
    """Seconds per image of a training step (:func:`cckl_core.objectives.step`), a forward pass, an
    attack step (fp32/precision and fp64), the Fisher statistics (fp32 and fp64) and a ``kl_g1_g2``
    pair, for the run config ``cfg``; on CUDA also ``peak_bytes``, the device memory a training
    step at the run's batch size took (what :mod:`cckl_core.schedule` packs runs on a GPU by).

    The training step is timed at the run's batch size (``probe`` overrides), except on the CPU
    when a step at batch 8 predicts more than ``max_step_seconds`` for the full batch: then it is
    timed at batch 8 and scaled per image (an over-estimate: small batches cost more per image).
    Evaluation costs are timed at ``eval_probe`` images (default 256 on CUDA, 64 on the CPU); each
    timing repeats for about ``budget`` seconds (the scheduler, which only orders runs, asks for less).
    """
    num_classes = cfg.num_classes
    reps = 5 if budget >= 1.0 else 2
    model, channels_last = models.fresh(cfg, num_classes, device)
    opt, _ = make_optimizer(model, cfg)

    def batch(n: int, dtype=torch.float32):
        x = torch.rand(n, 3, 32, 32, device=device, dtype=dtype)
        if channels_last and dtype == torch.float32:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, num_classes, (n,), device=device)

    def train_step(x, y):
        step(model, opt, None, x, y, cfg)

    if probe is None:
        probe = cfg.batch_size
        if device.type == "cpu" and probe > 8:
            small = batch(8)
            start = time.perf_counter()
            train_step(*small)
            if (time.perf_counter() - start) * probe / 8 > max_step_seconds:
                probe = 8
    x, y = batch(probe)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    costs = {"step": _timeit(lambda: train_step(x, y), device, budget, max_reps=min(3, reps)) / probe}
    if device.type == "cuda":
        costs["peak_bytes"] = float(torch.cuda.max_memory_allocated(device)) * cfg.batch_size / probe
    costs.update(_evaluation_costs(model, cfg.precision, batch(eval_probe or (256 if device.type == "cuda" else 64)),
                                   device, budget, reps))
    return costs


def _evaluation_costs(model: torch.nn.Module, precision: str, batch: tuple, device: torch.device, budget: float,
                      reps: int) -> dict[str, float]:
    """Seconds per image of a forward pass, an attack step, the Fisher statistics and a ``kl_g1_g2`` pair on
    ``batch`` (and in float64 on an eighth of it), each timed for about ``budget`` seconds."""
    x, y = batch
    n_eval = len(x)

    def forward():
        with torch.no_grad():
            model.eval()(x)

    def attack_step(m, inp):
        with autocast(device, precision if inp.dtype == torch.float32 else "fp32"):
            attacks.pgd(m, inp, y[:len(inp)], eps=attacks.EPS, step=2 / 255, steps=1)

    model64 = copy.deepcopy(model).double().eval()
    x64 = x.double()[: max(1, n_eval // 8)]
    return {
        "fwd": _timeit(forward, device, budget, reps) / n_eval,
        "fb": _timeit(lambda: attack_step(model, x), device, budget, reps) / n_eval,
        "fisher": _timeit(lambda: fisher.fisher_stats(model, x), device, budget, reps) / n_eval,
        "pair": _timeit(lambda: fisher.kl_g1_g2(model, x, x.flip(0)), device, budget, reps) / n_eval,
        "fb64": _timeit(lambda: attack_step(model64, x64), device, budget, reps) / len(x64),
        "fisher64": _timeit(lambda: fisher.fisher_stats(model64, x64), device, budget, reps) / len(x64),
        "pair64": _timeit(lambda: fisher.g1(model64, x64, x64.flip(0) - x64), device, budget, reps) / len(x64),
    }


def flop_costs(cfg: RunConfig) -> dict[str, float]:
    """:func:`unit_costs`' keys in floating-point operations per image instead of seconds, from
    nothing but the model's forward cost ``F`` (``torch.utils.flop_counter`` on one image):
    ``fwd = F``, ``fb = 3F`` (forward + backward), ``step`` = ``3F`` (standard),
    ``(k + 1) 3F`` (PGD-AT) or ``k 3F + 7F`` (TRADES: ``k`` attack steps, the clean target,
    a training pass over two branches), ``fisher = (1 + 2C) F`` (``C`` Jacobian rows),
    ``pair = 2 fisher``, float64 variants 3x. A size for ordering runs (largest first, so
    that parallel jobs finish together), not a time.
    """
    from torch.utils.flop_counter import FlopCounterMode

    num_classes = cfg.num_classes
    model, _ = models.fresh(cfg, num_classes, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.rand(1, 3, 32, 32))
    f, k = float(counter.get_total_flops()), cfg.attack_steps
    train = {"standard": 3 * f, "pgd_at": (k + 1) * 3 * f, "trades": k * 3 * f + 7 * f}[cfg.objective]
    fisher_ = (1 + 2 * num_classes) * f
    return {"step": train, "fwd": f, "fb": 3 * f, "fisher": fisher_, "pair": 2 * fisher_,
            "fb64": 9 * f, "fisher64": 3 * fisher_, "pair64": 6 * fisher_}


def by_size(profile: Profile, names: list[str] | None = None) -> list[str]:
    """Run names by :func:`estimate` under :func:`flop_costs`, largest first (ties in profile order)."""
    names = list(profile.runs) if names is None else names
    size = {n: estimate(profile, profile.run(n), flop_costs(profile.run(n)))["total"] for n in names}
    return sorted(names, key=lambda n: -size[n])


def estimate(profile: Profile, cfg: RunConfig, costs: dict[str, float]) -> dict[str, float]:
    """Estimated seconds of training, per-epoch evaluation and cached evaluations of run ``cfg``."""
    full_train, full_test = FULL_SIZES.get(cfg.dataset, (cfg.n_train, cfg.n_test))
    n_train, n_test = cfg.n_train or full_train, cfg.n_test or full_test
    ev = profile.evaluation
    k = ev.pgd_steps
    steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    train = steps * cfg.batch_size * costs["step"]
    per_epoch = (min(cfg.fisher_n, n_test) * costs["fisher"] + n_test * costs["fwd"]
                 + min(cfg.robust_n, n_test) * 10 * costs["fb"]) * (cfg.epochs + 1)
    size = {"table1": ev.n_eval or n_test, "fig9": min(ev.n_fig9, n_test), "table2": min(ev.n_table2, n_test),
            "eq12": min(ev.n_eq12, n_test), "fig5": ev.n_pairs, "theorem": ev.n_theorem or n_test}
    per_image = {"table1": costs["fwd"] + 2 * k * costs["fb"], "fig5": costs["pair"],
                 "fig9": k * costs["fb"] + costs["fisher"] + costs["fwd"],
                 "eq12": costs["fisher64"] + (len(evaluations.EQ12_L2_RADII) + len(evaluations.EQ12_LINF_RADII)) * 20 * costs["fb64"],
                 "table2": len(evaluations.TABLE2_EPS) * (10 * costs["fb"] + costs["pair64"]),
                 "theorem": 2 * costs["fwd"]}
    evals = sum(size[e] * per_image[e] for e in evaluations.needed(profile, cfg.name))
    return {"steps": steps, "train": train, "per_epoch_eval": per_epoch, "evaluations": evals,
            "total": train + per_epoch + evals}


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def print_sizing(profile: Profile, out: Callable[[str], None] = print, runs_: list[str] | None = None) -> None:
    """Print the profile's ``[sizing]``: each sized run's training and evaluation seconds on the device
    it was sized for, their sum S, the expected wall time one run after another (S + overhead) and
    the same with the margin on the throughputs (margin * S + overhead). With ``runs_``, only those runs
    (and their sums)."""
    sz = profile.sizing
    if sz is None:
        raise ValueError(f"profile {profile.name!r} has no [sizing] section; `plan --profile {profile.name}` "
                         "(without --sizing) times its runs on this machine")
    selected = list(profile.runs) if runs_ is None else list(runs_)
    for n in selected:
        profile.run(n)  # an unknown run is one line
    if runs_ is not None:
        sz = replace(sz, runs=MappingProxyType({n: sz.runs[n] for n in selected if n in sz.runs}))
    picked = "" if runs_ is None else f", runs {', '.join(selected)}"
    out(f"sizing of profile {profile.name} (written in {profile.path.name if profile.path else 'the profile'}), "
        f"for {sz.device}{picked}")
    out(f"{'run':28s} {'train':>9s} {'evals':>9s} {'total':>9s}")
    for name, (train, evals) in sz.runs.items():
        out(f"{name[:28]:28s} {fmt_seconds(train):>9s} {fmt_seconds(evals):>9s} {fmt_seconds(train + evals):>9s}")
    unsized = [n for n in selected if n not in sz.runs]
    if unsized:
        out(f"not sized: {', '.join(unsized)}")
    out(f"expected {sz.expected_s():.0f} s = {sz.expected_s() / 60:.1f} min one run after another "
        f"({sz.compute_s():.0f} s of training and evaluation + {sz.overhead_s:.0f} s start-up)")
    out(f"with the {sz.margin:g}x margin on the throughputs: {sz.with_margin_s():.0f} s = "
        f"{sz.with_margin_s() / 60:.1f} min")


def plan(profile: Profile, device: str = "auto", probe: int | None = None, runs_: list[str] | None = None,
         out: Callable[[str], None] = print, eval_probe: int | None = None) -> list[dict]:
    """Time each run's unit costs on ``device`` and print the estimate table (after the profile's
    sizing, when it has one: :func:`print_sizing`); returns its rows (``run``, ``optional``,
    ``steps``, ``train``, ``per_epoch_eval``, ``evaluations``, ``total`` in seconds, and on CUDA
    ``peak_bytes``)."""
    if profile.sizing is not None:
        print_sizing(profile, out, runs_)
    dev = resolve_device(device)
    names = runs_ or list(profile.runs)
    rows = []
    threads = torch.get_num_threads()
    out(f"plan for profile {profile.name} on {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                                                      f" ({threads} thread{'' if threads == 1 else 's'})"))
    out(f"{'run':28s} {'model':12s} {'objective':9s} {'prec':4s} {'epochs':>6s} {'steps':>7s} {'train':>9s} "
        f"{'epoch eval':>10s} {'evals':>9s} {'total':>9s}")
    for name in names:
        cfg = profile.run(name)
        costs = unit_costs(cfg, dev, probe, eval_probe)
        est = estimate(profile, cfg, costs)
        rows.append({"run": name, "optional": cfg.optional, **est,
                     **({"peak_bytes": costs["peak_bytes"]} if "peak_bytes" in costs else {})})
        out(f"{name[:28]:28s} {cfg.model[:12]:12s} {cfg.objective:9s} {cfg.precision:4s} {cfg.epochs:6d} "
            f"{est['steps']:7d} {fmt_seconds(est['train']):>9s} {fmt_seconds(est['per_epoch_eval']):>10s} "
            f"{fmt_seconds(est['evaluations']):>9s} {fmt_seconds(est['total']):>9s}"
            + ("  (optional: skipped where its data is missing; not in the total)" if cfg.optional else ""))
    counted = [r for r in rows if not r["optional"]] or rows
    total = sum(r["total"] for r in counted)
    longest = max(counted, key=lambda r: r["total"])
    out(f"total {fmt_seconds(total)} on one device ({total / 3600:.2f} h); longest run {longest['run']} "
        f"{fmt_seconds(longest['total'])} (the wall time with one device per run)")
    sized = [r for r in rows if profile.sizing is not None and r["run"] in profile.sizing.runs]
    if sized:
        timed = sum(r["total"] for r in sized)
        on_paper = sum(sum(profile.sizing.runs[r["run"]]) for r in sized)
        out(f"timed here / sized for {profile.sizing.device}: {timed / on_paper:.2f}x over the {len(sized)} sized "
            f"run(s) ({fmt_seconds(timed)} vs {fmt_seconds(on_paper)})")
    return rows
