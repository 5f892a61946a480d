"""Look at the built site as a reader: screenshots in headless Chromium.

    python scripts/docs_screens.py build/docs/html build/docs/screens [--full]

Opens every page of the site in Debian's ``chromium`` (headless) at two
widths, a desktop (1280 px) and a phone (390 px, mobile emulation); saves a
PNG of the first screen of the front page, a guide, the director page, the
benchmarks page and an API page (``NAME-WIDTH.png``; with ``--full`` also the
whole page, ``NAME-WIDTH-full.png``) and fails (exit 1) when any page

- writes to the browser console (a script error, a resource that did not
  load, a warning),
- is wider than the window: ``document.documentElement.scrollWidth`` greater
  than its ``clientWidth``, so the reader has to scroll the whole page
  sideways (a code block or a table too wide for the page, not scrolling
  inside itself),
- cuts content off: a code block, table or image wider than its box that
  neither scrolls nor wraps (``overflow-x`` neither ``auto`` nor ``scroll``).

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe``
(file descriptors 3 and 4, NUL-separated JSON): no WebSocket, no package
beyond the standard library. The screenshots are for a person to look at.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

#: (name, page of the site): the pages whose screenshots are kept
PAGES = [("index", "index.html"),
         ("guide-batch-apply", "guides/batch-apply.html"),
         ("director", "director.html"),
         ("benchmarks", "benchmarks.html"),
         ("api-handle", "api/handle.html")]
#: (width, height, mobile emulation)
WIDTHS = [(1280, 900, False), (390, 844, True)]
#: tallest full-page screenshot, CSS pixels
FULL_MAX = 20000
TIMEOUT = 60.0

# Run in the page after it loaded: the page's width against the window's, and
# the elements that make it wider or are cut off (for the error message).
MEASURE = r"""
(() => {
  const de = document.documentElement;
  const vw = de.clientWidth;
  const name = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (el.classList.length) s += '.' + Array.from(el.classList).slice(0, 3).join('.');
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
    return text ? s + ' "' + text + '"' : s;
  };
  const scrolls = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const ox = getComputedStyle(p).overflowX;
      if (ox === 'auto' || ox === 'scroll' || ox === 'hidden' || ox === 'clip') return true;
    }
    return false;
  };
  const wide = [];
  const flagged = new Set();
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > vw + 1 && !scrolls(el)) {
      const st = getComputedStyle(el);
      if (st.position === 'fixed' || st.visibility === 'hidden') continue;
      flagged.add(el);
      if (!flagged.has(el.parentElement))   // the outermost one is the culprit
        wide.push(name(el) + ' right edge ' + Math.round(r.right) + 'px');
    }
  }
  const cut = [];
  for (const el of document.querySelectorAll('pre, table, img, .highlight, .table-wrapper')) {
    const st = getComputedStyle(el);
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 &&
        st.overflowX !== 'auto' && st.overflowX !== 'scroll' && st.overflowX !== 'visible') {
      cut.push(name(el) + ' content ' + el.scrollWidth + 'px in ' + el.clientWidth + 'px');
    }
  }
  return {scrollWidth: de.scrollWidth, clientWidth: vw,
          height: Math.max(de.scrollHeight, document.body.scrollHeight),
          wide: wide.slice(0, 8), cut: cut.slice(0, 8)};
})()
"""


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("docs_screens: no chromium (Debian: apt-get install chromium)")


class Chromium:
    """One headless Chromium, driven over the DevTools pipe."""

    def __init__(self, exe: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="docs-screens-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the pipe at fds 3 (commands) and 4 (replies)
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)    # out of 3 and 4's way first
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)                                        # inheritable, unlike the rest
            os.dup2(w, 4)

        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-sync", "--mute-audio",
               "--font-render-hinting=none", "--remote-debugging-pipe",
               f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=fds,
                                     close_fds=False)  # else 3 and 4 close after fds()
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # already gone: the wait below reaps it
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"chromium closed the pipe:\n{err[-2000:]}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = TIMEOUT) -> dict:
        self._next += 1
        msg: dict = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))


def console_messages(events: list[dict], session: str) -> list[str]:
    out = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console.{p.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") in ("error", "warning"):
                out.append(f"{e.get('source')} {e.get('level')}: {e.get('text')} {e.get('url', '')}")
    return out


def shoot(chrome: Chromium, url: str, png: str, width: int, height: int, mobile: bool,
          full: bool, keep: bool = True) -> tuple[list[str], dict]:
    target = chrome.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = chrome.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log"):
            chrome.send(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        chrome.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
        if mobile:
            chrome.send("Emulation.setTouchEmulationEnabled", {"enabled": True}, session=session)
        chrome.send("Page.navigate", {"url": url}, session=session)
        chrome.wait_event("Page.loadEventFired", session)
        # fonts, the theme's scripts (sidebar, dark mode) and a layout pass
        settle = 300 if keep else 50  # ms: a screenshot to keep waits for the theme's scripts
        chrome.send("Runtime.evaluate", {"expression": "document.fonts.ready.then(() => "
                                         f"new Promise(r => setTimeout(r, {settle})))",
                                         "awaitPromise": True}, session=session)
        measured = chrome.send("Runtime.evaluate", {"expression": MEASURE, "returnByValue": True},
                               session=session)["result"]["value"]
        if keep:
            shot = chrome.send("Page.captureScreenshot", {"format": "png"}, session=session)
            with open(png, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        if full and keep:
            tall = dict(metrics, height=min(int(measured["height"]), FULL_MAX))
            chrome.send("Emulation.setDeviceMetricsOverride", tall, session=session)
            chrome.send("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 200))",
                                             "awaitPromise": True}, session=session)
            shot = chrome.send("Page.captureScreenshot", {"format": "png"}, session=session)
            with open(png[:-4] + "-full.png", "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        return console_messages(chrome.events, session), measured
    finally:
        chrome.send("Target.closeTarget", {"targetId": target})
        chrome.events = [e for e in chrome.events if e.get("sessionId") != session]


def site_pages(site: str) -> list[str]:
    """Every HTML page of the built site, relative to it."""
    found = []
    for folder, _dirs, files in os.walk(site):
        found += [os.path.relpath(os.path.join(folder, f), site)
                  for f in files if f.endswith(".html")]
    return sorted(found)


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    full = "--full" in argv[1:]
    site = os.path.abspath(args[0] if args else "build/docs/html")
    out = os.path.abspath(args[1] if len(args) > 1 else "build/docs/screens")
    os.makedirs(out, exist_ok=True)
    kept = dict((page, name) for name, page in PAGES)
    failed = 0
    for page in kept:
        if not os.path.exists(os.path.join(site, page)):
            print(f"docs_screens: {page} is missing from the site", file=sys.stderr)
            failed = 1
    chrome = Chromium(browser())
    checked = 0
    try:
        for page in site_pages(site):
            for width, height, mobile in WIDTHS:
                name = kept.get(page)
                png = os.path.join(out, f"{name}-{width}.png")  # kept pages only
                messages, m = shoot(chrome, "file://" + os.path.join(site, page), png,
                                    width, height, mobile, full and bool(name), bool(name))
                checked += 1
                problems = [f"console message: {msg}" for msg in messages]
                if m["scrollWidth"] > m["clientWidth"]:
                    problems.append(f"the page is {m['scrollWidth']} px wide in a "
                                    f"{m['clientWidth']} px window; too wide: "
                                    + "; ".join(m["wide"] or ["?"]))
                problems += [f"cut off: {c}" for c in m["cut"]]
                for p in problems:
                    print(f"docs_screens: {page} at {width} px: {p}", file=sys.stderr)
                failed |= bool(problems)
                if name:
                    status = "ok" if not problems else f"{len(problems)} problems"
                    print(f"{png}  ({page}, {width} px, page {m['scrollWidth']} px wide, "
                          f"{status})")
    finally:
        chrome.close()
    print(f"docs_screens: {checked} page views checked (every page at "
          f"{' and '.join(str(w[0]) for w in WIDTHS)} px): "
          f"{'FAILED' if failed else 'no console message, none wider than its window'}",
          file=sys.stderr)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv))
