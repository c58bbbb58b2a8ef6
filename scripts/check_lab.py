"""Open notebooks in a real JupyterLab, in a real browser, run them all, save, and fail if git sees a change.

    python scripts/check_lab.py CLONE notebooks/01_theorem_check.ipynb [more notebooks] [--port 8899]

CLONE is a checkout with the notebook filter configured (``make notebook-filter``, which ``make env`` runs) and
nothing to commit. For each notebook, as a person would: JupyterLab as ``make lab`` starts it (the ``jupyter``
beside this Python, with CLONE's pre-save hook ``cckl_core.lab.SERVER_OPTION``; token off, on 127.0.0.1, the
kernels importing CLONE's ``cckl_core``) opens it in headless Chromium; the Run menu's "Run All Cells" is clicked
with the mouse; once every code cell has its execution count and the kernel is idle, Ctrl+S saves it. The run
must have left outputs on the page and no error output; then ``git status --porcelain`` in CLONE must print
nothing. With ``--plain`` JupyterLab runs without the hook (any Jupyter): the saved file must hold the outputs,
and ``git diff`` must show nothing (``git status`` may list the file: git compares sizes first). A screenshot of
each notebook after its run is written to SHOTS-<notebook>.png. Chromium is driven through its DevTools protocol
(``websocket-client``, which Jupyter itself installs): no Selenium, no driver. Needs Debian's ``chromium``.
Exit status: 0 when git stays clean after every notebook, 1 when it does not (its ``git status`` is printed),
2 when the check cannot start (no Chromium, no filter, a dirty clone, JupyterLab not answering).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import websocket  # websocket-client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_report import FLAGS, chromium  # noqa: E402  (one set of Chromium flags for every browser check)

#: JavaScript: the notebook at PATH as JupyterLab holds it (``--LabApp.expose_app_in_browser``): its code cells'
#: execution counts (null: not run, or running), its outputs and error outputs, unsaved changes, an open dialog.
_STATE_JS = """(() => { const app = window.jupyterapp;
  const w = app && Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === PATH);
  const dialog = !!document.querySelector('.jp-Dialog');
  const browser = app && app.shell.widgets && Array.from(app.shell.widgets('left')).find(w => w.id === 'filebrowser');
  const folder = browser ? browser.model.path : null;
  if (!w || !w.content || !w.content.model || !w.context) return JSON.stringify({counts: [], dialog, folder});
  const cells = Array.from(w.content.model.cells).filter(c => c.type === 'code');
  const outputs = cells.flatMap(c => c.outputs.toJSON());
  return JSON.stringify({counts: cells.map(c => c.executionCount), dialog, folder, dirty: w.context.model.dirty,
    outputs: outputs.length,
    errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)});
})()"""


class Stop(Exception):
    """The check cannot go on (exit status 2)."""


class Browser:
    """One Chromium page driven over the DevTools protocol: evaluate JavaScript, click, type, screenshot."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive between the answers; they are not needed here
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise Stop(f"Chromium refused {method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def click_text(self, selector: str, text: str | None, clicks: int = 1) -> None:
        """Click (``clicks=2``: double-click), with the mouse, the centre of the first visible element matching
        ``selector`` whose text is ``text`` (any text: ``None``)."""
        rect = self.js(f"""(() => {{ const e = [...document.querySelectorAll({json.dumps(selector)})]
            .find(e => ({json.dumps(text)} === null || e.textContent.trim() === {json.dumps(text)})
                       && e.offsetParent !== null);
            if (!e) return null; const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        if rect is None:
            raise Stop(f"no {selector!r} reading {text!r} on the page")
        x, y = rect
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for count in range(1, clicks + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)

    def ctrl(self, key: str) -> None:
        code = {"type": "keyDown", "modifiers": 2, "key": key, "code": f"Key{key.upper()}",
                "windowsVirtualKeyCode": ord(key.upper())}
        self.call("Input.dispatchKeyEvent", **code)
        self.call("Input.dispatchKeyEvent", **{**code, "type": "keyUp"})

    def screenshot(self, path: Path) -> None:
        import base64
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float, what: str) -> bytes:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            time.sleep(0.5)
    raise Stop(f"{what} did not answer at {url} within {seconds:.0f} s")


def _start(stack: ExitStack, cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start ``cmd`` (its output to ``log``); it is terminated, by its process id, when ``stack`` closes."""
    out = stack.enter_context(open(log, "wb"))
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)

    def stop():
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stack.callback(stop)
    return proc


def start_lab(stack: ExitStack, clone: Path, port: int, tmp: Path, hook: bool) -> str:
    """JupyterLab on ``clone`` at 127.0.0.1:``port``, token off, its settings and workspaces in ``tmp``; with
    ``hook``, CLONE's pre-save hook, as ``make lab`` starts it."""
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        raise Stop(f"no {jupyter}: run this script with the project's Python (.venv/bin/python)")
    env = {**os.environ, "PYTHONPATH": str(clone), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.token=",
           "--ServerApp.password=", f"--ServerApp.root_dir={clone}", "--ServerApp.port_retries=0",
           "--LabApp.expose_app_in_browser=True"]
    if hook:
        sys.path.insert(0, str(clone))
        from cckl_core.lab import SERVER_OPTION  # the option `make lab` passes
        cmd.append(SERVER_OPTION)
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    _start(stack, cmd, tmp / "jupyter.log", cwd=clone, env=env)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/api/status", 120, "JupyterLab")
    return url


def start_browser(stack: ExitStack, tmp: Path) -> Browser:
    port = _free_port()
    try:
        browser_path = chromium()
    except SystemExit as missing:
        raise Stop(str(missing.code)) from None
    cmd = [browser_path, *FLAGS, f"--user-data-dir={tmp / 'chromium'}", f"--remote-debugging-port={port}",
           "--window-size=1400,1000", "about:blank"]
    _start(stack, cmd, tmp / "chromium.log")
    pages = json.loads(_wait_http(f"http://127.0.0.1:{port}/json/list", 60, "Chromium"))
    page = next(p for p in pages if p.get("type") == "page")
    browser = Browser(page["webSocketDebuggerUrl"])
    stack.callback(browser.ws.close)
    browser.call("Page.enable")
    return browser


def _kernel_state(url: str, notebook: str) -> str | None:
    sessions = json.loads(_wait_http(f"{url}/api/sessions", 30, "JupyterLab"))
    states = [s["kernel"]["execution_state"] for s in sessions if s.get("path") == notebook and s.get("kernel")]
    return states[0] if states else None


def _state(browser: Browser, notebook: str) -> dict:
    return json.loads(browser.js(_STATE_JS.replace("PATH", json.dumps(notebook))) or '{"counts": [], "dialog": false}')


def _until(what: str, seconds: float, test) -> None:
    end = time.monotonic() + seconds
    while not test():
        if time.monotonic() > end:
            raise Stop(f"{what}: not within {seconds:.0f} s")
        time.sleep(1)


def run_all_and_save(browser: Browser, url: str, clone: Path, notebook: str, seconds: float) -> tuple[dict, float]:
    """Open ``notebook`` from JupyterLab's file browser (double-click), click into it, click Run > Run All Cells,
    wait for the run, press Ctrl+S. Returns the notebook's state after the save (:data:`_STATE_JS`) and the
    seconds the run took."""
    def state() -> dict:
        return _state(browser, notebook)
    folder = Path(notebook).parent.as_posix().removeprefix(".")
    if _state(browser, notebook).get("folder") != folder:  # JupyterLab itself, its file browser in the folder
        browser.call("Page.navigate", url=f"{url}/lab/tree/{quote(folder)}")
        _until(f"JupyterLab showing {folder}/", 120, lambda: state().get("folder") == folder)
    browser.click_text(".jp-DirListing-itemText", Path(notebook).name, clicks=2)  # as a person opens it
    _until(f"{notebook} opening", 120, lambda: state()["counts"] or state()["dialog"])
    if state()["dialog"]:  # a notebook that names no kernel: take the one JupyterLab proposes
        print(f"{notebook}: JupyterLab asked for a kernel; took the one it proposed")
        browser.click_text(".jp-Dialog button", "Select")
    _until(f"{notebook}'s kernel starting", 120, lambda: _kernel_state(url, notebook) == "idle")
    browser.click_text(".jp-NotebookPanel .jp-InputPrompt", None)  # as a person clicks into the notebook
    browser.click_text(".lm-MenuBar-item", "Run")
    browser.click_text(".lm-Menu-item .lm-Menu-itemLabel", "Run All Cells")
    start = time.monotonic()
    _until(f"running every cell of {notebook}", seconds,
           lambda: None not in state()["counts"] and _kernel_state(url, notebook) == "idle")
    took = time.monotonic() - start
    before = (clone / notebook).stat().st_mtime_ns
    browser.click_text(".jp-NotebookPanel .jp-InputPrompt", None)  # focus the notebook (command mode)
    browser.ctrl("s")
    _until(f"saving {notebook} with Ctrl+S", 60,
           lambda: (clone / notebook).stat().st_mtime_ns != before and not state()["dirty"])
    return state(), took


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=clone, capture_output=True, text=True, check=True).stdout


def _preflight(clone: Path, notebooks: list[str]) -> None:
    if not (clone / ".git").exists():
        raise Stop(f"{clone} is not a git checkout")
    clean = subprocess.run(["git", "config", "filter.nbstripout.clean"], cwd=clone, capture_output=True, text=True)
    if not clean.stdout.strip():
        raise Stop(f"{clone} has no notebook filter: run `make notebook-filter` there (make env does)")
    for nb in notebooks:
        if not (clone / nb).is_file():
            raise Stop(f"no notebook {clone / nb}")
    if _git(clone, "status", "--porcelain"):
        raise Stop(f"{clone} has changes before the check:\n{_git(clone, 'status', '--porcelain')}")


def _verdict(clone: Path, notebook: str, state: dict, hook: bool) -> tuple[bool, str]:
    """Whether git stayed clean after ``notebook`` was run and saved, and what git says."""
    status, diff = _git(clone, "status", "--porcelain"), _git(clone, "diff")
    on_disk = sum(len(c.get("outputs", [])) for c in json.loads((clone / notebook).read_text())["cells"])
    ran = state["outputs"] > 0 and not state["errors"] and None not in state["counts"]
    ok = ran and (not status if hook else on_disk > 0 and not diff)
    return ok, (f"{len(state['counts'])} code cells run, {state['outputs']} outputs on the page "
                f"({len(state['errors'])} errors), {on_disk} outputs in the saved file; git status "
                f"{'clean' if not status else repr(status.strip())}, git diff {'empty' if not diff else 'NOT empty'}")


def check(clone: Path, notebooks: list[str], port: int, shots: str, seconds: float, hook: bool = True) -> int:
    _preflight(clone, notebooks)
    failed = 0
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="check-lab-")))
        url = start_lab(stack, clone, port, tmp, hook)
        browser = start_browser(stack, tmp)
        for nb in notebooks:
            shot = Path(f"{shots}-{Path(nb).stem}.png")
            try:
                state, took = run_all_and_save(browser, url, clone, nb, seconds)
            except Stop as err:
                browser.screenshot(shot)
                log = shot.with_suffix(".log")
                log.write_bytes((tmp / "jupyter.log").read_bytes())
                raise Stop(f"{err} (the page then: {shot}; JupyterLab's log: {log})") from None
            browser.screenshot(shot)
            ok, said = _verdict(clone, nb, state, hook)
            failed += not ok
            print(f"{'ok' if ok else 'FAILED'}: {nb} ({'make lab' if hook else 'plain JupyterLab'}), run in "
                  f"{took:.0f} s: {said}; screenshot {shot}")
            for e in state["errors"]:
                print(f"  error output: {e}")
            if _git(clone, "diff"):
                print(_git(clone, "diff", "--stat"))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a checkout with the notebook filter configured, nothing to commit")
    parser.add_argument("notebooks", nargs="+", help="notebooks to run, relative to CLONE (notebooks/01_...ipynb)")
    parser.add_argument("--port", type=int, default=8899, help="JupyterLab's port (default 8899)")
    parser.add_argument("--shots", default="/tmp/lab", help="screenshots go to SHOTS-<notebook>.png (default /tmp/lab)")
    parser.add_argument("--seconds", type=float, default=900, help="longest wait for one notebook's run (default 900)")
    parser.add_argument("--plain", action="store_true", help="JupyterLab without make lab's pre-save hook (any "
                                                             "Jupyter): git diff must stay empty")
    args = parser.parse_args()
    try:
        return check(args.clone.resolve(), args.notebooks, args.port, args.shots, args.seconds, hook=not args.plain)
    except Stop as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
