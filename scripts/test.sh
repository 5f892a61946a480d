#!/usr/bin/env bash
# The project's test command:
#     scripts/test.sh [--unit] [--kernel] [--lab] [--kernels LIST] [PYTEST ARGS...]
#
#  1. makes/updates the virtualenv .venv and installs the project into it
#     (pip install -e '.[test]'; this builds the extension),
#  2. runs the unit tests (tests/unit) on the host,
#  3. runs the kernel tests (tests/kernel) with IPVS_REQUIRE_KERNEL=1 so that
#     none is skipped silently: directly if this kernel has IPVS and we are
#     root, else inside `python -m ipvs.sandbox` (User-Mode Linux), else
#     fails when CI=true and skips loudly otherwise,
#  4. runs the lab tests (tests/lab: traffic, director, exporter) once, the
#     same way, on the default kernel.
# --unit, --kernel, --lab run only the parts named (default: all three).
# --kernels 6.1,6.12,7 (or all) runs part 3 in the sandbox once per kernel
# (a version prefix picks the newest match; a missing kernel is fetched with
# python -m ipvs.sandbox --fetch-kernel SUITE) and prints a table.
#
# Extra arguments go to every pytest run; test paths among them (e.g.
# tests/kernel/test_netns.py::test_link_up) run only the part they are in.  Environment knobs:
#   IPVS_VENV               the virtualenv (default: .venv in the repo)
#   PYTHON                  interpreter that creates it (default: python3)
#   IPVS_SKIP_INSTALL=1     do not (re)install the project into the venv
#   IPVS_SANDBOX_MEM        sandbox memory (default 1024M)
#   IPVS_SANDBOX_TIMEOUT    seconds before the sandbox is killed (default 2700)
#   IPVS_KERNEL_MODE        auto | host | sandbox (default auto)
#   IPVS_SANDBOX_KERNEL     the sandbox's default kernel (version prefix)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

run_unit=0
run_kernel=0
run_lab=0
kernels=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --unit) run_unit=1 ;;
        --kernel) run_kernel=1 ;;
        --lab) run_lab=1 ;;
        --kernels) [ $# -gt 1 ] || { echo "test.sh: --kernels needs a list (6.1,6.12,7 or all)" >&2; exit 2; }
                   kernels=$2; shift ;;
        --kernels=*) kernels=${1#--kernels=} ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        --) shift; args+=("$@"); break ;;
        *) args+=("$1") ;;
    esac
    shift
done
if [ "$run_unit$run_kernel$run_lab" = 000 ]; then run_unit=1; run_kernel=1; run_lab=1; fi
[ "$kernels" = all ] && kernels="6.1,6.12,7"

# Test paths among the arguments pick the part(s) they belong to; the
# other arguments go to every pytest run.
unit_targets=(tests/unit)
kernel_targets=(tests/kernel)
lab_targets=(tests/lab)
opts=()
paths_given=0
unit_paths=()
kernel_paths=()
lab_paths=()
for a in ${args[@]+"${args[@]}"}; do
    p=${a%%::*}
    if [[ $a != -* && -e $p ]]; then
        paths_given=1
        rel=$(realpath -m --relative-to="$ROOT" "$p")
        case $rel in
            tests/kernel|tests/kernel/*) kernel_paths+=("$a") ;;
            tests/unit|tests/unit/*) unit_paths+=("$a") ;;
            tests/lab|tests/lab/*) lab_paths+=("$a") ;;
            *) printf 'test.sh: %s is not under tests/unit, tests/kernel or tests/lab\n' "$a" >&2; exit 2 ;;
        esac
    else
        opts+=("$a")
    fi
done
if [ "$paths_given" = 1 ]; then
    if [ ${#unit_paths[@]} -gt 0 ]; then unit_targets=("${unit_paths[@]}"); else run_unit=0; fi
    if [ ${#kernel_paths[@]} -gt 0 ]; then kernel_targets=("${kernel_paths[@]}"); else run_kernel=0; fi
    if [ ${#lab_paths[@]} -gt 0 ]; then lab_targets=("${lab_paths[@]}"); else run_lab=0; fi
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
lab_result="not run"
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

# Where kernel tests run: host (this kernel has IPVS and we are root),
# sandbox, or "" (neither).
where_kernel() {
    local mode=${IPVS_KERNEL_MODE:-auto}
    if [ "$mode" = auto ] || [ "$mode" = host ]; then
        if "$VPY" -c 'import sys; from ipvs.testing import ipvs_kernel_available as k; sys.exit(0 if k() else 1)'; then
            echo host; return
        elif [ "$mode" = host ]; then
            echo nohost; return
        fi
    fi
    if "$VPY" -m ipvs.sandbox --check >/dev/null 2>&1; then echo sandbox; fi
}

# run_part WHERE KERNEL JUNIT TARGETS...: pytest in the place given; exit status
# is pytest's (124/125: sandbox timed out/crashed).
run_part() {
    local where=$1 kernel=$2 junit=$3; shift 3
    local jarg=()
    [ -n "$junit" ] && jarg=(--junitxml="$junit")
    case $where in
        host)
            IPVS_REQUIRE_KERNEL=1 "$VPY" -m pytest "$@" ${jarg[@]+"${jarg[@]}"} ${args[@]+"${args[@]}"}
            ;;
        sandbox)
            local karg=()
            [ -n "$kernel" ] && karg=(--kernel "$kernel")
            IPVS_REQUIRE_KERNEL=1 "$VPY" -m ipvs.sandbox ${karg[@]+"${karg[@]}"} \
                --mem "${IPVS_SANDBOX_MEM:-1024M}" --timeout "${IPVS_SANDBOX_TIMEOUT:-2700}" \
                -- "$VPY" -m pytest "$@" ${jarg[@]+"${jarg[@]}"} ${args[@]+"${args[@]}"}
            ;;
    esac
}

# result_of RC WHERE: the words for a part's result line
result_of() {
    case $1 in
        0) echo "passed ($2)" ;;
        5) echo "FAILED (no tests collected, $2)" ;;
        124) echo "FAILED (sandbox timed out)" ;;
        125) echo "FAILED (sandbox kernel crashed)" ;;
        *) echo "FAILED (pytest exit $1, $2)" ;;
    esac
}

no_kernel() {  # the result when neither this kernel nor a sandbox has IPVS
    "$VPY" -m ipvs.sandbox --check || true
    if [ "${CI:-}" = true ]; then
        echo "FAILED (CI: no IPVS in this kernel and no sandbox: apt-get install user-mode-linux kmod ipvsadm iproute2)"
    else
        printf '\n!!! %s tests SKIPPED: no IPVS in this kernel (or not root) and no sandbox\n' "$1" >&2
        echo "SKIPPED: no IPVS in this kernel (or not root) and no sandbox -- apt-get install user-mode-linux kmod ipvsadm iproute2"
    fi
}

# counts JUNIT: "passed failed skipped" from a pytest junit file
counts() {
    "$VPY" - "$1" <<'PY' 2>/dev/null || echo "? ? ?"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = s = 0
for x in suites:
    t += int(x.get("tests", 0)); s += int(x.get("skipped", 0))
    f += int(x.get("failures", 0)) + int(x.get("errors", 0))
print(t - f - s, f, s)
PY
}

# -- 3. kernel tests -------------------------------------------------------------
need_where() {  # where_kernel, or stop when IPVS_KERNEL_MODE=host cannot be had
    where=$(where_kernel)
    [ "$where" != nohost ] || die "IPVS_KERNEL_MODE=host but this kernel has no IPVS or we are not root"
}

if [ "$run_kernel" = 1 ] && [ -z "$kernels" ]; then
    need_where
    if [ -n "$where" ]; then
        say "kernel tests ($where): pytest ${kernel_targets[*]} ${args[*]:-}"
        start=$SECONDS
        run_part "$where" "" "" "${kernel_targets[@]}"
        rc=$?
        say "kernel tests finished in $((SECONDS - start)) s (exit $rc)"
        kernel_result=$(result_of $rc $where)
        [ $rc = 0 ] || failed=1
    else
        kernel_result=$(no_kernel kernel)
        [ "${CI:-}" = true ] && failed=1
    fi
elif [ "$run_kernel" = 1 ]; then
    # one sandbox run per kernel, fetching the kernels that are missing
    results=$(mktemp -d /var/tmp/ipvs-test.XXXXXX) || die "mktemp failed"
    table=$(printf '%-10s %7s %7s %8s %7s  %s' kernel passed failed skipped seconds result)
    ok_list=() bad_list=()
    IFS=, read -r -a specs <<< "$kernels"
    for spec in "${specs[@]}"; do
        spec=${spec// /}
        [ -n "$spec" ] || continue
        if ! "$VPY" -m ipvs.sandbox --kernel "$spec" --check >/dev/null 2>&1; then
            case $spec in
                6.1|6.1.*) suite=bookworm ;;
                6.12|6.12.*) suite=trixie ;;
                7|7.*) suite=sid ;;
                *) suite="" ;;
            esac
            if [ -n "$suite" ]; then
                say "kernel $spec is missing: python -m ipvs.sandbox --fetch-kernel $suite"
                "$VPY" -m ipvs.sandbox --fetch-kernel "$suite" >&2
            fi
        fi
        check=$("$VPY" -m ipvs.sandbox --kernel "$spec" --check 2>&1)
        version=$(printf '%s\n' "$check" | sed -n 's/^ipvs\.sandbox: available (\([^ ]*\) .*/\1/p')
        if [ -z "$version" ]; then
            printf '%s\n' "$check" >&2
            table+=$(printf '\n%-10s %7s %7s %8s %7s  %s' "$spec" - - - - "FAILED (no such kernel: see above)")
            bad_list+=("$spec"); failed=1
            continue
        fi
        say "kernel tests on $version in the sandbox: pytest ${kernel_targets[*]} ${args[*]:-}"
        junit="$results/$version.xml"
        start=$SECONDS
        run_part sandbox "$version" "$junit" "${kernel_targets[@]}"
        rc=$?
        secs=$((SECONDS - start))
        say "kernel tests on $version finished in $secs s (exit $rc)"
        if [ -s "$junit" ]; then read -r np nf ns <<< "$(counts "$junit")"; else np=- nf=- ns=-; fi
        res=$(result_of $rc sandbox)
        table+=$(printf '\n%-10s %7s %7s %8s %7s  %s' "$version" "$np" "$nf" "$ns" "$secs" "${res%% (*}")
        if [ $rc = 0 ]; then ok_list+=("$version"); else bad_list+=("$version"); failed=1; fi
    done
    rm -rf "$results"
    printf '\n==> kernel tests per kernel:\n%s\n' "$table" >&2
    if [ ${#bad_list[@]} = 0 ]; then
        kernel_result="passed on ${ok_list[*]} (sandbox)"
    else
        kernel_result="FAILED on ${bad_list[*]}${ok_list[*]:+; passed on ${ok_list[*]}}"
    fi
fi

# -- 4. lab tests (one kernel: the default one) -----------------------------------
if [ "$run_lab" = 1 ]; then
    need_where
    if [ -n "$where" ]; then
        say "lab tests ($where, default kernel): pytest ${lab_targets[*]} ${args[*]:-}"
        start=$SECONDS
        run_part "$where" "" "" "${lab_targets[@]}"
        rc=$?
        say "lab tests finished in $((SECONDS - start)) s (exit $rc)"
        lab_result=$(result_of $rc $where)
        [ $rc = 0 ] || failed=1
    else
        lab_result=$(no_kernel lab)
        [ "${CI:-}" = true ] && failed=1
    fi
fi

status=PASSED
[ "$failed" = 0 ] || status=FAILED
printf '\n==> test.sh %s: unit tests: %s; kernel tests: %s; lab tests: %s\n' \
    "$status" "$unit_result" "$kernel_result" "$lab_result" >&2
exit "$failed"
