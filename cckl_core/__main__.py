"""The command line: ``cckl <command>`` (also ``python -m cckl_core <command>``).

A user's mistake (an unknown profile, run or device, a bad setting, missing data) ends with one
line on stderr and exit status 2; an interrupted command keeps what it finished and exits 130.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__, profiles

DESCRIPTION = ("cckl: reproduce 'Towards Disentangling Non-Robust and Robust Components in Performance Metric'. "
               "Train and evaluate a profile's runs into the cache (evaluate), render the paper's notebooks from it "
               "(make paper), move results between machines (bundle, unbundle).")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage first)
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


class _Once(argparse.Action):
    """An option that may be given once: a second value is a mistake, not an override."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, f"_seen_{self.dest}", False):
            parser.error(f"{option_string} given twice; give it once (a comma-separated list where it takes several)")
        setattr(namespace, f"_seen_{self.dest}", True)
        if isinstance(values, str) and not values.strip():
            parser.error(f"{option_string} is empty; give a value or leave the option out")
        setattr(namespace, self.dest, values)


def _prog() -> str:
    return "cckl" if Path(sys.argv[0]).name == "cckl" else "python -m cckl_core"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=_prog(), description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cckl {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser, metavar="command")
    prof_help = (f"one of {', '.join(profiles.names())} (default: $CCKL_PROFILE, else paper where CUDA is available "
                 "and quick where it is not)")

    def add(name, help_, device=False, progress=False):
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--profile", default=None, action=_Once, help=prof_help)
        if device:
            p.add_argument("--device", default="auto", action=_Once, help="auto (CUDA if present), cpu, cuda or cuda:N")
        if progress:
            p.add_argument("--no-progress", action="store_true", help="no per-epoch progress lines")
        return p

    p = add("train", "train, resume or find one cached run (no evaluations)", device=True, progress=True)
    p.add_argument("--run", required=True, action=_Once, help="run name from the profile (see `list`)")
    p.add_argument("--seed", type=int, default=None, action=_Once, help="training seed (default: the profile's first)")
    p = add("evaluate", "train what is missing and compute the cached evaluations; several runs side by side "
                        "(the one local scheduler: what `make paper` runs)", device=True, progress=True)
    p.add_argument("--run", default=None, action=_Once, help="one run (default: every run; see --runs)")
    p.add_argument("--runs", default=None, action=_Once, help="comma-separated run names (default: all)")
    p.add_argument("--seed", type=int, default=None, action=_Once,
                   help="one training seed (default: each run's seeds, as the profile gives them)")
    p.add_argument("--seeds", default=None, action=_Once, help="comma-separated training seeds")
    p.add_argument("--sample-seed", type=int, default=0, action=_Once,
                   help="sampling seed of the evaluations (test subsets, pairs; default 0: what the notebooks read)")
    p.add_argument("--jobs", type=int, default=None, action=_Once,
                   help="runs side by side (default: one per CPU core; on a GPU as many as fit in its memory)")
    p.add_argument("--no-plan", action="store_true", help="order runs by counted FLOPs instead of timing their steps "
                                                          "first (no time estimate)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one run in this process (the scheduler's)
    add("runs", "state, epochs and last accuracy of every run and seed in the cache")
    add("list", "the profile's run names")
    add("notebooks", "the paper's notebooks")
    add("default-profile", "the profile `make paper` uses when none is named")
    p = add("jobs", "how many runs `evaluate` trains side by side here, and torch threads for each", device=True)
    p.add_argument("--jobs", type=int, default=None, action=_Once, help="fix the number of jobs")
    p = add("plan", "estimate the profile's training and evaluation time on this device (times a few steps per run)",
            device=True)
    p.add_argument("--runs", default=None, action=_Once, help="comma-separated run names (default: all)")
    p.add_argument("--probe-batch", type=int, default=None, action=_Once,
                   help="images per timed training step (default: the run's batch; 8 on the CPU when a step is slow)")
    p.add_argument("--eval-probe", type=int, default=None, action=_Once,
                   help="images per timed evaluation call (default: 256 on CUDA, 64 on the CPU)")
    p.add_argument("--sizing", action="store_true",
                   help="print only the profile's [sizing] (the seconds it was sized to take, and their sums); "
                        "times nothing")
    p = add("bundle", "pack configs, histories and evaluations (no weights) into one .tar.gz")
    p.add_argument("--out", required=True, action=_Once, help="the bundle file to write, e.g. gpu-results.tar.gz")
    p = sub.add_parser("unbundle", help="unpack a bundle into the artifacts root, verified",
                       description="unpack a bundle into the artifacts root, verified")
    p.add_argument("bundle", help="a file made by `bundle`")
    p.add_argument("--profile", default=None, action=_Once, help="refuse a bundle of another profile")
    p.add_argument("--replace", action="store_true", help="replace a local run folder that holds another training")
    add("costs", "what each finished run cost, and on which device (from the cache)")
    p = add("zoo", "write results/<profile>-models.tar (the trained models `cckl_core.zoo.load` serves) from the cache")
    p.add_argument("--list", action="store_true", help="only list the models the repository carries for the profile")
    p.add_argument("--if-complete", action="store_true",
                   help="keep the carried models, with a note, when the cache lacks some weights (what `make paper` does "
                        "after rendering from a results bundle)")
    p = add("spread", "print the [seed_spread] section of a profile from the training seeds in the cache")
    p.add_argument("--machine", default="", help="a few words on the machine, recorded with the numbers")
    p = add("report", "write the compute-cost table, figures/README.md and the HTML report of a profile's figures")
    p.add_argument("--root", default=None, help="figures root (default: $CCKL_FIGURES, else build/scratch/figures)")
    p.add_argument("--notebooks", default=None, help="a folder of executed notebooks (build/<profile>/) to export to "
                                                     "HTML beside the figures")
    p = add("rehearse", "run a profile's exact runs end to end on the CPU at a few images: train, evaluate, bundle, "
                        "unbundle, render (before a GPU session)")
    p.add_argument("--out", default=None, help="folder for the rehearsal's cache and output (default: a temporary one)")
    p = add("launch", "train and evaluate every (run, seed) not yet complete: a Slurm job array or the local scheduler")
    p.add_argument("--executor", required=True, choices=("slurm", "local"),
                   help="slurm: one job array, returns after submission (see --wait); local: side by side here, waits")
    p.add_argument("--device", default="auto", action=_Once,
                   help="auto, cpu, cuda or cuda:N. slurm: auto follows the partition: a GPU per task (and CUDA) where "
                        "sinfo shows GPUs on its nodes, else no GPU request (the CPU); cpu never asks for a GPU; cuda "
                        "asks for --gpus-per-job. local: auto is CUDA if present here")
    p.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default partition)")
    p.add_argument("--gpus-per-job", type=int, default=None,
                   help="GPUs per Slurm task when the tasks use GPUs (default 1; refused with --device cpu)")
    p.add_argument("--cpus-per-task", type=int, default=None,
                   help="Slurm CPUs per task (default: the cluster's); a task's torch threads are the CPUs it is given")
    p.add_argument("--max-parallel", type=int, default=None,
                   help="tasks at a time (default: slurm all; local as `evaluate`)")
    p.add_argument("--time", default=None, help="Slurm time limit per task, HH:MM:SS (default 08:00:00; at least "
                                                "00:04:00: Slurm signals a task 90 s before it); a task at its limit "
                                                "is requeued and resumes")
    p.add_argument("--runs", default=None, action=_Once, help="comma-separated run names (default: all)")
    p.add_argument("--seeds", default=None, action=_Once, help="comma-separated seeds (default: the profile's seeds)")
    p.add_argument("--logs", default=None, help="submitit folder for logs (default: <artifacts root>/<profile>/.launch)")
    p.add_argument("--wait", action="store_true", help="slurm: block until every task has ended (read from squeue and "
                                                       "the tasks' result files; no accounting needed), then summarise")
    p.add_argument("--no-plan", action="store_true", help="local: order runs by counted FLOPs instead of timing them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:  # an interrupt while the libraries load is an interrupt too, not a traceback
        from . import runs, store
        from .data import DataNotFoundError
        from .evaluations import EvaluationMissingError
        from .paper import ResultsMissing
        from .models import NonFiniteError
    except KeyboardInterrupt:
        print("interrupted: nothing was started", file=sys.stderr)
        return 130
    try:
        return _dispatch(args)
    except (ValueError, KeyError, DataNotFoundError, NonFiniteError, runs.RunNotFoundError, EvaluationMissingError,
            ResultsMissing, PermissionError, NotADirectoryError, store.WriteError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else (err.strerror or str(err)) \
            if isinstance(err, store.WriteError) else str(err)
        print("error: " + " ".join(line.strip() for line in str(msg).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not getattr(args, "worker", False):  # a scheduler's worker: the scheduler says it once
            print("interrupted: finished epochs and evaluations are kept; run the same command to resume",
                  file=sys.stderr)
        return 130


#: The bounds of every numeric option, by its destination: the one check each command that has the option
#: runs (:func:`_check_options`), so an option means the same in every command.
_OPTION_BOUNDS = {"jobs": (1, None), "seed": (0, profiles.MAX_SEED), "sample_seed": (0, profiles.MAX_SEED),
                  "probe_batch": (1, None), "eval_probe": (1, None), "max_parallel": (1, None),
                  "cpus_per_task": (1, None), "gpus_per_job": (0, None)}
#: Options of ``launch`` that only a Slurm launch uses (``--time`` has its own note).
_SLURM_ONLY = ("partition", "gpus_per_job", "cpus_per_task", "logs", "wait")
#: Commands that read or write the artifacts root: a root that is a file is one line before anything runs.
_USES_ARTIFACTS = ("train", "evaluate", "plan", "rehearse", "runs", "costs", "bundle", "spread")  # launch: its own


def _check_options(args) -> None:
    """Check every option the command has against :data:`_OPTION_BOUNDS` and the profile name, before
    anything runs: one ``ValueError`` line naming the option."""
    for dest, (low, high) in _OPTION_BOUNDS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        flag = "--" + dest.replace("_", "-")
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ValueError(f"{flag} must be <= {high} (the largest seed torch and the notebooks take), got {value}")
    if getattr(args, "profile", None) is not None:
        profiles.check_name(args.profile)
    if args.cmd == "launch" and args.executor == "local":
        given = [f"--{d.replace('_', '-')}" for d in _SLURM_ONLY if getattr(args, d, None) not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to Slurm tasks "
                             "(--executor slurm); a local launch does not use it: leave it out")
    if args.cmd == "plan" and args.sizing:
        for flag in ("probe_batch", "eval_probe"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} times a step; --sizing times nothing: give one of them")


def _check_artifacts_root() -> None:
    from .paths import artifacts_root
    root = artifacts_root()
    for p in [root, *root.parents]:
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"the artifacts root {root} is not usable: {p} is a file, not a folder "
                                 "(set CCKL_ARTIFACTS to a folder)")
            break


def _selection(profile: profiles.Profile, args) -> list[profiles.RunConfig]:
    from .launch import check_selection, parse_list

    if args.run is not None and args.runs is not None:
        raise ValueError("give --run or --runs, not both")
    if args.seed is not None and args.seeds is not None:
        raise ValueError("give --seed or --seeds, not both")
    names = [args.run] if args.run is not None else parse_list(args.runs, "--runs")
    seeds = [args.seed] if args.seed is not None else parse_list(args.seeds, "--seeds", int)
    names, seeds = check_selection(profile, names, seeds)
    return profile.configs(names, seeds)


def _dispatch(args) -> int:
    from . import runs
    from .devices import configure_threads, resolve_device

    _check_options(args)
    if args.cmd == "unbundle":
        from . import bundle
        _check_artifacts_root()
        manifest = bundle.extract(args.bundle, args.profile, replace=args.replace)
        print(f"[cckl] unpacked {len(manifest['runs'])} runs of profile {manifest['profile']} from {args.bundle}")
        return 0
    if args.cmd == "notebooks":
        from .paper import NOTEBOOKS
        print("\n".join(NOTEBOOKS))
        return 0
    if args.cmd == "default-profile":
        print(profiles.check_name(args.profile) if args.profile else profiles.default_to_compute())
        return 0
    profile = profiles.load(args.profile)
    if args.cmd in _USES_ARTIFACTS:
        _check_artifacts_root()
    if getattr(args, "device", None) is not None and getattr(args, "executor", None) != "slurm":
        resolve_device(args.device)  # fail early, in one line, on a device this machine lacks (Slurm: the nodes')
    if args.cmd in ("train", "evaluate", "plan"):
        configure_threads()  # $CCKL_THREADS, else the CPUs this process may use
    if args.cmd == "train":
        from .trainer import train
        cfg = profile.run(args.run, args.seed)
        try:
            run = train(cfg, device=args.device, progress=not args.no_progress)
        except runs.RunSkipped as skip:
            print(f"[cckl] {skip}")
            return 0
        last = run.history[-1]
        print(f"[cckl] {cfg.label}: {last['epoch']} epochs, test acc {last['test_acc']:.4f}, robust acc "
              f"{last.get('robust_acc', float('nan')):.4f}, mean ||F||_F {last['fisher_fro_mean']:.4g}, at {run.path}")
    elif args.cmd == "evaluate":
        return _evaluate(profile, args)
    elif args.cmd == "runs":
        rows = runs.status(profile)
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
    elif args.cmd == "jobs":
        from . import schedule
        n = len(profile.configs())
        slots, threads = (schedule.gpu_slots(args.jobs) if resolve_device(args.device).type == "cuda"
                          else schedule.cpu_slots(n, args.jobs))
        for s in slots:
            mem = f", {s.memory / 2 ** 30:.0f} GiB shared by memory" if s.memory < float("inf") else ""
            print(f"{s.device}: up to {s.capacity} runs side by side{mem}, {threads} torch thread(s) each")
    elif args.cmd == "plan":
        from .launch import parse_list
        from .plan import plan, print_sizing
        names = parse_list(args.runs, "--runs")
        for n in names or []:
            profile.run(n)
        if args.sizing:
            print_sizing(profile, runs_=names)
        else:
            plan(profile, args.device, args.probe_batch, names, eval_probe=args.eval_probe)
    elif args.cmd == "launch":
        from . import launch
        try:
            return launch.run_cli(profile, args)
        except launch.MissingExtraError as err:
            raise ValueError(str(err)) from None
    elif args.cmd == "bundle":
        from . import bundle
        manifest = bundle.create(profile, Path(args.out))
        print(f"[cckl] {args.out}: {len(manifest['runs'])} runs, {manifest['files']} files, "
              f"{manifest['bytes'] / 2 ** 20:.2f} MiB (no weights)")
        for m in manifest["missing"]:
            print(f"[cckl] not in the bundle (not finished): {m}")
    elif args.cmd == "costs":
        import pandas as pd

        from . import costs, tables
        rows = costs.rows(profile)
        print(tables.markdown_table(pd.DataFrame(rows)) if rows else f"[cckl] no finished run of {profile.name} in the cache")
    elif args.cmd == "zoo":
        from . import zoo
        if args.list:
            print("\n".join(zoo.names(profile.name)))
            return 0
        try:
            made = zoo.pack(profile.name)
        except zoo.IncompleteCache as err:
            if not args.if_complete:
                raise
            print(f"[cckl] kept {zoo.archive_path(profile.name)}: {err}")
            return 0
        kinds = sorted({m["dtype"] for m in made["models"].values()})
        print(f"[cckl] {zoo.archive_path(profile.name)}: {len(made['models'])} trained models ({', '.join(kinds)}), "
              f"{made['bytes'] / 2 ** 20:.1f} MiB" + ("" if made["written"] else ", up to date (the weights in the cache "
                                                      "are those it holds)"))
    elif args.cmd == "spread":
        from .paper.capacity_study import spread_toml
        print(spread_toml(profile, machine=args.machine), end="")
    elif args.cmd == "report":
        from . import report
        return report.main(profile, args.root, args.notebooks)
    elif args.cmd == "rehearse":
        from . import rehearsal
        return rehearsal.main(profile, args.out)
    return 0


def _evaluate(profile: profiles.Profile, args) -> int:
    from . import evaluations, runs, schedule

    configs = _selection(profile, args)
    if args.worker or (len(configs) == 1 and args.jobs in (None, 1)):
        cfg = configs[0]
        try:
            done = evaluations.evaluate_run(profile, cfg, device=args.device, sample_seed=args.sample_seed,
                                            progress=not args.no_progress)
        except runs.RunSkipped as skip:
            print(f"[cckl] {skip}", flush=True)
            return 0
        summary = ", ".join(f"{e} {how}" + (f" in {sec:.1f} s" if how == "computed" else "") for e, how, sec in done)
        print(f"[cckl] {cfg.label}: trained; {summary or 'no evaluations needed'}", flush=True)
        return 0
    start = time.perf_counter()
    outcomes = schedule.run(profile, configs, device=args.device, jobs=args.jobs, sample_seed=args.sample_seed,
                            plan_first=not args.no_plan)
    if outcomes:
        print(f"[cckl] {profile.name}: {schedule.summary(outcomes)} in {(time.perf_counter() - start) / 60:.1f} min",
              flush=True)
    failed = [o for o in outcomes if o.status == schedule.FAILED]
    return 1 if failed else 0


def cli() -> None:
    """Entry point of the ``cckl`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
