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

``python -m cckl_core.costs --profile P`` writes the table; ``make paper`` writes it through
``python -m cckl_core.report --profile P --costs``, just before the summary that lists it.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

import pandas as pd

from . import evaluations, profiles, report, runs
from .paths import figures_root

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


def rows(profile: str) -> list[dict]:
    """One record per finished (run, seed) of ``profile`` in the cache (see the module docstring)."""
    prof = profiles.load(profile)
    out = []
    for name in prof.runs:
        for seed in sorted(set(prof.seeds) | set(runs.seeds_present(prof.name, name))):
            try:
                run = runs.load(prof.name, name, weights=False, seed=seed)
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
                "precision": run.config.get("precision", "fp32"), "device": _device(env),
                "epochs": len(run.history) - 1,
                "train_min": _minutes(sum(rec.get("train_seconds") or 0.0 for rec in run.history)),
                "run_wall_min": _minutes(_wall_seconds(env.get("started"), (run.manifest or {}).get("finished"))),
                "evaluations": f"{len(metas)}/{len(needed)}",
                "evaluations_min": _minutes(sum(m.get("seconds", 0.0) for m in metas)),
            })
    return out


def write(profile: str) -> pd.DataFrame | None:
    """Write ``figures/<profile>/compute_costs.{csv,md}``; None (and nothing written) when no run is finished."""
    records = rows(profile)
    if not records:
        return None
    df = pd.DataFrame(records)
    total = df[["train_min", "run_wall_min", "evaluations_min"]].sum(min_count=1)
    caption = (f"Compute per run ({profile}): SGD minutes, the finishing training session's wall minutes "
               f"(data loading and per-epoch evaluation included), cached evaluations' minutes. Totals: "
               f"{total['train_min']:.1f} min training, {total['run_wall_min']:.1f} min training sessions, "
               f"{total['evaluations_min']:.1f} min evaluations")
    report.table(df, TABLE, profile, caption=caption, index=False, digits=4)
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cckl_core.costs", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    try:
        df = write(args.profile)
    except profiles.ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if df is None:
        print(f"[cckl] no finished run of profile {args.profile!r} in the cache: no cost table written")
    else:
        print(f"[cckl] {figures_root() / args.profile / TABLE}.md: {len(df)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
