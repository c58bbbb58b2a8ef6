"""What each run of a profile cost, and on which device: ``figures/<profile>/compute_costs.{csv,md}``.

Read from the run cache alone (no weights, so it works on a cache unpacked from a bundle), one row
per finished (run, seed):

- ``train_min``: the sum over epochs of the history's ``train_seconds`` (the SGD steps of each
  epoch, timed on the device);
- ``run_wall_min``: ``complete.json``'s ``finished`` minus ``environment.json``'s ``started``: the
  training session that finished the run, from loading its data to writing its weights, the
  per-epoch evaluation (test accuracy, Fisher norms, PGD-10 accuracy) included; for a resumed run
  only that last session;
- ``evaluations_min``: the sum of the ``seconds`` each cached evaluation the notebooks read recorded
  when it was computed (``evaluations`` counts them, cached / needed);
- ``device``: the GPU's name, or ``cpu (N threads)``, from ``environment.json``.

``python -m cckl_core report --profile P`` (the last step of ``make paper``) writes it beside the
figures, before the summary that lists it.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd

from . import evaluations, runs, tables
from .profiles import Profile

TABLE = "compute_costs"
_STAMP = "%Y-%m-%dT%H:%M:%S%z"


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60.0, 2)


def _wall_seconds(started: str | None, finished: str | None) -> float | None:
    """``finished - started`` in seconds, or None if either is missing or unreadable."""
    try:
        return (datetime.strptime(finished, _STAMP) - datetime.strptime(started, _STAMP)).total_seconds()
    except (TypeError, ValueError):
        return None


def _device(env: dict) -> str:
    if env.get("cuda_device"):
        return str(env["cuda_device"])
    threads = env.get("threads")
    if not threads:
        return str(env.get("device", "?"))
    return f"{env.get('device', '?')} ({threads} thread{'' if threads == 1 else 's'})"


def rows(profile: Profile) -> list[dict]:
    """One record per finished (run, seed) of ``profile`` in the cache (see the module docstring)."""
    prof = profile
    out = []
    for name in prof.runs:
        for seed in sorted(set(prof.seeds_of(name)) | set(runs.seeds_present(prof, name))):
            try:
                run = runs.load(prof.run(name, seed))
            except runs.RunNotFoundError:
                continue
            try:
                env = json.loads((run.path / "environment.json").read_text())
            except (OSError, ValueError):
                env = {}
            needed = evaluations.needed(prof, name)
            metas = [res.meta for res in (evaluations.read(run, evaluations.settings(prof, e)) for e in needed)
                     if res is not None]
            out.append({
                "run": name, "seed": seed, "model": run.display_name,
                "precision": run.config.precision, "device": _device(env),
                "epochs": len(run.history) - 1,
                "train_min": _minutes(sum(rec.get("train_seconds") or 0.0 for rec in run.history)),
                "run_wall_min": _minutes(_wall_seconds(env.get("started"), (run.manifest or {}).get("finished"))),
                "evaluations": f"{len(metas)}/{len(needed)}",
                "evaluations_min": _minutes(sum(m.get("seconds", 0.0) for m in metas)),
            })
    return out


def write(profile: Profile, folder: Path) -> pd.DataFrame | None:
    """Write ``folder/compute_costs.{csv,md}``; None (and nothing written) when no run is finished."""
    records = rows(profile)
    if not records:
        return None
    df = pd.DataFrame(records)
    total = df[["train_min", "run_wall_min", "evaluations_min"]].sum(min_count=1)
    caption = (f"Compute per run ({profile.name}): SGD minutes, the finishing training session's wall minutes "
               f"(data loading and per-epoch evaluation included), cached evaluations' minutes. Totals: "
               f"{total['train_min']:.1f} min training, {total['run_wall_min']:.1f} min training sessions, "
               f"{total['evaluations_min']:.1f} min evaluations")
    tables.write(df, TABLE, folder, caption=caption, index=False, digits=4)
    return df
