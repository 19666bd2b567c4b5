/**
 * Tests for src/dataplane/ah.ts: round trips for every HMAC in both modes and families,
 * the AH header layout and its IPv4/IPv6 alignment, what routers may change (mutable
 * fields, mutable options, a routing header on its way) and what they may not, and the
 * inbound drops (malformed AH, wrong SPI, fragments, replay, ESN high bits).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IPPROTO_AH, SADB_AALG_NONE, SADB_SATYPE_ESP } from '../src/wire/index.js';
import {
  AH_HEADER_BYTES, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IP_MF, ReplayWindow, ahInput,
  ahOutput, parseIp, refreshIPv4Checksum, type TransformSA,
} from '../src/dataplane/index.js';
import {
  AUTHS, addr, ahSA, bytes, ipv4, ipv6, optionsHeader, routingHeader, samplePackets, tcp,
} from './dataplane-helpers.js';

const V6_SA = { src: addr('2001:db8:ffff::1'), dst: addr('2001:db8:eeee::2') };

function out(sa: TransformSA, pkt: Buffer, mode: 'tunnel' | 'transport' = 'transport', seq = 1): Buffer {
  const r = ahOutput(sa, pkt, { mode, seq, tunnel: { id: 3 } });
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.packet;
}

test('every HMAC, tunnel and transport, IPv4 and IPv6: the packet comes back, and only once', () => {
  let seq = 1;
  for (const auth of AUTHS) {
    for (const fam of [{}, V6_SA]) {
      const sa = ahSA(auth, fam);
      const rx = new ReplayWindow(32);
      for (const { name, packet } of samplePackets(seq)) {
        for (const mode of ['tunnel', 'transport'] as const) {
          const p = out(sa, packet, mode, seq++);
          assert.ok(parseIp(p).ok);
          const back = ahInput(sa, p, { mode, replay: rx });
          assert.ok(back.ok, `${auth.scapy} ${name} ${mode}: ${back.ok ? '' : back.reason}`);
          assert.ok(back.packet.equals(packet), `${auth.scapy} ${name} ${mode}`);
          assert.deepEqual(ahInput(sa, p, { mode, replay: rx }), { ok: false, reason: 'replay' });
        }
      }
    }
  }
});

test('AH header layout: next header, payload length, SPI, sequence number, ICV padded to 4 (IPv4) or 8 (IPv6) bytes', () => {
  const want: Record<string, [number, number]> = {
    // ICV bytes → AH length for IPv4, IPv6
    'HMAC-MD5-96': [24, 24], 'HMAC-SHA1-96': [24, 24], 'SHA2-256-128': [28, 32], 'SHA2-384-192': [36, 40], 'SHA2-512-256': [44, 48],
  };
  for (const auth of AUTHS) {
    for (const [i, pkt] of [ipv4({ payload: tcp(1, 2, bytes(5)) }), ipv6({ payload: tcp(1, 2, bytes(5)) })].entries()) {
      const sa = ahSA(auth, i ? V6_SA : {});
      const p = out(sa, pkt, 'transport', 0x01020304);
      const off = i ? 40 : 20;
      const len = want[auth.scapy][i];
      assert.equal(p[i ? 6 : 9], IPPROTO_AH);
      assert.equal(p[off], IPPROTO_TCP);
      assert.equal((p[off + 1] + 2) * 4, len, `${auth.scapy} v${i ? 6 : 4}`);
      assert.equal(p.readUInt16BE(off + 2), 0, 'reserved');
      assert.equal(p.readUInt32BE(off + 4), sa.spi);
      assert.equal(p.readUInt32BE(off + 8), 0x01020304);
      assert.ok(p.subarray(off + AH_HEADER_BYTES + icvBytes(auth.scapy), off + len).every((b) => b === 0), 'zero padding');
      assert.equal(p.length, pkt.length + len);
    }
  }
});

function icvBytes(name: string): number {
  return { 'HMAC-MD5-96': 12, 'HMAC-SHA1-96': 12, 'SHA2-256-128': 16, 'SHA2-384-192': 24, 'SHA2-512-256': 32 }[name]!;
}

test('IPv4: TOS, flags, fragment offset, TTL, checksum and mutable options may change; the rest may not', () => {
  const sa = ahSA(AUTHS[1]);
  const opts = Buffer.from([0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0x01]); // router alert, record route, NOP
  const p = out(sa, ipv4({ payload: tcp(9, 10, bytes(40)), options: opts, tos: 0x10, ttl: 64, flags: 0x4000 }));
  const mutate = (f: (b: Buffer) => void) => {
    const b = Buffer.from(p);
    f(b);
    refreshIPv4Checksum(b);
    return ahInput(sa, b, { mode: 'transport' });
  };
  assert.ok(mutate((b) => { b[1] = 0xff; b[8] = 1; b.writeUInt16BE(0, 6); b.set([8, 192, 0, 2, 99], 26); }).ok);
  assert.deepEqual(mutate((b) => { b[4] ^= 1; }), { ok: false, reason: 'icv' }, 'identification is immutable');
  assert.deepEqual(mutate((b) => { b[12] ^= 1; }), { ok: false, reason: 'icv' }, 'source');
  assert.deepEqual(mutate((b) => { b[22] = 1; }), { ok: false, reason: 'icv' }, 'router alert value');
  assert.deepEqual(mutate((b) => { b[b.length - 1] ^= 0x40; }), { ok: false, reason: 'icv' }, 'payload');
  assert.deepEqual(mutate((b) => { b[32 + 12] ^= 1; }), { ok: false, reason: 'icv' }, 'ICV itself');
  const broken = ipv4({ payload: tcp(1, 2, bytes(3)), options: Buffer.from([0x07, 0, 0, 0]) });
  assert.deepEqual(ahOutput(sa, broken, { mode: 'transport', seq: 1 }), { ok: false, reason: 'bad-ip-header' }, 'option length 0');
});

test('IPv6: traffic class, flow label, hop limit and mutable option data may change; immutable option data may not', () => {
  const sa = ahSA(AUTHS[3], V6_SA);
  const hbh = optionsHeader(IPPROTO_DSTOPTS, Buffer.from([0x3e, 2, 7, 7, 0x05, 2, 0, 0]));
  const dst = optionsHeader(IPPROTO_TCP, Buffer.from([0x3f, 1, 5, 0x1e, 1, 6]));
  const p = out(sa, ipv6({ nh: IPPROTO_HOPOPTS, payload: Buffer.concat([hbh, dst, tcp(1, 2, bytes(30))]), tc: 0x12, fl: 0xabcde }));
  // hop-by-hop: 40..55 (0x3e data at 44, router alert data at 48); destination options: 56..63
  // (0x3f, mutable, data at 60; 0x1e data at 63); AH at 64.
  assert.equal(p[56], IPPROTO_AH, 'AH after the destination options (no routing header follows them)');
  const mutate = (f: (b: Buffer) => void) => {
    const b = Buffer.from(p);
    f(b);
    return ahInput(sa, b, { mode: 'transport' });
  };
  assert.ok(mutate((b) => { b.writeUInt32BE(0x6fffffff, 0); b[7] = 0; b[44] = 1; b[45] = 1; b[60] = 0xee; }).ok);
  assert.deepEqual(mutate((b) => { b[8] ^= 1; }), { ok: false, reason: 'icv' }, 'source address');
  assert.deepEqual(mutate((b) => { b[48] = 1; }), { ok: false, reason: 'icv' }, 'router alert data');
  assert.deepEqual(mutate((b) => { b[63] ^= 1; }), { ok: false, reason: 'icv' }, 'immutable destination option data');
  assert.deepEqual(mutate((b) => { b[30] ^= 1; }), { ok: false, reason: 'icv' }, 'destination address');
});

test('IPv6 routing header: the ICV is computed as the final destination sees it, and verifies there', () => {
  const sa = ahSA(AUTHS[2], V6_SA);
  const hops = ['2001:db8:a::1', '2001:db8:b::2', '2001:db8:c::3'];
  const rh = routingHeader(IPPROTO_TCP, hops.slice(1).concat('2001:db8:2::7'), 3);
  const sent = out(sa, ipv6({ nh: IPPROTO_ROUTING, payload: Buffer.concat([rh, tcp(7, 8, bytes(12))]), dst: hops[0] }));
  // Deliver: at each hop swap the destination with the next address and count down (RFC 8200 §4.4).
  const p = Buffer.from(sent);
  for (let left = 3; left > 0; left--) {
    const k = 3 - left;
    const a = 40 + 8 + 16 * k;
    const next = Buffer.from(p.subarray(a, a + 16));
    p.copy(p, a, 24, 40);
    next.copy(p, 24);
    p[43] = left - 1;
    p[7] -= 1;
  }
  assert.equal(p.subarray(24, 40).toString('hex'), Buffer.from(addr('2001:db8:2::7')).toString('hex'));
  assert.ok(ahInput(sa, p, { mode: 'transport' }).ok, 'verifies at the final destination');
  assert.deepEqual(ahInput(sa, sent, { mode: 'transport' }), { ok: false, reason: 'icv' }, 'but not as sent');
});

test('inbound drops: malformed AH lengths, wrong SPI, not AH, fragments, truncation, tunnel policy, ESP SAs', () => {
  const sa = ahSA(AUTHS[2]);
  const p = out(sa, samplePackets()[0].packet, 'tunnel');
  const edit = (f: (b: Buffer) => void) => {
    const b = Buffer.from(p);
    f(b);
    refreshIPv4Checksum(b);
    return b;
  };
  assert.deepEqual(ahInput(sa, edit((b) => { b[21] = 2; }), { mode: 'tunnel' }), { ok: false, reason: 'malformed' }, 'AH shorter than its ICV');
  assert.deepEqual(ahInput(sa, edit((b) => { b[21] = 200; }), { mode: 'tunnel' }), { ok: false, reason: 'too-short' });
  assert.deepEqual(ahInput({ ...sa, spi: 1 }, p, { mode: 'tunnel' }), { ok: false, reason: 'no-sa' });
  assert.deepEqual(ahInput(sa, samplePackets()[0].packet, { mode: 'tunnel' }), { ok: false, reason: 'no-sa' });
  assert.deepEqual(ahInput(sa, edit((b) => { b.writeUInt16BE(IP_MF, 6); }), { mode: 'tunnel' }), { ok: false, reason: 'fragment' });
  assert.deepEqual(ahInput(sa, edit((b) => { b.set(addr('203.0.113.1'), 12); }), { mode: 'tunnel' }), { ok: false, reason: 'icv' }, 'the outer source is covered');
  assert.deepEqual(ahInput({ ...sa, src: addr('203.0.113.1') }, p, { mode: 'tunnel' }), { ok: false, reason: 'policy' }, 'not from the SA\'s peer');
  const transport = out(sa, samplePackets()[0].packet, 'transport');
  assert.deepEqual(ahInput(sa, transport, { mode: 'tunnel' }), { ok: false, reason: 'bad-next-header' });
  const v6 = out(ahSA(AUTHS[0], V6_SA), samplePackets()[3].packet);
  const odd = Buffer.from(v6);
  odd[41] = 3; // 20 bytes: a multiple of 4 but not of 8
  assert.deepEqual(ahInput(ahSA(AUTHS[0], V6_SA), odd, { mode: 'transport' }), { ok: false, reason: 'malformed' });
  const esp: TransformSA = { ...sa, satype: SADB_SATYPE_ESP, encrypt: 12, encryptKey: bytes(16) };
  assert.deepEqual(ahOutput(esp, samplePackets()[0].packet, { mode: 'tunnel', seq: 1 }), { ok: false, reason: 'bad-sa' });
  assert.deepEqual(ahOutput({ ...sa, auth: SADB_AALG_NONE, authKey: undefined }, samplePackets()[0].packet, { mode: 'tunnel', seq: 1 }), { ok: false, reason: 'bad-sa' });
  assert.deepEqual(ahOutput(sa, samplePackets()[0].packet, { mode: 'tunnel', seq: 0 }), { ok: false, reason: 'seq-overflow' });
});

test('ESN: the high bits enter the ICV; the receiver finds them from its window', () => {
  const sa = ahSA(AUTHS[4], { esn: true });
  const rx = new ReplayWindow(64, true);
  const pkt = samplePackets()[1].packet;
  for (const [seqHi, seq] of [[0, 1], [0, 0x80000000], [0, 0xffffffff], [1, 3], [0, 0xfffffffe], [1, 1]]) {
    const r = ahOutput(sa, pkt, { mode: 'tunnel', seq, seqHi, tunnel: { id: 1 } });
    assert.ok(r.ok);
    const back = ahInput(sa, r.packet, { mode: 'tunnel', replay: rx });
    assert.ok(back.ok && back.seqHi === seqHi && back.packet.equals(pkt), `${seqHi}:${seq}`);
  }
  const r = ahOutput(sa, pkt, { mode: 'tunnel', seq: 9, seqHi: 0 });
  assert.ok(r.ok);
  assert.deepEqual(ahInput(sa, r.packet, { mode: 'tunnel', seqHi: 1 }), { ok: false, reason: 'icv' });
  assert.ok(ahInput(sa, r.packet, { mode: 'tunnel', seqHi: 0 }).ok);
});
