/**
 * Tests for src/dataplane/ipcomp.ts: compression and back for both families, KLIPS's
 * reasons to send a packet uncompressed (IPsec payloads, fragments, under 90 bytes, not
 * enough saved), the header (next header, flags, CPI), and the inbound drops: flags, CPI,
 * nested IPCOMP, corrupt or truncated deflate data, and deflate bombs stopped at the
 * 65,535-byte IP limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import {
  IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, SADB_SATYPE_ESP, SADB_X_CALG_DEFLATE, SADB_X_CALG_LZS, SADB_X_SATYPE_COMP,
} from '../src/wire/index.js';
import {
  IPCOMP_MIN_PAYLOAD, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_TCP, IPPROTO_UDP, IP_MF, ipcompCompress,
  ipcompDecompress, ipcompLimit, refreshIPv4Checksum, type TransformSA,
} from '../src/dataplane/index.js';
import { addr, bytes, ipv4, ipv6, optionsHeader, tcp, udp } from './dataplane-helpers.js';

const SA: TransformSA = {
  satype: SADB_X_SATYPE_COMP, spi: 0x0001c0de, encrypt: SADB_X_CALG_DEFLATE, auth: 0, replayWindow: 0,
  src: addr('192.0.2.1'), dst: addr('198.51.100.2'),
};
const text = (n: number) => Buffer.from('All work and no play makes Jack a dull boy. '.repeat(Math.ceil(n / 45)).slice(0, n));

function compress(pkt: Buffer) {
  const r = ipcompCompress(SA, pkt);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r;
}

test('a compressible IPv4 packet is compressed behind the IPCOMP header and inflates back to itself', () => {
  const pkt = ipv4({ payload: tcp(80, 5000, text(1200)), ttl: 30, id: 77 });
  const c = compress(pkt);
  assert.equal(c.compressed, true);
  const p = c.packet;
  assert.ok(p.length < pkt.length / 3);
  assert.equal(p[9], IPPROTO_COMP);
  assert.equal(p.readUInt16BE(2), p.length);
  assert.deepEqual([p[20], p[21], p.readUInt16BE(22)], [IPPROTO_TCP, 0, 0xc0de], 'next header, flags, CPI = low 16 bits of the SPI');
  for (const [a, b] of [[0, 2], [4, 9], [12, 20]]) assert.ok(p.subarray(a, b).equals(pkt.subarray(a, b)), 'header kept but for length and checksum');
  const d = ipcompDecompress(SA, p);
  assert.ok(d.ok && d.nextHeader === IPPROTO_TCP);
  assert.ok(d.packet.equals(pkt));
});

test('IPv6: the IPCOMP header goes after the hop-by-hop header, and comes back out', () => {
  const hbh = optionsHeader(IPPROTO_UDP, Buffer.from([0x05, 2, 0, 0]));
  const pkt = ipv6({ nh: IPPROTO_HOPOPTS, payload: Buffer.concat([hbh, udp(1, 2, text(700))]) });
  const c = compress(pkt);
  assert.ok(c.compressed);
  assert.equal(c.packet[40], IPPROTO_COMP);
  assert.equal(c.packet[48], IPPROTO_UDP);
  assert.equal(c.packet.readUInt16BE(4), c.packet.length - 40);
  const d = ipcompDecompress(SA, c.packet);
  assert.ok(d.ok && d.packet.equals(pkt));
});

test('sent uncompressed as KLIPS would: IPsec payloads, fragments, under 90 bytes, or not enough saved', () => {
  const same = (pkt: Buffer, why: string) => {
    const c = compress(pkt);
    assert.equal(c.compressed, false, why);
    assert.ok(c.packet.equals(pkt), why);
  };
  for (const proto of [IPPROTO_ESP, IPPROTO_AH, IPPROTO_COMP]) same(ipv4({ proto, payload: text(500) }), `protocol ${proto}`);
  same(ipv4({ payload: text(500), flags: IP_MF }), 'first fragment');
  same(ipv4({ payload: text(IPCOMP_MIN_PAYLOAD - 1) }), '89 bytes');
  assert.ok(compress(ipv4({ payload: Buffer.alloc(IPCOMP_MIN_PAYLOAD) })).compressed, '90 bytes of zeros');
  same(ipv4({ payload: bytes(1400, 3) }), 'random bytes');
  same(ipv6({ payload: bytes(300, 4) }), 'random bytes, IPv6');
});

test('the worth-it threshold is KLIPS\'s: the header plus 32 bytes up to 512, plus 1/16 beyond', () => {
  assert.equal(ipcompLimit(90), 54);
  assert.equal(ipcompLimit(512), 476);
  assert.equal(ipcompLimit(513), 477);
  assert.equal(ipcompLimit(1600), 1496);
  fc.assert(
    fc.property(fc.integer({ min: 90, max: 1500 }), fc.integer({ min: 0, max: 100 }), fc.integer({ min: 1, max: 1e6 }), (n, randomPct, seed) => {
      // Part random, part repeated: compresses anywhere from not at all to very well.
      const cut = Math.floor((n * randomPct) / 100);
      const payload = Buffer.concat([bytes(cut, seed), text(n - cut)]);
      const pkt = ipv4({ proto: 200, payload });
      const c = compress(pkt);
      const z = deflateRawSync(payload, { windowBits: 11 }).length;
      assert.equal(c.compressed, z <= ipcompLimit(n), `n=${n} deflated=${z} limit=${ipcompLimit(n)}`);
      if (c.compressed) {
        assert.equal(c.packet.length, 20 + 4 + z);
        const d = ipcompDecompress(SA, c.packet);
        assert.ok(d.ok && d.packet.equals(pkt));
      }
    }),
    { numRuns: 60, seed: 3 },
  );
});

/** An IPv4 IPCOMP packet around arbitrary bytes. */
function comp(data: Buffer, nh = IPPROTO_TCP, cpi = 0xc0de, flags = 0): Buffer {
  const h = Buffer.from([nh, flags, cpi >> 8, cpi & 0xff]);
  return ipv4({ proto: IPPROTO_COMP, payload: Buffer.concat([h, data]) });
}

test('inbound drops: flags, CPI, nested IPCOMP, corrupt and truncated data, fragments; the well-known CPI is accepted', () => {
  const z = deflateRawSync(text(400));
  assert.ok(ipcompDecompress(SA, comp(z)).ok);
  assert.ok(ipcompDecompress(SA, comp(z, IPPROTO_TCP, SADB_X_CALG_DEFLATE)).ok, 'CPI 2: deflate\'s well-known CPI');
  assert.deepEqual(ipcompDecompress(SA, comp(z, IPPROTO_TCP, 0xc0df)), { ok: false, reason: 'no-sa' });
  assert.deepEqual(ipcompDecompress(SA, comp(z, IPPROTO_TCP, 0xc0de, 1)), { ok: false, reason: 'malformed' });
  assert.deepEqual(ipcompDecompress(SA, comp(z, IPPROTO_COMP)), { ok: false, reason: 'bad-next-header' });
  assert.deepEqual(ipcompDecompress(SA, comp(z.subarray(0, z.length - 5))), { ok: false, reason: 'decompress-failed' });
  assert.deepEqual(ipcompDecompress(SA, comp(bytes(200, 9))), { ok: false, reason: 'decompress-failed' });
  assert.deepEqual(ipcompDecompress(SA, comp(Buffer.alloc(0))), { ok: false, reason: 'decompress-failed' });
  assert.deepEqual(ipcompDecompress(SA, ipv4({ proto: IPPROTO_COMP, payload: Buffer.from([6, 0]) })), { ok: false, reason: 'too-short' });
  assert.deepEqual(ipcompDecompress(SA, ipv4({ payload: text(100) })), { ok: false, reason: 'no-sa' });
  const frag = comp(z);
  frag.writeUInt16BE(IP_MF, 6);
  refreshIPv4Checksum(frag);
  assert.deepEqual(ipcompDecompress(SA, frag), { ok: false, reason: 'fragment' });
});

test('deflate bombs stop at the 65,535-byte packet limit', () => {
  const bomb = deflateRawSync(Buffer.alloc(4 << 20));
  assert.ok(bomb.length < 8192);
  assert.deepEqual(ipcompDecompress(SA, comp(bomb)), { ok: false, reason: 'too-big' });
  // Exactly at the limit is fine; one byte more is not (IPv4: 20-byte header).
  assert.ok(ipcompDecompress(SA, comp(deflateRawSync(Buffer.alloc(65535 - 20)))).ok);
  assert.deepEqual(ipcompDecompress(SA, comp(deflateRawSync(Buffer.alloc(65535 - 20 + 1)))), { ok: false, reason: 'too-big' });
  // IPv6 counts the payload length, after the 40-byte header (and here an 8-byte options header).
  const v6 = (n: number) => {
    const dst = optionsHeader(IPPROTO_COMP, Buffer.from([0x1e, 2, 0, 0]));
    return ipv6({ nh: IPPROTO_DSTOPTS, payload: Buffer.concat([dst, Buffer.from([IPPROTO_TCP, 0, 0xc0, 0xde]), deflateRawSync(Buffer.alloc(n))]) });
  };
  assert.ok(ipcompDecompress(SA, v6(65535 - 8)).ok);
  assert.deepEqual(ipcompDecompress(SA, v6(65535 - 8 + 1)), { ok: false, reason: 'too-big' });
});

test('SA checks: an IPCOMP SA with deflate only', () => {
  const pkt = ipv4({ payload: text(500) });
  assert.deepEqual(ipcompCompress({ ...SA, satype: SADB_SATYPE_ESP }, pkt), { ok: false, reason: 'bad-sa' });
  assert.deepEqual(ipcompCompress({ ...SA, encrypt: SADB_X_CALG_LZS }, pkt), { ok: false, reason: 'unsupported' });
  assert.deepEqual(ipcompDecompress({ ...SA, encrypt: SADB_X_CALG_LZS }, pkt), { ok: false, reason: 'unsupported' });
});
