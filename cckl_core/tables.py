"""Result tables as files: Markdown (for reading) and CSV (for reuse), written atomically.

Used by the paper's analysis (Table 1, Table 2, claims, ...), the compute-cost table and the
summary of ``figures/``. Cells are formatted by :func:`fmt`: floats to four significant digits,
booleans as yes/no, missing values as ``n/a``.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats, store

#: A verdict's colour, the same in the notebooks (:func:`styled`) and the HTML report.
VERDICT_COLOURS = {stats.HOLDS: "#1a7f37", stats.DOES_NOT_HOLD: "#cf222e", stats.INCONCLUSIVE: "#9a6700",
                   stats.NOT_TESTED: "#8250df", stats.NOT_INFORMATIVE: "#6e7781", stats.NOT_ASSESSED: "#6e7781"}


def fmt(value: object, digits: int = 4) -> str:
    """A cell as text: floats to ``digits`` significant digits, bools as yes/no, None and NaN as ``n/a``."""
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


def md_cell(text: object) -> str:
    """``text`` as one Markdown table cell: ``|`` escaped, line breaks as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, index: bool = False, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (cells by :func:`fmt` and :func:`md_cell`)."""
    frame = df.reset_index() if index else df
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(md_cell(fmt(v, digits)) for v in row) + " |")
    return "\n".join(lines)


def write(df: pd.DataFrame, name: str, folder: Path, caption: str | None = None, index: bool | None = None,
          digits: int = 4) -> tuple[Path, Path]:
    """Write ``df`` as ``folder/<name>.md`` (Markdown, ``caption`` above) and ``folder/<name>.csv``;
    return both paths. ``index`` defaults to keeping a named index."""
    from .profiles import check_safe_name
    check_safe_name(name, "table name")  # it becomes a file name: the one rule for names of paths
    if index is None:
        index = any(n is not None for n in df.index.names)
    md_path, csv_path = Path(folder) / f"{name}.md", Path(folder) / f"{name}.csv"
    store.atomic_write_text(csv_path, df.to_csv(index=index))
    text = (f"**{caption}**\n\n" if caption else "") + markdown_table(df, index=index, digits=digits) + "\n"
    store.atomic_write_text(md_path, text)
    return md_path, csv_path


def without_empty_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` less the columns in which every cell is missing or empty text."""
    empty = [c for c in df.columns if df[c].map(lambda v: v is None or v == "" or (isinstance(v, float) and
                                                                                  math.isnan(v))).all()]
    return df.drop(columns=empty)


def styled(df: pd.DataFrame, digits: int = 3, verdicts: str = "holds"):
    """``df`` as a notebook shows it (a pandas ``Styler``): every row and column in full, cells by
    :func:`fmt` to ``digits`` significant digits, no empty column, text wrapped and left-aligned, the
    ``verdicts`` column (if present) coloured as in the HTML report."""
    frame = without_empty_columns(df)
    uuid = hashlib.sha256(frame.to_csv().encode()).hexdigest()[:8]  # ids from the content: the same page each render
    style = frame.style.set_uuid(uuid).format(lambda v: fmt(v, digits)).set_table_styles(  # one rule, not one per cell
        [{"selector": "td", "props": [("text-align", "left"), ("white-space", "pre-wrap"), ("vertical-align", "top")]}])
    if verdicts in frame.columns:
        style = style.map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, '#6e7781')}; color: white; "
                                    "font-weight: bold", subset=[verdicts])
    return style


def notebook_display(digits: int = 3) -> None:
    """pandas' display options for the notebooks: floats to ``digits`` significant digits (:func:`fmt`),
    cells and columns never cut, wide frames not wrapped."""
    pd.set_option("display.float_format", lambda v: fmt(v, digits))
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_columns", None)
    pd.set_option("display.width", 250)
