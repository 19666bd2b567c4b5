#!/usr/bin/env bash
# klips's tunnel against strongSwan kernel-libipsec, in one run, in the same topology.
#
# Two network namespaces joined by a veth pair (outer 10.99.0.1 / 10.99.0.2, protected
# hosts 10.98.1.1 / 10.98.2.1 on lo), `klipsd --dataplane` in each with a site-to-site
# tunnel installed by the klips tools, then what bench/anchors/strongswan-libipsec.sh
# measures for libipsec: ping RTT, iperf3 TCP for DUR s, and a UDP flood (`iperf3 -u -b 0
# -l 1300`) with klipsd's RSS and every drop counter; plus a PF_KEY GET every 1 ms (open
# loop) during a second TCP run (the first runs alone, as the anchor's does). The bare
# veth is the floor. Then the strongSwan anchor script runs (same DUR), and a summary
# puts the two side by side.
#
# Usage (root, Debian; after `npm run build`):   bash bench/tunnel.sh
# Env: DUR=10 (<= 15) seconds per iperf3 run; ESPS="aes_gcm128 aes128-sha2_256" (klips
#      names; the anchor runs aes128gcm16 and aes128-sha256, the same algorithms);
#      ENCAPS="udp raw"; ANCHOR=0 skips strongSwan; OUT=file for the report (default
#      bench/results/tunnel-DATE.txt).
# Only addresses inside the namespaces made here are used; everything is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
(( DUR > 15 )) && DUR=15
ESPS=${ESPS:-"aes_gcm128 aes128-sha2_256"}
ENCAPS=${ENCAPS:-"udp raw"}
ANCHOR=${ANCHOR:-1}
OUT=${OUT:-bench/results/tunnel-$(date -u +%F).txt}
WORK=$(mktemp -d /tmp/klips-tunnel.XXXXXX)
NSL=klb-left NSR=klb-right VL=klbl0 VR=klbr0
OUT_L=10.99.0.1 OUT_R=10.99.0.2 IN_L=10.98.1.1 IN_R=10.98.2.1
NODE=${NODE:-node}
KLIPS="$NODE dist/src/cli/main.js"

log() { printf '[tunnel.sh %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
[[ -f dist/src/daemon/main.js ]] || die "run npm run build first"

need=()
for b in iperf3:iperf3 tcpdump:tcpdump ping:iputils-ping ip:iproute2; do command -v "${b%%:*}" >/dev/null || need+=("${b#*:}"); done
if (( ${#need[@]} )); then
  log "installing ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  ip netns del $NSL 2>/dev/null; ip netns del $NSR 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

setup_net() {
  ip netns del $NSL 2>/dev/null || true; ip netns del $NSR 2>/dev/null || true
  ip netns add $NSL; ip netns add $NSR
  ip link add $VL netns $NSL type veth peer name $VR netns $NSR
  ip -n $NSL addr add $OUT_L/24 dev $VL; ip -n $NSR addr add $OUT_R/24 dev $VR
  ip -n $NSL addr add $IN_L/32 dev lo;   ip -n $NSR addr add $IN_R/32 dev lo
  for n in $NSL $NSR; do ip -n $n link set lo up; done
  ip -n $NSL link set $VL up; ip -n $NSR link set $VR up
  for _ in $(seq 50); do
    ip -n $NSL -br link show $VL | grep -q LOWER_UP && ip -n $NSR -br link show $VR | grep -q LOWER_UP && return 0
    sleep 0.1
  done
  die "veth carrier did not come up"
}

start_klipsd() { # side ns encap
  ip netns exec "$2" $NODE dist/src/daemon/main.js --dataplane --encap "$3" --socket "$WORK/$1.sock" 2>"$WORK/$1.log" &
  local pid=$!
  PIDS+=("$pid")
  eval "KPID_$1=$pid"
  for _ in $(seq 100); do grep -q 'data plane running' "$WORK/$1.log" 2>/dev/null && return 0; sleep 0.1; done
  die "klipsd ($1) did not start: $(cat "$WORK/$1.log")"
}

stop_klipsd() {
  for side in left right; do
    local v="KPID_$side"
    [[ -n ${!v:-} ]] && kill "${!v}" 2>/dev/null && wait "${!v}" 2>/dev/null || true
  done
}

keys_for() { # esp -> --enckey/--authkey arguments
  case $1 in
    aes_gcm128) echo "--enckey 0x000102030405060708090a0b0c0d0e0f10111213" ;;
    aes128-sha2_256) echo "--enckey 0x000102030405060708090a0b0c0d0e0f --authkey 0x$(printf '%02x' $(seq 0 31) | tr -d '\n')" ;;
    *) die "no keys for $1" ;;
  esac
}

tunnel() { # esp
  local esp=$1 keys
  keys=$(keys_for "$esp")
  for side in left right; do
    local S="--socket $WORK/$side.sock" me peer out in mynet peernet myin
    if [[ $side == left ]]; then me=$OUT_L peer=$OUT_R out=1001 in=2001 mynet=10.98.1.0/24 peernet=10.98.2.0/24 myin=$IN_L
    else me=$OUT_R peer=$OUT_L out=2001 in=1001 mynet=10.98.2.0/24 peernet=10.98.1.0/24 myin=$IN_R; fi
    $KLIPS spi $S --said tun.$out@$peer --src $me --dst $peer --ip4 >/dev/null
    $KLIPS spi $S --said esp.$out@$peer --src $me --esp "$esp" $keys --replay_window 64 >/dev/null
    $KLIPS spigrp $S tun.$out@$peer esp.$out@$peer >/dev/null
    $KLIPS spi $S --said tun.$in@$me --src $peer --dst $me --ip4 >/dev/null
    $KLIPS spi $S --said esp.$in@$me --src $peer --esp "$esp" $keys --replay_window 64 >/dev/null
    $KLIPS spigrp $S tun.$in@$me esp.$in@$me >/dev/null
    $KLIPS eroute $S --add --eraf inet --src $mynet --dst $peernet --said tun.$out@$peer >/dev/null
    ip -n klb-$side route replace $peernet dev ipsec0 src $myin
  done
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

ping_avg() { # src dst -> "min/avg/max/mdev"
  ip netns exec $NSL ping -n -q -c 20 -i 0.2 -I "$1" "$2" | awk -F' = ' '/rtt/{split($2,a," "); print a[1]}'
}

iperf_json_tcp() { # src dst -> Mbit/s received, retransmits
  ip netns exec $NSL iperf3 -J -c "$2" -B "$1" -t "$DUR" > "$WORK/tcp.json"
  $NODE -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));const e=j.end;console.log((e.sum_received.bits_per_second/1e6).toFixed(0), e.sum_sent.retransmits??0)' "$WORK/tcp.json"
}

iperf_json_udp() { # src dst len -> received Mbit/s, loss%, sent Mbit/s, interval s
  timeout 60 ip netns exec $NSL iperf3 -J -u -b 0 -l "$3" -c "$2" -B "$1" -t "$DUR" > "$WORK/udp.json" || true
  $NODE -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));const s=j.end.sum;const r=j.end.sum_received??s;console.log((r.bits_per_second/1e6).toFixed(0), (s.lost_percent??0).toFixed(0), (j.end.sum_sent?.bits_per_second??s.bits_per_second)/1e6|0, (r.seconds??s.seconds).toFixed(1))' "$WORK/udp.json"
}

view() { $KLIPS look --socket "$WORK/$1.sock" --view runtime --json; }
vfield() { # side js-expression-over-d
  view "$1" | $NODE -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s).data;console.log(eval(process.argv[1]))})' "$2"
}

REPORT=()
say() { REPORT+=("$*"); printf '%s\n' "$*"; }

busy=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat); sleep 1; busy2=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)
read -r b1 i1 <<<"$busy"; read -r b2 i2 <<<"$busy2"
BUSY=$(( 100 * (b2 - b1) / ((b2 - b1) + (i2 - i1) + 1) ))
(( BUSY > 10 )) && log "WARNING: the machine was ${BUSY}% busy before the run: figures will be low"

say "------------------------------------------------------------------"
say "klips tunnel vs strongSwan kernel-libipsec   $(date -u '+%F %T') UTC   $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
say "node $($NODE --version)   kernel $(uname -r)   iperf3 $(iperf3 --version | head -1 | awk '{print $2}')   DUR=${DUR}s   busy before: ${BUSY}%"
say "------------------------------------------------------------------"

setup_net
ip netns exec $NSR iperf3 -s -D --pidfile "$WORK/iperf.pid" >/dev/null
sleep 0.3
PIDS+=("$(cat "$WORK/iperf.pid")")

say "floor (bare veth)"
say "  ping RTT        $(ping_avg $OUT_L $OUT_R) ms"
read -r mbit retr < <(iperf_json_tcp $OUT_L $OUT_R)
say "  TCP             $mbit Mbit/s (retr $retr)"
FLOOR_TCP=$mbit

for encap in $ENCAPS; do
  for esp in $ESPS; do
    [[ $encap == raw && $esp != "${ESPS%% *}" ]] && continue   # raw: the first ESP only
    start_klipsd left $NSL "$encap"; start_klipsd right $NSR "$encap"
    tunnel "$esp"
    say "klips --encap $encap, ESP $esp"
    ip netns exec $NSL tcpdump -n -i $VL -c 4 'udp port 4500 or esp' > "$WORK/wire.txt" 2>/dev/null &
    dump=$!
    sleep 0.5
    rtt=$(ping_avg $IN_L $IN_R)
    wait $dump || true
    say "  on the wire     $(head -1 "$WORK/wire.txt" | cut -c17-)"
    say "  ping RTT        $rtt ms"
    # TCP alone (as the anchor measures libipsec), then again with the GET client beside it.
    c0l=$(cpu_ticks "$KPID_left"); c0r=$(cpu_ticks "$KPID_right")
    read -r mbit retr < <(iperf_json_tcp $IN_L $IN_R)
    c1l=$(cpu_ticks "$KPID_left"); c1r=$(cpu_ticks "$KPID_right")
    say "  TCP             $mbit Mbit/s (retr $retr)   [klipsd-left $(( 100 * (c1l - c0l) / HZ / DUR ))%, klipsd-right $(( 100 * (c1r - c0r) / HZ / DUR ))% of one core]"
    $NODE dist/bench/tunnel-get.js "$WORK/left.sock" esp.1001@$OUT_R "$DUR" > "$WORK/get.json" &
    getp=$!
    read -r mbit2 retr2 < <(iperf_json_tcp $IN_L $IN_R)
    wait $getp
    get=$($NODE -e 'const g=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(`p50 ${g.p50.toFixed(2)} ms, p99 ${g.p99.toFixed(2)} ms, max ${g.max.toFixed(2)} ms (${g.answered}/${g.sent} answered)`)' "$WORK/get.json")
    say "  GET during TCP  $get   (open loop, one per ms; TCP meanwhile $mbit2 Mbit/s)"
    eval "TCP_${encap}_${esp//[-]/_}=$mbit"
    eval "RTT_${encap}_${esp//[-]/_}=$(cut -d/ -f2 <<<"$rtt")"
    if [[ $encap == udp ]]; then
      r0=$(rss_kb "$KPID_left")
      read -r rx loss sent secs < <(iperf_json_udp $IN_L $IN_R 1300)
      sleep 1
      say "  UDP -l 1300     $rx Mbit/s received over ${secs} s, loss ${loss}% (sent $sent Mbit/s)"
      say "                  klipsd-left RSS ${r0} kB before, $(rss_kb "$KPID_left") kB after, peak $(hwm_kb "$KPID_left") kB; right peak $(hwm_kb "$KPID_right") kB"
      say "                  left drops: $(vfield left 'JSON.stringify({...d.drops, kernelTunTx: d.kernel?.tunTxDropped, xmit: d.paths.xmit.drops})')"
      say "                  right drops: $(vfield right 'JSON.stringify({...d.drops, rcv: d.paths.rcv.drops})'); right UdpRcvbufErrors $(ip netns exec $NSR nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/{print $2}')"
      eval "HWM_${esp//[-]/_}=$(hwm_kb "$KPID_left")"
    fi
    stop_klipsd
    ip netns exec $NSR nstat -n >/dev/null 2>&1 || true
  done
done
ip netns del $NSL; ip netns del $NSR

if [[ $ANCHOR == 1 ]]; then
  log "strongSwan kernel-libipsec anchor (bench/anchors/strongswan-libipsec.sh)"
  DUR=$DUR ESPS="aes128gcm16 aes128-sha256" WORK=$WORK/sswan bash bench/anchors/strongswan-libipsec.sh > "$WORK/anchor.txt" 2>"$WORK/anchor.log" || die "anchor failed: $(tail -5 "$WORK/anchor.log")"
  # (Read in this shell, not a pipeline's subshell, so the lines reach the report too.)
  while IFS= read -r l; do say "$l"; done < <(sed -n '/^kernel-libipsec ESP/,$p' "$WORK/anchor.txt" | grep -v '^raw outputs')
  S_TCP_GCM=$(awk '/^kernel-libipsec ESP aes128gcm16/{f=1} f && /^  TCP/{print $2; exit}' "$WORK/anchor.txt")
  S_RTT_GCM=$(awk '/^kernel-libipsec ESP aes128gcm16/{f=1} f && /^  ping RTT/{split($4,a,"/"); print a[2]; exit}' "$WORK/anchor.txt")
  S_TCP_CBC=$(awk '/^kernel-libipsec ESP aes128-sha256/{f=1} f && /^  TCP/{print $2; exit}' "$WORK/anchor.txt")
  say "------------------------------------------------------------------"
  say "summary (same run)            klips udp    libipsec     ratio"
  say "  TCP aes-gcm-128 Mbit/s      ${TCP_udp_aes_gcm128:-?}          ${S_TCP_GCM:-?}          $($NODE -e "console.log((${TCP_udp_aes_gcm128:-0}/(${S_TCP_GCM:-0}||1)).toFixed(2)+'x')")"
  say "  TCP aes-cbc+sha256 Mbit/s   ${TCP_udp_aes128_sha2_256:-?}          ${S_TCP_CBC:-?}          $($NODE -e "console.log((${TCP_udp_aes128_sha2_256:-0}/(${S_TCP_CBC:-0}||1)).toFixed(2)+'x')")"
  say "  ping avg aes-gcm-128 ms     ${RTT_udp_aes_gcm128:-?}        ${S_RTT_GCM:-?}"
  say "  floor TCP Mbit/s            ${FLOOR_TCP}"
fi
mkdir -p "$(dirname "$OUT")"
printf '%s\n' "${REPORT[@]}" > "$OUT"
log "report written to $OUT"
