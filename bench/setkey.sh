#!/usr/bin/env bash
# klips setkey against ipsec-tools' own setkey (issue 13), both loading one setkey file
# of N `add` statements (after `flush;`) into the same klipsd's KAME socket: `klips
# setkey -f` (parse the whole file, REGISTER, then each request and its answer) and the
# real setkey under `klips run --dialect kame` (the bridge; its cost per message is in
# BENCHMARKS.md). ROUNDS rounds, the two in alternating order; each run is timed whole
# (process start to exit, wall clock) and its peak RSS read from /usr/bin/time when
# there. Prints each round and the median of the per-round ratios klips / setkey.
# Needs /opt/klips-clients/bin/setkey (scripts/build-setkey.sh) and `npm run build`.
#
#   bash bench/setkey.sh [N] [ROUNDS]      (defaults 20000 and 5)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
rounds=${2:-5}
setkey_bin=${KLIPS_CLIENTS_DIR:-/opt/klips-clients/bin}/setkey
[ -x "$setkey_bin" ] || { echo "bench/setkey.sh: $setkey_bin is missing (scripts/build-setkey.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
sock="$work/pfkey.sock"
{
  echo 'flush;'
  for i in $(seq 1 "$n"); do
    printf 'add 10.0.%d.%d 10.1.0.1 esp 0x%x -m tunnel -E aes-cbc 0x00112233445566778899aabbccddeeff -A hmac-sha256 0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff;\n' \
      $(( (i >> 8) & 255 )) $(( i & 255 )) $(( 0x1000 + i ))
  done
} > "$work/sas.conf"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version), $(date -u +%FT%TZ); $n statements"
node dist/src/daemon/main.js --socket "$sock" --log-level warn 2>"$work/klipsd.log" & echo $! > "$work/pid"
for _ in $(seq 1 100); do [ -S "$sock.kame" ] && break; sleep 0.05; done
timed() { # label command...: "seconds rss_kb"
  local t0 t1 rss=0
  t0=$(date +%s.%N)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    rss=$(tail -1 "$work/rss")
  else
    "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  fi
  t1=$(date +%s.%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $rss"
}
ours() { timed node dist/src/cli/main.js setkey --socket "$sock" -f "$work/sas.conf"; }
theirs() { timed node dist/src/cli/main.js run --dialect kame --socket "$sock" -- "$setkey_bin" -f "$work/sas.conf"; }
ours >/dev/null; theirs >/dev/null   # warm-up (klipsd's JIT), not reported
ratios=()
for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then o=$(ours); t=$(theirs); else t=$(theirs); o=$(ours); fi
  ratios+=("$(awk -v o="${o% *}" -v t="${t% *}" 'BEGIN { printf "%.3f", o / t }')")
  echo "round $r: klips setkey ${o% *} s (peak ${o#* } KB), setkey under klips run ${t% *} s (peak ${t#* } KB: the node launcher's or setkey's, the larger), klips/setkey ${ratios[-1]}"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print "median klips/setkey: " (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
