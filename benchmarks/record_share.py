"""How much of a ``quick`` training session the per-epoch record takes, from the committed results.

Every epoch of a run ends with :func:`cckl_core.record.evaluate` (predictions on the test images,
the Fisher statistics, the Figure 1 pair, PGD-10 on ``robust_n`` images); the run's history holds,
per row, the record's ``eval_seconds`` and, from epoch 1 on, the epoch's training time
``train_seconds`` (row 0 is the record of the model at initialisation). This script unpacks
``results/quick.tar.gz`` into a temporary cache (nothing is trained) and prints, per run of the
profile and seed, the record's share of the session,

    share = sum(eval_seconds) / (sum(train_seconds) + sum(eval_seconds)),

and the same over every run together (issue 26's target: at most 10%). The times are those of the
machine that trained the committed runs (its environment.json names it).

It also prints the least share that keeps every committed figure as it is: Figures 2, 3, 4, 6, 7 and 8
draw every epoch's record of the runs with a role in :data:`PER_EPOCH_ROLES`, so those records stay; the
other runs (Table 1's) are read at their last epoch only, so only that record would stay.

With ``--parts`` it also times, in this process on one thread, each part of one record of the two model
shapes of ``quick`` (VGG13 width 0.25 with BatchNorm, resnet20x1; random weights and images): the predictions
on 2,000 test images, the Fisher statistics on 200, PGD-10 on 200, against one epoch of SGD on 10,000 images
(a step of batch 128, timed over 10 steps): where a record's time goes.

    python benchmarks/record_share.py [--profile quick] [--parts]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


#: Roles whose runs' records figures draw at every epoch (theorem_check: Figures 2 and 6; fisher_growth:
#: Figures 3, 4, 7 and 8, with robust accuracy dashed beside the Fisher norms).
PER_EPOCH_ROLES = ("fig2_standard", "fig6_cifar10", "fig6_cifar100", "fig3_standard", "fig3_pgd_at", "fig3_trades",
                   "fig8_standard", "fig8_pgd_at", "fig8_trades")


def last_record_seconds(profile_name: str) -> dict[str, float]:
    """Per run name read at its last epoch only (no role in :data:`PER_EPOCH_ROLES`): its last record's seconds
    summed over its seeds."""
    from cckl_core import profiles, runs
    profile = profiles.load(profile_name)
    per_epoch = {n for role in PER_EPOCH_ROLES if role in profile.roles
                 for n in ([profile.roles[role]] if isinstance(profile.roles[role], str) else profile.roles[role])}
    out: dict[str, float] = {}
    for cfg in profile.configs():
        if cfg.name in per_epoch:
            continue
        try:
            out[cfg.name] = out.get(cfg.name, 0.0) + float(runs.load(cfg).history[-1]["eval_seconds"])
        except runs.RunNotFoundError:
            continue
    return out


def shares(profile_name: str) -> tuple[list[tuple[str, int, int, float, float]], list[str]]:
    """Per run and seed of the unpacked profile: (run, seed, epochs, training seconds, record seconds); and the
    runs the results do not hold."""
    from cckl_core import profiles, runs
    rows, absent = [], []
    for cfg in profiles.load(profile_name).configs():
        try:
            history = runs.load(cfg).history
        except runs.RunNotFoundError:
            absent.append(cfg.label)
            continue
        train = sum(float(r.get("train_seconds") or 0.0) for r in history)
        record = sum(float(r["eval_seconds"]) for r in history)
        rows.append((cfg.name, cfg.seed, len(history) - 1, train, record))
    return rows, absent


def part_seconds() -> list[tuple[str, float, float, float, float]]:
    """Per model shape: (name, predict 2,000 s, Fisher 200 s, PGD-10 200 s, one 10,000-image SGD epoch s)."""
    import torch
    import torch.nn.functional as F

    from cckl_core import fisher, models, record
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.rand(2000, 3, 32, 32), torch.randint(0, 10, (2000,))
    out = []
    for name, width, bn in (("vgg13", 0.25, True), ("resnet20x1", 1.0, None)):
        model = models.build(name, num_classes=10, width=width, batch_norm=bn)
        t = time.perf_counter()
        record.predict(model, [(x[s:s + 500], y[s:s + 500]) for s in range(0, 2000, 500)])
        predict = time.perf_counter() - t
        t = time.perf_counter()
        fisher.fisher_stats(model, x[:200])
        fisher_s = time.perf_counter() - t
        t = time.perf_counter()
        record.robust_correct(model, x[:200], y[:200], record.ROBUST_ACC_ATTACK)
        pgd = time.perf_counter() - t
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()
        t = time.perf_counter()
        for s in range(0, 1280, 128):
            loss = F.cross_entropy(model(x[s:s + 128]), y[s:s + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append((name, predict, fisher_s, pgd, (time.perf_counter() - t) / 1280 * 10_000))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="a profile whose results the repository carries")
    parser.add_argument("--parts", action="store_true", help="also time each part of one record (one thread)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cckl-record-share-") as tmp:
        os.environ.update(CCKL_ARTIFACTS=str(Path(tmp) / "artifacts"), CCKL_DATA_ROOT=str(Path(tmp) / "no-data"))
        from cckl_core import bundle
        bundle.extract(REPO / "results" / f"{args.profile}.tar.gz", args.profile)
        rows, absent = shares(args.profile)
        last_only = last_record_seconds(args.profile)
    print(f"{'run':28s} {'seed':>4s} {'epochs':>6s} {'train s':>9s} {'record s':>9s} {'record share':>12s}")
    for name, seed, epochs, train, record in rows:
        print(f"{name:28s} {seed:4d} {epochs:6d} {train:9.1f} {record:9.1f} {record / (train + record):12.1%}")
    train, record = sum(r[3] for r in rows), sum(r[4] for r in rows)
    print(f"{'all runs':28s} {'':4s} {'':6s} {train:9.1f} {record:9.1f} {record / (train + record):12.1%}")
    print(f"record share / 10% target: {record / (train + record) / 0.10:.2f}")
    kept = sum(r[4] for r in rows if r[0] not in last_only) + sum(last_only.values())
    print(f"least share that keeps every committed figure (every record of the runs figures draw per epoch, the "
          f"last record of {', '.join(sorted(last_only))}): {kept / (train + kept):.1%}, / 10% target: "
          f"{kept / (train + kept) / 0.10:.2f}")
    if absent:
        print(f"not in the committed results (not counted): {', '.join(absent)}")
    if args.parts:
        print(f"{'one record, one thread':24s} {'predict 2000':>12s} {'Fisher 200':>10s} {'PGD-10 200':>10s} "
              f"{'SGD epoch 10k':>13s} {'predict / epoch':>15s}")
        for name, predict, fisher_s, pgd, epoch in part_seconds():
            print(f"{name:24s} {predict:11.2f}s {fisher_s:9.2f}s {pgd:9.2f}s {epoch:12.1f}s {predict / epoch:15.1%}")


if __name__ == "__main__":
    main()
