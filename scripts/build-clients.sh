#!/bin/sh
# Builds openswan's own KLIPS tools spi, eroute and spigrp, unmodified, from an openswan
# source tree (xelerance/Openswan; 3.0.0 and 2.6.x) into a directory, for the bridge's
# tests (test/bridge.test.ts runs them under `klips run`); with --pluto, openswan's IKE
# daemon pluto and its control tool whack instead (test/interop-pluto.test.ts).
#
#   scripts/build-clients.sh OPENSWAN_DIR [PREFIX]          (PREFIX default /opt/klips-clients/bin)
#   scripts/build-clients.sh --pluto OPENSWAN_DIR [PREFIX]
#
# --pluto runs openswan's own make (`make programs`) in a copy of the tree, without NSS,
# NetworkManager, PAM and libcap-ng, and copies out programs/pluto/pluto and
# programs/whack/whack. It needs make, bison, flex and GMP's headers (Debian: apt-get
# install bison flex libgmp-dev) and takes about half a minute on two cores; tested with
# openswan 2.6.49.1.
#
# openswan's own make needs its whole configured tree; these three programs need only
# lib/libopenswan (address and SA text, the PF_KEY message builder and parser),
# lib/liboswlog and the headers, so they are compiled directly, in a temporary
# directory (the source tree is only read). A modern gcc needs -fcommon (openswan
# defines globals in headers) and an empty <linux/autoconf.h> (gone from kernel
# headers); the -D flags are those of openswan's Makefile.inc for a KLIPS build with
# NAT-T. Library files that need what these programs do not use (NSS, the ports tree's
# config) fail to compile and are left out; a missing symbol would show at the link.
# CC chooses the compiler (default cc). Nothing of openswan is copied into klips.
set -eu

usage() { echo "usage: $0 [--pluto] OPENSWAN_DIR [PREFIX]   (PREFIX default /opt/klips-clients/bin)" >&2; exit 2; }
pluto=no
[ "${1:-}" = --pluto ] && { pluto=yes; shift; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
src=$(cd "$1" && pwd) || usage
prefix=${2:-/opt/klips-clients/bin}
cc=${CC:-cc}

if [ $pluto = yes ]; then
  for f in programs/pluto/plutomain.c programs/whack/whack.c Makefile.inc; do
    [ -f "$src/$f" ] || { echo "$0: $src is not an openswan source tree (no $f)" >&2; exit 1; }
  done
  for t in make bison flex "$cc"; do
    command -v "$t" >/dev/null 2>&1 || { echo "$0: $t is missing (Debian: apt-get install make bison flex libgmp-dev)" >&2; exit 1; }
  done
  echo '#include <gmp.h>' | "$cc" -E - >/dev/null 2>&1 || { echo "$0: GMP's headers are missing (Debian: apt-get install libgmp-dev)" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -a "$src" "$work/openswan"
  # A modern gcc needs -fcommon (globals defined in headers) and no -Werror.
  if ! make -C "$work/openswan" -j"${JOBS:-2}" USE_LIBNSS=false USE_NM=false USE_XAUTHPAM=false USE_LIBCAP_NG=false \
      WERROR= USERCOMPILE="-O2 -g -fcommon -Wno-error" programs >"$work/make.log" 2>&1; then
    tail -n 30 "$work/make.log" >&2
    echo "$0: openswan's make failed (the last lines of its log are above)" >&2
    exit 1
  fi
  mkdir -p "$prefix"
  for p in pluto whack; do
    bin=$(find "$work/openswan" -path "*/programs/$p/$p" -type f | head -n 1)
    [ -n "$bin" ] || { echo "$0: make did not build $p" >&2; exit 1; }
    cp "$bin" "$prefix/$p"
    echo "built $prefix/$p"
  done
  exit 0
fi
for f in programs/spi/spi.c programs/eroute/eroute.c programs/spigrp/spigrp.c lib/libopenswan/pfkey_v2_build.c include/openswan.h; do
  [ -f "$src/$f" ] || { echo "$0: $src is not an openswan source tree (no $f)" >&2; exit 1; }
done
command -v "$cc" >/dev/null 2>&1 || { echo "$0: no C compiler ($cc)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/include/linux" "$work/lib"
: > "$work/include/linux/autoconf.h"
version=$(sed -n 's/^IPSECBASEVERSION=//p' "$src/Makefile.ver" 2>/dev/null || true)
sed "s/@IPSECVERSION@/${version:-unknown}/" "$src/lib/libopenswan/version.in.c" > "$work/version.c"

flags="-O2 -fcommon -w -DKLIPS -DPFKEYV2 -DNAT_TRAVERSAL -DKERNEL_ALG -DIKE_ALG -DDEBUG -DUSE_SHA2
  -I$work/include -I$src/ports/linux/include -I$src/include -I$src/linux/include -I$src/lib/libopenswan
  -I$src/lib/libcrypto/libsha2"

built=0
skipped=0
for f in "$src"/lib/libopenswan/*.c "$src"/lib/liboswlog/*.c "$work/version.c"; do
  case $f in */version.in.c) continue ;; esac
  o="$work/lib/$(basename "$f" .c).o"
  # shellcheck disable=SC2086
  if $cc $flags -c "$f" -o "$o" 2>/dev/null; then built=$((built + 1)); else skipped=$((skipped + 1)); fi
done
ar rcs "$work/libopenswan.a" "$work"/lib/*.o
echo "library: $built files compiled, $skipped left out (they need pieces spi, eroute and spigrp do not use)"

mkdir -p "$prefix"
for p in spi eroute spigrp; do
  # shellcheck disable=SC2086
  $cc $flags -o "$prefix/$p" "$src/programs/$p/$p.c" "$work/libopenswan.a"
  echo "built $prefix/$p"
done
