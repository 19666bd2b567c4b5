#!/usr/bin/env bash
# The bridge's cost per message (issue 13): ADD round trips per second through `klips run`
# (test/bridge/pfkey-client.c's `bench`: write() waits for klipsd's status, then the
# reply is read) against the same client on klipsd's own socket (`direct`: a framed
# stream, the request written and its reply read, no status). One klipsd; ROUNDS rounds,
# each running both for ADDS/ROUNDS ADDs in alternating order (fresh SPIs each time), so
# the pair shares the machine's state; the client times its loop alone (not its start).
# A warm-up pair runs first and is not reported.
# Prints each round and the median of the per-round ratios. After `npm run build`.
#
#   bash bench/bridge.sh [ADDS] [ROUNDS]      (defaults 20000 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
adds=${1:-20000}
rounds=${2:-10}
per=$((adds / rounds))
work=$(mktemp -d)
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/pfkey-client" test/bridge/pfkey-client.c
sock="$work/pfkey.sock"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version), $(date -u +%FT%TZ)"
node dist/src/daemon/main.js --socket "$sock" --log-level warn 2>"$work/klipsd.log" & echo $! > "$work/pid"
for _ in $(seq 1 100); do [ -S "$sock.info" ] && break; sleep 0.05; done
direct() { KLIPS_SOCKET="$sock" "$work/pfkey-client" direct "$per" $((0x100000 + $1 * per)); }
bridge() { node dist/src/cli/main.js run --socket "$sock" -- "$work/pfkey-client" bench "$per" $((0x800000 + $1 * per)); }
direct 0 >/dev/null; bridge 0 >/dev/null   # warm-up (klipsd's JIT), not reported
rate() { sed -n 's/.*per-second=\([0-9]*\).*/\1/p'; }
ratios=()
for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then d=$(direct "$r"); b=$(bridge "$r"); else b=$(bridge "$r"); d=$(direct "$r"); fi
  dr=$(rate <<<"$d"); br=$(rate <<<"$b")
  ratios+=("$(awk -v b="$br" -v d="$dr" 'BEGIN { printf "%.3f", b / d }')")
  echo "round $r: direct $dr/s, bridge $br/s, bridge/direct ${ratios[-1]}"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print "median bridge/direct: " (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
