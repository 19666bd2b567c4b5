/**
 * The SAref table (KLIPS's refTable, ipsec_sa.c) on its own and through the engine: refs
 * handed out from 1 in ascending order, a freed ref reused only after every other free
 * one, named refs (the SA extension's sadb_x_sa_ref, X_SAREF's `me`) taking a slot over
 * from the SA there before, refs freed by DELETE (whole group), FLUSH and hard expiry,
 * ADD's reply always carrying X_SAREF, and a full table leaving new SAs without a ref.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SADB_ADD, SADB_DELETE, SADB_FLUSH, SADB_SATYPE_ESP, SADB_X_SATYPE_IPIP,
  IPSEC_SA_REF_TABLE_NUM_ENTRIES, buildMessage, type MessageInput,
} from '../src/wire/index.js';
import { SarefTable, isTableRef } from '../src/sadb/saref.js';
import { renderView } from '../src/engine/views.js';
import {
  world, addReq, updateReq, getspiReq, saidReq, hdrReq, grpsaReq, lifetime, drain, espSaid,
  ipipSaid, addEsp, type Client,
} from './engine-helpers.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const refOf = (c: Client, m: MessageInput): number => {
  c.ok(m);
  const r = c.one('ADD');
  assert.equal(r.header.type, SADB_ADD);
  return r.saref!.me;
};

test('SarefTable: 1, 2, 3 … in order; a freed ref comes back last; full means IPSEC_SAREF_NULL', () => {
  const t = new SarefTable<{ ref: number }>();
  const take = () => {
    const sa = { ref: t.alloc() };
    t.intern(sa);
    return sa;
  };
  const [a, b, c] = [take(), take(), take()];
  assert.deepEqual([a.ref, b.ref, c.ref], [1, 2, 3]);
  t.untern(a);
  assert.equal(t.size, 2);
  assert.equal(take().ref, 4, 'ref 1 waits behind every other free ref');
  // A named ref still in the ring is skipped when it comes up, and returns when freed.
  const named = { ref: 5 };
  t.intern(named);
  assert.equal(take().ref, 6);
  t.untern(named);
  const rest: number[] = [];
  for (let r = t.alloc(); r !== 0; r = t.alloc()) rest.push(r);
  assert.equal(rest.length, IPSEC_SA_REF_TABLE_NUM_ENTRIES - 1 - 4, 'every ref not in use, each once');
  assert.equal(rest.at(-2), 1, 'ref 1 comes back after the never-used ones');
  assert.equal(rest.at(-1), 5, 'and ref 5 after it');
  assert.equal(new Set(rest).size, rest.length);
  assert.equal(t.alloc(), 0);
  assert.ok(isTableRef(1) && isTableRef(32767) && !isTableRef(0) && !isTableRef(32768) && !isTableRef(0xffff0001));
});

test('every ADD gets an SAref and its reply always carries X_SAREF (me, him), byte for byte', () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  a.ok(addReq({ spi: 0x1234, seq: 7, pid: 99 }));
  const want =
    '02030003' + '0d00' + '0000' + '07000000' + '63000000' +
    // SA: 24 bytes, spi, replay 32, MATURE, SHA1-HMAC, AES-CBC, flags 0, sadb_x_sa_ref NULL
    '0300' + '0100' + '00001234' + '20' + '01' + '03' + '0c' + '00000000' + '00000000' + '00000000' +
    // SRC and DST, protocol 0, sockaddr_in
    '0300' + '0500' + '00' + '00' + '0000' + '0200' + '0000' + 'c0000201' + '0000000000000000' +
    '0300' + '0600' + '00' + '00' + '0000' + '0200' + '0000' + 'c0000202' + '0000000000000000' +
    // X_SAREF: me 1, him 0
    '0200' + '2000' + '01000000' + '00000000' + '00000000';
  for (const c of [a, b]) {
    const raw = c.raw();
    assert.equal(raw.length, 1);
    assert.equal(hex(raw[0]), want);
  }
  assert.equal(refOf(a, addReq({ spi: 0x1235 })), 2);
  assert.equal(refOf(a, addReq({ spi: 0x1236, satype: SADB_X_SATYPE_IPIP })), 3, 'IPIP SAs get refs too');
  drain(b);
  const sa = w.engine.sadb.get(espSaid(0x1234))!;
  assert.equal(sa.ref, 1);
  assert.equal(w.engine.sadb.sarefs.get(1), sa);
  assert.equal(w.engine.sadb.sarefs.size, 3);
});

test('a named ref: the SA extension\'s sadb_x_sa_ref, else X_SAREF me; 0 and 0xFFFFFFFF are "none"; him is kept as given', () => {
  const w = world();
  const a = w.client();
  const m1 = addReq({ spi: 0x100, extra: { saref: { me: 0, him: 7 } } });
  a.ok(m1);
  assert.deepEqual(a.one().saref, { me: 1, him: 7 }, 'me 0: allocate; him echoed');
  const m2 = addReq({ spi: 0x101 });
  m2.sa = { ...m2.sa!, ref: 0xffffffff };
  assert.equal(refOf(a, m2), 2, 'the older IPSEC_SAREF_NULL (~0) means none, as KLIPS\'s parser reads it');
  assert.equal(refOf(a, addReq({ spi: 0x102, extra: { saref: { me: 0xffffffff, him: 0 } } })), 3);
  assert.equal(refOf(a, addReq({ spi: 0x103, extra: { saref: { me: 500, him: 0 } } })), 500);
  const m3 = addReq({ spi: 0x104, extra: { saref: { me: 600, him: 0 } } });
  m3.sa = { ...m3.sa!, ref: 700 };
  assert.equal(refOf(a, m3), 700, 'the SA extension wins over X_SAREF me');
  // pluto's IPSEC_SAREF_NA (0xffff0001) as refhim is kept and echoed; /proc shows it as C's %d.
  a.ok(addReq({ spi: 0x105, extra: { saref: { me: 0, him: 0xffff0001 } } }));
  assert.deepEqual(a.one().saref, { me: 4, him: 0xffff0001 });
  assert.match(renderView('spi', w.engine)!.text, /^esp0x105@192\.0\.2\.2 .* ref=4 refhim=-65535$/m);
  // A me outside the table is kept on the SA (and echoed) but occupies no slot.
  assert.equal(refOf(a, addReq({ spi: 0x106, extra: { saref: { me: 0xffff0001, him: 0 } } })), 0xffff0001);
  assert.equal(w.engine.sadb.get(espSaid(0x106))!.ref, 0xffff0001);
  assert.equal(w.engine.sadb.sarefs.size, 6, 'refs 1, 2, 3, 4, 500, 700');
  // Its DELETE reply cannot carry that ref (KLIPS failed to build it): NULL instead.
  a.ok(saidReq(SADB_DELETE, { spi: 0x106 }));
  assert.equal(a.one().sa!.ref, 0);
  assert.equal(refOf(a, addReq({ spi: 0x107 })), 5, 'named refs do not disturb the allocation order');
});

test('naming a ref in use moves the slot to the new SA (pluto\'s rekey); the old SA keeps its number', () => {
  const w = world();
  const a = w.client();
  const ref = refOf(a, addReq({ spi: 0x200 }));
  assert.equal(refOf(a, addReq({ spi: 0x201, extra: { saref: { me: ref, him: 0 } } })), ref);
  const [old, now] = [w.engine.sadb.get(espSaid(0x200))!, w.engine.sadb.get(espSaid(0x201))!];
  assert.equal(w.engine.sadb.sarefs.get(ref), now);
  assert.equal(old.ref, ref);
  assert.equal(w.engine.sadb.sarefs.size, 1);
  a.ok(saidReq(SADB_DELETE, { spi: 0x200 }));
  assert.equal(a.one().sa!.ref, ref, 'the DELETE reply names the deleted SA\'s ref');
  assert.equal(w.engine.sadb.sarefs.get(ref), now, 'deleting the old SA leaves the slot to the new one');
  a.ok(saidReq(SADB_DELETE, { spi: 0x201 }));
  a.one();
  assert.equal(w.engine.sadb.sarefs.size, 0);
});

test('refs are freed by DELETE (the whole group), FLUSH and hard expiry; GETSPI and UPDATE take none', () => {
  const w = world();
  const a = w.client();
  addEsp(a, 0x300);
  a.ok(addReq({ spi: 0x301, satype: SADB_X_SATYPE_IPIP }));
  a.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x301 }, { satype: SADB_SATYPE_ESP, spi: 0x300 }));
  drain(a);
  assert.equal(w.engine.sadb.sarefs.size, 2);
  a.ok(saidReq(SADB_DELETE, { spi: 0x300, seq: 31 }));
  const del = a.raw();
  assert.equal(hex(del[0]),
    '02040003' + '0b00' + '0000' + '1f000000' + '64000000' +
    '0300' + '0100' + '00000300' + '00' + '00' + '00' + '00' + '00000000' + '01000000' + '00000000' +
    '0300' + '0500' + '00000000' + '0200' + '0000' + 'c0000201' + '0000000000000000' +
    '0300' + '0600' + '00000000' + '0200' + '0000' + 'c0000202' + '0000000000000000',
    'DELETE reply: SA with the SPI and the ref, all else zero; the request\'s SRC and DST');
  assert.equal(w.engine.sadb.size, 0, 'the group went');
  assert.equal(w.engine.sadb.sarefs.size, 0, 'and both refs with it');

  a.ok(getspiReq({ min: 0x1000, max: 0x1fff }));
  const larval = a.one().sa!;
  assert.equal(w.engine.sadb.get(espSaid(larval.spi))!.ref, 0, 'GETSPI takes no ref');
  a.ok(updateReq({ spi: larval.spi }));
  a.one();
  assert.equal(w.engine.sadb.get(espSaid(larval.spi))!.ref, 0, 'nor does UPDATE (KLIPS interns only at ADD)');
  assert.equal(refOf(a, addReq({ spi: 0x302 })), 3, 'refs 1 and 2 wait behind the never-used ones');
  a.ok(updateReq({ spi: 0x302, encBits: 256 }));
  a.one();
  const updated = w.engine.sadb.get(espSaid(0x302))!;
  assert.equal(updated.ref, 3, 'UPDATE keeps the SA\'s ref');
  assert.equal(w.engine.sadb.sarefs.get(3), updated, 'and its slot points at the new SA object');

  a.ok(addReq({ spi: 0x303, extra: { lifetimeHard: lifetime({ addtime: 10 }) } }));
  a.one();
  assert.equal(w.engine.sadb.sarefs.size, 2);
  w.advance(10);
  w.engine.tick();
  drain(a);
  assert.equal(w.engine.sadb.sarefs.size, 1, 'a hard EXPIRE frees the ref (KLIPS left it in the table)');
  a.ok(hdrReq(SADB_FLUSH));
  drain(a);
  assert.equal(w.engine.sadb.sarefs.size, 0, 'FLUSH frees every ref');
});

test('a full SAref table leaves a new SA without a ref: the ADD succeeds and X_SAREF says me 0', () => {
  const w = world();
  const a = w.client({ rcvbuf: 1024 });
  const bytes = buildMessage(addReq({ spi: 0x10000 }));
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  for (let i = 1; i < IPSEC_SA_REF_TABLE_NUM_ENTRIES; i++) {
    view.setUint32(16 + 4, 0x10000 + i); // the SA extension's SPI, network order
    assert.equal(a.send(bytes), 0);
  }
  assert.equal(w.engine.sadb.sarefs.size, IPSEC_SA_REF_TABLE_NUM_ENTRIES - 1);
  a.close();
  const b = w.client();
  b.ok(addReq({ spi: 0x9000 }));
  assert.deepEqual(b.one().saref, { me: 0, him: 0 });
  assert.equal(w.engine.sadb.get(espSaid(0x9000))!.ref, 0);
  b.ok(saidReq(SADB_DELETE, { spi: 0x10000 + 77 }));
  b.one();
  assert.equal(refOf(b, addReq({ spi: 0x9001 })), 77, 'a freed ref is handed out again');
});

test('the saref view: KLIPS\'s line, then the table; JSON with capacity and entries', () => {
  const w = world();
  const a = w.client();
  a.ok(addReq({ spi: 0x400, extra: { saref: { me: 0, him: 9 } } }));
  a.ok(addReq({ spi: 0x401, satype: SADB_X_SATYPE_IPIP }));
  drain(a);
  const v = renderView('saref', w.engine)!;
  assert.equal(v.text, 'saref enabled\nref=1 refhim=9 said=esp0x400@192.0.2.2\nref=2 refhim=0 said=tun0x401@192.0.2.2\n');
  assert.deepEqual(v.data, {
    enabled: true, capacity: 32767, used: 2,
    entries: [{ ref: 1, refhim: 9, said: 'esp.400@192.0.2.2' }, { ref: 2, refhim: 0, said: 'tun.401@192.0.2.2' }],
  });
  assert.deepEqual(w.engine.sadb.sarefs.get(2)!.said, ipipSaid(0x401));
});
