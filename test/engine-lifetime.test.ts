/**
 * Lifetimes on a fake clock: soft then hard EXPIRE on bytes, packets (openswan's 40-byte
 * lifetime), addtime (tick), usetime (only after first use) and allocations (eroutes bound
 * to the SA); each EXPIRE once, soft → DYING, hard → gone; the EXPIRE's contents; and the
 * larvalLifetime option.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, SADB_DELETE, SADB_EXPIRE, SADB_GET, SADB_SATYPE_ESP, SADB_SASTATE_DYING, SADB_SASTATE_MATURE,
  SADB_SASTATE_LARVAL, type PfkeyMessage,
} from '../src/wire/index.js';
import {
  world, addReq, updateReq, getspiReq, saidReq, addflowReq, lifetime, drain, expectRefusal,
  espSaid, type Client, type World,
} from './engine-helpers.js';

function setup(opts: { larvalLifetime?: number; start?: number } = {}): { w: World; a: Client; b: Client } {
  const w = world(opts);
  const a = w.client();
  const b = w.client();
  return { w, a, b };
}

function expires(c: Client, what: string): PfkeyMessage[] {
  return c.read(what).filter((m) => m.header.type === SADB_EXPIRE);
}

/** Exactly one EXPIRE on each client, of this kind, for this SPI; returns a's. */
function oneExpire(cs: Client[], kind: 'soft' | 'hard', spi: number, what: string): PfkeyMessage {
  let first: PfkeyMessage | undefined;
  for (const c of cs) {
    const e = expires(c, what);
    assert.equal(e.length, 1, `${what}: one ${kind} EXPIRE on socket ${c.sock.id}, got ${e.length}`);
    const m = e[0];
    assert.equal(m.header.pid, 0, `${what}: pid 0`);
    assert.equal(m.header.satype, SADB_SATYPE_ESP);
    assert.ok(m.header.seq >= 1);
    assert.equal(m.sa!.spi, spi);
    assert.ok(m.lifetimeCurrent, `${what}: LIFETIME_CURRENT`);
    assert.ok(m.addressSrc && m.addressDst, `${what}: SRC and DST`);
    if (kind === 'soft') {
      assert.ok(m.lifetimeSoft, `${what}: LIFETIME_SOFT`);
      assert.equal(m.lifetimeHard, undefined, `${what}: no LIFETIME_HARD in a soft EXPIRE`);
    } else {
      assert.ok(m.lifetimeHard, `${what}: LIFETIME_HARD`);
      assert.equal(m.lifetimeSoft, undefined, `${what}: no LIFETIME_SOFT in a hard EXPIRE`);
    }
    assert.equal(m.keyAuth, undefined);
    assert.equal(m.keyEncrypt, undefined);
    first ??= m;
  }
  return first!;
}

function noExpire(cs: Client[], what: string): void {
  for (const c of cs) assert.equal(expires(c, what).length, 0, `${what}: no EXPIRE expected`);
}

function assertGone(w: World, a: Client, b: Client, spi: number): void {
  assert.equal(w.engine.sadb.get(espSaid(spi)), undefined);
  expectRefusal(w, a, [a, b], saidReq(SADB_GET, { spi }), ERRNO.ESRCH, 'GET after hard expiry');
}

test('bytes: soft EXPIRE once (state DYING), then hard EXPIRE once and the SA is gone', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x100, extra: { lifetimeSoft: lifetime({ bytes: 1000 }), lifetimeHard: lifetime({ bytes: 2000 }) } }));
  drain(a, b);
  assert.equal(w.engine.countTraffic(espSaid(0x100), 600), undefined);
  noExpire([a, b], 'below soft');
  assert.equal(w.engine.countTraffic(espSaid(0x100), 500), 'soft');
  const s = oneExpire([a, b], 'soft', 0x100, 'soft bytes');
  assert.equal(s.lifetimeCurrent!.bytes, 1100n);
  assert.equal(s.lifetimeCurrent!.packets, 2);
  assert.equal(s.lifetimeSoft!.bytes, 1000n);
  assert.equal(s.sa!.state, SADB_SASTATE_DYING);
  assert.equal(w.engine.sadb.get(espSaid(0x100))!.state, SADB_SASTATE_DYING);
  a.ok(saidReq(SADB_GET, { spi: 0x100 }));
  assert.equal(a.one('GET while dying').sa!.state, SADB_SASTATE_DYING);
  assert.equal(w.engine.countTraffic(espSaid(0x100), 100), undefined, 'soft is reported once');
  noExpire([a, b], 'between soft and hard');
  assert.equal(w.engine.countTraffic(espSaid(0x100), 800), 'hard');
  const h = oneExpire([a, b], 'hard', 0x100, 'hard bytes');
  assert.equal(h.lifetimeHard!.bytes, 2000n);
  assert.equal(h.lifetimeCurrent!.bytes, 2000n);
  assertGone(w, a, b, 0x100);
  assert.equal(w.engine.countTraffic(espSaid(0x100), 1), undefined);
  noExpire([a, b], 'after hard');
  assert.equal(w.engine.stats.expires, 2);
});

test('packets (40-byte lifetime with sadb_x_lifetime_packets): soft at 3, hard at 5', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x200, extra: { lifetimeSoft: lifetime({ packets: 3 }), lifetimeHard: lifetime({ packets: 5 }) } }));
  const r = a.read()[0];
  assert.equal(r.lifetimeHard!.packets, 5, 'the ADD reply echoes the packet limit');
  drain(b);
  const kinds: Array<string | undefined> = [];
  for (let i = 0; i < 5; i++) kinds.push(w.engine.countTraffic(espSaid(0x200), 10, 1));
  assert.deepEqual(kinds, [undefined, undefined, 'soft', undefined, 'hard']);
  const msgs = a.read('packets').filter((m) => m.header.type === SADB_EXPIRE);
  assert.equal(msgs.length, 2);
  assert.equal(msgs[0].lifetimeSoft!.packets, 3);
  assert.equal(msgs[0].lifetimeCurrent!.packets, 3);
  assert.equal(msgs[1].lifetimeHard!.packets, 5);
  assert.equal(b.read().filter((m) => m.header.type === SADB_EXPIRE).length, 2);
  assertGone(w, a, b, 0x200);
});

test('addtime: tick() after the clock moves fires soft, then hard', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x300, extra: { lifetimeSoft: lifetime({ addtime: 10 }), lifetimeHard: lifetime({ addtime: 20 }) } }));
  a.ok(addReq({ spi: 0x301, extra: { lifetimeSoft: lifetime({ addtime: 10 }), lifetimeHard: lifetime({ addtime: 20 }) } }));
  drain(a, b);
  w.advance(5);
  assert.equal(w.engine.tick(), 0);
  noExpire([a, b], 't+5');
  // 0x301 gets traffic: addtime does not care.
  w.engine.countTraffic(espSaid(0x301), 1);
  w.advance(5);
  assert.equal(w.engine.tick(), 2);
  const s = a.read('t+10').filter((m) => m.header.type === SADB_EXPIRE);
  assert.deepEqual(s.map((m) => [m.sa!.spi, !!m.lifetimeSoft]).sort(), [[0x300, true], [0x301, true]]);
  b.read();
  assert.equal(w.engine.sadb.get(espSaid(0x300))!.state, SADB_SASTATE_DYING);
  assert.equal(w.engine.tick(), 0, 'soft once');
  w.advance(9);
  assert.equal(w.engine.tick(), 0);
  w.advance(1);
  assert.equal(w.engine.tick(), 2);
  const h = a.read('t+20').filter((m) => m.header.type === SADB_EXPIRE);
  assert.equal(h.length, 2);
  assert.ok(h.every((m) => m.lifetimeHard!.addtime === 20n));
  b.read();
  assertGone(w, a, b, 0x300);
  assert.equal(w.engine.sadb.size, 0);
  w.advance(100);
  assert.equal(w.engine.tick(), 0);
});

test('addtime: a clock that jumps past both limits gives a single hard EXPIRE', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x380, extra: { lifetimeSoft: lifetime({ addtime: 10 }), lifetimeHard: lifetime({ addtime: 20 }) } }));
  drain(a, b);
  w.advance(100);
  assert.equal(w.engine.tick(), 1);
  oneExpire([a, b], 'hard', 0x380, 'jump');
  assertGone(w, a, b, 0x380);
});

test('usetime counts only from the first use', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x400, extra: { lifetimeSoft: lifetime({ usetime: 10 }), lifetimeHard: lifetime({ usetime: 20 }) } }));
  drain(a, b);
  w.advance(1000);
  assert.equal(w.engine.tick(), 0, 'never used: no expiry however long');
  noExpire([a, b], 'unused');
  w.engine.countTraffic(espSaid(0x400), 100);
  assert.equal(w.engine.sadb.get(espSaid(0x400))!.current.usetime, w.clock.t);
  w.advance(9);
  assert.equal(w.engine.tick(), 0);
  w.advance(1);
  assert.equal(w.engine.tick(), 1);
  const s = oneExpire([a, b], 'soft', 0x400, 'soft usetime');
  assert.equal(s.lifetimeSoft!.usetime, 10n);
  assert.equal(s.lifetimeCurrent!.usetime, BigInt(w.clock.t - 10));
  w.engine.countTraffic(espSaid(0x400), 100);
  w.advance(10);
  assert.equal(w.engine.tick(), 1, 'usetime runs from the first use, not the last');
  oneExpire([a, b], 'hard', 0x400, 'hard usetime');
  assertGone(w, a, b, 0x400);
});

// Regression (found by this suite, fixed in 8ab73bf): first use was `usetime === 0`, never true at clock 0.
test('usetime with a fake clock that starts at 0', () => {
  const { w, a, b } = setup({ start: 0 });
  a.ok(addReq({ spi: 0x480, extra: { lifetimeHard: lifetime({ usetime: 20 }) } }));
  drain(a, b);
  w.engine.countTraffic(espSaid(0x480), 100);
  w.advance(20);
  assert.equal(w.engine.tick(), 1);
});

test('each eroute bound to the SA counts one allocation (LIFETIME_CURRENT in GET)', () => {
  const { a, b } = setup();
  a.ok(addReq({ spi: 0x500 }));
  a.ok(saidReq(SADB_GET, { spi: 0x500 }));
  const base = a.read().at(-1)!.lifetimeCurrent!.allocations;
  for (let i = 0; i < 3; i++) a.ok(addflowReq({ src: `10.${i}.0.0`, srcMask: '255.255.0.0', dst: '10.99.0.0', dstMask: '255.255.0.0', spi: 0x500 }));
  drain(a, b);
  a.ok(saidReq(SADB_GET, { spi: 0x500 }));
  assert.equal(a.one('GET').lifetimeCurrent!.allocations, base + 3);
});

// Regression (found by this suite, fixed in 8ab73bf): ADD counted as an allocation, so soft allocations 1 fired at ADD.
test('allocations: soft EXPIRE at the first eroute, hard at the second (soft 1, hard 2)', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x600, extra: { lifetimeSoft: lifetime({ allocations: 1 }), lifetimeHard: lifetime({ allocations: 2 }) } }));
  noExpire([a, b], 'ADD itself is no allocation');
  assert.equal(w.engine.sadb.get(espSaid(0x600))!.state, SADB_SASTATE_MATURE);
  a.ok(addflowReq({ src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0', spi: 0x600 }));
  oneExpire([a, b], 'soft', 0x600, 'first eroute');
  a.ok(addflowReq({ src: '10.3.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0', spi: 0x600 }));
  oneExpire([a, b], 'hard', 0x600, 'second eroute');
  assertGone(w, a, b, 0x600);
});

test('allocations: soft and hard fire once each as eroutes are bound', () => {
  // Neutral about whether the ADD itself counts: limits are set relative to the count after ADD.
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x700 }));
  const base = w.engine.sadb.get(espSaid(0x700))!.current.allocations;
  drain(a, b);
  a.ok(saidReq(SADB_GET, { spi: 0x700 }));
  a.read();
  a.ok(addReq({ spi: 0x701, extra: { lifetimeSoft: lifetime({ allocations: base + 1 }), lifetimeHard: lifetime({ allocations: base + 2 }) } }));
  noExpire([a, b], 'ADD');
  a.ok(addflowReq({ src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0', spi: 0x701 }));
  oneExpire([a, b], 'soft', 0x701, 'first eroute');
  a.ok(addflowReq({ src: '10.3.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0', spi: 0x701 }));
  oneExpire([a, b], 'hard', 0x701, 'second eroute');
  assertGone(w, a, b, 0x701);
  assert.equal(w.engine.spd.size, 2, 'the eroutes stay (pointing to a missing SA), as in KLIPS');
});

test('larvalLifetime expires a GETSPI SA that was never updated; an updated one lives on', () => {
  const { w, a, b } = setup({ larvalLifetime: 30 });
  a.ok(getspiReq({ min: 0x800, max: 0x800 }));
  a.ok(getspiReq({ min: 0x801, max: 0x801 }));
  drain(a, b);
  w.advance(10);
  a.ok(updateReq({ spi: 0x801 }));
  drain(a, b);
  w.advance(19);
  assert.equal(w.engine.tick(), 0);
  assert.equal(w.engine.sadb.get(espSaid(0x800))!.state, SADB_SASTATE_LARVAL);
  w.advance(1);
  w.engine.tick();
  assert.equal(w.engine.sadb.get(espSaid(0x800)), undefined, 'the larval SA expired');
  assert.equal(w.engine.sadb.get(espSaid(0x801))!.state, SADB_SASTATE_MATURE, 'the updated SA did not');
  const e = a.read('larval expiry').filter((m) => m.header.type === SADB_EXPIRE);
  assert.ok(e.length <= 1);
  b.read();
  w.advance(1e6);
  assert.equal(w.engine.tick(), 0);
  assert.ok(w.engine.sadb.has(espSaid(0x801)));
});

test('without larvalLifetime a larval SA never expires (KLIPS)', () => {
  const { w, a, b } = setup();
  a.ok(getspiReq({ min: 0x900, max: 0x900 }));
  drain(a, b);
  w.advance(1e7);
  assert.equal(w.engine.tick(), 0);
  assert.ok(w.engine.sadb.has(espSaid(0x900)));
});

test('an UPDATE installs new limits: the old deadlines no longer fire', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0xa00, extra: { lifetimeHard: lifetime({ addtime: 10 }) } }));
  drain(a, b);
  a.ok(updateReq({ spi: 0xa00, extra: { lifetimeHard: lifetime({ addtime: 100 }) } }));
  drain(a, b);
  w.advance(50);
  assert.equal(w.engine.tick(), 0, 'the replaced SA\'s 10 s deadline is stale');
  assert.ok(w.engine.sadb.has(espSaid(0xa00)));
  w.advance(50);
  assert.equal(w.engine.tick(), 1);
  oneExpire([a, b], 'hard', 0xa00, 'after UPDATE');
});

test('addtime of an SA made by GETSPI then UPDATE counts from the UPDATE, not the GETSPI', () => {
  const { w, a, b } = setup();
  a.ok(getspiReq({ min: 0x700, max: 0x700 }));
  drain(a, b);
  w.advance(100);
  a.ok(updateReq({ spi: 0x700, extra: { lifetimeHard: lifetime({ addtime: 50 }) } }));
  drain(a, b);
  assert.equal(w.engine.sadb.get(espSaid(0x700))!.current.addtime, w.clock.t);
  w.advance(49);
  assert.equal(w.engine.tick(), 0, 'not yet: 49 s after the UPDATE');
  w.advance(1);
  assert.equal(w.engine.tick(), 1, 'hard at 50 s after the UPDATE');
  assert.equal(w.engine.sadb.get(espSaid(0x700)), undefined);
});

test('ADD/DELETE churn of SAs with time limits leaves no growing backlog of deadlines', () => {
  const { w, a, b } = setup();
  for (let i = 0; i < 20_000; i++) {
    a.ok(addReq({ spi: 0x800, extra: { lifetimeSoft: lifetime({ addtime: 10 }), lifetimeHard: lifetime({ addtime: 20 }) } }));
    a.ok(saidReq(4, { spi: 0x800 }));
    if (i % 500 === 0) drain(a, b);
  }
  drain(a, b);
  assert.equal(w.engine.sadb.size, 0);
  assert.ok(w.engine.sadb.deadlineCount <= 1026, `deadlines: ${w.engine.sadb.deadlineCount}`);
  // Stale deadlines fire nothing.
  w.advance(30);
  assert.equal(w.engine.tick(), 0);
  assert.equal(w.engine.sadb.deadlineCount, 0);
});

test('countTrafficOn counts on the SA a path holds while the table is as it found it, else on the table\'s SA by its SAID', () => {
  const { w, a, b } = setup();
  a.ok(addReq({ spi: 0x100, extra: { lifetimeSoft: lifetime({ bytes: 1000 }), lifetimeHard: lifetime({ bytes: 2000 }) } }));
  drain(a, b);
  const held = w.engine.sadb.get(espSaid(0x100))!;
  const asOf = w.engine.sadb.version;
  assert.equal(w.engine.countTrafficOn(held, asOf, 600), undefined);
  assert.equal(held.current.bytes, 600);
  // The table changes (another SA is added): the held object is found again by its SAID.
  a.ok(addReq({ spi: 0x101 }));
  drain(a, b);
  assert.equal(w.engine.countTrafficOn(held, asOf, 500), 'soft');
  oneExpire([a, b], 'soft', 0x100, 'soft bytes through a stale version');
  // Once the SA is gone, a stale holder counts nothing and raises nothing.
  a.ok(saidReq(SADB_DELETE, { spi: 0x100 }));
  drain(a, b);
  const before = held.current.bytes;
  assert.equal(w.engine.countTrafficOn(held, asOf, 5000), undefined);
  assert.equal(held.current.bytes, before);
  noExpire([a, b], 'after the SA was deleted');
});
