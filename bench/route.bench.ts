/**
 * The runtime's per-packet path in process (issue 12): everything the two klipsd of a
 * tunnel do for a TCP segment except the system calls. A 64 KB TUN read (a super-segment
 * of 44 segments of 1348 bytes, virtio_net_hdr first) is cut into packets (gso.ts), each
 * goes through xmit on one engine (KLIPS's tun + esp group, AES-GCM-128), is laid into a
 * receive slot as the carrier gives it (IPv4 and UDP headers written in front of the ESP,
 * ESP in UDP to port 4500), goes through rcv in place on the other engine, and the
 * coalescer merges the segments again. Both engines are the warm-up's private tunnels
 * (warmup.ts), so the SAs are made as klipsd makes them.
 *
 * The pairing: the ESP transforms alone on the same packets, in the same rounds
 * (espOutput in tunnel mode, then espInput of what it made, with libcrypto's EVP as the
 * runtime uses it), so "vs transforms" says what the paths cost beyond the crypto, which
 * no path can avoid. Both are per segment.
 */

import { TunCoalescer, VNET_HDR_BYTES, offloadedPackets } from '../src/dataplane/gso.js';
import { espInput, espOutput } from '../src/dataplane/esp.js';
import { writeIPv4Header } from '../src/dataplane/packet.js';
import { rcv, type RcvOptions } from '../src/dataplane/rcv.js';
import { ReplayWindow } from '../src/dataplane/replay.js';
import { runtimeOf } from '../src/dataplane/sa-adapter.js';
import { espCrypto, setEspCrypto } from '../src/dataplane/cipher.js';
import { evpUnavailable } from '../src/dataplane/evp.js';
import { privateTunnels, superSegment } from '../src/dataplane/warmup.js';
import { pieceOptions, xmit } from '../src/dataplane/xmit.js';
import { IPPROTO_ESP } from '../src/wire/index.js';
import { allocationPerOp, interleave, pairedExtra, runAloneIfMain, type BatchTask, type ResultRow, type Suite } from './harness.js';

const SEGMENTS = 44;
const SLOT = 2048;
const SLOTS = 64;
const IPPROTO_UDP = 17;
const WEST = Uint8Array.of(127, 0, 0, 1);
const EAST = Uint8Array.of(127, 0, 0, 2);

export const suite: Suite = {
  name: 'route',
  description: "the runtime's per-packet path in process: offload cut, xmit, carrier-shaped receive slot, rcv in place, coalescer (AES-GCM-128, 1388-byte segments) vs the ESP transforms alone",
  async run(opts) {
    const backend = espCrypto();
    if (!evpUnavailable()) setEspCrypto('evp');
    const { west, east } = privateTunnels();
    const read = superSegment(0, SEGMENTS);
    const tunBuf = Buffer.allocUnsafeSlow(65536 + VNET_HDR_BYTES);
    const scratch = Buffer.allocUnsafeSlow(65536);
    const slots = Buffer.allocUnsafeSlow(SLOT * SLOTS);
    const rcvOptions: RcvOptions = { natTPort: 4500, udpCarrier: true, inPlace: true };
    const from = { addr: '127.0.0.1', port: 4500 };
    let slot = 0;
    let crossed = 0;
    let written = 0;
    const gro = new TunCoalescer(() => { written++; }, () => { written++; });
    // One segment: out through west, into a slot as the carrier lays a datagram out, in through east.
    const emit = (seg: Buffer, piece: number): void => {
      const x = xmit(west, seg, pieceOptions(piece));
      if (!x.ok || x.action !== 'ipsec') throw new Error(`route bench: xmit ${x.ok ? x.action : x.reason}`);
      const esp = x.out.packet.subarray(20);
      const at = (slot++ % SLOTS) * SLOT;
      const d = slots.subarray(at, at + 28 + esp.length);
      writeIPv4Header(d, { tos: 0, id: 0, flags: 0, ttl: 64, protocol: IPPROTO_UDP, src: WEST, dst: EAST, payloadLength: 8 + esp.length });
      d.writeUInt16BE(4500, 20);
      d.writeUInt16BE(4500, 22);
      d.writeUInt16BE(8 + esp.length, 24);
      d.writeUInt16BE(0, 26);
      esp.copy(d, 28);
      const r = rcv(east, d, from, rcvOptions);
      if (!r.ok || r.kind !== 'ipsec') throw new Error(`route bench: rcv ${r.ok ? r.kind : r.reason}`);
      crossed++;
      gro.add(r.packet);
    };
    const path = (): void => {
      tunBuf.set(read, 0);
      if (offloadedPackets(tunBuf, read.length, scratch, emit)) throw new Error('route bench: a bad virtio_net_hdr');
      gro.flush();
    };

    // The transforms alone: the same ESP SAs, tunnel mode, on the same segments.
    const espOut = runtimeOf(west.sadb.get({ proto: IPPROTO_ESP, spi: 0x100, dst: '127.0.0.2' })!).tsa;
    const espIn = runtimeOf(east.sadb.get({ proto: IPPROTO_ESP, spi: 0x100, dst: '127.0.0.2' })!).tsa;
    const segs: Buffer[] = [];
    offloadedPackets(Buffer.from(read), read.length, Buffer.allocUnsafeSlow(65536), (p) => { segs.push(Buffer.from(p)); });
    let seq = 0;
    const transforms = (): void => {
      const rx = new ReplayWindow(64);
      for (const p of segs) {
        const o = espOutput(espOut, p, { mode: 'tunnel', seq: (seq = (seq % 0xfffffffe) + 1) });
        if (!o.ok) throw new Error(`route bench: espOutput ${o.reason}`);
        const i = espInput(espIn, o.packet, { mode: 'tunnel', replay: rx, inPlace: true });
        if (!i.ok) throw new Error(`route bench: espInput ${i.reason}`);
        crossed++;
      }
    };

    const T_FLOOR = 'ESP transforms alone (espOutput + espInput, per segment)';
    const T_PATH = "the runtime's path (cut, xmit, slot, rcv in place, coalescer, per segment)";
    const group: BatchTask[] = [
      { name: T_FLOOR, n: SEGMENTS, batch: transforms },
      { name: T_PATH, n: SEGMENTS, batch: path },
    ];
    const measured = await interleave(opts, [group]);
    if (crossed === 0 || written === 0) throw new Error('route bench: nothing crossed');
    const bPerOp = allocationPerOp((n) => { for (let i = 0; i < n; i += SEGMENTS) path(); }, SEGMENTS * 2);
    setEspCrypto(backend);

    const floor = measured.row(T_FLOOR);
    floor.extra = { 'vs transforms': '100%' };
    const ours = measured.row(T_PATH);
    ours.extra = { ...pairedExtra(measured.ratio(T_PATH, T_FLOOR), 'vs transforms'), 'B/op': bPerOp === undefined ? 'n/a' : Math.round(bPerOp) };
    const rows: ResultRow[] = [floor, ours];
    return {
      rows,
      notes: [
        `one batch = one 64 KB TUN read: ${SEGMENTS} segments of 1348 bytes of TCP payload (1388-byte IPv4 packets), each out and back in; ops/s and mean are per segment`,
        'the path: offloadedPackets (checksums of each piece), xmit through the tun + esp group (the pieces after the first take its route), IPv4 + UDP headers written in front of the ESP in a receive slot, rcv in place (NAT-T decapsulation, replay window, ESP, IPIP, traffic counted), the coalescer (each segment checked and merged)',
        `crypto: ${evpUnavailable() ? `node:crypto (EVP unavailable: ${evpUnavailable()})` : "libcrypto's EVP through koffi, as the runtime uses it"}; the two tasks take turns batch by batch within each round; vs transforms is the median of per-round ratios (a ratio under 100% means the path costs more than the transforms)`,
        'B/op: V8 heap bytes allocated per segment by the path (Buffer contents live outside the heap)',
      ],
    };
  },
};

runAloneIfMain(suite, import.meta.url);
