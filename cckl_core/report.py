"""Claims tables, result tables and the summary of everything under ``figures/``.

- :func:`claims_table` (end of every notebook): the paper's claims beside what we
  measured, written to ``figures_root()/<profile>/claims_<notebook>.{csv,md,json}``.
- :func:`table`: any result table (Table 1, Table 2, ...) as ``<name>.csv`` and ``<name>.md``.
- ``python -m cckl_core.report --profile P`` (the last step of ``make paper``): gathers every
  figure (PNG links), table and claims file found under ``figures_root()/<profile>/`` for
  each profile present into ``figures_root()/README.md``. It only reports what exists, in
  a fixed order, with no time stamps, so the same files give the same summary. ``--costs``
  first writes the compute-cost table (:mod:`cckl_core.costs`) in the same process, under
  ``figures_root()``: ``make paper`` runs ``report --costs``, one interpreter instead of two.

"holds" is one of :data:`VERDICTS`: ``yes`` / ``no`` when the row's criterion (stated in its
note: an interval or a test, fixed before looking at results) decides, ``inconclusive`` when
it cannot at this sample size, ``not informative`` when the criterion could not have failed,
``n/a`` when there is nothing to assess. The numbers come from the executed notebooks.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .paths import figures_root

#: Columns of every claims table, in order.
CLAIM_COLUMNS = ["claim", "paper value", "measured value", "holds", "note"]
_ALIASES = {"paper": "paper value", "measured": "measured value", "ours": "measured value"}
#: A hand-written file in a profile folder, placed at the top of its section.
NOTES_FILE = "NOTES.md"
#: Profiles in the order the summary lists them (others follow alphabetically).
_PROFILE_ORDER = ["paper", "gpu", "quick", "smoke"]


# --------------------------------------------------------------------------- formatting
def fmt(value, digits: int = 4) -> str:
    """A cell as text: floats to ``digits`` significant digits, bools as yes/no, None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


#: Verdicts a claims row may carry. "inconclusive": the interval or test cannot tell at this size;
#: "not informative": the criterion cannot fail here (e.g. a negative lower bound of a non-negative
#: quantity); "n/a": nothing to assess (a skipped run, a number reported without a claim).
VERDICTS = ("yes", "no", "inconclusive", "not informative", "n/a")
_VERDICT_ALIASES = {"holds": "yes", "does not hold": "no"}


def _holds(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        v = value.strip().lower()
        v = _VERDICT_ALIASES.get(v, v)
        if v in VERDICTS:
            return v
        raise ValueError(f"holds must be True/False/None or one of {VERDICTS} (or 'holds'/'does not hold'), got {value!r}")
    return "yes" if bool(value) else "no"


def count_verdicts(verdicts) -> dict[str, int]:
    """How many rows carry each verdict; ``assessed`` = yes + no + inconclusive."""
    counts = {v: 0 for v in VERDICTS}
    for v in verdicts:
        counts[_holds(v)] += 1
    counts["assessed"] = counts["yes"] + counts["no"] + counts["inconclusive"]
    return counts


def verdict_line(counts: dict[str, int]) -> str:
    """``"12 of 20 assessed claims hold, 3 do not, 5 inconclusive; 2 not informative, 1 n/a"``."""
    return (f"{counts['yes']} of {counts['assessed']} assessed claims hold, {counts['no']} do not, "
            f"{counts['inconclusive']} inconclusive; {counts['not informative']} not informative, {counts['n/a']} n/a")


def markdown_table(df: pd.DataFrame, index: bool = False, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no tabulate needed); ``|`` in cells is escaped."""
    frame = df.reset_index() if index else df
    header = [str(c) for c in frame.columns]

    def cell(v) -> str:
        return fmt(v, digits).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    """Write atomically (temporary file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- tables
def claims_table(rows: Iterable[Mapping], notebook: str, profile: str, dataset: str) -> pd.DataFrame:
    """Write the claims of one notebook and return them as a DataFrame (for display).

    ``rows``: mappings with ``claim``, ``paper`` (or ``"paper value"``), ``measured`` (or
    ``"measured value"``), ``holds`` (True / False / None = not assessable here) and
    ``note`` (the criterion used, caveats). Files: ``figures_root()/<profile>/claims_<notebook>``
    ``.csv`` and ``.md`` (the five columns) and ``.json`` (the same plus notebook, profile and
    dataset, which the summary reads).
    """
    records = []
    for k, row in enumerate(rows):
        row = {_ALIASES.get(key, key): val for key, val in row.items()}
        unknown = set(row) - set(CLAIM_COLUMNS)
        if unknown or "claim" not in row:
            raise ValueError(f"claims row {k}: needs 'claim' and may have {CLAIM_COLUMNS[1:]}; got {sorted(row)}")
        records.append({"claim": str(row["claim"]), "paper value": fmt(row.get("paper value")),
                        "measured value": fmt(row.get("measured value")), "holds": _holds(row.get("holds")),
                        "note": "" if row.get("note") is None else str(row["note"])})
    df = pd.DataFrame(records, columns=CLAIM_COLUMNS)
    folder = figures_root() / profile
    stem = folder / f"claims_{notebook}"
    _write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    md = (f"**Claims of `{notebook}`** · profile `{profile}` · dataset {dataset} · "
          f"{verdict_line(count_verdicts(df['holds']))}\n\n{markdown_table(df)}\n")
    _write_text(stem.with_suffix(".md"), md)
    meta = {"notebook": notebook, "profile": profile, "dataset": dataset, "rows": records}
    _write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return df


def table(df: pd.DataFrame, name: str, profile: str, caption: str | None = None, index: bool | None = None,
          digits: int = 4) -> tuple[Path, Path]:
    """Write ``df`` as ``figures_root()/<profile>/<name>.md`` (Markdown, with ``caption`` above)
    and ``<name>.csv``; return ``(md_path, csv_path)``. ``index`` defaults to keeping a named index."""
    if index is None:
        index = any(n is not None for n in df.index.names)
    folder = figures_root() / profile
    md_path, csv_path = folder / f"{name}.md", folder / f"{name}.csv"
    _write_text(csv_path, df.to_csv(index=index))
    text = (f"**{caption}**\n\n" if caption else "") + markdown_table(df, index=index, digits=digits) + "\n"
    _write_text(md_path, text)
    return md_path, csv_path


# --------------------------------------------------------------------------- summary
def _profile_dirs(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding at least one figure, table or claims file, in a fixed order."""
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
             and any(f.suffix in (".png", ".csv", ".md") for f in p.iterdir())] if root.is_dir() else []
    rank = {name: k for k, name in enumerate(_PROFILE_ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def _profile_description(name: str) -> str:
    try:
        from . import profiles
        return profiles.load(name).description if name in profiles.names() else ""
    except Exception:  # a broken profile file must not stop the summary
        return ""


def _claims_of(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("claims_*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            out.append({"notebook": path.stem[len("claims_"):], "dataset": "unknown", "rows": [], "error": True})
    return out


def profile_section(folder: Path, root: Path) -> str:
    """The Markdown section of one profile folder: claims, tables, figures (links relative to ``root``)."""
    name = folder.name
    claims = _claims_of(folder)
    datasets = sorted({c.get("dataset", "unknown") for c in claims}) or ["unknown (no claims file found)"]
    rows = [r for c in claims for r in c.get("rows", [])]
    counts = count_verdicts(r.get("holds") for r in rows)
    rel = folder.relative_to(root).as_posix()
    lines = [f"## Profile `{name}`", ""]
    desc = _profile_description(name)
    lines.append(f"- profile: `{name}`" + (f" ({desc})" if desc else ""))
    lines.append(f"- dataset: {', '.join(datasets)}")
    lines.append(f"- numbers come from the executed notebooks in `build/{name}/` "
                 f"(`make paper PROFILE={name}`); figures and tables in `{rel}/`")
    lines.append(f"- claims: {verdict_line(counts)}")
    lines.append("")
    notes = folder / NOTES_FILE
    if notes.exists():  # written by a person who ran the profile: wall time, what did not hold and why
        lines += ["### Notes", "", notes.read_text(encoding="utf-8").strip(), ""]
    if claims:
        lines += ["### Claims", ""]
        for c in claims:
            lines.append(f"#### `{c.get('notebook')}` (dataset {c.get('dataset', 'unknown')})")
            lines.append("")
            if c.get("error"):
                lines += ["(claims file unreadable)", ""]
                continue
            df = pd.DataFrame(c.get("rows", []), columns=CLAIM_COLUMNS)
            lines += [markdown_table(df), ""]
    tables = sorted(p for p in folder.glob("*.md") if not p.name.startswith("claims_") and p.name != NOTES_FILE)
    if tables:
        lines += ["### Tables", ""]
        for path in tables:
            csv = path.with_suffix(".csv")
            link = f" ([csv]({rel}/{csv.name}))" if csv.exists() else ""
            lines += [f"#### {path.stem}{link}", "", path.read_text(encoding="utf-8").strip(), ""]
    figures = sorted(folder.glob("*.png"))
    if figures:
        lines += ["### Figures", ""]
        for png in figures:
            pdf = png.with_suffix(".pdf")
            link = f" ([pdf]({rel}/{pdf.name}))" if pdf.exists() else ""
            lines += [f"#### {png.stem}{link}", "", f"![{png.stem}]({rel}/{png.name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def summary(root: Path | None = None) -> str:
    """The whole ``README.md`` text for the figures root (one section per profile folder present)."""
    root = Path(root) if root is not None else figures_root()
    head = ["# Figures, tables and claims", "",
            "Generated by `python -m cckl_core.report` (the last step of `make paper`) from the files "
            "the notebooks wrote; it lists only what exists. Reproduction of \"Towards Disentangling "
            "Non-Robust and Robust Components in Performance Metric\". \"holds\" compares our measured "
            "value with the paper's qualitative claim by the criterion in the note; reduced profiles "
            "(`quick`, `smoke`) run smaller models on less data, so their numbers differ from the paper's.", ""]
    sections = [profile_section(folder, root) for folder in _profile_dirs(root)]
    if not sections:
        head.append("No figures yet: run `make paper`.")
    return "\n".join(head) + "\n" + "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cckl_core.report",
                                     description="Gather figures, tables and claims into figures/README.md")
    parser.add_argument("--profile", required=True, help="the profile just run; its folder must exist")
    parser.add_argument("--root", default=None, help="figures root (default: $CCKL_FIGURES or <repo>/figures)")
    parser.add_argument("--costs", action="store_true", help="first write the profile's compute_costs table from "
                        "the run cache (python -m cckl_core.costs), in this process (`make paper` does)")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser() if args.root else figures_root()
    folder = root / args.profile
    if args.costs:
        from . import costs
        if root.resolve() != figures_root().resolve():  # costs write under figures_root(), not --root
            print(f"error: --costs writes under the figures root {figures_root()}, not --root {root}; "
                  "set CCKL_FIGURES instead of --root", file=sys.stderr)
            return 2
        if costs.main(["--profile", args.profile]) != 0:
            return 2
    if not folder.is_dir() or folder not in _profile_dirs(root):
        print(f"error: no figures for profile {args.profile!r} under {root}; run the notebooks first "
              f"(make paper PROFILE={args.profile})", file=sys.stderr)
        return 2
    text = summary(root)
    _write_text(root / "README.md", text)
    n_png = len(list(folder.glob("*.png")))
    n_claims = len(list(folder.glob("claims_*.json")))
    print(f"[cckl] {root / 'README.md'}: profile {args.profile}: {n_png} figures, {n_claims} claims files; "
          f"sections: {', '.join(p.name for p in _profile_dirs(root))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
