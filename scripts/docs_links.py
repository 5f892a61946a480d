"""Check every internal link of the built documentation site.

    python scripts/docs_links.py build/docs/html

Every ``href`` and ``src`` of every page that is not an external URL must
name a file of the site, and its ``#fragment`` an ``id`` on that page.
Prints each broken link with the page it is on; exit status 1 if any.
"""
from __future__ import annotations

import os
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.links.append(value)
            elif name in ("id", "name"):
                self.ids.add(value)


def _parse(path: str) -> _Page:
    page = _Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def check(root: str) -> tuple[int, list[str]]:
    pages: dict[str, _Page] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".html"):
                path = os.path.normpath(os.path.join(folder, name))
                pages[path] = _parse(path)
    broken: list[str] = []
    count = 0
    for path, page in sorted(pages.items()):
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue                      # external: not checked (no network here)
            count += 1
            target = path if not parts.path else os.path.normpath(
                os.path.join(os.path.dirname(path), unquote(parts.path)))
            if os.path.isdir(target):
                target = os.path.join(target, "index.html")
            rel = os.path.relpath(path, root)
            if not os.path.exists(target):
                broken.append(f"{rel}: {link} (no such file)")
                continue
            if parts.fragment and target.endswith(".html"):
                other = pages.get(target) or _parse(target)
                if unquote(parts.fragment) not in other.ids:
                    broken.append(f"{rel}: {link} (no anchor #{parts.fragment})")
    return count, broken


def main(argv: list[str]) -> int:
    root = argv[1] if len(argv) > 1 else "build/docs/html"
    count, broken = check(root)
    for b in broken:
        print("broken link:", b)
    print(f"docs_links: {count} internal links checked, {len(broken)} broken", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
