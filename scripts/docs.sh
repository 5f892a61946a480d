#!/usr/bin/env bash
# Build the documentation site:  scripts/docs.sh [--check] [--screens]
#
#  - installs the project with its `docs` extra into the virtualenv (.venv, as
#    scripts/test.sh makes it; IPVS_VENV to choose another),
#  - draws the benchmark plots from docs/bench/*.json (matplotlib, through the
#    Sphinx extension docs/_ext/benchplots.py),
#  - builds docs/ with Sphinx into build/docs/html, warnings are errors,
#  - --check: then checks that every internal link and anchor of the built
#    site resolves (scripts/docs_links.py),
#  - --screens: then opens the index, a guide and an API page in headless
#    Chromium (Debian's `chromium`), saves screenshots to build/docs/screens/
#    and fails on console errors (scripts/docs_screens.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
check=0
screens=0
for a in "$@"; do
    case $a in
        --check) check=1 ;;
        --screens) screens=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docs.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
VENV=${IPVS_VENV:-$ROOT/.venv}
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
if [ "${IPVS_SKIP_INSTALL:-0}" != 1 ] || ! "$VENV/bin/python" -c 'import sphinx, myst_parser, matplotlib' 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q -e '.[test,docs]'
fi
OUT=$ROOT/build/docs/html
rm -rf "$OUT" "$ROOT/build/docs/doctrees"
"$VENV/bin/python" -m sphinx -W --keep-going -q -b html -d "$ROOT/build/docs/doctrees" docs "$OUT"
pages=$(find "$OUT" -name '*.html' -not -path '*/_modules/*' -not -name 'genindex.html' \
        -not -name 'search.html' -not -name 'py-modindex.html' | wc -l)
echo "docs.sh: built $pages pages into $OUT" >&2
if [ "$check" = 1 ]; then
    "$VENV/bin/python" scripts/docs_links.py "$OUT"
fi
if [ "$screens" = 1 ]; then
    "$VENV/bin/python" scripts/docs_screens.py "$OUT" "$ROOT/build/docs/screens"
fi
