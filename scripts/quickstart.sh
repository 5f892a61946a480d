#!/usr/bin/env bash
# The quick start (README's first command):  sudo scripts/quickstart.sh
#
# On a fresh Debian 12 machine, as root:
#   1. installs what is missing: user-mode-linux kmod ipvsadm iproute2
#      python3-venv python3-dev build-essential (apt-get),
#   2. makes the virtualenv .venv and installs the project into it
#      (pip install -e .; this builds the C/Cython extension),
#   3. boots the sandbox kernel (User-Mode Linux with IPVS) and runs
#      examples/quickstart.py in it: a client, a director and three real
#      servers in network namespaces, the director's IPVS table set up
#      through `ipvs`, real TCP and UDP traffic, then a table of the
#      services, destinations and their counters.
# Exits 0 when the demo saw the traffic land where the schedulers say.
#
# Environment: IPVS_VENV (default .venv in the repo), PYTHON (interpreter
# that creates it, default python3), IPVS_SKIP_INSTALL=1 (use the venv as is).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'quickstart.sh: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run me as root (sudo $0): the demo creates network namespaces"

# -- 1. system packages ----------------------------------------------------------
pkgs=(user-mode-linux kmod ipvsadm iproute2 python3-venv python3-dev build-essential)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
fi
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# -- 2. the virtualenv -----------------------------------------------------------
VENV=${IPVS_VENV:-$ROOT/.venv}
VPY=$VENV/bin/python
if ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
    say "creating the virtualenv $VENV"
    rm -rf "$VENV"
    "${PYTHON:-python3}" -m venv "$VENV" || die "could not create $VENV (apt-get install python3-venv)"
fi
if [ "${IPVS_SKIP_INSTALL:-0}" != 1 ]; then
    say "installing ipvs into $VENV (pip install -e .; builds the extension)"
    "$VPY" -m pip install -q -e . || die "pip install -e . failed (see above)"
fi
"$VPY" -c 'import ipvs, ipvs._libipvs' || die "the virtualenv cannot import ipvs"

# -- 3. the demo, in the sandbox kernel ------------------------------------------
VPY_ABS=$(cd "$(dirname "$VPY")" && pwd)/$(basename "$VPY")
say "booting the sandbox kernel: python -m ipvs.sandbox -- $VPY_ABS examples/quickstart.py"
exec "$VPY" -m ipvs.sandbox --timeout 600 -- "$VPY_ABS" "$ROOT/examples/quickstart.py"
