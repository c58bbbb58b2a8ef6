"""What ``make paper`` leaves to look at: ``figures/README.md`` and one HTML page per profile.

``python -m cckl_core report --profile P`` (the last step of ``make paper``) writes, from the files
the notebooks wrote under ``<figures root>/<profile>/``:

- ``compute_costs.{csv,md}`` (:mod:`cckl_core.costs`), from the run cache;
- ``index.html``: the headline table (each claim: the paper's value, ours, the verdict in colour),
  then each figure beside the claims it shows, linking the executed notebook (``notebooks/*.html``
  beside it, when ``make paper`` exported them);
- ``<figures root>/README.md``: the same headline table for every published profile present
  (:data:`PUBLISHED`: not ``smoke``, whose page is written but which the repository does not carry),
  then its notes, its claims with their criteria, links to its tables, and its figures.

It reports only what exists, in a fixed order, with no time stamps: the same files give the same
summary. The summary of every verdict is printed at the end.
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pandas as pd

from . import costs, stats, store, tables
from .paths import figures_root
from .profiles import ORDER, Profile, names

#: A hand-written file in a profile folder, placed under its headline table.
NOTES_FILE = "NOTES.md"
HTML_FILE = "index.html"
#: Colours of the verdicts in the HTML report.
COLOURS = tables.VERDICT_COLOURS
#: The order in which the headline groups the paper claims.
GROUPS = (stats.HOLDS, stats.DOES_NOT_HOLD, stats.INCONCLUSIVE, stats.NOT_TESTED, stats.NOT_INFORMATIVE,
          stats.NOT_ASSESSED)


# --------------------------------------------------------------------------- reading what the notebooks wrote
class ClaimsFileError(ValueError):
    """A claims file whose structure is not what a notebook writes; the message names the file and the fix."""


def _check_claims(data: object, path: Path) -> dict:
    """``data`` (a parsed claims file) if it has what the report reads: an object whose ``rows`` is a list
    of objects, each with a string ``claim`` and a ``holds`` among :data:`cckl_core.stats.VERDICTS`
    (``notebook``, ``dataset``: strings; ``figures``: a list of strings, when present). Other keys are
    kept and ignored; the display fields a row lacks are shown empty."""
    fix = (f"render the notebook again to rewrite it (make paper PROFILE={path.parent.name}), or delete {path.name}")

    def bad(what: str) -> ClaimsFileError:
        return ClaimsFileError(f"{path}: {what}; it is not a claims file as a notebook writes it: {fix}")

    if not isinstance(data, dict):
        raise bad(f"the file holds a JSON {type(data).__name__}, not an object")
    rows = data.get("rows", [])
    if not isinstance(rows, list):
        raise bad(f"'rows' is a {type(rows).__name__}, not a list of claims")
    for key in ("notebook", "dataset"):
        if key in data and not isinstance(data[key], str):
            raise bad(f"{key!r} is not a string")
    figures = data.get("figures", [])
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        raise bad("'figures' is not a list of figure names")
    checked = []
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise bad(f"rows[{k}] is a {type(row).__name__}, not an object")
        if not isinstance(row.get("claim"), str):
            raise bad(f"rows[{k}] has no 'claim' (a string)")
        if row.get("holds") not in stats.VERDICTS:
            raise bad(f"rows[{k}] ({row['claim'][:60]!r}) has verdict {row.get('holds')!r}; valid: "
                      f"{', '.join(stats.VERDICTS)}")
        shown = {key: "" if row.get(key) is None else str(row[key])
                 for key in ("paper value", "measured value", "note", "shows")}
        checked.append({**row, **shown})
    return {**data, "notebook": data.get("notebook", path.stem[len("claims_"):]), "rows": checked,
            "figures": figures}


def claims_of(folder: Path) -> list[dict]:
    """The claims files (``claims_<notebook>.json``) of a profile folder, in notebook order, each checked
    (:func:`_check_claims`): a file of the wrong structure is one :class:`ClaimsFileError` naming it and
    the fix; an unreadable one is listed as an error with no rows."""
    out = []
    for path in sorted(folder.glob("claims_*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            out.append({"notebook": path.stem[len("claims_"):], "dataset": "unknown", "rows": [], "error": True,
                        "figures": []})
            continue
        out.append(_check_claims(data, path))
    return out


#: Profiles the figures' README summarises (``smoke`` checks the plumbing; its page is written but not listed).
PUBLISHED = ("paper", "gpu", "quick")


def profile_dirs(root: Path, published: bool = False) -> list[Path]:
    """Sub-folders of ``root`` holding at least one figure, table or claims file, largest profile first
    (only the :data:`PUBLISHED` ones when ``published``)."""
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
             and any(f.suffix in (".png", ".csv", ".md") for f in p.iterdir())] if root.is_dir() else []
    if published:
        found = [p for p in found if p.name in PUBLISHED]
    rank = {name: k for k, name in enumerate(ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def _count(rows) -> dict[str, int]:
    from .paper.result import count_verdicts
    return count_verdicts(r.get("holds", stats.NOT_ASSESSED) for r in rows)


def _verdict_line(rows) -> str:
    """The verdicts of the paper claims among ``rows`` (derivation checks and reported rows are not counted)."""
    from .paper.result import verdict_line
    return verdict_line(_count(paper_rows(rows)), "paper claims")


def paper_rows(rows) -> list[dict]:
    """The rows that are paper claims (rows written before claims had kinds count as paper claims)."""
    return [r for r in rows if r.get("kind", "paper") == "paper"]


def _description(name: str) -> str:
    from . import profiles
    try:
        return profiles.load(name).description if name in names() else ""
    except profiles.ProfileError:
        return ""


def headline(claims: list[dict]) -> pd.DataFrame:
    """Every paper claim, grouped by verdict (:data:`GROUPS`), then in notebook order: notebook, claim, the
    paper's value, ours, verdict."""
    rows = by_verdict([{**r, "notebook": c.get("notebook")} for c in claims for r in paper_rows(c.get("rows", []))])
    return pd.DataFrame([{"notebook": r["notebook"], "claim": r["claim"], "paper": r["paper value"],
                          "ours": r["measured value"], "verdict": r["holds"]} for r in rows],
                        columns=["notebook", "claim", "paper", "ours", "verdict"])


def by_verdict(rows: list[dict]) -> list[dict]:
    """Claims rows grouped by verdict in the order of :data:`GROUPS` (stable: their own order within a group)."""
    rank = {v: k for k, v in enumerate(GROUPS)}
    return sorted(rows, key=lambda r: rank.get(r.get("holds"), len(rank)))


def derivation_rows(claims: list[dict]) -> pd.DataFrame:
    """The derivation checks (our code against the paper's mathematics), apart from the paper's claims."""
    return pd.DataFrame([{"notebook": c.get("notebook"), "check": r["claim"], "ours": r["measured value"],
                          "verdict": r["holds"]} for c in claims for r in c.get("rows", []) if r.get("kind") == "derivation"],
                        columns=["notebook", "check", "ours", "verdict"])


# --------------------------------------------------------------------------- figures/README.md
def profile_section(folder: Path, root: Path) -> str:
    """The Markdown section of one profile folder: headline, notes, tables, figures (links relative to ``root``)."""
    name, rel = folder.name, folder.relative_to(root).as_posix()
    claims = claims_of(folder)
    datasets = sorted({c.get("dataset", "unknown") for c in claims if c.get("dataset") not in (None, "none")}) or ["none"]
    rows = [r for c in claims for r in c.get("rows", [])]
    desc = _description(name)
    lines = [f"## Profile `{name}`", "", f"- {desc}" if desc else "", f"- dataset: {', '.join(datasets)}",
             f"- {_verdict_line(rows)} (every paper claim is listed below, grouped by verdict; derivation checks "
             "and reported numbers are not counted)",
             f"- the page to look at: [{rel}/{HTML_FILE}]({rel}/{HTML_FILE}); executed notebooks in `build/{name}/`",
             ""]
    if rows:
        lines += ["| notebook | claim | paper | ours | verdict |", "|---|---|---|---|---|"]
        lines += [f"| {tables.fmt(r.notebook)} | {tables.md_cell(r.claim)} | {tables.md_cell(r.paper)} | "
                  f"{tables.md_cell(r.ours)} | **{r.verdict}** |" for r in headline(claims).itertuples()]
        lines.append("")
        checks = derivation_rows(claims)
        if len(checks):
            lines += ["Derivation checks (our code against the paper's mathematics; not counted above):", "",
                      "| notebook | check | ours | verdict |", "|---|---|---|---|"]
            lines += [f"| {tables.fmt(r.notebook)} | {tables.md_cell(r.check)} | {tables.md_cell(r.ours)} | "
                      f"**{r.verdict}** |" for r in checks.itertuples()]
            lines.append("")
    notes = folder / NOTES_FILE
    if notes.exists():  # written by a person who ran the profile: what did not hold and why
        lines += ["### Notes", "", notes.read_text(encoding="utf-8").strip(), ""]
    for c in claims:
        if c.get("rows"):
            lines += [f"### Claims of `{c.get('notebook')}` with their criteria", "",
                      tables.markdown_table(pd.DataFrame(c["rows"]).reindex(
                          columns=["claim", "kind", "measured value", "p", "p (Holm)", "holds", "criterion fixed",
                                   "note"]).fillna("")), ""]
    tables_ = sorted(p for p in folder.glob("*.md") if not p.name.startswith("claims_") and p.name != NOTES_FILE)
    if tables_:
        lines += ["### Tables", "", " · ".join(f"[{p.stem}]({rel}/{p.name})" + (
            f" ([csv]({rel}/{p.stem}.csv))" if p.with_suffix(".csv").exists() else "") for p in tables_), ""]
    figures = sorted(folder.glob("*.png"))
    if figures:
        lines += ["### Figures", ""]
        for png in figures:
            lines += [f"#### {png.stem}", "", f"![{png.stem}]({rel}/{png.name})", ""]
    return "\n".join(line for line in lines if line is not None).rstrip() + "\n"


def summary(root: Path | None = None) -> str:
    """The whole ``README.md`` text of the figures root (one section per profile folder present)."""
    root = Path(root) if root is not None else figures_root()
    head = ["# Figures, tables and claims", "",
            "Written by `python -m cckl_core report` (the last step of `make paper`) from the files the notebooks wrote; "
            "it lists only what exists. Reproduction of \"Towards Disentangling Non-Robust and Robust Components in "
            "Performance Metric\". Each claim is judged by the criterion in its note (declared in "
            "`cckl_core/paper/claims.toml`). The headline counts the paper's claims only (not the derivation checks "
            "of our code, nor reported numbers). A paper claim is judged over training seeds, with Holm's correction "
            "within each notebook: yes / no when the adjusted test decides, inconclusive when it cannot (one training "
            "run cannot), not tested at this scale when the profile lacks what the claim needs (the paper's "
            "architecture, a floor of training; its value is then indicative only), not informative when the "
            "criterion could not have failed, n/a when there is nothing to judge. Reduced profiles (`quick`, `smoke`) "
            "run smaller models on less data, so their numbers differ from the paper's.", ""]
    sections = [profile_section(folder, root) for folder in profile_dirs(root, published=True)]
    if not sections:
        head.append("No figures yet: run `make paper`.")
    return "\n".join(head) + "\n" + "\n".join(sections)


# --------------------------------------------------------------------------- the HTML page
_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #d0d7de;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f6f8fa}.v{font-weight:bold;color:white;border-radius:4px;
padding:1px 6px;white-space:nowrap}.fig{display:flex;gap:1.5em;align-items:flex-start;margin:2em 0;
border-top:1px solid #d0d7de;padding-top:1em}.fig img{max-width:62%;height:auto}.fig .claims{flex:1}
.small{color:#57606a;font-size:0.85em}"""
# After loading, mark every image that failed to load and say so in the page (read by scripts/check_report.py).
_CHECK = """<script>window.addEventListener('load',function(){var bad=[];document.querySelectorAll('img').forEach(
function(i){if(!(i.complete&&i.naturalWidth>0))bad.push(i.getAttribute('src'));});document.body.setAttribute(
'data-images',String(document.images.length));document.body.setAttribute('data-broken-images',bad.join(' '));});
</script>"""


def _markdown(text: str) -> str:
    """Markdown as HTML (mistune, which nbconvert brings), or the text escaped where it is absent."""
    try:
        import mistune
    except ImportError:  # pragma: no cover
        return f"<pre>{html.escape(text)}</pre>"
    return mistune.html(text)


def _badge(verdict: str) -> str:
    return f'<span class="v" style="background:{COLOURS.get(verdict, "#6e7781")}">{html.escape(verdict)}</span>'


def html_page(folder: Path) -> str:
    """The HTML report of one profile folder (links relative to it)."""
    name = folder.name
    claims = claims_of(folder)
    rows = [r for c in claims for r in c.get("rows", [])]
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>cckl: profile {e(name)}</title>"
             f"<style>{_CSS}</style>{_CHECK}</head><body>",
             f"<h1>Profile <code>{e(name)}</code></h1>",
             f"<p>{e(_description(name))}</p>",
             f"<p><b>{e(_verdict_line(rows))}</b>. Criteria: <code>cckl_core/paper/claims.toml</code>; "
             f"every figure names its data set, profile and model. <a href='../README.md'>figures/README.md</a></p>",
             "<h2 id='headline'>Headline: every paper claim, by verdict</h2><table><tr><th>claim</th><th>paper</th>"
             "<th>ours</th><th>verdict</th></tr>"]
    for r in by_verdict(paper_rows(rows)):
        parts.append(f"<tr><td><a href='#{e(r.get('shows', ''))}'>{e(r['claim'])}</a></td><td>{e(r['paper value'])}"
                     f"</td><td>{e(r['measured value'])}</td><td>{_badge(r['holds'])}</td></tr>")
    parts.append("</table>")
    checks = [r for r in rows if r.get("kind") == "derivation"]
    if checks:
        parts.append("<h3>Derivation checks (our code against the paper's mathematics; not counted above)</h3><table>"
                     "<tr><th>check</th><th>ours</th><th>verdict</th></tr>" + "".join(
                         f"<tr><td>{e(r['claim'])}</td><td>{e(r['measured value'])}</td><td>{_badge(r['holds'])}</td></tr>"
                         for r in checks) + "</table>")
    notes = folder / NOTES_FILE
    if notes.exists():
        parts.append(f"<h2 id='notes'>Notes</h2><p class='small'>From <a href='{NOTES_FILE}'>{NOTES_FILE}</a>, "
                     f"written by whoever ran the profile.</p>{_markdown(notes.read_text(encoding='utf-8'))}")
    for c in claims:
        nb = c.get("notebook", "")
        exported = folder / "notebooks" / f"{nb}.html"
        link = f" (<a href='notebooks/{e(nb)}.html'>executed notebook</a>)" if exported.exists() else ""
        parts.append(f"<h2>{e(nb)}{link}</h2>")
        shown = list(dict.fromkeys(c.get("figures", []) + [r.get("shows", "") for r in c.get("rows", [])]))
        for stem in [s for s in shown if s]:
            png, md = folder / f"{stem}.png", folder / f"{stem}.md"
            mine = [r for r in c.get("rows", []) if r.get("shows") == stem]
            claims_html = "".join(f"<p>{_badge(r['holds'])} {e(r['claim'])}: {e(r['measured value'])}<br>"
                                  f"<span class='small'>{e(r['note'])}</span></p>" for r in mine)
            if png.exists():
                body = f"<a href='{e(png.name)}'><img src='{e(png.name)}' alt='{e(stem)}'></a>"
            elif md.exists():
                body = f"<p><a href='{e(md.name)}'>table {e(stem)}</a> (<a href='{e(stem)}.csv'>csv</a>)</p>"
            else:
                continue
            parts.append(f"<div class='fig' id='{e(stem)}'>{body}<div class='claims'><h3>{e(stem)}</h3>"
                         f"{claims_html or '<p class=small>no claim rests on this one alone</p>'}</div></div>")
    tables_ = sorted(p for p in folder.glob("*.csv") if not p.name.startswith("claims_"))
    if tables_:
        parts.append("<h2>Tables</h2><ul>" + "".join(f"<li><a href='{e(p.with_suffix('.md').name)}'>{e(p.stem)}</a> "
                                                    f"(<a href='{e(p.name)}'>csv</a>)</li>" for p in tables_) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- executed notebooks as pages
#: A notebook line that publishes a figure: ``out.figures["<stem>"] = ...`` (the figure shows below its cell).
_FIGURE_CALL = re.compile(r"""out\.figures\[["']([\w.-]+)["']\]\s*=""")


def _without_machine_paths(text: str) -> str:
    """``text`` with this checkout's absolute path written ``.`` and the folder around it ``..`` (a published
    page names no path of the machine that rendered it, e.g. where the data set was read from)."""
    from .paths import project_root
    root = project_root().resolve()
    return text.replace(str(root), ".").replace(str(root.parent), "..")


def export_notebook(executed: Path, out: Path) -> Path:
    """``executed`` (a notebook `cckl render` ran) as a small HTML page ``out``: code, text and tables as
    they ran; each published figure (``out.figures["<stem>"] = ...``, shown below its cell in that order)
    replaced by the figure's PNG beside the page's folder (``../<stem>.png``, the file the notebook saved), so
    the page carries no second copy of it; a live probe's figure stays in the page. Printed paths are shown
    relative to the checkout (:func:`_without_machine_paths`)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = _without_machine_paths(output.get("text", ""))
        stems = _FIGURE_CALL.findall(cell.source)
        images = [o.get("data", {}) for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if len(stems) != len(images):
            continue  # figures the notebook does not publish (a live probe's) stay in the page
        for data, stem in zip(images, stems):
            data.pop("image/png")
            data.pop("text/plain", None)
            data["text/html"] = f"<img src='../{stem}.png' alt='{stem}' style='max-width:100%'>"
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(executed.stem)}</title>"
            f"<style>{_CSS} pre{{background:#f6f8fa;padding:6px;overflow:auto}}</style></head><body>"
            f"<p><a href='../{HTML_FILE}'>back to the report</a></p>{body}</body></html>\n")
    store.atomic_write_text(out, page)
    return out


def export_notebooks(executed_dir: Path, folder: Path) -> list[Path]:
    """Every executed notebook of the paper found in ``executed_dir``, exported to ``folder/notebooks/``."""
    from .paper import NOTEBOOKS
    return [export_notebook(Path(executed_dir) / f"{nb}.ipynb", folder / "notebooks" / f"{nb}.html")
            for nb in NOTEBOOKS if (Path(executed_dir) / f"{nb}.ipynb").is_file()]


# --------------------------------------------------------------------------- the command
def main(profile: Profile, root: str | None = None, notebooks: str | None = None) -> int:
    """Write the cost table, the executed notebooks as pages (from ``notebooks``), the profile's HTML
    page and the README of the figures root; print the verdicts."""
    root_path = Path(root).expanduser() if root else figures_root()
    folder = root_path / profile.name
    if not folder.is_dir() or folder not in profile_dirs(root_path):
        print(f"error: no figures for profile {profile.name!r} under {root_path}; render the notebooks first "
              f"(make paper PROFILE={profile.name})", file=sys.stderr)
        return 2
    if notebooks is not None:
        from .paper import NOTEBOOKS
        executed = Path(notebooks).expanduser()
        if not executed.is_dir() or not any((executed / f"{nb}.ipynb").is_file() for nb in NOTEBOOKS):
            what = "no such folder" if not executed.is_dir() else "it holds none of the paper's executed notebooks"
            print(f"error: --notebooks {executed}: {what}; render them first (make paper PROFILE={profile.name} "
                  f"writes build/{profile.name}/), or leave --notebooks out", file=sys.stderr)
            return 2
        export_notebooks(executed, folder)
    costs.write(profile, folder)
    store.atomic_write_text(folder / HTML_FILE, html_page(folder))
    store.atomic_write_text(root_path / "README.md", summary(root_path))
    rows = [r for c in claims_of(folder) for r in c.get("rows", [])]
    print(f"[cckl] {folder / HTML_FILE} and {root_path / 'README.md'} written; profile {profile.name}: "
          f"{_verdict_line(rows)}")
    for c in claims_of(folder):
        counts = _count(paper_rows(c.get("rows", [])))
        print(f"[cckl]   {c.get('notebook')} (paper claims): {counts[stats.HOLDS]} yes, {counts[stats.DOES_NOT_HOLD]} no, "
              f"{counts[stats.INCONCLUSIVE]} inconclusive, {counts[stats.NOT_TESTED]} not tested at this scale, "
              f"{counts[stats.NOT_INFORMATIVE] + counts[stats.NOT_ASSESSED]} not judged")
    return 0
