"""Command line: ``python -m cckl_core <command>`` (also installed as ``cckl``).

- ``train --profile P --run NAME [--seed S] [--device D]``: train (or resume, or find cached) one run.
- ``evaluate --profile P [--run NAME] [--seed S] [--device D]``: compute the missing cached
  evaluations (Table 1 attacks, Figure 5 pairs, ...) of one run or of all; trains what is missing.
- ``runs --profile P``: state, epochs, last accuracy / robust accuracy / Fisher norm of every run and seed.
- ``plan --profile P [--device D]``: time a few steps per run here and estimate the profile's cost.
- ``launch --profile P --executor slurm|local [...]``: one job per (run, seed) through submitit,
  each training then evaluating into the shared artifacts root (see ``cckl_core.launch``).
- ``bundle --profile P --out FILE.tar.gz`` / ``unbundle FILE.tar.gz``: results without weights, to render elsewhere.
- ``list --profile P``: run names; ``deps --profile P``: Makefile rules (runs, evaluations, notebooks);
  ``jobs --profile P [--device D] [--jobs N]``: ``JOBS THREADS``, how ``make paper`` runs them side by side.

A user's mistake (unknown profile, run or device, a bad setting, missing data) ends with one
line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import profiles

#: Which roles (see the profiles' [roles]) each notebook reads.
NOTEBOOK_ROLES = {
    "01_theorem_check": ["fig2_standard", "fig6_cifar10", "fig6_cifar100"],
    "02_fisher_growth": ["fig3_standard", "fig3_pgd_at", "fig3_trades", "fig8_standard", "fig8_pgd_at",
                         "fig8_trades", "fig9_robust"],
    "03_capacity_study": ["table1", "fig5"],
    "04_appendix_c_table": ["table2"],
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage first)
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _runs_of(profile: profiles.Profile, notebook: str) -> list[str]:
    out: list[str] = []
    for role in NOTEBOOK_ROLES[notebook]:
        names = profile.roles.get(role, [])
        for n in [names] if isinstance(names, str) else names:
            if n not in out:
                out.append(n)
    return out


def stamp_name(run: str, seed: int, profile: profiles.Profile) -> str:
    """Make's stamp for (run, seed): ``run`` for the profile's first seed, ``run.seedS`` for the others."""
    return run if seed == profile.seeds[0] else f"{run}.seed{seed}"


def _check_artifacts_root() -> None:
    from .paths import artifacts_root
    root = artifacts_root()
    for p in [root, *root.parents]:
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"the artifacts root {root} is not usable: {p} is a file, not a folder "
                                 "(set CCKL_ARTIFACTS to a folder)")
            break


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cckl_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    prof_help = f"one of {', '.join(profiles.names())} (default: $CCKL_PROFILE, else paper with CUDA, quick without)"

    def add(name, help_, device=False, run=None, seed=False):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--profile", default=None, help=prof_help)
        if run is not None:
            p.add_argument("--run", required=run, help="run name from the profile (see `list`)")
        if seed:
            p.add_argument("--seed", type=int, default=None, help="training seed (default: the profile's first)")
        if device:
            p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
            p.add_argument("--no-progress", action="store_true")
        return p

    add("train", "train, resume or find one cached run", device=True, run=True, seed=True)
    add("evaluate", "compute the missing cached evaluations of one run (or all)", device=True, run=False, seed=True)
    add("runs", "state of every run and seed in the cache")
    add("list", "run names")
    add("deps", "Makefile rules")
    p = add("jobs", "print `JOBS THREADS`: the training/evaluation jobs `make paper` runs side by side here, "
                    "and torch threads for each", device=True)
    p.add_argument("--jobs", type=int, default=None, help="fix the number of jobs (default: one per CPU core, at most "
                   "one per run; one on a GPU)")
    p = add("plan", "estimate the profile's training and evaluation time on this device", device=True)
    p.add_argument("--runs", default=None, help="comma-separated run names (default: all)")
    p.add_argument("--probe-batch", type=int, default=None, help="images per timed training step (default: the run's batch; 8 on the CPU when a full step would take > 20 s)")
    p.add_argument("--eval-probe", type=int, default=None, help="images per timed evaluation call (default: 256 on CUDA, 64 on the CPU; float64 costs use 1/8 of it)")
    p = add("bundle", "pack configs, histories and evaluations (no weights) into one .tar.gz")
    p.add_argument("--out", required=True, help="the bundle file to write, e.g. gpu-results.tar.gz")
    p = add("launch", "train and evaluate every (run, seed) not yet complete: a Slurm job array or local processes")
    p.add_argument("--executor", required=True, choices=("slurm", "local"),
                   help="slurm: one job array, returns after submission (see --wait); local: processes here, waits")
    p.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
    p.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per task (default 1)")
    p.add_argument("--cpus-per-task", type=int, default=None, help="Slurm CPUs per task (default: the cluster's)")
    p.add_argument("--max-parallel", type=int, default=None,
                   help="tasks at a time (default: slurm all; local one per GPU, on the CPU one per core)")
    p.add_argument("--time", default=None, help="time limit per task, HH:MM:SS (default: slurm 08:00:00, local none); "
                   "a task at its limit is requeued and resumes")
    p.add_argument("--runs", default=None, help="comma-separated run names (default: all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's seeds)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (a local launch gives each task its own GPU)")
    p.add_argument("--logs", default=None, help="submitit folder for logs (default: <artifacts root>/<profile>/.launch)")
    p.add_argument("--wait", action="store_true", help="slurm: block until every task has finished, then summarise")
    p = sub.add_parser("unbundle", help="unpack a bundle into the artifacts root and verify it")
    p.add_argument("bundle", help="a file made by `bundle`")
    p.add_argument("--profile", default=None, help="refuse a bundle of another profile")
    p.add_argument("--replace", action="store_true", help="delete a local run folder that holds another training")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import runs
    from .data import DataNotFoundError
    from .evaluations import EvaluationMissingError
    from .training import NonFiniteLossError

    try:
        return _dispatch(args)
    except (ValueError, KeyError, DataNotFoundError, NonFiniteLossError, runs.RunNotFoundError,
            EvaluationMissingError, PermissionError, NotADirectoryError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print("error: " + " ".join(line.strip() for line in str(msg).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished epochs and evaluations are kept; run the same command to resume", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    from . import runs
    from .devices import configure_threads, resolve_device

    if args.cmd == "unbundle":
        from . import bundle
        _check_artifacts_root()
        manifest = bundle.extract(args.bundle, args.profile, replace=args.replace)
        print(f"[cckl] unpacked {len(manifest['runs'])} runs of profile {manifest['profile']} from {args.bundle}")
        return 0
    profile = profiles.load(args.profile)
    if args.cmd in ("train", "evaluate", "plan"):
        _check_artifacts_root()
        resolve_device(args.device)  # fail early, in one line, on a device this machine lacks
        configure_threads()  # $CCKL_THREADS, else the CPUs this process may use
    if args.cmd == "train":
        if args.run not in profile.runs:
            raise ValueError(f"profile {profile.name!r} has no run {args.run!r}; its runs: {', '.join(profile.runs)}")
        try:
            run = runs.get_or_train(profile.name, args.run, device=args.device, progress=not args.no_progress,
                                    weights=False, seed=args.seed)
        except runs.RunSkipped as skip:
            print(f"[cckl] {skip}")
            return 0
        last = run.history[-1]
        print(f"[cckl] {profile.name}/{args.run} (seed {run.seed}): {last['epoch']} epochs, test acc {last['test_acc']:.4f}, "
              f"robust acc {last.get('robust_acc', float('nan')):.4f}, mean ||F||_F {last['fisher_fro_mean']:.4g}, at {run.path}")
    elif args.cmd == "evaluate":
        from . import evaluations
        names = [args.run] if args.run else list(profile.runs)
        for name in names:
            if name not in profile.runs:
                raise ValueError(f"profile {profile.name!r} has no run {name!r}; its runs: {', '.join(profile.runs)}")
            try:
                done = evaluations.evaluate_run(profile.name, name, device=args.device, seed=args.seed,
                                                progress=not args.no_progress)
            except runs.RunSkipped as skip:
                print(f"[cckl] {skip}")
                continue
            summary = ", ".join(f"{e} {how}" + (f" in {sec:.1f} s" if how == "computed" else "") for e, how, sec in done)
            print(f"[cckl] {profile.name}/{name}: {summary or 'no evaluations needed'}")
    elif args.cmd == "runs":
        rows = runs.status(profile.name)
        print(f"{'run':28s} {'seed':>4s} {'model':18s} {'objective':9s} {'dataset':9s} {'epochs':8s} {'state':26s} "
              f"{'test_acc':>8s} {'rob_acc':>8s} {'mean|F|_F':>10s}")
        for r in rows:
            acc = "" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
            rob = "" if r["robust_acc"] is None else f"{r['robust_acc']:.4f}"
            fro = "" if r["fisher_fro_mean"] is None else f"{r['fisher_fro_mean']:.4g}"
            state = r["state"] + (f" ({r['detail']})" if r["state"] == runs.CORRUPTED else "")
            print(f"{r['run']:28s} {r['seed']:4d} {r['model']:18s} {r['objective']:9s} {r['dataset'][:9]:9s} "
                  f"{r['epochs']:8s} {state:26s} {acc:>8s} {rob:>8s} {fro:>10s}")
    elif args.cmd == "list":
        print("\n".join(profile.runs))
    elif args.cmd == "deps":
        print(_deps(profile))
    elif args.cmd == "jobs":
        from . import devices
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if devices.resolve_device(args.device).type == "cuda":
            jobs = args.jobs or 1
            threads = devices.threads_per_job(jobs)
        else:
            jobs, threads = devices.cpu_job_layout(len(profile.runs) * len(profile.seeds), args.jobs)
        print(jobs, threads)
    elif args.cmd == "plan":
        from .plan import plan
        names = args.runs.split(",") if args.runs else None
        for n in names or []:
            if n not in profile.runs:
                raise ValueError(f"profile {profile.name!r} has no run {n!r}; its runs: {', '.join(profile.runs)}")
        for flag, value in (("--probe-batch", args.probe_batch), ("--eval-probe", args.eval_probe)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        plan(profile.name, args.device, args.probe_batch, names, eval_probe=args.eval_probe)
    elif args.cmd == "launch":
        from . import launch
        try:
            return launch.run_cli(profile.name, args)
        except launch.MissingExtraError as err:
            raise ValueError(str(err)) from None
    elif args.cmd == "bundle":
        from . import bundle
        manifest = bundle.create(profile.name, Path(args.out))
        print(f"[cckl] {args.out}: {len(manifest['runs'])} runs, {manifest['files']} files, "
              f"{manifest['bytes'] / 2 ** 20:.2f} MiB (no weights)")
        for m in manifest["missing"]:
            print(f"[cckl] not in the bundle (not finished): {m}")
    return 0


def _deps(profile: profiles.Profile) -> str:
    """Makefile rules: a stamp per (run, seed) for training and one for evaluation; notebooks need the latter."""
    from .plan import by_size

    p = profile.name
    lines = ["# runs largest first (plan.by_size), so that `make -j` finishes them together"]
    stamps = [(n, s, stamp_name(n, s, profile)) for n in by_size(profile) for s in profile.seeds]
    lines.append(f"RUNS_{p} := {' '.join(st for _, _, st in stamps)}")
    for name, seed, st in stamps:
        lines.append(f"build/{p}/runs/{st}.done: $(BUNDLE_DONE)\n\t$(PY) -m cckl_core train --profile {p} --run {name} "
                     f"--seed {seed} --device $(DEVICE) --no-progress\n\t@mkdir -p $(@D) && touch $@")
        lines.append(f"build/{p}/evals/{st}.done: build/{p}/runs/{st}.done\n\t$(PY) -m cckl_core evaluate --profile {p} "
                     f"--run {name} --seed {seed} --device $(DEVICE) --no-progress\n\t@mkdir -p $(@D) && touch $@")
    for nb in NOTEBOOK_ROLES:
        need = " ".join(f"build/{p}/evals/{stamp_name(n, s, profile)}.done" for n in _runs_of(profile, nb)
                        for s in profile.seeds)
        lines.append(f"build/{p}/{nb}.ipynb: {need}")
    return "\n".join(lines)


def cli() -> None:
    """Entry point of the ``cckl`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
