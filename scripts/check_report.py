"""Open a profile's HTML report in a real browser (headless Chromium) and fail on a missing image or a broken link.

    python scripts/check_report.py figures/quick/index.html [--screenshot report.png]

Chromium loads the page from the file system and runs it; the page's own load handler marks every image
that did not load (``data-broken-images`` on ``<body>``), which ``--dump-dom`` returns. Every relative link
(``href``) of the page and of the executed notebooks it links to must name a file that exists, and every
``#anchor`` an element of the page. Needs Debian's ``chromium`` (``apt-get install -y chromium``).
Exit status: 0 when every image loaded and every link resolves, 1 otherwise, 2 when Chromium is missing.
"""
from __future__ import annotations

import argparse
import html.parser
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.ids, self.body = [], [], set(), {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.srcs.append(a["src"])
        if tag == "body":
            self.body = a


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("error: no Chromium here; install Debian's package: apt-get install -y chromium")


def broken_links(page: Path, seen: set[Path]) -> list[str]:
    """Relative links of ``page`` (and of the HTML pages it links to) that resolve to nothing."""
    if page in seen:
        return []
    seen.add(page)
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    bad = []
    for ref in parser.hrefs + parser.srcs:
        url = urlparse(ref)
        if url.scheme in ("http", "https", "mailto", "data", "javascript"):
            continue
        if not url.path:
            if url.fragment and url.fragment not in parser.ids:
                bad.append(f"{page}: #{url.fragment} names no element")
            continue
        target = (page.parent / unquote(url.path)).resolve()
        if not target.exists():
            bad.append(f"{page}: {ref} -> {target} does not exist")
        elif target.suffix == ".html":
            bad += broken_links(target, seen)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    page = args.page.resolve()
    browser = chromium()
    with tempfile.TemporaryDirectory() as profile:
        common = [browser, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
        dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
        if args.screenshot:
            subprocess.run([*common, f"--screenshot={args.screenshot.resolve()}", "--window-size=1400,2200",
                            page.as_uri()], capture_output=True, timeout=120)
    loaded = _Links()
    loaded.feed(dom)
    problems = []
    if "data-images" not in loaded.body:
        problems.append(f"{page}: the page did not finish loading in Chromium (no data-images on <body>)")
    elif loaded.body.get("data-broken-images"):
        problems.append(f"{page}: images that did not load: {loaded.body['data-broken-images']}")
    problems += broken_links(page, set())
    for p in problems:
        print(f"broken: {p}")
    n_images = loaded.body.get("data-images", "?")
    print(f"{page}: {n_images} images loaded in Chromium, {len(problems)} problem(s)"
          + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
