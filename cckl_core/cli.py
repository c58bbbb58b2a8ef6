"""The command line: ``cckl <command>`` (also ``python -m cckl_core <command>``).

One function per command (``cmd_<command>``), registered as an argparse sub-command with
``set_defaults(func=...)``. Every option that several commands take is defined once
(:func:`_options`), its value checked by its argparse ``type`` while the command line is read, so an
option means the same, and is refused with the same words, in every command.

A user's mistake (an unknown profile, run or device, a bad setting, missing data) ends with one
line on stderr and exit status 2; an interrupted command keeps what it finished and exits 130.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from . import __version__, profiles

DESCRIPTION = ("cckl: reproduce 'Towards Disentangling Non-Robust and Robust Components in Performance Metric'. "
               "Train and evaluate a profile's runs into the cache (evaluate), render the paper's notebooks from it "
               "(make paper), move results between machines (bundle, unbundle).")
#: Options of ``launch`` that only a Slurm launch uses (``--time`` has its own note).
SLURM_ONLY = ("partition", "gpus_per_job", "cpus_per_task", "logs", "wait")


class UsageError(Exception):
    """The command line cannot be read (argparse's own complaint), as one line that points to ``--help``."""


class OptionError(Exception):
    """An option's value refused by its type, as one line naming the option. Not a ``ValueError``, so that
    argparse passes it on as it is instead of rewording it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line (argparse prints the whole usage first); main returns 2
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _Once(argparse.Action):
    """An option that may be given once: a second value is a mistake, not an override."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, f"_seen_{self.dest}", False):
            parser.error(f"{option_string} given twice; give it once (a comma-separated list where it takes several)")
        setattr(namespace, f"_seen_{self.dest}", True)
        if isinstance(values, str) and not values.strip():
            parser.error(f"{option_string} is empty; give a value or leave the option out")
        setattr(namespace, self.dest, values)


# --------------------------------------------------------------------------- option types: text -> checked value
def _typed(flag: str, convert: Callable[[str], object]) -> Callable[[str], object]:
    """The argparse type of option ``flag``: blank text is refused (as :class:`_Once` refuses it), else
    ``convert(text)``, whose ``ValueError`` (a check's one line) becomes an :class:`OptionError`."""
    def typed(text: str) -> object:
        if not text.strip():
            raise OptionError(f"{flag} is empty; give a value or leave the option out")
        try:
            return convert(text)
        except ValueError as err:
            raise OptionError(str(err)) from None
    return typed


def _whole(text: str) -> int:
    """``text`` as an int; anything else is argparse's usual ``invalid int value``."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def _count(flag: str, least: int) -> Callable[[str], object]:
    """The type of a count: a whole number ``>= least``."""
    def count(text: str) -> int:
        value = _whole(text)
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
        return value
    return _typed(flag, count)


def _seed(flag: str) -> Callable[[str], object]:
    """The type of a seed: :func:`cckl_core.profiles.check_seed`, the one check of a seed."""
    return _typed(flag, lambda text: profiles.check_seed(_whole(text), flag))


def _items(flag: str, text: str) -> list[str]:
    """``"a,b,c"`` as ``["a", "b", "c"]``; a list with an empty item is a mistake."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise ValueError(f"{flag} {text!r} is empty or has an empty item; give comma-separated values, or leave "
                         f"{flag} out for all")
    return items


def _seeds(flag: str) -> Callable[[str], object]:
    """The type of a list of seeds, each checked by :func:`cckl_core.profiles.check_seed`."""
    def seeds(text: str) -> list[int]:
        items = _items(flag, text)
        if not all(t.isdecimal() for t in items):
            raise ValueError(f"{flag} must be whole numbers >= 0 separated by commas, got {text!r}")
        return [profiles.check_seed(int(t), flag) for t in items]
    return _typed(flag, seeds)


def _options() -> dict[str, dict]:
    """Every option that several commands take, defined once: its action, type (the check) and default. A
    command may say more in its own help."""
    profile_help = (f"one of {', '.join(profiles.names())} (default: $CCKL_PROFILE, else paper where CUDA is "
                    "available and quick where it is not)")
    once = {"default": None, "action": _Once}
    return {
        "--profile": {**once, "type": _typed("--profile", profiles.check_name), "help": profile_help},
        "--device": {**once, "default": "auto", "help": "auto (CUDA if present), cpu, cuda or cuda:N"},
        "--no-progress": {"action": "store_true", "help": "no per-epoch progress lines"},
        "--no-plan": {"action": "store_true", "help": "order runs by counted FLOPs instead of timing their steps "
                                                      "first (no time estimate)"},
        "--run": {**once, "help": "one run (default: every run; see --runs)"},
        "--runs": {**once, "type": _typed("--runs", lambda text: _items("--runs", text)), "help": "comma-separated run names (default: all)"},
        "--seed": {**once, "type": _seed("--seed"), "help": "training seed (default: the profile's first)"},
        "--seeds": {**once, "type": _seeds("--seeds"), "help": "comma-separated training seeds"},
        "--sample-seed": {**once, "default": 0, "type": _seed("--sample-seed"),
                          "help": "sampling seed of the evaluations (test subsets, pairs; default 0: what the notebooks read)"},
        "--jobs": {**once, "type": _count("--jobs", 1),
                   "help": "runs side by side (default: one per CPU core; on a GPU as many as fit in its memory)"},
        "--probe-batch": {**once, "type": _count("--probe-batch", 1), "help": "images per timed training step "
                          "(default: the run's batch; 8 on the CPU when a step is slow)"},
        "--eval-probe": {**once, "type": _count("--eval-probe", 1), "help": "images per timed evaluation call "
                         "(default: 256 on CUDA, 64 on the CPU)"},
        "--out": {**once, "help": "the file or folder to write"},
        "--max-parallel": {"type": _count("--max-parallel", 1), "help": "tasks at a time (default: slurm all; local "
                                                                        "as `evaluate`)"},
        "--gpus-per-job": {"type": _count("--gpus-per-job", 0), "help": "GPUs per Slurm task when the tasks use GPUs "
                                                                        "(default 1; refused with --device cpu)"},
        "--cpus-per-task": {"type": _count("--cpus-per-task", 1), "help": "Slurm CPUs per task (default: the "
                            "cluster's); a task's torch threads are the CPUs it is given"},
    }


# --------------------------------------------------------------------------- the parser
def _prog() -> str:
    return "cckl" if Path(sys.argv[0]).name == "cckl" else "python -m cckl_core"


class _Commands:
    """Adds sub-commands to a parser: each with its function, its ``--profile`` and its shared options."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser, metavar="command")
        self.options = _options()

    def add(self, name: str, help_: str, func: Callable, *flags: str, profile: bool = True,
            **own: dict) -> argparse.ArgumentParser:
        """Sub-command ``name`` running ``func(args)``, with ``--profile`` (unless not), the shared ``flags`` and
        ``own`` settings of shared options (``own={"--run": {"required": True}}``)."""
        p = self.sub.add_parser(name, help=help_, description=help_)
        for flag in ("--profile", *flags) if profile else flags:
            self.shared(p, flag, **own.get(flag.lstrip("-").replace("-", "_"), {}))
        p.set_defaults(func=func)
        return p

    def shared(self, p: argparse.ArgumentParser, flag: str, **own: object) -> None:
        """Shared option ``flag`` on sub-command ``p``, with ``own`` settings (a help of its own)."""
        p.add_argument(flag, **{**self.options[flag], **own})


def parser() -> argparse.ArgumentParser:
    """The parser of every command, in the order ``--help`` lists them."""
    top = _Parser(prog=_prog(), description=DESCRIPTION)
    top.add_argument("--version", action="version", version=f"cckl {__version__}")
    commands = _Commands(top)
    for add in (_add_training, _add_listings, _add_planning, _add_results, _add_sessions):
        add(commands)
    return top


def _add_training(c: _Commands) -> None:
    c.add("train", "train, resume or find one cached run (no evaluations)", cmd_train, "--device", "--no-progress",
          "--run", "--seed", run={"required": True, "help": "run name from the profile (see `list`)"})
    p = c.add("evaluate", "train what is missing and compute the cached evaluations; several runs side by side "
                          "(the one local scheduler: what `make paper` runs)", cmd_evaluate, "--device", "--no-progress",
              "--run", "--runs", "--seed", "--seeds", "--sample-seed", "--jobs", "--no-plan",
              seed={"help": "one training seed (default: each run's seeds, as the profile gives them)"})
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one run in this process (the scheduler's)


def _add_listings(c: _Commands) -> None:
    c.add("runs", "state, epochs and last accuracy of every run and seed in the cache", cmd_runs)
    c.add("list", "the profile's run names", cmd_list)
    c.add("notebooks", "the paper's notebooks", cmd_notebooks)
    c.add("default-profile", "the profile `make paper` uses when none is named", cmd_default_profile)


def _add_planning(c: _Commands) -> None:
    c.add("jobs", "how many runs `evaluate` trains side by side here, and torch threads for each", cmd_jobs, "--device",
          "--jobs", jobs={"help": "fix the number of jobs"})
    p = c.add("plan", "estimate the profile's training and evaluation time on this device (times a few steps per run)",
              cmd_plan, "--device", "--runs", "--probe-batch", "--eval-probe")
    p.add_argument("--sizing", action="store_true", help="print only the profile's [sizing] (the seconds it was sized "
                                                         "to take, and their sums); times nothing")


def _add_results(c: _Commands) -> None:
    c.add("bundle", "pack configs, histories and evaluations (no weights) into one .tar.gz", cmd_bundle, "--out",
          out={"required": True, "help": "the bundle file to write, e.g. gpu-results.tar.gz"})
    p = c.add("unbundle", "unpack a bundle into the artifacts root, verified", cmd_unbundle, profile=False)
    p.add_argument("bundle", help="a file made by `bundle`")
    c.shared(p, "--profile", help="refuse a bundle of another profile")
    p.add_argument("--replace", action="store_true", help="replace a local run folder that holds another training")
    c.add("costs", "what each finished run cost, and on which device (from the cache)", cmd_costs)
    p = c.add("zoo", "write results/<profile>-models.tar (the trained models `cckl_core.zoo.load` serves) from the "
                     "cache", cmd_zoo)
    p.add_argument("--list", action="store_true", help="only list the models the repository carries for the profile")
    p.add_argument("--if-complete", action="store_true",
                   help="keep the carried models, with a note, when the cache lacks some weights (what `make paper` "
                        "does after rendering from a results bundle)")
    p = c.add("spread", "print the [seed_spread] section of a profile from the training seeds in the cache", cmd_spread)
    p.add_argument("--machine", default="", help="a few words on the machine, recorded with the numbers")
    p = c.add("report", "write the compute-cost table, figures/README.md and the HTML report of a profile's figures",
              cmd_report)
    p.add_argument("--root", default=None, help="figures root (default: $CCKL_FIGURES, else build/scratch/figures)")
    p.add_argument("--notebooks", default=None, help="a folder of executed notebooks (build/<profile>/) to export to "
                                                     "HTML beside the figures")
    p = c.add("render", "run the profile's notebooks (a kernel per CPU at most) with their published parameters "
                        "(from the cache: nothing is trained), then write the report (what `make paper` runs after "
                        "`evaluate`); a notebook whose inputs are as at its last render is not run again "
                        "(cckl_core.render_state)",
              cmd_render)
    p.add_argument("--out", default=None, help="where the executed notebooks go (default: build/<profile>/)")
    p.add_argument("--root", default=None, help="figures root (default: $CCKL_FIGURES, else build/scratch/figures)")
    p.add_argument("--force", action="store_true", help="render every notebook, up to date or not")


def _add_sessions(c: _Commands) -> None:
    c.add("rehearse", "run a profile's exact runs end to end on the CPU at a few images: train, evaluate, bundle, "
                      "unbundle, render (before a GPU session)", cmd_rehearse, "--out",
          out={"help": "folder for the rehearsal's cache and output (default: a temporary one)"})
    p = c.add("launch", "train and evaluate every (run, seed) not yet complete: a Slurm job array or the local "
                        "scheduler", cmd_launch)
    p.add_argument("--executor", required=True, choices=("slurm", "local"),
                   help="slurm: one job array, returns after submission (see --wait); local: side by side here, waits")
    c.shared(p, "--device", help="auto, cpu, cuda or cuda:N. slurm: auto follows the partition: a GPU per task (and "
             "CUDA) where sinfo shows GPUs on its nodes, else no GPU request (the CPU); cpu never asks for a GPU; cuda "
             "asks for --gpus-per-job. local: auto is CUDA if present here")
    p.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default partition)")
    for flag in ("--gpus-per-job", "--cpus-per-task", "--max-parallel"):
        c.shared(p, flag)
    p.add_argument("--time", default=None, help="Slurm time limit per task, HH:MM:SS (default 08:00:00; at least "
                                                "00:04:00: Slurm signals a task 90 s before it); a task at its limit "
                                                "is requeued and resumes")
    c.shared(p, "--runs")
    c.shared(p, "--seeds", help="comma-separated seeds (default: the profile's seeds)")
    p.add_argument("--logs", default=None, help="submitit folder for logs (default: <artifacts root>/<profile>/.launch)")
    p.add_argument("--wait", action="store_true", help="slurm: block until every task has ended (read from squeue and "
                                                       "the tasks' result files; no accounting needed), then summarise")
    p.add_argument("--no-plan", action="store_true", help="local: order runs by counted FLOPs instead of timing them")


# --------------------------------------------------------------------------- running a command
def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default: ``sys.argv[1:]``); its exit status."""
    try:
        args = parser().parse_args(argv)
    except (UsageError, OptionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if not getattr(args, "worker", False):  # a scheduler's worker: the scheduler says it once
            print("interrupted: finished epochs and evaluations are kept; run the same command to resume",
                  file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        write_error = getattr(sys.modules.get(f"{__package__}.store"), "WriteError", ())
        msg = err.args[0] if isinstance(err, KeyError) and err.args else (err.strerror or str(err)) \
            if isinstance(err, write_error) else str(err)
        print("error: " + " ".join(line.strip() for line in str(msg).splitlines()), file=sys.stderr)
        return 2


#: A user's mistakes (module, class), each one line and exit status 2; with ValueError, KeyError, PermissionError
#: and NotADirectoryError.
_USER_ERRORS = (("data", "DataNotFoundError"), ("models", "NonFiniteError"), ("runs", "RunNotFoundError"),
                ("evaluations", "EvaluationMissingError"), ("paper.inputs", "ResultsMissing"),
                ("paper.execute", "RenderError"), ("store", "WriteError"))


def _user_errors() -> tuple[type, ...]:
    """The classes of :data:`_USER_ERRORS`, looked up in the modules already imported only: an error of a
    class can only come from its module, so the command line imports no more than a command needs (the
    paper's modules cost seconds)."""
    loaded = {m: sys.modules.get(f"{__package__}.{m}") for m, _ in _USER_ERRORS}
    found = [getattr(loaded[m], c) for m, c in _USER_ERRORS if loaded[m] is not None]
    return (ValueError, KeyError, PermissionError, NotADirectoryError, *found)


def cli() -> None:
    """Entry point of the ``cckl`` console script."""
    sys.exit(main())


def _check_artifacts_root() -> None:
    """One line, before anything runs, when the artifacts root (or a folder above it) is a file."""
    from .paths import artifacts_root
    root = artifacts_root()
    for p in [root, *root.parents]:
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"the artifacts root {root} is not usable: {p} is a file, not a folder "
                                 "(set CCKL_ARTIFACTS to a folder)")
            break


def _load(args: argparse.Namespace, artifacts: bool = False, threads: bool = False) -> profiles.Profile:
    """The profile a command works on, after the checks such commands share: the artifacts root (for those
    that read or write it), the device (one line now on a device this machine lacks; a Slurm launch's is the
    nodes'), and torch's threads for those that train ($CCKL_THREADS, else the CPUs this process may use)."""
    profile = profiles.load(args.profile)
    if artifacts:
        _check_artifacts_root()
    if getattr(args, "device", None) is not None and getattr(args, "executor", None) != "slurm":
        from .devices import resolve_device  # imports torch: only for the commands that run on a device
        resolve_device(args.device)
    if threads:
        from .devices import configure_threads
        configure_threads()
    return profile


# --------------------------------------------------------------------------- the commands
def cmd_train(args: argparse.Namespace) -> int:
    from . import runs
    from .trainer import train

    cfg = _load(args, artifacts=True, threads=True).run(args.run, args.seed)
    try:
        run = train(cfg, device=args.device, progress=not args.no_progress)
    except runs.RunSkipped as skip:
        print(f"[cckl] {skip}")
        return 0
    last = run.history[-1]
    print(f"[cckl] {cfg.label}: {last['epoch']} epochs, test acc {last['test_acc']:.4f}, robust acc "
          f"{last.get('robust_acc', float('nan')):.4f}, mean ||F||_F {last['fisher_fro_mean']:.4g}, at {run.path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """One run in this process (a scheduler's worker, or one run asked for), else the scheduler."""
    from . import evaluations, runs, schedule

    if args.run is not None and args.runs is not None:
        raise ValueError("give --run or --runs, not both")
    if args.seed is not None and args.seeds is not None:
        raise ValueError("give --seed or --seeds, not both")
    profile = _load(args, artifacts=True, threads=True)
    configs = profile.select([args.run] if args.run is not None else args.runs,
                             [args.seed] if args.seed is not None else args.seeds)
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
    return 1 if any(o.status == schedule.FAILED for o in outcomes) else 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from . import schedule
    from .devices import resolve_device

    n = len(_load(args).select())
    slots, threads = (schedule.gpu_slots(args.jobs) if resolve_device(args.device).type == "cuda"
                      else schedule.cpu_slots(n, args.jobs))
    for s in slots:
        mem = f", {s.memory / 2 ** 30:.0f} GiB shared by memory" if s.memory < float("inf") else ""
        print(f"{s.device}: up to {s.capacity} runs side by side{mem}, {threads} torch thread(s) each")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import plan, print_sizing

    for given in ("probe_batch", "eval_probe"):
        if args.sizing and getattr(args, given) is not None:
            raise ValueError(f"--{given.replace('_', '-')} times a step; --sizing times nothing: give one of them")
    profile = _load(args, artifacts=True, threads=True)
    if args.runs:
        profile.select(args.runs)  # every name a run of the profile, none twice
    if args.sizing:
        print_sizing(profile, runs_=args.runs)
    else:
        plan(profile, args.device, args.probe_batch, args.runs, eval_probe=args.eval_probe)
    return 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    from . import rehearsal
    return rehearsal.main(_load(args, artifacts=True), args.out)


def cmd_runs(args: argparse.Namespace) -> int:
    from . import runs

    rows = runs.status(_load(args, artifacts=True))
    print(f"{'run':28s} {'seed':>4s} {'model':18s} {'objective':9s} {'dataset':9s} {'epochs':8s} {'state':26s} "
          f"{'test_acc':>8s} {'rob_acc':>8s} {'mean|F|_F':>10s}")
    for r in rows:
        acc = "" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
        rob = "" if r["robust_acc"] is None else f"{r['robust_acc']:.4f}"
        fro = "" if r["fisher_fro_mean"] is None else f"{r['fisher_fro_mean']:.4g}"
        state = r["state"] + (f" ({r['detail']})" if r["state"] == runs.CORRUPTED else "")
        print(f"{r['run']:28s} {r['seed']:4d} {r['model']:18s} {r['objective']:9s} {r['dataset'][:9]:9s} "
              f"{r['epochs']:8s} {state:26s} {acc:>8s} {rob:>8s} {fro:>10s}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("\n".join(_load(args).runs))
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from .paper import NOTEBOOKS
    print("\n".join(NOTEBOOKS))
    return 0


def cmd_default_profile(args: argparse.Namespace) -> int:
    print(args.profile or profiles.default_to_compute())
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from . import bundle

    manifest = bundle.create(_load(args, artifacts=True), Path(args.out))
    print(f"[cckl] {args.out}: {len(manifest['runs'])} runs, {manifest['files']} files, "
          f"{manifest['bytes'] / 2 ** 20:.2f} MiB (no weights)")
    for m in manifest["missing"]:
        print(f"[cckl] not in the bundle (not finished): {m}")
    return 0


def cmd_unbundle(args: argparse.Namespace) -> int:
    from . import bundle

    _check_artifacts_root()
    manifest = bundle.extract(args.bundle, args.profile, replace=args.replace)
    print(f"[cckl] unpacked {len(manifest['runs'])} runs of profile {manifest['profile']} from {args.bundle}")
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import costs, tables

    profile = _load(args, artifacts=True)
    rows = costs.rows(profile)
    print(tables.markdown_table(pd.DataFrame(rows)) if rows else f"[cckl] no finished run of {profile.name} in the cache")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from . import zoo

    name = _load(args).name
    if args.list:
        print("\n".join(zoo.names(name)))
        return 0
    try:
        made = zoo.pack(name)
    except zoo.IncompleteCache as err:
        if not args.if_complete:
            raise
        print(f"[cckl] kept {zoo.archive_path(name)}: {err}")
        return 0
    kinds = sorted({m["dtype"] for m in made["models"].values()})
    print(f"[cckl] {zoo.archive_path(name)}: {len(made['models'])} trained models ({', '.join(kinds)}), "
          f"{made['bytes'] / 2 ** 20:.1f} MiB" + ("" if made["written"] else ", up to date (it holds the weights in the "
                                                  "cache)"))
    return 0


def cmd_spread(args: argparse.Namespace) -> int:
    from .paper.capacity_study import spread_toml
    print(spread_toml(_load(args, artifacts=True), machine=args.machine), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import report
    return report.main(_load(args), args.root, args.notebooks)


def cmd_render(args: argparse.Namespace) -> int:
    """``render``: the notebooks of the profile whose inputs changed since their last render (all with
    ``--force``; :mod:`cckl_core.render_state`) in kernels of one process
    (:func:`cckl_core.paper.execute.execute_all`), then the report with the executed notebooks as pages. When
    every notebook is up to date, nothing beyond the check is imported (no torch)."""
    from . import render_state
    from .paths import figures_root, project_root

    # the name alone (checked by --profile) keys the check: loading the profile checks its runs, which imports torch
    name = args.profile or _load(args).name
    out = Path(args.out).expanduser() if args.out else project_root() / "build" / name
    figures = Path(args.root).expanduser() if args.root else figures_root()
    done = None if args.force else render_state.up_to_date(name, out, figures)
    if done:
        print(f"[cckl] {name}: up to date, nothing rendered: the notebooks ({', '.join(done)}), the package, "
              f"the cache, the data and the environment are as at their last render, and so are its outputs "
              f"({figures / name}, {out}); `make paper RERENDER=1` renders again")
        return 0
    return _render(_load(args), out, figures, args)


def _render(profile: profiles.Profile, out: Path, figures: Path, args: argparse.Namespace) -> int:
    """The stale notebooks (all with ``--force``), then the report; the render's state recorded once both ended."""
    from . import render_state, report
    from .paper import notebooks_of
    from .paper.execute import execute_all

    start = time.perf_counter()
    notebooks = notebooks_of(profile.name)
    keys = render_state.keys(notebooks, profile.name, figures)  # taken once, before the render: kept in its state
    todo = notebooks if args.force else render_state.stale(notebooks, profile.name, out, figures, keys)
    render_state.forget(out)
    kept = [nb for nb in notebooks if nb not in todo]
    if kept:
        print(f"[cckl] up to date, not rendered again: {', '.join(kept)}")
    execute_all(profile.name, out, todo)
    code = report.main(profile, args.root, str(out))
    if code == 0:
        render_state.record(keys, profile.name, out, figures)
    print(f"[cckl] rendered {profile.name} in {time.perf_counter() - start:.0f} s; executed notebooks in {out}")
    return code


def cmd_launch(args: argparse.Namespace) -> int:
    """``launch``: 0 when no task failed, 1 otherwise."""
    from . import launch

    if args.executor == "local":
        given = [f"--{d.replace('_', '-')}" for d in SLURM_ONLY if getattr(args, d, None) not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to Slurm tasks "
                             "(--executor slurm); a local launch does not use it: leave it out")
    profile = _load(args)
    configs = profile.select(args.runs, args.seeds)
    try:
        return (_launch_local if args.executor == "local" else _launch_slurm)(profile, configs, args)
    except launch.MissingExtraError as err:
        raise ValueError(str(err)) from None


def _launch_local(profile: profiles.Profile, configs: list[profiles.RunConfig], args: argparse.Namespace) -> int:
    from . import launch, schedule

    if args.time is not None:
        launch.parse_time(args.time)
        print("[cckl] --time applies to Slurm tasks; a local launch runs until its runs are done", flush=True)
    outcomes = launch.launch_local(profile, configs, args.device, args.max_parallel, plan_first=not args.no_plan)
    print(f"[cckl] summary of {profile.name}: {schedule.summary(outcomes)}", flush=True)
    return 1 if any(o.status == schedule.FAILED for o in outcomes) else 0


def _launch_slurm(profile: profiles.Profile, configs: list[profiles.RunConfig], args: argparse.Namespace) -> int:
    from . import launch

    handle = launch.launch_slurm(profile, configs, device=args.device, partition=args.partition,
                                 gpus_per_job=args.gpus_per_job, cpus_per_task=args.cpus_per_task,
                                 max_parallel=args.max_parallel, time_limit=args.time, logs=args.logs,
                                 out=lambda line: print(line, flush=True))
    if args.wait and handle.submitted:
        handle.wait()
        print(handle.summary(), flush=True)
        return 1 if handle.failed else 0
    sys.stdout.flush()
    return 0
