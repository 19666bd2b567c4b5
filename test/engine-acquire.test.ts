/**
 * Kernel ACQUIRE (engine.acquire): nobody listening is EPROTONOSUPPORT; the message a
 * registered ESP socket gets; %trap installs a host-to-host %hold holding the packet,
 * %trapsubnet turns itself into %hold; ADD/UPDATE with the ACQUIRE's seq settle it; and
 * REPLACEFLOW of the hold releases the held packet through onRelease.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, SADB_ACQUIRE, SADB_REGISTER, SADB_X_PCHANGE, SADB_SATYPE_ESP, SADB_SATYPE_AH,
  SADB_X_SATYPE_INT, SADB_X_SAFLAGS_REPLACEFLOW, SPI_TRAP, SPI_TRAPSUBNET, SPI_HOLD,
  IPPROTO_INT, AF_INET, AF_INET6, SADB_SAFLAGS_PFS,
} from '../src/wire/index.js';
import type { Eroute } from '../src/spd/eroute-table.js';
import {
  world, addReq, updateReq, getspiReq, hdrReq, addflowReq, drain, snapshot, assertPfkeyError,
  pkt, espSaid, type World, type Client,
} from './engine-helpers.js';

const SEL = { family: AF_INET, src: '10.0.0.5', dst: '10.0.1.9', proto: 6, sport: 40000, dport: 80 };
const PACKET = Uint8Array.from([0x45, 0, 0, 20, 1, 2, 3, 4]);
const TRAPNET = { src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' };

function setup(opts: { onRelease?: (e: Eroute, p: Uint8Array[]) => void } = {}): { w: World; km: Client; other: Client } {
  const w = world(opts);
  const km = w.client();
  const other = w.client();
  km.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  drain(km, other);
  return { w, km, other };
}

function trap(c: Client, spi: number, f: Partial<typeof TRAPNET> & { proto?: number; dport?: number } = {}) {
  c.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi, ...TRAPNET, ...f }));
}

test('with nobody registered for ESP, acquire() throws EPROTONOSUPPORT and changes nothing', () => {
  const w = world();
  const a = w.client();
  a.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_AH));
  trap(a, SPI_TRAP);
  drain(a);
  const e = w.engine.route(pkt(SEL.src, SEL.dst, 6, SEL.sport, SEL.dport))!;
  assert.equal(e.said.spi, SPI_TRAP);
  const before = snapshot(w.engine);
  assertPfkeyError(() => w.engine.acquire(SEL, e, PACKET), ERRNO.EPROTONOSUPPORT, 'acquire with no ESP listener');
  assert.equal(snapshot(w.engine), before, 'no hold eroute, no pending ACQUIRE');
  a.none('no ACQUIRE went anywhere');
});

test('a socket registered for ESP receives the ACQUIRE: satype ESP, pid 0, seq >= 1, SRC, DST, PROPOSAL', () => {
  const { w, km, other } = setup();
  const seq = w.engine.acquire(SEL);
  assert.ok(seq >= 1);
  const m = km.one('ACQUIRE');
  other.none('not registered');
  assert.equal(m.header.type, SADB_ACQUIRE);
  assert.equal(m.header.satype, SADB_SATYPE_ESP);
  assert.equal(m.header.pid, 0);
  assert.equal(m.header.seq, seq);
  assert.equal(m.header.errno, 0);
  assert.equal(m.addressSrc!.addr, '10.0.0.5');
  assert.equal(m.addressDst!.addr, '10.0.1.9');
  assert.ok(m.proposal!.combs.length >= 1);
  for (const c of m.proposal!.combs) {
    assert.ok(c.encrypt !== 0, 'each comb names an encryption algorithm');
    assert.ok(c.encryptMinbits > 0 && c.encryptMinbits <= c.encryptMaxbits);
    assert.equal(c.flags & SADB_SAFLAGS_PFS, SADB_SAFLAGS_PFS);
  }
  assert.ok(w.engine.pendingAcquires.has(seq));
  assert.deepEqual(w.engine.pendingAcquires.get(seq)!.selector, SEL);
  const seq2 = w.engine.acquire({ ...SEL, family: AF_INET6, src: '2001:db8::5', dst: '2001:db8:1::9' });
  assert.ok(seq2 > seq, 'seq grows');
  const m6 = km.one('IPv6 ACQUIRE');
  assert.equal(m6.addressSrc!.family, AF_INET6);
  assert.equal(m6.addressDst!.addr, '2001:db8:1::9');
  assert.equal(w.engine.stats.acquires, 2);
});

test('%trap: the ACQUIRE carries the packet\'s addresses, a host-to-host %hold eroute holds the packet', () => {
  const { w, km, other } = setup();
  other.ok(hdrReq(SADB_X_PCHANGE, 1));
  other.raw();
  trap(km, SPI_TRAP);
  drain(km);
  other.raw();
  const t = w.engine.route(pkt(SEL.src, SEL.dst, 6, SEL.sport, SEL.dport))!;
  assert.equal(t.said.spi, SPI_TRAP);
  const seq = w.engine.acquire(SEL, t, PACKET);
  const m = km.one('ACQUIRE');
  assert.equal(m.header.seq, seq);
  assert.equal(m.addressSrc!.addr, '10.0.0.5');
  assert.equal(m.addressSrc!.port, 0, 'a subnet trap gives no ports');
  assert.equal(m.addressDst!.proto, 0);
  assert.equal(w.engine.spd.size, 2, 'the trap stays, a hold is added');
  const hold = [...w.engine.spd.entries()].find((e) => e.said.spi === SPI_HOLD)!;
  assert.ok(hold, 'a %hold eroute');
  assert.equal(hold.said.proto, IPPROTO_INT);
  assert.deepEqual(hold.flow, { family: AF_INET, src: '10.0.0.5', srcPrefix: 32, dst: '10.0.1.9', dstPrefix: 32, proto: 0, sport: 0, dport: 0 });
  assert.deepEqual([...hold.held!], [...PACKET]);
  assert.equal(w.engine.route(pkt(SEL.src, SEL.dst, 6, 1, 2)), hold, 'the next packet meets the hold');
  assert.equal(w.engine.route(pkt('10.0.0.6', SEL.dst))!.said.spi, SPI_TRAP, 'other hosts still meet the trap');
  const notices = other.read('pchange').filter((x) => x.header.type === SADB_X_PCHANGE);
  assert.equal(notices.length, 1);
  assert.equal(notices[0].sa!.spi, SPI_HOLD);
  assert.equal(notices[0].sa!.flags, 0);
  // A second packet for the same host: the hold keeps the newest packet (KLIPS er_last).
  const p2 = Uint8Array.from([0x45, 9, 9, 9]);
  w.engine.acquire(SEL, t, p2);
  km.one('second ACQUIRE');
  assert.equal(w.engine.spd.size, 2);
  assert.deepEqual([...hold.held!], [...p2]);
});

test('%trap with a protocol and port makes a port-specific ACQUIRE and hold', () => {
  const { w, km } = setup();
  trap(km, SPI_TRAP, { proto: 6, dport: 80 });
  drain(km);
  const t = w.engine.route(pkt(SEL.src, SEL.dst, 6, SEL.sport, 80))!;
  assert.equal(t.said.spi, SPI_TRAP);
  w.engine.acquire(SEL, t, PACKET);
  const m = km.one('ACQUIRE');
  assert.equal(m.addressSrc!.proto, 6);
  assert.equal(m.addressSrc!.port, SEL.sport);
  assert.equal(m.addressDst!.port, 80);
  const hold = [...w.engine.spd.entries()].find((e) => e.said.spi === SPI_HOLD)!;
  assert.equal(hold.flow.proto, 6);
  assert.equal(hold.flow.dport, 80);
  assert.equal(hold.flow.srcPrefix, 32);
});

test('%trapsubnet: the trap eroute itself becomes %hold with the packet', () => {
  const { w, km, other } = setup();
  other.ok(hdrReq(SADB_X_PCHANGE, 1));
  other.raw();
  trap(km, SPI_TRAPSUBNET);
  drain(km);
  other.raw();
  const t = w.engine.route(pkt(SEL.src, SEL.dst))!;
  assert.equal(t.said.spi, SPI_TRAPSUBNET);
  w.engine.acquire(SEL, t, PACKET);
  km.one('ACQUIRE');
  assert.equal(w.engine.spd.size, 1, 'no new eroute');
  const [e] = [...w.engine.spd.entries()];
  assert.equal(e.said.spi, SPI_HOLD);
  assert.equal(e.flow.srcPrefix, 24, 'the subnet flow is kept');
  assert.deepEqual([...e.held!], [...PACKET]);
  const n = other.read('pchange').filter((x) => x.header.type === SADB_X_PCHANGE);
  assert.equal(n.length, 1);
  assert.equal(n[0].sa!.flags, SADB_X_SAFLAGS_REPLACEFLOW);
  assert.equal(n[0].sa!.spi, SPI_HOLD);
});

test('an ADD or UPDATE carrying the ACQUIRE\'s seq settles it; other seqs do not', () => {
  const { w, km } = setup();
  const s1 = w.engine.acquire(SEL);
  const s2 = w.engine.acquire({ ...SEL, dst: '10.0.1.10' });
  drain(km);
  assert.equal(w.engine.pendingAcquires.size, 2);
  km.ok(addReq({ spi: 0x100, seq: 999_999 }));
  assert.equal(w.engine.pendingAcquires.size, 2, 'an unrelated seq settles nothing');
  km.ok(addReq({ spi: 0x101, seq: s1 }));
  assert.ok(!w.engine.pendingAcquires.has(s1), 'ADD with the ACQUIRE seq settled it');
  assert.ok(w.engine.pendingAcquires.has(s2));
  km.ok(getspiReq({ min: 0x200, max: 0x200, seq: s2 }));
  assert.ok(w.engine.pendingAcquires.has(s2), 'GETSPI does not settle');
  km.ok(updateReq({ spi: 0x200, seq: s2 }));
  assert.ok(!w.engine.pendingAcquires.has(s2), 'UPDATE with the ACQUIRE seq settled it');
  drain(km);
  // A refused ADD with the seq settles nothing.
  const s3 = w.engine.acquire(SEL);
  drain(km);
  assert.equal(km.send(addReq({ spi: 0x101, seq: s3 })), ERRNO.EEXIST);
  assert.ok(w.engine.pendingAcquires.has(s3));
});

test('REPLACEFLOW of a %hold releases the held packet through onRelease (trap and trapsubnet)', () => {
  const released: Array<{ e: Eroute; p: Uint8Array[] }> = [];
  const { w, km } = setup({ onRelease: (e, p) => released.push({ e, p }) });
  trap(km, SPI_TRAP);
  km.ok(addReq({ spi: 0x300 }));
  drain(km);
  const t = w.engine.route(pkt(SEL.src, SEL.dst))!;
  const seq = w.engine.acquire(SEL, t, PACKET);
  drain(km);
  assert.equal(released.length, 0);
  // The key manager answers: SA, then REPLACEFLOW of the host hold to the SA.
  km.ok(addReq({ spi: 0x301, seq }));
  km.ok(addflowReq({ src: SEL.src, srcMask: '255.255.255.255', dst: SEL.dst, dstMask: '255.255.255.255', spi: 0x301, flags: SADB_X_SAFLAGS_REPLACEFLOW }));
  drain(km);
  assert.equal(released.length, 1);
  assert.deepEqual(released[0].p.map((x) => [...x]), [[...PACKET]]);
  assert.deepEqual(released[0].e.said, espSaid(0x301), 'released onto the new eroute');
  assert.equal(released[0].e.held, undefined);
  assert.deepEqual(w.engine.route(pkt(SEL.src, SEL.dst))!.said, espSaid(0x301));
  assert.equal(w.engine.pendingAcquires.size, 0);

  // %trapsubnet: REPLACEFLOW of the subnet flow releases its packet.
  const w2 = setup({ onRelease: (e, p) => released.push({ e, p }) });
  trap(w2.km, SPI_TRAPSUBNET);
  drain(w2.km);
  const t2 = w2.w.engine.route(pkt(SEL.src, SEL.dst))!;
  w2.w.engine.acquire(SEL, t2, PACKET);
  w2.km.ok(addflowReq({ ...TRAPNET, spi: 0x400, flags: SADB_X_SAFLAGS_REPLACEFLOW }));
  drain(w2.km);
  assert.equal(released.length, 2);
  assert.deepEqual(released[1].e.said, espSaid(0x400));
  // A REPLACEFLOW of an eroute holding nothing releases nothing.
  w2.km.ok(addflowReq({ ...TRAPNET, spi: 0x401, flags: SADB_X_SAFLAGS_REPLACEFLOW }));
  assert.equal(released.length, 2);
});

test('an ACQUIRE nobody answers is forgotten after acquireLifetime seconds', () => {
  const w = world({ acquireLifetime: 30 });
  const km = w.client();
  km.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  drain(km);
  const seq = w.engine.acquire(SEL);
  w.advance(29);
  w.engine.tick();
  assert.ok(w.engine.pendingAcquires.has(seq), 'still pending at 29 s');
  w.advance(1);
  w.engine.tick();
  assert.equal(w.engine.pendingAcquires.has(seq), false, 'forgotten at 30 s');
});
