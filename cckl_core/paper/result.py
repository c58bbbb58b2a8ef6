"""What a notebook of the paper renders: its figures, tables, claims rows and short texts.

:class:`Rendered` is returned by every analysis module's ``render``; a notebook shows its parts
(:meth:`Rendered.show`) and writes them (:meth:`Rendered.save`) to ``figures_root()/<profile>/``:
the published ``figures/`` under ``make paper``, a scratch folder when run by hand.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import pandas as pd

from .. import plotting, stats, store, tables
from ..paths import figures_root
from .criteria import ClaimRow

#: Columns of every claims table, in order: the claim, its kind (paper / derivation / reported), the values,
#: the raw and Holm-adjusted two-sided p-values of a tested paper claim, the verdict, when its criterion was fixed.
CLAIM_COLUMNS = ["claim", "kind", "paper value", "measured value", "p", "p (Holm)", "holds", "criterion fixed", "note"]


@dataclass
class Table:
    """A result table: what is written (``frame``, with ``caption``) and what a notebook shows (``display``)."""

    frame: pd.DataFrame
    caption: str
    index: bool | None = None
    digits: int = 4
    display: pd.DataFrame | None = None
    write: bool = True  # False: shown only (e.g. a per-seed table when there is one seed)

    def _repr_html_(self) -> str:  # a notebook shows the caption and the table in full (tables.styled)
        import html
        shown = self.display if self.display is not None else self.frame
        return f"<p><b>{html.escape(self.caption)}</b></p>" + tables.styled(shown).to_html()


class ClaimRows(list):
    """A notebook's claims rows; ``rows += new`` replaces a row of the same claim in place, so a cell run twice
    (a statistic changed and rerun) does not add its claims twice."""

    def __iadd__(self, rows):
        for row in rows:
            where = next((k for k, r in enumerate(self) if r.id == row.id), None)
            if where is None:
                self.append(row)
            else:
                self[where] = row
        return self


@dataclass
class Rendered:
    """One notebook's output. ``figures`` and ``tables`` are keyed by the file stem they are saved as."""

    notebook: str
    profile: str
    dataset: str
    figures: dict = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    claims: list[ClaimRow] = field(default_factory=ClaimRows)
    text: dict[str, str] = field(default_factory=dict)

    def figure(self, name: str) -> object:
        """Figure ``name`` (its file stem), for a notebook cell to display."""
        return self._part(self.figures, name, "figure")

    def table(self, name: str) -> pd.DataFrame:
        """Table ``name`` as a notebook shows it (e.g. Table 1 pivoted by attack)."""
        t = self._part(self.tables, name, "table")
        return t if not isinstance(t, Table) else (t.display if t.display is not None else t.frame)

    def _part(self, parts: dict, name: str, kind: str):
        if name in parts:
            return parts[name]
        if "summary" in self.text:  # a profile without this notebook's runs: say so wherever a part is asked for
            from IPython.display import Markdown
            return Markdown(self.text["summary"])
        raise KeyError(f"{self.notebook} rendered no {kind} {name!r}; its {kind}s: {', '.join(parts) or 'none'}")

    def judged(self) -> list[ClaimRow]:
        """The claims rows with the tested paper claims decided: Holm's correction within each family of them
        (:func:`.criteria.adjust`; rows already decided pass unchanged). ``claims`` itself is left as it is."""
        from .criteria import adjust
        return adjust(self.claims)

    def claims_frame(self, rows: list[ClaimRow] | None = None) -> pd.DataFrame:
        """The claims table of ``rows`` (default :meth:`judged`): claim, kind, paper value, measured value,
        p-values, verdict ("holds"), when its criterion was fixed, note."""
        return pd.DataFrame([{k: v for k, v in r.as_dict().items() if k in CLAIM_COLUMNS}
                             for r in (self.judged() if rows is None else rows)], columns=CLAIM_COLUMNS)

    def claims_table(self):
        """The claims table as a notebook shows it: complete, verdicts in colour (:func:`cckl_core.tables.styled`)."""
        return tables.styled(self.claims_frame())

    def counts(self, kind: str | None = "paper", rows: list[ClaimRow] | None = None) -> dict[str, int]:
        """Verdict counts of ``rows`` (default :meth:`judged`) of ``kind`` (``None``: every row)."""
        rows = self.judged() if rows is None else rows
        return count_verdicts(r.verdict for r in rows if kind is None or r.kind == kind)

    def save(self, folder: Path | None = None) -> None:
        """Write every figure (PDF and PNG), table (Markdown and CSV) and the claims
        (``claims_<notebook>.{csv,md,json}``) to ``folder`` (default ``figures_root()/<profile>``)."""
        folder = Path(folder) if folder is not None else figures_root() / self.profile
        if "summary" in self.text:  # the profile has no runs for this notebook: nothing to write
            print(f"profile {self.profile} has no runs for {self.notebook}: nothing written")
            return
        store.make_folder(folder)  # a failure is one WriteError line
        for name, fig in self.figures.items():
            plotting.save(fig, name, folder)
        for name, t in self.tables.items():
            if t.write:
                tables.write(t.frame, name, folder, caption=t.caption, index=t.index, digits=t.digits)
        rows = self.judged()  # Holm's correction once for the three files
        df = self.claims_frame(rows)
        stem = folder / f"claims_{self.notebook}"
        store.atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
        store.atomic_write_text(stem.with_suffix(".md"),
                                f"**Claims of `{self.notebook}`** · profile `{self.profile}` · dataset {self.dataset} · "
                                f"paper claims: {verdict_line(self.counts(rows=rows))}; derivation checks: "
                                f"{verdict_line(self.counts('derivation', rows), 'checks')}\n\n{tables.markdown_table(df)}\n")
        meta = {"notebook": self.notebook, "profile": self.profile, "dataset": self.dataset,
                "rows": [r.as_dict() for r in rows], "figures": list(self.figures)}
        store.atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True) + "\n")
        print(f"{len(self.figures)} figures, {sum(t.write for t in self.tables.values())} tables and "
              f"{len(self.claims)} claims written to {shown_path(folder)}")

    def close(self) -> None:
        """Free the figures (a notebook that re-renders keeps no stale ones)."""
        for fig in self.figures.values():
            plt.close(fig)


def shown_path(path: Path) -> str:
    """``path`` relative to the project folder when inside it: what a committed page may show."""
    from ..paths import project_root
    try:
        return Path(path).resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


def count_verdicts(verdicts: Iterable[str]) -> dict[str, int]:
    """How many rows carry each verdict; ``assessed`` = yes + no + inconclusive (a claim the profile cannot
    test, or whose criterion could not fail, is not assessed)."""
    counts = {v: 0 for v in stats.VERDICTS}
    for v in verdicts:
        if v not in counts:
            raise ValueError(f"unknown verdict {v!r}; valid: {', '.join(stats.VERDICTS)}")
        counts[v] += 1
    counts["assessed"] = counts[stats.HOLDS] + counts[stats.DOES_NOT_HOLD] + counts[stats.INCONCLUSIVE]
    return counts


def verdict_line(counts: dict[str, int], noun: str = "claims") -> str:
    """``"12 of 20 assessed claims hold, 3 do not, 5 inconclusive; 4 not tested at this scale, 2 not informative, 1 n/a"``."""
    return (f"{counts[stats.HOLDS]} of {counts['assessed']} assessed {noun} hold, {counts[stats.DOES_NOT_HOLD]} do not, "
            f"{counts[stats.INCONCLUSIVE]} inconclusive; {counts[stats.NOT_TESTED]} not tested at this scale, "
            f"{counts[stats.NOT_INFORMATIVE]} not informative, {counts[stats.NOT_ASSESSED]} n/a")
