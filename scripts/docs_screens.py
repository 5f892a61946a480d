"""Look at the built site as a reader: screenshots in headless Chromium.

    python scripts/docs_screens.py build/docs/html build/docs/screens

Opens the index, a guide and an API page in Debian's ``chromium``
(headless), saves a PNG of each and fails (exit 1) when a page writes to the
browser console: a script error or a resource that did not load. The
screenshots are for a person to look at.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

PAGES = [("index", "index.html"),
         ("guide-batch-apply", "guides/batch-apply.html"),
         ("api-handle", "api/handle.html")]
CONSOLE = re.compile(r":CONSOLE[:(]")


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("docs_screens: no chromium (Debian: apt-get install chromium)")


def shoot(exe: str, url: str, png: str) -> list[str]:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", "--window-size=1280,1000",
           f"--screenshot={png}", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0 or not os.path.exists(png):
        raise SystemExit(f"docs_screens: chromium failed on {url}:\n{proc.stderr[-2000:]}")
    return [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]


def main(argv: list[str]) -> int:
    site = os.path.abspath(argv[1] if len(argv) > 1 else "build/docs/html")
    out = os.path.abspath(argv[2] if len(argv) > 2 else "build/docs/screens")
    os.makedirs(out, exist_ok=True)
    exe = browser()
    failed = 0
    for name, page in PAGES:
        path = os.path.join(site, page)
        if not os.path.exists(path):
            print(f"docs_screens: {page} is missing from the site", file=sys.stderr)
            failed = 1
            continue
        png = os.path.join(out, f"{name}.png")
        messages = shoot(exe, "file://" + path, png)
        for m in messages:
            print(f"docs_screens: console message on {page}: {m}", file=sys.stderr)
        failed |= bool(messages)
        print(f"{png}  ({page}, {len(messages)} console messages)")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv))
