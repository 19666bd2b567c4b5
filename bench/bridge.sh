#!/usr/bin/env bash
# The bridge's cost per message (issue 13): ADD round trips per second through `klips run`
# (test/bridge/pfkey-client.c's `bench`: write() waits for klipsd's status, then the
# reply is read) against the same client on klipsd's own socket (`direct`: a framed
# stream, the request written and its reply read, no status). Each round starts a fresh
# klipsd and runs both, in alternating order. After `npm run build`.
#
#   bash bench/bridge.sh [ADDS] [ROUNDS]      (defaults 20000 and 3)
set -euo pipefail
cd "$(dirname "$0")/.."
adds=${1:-20000}
rounds=${2:-3}
work=$(mktemp -d)
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -o "$work/pfkey-client" test/bridge/pfkey-client.c
sock="$work/pfkey.sock"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version), $(date -u +%FT%TZ)"
for r in $(seq 1 "$rounds"); do
  node dist/src/daemon/main.js --socket "$sock" --log-level warn 2>"$work/klipsd.log" & echo $! > "$work/pid"
  for _ in $(seq 1 100); do [ -S "$sock.info" ] && break; sleep 0.05; done
  direct() { KLIPS_SOCKET="$sock" "$work/pfkey-client" direct "$adds" 0x100000; }
  bridge() { node dist/src/cli/main.js run --socket "$sock" -- "$work/pfkey-client" bench "$adds" 0x200000; }
  if (( r % 2 )); then d=$(direct); b=$(bridge); else b=$(bridge); d=$(direct); fi
  echo "round $r: $d | $b"
  kill "$(cat "$work/pid")"; wait "$(cat "$work/pid")" 2>/dev/null || true
done
