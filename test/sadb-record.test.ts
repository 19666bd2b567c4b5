/**
 * The compact SA form (newSA): it must read and write like a plain SA object, keys and
 * counters included, and the table's lifetime checks must work on it without creating
 * its counters object.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sadb, StoredKey, currentOf, newSA, sharedLimits, NO_LIMITS, type SaInit, type SA } from '../src/sadb/sadb.js';
import { AF_INET } from '../src/wire/index.js';

const addr = (a: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: a });
const bytes = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : undefined);

function init(o: Partial<SaInit> = {}): SaInit {
  return {
    said: { proto: 50, spi: 0x1234, dst: '192.0.2.2' }, satype: 3, state: 1, replay: 32, auth: 3, encrypt: 12, flags: 0,
    src: addr('192.0.2.1'), dst: addr('192.0.2.2'),
    keyAuth: { bits: 160, key: bytes(20, 1) }, keyEncrypt: { bits: 128, key: bytes(16, 0xf0) },
    soft: sharedLimits(NO_LIMITS()), hard: sharedLimits(NO_LIMITS()), addtime: 1000.5, used: false, pid: 7, seq: 9,
    ref: 0, refhim: 0, dir: 'out',
    ...o,
  };
}

test('newSA: the fields of a plain SA, keys copied and given back byte for byte', () => {
  const i = init();
  const sa = newSA(i);
  i.keyAuth!.key.fill(0); // the request's bytes may be reused
  assert.equal(sa.said, i.said);
  assert.deepEqual([sa.satype, sa.state, sa.replay, sa.auth, sa.encrypt, sa.flags, sa.pid, sa.seq, sa.gen], [3, 1, 32, 3, 12, 0, 7, 9, 0]);
  assert.equal(sa.src, i.src);
  assert.equal(sa.keyAuth!.bits, 160);
  assert.equal(hex(sa.keyAuth!.key()), hex(bytes(20, 1)));
  assert.equal(sa.keyEncrypt!.bits, 128);
  assert.equal(hex(sa.keyEncrypt!.key()), hex(bytes(16, 0xf0)));
  assert.deepEqual(sa.keyEncrypt!.toKey(), { bits: 128, key: bytes(16, 0xf0) });
  for (const k of ['proxy', 'identSrc', 'identDst', 'natT', 'plumbif', 'inbound', 'next', 'prev'] as const) assert.equal(sa[k], undefined, k);
  assert.deepEqual([sa.ref, sa.refhim, sa.dir], [0, 0, 'out']);
  assert.equal(sa.used, false);
  assert.equal(sa.softSent, false);
});

test('newSA: either key alone, no keys, odd bit counts, every byte value', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const onlyAuth = newSA(init({ keyEncrypt: undefined, keyAuth: { bits: 2041, key: all } }));
  assert.equal(onlyAuth.keyEncrypt, undefined);
  assert.equal(onlyAuth.keyAuth!.bits, 2041);
  assert.equal(hex(onlyAuth.keyAuth!.key()), hex(all));
  const onlyEnc = newSA(init({ keyAuth: undefined }));
  assert.equal(onlyEnc.keyAuth, undefined);
  assert.equal(hex(onlyEnc.keyEncrypt!.key()), hex(bytes(16, 0xf0)));
  const none = newSA(init({ keyAuth: undefined, keyEncrypt: undefined }));
  assert.equal(none.keyAuth, undefined);
  assert.equal(none.keyEncrypt, undefined);
});

test('newSA: keys can be replaced or removed like a plain SA\'s', () => {
  const sa = newSA(init());
  sa.keyAuth = new StoredKey(128, bytes(16, 0x40));
  assert.equal(hex(sa.keyAuth!.key()), hex(bytes(16, 0x40)));
  assert.equal(hex(sa.keyEncrypt!.key()), hex(bytes(16, 0xf0)));
  sa.keyEncrypt = undefined;
  assert.equal(sa.keyEncrypt, undefined);
  assert.equal(hex(sa.keyAuth!.key()), hex(bytes(16, 0x40)));
  sa.keyEncrypt = new StoredKey(192, bytes(24, 0x80));
  sa.keyAuth = undefined;
  assert.equal(sa.keyAuth, undefined);
  assert.equal(hex(sa.keyEncrypt!.key()), hex(bytes(24, 0x80)));
});

test('newSA: counters start at zero but addtime; read or changed through current, one object from then on', () => {
  const sa = newSA(init());
  assert.deepEqual(currentOf(sa), { allocations: 0, bytes: 0, addtime: 1000.5, usetime: 0, packets: 0 });
  const c = sa.current;
  assert.deepEqual(c, { allocations: 0, bytes: 0, addtime: 1000.5, usetime: 0, packets: 0 });
  assert.equal(sa.current, c, 'the same object on every read');
  sa.current.allocations++;
  assert.equal(sa.current.allocations, 1);
  assert.equal(currentOf(sa), c);
  const carried = { allocations: 2, bytes: 150, addtime: 900, usetime: 950, packets: 3 };
  const updated = newSA(init({ current: carried, used: true }));
  assert.equal(updated.current, carried, 'UPDATE carries the counters object over');
  assert.equal(updated.used, true);
  updated.current = NO_LIMITS();
  assert.equal(updated.current.bytes, 0);
});

test('newSA in the table: lookups, lifetimes (without creating counters), traffic, groups, replacement', () => {
  const db = new Sadb();
  const hard = sharedLimits({ ...NO_LIMITS(), addtime: 10, allocations: 2 });
  const soft = sharedLimits({ ...NO_LIMITS(), addtime: 5 });
  const a = newSA(init({ hard, soft, addtime: 100 }));
  const b = newSA(init({ said: { proto: 4, spi: 0x1235, dst: '192.0.2.2' }, satype: 9, keyAuth: undefined, keyEncrypt: undefined, addtime: 100 }));
  db.insert(a);
  db.insert(b);
  assert.equal(db.get(a.said), a);
  assert.equal(db.reached(a, 104), undefined);
  assert.equal(db.reached(a, 105), 'soft');
  assert.deepEqual(db.due(104), []);
  assert.deepEqual(db.due(105).map((x) => x.kind), ['soft']);
  db.markSoft(a);
  assert.deepEqual(db.due(110).map((x) => x.kind), ['hard']);
  a.current.allocations += 2;
  assert.equal(db.reached(a, 0), 'hard', 'allocation limit');
  assert.equal(db.countTraffic(b, 100, 2, 120), undefined);
  assert.deepEqual(b.current, { allocations: 0, bytes: 100, addtime: 100, usetime: 120, packets: 2 });
  assert.equal(b.used, true);
  assert.equal(db.link(a, b), true);
  assert.deepEqual(db.group(b), [a, b]);
  const a2: SA = newSA(init({ hard, soft, current: { ...a.current }, addtime: 100 }));
  db.replace(a, a2);
  assert.equal(db.get(a.said), a2);
  assert.equal(a2.next, b);
  assert.equal(b.prev, a2);
  assert.equal(a2.gen, 1);
  assert.ok(db.remove(a2));
  assert.equal(b.prev, undefined);
  assert.equal(db.size, 1);
});
