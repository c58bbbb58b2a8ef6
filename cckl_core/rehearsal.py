"""A rehearsal of a GPU session on this CPU: the profile's exact runs, end to end, at a few images.

``python -m cckl_core rehearse --profile gpu`` (``make rehearse``) takes
:func:`cckl_core.profiles.rehearsal` of the profile (the same models, widths, objectives,
precisions, roles and evaluations; two SGD steps of batch 2, ten synthetic test images) and runs
every step the GPU node and the laptop will: train and evaluate with the scheduler, bundle,
unpack the bundle into a fresh cache, render every notebook and the report from it. A crash,
shape error or missing file shows here, in about a minute, instead of on the GPU's clock.

``main(profile, stand_in=True)`` rehearses :func:`stand_in_profile` of it instead: the same runs, roles
and evaluations through the same code, each model replaced by a narrow float32 one of its family, so
that a test can rehearse every run shape in seconds (``make rehearse`` keeps the exact models).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from . import bundle, paper, profiles, report, schedule, store
from .profiles import STAND_IN_ENV, STAND_IN_WIDTH, stand_in_profile  # noqa: F401 (this module's names too)


def main(profile: profiles.Profile, out: str | None = None, stand_in: bool = False) -> int:
    """Rehearse ``profile`` (``stand_in``: its :func:`stand_in_profile`); print each step's time; 0 when every step
    passed, 1 otherwise."""
    target = profiles.rehearsal(profile) if not profile.name.endswith(profiles.REHEARSAL) else profile
    if out:  # an unusable folder is one line now, not one failed run after minutes of work
        store.check_writable_folder(Path(out).expanduser().resolve())
    with tempfile.TemporaryDirectory(prefix="cckl-rehearsal-") as tmp:
        base = Path(out).expanduser().resolve() if out else Path(tmp)
        if not stand_in:
            return rehearse(target, base)
        return _with_stand_in(target, base)


def _with_stand_in(target: profiles.Profile, base: Path) -> int:
    """:func:`rehearse` the stand-in of ``target`` under ``base``, with :data:`STAND_IN_ENV` set meanwhile."""
    before = os.environ.get(STAND_IN_ENV)
    os.environ[STAND_IN_ENV] = "1"
    try:
        return rehearse(profiles.load(target.name), base)
    finally:
        if before is None:
            os.environ.pop(STAND_IN_ENV, None)
        else:
            os.environ[STAND_IN_ENV] = before


def rehearse(target: profiles.Profile, base: Path) -> int:
    """Run the rehearsal of ``target`` (a rehearsal profile) under ``base``."""
    os.environ.update(CCKL_ARTIFACTS=str(base / "artifacts"), CCKL_DATA_ROOT=str(base / "data"),
                      CCKL_FIGURES=str(base / "figures"))
    clock = time.perf_counter()

    def step(what: str) -> None:
        nonlocal clock
        print(f"[cckl] rehearsal of {target.name}: {what} in {time.perf_counter() - clock:.1f} s", flush=True)
        clock = time.perf_counter()

    outcomes = schedule.run(target, target.select(), device="cpu", plan_first=False)
    failed = [o for o in outcomes if o.status != schedule.COMPLETED]
    if failed:
        print(f"[cckl] rehearsal failed: {'; '.join(f'{o.cfg.label} {o.status}: {o.detail}' for o in failed)}")
        return 1
    step(f"{len(outcomes)} runs trained and evaluated")
    made = bundle.create(target, base / "bundle.tar.gz")
    os.environ["CCKL_ARTIFACTS"] = str(base / "unpacked")
    bundle.extract(base / "bundle.tar.gz", target.name)
    step(f"bundled ({made['files']} files, {made['bytes'] / 1024:.0f} KiB) and unpacked into a fresh cache")
    rendered = []
    for name in paper.NOTEBOOKS:
        result = paper.render(name, target)
        result.save()
        rendered.append(f"{name}: {len(result.figures)} figures, {len(result.claims)} claims")
        result.close()
    if report.main(target, str(base / "figures")) != 0:
        return 1
    step("rendered " + "; ".join(rendered))
    print(f"[cckl] rehearsal of {target.name} passed: every run, evaluation, bundle and notebook of "
          f"{target.name.removesuffix(profiles.REHEARSAL)} works end to end", flush=True)
    return 0
