"""The built book in a real browser: every page opened in headless Chromium, offline.

The book is built once per session (``-W -n --keep-going``, into a temporary folder), served
from 127.0.0.1, and each page of the TOC is opened through the Chrome DevTools protocol
(Debian's ``chromium``; ``scripts/setup.sh`` installs it).  Every request that is not to
that local server is refused, as it would be for a reader without a network.  A page fails on:

- a refused or failed load of a script, stylesheet or font, a JavaScript exception or a console error;
- a chart (altair output) with no rendered SVG or canvas, or a saved widget left undrawn;
- raw TeX (``\\(``, ``\\[``, ``$$``) left in the text after MathJax ran;
- an output cell whose content is wider than its box (a cut-off line, a table or chart too wide);
- a test marker (``NBVAL_...``) visible to readers.

Set BINDLIB_BOOK_HTML=path/to/_build/html to check an existing build instead of building,
BINDLIB_SCREENSHOTS=folder to save a full-page PNG of every page, and BINDLIB_SKIP_BROWSER=1
to skip these tests on a machine without Chromium (CI never sets it).
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PAGE_TIMEOUT_S = 30


def toc_pages() -> list[str]:
    """The documents of _toc.yml in reading order ('intro', 'chapters/01_task', ...)."""
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) if isinstance(entry, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [p.removesuffix(".md").removesuffix(".ipynb") for p in pages]


PAGES = toc_pages()


def find_browser() -> str | None:
    return next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)


# --------------------------------------------------------------------------- the book and a server
@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    given = os.environ.get("BINDLIB_BOOK_HTML")
    if given:
        html = Path(given)
        assert (html / "index.html").is_file(), f"BINDLIB_BOOK_HTML={given} holds no built book (no index.html)."
        return html
    out = tmp_path_factory.mktemp("book")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(REPO), "--path-output", str(out), "-W", "-n", "--keep-going"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"the book build failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return out / "_build" / "html"


class serve:
    """Serve a folder on 127.0.0.1 (a free port) for the life of a with-block."""

    def __init__(self, folder: Path):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def server(book_html):
    with serve(book_html) as url:
        yield url


# --------------------------------------------------------------------------- a minimal DevTools client
class Chrome:
    """Headless Chromium driven over the DevTools protocol (one page, flat JSON messages)."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000):
        import websocket  # websocket-client

        self.profile = tempfile.mkdtemp(prefix="bindlib-chrome-")
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--mute-audio",
             f"--window-size={width},{height}", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{binary} did not start its DevTools endpoint")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        browser = websocket.create_connection(f"ws://127.0.0.1:{port}{port_file.read_text().split()[1]}",
                                              suppress_origin=True, timeout=PAGE_TIMEOUT_S)
        self.ws, self.next_id, self.events = browser, 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.local_prefix = "http://127.0.0.1:"  # the only origin allowed to answer
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        # Every request passes through here, so none leaves the machine (see _on_event).
        self.call("Fetch.enable", patterns=[{"urlPattern": "*"}])

    def _send(self, method: str, params: dict, session: bool = True) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session and getattr(self, "session", None):
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        return self.next_id

    def _on_event(self, event: dict) -> None:
        if event.get("method") == "Fetch.requestPaused":
            p = event["params"]
            url = p["request"]["url"]
            if url.startswith((self.local_prefix, "data:", "blob:")):
                self._send("Fetch.continueRequest", {"requestId": p["requestId"]})
            else:
                self._send("Fetch.failRequest", {"requestId": p["requestId"], "errorReason": "InternetDisconnected"})
                self.events.append({"method": "offline.refused",
                                    "params": {"url": url, "type": p.get("resourceType", "")}})
            return
        self.events.append(event)

    def _receive(self, timeout: float) -> dict | None:
        self.ws.settimeout(max(timeout, 0.01))
        try:
            return json.loads(self.ws.recv())
        except Exception as exc:  # websocket timeout
            if type(exc).__name__ in ("WebSocketTimeoutException", "TimeoutError"):
                return None
            raise

    def call(self, method: str, timeout: float = PAGE_TIMEOUT_S, **params) -> dict:
        wanted = self._send(method, params, session=not method.startswith("Target."))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                continue
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._on_event(message)
        raise TimeoutError(f"{method} got no answer in {timeout} s")

    def wait_for_event(self, name: str, timeout: float = PAGE_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == name for e in self.events):
                return True
            message = self._receive(deadline - time.monotonic())
            if message and "method" in message:
                self._on_event(message)
        return False

    def evaluate(self, expression: str, timeout: float = PAGE_TIMEOUT_S):
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.events = []
        self.call("Page.navigate", url=url)
        if not self.wait_for_event("Page.loadEventFired"):
            raise TimeoutError(f"{url} did not finish loading in {PAGE_TIMEOUT_S} s")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


# What the page reports about itself once MathJax, the charts and the widgets have had their turn.
INSPECT_PAGE = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const charts = () => [...document.querySelectorAll('[id^="altair-viz-"], .bindlib-chart')];
  const widgets = () => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const drawn = s => { const p = s.previousElementSibling; return !!(p && p.classList.contains('widget-subarea') && p.children.length); };
  for (let i = 0; i < 150; i++) {
    if (charts().every(c => c.querySelector('svg, canvas')) && widgets().every(drawn)) break;
    await sleep(100);
  }
  await sleep(200);  // let layouts settle before measuring widths
  const where = el => {
    let h = null, n = el;
    while (n && !h) { let s = n.previousElementSibling; while (s && !h) { if (/^H[1-6]$/.test(s.tagName)) h = s; else { const q = s.querySelectorAll && s.querySelectorAll('h1,h2,h3,h4,h5,h6'); if (q && q.length) h = q[q.length - 1]; } s = s.previousElementSibling; } n = n.parentElement; }
    return h ? h.textContent.replace(/[#¶]/g, '').trim().slice(0, 60) : '(top)';
  };
  const report = {charts: charts().length, widgets: widgets().length, problems: [], content: []};
  for (const c of charts()) if (!c.querySelector('svg, canvas'))
    report.problems.push(`chart not rendered (under "${where(c)}"): ${(c.innerText || '').trim().slice(0, 120)}`);
  for (const s of widgets()) if (!drawn(s)) report.problems.push(`saved widget not drawn (under "${where(s)}")`);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const skip = 'PRE, CODE, SCRIPT, STYLE, MJX-CONTAINER, .highlight, .MathJax';
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent, el = n.parentElement;
    if (!el || el.closest(skip)) continue;
    for (const m of ['\\(', '\\)', '\\[', '\\]', '$$']) if (t.includes(m)) {
      report.problems.push(`raw TeX ${m} (under "${where(el)}"): ${t.trim().slice(0, 120)}`); break; }
  }
  if (document.body.innerText.includes('NBVAL_')) {
    const at = [...document.querySelectorAll('pre, p')].find(e => e.innerText.includes('NBVAL_'));
    report.content.push(`test marker NBVAL_ visible to readers (under "${at ? where(at) : '?'}")`);
  }
  const inWidget = el => el.closest('.widget-subarea, .jupyter-widgets, .lm-Widget');
  for (const out of document.querySelectorAll('.cell_output')) {
    const boxes = [out, ...out.querySelectorAll('pre, table, .output, [id^="altair-viz-"], .bindlib-chart, img')];
    for (const el of boxes) {
      if (inWidget(el) || el.clientWidth === 0) continue;
      const box = el.tagName === 'IMG' ? out.clientWidth : el.clientWidth;
      const width = el.tagName === 'IMG' ? el.getBoundingClientRect().width : el.scrollWidth;
      const frame = (el.parentElement && el.parentElement.closest('.admonition')) || out;  // a box that clips
      const past = el.getBoundingClientRect().right - frame.getBoundingClientRect().right;
      if (width > box + 2 || past > 2) {
        const longest = (el.innerText || el.alt || '').split('\n').reduce((a, b) => b.length > a.length ? b : a, '');
        report.content.push(past > 2 ? `output runs ${Math.round(past)} px past its box (under "${where(out)}"): ${longest.trim().slice(0, 100)}`
                                     : `output wider than its box (${Math.round(width)} > ${box} px, under "${where(out)}"): ${longest.trim().slice(0, 100)}`);
        break;
      }
    }
  }
  return report;
})()
"""


# sphinx-book-theme logs this on a reader's first page (no colour mode stored yet); harmless.
THEME_NOISE = ("Got invalid theme mode: . Resetting to auto.",)


def event_problems(events: list[dict]) -> list[str]:
    """Failed or refused loads of code, styles and fonts, exceptions and console errors."""
    found = []
    code_types = {"Script", "Stylesheet", "Font", "XHR", "Fetch", "Document", "Other", "Manifest"}
    sent = {e["params"]["requestId"]: e["params"] for e in events if e.get("method") == "Network.requestWillBeSent"}
    refused = {e["params"]["url"] for e in events if e.get("method") == "offline.refused"}
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "offline.refused" and p["type"] in code_types:
            found.append(f"needs the network: {p['type'].lower()} {p['url']}")
        elif method == "Network.loadingFailed":
            request = sent.get(p["requestId"], {})
            url = request.get("request", {}).get("url", "?")
            if p.get("type", request.get("type")) in code_types and url not in refused and not p.get("canceled"):
                found.append(f"failed to load {p.get('type', '').lower()} {url}: {p.get('errorText')}")
        elif (method == "Network.responseReceived" and p["response"]["status"] >= 400 and p.get("type") in code_types
              and not p["response"]["url"].endswith("/favicon.ico")):  # the browser asks for one by itself
            found.append(f"HTTP {p['response']['status']} for {p['response']['url']}")
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            found.append(f"JavaScript exception: {str(d.get('exception', {}).get('description', d.get('text')))[:300]}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            if not any(noise in text for noise in THEME_NOISE):
                found.append(f"console error: {text[:300]}")
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error" and p["entry"]["source"] != "network":
            found.append(f"browser error: {p['entry']['text'][:300]}")
    return found


def inspect(chrome: Chrome, url: str) -> dict:
    chrome.open(url)
    report = chrome.evaluate(INSPECT_PAGE, timeout=60)
    report["problems"] = event_problems(chrome.events) + report["problems"]
    return report


@pytest.fixture(scope="session")
def chrome():
    if os.environ.get("BINDLIB_SKIP_BROWSER") == "1":
        pytest.skip("BINDLIB_SKIP_BROWSER=1")
    binary = find_browser()
    assert binary, ("no Chromium found: install the Debian package (apt-get install chromium), "
                    "which scripts/setup.sh does when it can, or set BINDLIB_SKIP_BROWSER=1")
    browser = Chrome(binary)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def page_reports(server, chrome) -> dict[str, dict]:
    """Open every TOC page once; {page: {"problems": [...], "charts": n, "widgets": n}}."""
    shots = os.environ.get("BINDLIB_SCREENSHOTS")
    reports = {}
    for page in PAGES:
        reports[page] = inspect(chrome, f"{server}/{page}.html")
        if shots:
            chrome.screenshot(Path(shots) / f"{Path(page).name}.png")
    return reports


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(page_reports, page):
    """Scripts, charts, widgets and maths: what the book's infrastructure must get right on every page."""
    report = page_reports[page]
    assert not report["problems"], f"{page}.html ({report['charts']} charts, {report['widgets']} widgets):\n  " + \
        "\n  ".join(report["problems"])


@pytest.mark.parametrize("page", PAGES)
def test_page_outputs_fit_their_column(page_reports, page):
    """Readable outputs: no output wider than the text column, no test markers shown to readers."""
    report = page_reports[page]
    assert not report["content"], f"{page}.html:\n  " + "\n  ".join(report["content"])


BROKEN_PAGE = """<!doctype html><html><head>
<script src="https://cdn.jsdelivr.net/npm/vega@6"></script><script src="missing.js"></script></head>
<body><p>Raw maths: \\(x^2\\)</p>
<div class="cell_output"><div class="output"><pre style="overflow:auto">{long}</pre></div></div>
<div id="altair-viz-0"><img alt="a chart that never rendered"></div>
<div class="cell_output"><pre># NBVAL_IGNORE_OUTPUT</pre></div>
<script>console.error("boom"); undefinedFunction();</script></body></html>"""


def test_the_check_catches_each_kind_of_problem(chrome, tmp_path):
    """Positive control: a page with one of every problem fails with every one of them named."""
    (tmp_path / "broken.html").write_text(BROKEN_PAGE.replace("{long}", "x" * 400))
    with serve(tmp_path) as url:
        report = inspect(chrome, f"{url}/broken.html")
    problems = "\n".join(report["problems"] + report["content"])
    for expected in ("needs the network: script https://cdn.jsdelivr.net/npm/vega@6", "HTTP 404",
                     "raw TeX", "output wider than its box", "chart not rendered", "NBVAL_",
                     "console error: boom", "JavaScript exception"):
        assert expected in problems, f"the check missed {expected!r}; it reported:\n{problems}"


def test_the_book_has_charts(page_reports):
    """The pages really hold charts for the check to look at."""
    assert sum(r["charts"] for r in page_reports.values()) > 0


def test_bindlib_charts_draw_from_the_vendored_vega(chrome, book_html, tmp_path):
    """Positive control for bindlib's renderer: on a page with the book's vega it draws, offline."""
    import altair as alt

    from bindlib.book.offline import chart_html

    chart = alt.Chart(alt.Data(values=[{"x": 1, "y": 2}, {"x": 2, "y": 5}])).mark_line().encode(x="x:Q", y="y:Q")
    scripts = "".join(f'<script src="_static/vega/{lib}.min.js"></script>' for lib in ("vega", "vega-lite", "vega-embed"))
    (tmp_path / "chart.html").write_text(f"<!doctype html><html><head>{scripts}</head><body>"
                                         f"<div class='cell_output'>{chart_html(chart.to_dict())}</div></body></html>")
    (tmp_path / "_static").symlink_to(book_html / "_static")
    with serve(tmp_path) as url:
        report = inspect(chrome, f"{url}/chart.html")
    assert report["charts"] == 1 and not report["problems"] and not report["content"], report
