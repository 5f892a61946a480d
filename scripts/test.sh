#!/usr/bin/env bash
# The project's test command:  scripts/test.sh [--unit|--kernel] [PYTEST ARGS...]
#
#  1. makes/updates the virtualenv .venv and installs the project into it
#     (pip install -e '.[test]'; this builds the extension),
#  2. runs the unit tests (tests/unit) on the host,
#  3. runs the kernel tests (tests/kernel) with IPVS_REQUIRE_KERNEL=1 so that
#     none is skipped silently: directly if this kernel has IPVS and we are
#     root, else inside `python -m ipvs.sandbox` (User-Mode Linux), else
#     fails when CI=true and skips loudly otherwise.
#
# Extra arguments go to both pytest runs; test paths among them (e.g.
# tests/kernel/test_netns.py::test_link_up) run only the part they are in.  Environment knobs:
#   IPVS_VENV               the virtualenv (default: .venv in the repo)
#   PYTHON                  interpreter that creates it (default: python3)
#   IPVS_SKIP_INSTALL=1     do not (re)install the project into the venv
#   IPVS_SANDBOX_MEM        sandbox memory (default 1024M)
#   IPVS_SANDBOX_TIMEOUT    seconds before the sandbox is killed (default 2700)
#   IPVS_KERNEL_MODE        auto | host | sandbox (default auto)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

run_unit=1
run_kernel=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --unit) run_kernel=0 ;;
        --kernel) run_unit=0 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; args+=("$@"); break ;;
        *) args+=("$1") ;;
    esac
    shift
done

# Test paths among the arguments pick the part(s) they belong to; the
# other arguments go to every pytest run.
unit_targets=(tests/unit)
kernel_targets=(tests/kernel)
opts=()
paths_given=0
unit_paths=()
kernel_paths=()
for a in ${args[@]+"${args[@]}"}; do
    p=${a%%::*}
    if [[ $a != -* && -e $p ]]; then
        paths_given=1
        rel=$(realpath -m --relative-to="$ROOT" "$p")
        case $rel in
            tests/kernel|tests/kernel/*) kernel_paths+=("$a") ;;
            tests/unit|tests/unit/*) unit_paths+=("$a") ;;
            *) printf 'test.sh: %s is not under tests/unit or tests/kernel\n' "$a" >&2; exit 2 ;;
        esac
    else
        opts+=("$a")
    fi
done
if [ "$paths_given" = 1 ]; then
    if [ ${#unit_paths[@]} -gt 0 ]; then unit_targets=("${unit_paths[@]}"); else run_unit=0; fi
    if [ ${#kernel_paths[@]} -gt 0 ]; then kernel_targets=("${kernel_paths[@]}"); else run_kernel=0; fi
fi
args=(${opts[@]+"${opts[@]}"})

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\n!!! test.sh: %s\n' "$*" >&2; exit 2; }

VENV=${IPVS_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
VPY=$VENV/bin/python

# -- 1. the virtualenv ---------------------------------------------------------
if ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
    say "creating virtualenv $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || die "could not create the virtualenv $VENV with $PY (Debian: apt-get install python3-venv)"
fi
if [ "${IPVS_SKIP_INSTALL:-0}" != 1 ]; then
    say "installing the project into $VENV (pip install -e '.[test]')"
    "$VPY" -m pip install -q -e '.[test]' \
        || die "pip install -e '.[test]' FAILED: the project does not build/install (see above)"
fi
"$VPY" -c 'import pytest, ipvs' || die "the virtualenv cannot import pytest and ipvs"

unit_result="not run"
kernel_result="not run"
failed=0

# -- 2. unit tests ---------------------------------------------------------------
if [ "$run_unit" = 1 ]; then
    say "unit tests: pytest ${unit_targets[*]} ${args[*]:-}"
    "$VPY" -m pytest "${unit_targets[@]}" ${args[@]+"${args[@]}"}
    rc=$?
    case $rc in
        0) unit_result="passed" ;;
        5) unit_result="FAILED (no tests collected)"; failed=1 ;;
        *) unit_result="FAILED (pytest exit $rc)"; failed=1 ;;
    esac
fi

# -- 3. kernel tests -------------------------------------------------------------
if [ "$run_kernel" = 1 ]; then
    mode=${IPVS_KERNEL_MODE:-auto}
    where=""
    if [ "$mode" = auto ] || [ "$mode" = host ]; then
        if "$VPY" -c 'import sys; from ipvs.testing import ipvs_kernel_available as k; sys.exit(0 if k() else 1)'; then
            where=host
        elif [ "$mode" = host ]; then
            die "IPVS_KERNEL_MODE=host but this kernel has no IPVS or we are not root"
        fi
    fi
    if [ -z "$where" ]; then
        if "$VPY" -m ipvs.sandbox --check >/dev/null 2>&1; then
            where=sandbox
        fi
    fi
    rc=0
    case $where in
        host)
            say "kernel tests on this host's kernel: pytest ${kernel_targets[*]} ${args[*]:-}"
            IPVS_REQUIRE_KERNEL=1 "$VPY" -m pytest "${kernel_targets[@]}" ${args[@]+"${args[@]}"}
            rc=$?
            ;;
        sandbox)
            say "kernel tests in the User-Mode Linux sandbox: python -m ipvs.sandbox -- $VPY -m pytest ${kernel_targets[*]} ${args[*]:-}"
            start=$SECONDS
            IPVS_REQUIRE_KERNEL=1 "$VPY" -m ipvs.sandbox \
                --mem "${IPVS_SANDBOX_MEM:-1024M}" --timeout "${IPVS_SANDBOX_TIMEOUT:-2700}" \
                -- "$VPY" -m pytest "${kernel_targets[@]}" ${args[@]+"${args[@]}"}
            rc=$?
            say "sandbox finished in $((SECONDS - start)) s (exit $rc)"
            ;;
        *)
            "$VPY" -m ipvs.sandbox --check || true
            if [ "${CI:-}" = true ]; then
                kernel_result="FAILED (CI: no IPVS in this kernel and no sandbox: apt-get install user-mode-linux kmod ipvsadm iproute2)"
                failed=1
            else
                kernel_result="SKIPPED: no IPVS in this kernel (or not root) and no sandbox -- apt-get install user-mode-linux kmod ipvsadm iproute2"
                printf '\n!!! %s\n' "kernel tests $kernel_result" >&2
            fi
            rc=-1
            ;;
    esac
    if [ -n "$where" ]; then
        case $rc in
            0) kernel_result="passed ($where)" ;;
            5) kernel_result="FAILED (no tests collected, $where)"; failed=1 ;;
            124) kernel_result="FAILED (sandbox timed out)"; failed=1 ;;
            125) kernel_result="FAILED (sandbox kernel crashed)"; failed=1 ;;
            *) kernel_result="FAILED (pytest exit $rc, $where)"; failed=1 ;;
        esac
    fi
fi

status=PASSED
[ "$failed" = 0 ] || status=FAILED
printf '\n==> test.sh %s: unit tests: %s; kernel tests: %s\n' "$status" "$unit_result" "$kernel_result" >&2
exit "$failed"
