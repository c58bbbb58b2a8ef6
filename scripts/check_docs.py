"""Open every page `make docs` wrote in a real browser (headless Chromium) and fail on a broken link or image.

    python scripts/check_docs.py build/docs [--shots /tmp/docs]

From ``index.html``, every local link (``href``) and image (``src``) must name a file that exists, followed
through every HTML page it reaches (``check_report.broken_links``: the API pages, the executed notebooks, the
report). Then one Chromium, driven over its DevTools protocol (``check_lab.Browser``), loads each of those pages:
each must finish loading, show a heading, and every image on it must have loaded. Screenshots of the index and
of the package's API page go to SHOTS-index.png and SHOTS-api.png. Needs Debian's ``chromium``.
Exit status: 0 when every page loads whole and every link resolves, 1 otherwise, 2 when the check cannot start.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_lab import Stop, start_browser  # noqa: E402
from check_report import broken_links  # noqa: E402

#: JavaScript: whether the page has loaded, its first heading, and the images that did not load.
_PAGE_JS = """JSON.stringify({ready: document.readyState === 'complete',
  heading: (document.querySelector('h1, h2') || {textContent: ''}).textContent.trim(),
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))})"""


def pages(index: Path) -> list[Path]:
    """``index`` and every local HTML page reachable from it by links."""
    seen: set[Path] = set()
    broken_links(index, seen)  # walks every page it reaches, recording each in ``seen``
    return sorted(seen)


def load(browser, page: Path) -> dict:
    """Load ``page`` in ``browser``; its state once loaded (:data:`_PAGE_JS`)."""
    import json

    browser.call("Page.navigate", url=page.as_uri())
    end = time.monotonic() + 60
    while time.monotonic() < end:
        state = json.loads(browser.js(_PAGE_JS) or "{}")
        if state.get("ready"):
            return state
        time.sleep(0.2)
    return {"ready": False, "heading": "", "broken": []}


def check(folder: Path, shots: str) -> int:
    index = folder / "index.html"
    if not index.is_file():
        raise Stop(f"no {index}: run `make docs` first")
    problems = [f"broken link: {b}" for b in broken_links(index, set())]
    found = pages(index)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="check-docs-")))
        browser = start_browser(stack, tmp)
        for page in found:
            state = load(browser, page)
            if not state["ready"]:
                problems.append(f"{page}: did not finish loading in Chromium")
            elif not state["heading"]:
                problems.append(f"{page}: no heading shown")
            problems += [f"{page}: image did not load: {src}" for src in state["broken"]]
            if page == index or page.name == "cckl_core.html":
                browser.screenshot(Path(f"{shots}-{'index' if page == index else 'api'}.png"))
    for p in problems:
        print(p)
    print(f"{index}: {len(found)} pages loaded in Chromium, {len(problems)} problem(s); screenshots {shots}-index.png, "
          f"{shots}-api.png")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="what make docs wrote (build/docs)")
    parser.add_argument("--shots", default="/tmp/docs", help="screenshots: SHOTS-index.png, SHOTS-api.png")
    args = parser.parse_args()
    try:
        return check(args.folder.resolve(), args.shots)
    except Stop as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
