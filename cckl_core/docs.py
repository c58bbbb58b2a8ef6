"""The API reference built from the docstrings (pdoc), with the executed notebooks beside it: ``make docs``.

    python -m cckl_core.docs [--out build/docs] [--profile quick] [--figures figures]

Writes, under ``--out``:

* ``api/``: pdoc's pages for :mod:`cckl_core` and every public module below it (reStructuredText docstrings);
* ``figures/<profile>/``: a copy of what ``make paper`` published for the profile (``figures/<profile>/``): the
  executed notebooks as pages (``notebooks/*.html``, with their outputs), the report (``index.html``) and the
  figures they show. Only what exists is copied: a profile not rendered yet is said on the page and here;
* ``index.html``: one page linking the modules (each with the first line of its docstring), the executed
  notebooks and the report.

Nothing is computed or rendered: the notebooks are ``make paper``'s.
"""
from __future__ import annotations

import argparse
import html
import importlib
import pkgutil
import re
import shutil
import sys
import warnings
from pathlib import Path

from .paper import NOTEBOOKS

#: Files of a published profile folder that the pages use (no PDFs: the pages show PNGs).
_COPIED = ("*.html", "*.png", "*.md", "*.csv", "*.json", "notebooks/*.html")


def modules(package: str = "cckl_core") -> dict[str, str]:
    """Every public module of ``package`` (none whose name starts with ``_``) and the first paragraph of its
    docstring, on one line."""
    root = importlib.import_module(package)
    names = [package] + sorted(m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
                               if not any(part.startswith("_") for part in m.name.split(".")))
    return {n: " ".join((importlib.import_module(n).__doc__ or "").strip().split("\n\n")[0].split()) for n in names}


def _inline(text: str) -> str:
    """``text`` as HTML, its reStructuredText literals and roles (````x````, ``:func:`x```) as code."""
    return re.sub(r"(?::\w+:)?`{1,2}([^`]+)`{1,2}", r"<code>\1</code>", html.escape(text, quote=False))


def api(out: Path, names: list[str]) -> None:
    """pdoc's pages for the modules ``names`` into ``out`` (replaced). Named one by one: pdoc lists a package's
    submodules only where its ``__all__`` names them."""
    import pdoc
    import pdoc.render

    shutil.rmtree(out, ignore_errors=True)
    pdoc.render.configure(docformat="restructuredtext", footer_text="cckl: API reference (make docs)")
    with warnings.catch_warnings():  # a package names its submodules again: pdoc says so, and writes each once
        warnings.filterwarnings("ignore", message="The module specification", category=UserWarning)
        pdoc.pdoc(*names, output_directory=out)


def published(figures: Path, profile: str, out: Path) -> list[str]:
    """Copy what ``make paper`` published for ``profile`` (``figures/<profile>/``, and ``figures/README.md``
    that its report links) into ``out`` (replaced); return the notebooks found there as pages, in the paper's
    order (none: not rendered for the profile)."""
    source = figures / profile
    shutil.rmtree(out, ignore_errors=True)
    if not (source / "notebooks").is_dir():
        return []
    if (figures / "README.md").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(figures / "README.md", out.parent / "README.md")
    for pattern in _COPIED:
        for path in source.glob(pattern):
            target = out / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return [nb for nb in NOTEBOOKS if (out / "notebooks" / f"{nb}.html").is_file()]


def index_page(mods: dict[str, str], profile: str, notebooks: list[str], report: bool) -> str:
    """The HTML of the page linking the API modules, the executed notebooks and the report."""
    e = html.escape
    rows = "\n".join(f'<tr><td><a href="api/{e(n.replace(".", "/"))}.html"><code>{e(n)}</code></a></td>'
                     f"<td>{_inline(doc)}</td></tr>" for n, doc in mods.items())
    if notebooks:
        items = "\n".join(f'<li><a href="figures/{e(profile)}/notebooks/{e(nb)}.html">{e(nb)}</a></li>'
                          for nb in notebooks)
        shown = (f"<p>As <code>make paper PROFILE={e(profile)}</code> executed them, with their outputs:</p>"
                 f"<ul>{items}</ul>")
    else:
        shown = (f"<p>No executed notebooks for profile <code>{e(profile)}</code> yet: <code>make paper "
                 f"PROFILE={e(profile)}</code> renders them, then <code>make docs</code> again.</p>")
    if report:
        shown += (f'<p>The report of every figure and claim: <a href="figures/{e(profile)}/index.html">'
                  f"figures/{e(profile)}/</a>.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cckl: API reference and notebooks</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
td{{padding:.2em .8em;vertical-align:top}} code{{font-size:95%}}</style></head>
<body>
<h1>cckl: API reference and notebooks</h1>
<p>Built by <code>make docs</code> from the docstrings (pdoc) and from what <code>make paper</code> published.</p>
<h2>Executed notebooks (profile {e(profile)})</h2>
{shown}
<h2>API reference</h2>
<table>
{rows}
</table>
</body></html>
"""


def build(out: Path, profile: str, figures: Path) -> list[str]:
    """Write the API reference, the published notebooks of ``profile`` and the index page under ``out``;
    return the notebooks found."""
    out.mkdir(parents=True, exist_ok=True)
    mods = modules()
    api(out / "api", list(mods))
    notebooks = published(figures, profile, out / "figures" / profile)
    report = (out / "figures" / profile / "index.html").is_file()
    (out / "index.html").write_text(index_page(mods, profile, notebooks, report), encoding="utf-8")
    return notebooks


def main(argv: list[str] | None = None) -> int:
    from . import profiles

    parser = argparse.ArgumentParser(prog="python -m cckl_core.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/docs"), help="output folder (default build/docs)")
    parser.add_argument("--profile", default="quick", help="whose executed notebooks to include (default quick)")
    parser.add_argument("--figures", type=Path, default=Path("figures"), help="where make paper published them "
                                                                           "(default figures)")
    args = parser.parse_args(argv)
    try:
        profile = profiles.check_name(args.profile)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    notebooks = build(args.out, profile, args.figures)
    said = (f"{len(notebooks)} executed notebooks of profile {profile}" if notebooks else
            f"no executed notebooks of profile {profile} (make paper PROFILE={profile} renders them)")
    print(f"[cckl] {args.out / 'index.html'}: API reference of {len(modules())} modules, {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
