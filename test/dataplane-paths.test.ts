/**
 * The data plane's two paths over live engine tables: two engines ("west" 192.0.2.1 and
 * "east" 192.0.2.2) in one process, SAs and eroutes installed by real PF_KEY messages,
 * packets through west's xmit and east's rcv, compared byte for byte; shunts, ACQUIRE,
 * replay, ICV, inbound policy, lifetimes from traffic, and the counters.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  world, addReq, grpsaReq, addflowReq, hdrReq, lifetime, saExt, type World, type Client,
} from './engine-helpers.js';
import {
  SADB_SATYPE_ESP, SADB_SATYPE_AH, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_INT, SADB_REGISTER, SADB_ACQUIRE,
  SADB_EXPIRE, SADB_X_SAFLAGS_INFLOW, SPI_PASS, SPI_DROP, SPI_REJECT, SPI_HOLD, SPI_TRAP,
  IPPROTO_ESP, IPPROTO_AH, IPPROTO_IPIP, SADB_SASTATE_DYING, ESPINUDP_WITH_NON_ESP, SADB_X_NAT_T_NEW_MAPPING,
  SADB_X_SATYPE_COMP, SADB_X_CALG_DEFLATE, IPPROTO_COMP, SADB_X_EALG_AES_GCM_ICV16,
} from '../src/wire/index.js';
import {
  xmit, pieceOptions, rcv, dataplaneCounters, buildIPv4Header, refreshTransportChecksum, parseIp, internetChecksum,
  IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, buildIPv6Header, pseudoHeaderSum, espInput, toTransformSA,
} from '../src/dataplane/index.js';
import { parseIPv6 } from '../src/wire/index.js';
import { WarmPaths, warmUp } from '../src/dataplane/warmup.js';
import { espCrypto } from '../src/dataplane/index.js';

const W = '192.0.2.1';
const E = '192.0.2.2';

function ipv4(b: string): Uint8Array {
  return Uint8Array.from(b.split('.').map(Number));
}

/** A UDP packet src → dst with `n` payload bytes (checksum right). */
function udpPacket(src: string, dst: string, n = 72, id = 0x1234): Buffer {
  const udp = Buffer.alloc(8 + n);
  udp.writeUInt16BE(5000, 0);
  udp.writeUInt16BE(6000, 2);
  udp.writeUInt16BE(8 + n, 4);
  for (let i = 0; i < n; i++) udp[8 + i] = (i * 7 + 3) & 0xff;
  const h = buildIPv4Header({ tos: 0x10, id, flags: 0x4000, ttl: 63, protocol: IPPROTO_UDP, src: ipv4(src), dst: ipv4(dst), payloadLength: udp.length });
  const p = Buffer.concat([h, udp]);
  assert.ok(refreshTransportChecksum(p));
  return p;
}

interface Pair { west: World; east: World; wc: Client; ec: Client }

function pair(): Pair {
  const west = world({ localAddresses: () => [W] });
  const east = world({ localAddresses: () => [E] });
  return { west, east, wc: west.client(), ec: east.client() };
}

/** Both sides: tun 0x200 + esp 0x100 grouped (W → E), west's eroute 10.1/16 → 10.2/16 to the tun SA. */
function espTunnel(p: Pair, espExtra = {}): void {
  for (const c of [p.wc, p.ec]) {
    c.ok(addReq({ spi: 0x200, satype: SADB_X_SATYPE_IPIP, src: W, dst: E }), 'ADD tun');
    c.ok(addReq({ spi: 0x100, src: W, dst: E, extra: c === p.wc ? espExtra : {} }), 'ADD esp');
    c.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, dst: E }, { satype: SADB_SATYPE_ESP, spi: 0x100, dst: E }), 'GRPSA');
  }
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW');
  p.wc.raw();
  p.ec.raw();
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('ESP tunnel (tun + esp grouped): west xmit → east rcv gives the inner packet byte for byte', () => {
  const p = pair();
  espTunnel(p);
  // The group is built as KLIPS does: outbound tun → esp, inbound esp → tun.
  assert.equal(p.west.engine.sadb.get({ proto: IPPROTO_IPIP, spi: 0x200, dst: E })!.next!.said.proto, IPPROTO_ESP);
  assert.equal(p.east.engine.sadb.get({ proto: IPPROTO_ESP, spi: 0x100, dst: E })!.next!.said.proto, IPPROTO_IPIP);
  for (let i = 1; i <= 3; i++) {
    const inner = udpPacket('10.1.0.5', '10.2.0.7', 72 + i, 0x1000 + i);
    const x = xmit(p.west.engine, inner);
    assert.ok(x.ok && x.action === 'ipsec', JSON.stringify(x));
    assert.equal(x.out.dst, E);
    assert.deepEqual(x.sas.map((s) => s.proto), [IPPROTO_IPIP, IPPROTO_ESP]);
    const outer = parseIp(x.out.packet);
    assert.ok(outer.ok);
    assert.equal(outer.ip.protocol, IPPROTO_ESP);
    assert.equal(hex(outer.ip.src), hex(ipv4(W)));
    assert.equal(outer.ip.bytes.readUInt32BE(20), 0x100, 'SPI');
    assert.equal(outer.ip.bytes.readUInt32BE(24), i, 'sequence number advances per packet');
    const r = rcv(p.east.engine, x.out.packet);
    assert.ok(r.ok && r.kind === 'ipsec', JSON.stringify(r));
    assert.equal(hex(r.packet), hex(inner));
    assert.deepEqual(r.sas.map((s) => s.proto), [IPPROTO_ESP, IPPROTO_IPIP]);
  }
  // Traffic counted on every SA of both chains, and on the eroute.
  const wEsp = p.west.engine.sadb.get({ proto: IPPROTO_ESP, spi: 0x100, dst: E })!;
  const eTun = p.east.engine.sadb.get({ proto: IPPROTO_IPIP, spi: 0x200, dst: E })!;
  assert.equal(wEsp.current.packets, 3);
  assert.equal(eTun.current.packets, 3);
  // 20 outer + (20 + 8 + 73..75) inner: 121 + 122 + 123.
  assert.equal(eTun.current.bytes, 366);
  assert.equal([...p.west.engine.spd.entries()][0].packets, 3);
  assert.deepEqual(dataplaneCounters(p.west.engine).xmit, { packets: 3, ipsec: 3, passed: 0, dropped: 0, drops: {} });
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv, { packets: 3, ipsec: 3, passed: 0, dropped: 0, drops: {} });
});

test('ESP transport and AH transport: byte-identical round trips', () => {
  for (const [satype, proto] of [[SADB_SATYPE_ESP, IPPROTO_ESP], [SADB_SATYPE_AH, IPPROTO_AH]] as const) {
    const p = pair();
    for (const c of [p.wc, p.ec]) c.ok(addReq({ spi: 0x300, satype, src: W, dst: E }), 'ADD');
    p.wc.ok(addflowReq({ satype, spi: 0x300, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW');
    const inner = udpPacket(W, E, 100);
    const x = xmit(p.west.engine, inner);
    assert.ok(x.ok && x.action === 'ipsec', JSON.stringify(x));
    const outer = parseIp(x.out.packet);
    assert.ok(outer.ok);
    assert.equal(outer.ip.protocol, proto);
    const r = rcv(p.east.engine, x.out.packet);
    assert.ok(r.ok && r.kind === 'ipsec', `${proto}: ${JSON.stringify(r)}`);
    assert.equal(hex(r.packet), hex(inner), `protocol ${proto}`);
    assert.deepEqual(r.sas, [{ proto, spi: 0x300, dst: E }]);
  }
});

test('shunts: no eroute, %pass, %drop, %reject (with ICMP 3/13), %hold', () => {
  const p = pair();
  const shunts: Array<[number, string]> = [[SPI_PASS, '10.9.1.0'], [SPI_DROP, '10.9.2.0'], [SPI_REJECT, '10.9.3.0'], [SPI_HOLD, '10.9.4.0']];
  for (const [spi, dst] of shunts) {
    p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi, src: '10.1.0.0', srcMask: '255.255.0.0', dst, dstMask: '255.255.255.0' }), 'ADDFLOW shunt');
  }
  const e = p.west.engine;
  const none = xmit(e, udpPacket('10.1.0.5', '10.8.0.1'));
  assert.deepEqual(none, { ok: false, reason: 'no-eroute' });
  const passIn = udpPacket('10.1.0.5', '10.9.1.1');
  const pass = xmit(e, passIn);
  assert.ok(pass.ok && pass.action === 'pass');
  assert.equal(hex(pass.out.packet), hex(passIn));
  assert.equal(pass.out.dst, '10.9.1.1');
  const dropped = xmit(e, udpPacket('10.1.0.5', '10.9.2.1'));
  assert.equal(!dropped.ok && dropped.reason, 'shunt-drop');
  const rejIn = udpPacket('10.1.0.5', '10.9.3.1');
  const rej = xmit(e, rejIn);
  assert.ok(!rej.ok && rej.reason === 'shunt-reject' && rej.icmp);
  const icmp = parseIp(rej.icmp!);
  assert.ok(icmp.ok);
  assert.equal(icmp.ip.protocol, IPPROTO_ICMP);
  assert.equal(hex(icmp.ip.src), hex(ipv4('10.9.3.1')));
  assert.equal(hex(icmp.ip.dst), hex(ipv4('10.1.0.5')));
  const body = icmp.ip.bytes.subarray(20);
  assert.deepEqual([body[0], body[1]], [3, 13]);
  assert.equal(internetChecksum(body, 0, body.length), 0);
  assert.equal(hex(body.subarray(8)), hex(rejIn.subarray(0, 28)), 'the offending header and 8 bytes');
  const h1 = udpPacket('10.1.0.5', '10.9.4.1', 10, 1);
  const h2 = udpPacket('10.1.0.5', '10.9.4.1', 10, 2);
  assert.equal((xmit(e, h1) as { reason: string }).reason, 'hold');
  assert.equal((xmit(e, h2) as { reason: string }).reason, 'hold');
  const hold = [...e.spd.entries()].find((x) => x.said.spi === SPI_HOLD)!;
  assert.equal(hex(hold.held!), hex(h2), 'the last packet is kept');
  assert.deepEqual(dataplaneCounters(e).xmit, {
    packets: 6, ipsec: 0, passed: 1, dropped: 5,
    drops: { 'no-eroute': 1, 'shunt-drop': 1, 'shunt-reject': 1, hold: 2 },
  });
  assert.equal(dataplaneCounters(e).icmpSent, 1);
});

test('%trap: one SADB_ACQUIRE to the registered socket, the packet held on the new %hold', () => {
  const p = pair();
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_TRAP, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW trap');
  const pluto = p.west.client();
  pluto.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP), 'REGISTER');
  pluto.read();
  p.wc.read();
  const a = udpPacket('10.1.0.5', '10.2.0.7', 20, 1);
  const b = udpPacket('10.1.0.5', '10.2.0.7', 20, 2);
  const ra = xmit(p.west.engine, a);
  assert.ok(!ra.ok && ra.reason === 'trap' && typeof ra.acquireSeq === 'number');
  const rb = xmit(p.west.engine, b);
  assert.ok(!rb.ok && rb.reason === 'hold', JSON.stringify(rb));
  const msgs = pluto.read();
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0].header.type, SADB_ACQUIRE);
  assert.equal(msgs[0].header.seq, ra.acquireSeq);
  assert.equal(msgs[0].addressSrc!.addr, '10.1.0.5');
  assert.equal(msgs[0].addressDst!.addr, '10.2.0.7');
  assert.equal(p.west.engine.stats.acquires, 1);
  const hold = [...p.west.engine.spd.entries()].find((x) => x.said.spi === SPI_HOLD)!;
  assert.equal(hold.flow.srcPrefix, 32);
  assert.equal(hex(hold.held!), hex(b));
  assert.deepEqual(dataplaneCounters(p.west.engine).xmit.drops, { trap: 1, hold: 1 });
});

test('%trap with nobody registered: no ACQUIRE, dropped as no-listener', () => {
  const p = pair();
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_TRAP, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW trap');
  const r = xmit(p.west.engine, udpPacket('10.1.0.5', '10.2.0.7'));
  assert.equal(!r.ok && r.reason, 'no-listener');
  assert.equal(p.west.engine.stats.acquires, 0);
});

test('inbound: replayed packet → replay, tampered → icv, unknown SPI → no-sa; the window does not move on a bad ICV', () => {
  const p = pair();
  espTunnel(p);
  const x1 = xmit(p.west.engine, udpPacket('10.1.0.5', '10.2.0.7'));
  const x2 = xmit(p.west.engine, udpPacket('10.1.0.5', '10.2.0.7', 50));
  assert.ok(x1.ok && x2.ok);
  const bad = Buffer.from(x2.out.packet);
  bad[bad.length - 20] ^= 1;
  assert.deepEqual(rcv(p.east.engine, bad), { ok: false, reason: 'icv', said: { proto: IPPROTO_ESP, spi: 0x100, dst: E } });
  assert.ok(rcv(p.east.engine, x1.out.packet).ok);
  assert.equal((rcv(p.east.engine, x1.out.packet) as { reason: string }).reason, 'replay');
  assert.ok(rcv(p.east.engine, x2.out.packet).ok, 'seq 2 still accepted after the tampered copy');
  const other = Buffer.from(x1.out.packet);
  other.writeUInt32BE(0x999, 20);
  assert.equal((rcv(p.east.engine, other) as { reason: string }).reason, 'no-sa');
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv, {
    packets: 5, ipsec: 2, passed: 0, dropped: 3, drops: { icv: 1, replay: 1, 'no-sa': 1 },
  });
  // Only authenticated packets count on the SA.
  assert.equal(p.east.engine.sadb.get({ proto: IPPROTO_ESP, spi: 0x100, dst: E })!.current.packets, 2);
});

test('inbound policy (INFLOW on the IPIP SA): an inner packet outside the flows is dropped as policy', () => {
  const p = pair();
  espTunnel(p);
  p.ec.ok(addflowReq({
    satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E, flags: SADB_X_SAFLAGS_INFLOW,
    src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0',
  }), 'ADDFLOW INFLOW');
  // West also sends 10.3/16 into the same tunnel; east's policy does not cover it.
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E, src: '10.3.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW 10.3');
  const good = udpPacket('10.1.0.5', '10.2.0.7');
  const xg = xmit(p.west.engine, good);
  assert.ok(xg.ok);
  const rg = rcv(p.east.engine, xg.out.packet);
  assert.ok(rg.ok && hex(rg.packet) === hex(good));
  const xb = xmit(p.west.engine, udpPacket('10.3.0.5', '10.2.0.7'));
  assert.ok(xb.ok);
  assert.deepEqual(rcv(p.east.engine, xb.out.packet), { ok: false, reason: 'policy', said: { proto: IPPROTO_IPIP, spi: 0x200, dst: E } });
  // ESP without the IPIP its inbound chain (esp → tun) expects is incomplete policy (KLIPS).
  p.wc.ok(addflowReq({ satype: SADB_SATYPE_ESP, spi: 0x100, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW host');
  const xt = xmit(p.west.engine, udpPacket(W, E));
  assert.ok(xt.ok);
  assert.deepEqual(xt.sas.map((s) => s.proto), [IPPROTO_ESP]);
  assert.deepEqual(rcv(p.east.engine, xt.out.packet), { ok: false, reason: 'policy', said: { proto: IPPROTO_ESP, spi: 0x100, dst: E } });
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv.drops, { policy: 2 });
});

test('a byte lifetime fires soft then hard EXPIRE from traffic; then the eroute sends nothing unprotected', () => {
  const p = pair();
  // Each 100-byte inner packet: IPIP 120, then ESP after the outer header: 20 + 8 + 16 (IV) + 112 (100 + 2, padded) + 12 (ICV) = 168 bytes.
  espTunnel(p, { lifetimeSoft: lifetime({ bytes: 336 }), lifetimeHard: lifetime({ bytes: 504 }) });
  const listener = p.west.client();
  const inner = udpPacket('10.1.0.5', '10.2.0.7', 72);
  assert.equal(inner.length, 100);
  const said = { proto: IPPROTO_ESP, spi: 0x100, dst: E };
  const x1 = xmit(p.west.engine, inner);
  assert.ok(x1.ok);
  assert.equal(x1.out.packet.length, 168);
  listener.none('no expiry after 168 bytes');
  assert.ok(xmit(p.west.engine, inner).ok);
  const soft = listener.read();
  assert.equal(soft.length, 1);
  assert.equal(soft[0].header.type, SADB_EXPIRE);
  assert.ok(soft[0].lifetimeSoft && !soft[0].lifetimeHard);
  assert.equal(soft[0].lifetimeCurrent!.bytes, 336n);
  assert.equal(p.west.engine.sadb.get(said)!.state, SADB_SASTATE_DYING);
  assert.ok(xmit(p.west.engine, inner).ok, 'the packet that reaches the hard limit still goes out');
  const hard = listener.read();
  assert.equal(hard.length, 1);
  assert.ok(hard[0].lifetimeHard && !hard[0].lifetimeSoft);
  assert.equal(hard[0].lifetimeCurrent!.bytes, 504n);
  assert.equal(p.west.engine.sadb.get(said), undefined);
  // The tun SA is still there, but the table spliced the ESP SA out of its group: the
  // eroute, once ESP-protected, never sends bare IPIP.
  assert.deepEqual(xmit(p.west.engine, inner), { ok: false, reason: 'no-eroute-sa', eroute: [...p.west.engine.spd.entries()][0] });
  assert.deepEqual(dataplaneCounters(p.west.engine).xmit, { packets: 4, ipsec: 3, passed: 0, dropped: 1, drops: { 'no-eroute-sa': 1 } });
  assert.equal(p.west.engine.stats.expires, 2);
});

test('NAT-T: ESP in UDP round trip; an authenticated packet from a new address/port sends NAT_T_NEW_MAPPING once, a forged one none', () => {
  const p = pair();
  const natT = { natTType: { type: ESPINUDP_WITH_NON_ESP }, natTSport: { port: 4500 }, natTDport: { port: 4500 } };
  for (const c of [p.wc, p.ec]) c.ok(addReq({ spi: 0x600, src: W, dst: E, extra: natT }), 'ADD esp natT');
  p.wc.ok(addflowReq({ satype: SADB_SATYPE_ESP, spi: 0x600, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW');
  const pluto = p.east.client();
  pluto.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP), 'REGISTER');
  pluto.read();
  const inner = udpPacket(W, E, 64);
  const x1 = xmit(p.west.engine, inner);
  assert.ok(x1.ok);
  assert.equal(x1.out.natTPort, 4500);
  const o = parseIp(x1.out.packet);
  assert.ok(o.ok && o.ip.protocol === IPPROTO_UDP);
  // From where the SA says the peer is: no new mapping.
  const r1 = rcv(p.east.engine, x1.out.packet);
  assert.ok(r1.ok && r1.kind === 'ipsec' && hex(r1.packet) === hex(inner), JSON.stringify(r1));
  pluto.none('same address and port');
  // A forged packet from elsewhere moves nothing.
  const x2 = xmit(p.west.engine, inner);
  assert.ok(x2.ok);
  const forged = Buffer.from(x2.out.packet);
  forged[forged.length - 1] ^= 0x80;
  assert.equal((rcv(p.east.engine, forged, { addr: '198.51.100.9', port: 1024 }) as { reason: string }).reason, 'icv');
  pluto.none('forged packet');
  // The real one from behind a NAT: one mapping, then the SA knows the peer's new place.
  const r2 = rcv(p.east.engine, x2.out.packet, { addr: '198.51.100.9', port: 1024 });
  assert.ok(r2.ok && r2.kind === 'ipsec' && hex(r2.packet) === hex(inner));
  const m = pluto.read();
  assert.equal(m.length, 1);
  assert.equal(m[0].header.type, SADB_X_NAT_T_NEW_MAPPING);
  assert.equal(m[0].addressSrc!.addr, '198.51.100.9');
  assert.equal(m[0].natTSport!.port, 1024);
  const x3 = xmit(p.west.engine, inner);
  assert.ok(x3.ok && rcv(p.east.engine, x3.out.packet, { addr: '198.51.100.9', port: 1024 }).ok);
  pluto.none('known mapping');
  assert.equal(dataplaneCounters(p.east.engine).natTMappings, 1);
  // IKE on the NAT-T port (non-ESP marker) is handed on, not dropped.
  const ike = Buffer.concat([buildIPv4Header({ tos: 0, id: 1, flags: 0, ttl: 64, protocol: IPPROTO_UDP, src: ipv4(W), dst: ipv4(E), payloadLength: 8 + 4 + 28 }), Buffer.from([0x11, 0x94, 0x11, 0x94, 0, 40, 0, 0]), Buffer.alloc(4), Buffer.alloc(28, 1)]);
  const ri = rcv(p.east.engine, ike);
  assert.ok(ri.ok && ri.kind === 'ike');
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv, { packets: 5, ipsec: 3, passed: 1, dropped: 1, drops: { icv: 1 } });
});

test('IPv6: ESP tunnel (tun + esp) round trip byte for byte, and %reject answers with ICMPv6 1/1', () => {
  const W6 = '2001:db8::1';
  const E6 = '2001:db8::2';
  const west = world({ localAddresses: () => [W6] });
  const east = world({ localAddresses: () => [E6] });
  const wc = west.client();
  const ec = east.client();
  for (const c of [wc, ec]) {
    c.ok(addReq({ spi: 0x200, satype: SADB_X_SATYPE_IPIP, src: W6, dst: E6 }), 'ADD tun');
    c.ok(addReq({ spi: 0x100, src: W6, dst: E6 }), 'ADD esp');
    c.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, dst: E6 }, { satype: SADB_SATYPE_ESP, spi: 0x100, dst: E6 }), 'GRPSA');
  }
  const m64 = 'ffff:ffff:ffff:ffff::';
  wc.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E6, src: '2001:db8:1::', srcMask: m64, dst: '2001:db8:2::', dstMask: m64 }), 'ADDFLOW');
  wc.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_REJECT, src: '2001:db8:1::', srcMask: m64, dst: '2001:db8:3::', dstMask: m64 }), 'ADDFLOW reject');
  const v6 = (src: string, dst: string) => {
    const udp = Buffer.alloc(8 + 40, 0x42);
    udp.writeUInt16BE(5000, 0);
    udp.writeUInt16BE(6000, 2);
    udp.writeUInt16BE(udp.length, 4);
    const h = buildIPv6Header({ trafficClass: 0, flowLabel: 7, hopLimit: 60, nextHeader: IPPROTO_UDP, src: parseIPv6(src)!, dst: parseIPv6(dst)!, payloadLength: udp.length });
    const pk = Buffer.concat([h, udp]);
    assert.ok(refreshTransportChecksum(pk));
    return pk;
  };
  const inner = v6('2001:db8:1::5', '2001:db8:2::7');
  const x = xmit(west.engine, inner);
  assert.ok(x.ok && x.action === 'ipsec', JSON.stringify(x));
  assert.equal(x.out.dst, E6);
  const r = rcv(east.engine, x.out.packet);
  assert.ok(r.ok && r.kind === 'ipsec', JSON.stringify(r));
  assert.equal(hex(r.packet), hex(inner));
  const rejIn = v6('2001:db8:1::5', '2001:db8:3::9');
  const rej = xmit(west.engine, rejIn);
  assert.ok(!rej.ok && rej.reason === 'shunt-reject' && rej.icmp);
  const icmp = parseIp(rej.icmp!);
  assert.ok(icmp.ok && icmp.ip.protocol === IPPROTO_ICMPV6);
  assert.equal(hex(icmp.ip.dst), hex(parseIPv6('2001:db8:1::5')!));
  const body = icmp.ip.bytes.subarray(40);
  assert.deepEqual([body[0], body[1]], [1, 1]);
  assert.equal(internetChecksum(body, 0, body.length, pseudoHeaderSum(icmp.ip, IPPROTO_ICMPV6, body.length)), 0);
  assert.equal(hex(body.subarray(8)), hex(rejIn));
});

/**
 * Both sides: tun 0x200, comp 0x4000 (deflate), esp 0x100, grouped as KLIPS groups them:
 * west's outbound chain tun → comp → esp, east's inbound chain esp → comp → tun (X_GRPSA
 * of an inbound pair links it in unwrapping order). West's eroute 10.1/16 → 10.2/16.
 */
function compTunnel(p: Pair): void {
  for (const c of [p.wc, p.ec]) {
    c.ok(addReq({ spi: 0x200, satype: SADB_X_SATYPE_IPIP, src: W, dst: E }), 'ADD tun');
    c.ok(addReq({ spi: 0x4000, satype: SADB_X_SATYPE_COMP, src: W, dst: E, encrypt: SADB_X_CALG_DEFLATE, replay: 0 }), 'ADD comp');
    c.ok(addReq({ spi: 0x100, src: W, dst: E }), 'ADD esp');
    c.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, dst: E }, { satype: SADB_X_SATYPE_COMP, spi: 0x4000, dst: E }), 'GRPSA tun comp');
    c.ok(grpsaReq({ satype: SADB_X_SATYPE_COMP, spi: 0x4000, dst: E }, { satype: SADB_SATYPE_ESP, spi: 0x100, dst: E }), 'GRPSA comp esp');
  }
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW');
  p.wc.raw();
  p.ec.raw();
}

/** A UDP packet whose payload is `payload` (checksum right). */
function udpWith(src: string, dst: string, payload: Buffer): Buffer {
  const udp = Buffer.concat([Buffer.alloc(8), payload]);
  udp.writeUInt16BE(5000, 0);
  udp.writeUInt16BE(6000, 2);
  udp.writeUInt16BE(udp.length, 4);
  const h = buildIPv4Header({ tos: 0, id: 0x4242, flags: 0, ttl: 64, protocol: IPPROTO_UDP, src: ipv4(src), dst: ipv4(dst), payloadLength: udp.length });
  const pk = Buffer.concat([h, udp]);
  assert.ok(refreshTransportChecksum(pk));
  return pk;
}

test('IPCOMP in a tunnel (tun → comp → esp out, esp → comp → tun in): compressible goes compressed, small and incompressible go plain, all come back equal', () => {
  const p = pair();
  compTunnel(p);
  const chainOf = (e: World, first: { proto: number; spi: number }) => {
    const out: number[] = [];
    for (let s = e.engine.sadb.get({ ...first, dst: E }); s; s = s.next) out.push(s.said.proto);
    return out;
  };
  assert.deepEqual(chainOf(p.west, { proto: IPPROTO_IPIP, spi: 0x200 }), [IPPROTO_IPIP, IPPROTO_COMP, IPPROTO_ESP]);
  assert.deepEqual(chainOf(p.east, { proto: IPPROTO_ESP, spi: 0x100 }), [IPPROTO_ESP, IPPROTO_COMP, IPPROTO_IPIP]);

  const texty = udpWith('10.1.0.5', '10.2.0.7', Buffer.from('klips '.repeat(100)));
  const small = udpWith('10.1.0.5', '10.2.0.7', Buffer.from('tiny'));
  // xorshift32 bytes: deflate cannot save the 36 bytes IPCOMP needs.
  let x32 = 0x2545f491;
  const noise = udpWith('10.1.0.5', '10.2.0.7', Buffer.from(Array.from({ length: 400 }, () => {
    x32 ^= x32 << 13; x32 ^= x32 >>> 17; x32 ^= x32 << 5;
    return x32 & 0xff;
  })));
  const cases: Array<[string, Buffer, boolean]> = [['compressible', texty, true], ['small', small, false], ['incompressible', noise, false]];
  for (const [what, inner, compressed] of cases) {
    const x = xmit(p.west.engine, inner);
    assert.ok(x.ok && x.action === 'ipsec', `${what}: ${JSON.stringify(x)}`);
    assert.deepEqual(x.sas.map((s) => s.proto), [IPPROTO_IPIP, IPPROTO_COMP, IPPROTO_ESP], what);
    // Read the ESP's next header back with east's key: IPCOMP (108) when compressed, else IPIP (4).
    const esp = p.east.engine.sadb.get({ proto: IPPROTO_ESP, spi: 0x100, dst: E })!;
    const opened = espInput(toTransformSA(esp), x.out.packet, { mode: 'transport' });
    assert.ok(opened.ok, what);
    assert.equal(opened.nextHeader, compressed ? IPPROTO_COMP : IPPROTO_IPIP, what);
    if (compressed) assert.ok(x.out.packet.length < inner.length, `${what}: ${x.out.packet.length} < ${inner.length}`);
    const r = rcv(p.east.engine, x.out.packet);
    assert.ok(r.ok && r.kind === 'ipsec', `${what}: ${JSON.stringify(r)}`);
    assert.equal(hex(r.packet), hex(inner), what);
    assert.deepEqual(r.sas.map((s) => s.proto), compressed ? [IPPROTO_ESP, IPPROTO_COMP, IPPROTO_IPIP] : [IPPROTO_ESP, IPPROTO_IPIP], what);
  }
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv, { packets: 3, ipsec: 3, passed: 0, dropped: 0, drops: {} });
  // The IPCOMP SA counts only the packet it decompressed; the tun SA all three.
  assert.equal(p.east.engine.sadb.get({ proto: IPPROTO_COMP, spi: 0x4000, dst: E })!.current.packets, 1);
  assert.equal(p.east.engine.sadb.get({ proto: IPPROTO_IPIP, spi: 0x200, dst: E })!.current.packets, 3);
});

test('IPCOMP in transport mode (comp → esp out, esp → comp in): compressed and plain both accepted', () => {
  const p = pair();
  for (const c of [p.wc, p.ec]) {
    c.ok(addReq({ spi: 0x4001, satype: SADB_X_SATYPE_COMP, src: W, dst: E, encrypt: SADB_X_CALG_DEFLATE, replay: 0 }), 'ADD comp');
    c.ok(addReq({ spi: 0x101, src: W, dst: E }), 'ADD esp');
    c.ok(grpsaReq({ satype: SADB_X_SATYPE_COMP, spi: 0x4001, dst: E }, { satype: SADB_SATYPE_ESP, spi: 0x101, dst: E }), 'GRPSA comp esp');
  }
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_COMP, spi: 0x4001, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW');
  for (const [payload, sas] of [
    [Buffer.from('compress me '.repeat(40)), [IPPROTO_ESP, IPPROTO_COMP]],
    [Buffer.from('short'), [IPPROTO_ESP]],
  ] as const) {
    const inner = udpWith(W, E, payload);
    const x = xmit(p.west.engine, inner);
    assert.ok(x.ok && x.action === 'ipsec', JSON.stringify(x));
    const r = rcv(p.east.engine, x.out.packet);
    assert.ok(r.ok && r.kind === 'ipsec', JSON.stringify(r));
    assert.equal(hex(r.packet), hex(inner));
    assert.deepEqual(r.sas.map((s) => s.proto), sas);
  }
});

test('warm-up: every packet of every suite crosses the private engines, and nothing of them reaches a real engine', () => {
  const p = pair();
  espTunnel(p);
  const before = JSON.stringify(dataplaneCounters(p.west.engine));
  const sas = p.west.engine.sadb.size;
  // 3 suites × (1500/8 rounds × (8 segments + 1 ACK)).
  assert.equal(warmUp(), 3 * Math.ceil(1500 / 8) * 9);
  assert.equal(warmUp(16), 3 * 2 * 9);
  // Without offloads: eight TUN reads of a full-size segment where one super-segment was.
  assert.equal(warmUp(16, { offload: false }), 3 * 2 * 9);
  // The keep-warm tick: one ACK of each suite, through the private carrier, tick after tick.
  const w = new WarmPaths({ offload: true });
  try {
    for (let i = 0; i < 50; i++) assert.equal(w.tick(), 3);
  } finally {
    w.close();
  }
  assert.equal(JSON.stringify(dataplaneCounters(p.west.engine)), before);
  assert.equal(p.west.engine.sadb.size, sas);
});

test('rcv in place (the runtime\'s receive slots): the same verdicts, packets and counters as a copying rcv, for ESP and NAT-T ESP in UDP', () => {
  const natT = { natTType: { type: ESPINUDP_WITH_NON_ESP }, natTSport: { port: 4500 }, natTDport: { port: 4500 } };
  // Two receivers with the same SAs (the keys are fixed patterns): one copies, one works in place.
  const a = pair();
  const b = pair();
  for (const p of [a, b]) {
    espTunnel(p);
    for (const c of [p.wc, p.ec]) c.ok(addReq({ spi: 0x600, src: W, dst: E, extra: natT }), 'ADD esp natT');
    p.wc.ok(addflowReq({ satype: SADB_SATYPE_ESP, spi: 0x600, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW');
    p.wc.raw();
  }
  const inners = [udpPacket('10.1.0.5', '10.2.0.7', 1300), udpPacket('10.1.0.5', '10.2.0.7', 3), udpPacket(W, E, 700), udpPacket(W, E, 1)];
  for (const [i, inner] of inners.entries()) {
    const x = xmit(a.west.engine, inner);
    assert.ok(x.ok);
    const wire = Buffer.from(x.out.packet);
    const copying = rcv(a.east.engine, Buffer.from(wire));
    const slot = Buffer.concat([Buffer.alloc(16), wire]).subarray(16);
    const inPlace = rcv(b.east.engine, slot, undefined, { inPlace: true });
    assert.ok(copying.ok && inPlace.ok && copying.kind === 'ipsec' && inPlace.kind === 'ipsec', `packet ${i}`);
    assert.equal(hex(inPlace.packet), hex(inner), `packet ${i}: the inner packet`);
    assert.equal(hex(copying.packet), hex(inner));
    assert.deepEqual(inPlace.sas, copying.sas);
    // In place means in the slot (libcrypto's EVP; node:crypto's decipher always gives a new buffer).
    if (espCrypto() === 'evp') assert.equal(inPlace.packet.buffer, slot.buffer, `packet ${i}: decrypted where it lay`);
  }
  // A corrupted one fails the same way.
  const x = xmit(a.west.engine, inners[0]);
  assert.ok(x.ok);
  const bad = Buffer.from(x.out.packet);
  bad[bad.length - 5] ^= 1;
  const r1 = rcv(a.east.engine, Buffer.from(bad));
  const r2 = rcv(b.east.engine, Buffer.from(bad), undefined, { inPlace: true });
  assert.deepEqual([r1.ok, (r1 as { reason: string }).reason], [false, 'icv']);
  assert.deepEqual([r2.ok, (r2 as { reason: string }).reason], [false, 'icv']);
  assert.deepEqual(dataplaneCounters(b.east.engine).rcv, dataplaneCounters(a.east.engine).rcv);
});

test('a tun + esp group goes out in one step: the same bytes, counts and lifetimes as the two SAs one after the other', () => {
  const gcm = { sa: saExt(0x100, { auth: 0, encrypt: SADB_X_EALG_AES_GCM_ICV16, replay: 32 }), keyAuth: undefined, keyEncrypt: { bits: 160, key: Uint8Array.from({ length: 20 }, (_, i) => i) } };
  const one = pair();
  const two = pair();
  espTunnel(one, gcm);
  espTunnel(two, gcm);
  const steps: string[] = [];
  for (const n of [40, 1300, 3]) {
    const inner = udpPacket('10.1.0.5', '10.2.0.7', n);
    const a = xmit(one.west.engine, inner);
    // A trace sees each SA's step, so it takes the two-step path.
    const b = xmit(two.west.engine, inner, { trace: (s) => steps.push(s.step) });
    assert.ok(a.ok && b.ok && a.action === 'ipsec' && b.action === 'ipsec');
    assert.deepEqual(a.sas, b.sas);
    const [pa, pb] = [Buffer.from(a.out.packet), Buffer.from(b.out.packet)];
    // The outer IPv4 id is random: equal the rest (id and header checksum left out).
    for (const p of [pa, pb]) p.fill(0, 4, 6).fill(0, 10, 12);
    assert.equal(hex(pa), hex(pb), `${n}-byte payload`);
  }
  assert.ok(steps.filter((s) => s === 'sa').length === 6, 'the traced path took both SAs, one at a time');
  for (const said of [{ proto: IPPROTO_IPIP, spi: 0x200, dst: E }, { proto: IPPROTO_ESP, spi: 0x100, dst: E }]) {
    assert.deepEqual(one.west.engine.sadb.get(said)!.current, two.west.engine.sadb.get(said)!.current, `${said.proto}: lifetimes`);
  }
  assert.deepEqual(dataplaneCounters(one.west.engine).xmit, dataplaneCounters(two.west.engine).xmit);
});

test('the pieces of one offloaded read (sameFlow) take the first piece\'s route: the same outcomes and counts as routing each, a table change between pieces seen, no other flow\'s route ever taken', () => {
  // Each 100-byte inner packet leaves as 20 + 8 + 16 (IV) + 112 + 12 (ICV) = 168 bytes of ESP: the hard limit falls on the third.
  const limits = { lifetimeHard: lifetime({ bytes: 504 }) };
  const each = pair();
  const pieces = pair();
  espTunnel(each, limits);
  espTunnel(pieces, limits);
  const inner = (i: number) => udpPacket('10.1.0.5', '10.2.0.7', 72, 0x2000 + i);
  const outcome = (x: ReturnType<typeof xmit>, east: World) => {
    if (!x.ok) return x.reason;
    const r = rcv(east.engine, x.out.packet);
    return r.ok && r.kind === 'ipsec' ? `seq ${x.out.packet.readUInt32BE(24)} ${hex(r.packet) === hex(inner(0)) ? 'first' : 'later'}` : `rcv ${r.ok ? r.kind : r.reason}`;
  };
  const a = [0, 1, 2, 3, 4].map((i) => outcome(xmit(each.west.engine, inner(i)), each.east));
  const b = [0, 1, 2, 3, 4].map((i) => outcome(xmit(pieces.west.engine, inner(i), pieceOptions(i)), pieces.east));
  // The third packet reaches the hard limit: the ESP SA is gone, the fourth and fifth find no SA to send with.
  assert.deepEqual(a, ['seq 1 first', 'seq 2 later', 'seq 3 later', 'no-eroute-sa', 'no-eroute-sa']);
  assert.deepEqual(b, a);
  assert.deepEqual(dataplaneCounters(pieces.west.engine).xmit, dataplaneCounters(each.west.engine).xmit);
  assert.equal([...pieces.west.engine.spd.entries()][0].packets, 5, 'the eroute counts every piece');
  assert.equal(pieces.west.engine.sadb.get({ proto: IPPROTO_IPIP, spi: 0x200, dst: E })!.current.packets, 3);

  // A first piece that finds no route leaves nothing for the pieces after it to take.
  const p = pair();
  espTunnel(p);
  assert.ok(xmit(p.west.engine, inner(0), pieceOptions(0)).ok);
  const elsewhere = udpPacket('10.1.0.5', '10.9.0.7', 72);
  assert.deepEqual(xmit(p.west.engine, elsewhere, pieceOptions(0)), { ok: false, reason: 'no-eroute' });
  assert.deepEqual(xmit(p.west.engine, elsewhere, pieceOptions(1)), { ok: false, reason: 'no-eroute' });
  assert.equal([...p.west.engine.spd.entries()][0].packets, 1);
});
