#!/usr/bin/env bash
# CI's wheel check (called from .ci/run): build the sdist and ONE wheel with the
# current python3 (or $PYTHON), repair and verify it exactly as wheels/build.sh
# does (auditwheel: manylinux tag, nothing beyond libc; contents; smoke test and
# unit tests from the installed wheel in a fresh venv; mypy --strict on
# tests/typing/check_api.py against it).  Network: PyPI only (pip), plus
# Debian's binutils if readelf is missing.  Takes about 1-2 minutes.
#
#   wheels/ci-check.sh [extra build.sh options, e.g. --kernel or --no-typing]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "ci-check.sh: no $PY" >&2; exit 2; }
if ! command -v readelf >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends binutils >&2
fi
start=$SECONDS
rc=0
"$ROOT/wheels/build.sh" --python-exe "$PY" "$@" || rc=$?
echo "ci-check.sh: $( [ $rc = 0 ] && echo PASSED || echo FAILED ) in $((SECONDS - start)) s" >&2
exit $rc
