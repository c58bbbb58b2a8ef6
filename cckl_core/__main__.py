"""Command line: ``python -m cckl_core {train,runs,list,deps}``.

- ``train --profile P --run NAME [--device auto|cpu|cuda]``: train (or resume, or find
  cached) one run; a cluster job array can call this once per run.
- ``runs --profile P``: a table of the profile's runs, their state and last metrics.
- ``list --profile P``: the run names, one per line.
- ``deps --profile P``: Makefile rules (run targets, notebook prerequisites).
"""
from __future__ import annotations

import argparse
import sys

from . import profiles, runs
from .devices import configure_threads
from .data import DataNotFoundError
from .training import NonFiniteLossError

#: Which roles (see the profiles' [roles]) each notebook reads.
NOTEBOOK_ROLES = {
    "01_theorem_check": ["fig2_standard", "fig6_cifar10", "fig6_cifar100"],
    "02_fisher_growth": ["fig3_standard", "fig3_pgd_at", "fig3_trades", "fig8_standard", "fig8_pgd_at",
                         "fig8_trades", "fig9_robust"],
    "03_capacity_study": ["table1", "fig5"],
    "04_appendix_c_table": ["table2"],
}


def _runs_of(profile: profiles.Profile, notebook: str) -> list[str]:
    out: list[str] = []
    for role in NOTEBOOK_ROLES[notebook]:
        names = profile.roles.get(role, [])
        for n in [names] if isinstance(names, str) else names:
            if n not in out:
                out.append(n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cckl_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_train = sub.add_parser("train", help="train, resume or find one cached run")
    p_train.add_argument("--profile", default=None, help=f"one of {', '.join(profiles.names())} (default: $CCKL_PROFILE, else paper with CUDA, quick without)")
    p_train.add_argument("--run", required=True, help="run name from the profile (see `list`)")
    p_train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p_train.add_argument("--no-progress", action="store_true")
    for name in ("runs", "list", "deps"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default=None)
    args = parser.parse_args(argv)

    try:
        profile = profiles.load(args.profile)
        if args.cmd == "train":
            if args.run not in profile.runs:
                raise ValueError(f"profile {profile.name!r} has no run {args.run!r}; its runs: {', '.join(profile.runs)}")
            configure_threads()  # $CCKL_THREADS, else every core
            try:
                run = runs.get_or_train(profile.name, args.run, device=args.device, progress=not args.no_progress)
            except runs.RunSkipped as skip:
                print(f"[cckl] {skip}")
                return 0
            last = run.history[-1]
            print(f"[cckl] {profile.name}/{args.run}: {last['epoch']} epochs, test acc {last['test_acc']:.4f}, "
                  f"mean ||F||_F {last['fisher_fro_mean']:.4g}, at {run.path}")
        elif args.cmd == "runs":
            rows = runs.status(profile.name)
            print(f"{'run':28s} {'model':18s} {'objective':9s} {'dataset':9s} {'epochs':8s} {'state':12s} {'test_acc':>8s} {'mean|F|_F':>10s}")
            for r in rows:
                acc = "" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
                fro = "" if r["fisher_fro_mean"] is None else f"{r['fisher_fro_mean']:.4g}"
                print(f"{r['run']:28s} {r['model']:18s} {r['objective']:9s} {r['dataset']:9s} {r['epochs']:8s} {r['state']:12s} {acc:>8s} {fro:>10s}")
        elif args.cmd == "list":
            print("\n".join(profile.runs))
        elif args.cmd == "deps":
            p = profile.name
            print(f"RUNS_{p} := {' '.join(profile.runs)}")
            for name in profile.runs:
                print(f"build/{p}/runs/{name}.done:\n\t$(PY) -m cckl_core train --profile {p} --run {name} --device $(DEVICE) --no-progress\n\t@mkdir -p $(@D) && touch $@")
            for nb in NOTEBOOK_ROLES:
                stamps = " ".join(f"build/{p}/runs/{n}.done" for n in _runs_of(profile, nb))
                print(f"build/{p}/{nb}.ipynb: {stamps}")
    except (ValueError, KeyError, DataNotFoundError, NonFiniteLossError, runs.RunNotFoundError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
