/**
 * Tests for src/dataplane/ipip.ts: the outer header KLIPS's tunnel mode builds for each
 * family pair (TTL/hop limit 64, DF cleared, IPv4 TOS copied, IPv6 traffic class and flow
 * label zero) and the options that change it, and decapsulation with its checks (outer
 * protocol, inner version, inbound policy, fragments, sizes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IPPROTO_IPIP } from '../src/wire/index.js';
import {
  IPPROTO_DSTOPTS, IPPROTO_IPV6, IP_DF, IP_MF, internetChecksum, ipipDecap, ipipEncap, parseIp,
  refreshIPv4Checksum,
} from '../src/dataplane/index.js';
import { addr, bytes, ipv4, ipv6, optionsHeader, tcp } from './dataplane-helpers.js';

const V4 = { src: addr('192.0.2.1'), dst: addr('198.51.100.2') };
const V6 = { src: addr('2001:db8:ffff::1'), dst: addr('2001:db8:eeee::2') };
const inner4 = ipv4({ payload: tcp(1, 2, bytes(30)), tos: 0x2a, ttl: 9, flags: IP_DF });
const inner6 = ipv6({ payload: tcp(3, 4, bytes(30)), tc: 0xb8, fl: 0x12345, hlim: 9 });

function encap(sa: typeof V4, inner: Buffer, opts = {}): Buffer {
  const r = ipipEncap(sa, inner, { id: 0x7777, ...opts });
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.packet;
}

test('IPv4 outer header: from the SA, TTL 64, DF cleared, TOS copied (IPv4 and IPv6 inside)', () => {
  for (const [inner, proto, tos] of [[inner4, IPPROTO_IPIP, 0x2a], [inner6, IPPROTO_IPV6, 0xb8]] as const) {
    const o = encap(V4, inner);
    assert.equal(o[0], 0x45);
    assert.equal(o[1], tos);
    assert.equal(o.readUInt16BE(2), 20 + inner.length);
    assert.equal(o.readUInt16BE(4), 0x7777);
    assert.equal(o.readUInt16BE(6), 0, 'DF and offset cleared, as KLIPS sets frag_off = 0');
    assert.equal(o[8], 64);
    assert.equal(o[9], proto);
    assert.equal(internetChecksum(o, 0, 20), 0);
    assert.ok(o.subarray(12, 16).equals(V4.src) && o.subarray(16, 20).equals(V4.dst));
    assert.ok(o.subarray(20).equals(inner), 'inner packet untouched (its TTL too)');
  }
});

test('IPv6 outer header: from the SA, hop limit 64, traffic class and flow label zero', () => {
  for (const [inner, nh] of [[inner6, IPPROTO_IPV6], [inner4, IPPROTO_IPIP]] as const) {
    const o = encap(V6, inner);
    assert.equal(o.readUInt32BE(0), 0x60000000);
    assert.equal(o.readUInt16BE(4), inner.length);
    assert.equal(o[6], nh);
    assert.equal(o[7], 64);
    assert.ok(o.subarray(8, 24).equals(V6.src) && o.subarray(24, 40).equals(V6.dst));
    assert.ok(o.subarray(40).equals(inner));
  }
});

test('options: TOS cleared or copied, DF copied or set, another TTL; a random ID when none is given', () => {
  assert.equal(encap(V4, inner4, { tos: 'clear' })[1], 0);
  assert.equal(encap(V6, inner6, { tos: 'copy' }).readUInt32BE(0) >>> 20 & 0xff, 0xb8);
  assert.equal(encap(V4, inner4, { df: 'copy' }).readUInt16BE(6), IP_DF);
  assert.equal(encap(V4, ipv4({ payload: bytes(8) }), { df: 'copy' }).readUInt16BE(6), 0);
  assert.equal(encap(V4, inner6, { df: 'set' }).readUInt16BE(6), IP_DF);
  assert.equal(encap(V4, inner4, { ttl: 5 })[8], 5);
  const ids = new Set<number>();
  for (let i = 0; i < 20; i++) {
    const r = ipipEncap(V4, inner4);
    assert.ok(r.ok);
    ids.add(r.packet.readUInt16BE(4));
  }
  assert.ok(ids.size > 1);
});

test('encapsulation refuses bad SA addresses, bad inner packets and results over 65,535 bytes', () => {
  assert.deepEqual(ipipEncap({ src: V4.src, dst: V6.dst }, inner4), { ok: false, reason: 'bad-sa' });
  assert.deepEqual(ipipEncap({ src: bytes(5), dst: bytes(5) }, inner4), { ok: false, reason: 'bad-sa' });
  assert.deepEqual(ipipEncap(V4, Buffer.from([0x50, 0, 0, 20])), { ok: false, reason: 'bad-ip-header' });
  assert.deepEqual(ipipEncap(V4, inner4.subarray(0, 30)), { ok: false, reason: 'too-short' });
  const big = ipv4({ payload: bytes(65535 - 20) });
  assert.deepEqual(ipipEncap(V4, big), { ok: false, reason: 'too-big' });
  const big6 = ipv6({ payload: bytes(65535 - 40 + 1) });
  assert.deepEqual(ipipEncap(V6, big6), { ok: false, reason: 'too-big' });
  assert.ok(ipipEncap(V6, ipv6({ payload: bytes(65535 - 40) })).ok);
});

test('decapsulation gives back the inner packet, for each family pair and through IPv6 extension headers', () => {
  for (const sa of [V4, V6]) {
    for (const inner of [inner4, inner6]) {
      const d = ipipDecap(sa, encap(sa, inner));
      assert.ok(d.ok && d.packet.equals(inner));
    }
  }
  const o = encap(V6, inner4);
  const dst = optionsHeader(IPPROTO_IPIP, Buffer.from([0x1e, 2, 0, 0]));
  const withOpts = Buffer.concat([o.subarray(0, 40), dst, o.subarray(40)]);
  withOpts[6] = IPPROTO_DSTOPTS;
  withOpts.writeUInt16BE(withOpts.length - 40, 4);
  const d = ipipDecap(V6, withOpts);
  assert.ok(d.ok && d.packet.equals(inner4));
  const padded = Buffer.concat([encap(V4, inner4), bytes(6)]); // link-layer padding after the packet
  const e = ipipDecap(V4, padded);
  assert.ok(e.ok && e.packet.equals(inner4));
});

test('decapsulation drops: policy (outer source not the SA\'s), not IPIP, version mismatch, fragments, truncation', () => {
  const o = encap(V4, inner4);
  assert.deepEqual(ipipDecap({ src: addr('203.0.113.5'), dst: V4.dst }, o), { ok: false, reason: 'policy' });
  assert.ok(ipipDecap({ src: addr('203.0.113.5'), dst: V4.dst }, o, { policyCheck: false }).ok);
  assert.ok(ipipDecap(undefined, o).ok, 'no SA, no policy to check');
  assert.deepEqual(ipipDecap(V4, inner4), { ok: false, reason: 'bad-next-header' });
  const wrong = Buffer.from(encap(V4, inner6));
  wrong[9] = IPPROTO_IPIP;
  refreshIPv4Checksum(wrong);
  assert.deepEqual(ipipDecap(V4, wrong), { ok: false, reason: 'bad-next-header' });
  const frag = Buffer.from(o);
  frag.writeUInt16BE(IP_MF, 6);
  refreshIPv4Checksum(frag);
  assert.deepEqual(ipipDecap(V4, frag), { ok: false, reason: 'fragment' });
  const cut = Buffer.from(o.subarray(0, 20 + 30));
  cut.writeUInt16BE(cut.length, 2);
  refreshIPv4Checksum(cut);
  assert.deepEqual(ipipDecap(V4, cut), { ok: false, reason: 'too-short' });
  const p = parseIp(o);
  assert.ok(p.ok && p.ip.protocol === IPPROTO_IPIP && p.ip.headerLength === 20 && p.ip.bytes.length === o.length);
});
