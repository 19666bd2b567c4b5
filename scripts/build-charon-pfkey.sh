#!/usr/bin/env bash
# Builds strongSwan's charon with the kernel-pfkey plugin (Debian's strongswan source,
# which Debian itself builds with kernel-netlink only) into a prefix, for klips's
# interoperability tests: charon on klipsd's KAME socket through `klips run`.
#
#   scripts/build-charon-pfkey.sh [PREFIX]     (default /opt/klips-clients/strongswan; root)
#
# Debian packages only: it adds a deb-src entry for the suites already configured,
# fetches the source package with `apt-get source` and builds a small charon: IKEv1/v2,
# swanctl/vici, kernel-pfkey for IPsec (kernel-netlink beside it for addresses and
# routes), socket-default, openssl and the few plugins a PSK or certificate tunnel needs.
# About two minutes on two cores. Nothing is installed outside PREFIX except the apt
# packages it needs (build tools, libssl-dev, libgmp-dev, pkg-config, dpkg-dev).
set -euo pipefail
prefix="${1:-/opt/klips-clients/strongswan}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export DEBIAN_FRONTEND=noninteractive

src_list=/etc/apt/sources.list.d/klips-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  # The same archives as the binary entries, for source packages.
  sed -n 's/^Types: deb$/Types: deb-src/p; /^URIs:/p; /^Suites:/p; /^Components:/p; /^Signed-By:/p; /^$/p' \
    /etc/apt/sources.list.d/debian.sources > "$src_list"
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential pkg-config libssl-dev libgmp-dev dpkg-dev >/dev/null

cd "$work"
# The newest source version in the archive may lag the binary one: try each listed.
got=
for v in $(apt-cache showsrc strongswan | awk '/^Version:/{print $2}' | sort -rV); do
  if apt-get source -qq --download-only "strongswan=$v" >/dev/null 2>&1; then got="$v"; break; fi
done
[ -n "$got" ] || { echo "build-charon-pfkey: no strongswan source package could be fetched" >&2; exit 1; }
dpkg-source -x --no-check ./strongswan_*.dsc ss >/dev/null
cd ss
./configure --prefix="$prefix" --sysconfdir="$prefix/etc" --with-piddir=/run/klips-charon \
  --disable-defaults --enable-charon --enable-ikev2 --enable-ikev1 --enable-swanctl --enable-vici \
  --enable-kernel-pfkey --enable-kernel-netlink --enable-socket-default --enable-openssl \
  --enable-random --enable-nonce --enable-pem --enable-x509 --enable-pubkey --enable-pkcs1 \
  --enable-pkcs8 --enable-constraints --enable-hmac --enable-sha1 --enable-sha2 --enable-aes \
  --enable-kdf --enable-updown >/dev/null
make -j"$(nproc)" >/dev/null
make install >/dev/null
echo "charon (strongswan $got, kernel-pfkey) installed in $prefix"
