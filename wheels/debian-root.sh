#!/usr/bin/env bash
# Unpack Debian packages (and, with --deps, everything they depend on) of any
# suite and architecture into a folder, with a private apt configuration: the
# host's apt sources, apt state and dpkg architecture list are never changed.
#
#   wheels/debian-root.sh [--deps] SUITE ARCH DEST PACKAGE...
#
#   --deps   resolve the dependency closure (apt-get install --download-only
#            against an empty dpkg status), else download just the packages
#
# DEST gets the packages' files (dpkg-deb -x) and DEST.stamp records what was
# unpacked: a second call with the same arguments does nothing.  Used by
# wheels/build.sh for Python headers of other architectures and for Debian
# sid's CPython 3.14 (run here with its own libc, see wheels/run-with-libc.sh).
set -euo pipefail
deps=0
[ "${1:-}" = --deps ] && { deps=1; shift; }
[ $# -ge 4 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
SUITE=$1 ARCH=$2 DEST=$3; shift 3
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=${IPVS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
stamp="$SUITE $ARCH deps=$deps $*"
[ "$(cat "$DEST.stamp" 2>/dev/null)" = "$stamp" ] && [ -d "$DEST" ] && exit 0
[ -r "$KEYRING" ] || { echo "debian-root.sh: $KEYRING missing (apt-get install debian-archive-keyring)" >&2; exit 2; }

APT=$DEST.apt
rm -rf "$DEST" "$APT" "$DEST.stamp"
mkdir -p "$DEST" "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/state" "$APT/debs"
echo "deb [arch=$ARCH signed-by=$KEYRING] $MIRROR $SUITE main" >"$APT/sources.list"
: >"$APT/status"
o=(-q -o "APT::Architecture=$ARCH" -o "APT::Architectures=$ARCH"
   -o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
   -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
   -o "Dir::State=$APT/state" -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
   -o "Dir::State::status=$APT/status" -o Debug::NoLocking=1
   -o APT::Install-Recommends=0 -o APT::Sandbox::User=root)
apt-get "${o[@]}" update >"$APT/update.log" 2>&1 \
    || { cat "$APT/update.log" >&2; echo "debian-root.sh: apt-get update ($SUITE/$ARCH) failed" >&2; exit 1; }
if [ "$deps" = 1 ]; then
    apt-get "${o[@]}" -y install --download-only "$@" >"$APT/download.log" 2>&1 \
        || { cat "$APT/download.log" >&2; echo "debian-root.sh: resolving $* ($SUITE/$ARCH) failed" >&2; exit 1; }
    debs=("$APT"/cache/archives/*.deb)
else
    (cd "$APT/debs" && apt-get "${o[@]}" download "$@") >"$APT/download.log" 2>&1 \
        || { cat "$APT/download.log" >&2; echo "debian-root.sh: apt-get download $* ($SUITE/$ARCH) failed" >&2; exit 1; }
    debs=("$APT"/debs/*.deb)
fi
for deb in "${debs[@]}"; do
    dpkg-deb -x "$deb" "$DEST"
    basename "$deb" >>"$DEST.debs"
done
# merged /usr: trixie and later ship the /lib -> usr/lib links in base-files,
# which a closure need not contain (the loader is /lib/ld-linux-*.so.*)
for d in bin sbin lib lib64; do
    if [ ! -e "$DEST/$d" ] && [ ! -L "$DEST/$d" ] && [ -d "$DEST/usr/$d" ]; then ln -s "usr/$d" "$DEST/$d"; fi
done
rm -rf "$APT"
echo "$stamp" >"$DEST.stamp"
