#!/bin/sh
# Build ipsec-tools' own setkey (racoon-ipsec-tools, the KAME dialect's reference client)
# from its source tree and install it as $PREFIX/bin/setkey, for comparing `klips setkey`
# with the real tool (test/cli-setkey.test.ts) and for `klips run -- setkey`.
#
#   scripts/build-setkey.sh [SOURCE_DIR]
#
# SOURCE_DIR (default /work/ext/ipsec-tools) is only read: it is copied to $BUILD_DIR
# (default /tmp/setkey-build) and built there. $PREFIX defaults to /opt/klips-clients.
# Only libipsec and setkey are built, libipsec statically (--disable-shared), so the
# installed binary needs nothing but libc. Nothing of the source is copied into klips.
#
# Debian packages it needs: gcc make autoconf automake libtool pkg-config flex bison
# libfl-dev (flex's yywrap, which configure looks for) libssl-dev (configure checks for
# OpenSSL, which racoon needs) and the Linux UAPI headers (linux-libc-dev, for
# linux/pfkeyv2.h). As root it installs what is missing with apt-get.
set -eu

SRC=${1:-/work/ext/ipsec-tools}
BUILD_DIR=${BUILD_DIR:-/tmp/setkey-build}
PREFIX=${PREFIX:-/opt/klips-clients}
PACKAGES="gcc make autoconf automake libtool pkg-config flex bison libfl-dev libssl-dev linux-libc-dev"

[ -f "$SRC/src/setkey/setkey.c" ] || { echo "build-setkey: no ipsec-tools source at $SRC" >&2; exit 1; }

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y $missing
  else
    echo "build-setkey: install these Debian packages first:$missing" >&2
    exit 1
  fi
fi

rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
: > "$BUILD_DIR/make.log"
cp -a "$SRC" "$BUILD_DIR/src"
cd "$BUILD_DIR/src"
./bootstrap > "$BUILD_DIR/bootstrap.log" 2>&1
./configure --prefix="$PREFIX" --disable-shared --without-readline > "$BUILD_DIR/configure.log" 2>&1
for d in src/include-glibc src/libipsec src/setkey; do
  make -C "$d" >> "$BUILD_DIR/make.log" 2>&1 || { tail -20 "$BUILD_DIR/make.log" >&2; exit 1; }
done
mkdir -p "$PREFIX/bin"
install -m 0755 src/setkey/setkey "$PREFIX/bin/setkey"
# setkey -V prints its version and exits 1.
"$PREFIX/bin/setkey" -V || :
