"""Result tables as files: Markdown (for reading) and CSV (for reuse), written atomically.

Used by the paper's analysis (Table 1, Table 2, claims, ...), the compute-cost table and the
summary of ``figures/``. Cells are formatted by :func:`fmt`: floats to four significant digits,
booleans as yes/no, missing values as ``n/a``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import store


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
