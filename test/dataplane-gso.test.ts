/**
 * Tests for src/dataplane/gso.ts: what a TUN device with offloads hands over, made into
 * whole packets. A TCP super-segment (IPv4 and IPv6) is cut into gso_size pieces whose
 * lengths, IPv4 ids, sequence numbers, flags and checksums are exactly what the host would
 * have sent; a NEEDS_CSUM packet gets its checksum; a header that makes no sense is a fault.
 * The other way, TunCoalescer merges consecutive segments into the super-segment the host
 * would take from a NIC's GRO: cut again, it gives back the very segments; whatever may not
 * be merged (a bad checksum, a gap, another flow, not TCP, PSH, the size limit) is written
 * as it came, in order. The word-at-a-time checksum equals the byte loop everywhere.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TunCoalescer, VNET_HDR_BYTES, offloadedPackets } from '../src/dataplane/gso.js';
import { buildIPv4Header, buildIPv6Header, internetChecksum, onesSum, onesSumWords, wordsOf } from '../src/dataplane/index.js';

const SRC4 = Uint8Array.of(10, 1, 0, 5);
const DST4 = Uint8Array.of(10, 2, 0, 7);
const SRC6 = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 1 : 0));
const DST6 = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 2 : 0));

/** A TCP segment (20-byte header, flags) with `payload` bytes, behind a vnet header. */
function superSegment(v6: boolean, payload: number, gsoSize: number, flags: number): Buffer {
  const tcp = Buffer.alloc(20 + payload);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(5201, 2);
  tcp.writeUInt32BE(0xfffff000, 4); // the sequence number wraps inside the super-segment
  tcp.writeUInt32BE(77, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(512, 14);
  for (let i = 0; i < payload; i++) tcp[20 + i] = (i * 7) & 0xff;
  const ip = v6
    ? buildIPv6Header({ trafficClass: 0, flowLabel: 0, hopLimit: 64, nextHeader: 6, src: SRC6, dst: DST6, payloadLength: tcp.length })
    : buildIPv4Header({ tos: 0, id: 0x1234, flags: 0x4000, ttl: 64, protocol: 6, src: SRC4, dst: DST4, payloadLength: tcp.length });
  const vnet = Buffer.alloc(VNET_HDR_BYTES);
  vnet[0] = 1; // NEEDS_CSUM
  vnet[1] = v6 ? 4 : 1; // GSO_TCPV6 / GSO_TCPV4
  vnet.writeUInt16LE(ip.length + 20, 2);
  vnet.writeUInt16LE(gsoSize, 4);
  vnet.writeUInt16LE(ip.length, 6);
  vnet.writeUInt16LE(16, 8);
  return Buffer.concat([vnet, ip, tcp]);
}

function tcpChecksumOk(p: Buffer, v6: boolean): boolean {
  const at = v6 ? 40 : 20;
  const l4 = p.length - at;
  const pseudo = (v6 ? onesSum(p, 8, 40) : onesSum(p, 12, 20)) + 6 + l4;
  return internetChecksum(p, at, p.length, pseudo) === 0;
}

for (const v6 of [false, true]) {
  test(`a ${v6 ? 'TCPv6' : 'TCPv4'} super-segment of 3000 bytes cut at 1000: three packets as the host would send them`, () => {
    const read = superSegment(v6, 3000, 1000, 0x18 | 0x01 | 0x80); // PSH ACK FIN CWR
    const buf = Buffer.alloc(70000);
    read.copy(buf);
    const got: Buffer[] = [];
    assert.equal(offloadedPackets(buf, read.length, Buffer.alloc(70000), (p) => got.push(Buffer.from(p))), undefined);
    assert.equal(got.length, 3);
    const at = v6 ? 40 : 20;
    got.forEach((p, i) => {
      assert.equal(p.length, at + 20 + 1000);
      if (v6) assert.equal(p.readUInt16BE(4), 1020);
      else {
        assert.equal(p.readUInt16BE(2), 1040);
        assert.equal(p.readUInt16BE(4), 0x1234 + i);
        assert.equal(internetChecksum(p, 0, 20), 0, 'IPv4 header checksum');
      }
      assert.equal(p.readUInt32BE(at + 4), (0xfffff000 + 1000 * i) >>> 0);
      const flags = p[at + 13];
      assert.equal(flags, i === 0 ? 0x10 | 0x80 : i === 2 ? 0x18 | 0x01 : 0x10, `flags of piece ${i}`);
      assert.ok(tcpChecksumOk(p, v6), `TCP checksum of piece ${i}`);
      for (let k = 0; k < 1000; k++) assert.equal(p[at + 20 + k], ((1000 * i + k) * 7) & 0xff);
    });
  });
}

test('a super-segment whose payload does not divide evenly ends with the short piece', () => {
  const read = superSegment(false, 2500, 1000, 0x10);
  const got: number[][] = [];
  offloadedPackets(read, read.length, Buffer.alloc(70000), (p, piece) => got.push([p.length, piece]));
  // (Each with its number in the read: the pieces after the first share its route, xmit's sameFlow.)
  assert.deepEqual(got, [[1040, 0], [1040, 1], [540, 2]]);
});

test('NEEDS_CSUM without GSO: the checksum is completed in place from the pseudo-header sum the host left', () => {
  const read = superSegment(false, 300, 0, 0x18);
  read[1] = 0; // GSO_NONE
  // The host puts the pseudo-header sum in the checksum field for the device to finish.
  const at = VNET_HDR_BYTES + 20;
  const pseudo = onesSum(read, VNET_HDR_BYTES + 12, VNET_HDR_BYTES + 20) + 6 + 320;
  read.writeUInt16BE((pseudo & 0xffff) + (pseudo >>> 16), at + 16);
  const got: Buffer[] = [];
  const pieces: number[] = [];
  offloadedPackets(read, read.length, Buffer.alloc(70000), (p, piece) => { got.push(Buffer.from(p)); pieces.push(piece); });
  assert.equal(got.length, 1);
  assert.deepEqual(pieces, [0]);
  assert.ok(tcpChecksumOk(got[0], false));
});

test('a vnet header that makes no sense is a fault, not a throw', () => {
  const read = superSegment(false, 3000, 1000, 0x10);
  read[1] = 3; // GSO_UDP, never asked for
  assert.equal(offloadedPackets(read, read.length, Buffer.alloc(70000), () => assert.fail('no packet')), 'bad-vnet-header');
  const short = Buffer.alloc(5);
  assert.equal(offloadedPackets(short, 5, Buffer.alloc(10), () => assert.fail('no packet')), 'bad-vnet-header');
  const wrongVersion = superSegment(true, 100, 50, 0x10);
  wrongVersion[1] = 1; // says TCPv4, holds IPv6
  assert.equal(offloadedPackets(wrongVersion, wrongVersion.length, Buffer.alloc(70000), () => assert.fail('no packet')), 'bad-vnet-header');
});

/** The segments offloadedPackets cuts from a super-segment (copies). */
function cut(read: Buffer): Buffer[] {
  const got: Buffer[] = [];
  assert.equal(offloadedPackets(read, read.length, Buffer.allocUnsafeSlow(70000), (p) => got.push(Buffer.from(p))), undefined);
  return got;
}

/** A coalescer whose writes are recorded: ['whole', packet] or ['held', vnet header + packet]. */
function recorder(): { gro: TunCoalescer; out: [string, Buffer][] } {
  const out: [string, Buffer][] = [];
  const gro = new TunCoalescer((p) => out.push(['whole', Buffer.from(p)]), (b, n) => out.push(['held', Buffer.from(b.subarray(0, n))]));
  return { gro, out };
}

for (const v6 of [false, true]) {
  test(`${v6 ? 'TCPv6' : 'TCPv4'}: segments in a row are written as one GSO super-segment that cuts back into the same segments`, () => {
    const segs = cut(superSegment(v6, 3500, 1000, 0x18)); // PSH ACK: PSH on the last piece only
    assert.equal(segs.length, 4);
    const { gro, out } = recorder();
    for (const p of segs) gro.add(p);
    gro.flush();
    assert.equal(out.length, 1);
    const [kind, w] = out[0];
    assert.equal(kind, 'held');
    const at = v6 ? 40 : 20;
    assert.equal(w[0], 1, 'NEEDS_CSUM');
    assert.equal(w[1], v6 ? 4 : 1, 'GSO_TCPV6 / GSO_TCPV4');
    assert.equal(w.readUInt16LE(2), at + 20, 'hdr_len');
    assert.equal(w.readUInt16LE(4), 1000, 'gso_size');
    assert.equal(w.readUInt16LE(6), at, 'csum_start');
    assert.equal(w.readUInt16LE(8), 16, 'csum_offset');
    assert.equal(w.length, VNET_HDR_BYTES + at + 20 + 3500);
    if (!v6) assert.equal(internetChecksum(w, VNET_HDR_BYTES, VNET_HDR_BYTES + 20), 0, 'IPv4 header checksum');
    assert.equal(gro.merged, 3);
    // The host cuts it as a NIC would: the same four segments, byte for byte.
    const again = cut(w);
    assert.deepEqual(again.map((p) => p.toString('hex')), segs.map((p) => p.toString('hex')));
  });
}

test('one segment alone is written as it came, behind an all-zero header', () => {
  const [p] = cut(superSegment(false, 1000, 1000, 0x10));
  const { gro, out } = recorder();
  gro.add(p);
  gro.flush();
  assert.equal(out.length, 1);
  assert.equal(out[0][0], 'held');
  assert.deepEqual(out[0][1], Buffer.concat([Buffer.alloc(VNET_HDR_BYTES), p]));
  assert.equal(gro.merged, 0);
});

test('what may not be merged is written as it came, in order, and ends the run before it', () => {
  const segs = cut(superSegment(false, 6000, 1000, 0x10));
  const bad = Buffer.from(segs[2]);
  bad[bad.length - 1] ^= 1; // payload corrupted: its checksum no longer holds
  const otherFlow = Buffer.from(segs[4]);
  otherFlow.writeUInt16BE(40001, 20); // another source port (checksum made right again)
  otherFlow.writeUInt16BE(0, 36);
  otherFlow.writeUInt16BE(internetChecksum(otherFlow, 20, otherFlow.length, onesSum(otherFlow, 12, 20) + 6 + otherFlow.length - 20), 36);
  const udp = Buffer.concat([buildIPv4Header({ tos: 0, id: 9, flags: 0x4000, ttl: 64, protocol: 17, src: SRC4, dst: DST4, payloadLength: 60 }), Buffer.alloc(60)]);
  const { gro, out } = recorder();
  // 0 1 | bad (whole) | 3 | other flow | 5 (a gap: 4 never came) | udp (whole)
  for (const p of [segs[0], segs[1], bad, segs[3], otherFlow, segs[5], udp]) gro.add(p);
  gro.flush();
  const seqOf = (b: Buffer, off: number) => b.readUInt32BE(off + 24);
  assert.deepEqual(out.map(([k, b]) => [k, k === 'held' ? b.readUInt16LE(4) : 0, b.length]), [
    ['held', 1000, VNET_HDR_BYTES + 40 + 2000],
    ['whole', 0, 1040],
    ['held', 0, VNET_HDR_BYTES + 1040],
    ['held', 0, VNET_HDR_BYTES + 1040],
    ['held', 0, VNET_HDR_BYTES + 1040],
    ['whole', 0, 80],
  ]);
  assert.deepEqual(out[1][1], bad);
  assert.equal(seqOf(out[2][1], VNET_HDR_BYTES), segs[3].readUInt32BE(24));
  assert.deepEqual(out[3][1].subarray(VNET_HDR_BYTES), otherFlow);
  assert.deepEqual(out[4][1].subarray(VNET_HDR_BYTES), segs[5]);
  assert.deepEqual(out[5][1], udp);
  assert.equal(gro.merged, 1);
});

test('a PSH segment ends the run it joins; one that starts a run is written alone; a short one ends it', () => {
  const segs = cut(superSegment(false, 4000, 1000, 0x10));
  const psh = segs.map((p) => {
    const q = Buffer.from(p);
    q[33] |= 0x08;
    q.writeUInt16BE(0, 36);
    q.writeUInt16BE(internetChecksum(q, 20, q.length, onesSum(q, 12, 20) + 6 + q.length - 20), 36);
    return q;
  });
  const short = cut(superSegment(false, 1500, 1000, 0x10));
  const { gro, out } = recorder();
  gro.add(segs[0]);
  gro.add(psh[1]); // joins, then the run is written
  gro.add(psh[2]); // a run cannot start with PSH: alone
  gro.add(short[0]);
  gro.add(short[1]); // 500 after 1000: joins and ends the run
  assert.deepEqual(out.map(([k, b]) => [k, b.length]), [
    ['held', VNET_HDR_BYTES + 40 + 2000],
    ['whole', 1040],
    ['held', VNET_HDR_BYTES + 40 + 1500],
  ]);
  assert.equal(out[0][1][VNET_HDR_BYTES + 33] & 0x08, 0x08, 'PSH kept on the merged header');
  gro.flush();
  assert.equal(out.length, 3, 'nothing left held');
});

test('a run stops short of the 65,535-byte IPv4 limit and the next segment starts another', () => {
  const segs = cut(superSegment(false, 1400 * 46, 1400, 0x10));
  for (let i = 0; i < 4; i++) {
    // Four more, each where the one before ended (id, sequence number and checksums made again).
    const q = Buffer.from(segs[segs.length - 1]);
    q.writeUInt16BE((q.readUInt16BE(4) + 1) & 0xffff, 4);
    q.writeUInt16BE(0, 10);
    q.writeUInt16BE(internetChecksum(q, 0, 20), 10);
    q.writeUInt32BE((q.readUInt32BE(24) + 1400) >>> 0, 24);
    q.writeUInt16BE(0, 36);
    q.writeUInt16BE(internetChecksum(q, 20, q.length, onesSum(q, 12, 20) + 6 + q.length - 20), 36);
    segs.push(q);
  }
  const { gro, out } = recorder();
  for (const p of segs) gro.add(p);
  gro.flush();
  const lens = out.map(([, b]) => b.length - VNET_HDR_BYTES);
  assert.deepEqual(lens, [40 + 1400 * 46, 40 + 1400 * 4]);
  assert.ok(lens[0] <= 65535);
  assert.deepEqual([...cut(out[0][1]), ...cut(out[1][1])].map((p) => p.toString('hex')), segs.map((p) => p.toString('hex')));
});

test('onesSumWords equals the byte loop for any aligned buffer, start and end', () => {
  fc.assert(fc.property(
    fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(), fc.nat(), fc.nat({ max: 0x3ffff }),
    (bytes, a, b, seed) => {
      const buf = Buffer.allocUnsafeSlow(bytes.length + 4);
      buf.set(bytes);
      const start = bytes.length ? a % (bytes.length + 1) : 0;
      const end = start + (bytes.length - start ? b % (bytes.length - start + 1) : 0);
      assert.equal(onesSumWords(wordsOf(buf), buf, start, end, seed), onesSum(buf, start, end, seed));
    },
  ), { numRuns: 500 });
  // The largest sums: 64 KB of 0xff (every word 0xffffffff), and of zeros, from each alignment.
  for (const fill of [0xff, 0x00, 0x80]) {
    const buf = Buffer.allocUnsafeSlow(65536 + 8).fill(fill);
    for (const start of [0, 2, 4, 6]) {
      for (const seed of [0, 1, 0x3ffff]) assert.equal(onesSumWords(wordsOf(buf), buf, start, buf.length - 3, seed), onesSum(buf, start, buf.length - 3, seed));
    }
  }
});
