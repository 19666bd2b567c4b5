/**
 * Who receives what (engine.ts delivery + handlers.ts): replies broadcast to every open
 * socket, GET/DUMP to the sender only (and only they carry keys), REGISTER replies and
 * kernel ACQUIRE / NAT_T_NEW_MAPPING to the registered sockets, EXPIRE to all, errno
 * replies to all plus send()'s result, header-level refusals with no message at all,
 * seq/pid echo, and promiscuous copies (once each).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, SADB_GETSPI, SADB_UPDATE, SADB_ADD, SADB_DELETE, SADB_GET, SADB_REGISTER,
  SADB_EXPIRE, SADB_FLUSH, SADB_DUMP, SADB_X_PROMISC, SADB_X_GRPSA, SADB_X_ADDFLOW,
  SADB_X_DELFLOW, SADB_X_PCHANGE, SADB_ACQUIRE, SADB_SATYPE_ESP, SADB_SATYPE_AH,
  SADB_X_SATYPE_IPIP, SADB_X_NAT_T_NEW_MAPPING, AF_INET, SADB_MSG_HDR_LEN, buildMessage,
  parseMessage,
} from '../src/wire/index.js';
import {
  world, addReq, updateReq, getspiReq, saidReq, hdrReq, grpsaReq, addflowReq, delflowReq,
  drain, expectRefusal, espSaid, snapshot, lifetime,
} from './engine-helpers.js';

const FLOW = { src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' };

function noKeys(m: { keyAuth?: unknown; keyEncrypt?: unknown }, what: string): void {
  assert.equal(m.keyAuth, undefined, `${what}: a broadcast must not carry KEY_AUTH`);
  assert.equal(m.keyEncrypt, undefined, `${what}: a broadcast must not carry KEY_ENCRYPT`);
}

test('GETSPI, UPDATE, ADD, DELETE, FLUSH, X_GRPSA, X_ADDFLOW, X_DELFLOW replies go to every open socket with the request\'s seq and pid, without keys', () => {
  const w = world();
  const [a, b, c] = [w.client(), w.client(), w.client()];
  const closed = w.client();
  closed.close();
  const all = [a, b, c];
  const check = (type: number, seq: number, pid: number, what: string) => {
    for (const x of all) {
      const m = x.one(`${what} on socket ${x.sock.id}`);
      assert.equal(m.header.type, type, what);
      assert.equal(m.header.errno, 0, what);
      assert.equal(m.header.seq, seq, `${what}: seq`);
      assert.equal(m.header.pid, pid, `${what}: pid`);
      noKeys(m, what);
    }
    assert.equal(closed.sock.pending, 0);
  };
  b.ok(getspiReq({ min: 0x4000, max: 0x4fff, seq: 101, pid: 7001 }));
  check(SADB_GETSPI, 101, 7001, 'GETSPI');
  const larval = [...w.engine.sadb.values()][0];
  b.ok(updateReq({ spi: larval.said.spi, seq: 102, pid: 7002 }));
  check(SADB_UPDATE, 102, 7002, 'UPDATE');
  c.ok(addReq({ spi: 0x5000, seq: 103, pid: 7003 }));
  check(SADB_ADD, 103, 7003, 'ADD');
  c.ok(addReq({ spi: 0x5001, satype: SADB_X_SATYPE_IPIP, seq: 104, pid: 7004 }));
  check(SADB_ADD, 104, 7004, 'ADD IPIP');
  a.ok(grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x5000 }, { satype: SADB_X_SATYPE_IPIP, spi: 0x5001 }, { seq: 105, pid: 7005 }));
  check(SADB_X_GRPSA, 105, 7005, 'X_GRPSA');
  a.ok(addflowReq({ ...FLOW, spi: 0x5000, seq: 106, pid: 7006 }));
  check(SADB_X_ADDFLOW, 106, 7006, 'X_ADDFLOW');
  a.ok(delflowReq({ ...FLOW, seq: 107, pid: 7007 }));
  check(SADB_X_DELFLOW, 107, 7007, 'X_DELFLOW');
  a.ok(saidReq(SADB_DELETE, { spi: 0x5000, seq: 108, pid: 7008 }));
  check(SADB_DELETE, 108, 7008, 'DELETE');
  a.ok(hdrReq(SADB_FLUSH, 0, { seq: 109, pid: 7009 }));
  check(SADB_FLUSH, 109, 7009, 'FLUSH');
});

test('GET and DUMP answer the sender only, and they carry the keys', async () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  a.ok(addReq({ spi: 0x6000 }));
  drain(a, b);
  b.ok(saidReq(SADB_GET, { spi: 0x6000, seq: 55, pid: 4242 }));
  a.none('GET reply must not reach another socket');
  const g = b.one('GET');
  assert.equal(g.header.seq, 55);
  assert.equal(g.header.pid, 4242);
  assert.equal(g.keyAuth?.bits, 160);
  assert.equal(g.keyEncrypt?.bits, 128);
  assert.equal(Buffer.from(g.keyAuth!.key).toString('hex'), Buffer.from(addReq({ spi: 1 }).keyAuth!.key).toString('hex'));
  b.ok(hdrReq(SADB_DUMP, 0, { seq: 9, pid: 4243 }));
  await new Promise((r) => setImmediate(r));
  a.none('DUMP reply must not reach another socket');
  const d = b.one('DUMP');
  assert.equal(d.header.type, SADB_DUMP);
  assert.equal(d.header.pid, 4243);
  assert.equal(d.keyAuth?.bits, 160);
  assert.equal(d.keyEncrypt?.bits, 128);
});

test('REGISTER replies go to the sockets registered for that SA type, sender included', () => {
  const w = world();
  const [a, b, c, d] = [w.client(), w.client(), w.client(), w.client()];
  a.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP, { seq: 1, pid: 1 }));
  assert.equal(a.one('first REGISTER').header.type, SADB_REGISTER);
  [b, c, d].forEach((x) => x.none('not registered'));
  c.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_AH, { seq: 2, pid: 2 }));
  c.one('AH REGISTER to its sender');
  a.none('registered for ESP, not AH');
  b.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP, { seq: 3, pid: 3 }));
  const ra = a.one('ESP REGISTER to the earlier ESP listener');
  const rb = b.one('ESP REGISTER to its sender');
  assert.equal(ra.header.seq, 3);
  assert.equal(rb.header.pid, 3);
  c.none('AH listener');
  d.none('unregistered');
});

test('kernel ACQUIRE and NAT_T_NEW_MAPPING go to registered sockets; kernel EXPIRE to all; all with pid 0', () => {
  const w = world();
  const [esp, ah, plain] = [w.client(), w.client(), w.client()];
  esp.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  ah.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_AH));
  plain.ok(addReq({
    spi: 0x7000,
    extra: { natTType: { type: 2 }, natTSport: { port: 4500 }, natTDport: { port: 4500 }, lifetimeSoft: lifetime({ bytes: 100 }), lifetimeHard: lifetime({ bytes: 200 }) },
  }));
  drain(esp, ah, plain);

  const seq = w.engine.acquire({ family: AF_INET, src: '10.0.0.5', dst: '10.0.1.5', proto: 6, sport: 1000, dport: 22 });
  const acq = esp.one('ACQUIRE');
  assert.equal(acq.header.type, SADB_ACQUIRE);
  assert.equal(acq.header.pid, 0);
  assert.equal(acq.header.seq, seq);
  ah.none('ACQUIRE is for ESP listeners');
  plain.none('ACQUIRE is for registered sockets');

  assert.equal(w.engine.natTNewMapping(espSaid(0x7000), '203.0.113.9', 4501), true);
  const nm = esp.one('NEW_MAPPING');
  assert.equal(nm.header.type, SADB_X_NAT_T_NEW_MAPPING);
  assert.equal(nm.header.pid, 0);
  assert.equal(nm.header.satype, SADB_SATYPE_ESP);
  assert.equal(nm.sa!.spi, 0x7000);
  assert.equal(nm.addressSrc!.addr, '203.0.113.9');
  assert.equal(nm.addressDst!.addr, '192.0.2.2');
  assert.equal(nm.natTSport!.port, 4501);
  assert.equal(nm.natTDport!.port, 4500);
  ah.none('NEW_MAPPING to sockets registered for the SA type only');
  plain.none();
  assert.equal(w.engine.natTNewMapping(espSaid(0x7000), '203.0.113.9', 4501), false, 'no change, no message');
  assert.equal(w.engine.natTNewMapping(espSaid(0x7999), '203.0.113.9', 4501), false, 'no such SA');
  esp.none();

  w.engine.countTraffic(espSaid(0x7000), 150);
  for (const x of [esp, ah, plain]) {
    const e = x.one('soft EXPIRE to all');
    assert.equal(e.header.type, SADB_EXPIRE);
    assert.equal(e.header.pid, 0);
  }
});

test('a refusal is a header-only errno message to every open socket and send()\'s result', () => {
  const w = world();
  const [a, b, c] = [w.client(), w.client(), w.client()];
  a.ok(addReq({ spi: 0x8000 }));
  const replies = expectRefusal(w, b, [a, b, c], addReq({ spi: 0x8000, seq: 77, pid: 8080 }), ERRNO.EEXIST, 'duplicate ADD');
  assert.equal(replies.length, 3);
  for (const r of replies) {
    assert.equal(r.header.type, SADB_ADD);
    assert.equal(r.header.seq, 77);
    assert.equal(r.header.pid, 8080);
    assert.equal(r.sa, undefined);
  }
});

test('header-level faults are refused by send() with no message to anyone', () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  a.ok(addReq({ spi: 0x8100 }));
  drain(a, b);
  const good = buildMessage(hdrReq(SADB_FLUSH, 0));
  const cases: Array<[string, Uint8Array, number]> = [];
  const v = good.slice(); v[0] = 3; cases.push(['version 3', v, ERRNO.EINVAL]);
  const l = good.slice(); l[4] = 3; cases.push(['sadb_msg_len mismatch', l, ERRNO.EMSGSIZE]);
  cases.push(['longer than sadb_msg_len', Uint8Array.from([...good, 0, 0, 0, 0, 0, 0, 0, 0]), ERRNO.EMSGSIZE]);
  cases.push(['shorter than a header', good.slice(0, 8), ERRNO.EMSGSIZE]);
  cases.push(['empty', new Uint8Array(0), ERRNO.EMSGSIZE]);
  const r = good.slice(); r[6] = 1; cases.push(['reserved', r, ERRNO.EINVAL]);
  const t0 = good.slice(); t0[1] = 0; cases.push(['type 0', t0, ERRNO.EINVAL]);
  const t20 = good.slice(); t20[1] = 20; cases.push(['type 20', t20, ERRNO.EINVAL]);
  const t255 = good.slice(); t255[1] = 255; cases.push(['type 255', t255, ERRNO.EINVAL]);
  for (const [what, bytes, errno] of cases) {
    const before = snapshot(w.engine);
    assert.equal(a.send(bytes), errno, what);
    assert.equal(snapshot(w.engine), before, what);
    a.none(`${what}: sender`);
    b.none(`${what}: other socket`);
  }
  assert.equal(w.engine.sadb.size, 1);
});

// Regression (found by this suite, fixed in 8ab73bf): promiscuous copies were made before checkHeader.
test('a header-level fault delivers nothing to promiscuous sockets either', () => {
  const w = world();
  const [a, mon] = [w.client(), w.client()];
  mon.ok(hdrReq(SADB_X_PROMISC, 1));
  drain(mon);
  const bad = buildMessage(hdrReq(SADB_FLUSH, 0));
  bad[4] = 7; // sadb_msg_len says 56 bytes, 16 given
  assert.equal(a.send(bad), ERRNO.EMSGSIZE);
  mon.none('promiscuous monitor after a header-level refusal');
});

test('promiscuous sockets get one copy of every message any socket sends or receives', async () => {
  const w = world();
  const [a, b, mon] = [w.client(), w.client(), w.client()];
  mon.ok(hdrReq(SADB_X_PROMISC, 1));
  const on = mon.one('X_PROMISC reply to sender');
  assert.equal(on.header.type, SADB_X_PROMISC);
  a.none('X_PROMISC reply is the sender\'s');
  b.none();
  const count = (list: Uint8Array[], x: Uint8Array) => list.filter((m) => Buffer.compare(Buffer.from(m), Buffer.from(x)) === 0).length;

  // A broadcast reply: the request copy + the reply, once each.
  const add = buildMessage(addReq({ spi: 0x9000, seq: 31 }));
  a.ok(add);
  let got = mon.raw();
  assert.equal(got.length, 2, 'ADD: request copy + broadcast reply');
  assert.equal(count(got, add), 1, 'the ADD request itself, once');
  const reply = a.raw();
  assert.equal(reply.length, 1);
  assert.equal(count(got, reply[0]), 1, 'the ADD reply, once');
  parseMessage(got[0], { direction: 'in' });
  b.raw();

  // A sender-only reply (GET): mon still sees it once.
  const get = buildMessage(saidReq(SADB_GET, { spi: 0x9000, seq: 32 }));
  b.ok(get);
  got = mon.raw();
  const greply = b.raw();
  assert.equal(greply.length, 1);
  assert.equal(got.length, 2);
  assert.equal(count(got, get), 1);
  assert.equal(count(got, greply[0]), 1);
  a.none('GET is b\'s');

  // An errno reply goes to all, mon once.
  assert.equal(b.send(saidReq(SADB_GET, { spi: 0x9999, seq: 33 })), ERRNO.ESRCH);
  got = mon.raw();
  assert.equal(got.length, 2, 'request copy + errno reply');
  assert.equal(got.filter((m) => m.length === SADB_MSG_HDR_LEN && m[2] === ERRNO.ESRCH).length, 1);
  drain(a, b);

  // Kernel messages: ACQUIRE to registered + mon once; a REGISTER by mon itself: its reply once.
  mon.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP, { seq: 34 }));
  assert.equal(mon.raw().length, 1, 'own request is not copied back; the reply once');
  a.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP, { seq: 35 }));
  assert.equal(mon.raw().length, 2, 'a\'s REGISTER copy + the reply (mon is registered too) once');
  a.raw();
  w.engine.acquire({ family: AF_INET, src: '10.0.0.1', dst: '10.0.1.1', proto: 0, sport: 0, dport: 0 });
  assert.equal(mon.raw().length, 1);
  assert.equal(a.raw().length, 1);
  b.none();

  // DUMP replies to b, each copied to mon once.
  b.ok(addReq({ spi: 0x9001 }));
  drain(a, b); mon.raw();
  b.ok(hdrReq(SADB_DUMP, 0, { seq: 36 }));
  await new Promise((r) => setImmediate(r));
  assert.equal(b.raw().length, 2);
  assert.equal(mon.raw().length, 3, 'DUMP request copy + two replies');

  // Off again.
  mon.ok(hdrReq(SADB_X_PROMISC, 0));
  mon.one('X_PROMISC off reply');
  b.ok(saidReq(SADB_GET, { spi: 0x9001 }));
  mon.none('no copies after X_PROMISC 0');
});

test('a client\'s EXPIRE is echoed unchanged to every open socket and changes nothing', () => {
  const w = world();
  const [a, b, c] = [w.client(), w.client(), w.client()];
  a.ok(addReq({ spi: 0xa000 }));
  drain(a, b, c);
  const before = snapshot(w.engine);
  const exp = buildMessage(hdrReq(SADB_EXPIRE, SADB_SATYPE_ESP, { seq: 66, pid: 6 }));
  assert.equal(b.send(exp), 0);
  for (const x of [a, b, c]) {
    const got = x.raw();
    assert.equal(got.length, 1);
    assert.deepEqual([...got[0]], [...exp]);
  }
  assert.equal(snapshot(w.engine), before);
  // EXPIRE in permits no extensions (KLIPS's bitmap is 0).
  expectRefusal(w, b, [a, b, c], { header: { type: SADB_EXPIRE, satype: SADB_SATYPE_ESP, seq: 67, pid: 6 }, sa: { spi: 0xa000, replay: 0, state: 1, auth: 0, encrypt: 0, flags: 0 } }, ERRNO.EINVAL, 'EXPIRE with an SA extension');
  expectRefusal(w, b, [a, b, c], hdrReq(SADB_EXPIRE, 0, { seq: 68 }), ERRNO.EINVAL, 'EXPIRE with satype 0');
});

// Regression (fixed in 8ab73bf): RULES[EXPIRE].out required SA, LC, SRC, DST, refusing the echo.
test('the echo of a client\'s EXPIRE passes the outbound rules', () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  b.ok(hdrReq(SADB_EXPIRE, SADB_SATYPE_ESP, { seq: 66 }));
  a.one('EXPIRE echo');
});

// Regression (fixed in 8ab73bf): RULES[X_PCHANGE].out required the four flow extensions.
test('the X_PCHANGE subscription reply passes the outbound rules', () => {
  const w = world();
  const a = w.client();
  a.ok(hdrReq(SADB_X_PCHANGE, 1));
  a.one('X_PCHANGE subscription reply');
});

// Regression (fixed in 8ab73bf): parseMessage(out) refused errno replies echoing an unusable satype.
test('the errno reply to a request with an SA type that has no protocol passes the outbound rules', () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  assert.equal(a.send(getspiReq({ satype: 1, min: 0x1000, max: 0x2000 })), ERRNO.EINVAL);
  b.one('errno reply for GETSPI satype 1');
  assert.equal(a.send(hdrReq(SADB_EXPIRE, 0)), ERRNO.EINVAL);
  b.one('errno reply for EXPIRE satype 0');
});

// Regression (fixed in 8ab73bf): the engine queued the caller's own buffer.
test('a message delivered to a socket is not a view of the sender\'s buffer', () => {
  const w = world();
  const [a, mon] = [w.client(), w.client()];
  mon.ok(hdrReq(SADB_X_PROMISC, 1));
  mon.raw();
  const buf = buildMessage(hdrReq(SADB_EXPIRE, SADB_SATYPE_ESP, { seq: 1 }));
  a.ok(buf);
  buf[8] = 99; // the client reuses its buffer
  const got = mon.raw();
  assert.equal(got[0][8], 1, 'the queued copy kept seq 1');
});

test('errno replies and broadcasts reach a socket that is not involved in the exchange', () => {
  const w = world();
  const [a, watcher] = [w.client(), w.client()];
  drain(a, watcher);
  assert.equal(a.send(saidReq(SADB_DELETE, { spi: 0xdead })), ERRNO.ESRCH);
  const e = watcher.one('errno broadcast');
  assert.equal(e.header.errno, ERRNO.ESRCH);
  assert.equal(e.header.type, SADB_DELETE);
  a.one();
});
