/**
 * The SA table's own bookkeeping, against a model (a Map keyed by SAID text, which keeps
 * insertion order): lookups, UPDATE keeping an SA's place, removal, flush, and iterators
 * that run while the table changes under them (as DUMP's listing does across turns).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fc from 'fast-check';
import { Sadb, NO_LIMITS, sharedLimits, type SA } from '../src/sadb/sadb.js';
import { saidKey } from '../src/sadb/said.js';
import { AF_INET } from '../src/wire/index.js';

const PROTOS = [50, 51, 4];
const DSTS = ['192.0.2.1', '192.0.2.2'];
const satypeOf = (proto: number) => (proto === 50 ? 3 : proto === 51 ? 2 : 9);

function mkSa(proto: number, spi: number, dst: string, tag = 0): SA {
  const a = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
  return {
    said: { proto, spi, dst }, satype: satypeOf(proto), state: 1, replay: tag, auth: 0, encrypt: 0, flags: 0,
    src: a('192.0.2.9'), dst: a(dst), soft: sharedLimits(NO_LIMITS()), hard: sharedLimits(NO_LIMITS()),
    current: NO_LIMITS(), used: false, softSent: false, pid: 0, seq: 0, gen: 0, ref: 0, refhim: 0, dir: 'out',
  };
}

type Op =
  | { op: 'add'; proto: number; spi: number; dst: number }
  | { op: 'update'; proto: number; spi: number; dst: number }
  | { op: 'remove'; proto: number; spi: number; dst: number }
  | { op: 'flush'; satype: number }
  | { op: 'step' };

/** SPIs from a small range (many collide, and with the index) or anywhere in 32 bits. */
const spiArb = fc.oneof(fc.integer({ min: 256, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0x80000000, 0xffffffff, 0x7fffffff));
const said = { proto: fc.constantFrom(...PROTOS), spi: spiArb, dst: fc.integer({ min: 0, max: DSTS.length - 1 }) };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('add' as const), ...said }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('update' as const), ...said }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('remove' as const), ...said }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('flush' as const), satype: fc.constantFrom(0, 2, 3, 9) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'step' as const }) },
);

test('the SA table agrees with an insertion-ordered model, iterators included', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 400 }), (ops) => {
      const db = new Sadb();
      const model = new Map<string, SA>();
      // One iterator started at the beginning and advanced by 'step': it must yield each
      // SA present when it gets there exactly once, in model order, never a removed one.
      const it = db.values();
      const seen = new Set<SA>();
      let done = false;
      let tag = 0;
      for (const o of ops) {
        if (o.op === 'step') {
          if (done) continue;
          const r = it.next();
          if (r.done) { done = true; continue; }
          const k = saidKey(r.value.said);
          assert.equal(model.get(k), r.value, `iterator yielded ${k}, not in the table`);
          assert.ok(!seen.has(r.value), `iterator yielded ${k} twice`);
          seen.add(r.value);
          continue;
        }
        if (o.op === 'flush') {
          const gone = db.flush(o.satype);
          const want = [...model.values()].filter((sa) => o.satype === 0 || sa.satype === o.satype);
          assert.deepEqual(gone, want);
          for (const sa of want) model.delete(saidKey(sa.said));
          continue;
        }
        const s = { proto: o.proto, spi: o.spi, dst: DSTS[o.dst] };
        const k = saidKey(s);
        const cur = model.get(k);
        assert.equal(db.get(s), cur);
        assert.equal(db.has(s), cur !== undefined);
        if (o.op === 'add' && !cur) {
          const sa = mkSa(s.proto, s.spi, s.dst, ++tag);
          db.insert(sa);
          model.set(k, sa);
        } else if (o.op === 'update' && cur) {
          const sa = mkSa(s.proto, s.spi, s.dst, ++tag);
          db.replace(cur, sa);
          model.set(k, sa);
        } else if (o.op === 'remove') {
          assert.equal(db.remove(cur ?? mkSa(s.proto, s.spi, s.dst)), cur !== undefined);
          model.delete(k);
        }
      }
      assert.equal(db.size, model.size);
      assert.deepEqual([...db.values()], [...model.values()], 'insertion order');
      for (const [k, sa] of model) assert.equal(db.get(sa.said), sa, k);
      for (const t of [2, 3, 9]) assert.equal(db.count(t), [...model.values()].filter((sa) => sa.satype === t).length);
    }),
    { numRuns: 300 },
  );
});

test('an iterator yields every SA present throughout exactly once, in order, across compactions', () => {
  const db = new Sadb();
  const N = 6000;
  const sas: SA[] = [];
  for (let i = 0; i < N; i++) { const sa = mkSa(50, 0x1000 + i, DSTS[i & 1]); sas.push(sa); db.insert(sa); }
  const it = db.values();
  const got: SA[] = [];
  const removed = new Set<SA>();
  for (let r = it.next(); !r.done; r = it.next()) {
    assert.ok(!removed.has(r.value), 'a removed SA was yielded');
    got.push(r.value);
    // Remove every other SA just seen and one far ahead, so holes pile up and the table compacts.
    const i = sas.indexOf(r.value);
    if (i % 2 === 0) { db.remove(r.value); removed.add(r.value); }
    if (i % 2 === 0 && i + 3001 < N) { db.remove(sas[i + 3001]); removed.add(sas[i + 3001]); }
  }
  const idx = got.map((sa) => sas.indexOf(sa));
  for (let i = 1; i < idx.length; i++) assert.ok(idx[i] > idx[i - 1], 'insertion order');
  for (const sa of sas) if (!removed.has(sa) || got.includes(sa)) assert.ok(got.includes(sa), `skipped ${sa.said.spi}`);
  assert.equal(db.size, N - removed.size);
  assert.ok(db.size < N / 2, 'enough removals to compact');
});

test('SPIs at and above 2^31 and the same SPI under every protocol and destination', () => {
  const db = new Sadb();
  const spis = [256, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
  const all: SA[] = [];
  for (const spi of spis) for (const proto of PROTOS) for (const dst of DSTS) { const sa = mkSa(proto, spi, dst); all.push(sa); db.insert(sa); }
  for (const sa of all) assert.equal(db.get(sa.said), sa);
  assert.equal(db.get({ proto: 108, spi: 0x80000000, dst: DSTS[0] }), undefined);
  for (const sa of all.filter((_, i) => i % 3 === 0)) assert.ok(db.remove(sa));
  for (const [i, sa] of all.entries()) assert.equal(db.get(sa.said), i % 3 === 0 ? undefined : sa);
  assert.deepEqual([...db.values()], all.filter((_, i) => i % 3 !== 0));
});

test('stored SAs read back by key, as their SAID finds them, across removals and compactions', () => {
  // Each stored request is 16 bytes: a header whose length field (8-byte units) says 2, and
  // its SPI at bytes 8..11, so what readStored hands back can be told apart.
  const request = (spi: number): Uint8Array => {
    const b = new Uint8Array(16);
    b[4] = 2;
    new DataView(b.buffer).setUint32(8, spi);
    return b;
  };
  const out = { bytes: new Uint8Array(0), view: new DataView(new ArrayBuffer(0)), at: 0, len: 0, satype: 0, addtime: 0, ref: 0, inbound: false };
  fc.assert(
    fc.property(fc.array(fc.record({ remove: fc.boolean(), spi: fc.integer({ min: 256, max: 400 }) }), { maxLength: 300 }), (ops) => {
      const db = new Sadb();
      const model = new Map<number, number>(); // spi -> key
      const gone = new Set<number>();
      const check = (spi: number) => {
        const key = db.storedKey(50, spi, '192.0.2.1');
        assert.equal(key, model.get(spi) ?? -1, `storedKey of SPI ${spi}`);
        if (key < 0) return;
        assert.ok(db.readStored(key, out), `readStored(${key})`);
        assert.equal(out.len, 16);
        assert.equal(new DataView(out.bytes.buffer, out.bytes.byteOffset).getUint32(out.at + 8), spi, `the request stored under key ${key}`);
        assert.equal(out.view.getUint32(out.bytes.byteOffset + out.at + 8), spi, `the request stored under key ${key}, read through its view`);
      };
      for (const o of ops) {
        const key = model.get(o.spi);
        if (o.remove && key !== undefined) {
          assert.ok(db.removeStored(key));
          model.delete(o.spi);
          gone.add(key);
        } else if (!o.remove && key === undefined) {
          db.insertStored(50, o.spi, '192.0.2.1', 3, request(o.spi), 0, 16, 0, 0, false, 0, 0);
          db.flushStored();
          model.set(o.spi, db.storedKey(50, o.spi, '192.0.2.1'));
        }
        // A removed key reads as nothing, before and after the live ones are read.
        for (const k of gone) assert.equal(db.readStored(k, out), false, `removed key ${k}`);
        check(o.spi);
        for (const spi of model.keys()) check(spi);
      }
    }),
    { numRuns: 200 },
  );
});
