#!/usr/bin/env bash
# Build the documentation site:  scripts/docs.sh [--check] [--screens]
#
#  - makes sure the virtualenv (.venv, as scripts/test.sh makes it;
#    IPVS_VENV to choose another) has the documentation's requirements: the
#    `docs` extra (Sphinx, MyST, the Furo theme, matplotlib) and the `test`
#    extra (autodoc imports ipvs.testing and the director). When the project
#    is importable from this checkout already (built in place, or installed
#    with pip install -e), only missing requirements are installed and the
#    project is left as it is; otherwise it is installed with
#    pip install -e '.[test,docs]'. IPVS_SKIP_INSTALL=1: install nothing.
#  - draws the benchmark plots from docs/bench/*.json (matplotlib, through the
#    Sphinx extension docs/_ext/benchplots.py),
#  - builds docs/ with Sphinx into build/docs/html, warnings are errors,
#  - --check: then checks that every internal link and anchor of the built
#    site resolves (scripts/docs_links.py),
#  - --screens: then opens every page in headless Chromium (Debian's
#    `chromium`) at 1280 px and 390 px wide and fails on console errors, on a
#    page wider than its window and on content cut off; saves screenshots of
#    the front page, a guide, the director page, the benchmarks page and an
#    API page to build/docs/screens/ (scripts/docs_screens.py; --full: whole
#    pages too, NAME-WIDTH-full.png).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
check=0
screens=0
full=()
for a in "$@"; do
    case $a in
        --check) check=1 ;;
        --screens) screens=1 ;;
        --full) screens=1; full=(--full) ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docs.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
VENV=${IPVS_VENV:-$ROOT/.venv}
VPY=$VENV/bin/python
if [ "${IPVS_SKIP_INSTALL:-0}" != 1 ]; then
    if ! "$VPY" -c 'import sys' 2>/dev/null; then
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    # from $ROOT, `python -c` finds the package of this checkout (in-place build)
    if "$VPY" -c 'import ipvs._libipvs' 2>/dev/null; then
        # the requirements of the docs and test extras that are not installed
        missing=$("$VPY" - <<'PY'
import re
try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None
from importlib import metadata
text = open("pyproject.toml", encoding="utf-8").read()
if tomllib is not None:
    extras = tomllib.loads(text)["project"]["optional-dependencies"]
    reqs = extras["docs"] + extras["test"]
else:
    reqs = []
    for name in ("docs", "test"):
        line = re.search(r"^%s\s*=\s*\[(.*)\]" % name, text, re.M).group(1)
        reqs += re.findall(r'"([^"]+)"', line)
for req in reqs:
    name = re.split(r"[\s<>=!~;\[]", req, 1)[0]
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(req)
PY
)
        if [ -n "$missing" ]; then
            echo "docs.sh: installing into $VENV:" $missing >&2
            # shellcheck disable=SC2086  # one requirement per word
            "$VPY" -m pip install -q $missing
        fi
    else
        "$VPY" -m pip install -q -e '.[test,docs]'
    fi
fi
OUT=$ROOT/build/docs/html
rm -rf "$OUT" "$ROOT/build/docs/doctrees"
"$VPY" -m sphinx -W --keep-going -q -b html -d "$ROOT/build/docs/doctrees" docs "$OUT"
pages=$(find "$OUT" -name '*.html' -not -path '*/_modules/*' -not -name 'genindex.html' \
        -not -name 'search.html' -not -name 'py-modindex.html' | wc -l)
echo "docs.sh: built $pages pages into $OUT" >&2
if [ "$check" = 1 ]; then
    "$VPY" scripts/docs_links.py "$OUT"
fi
if [ "$screens" = 1 ]; then
    "$VPY" scripts/docs_screens.py "$OUT" "$ROOT/build/docs/screens" "${full[@]}"
fi
