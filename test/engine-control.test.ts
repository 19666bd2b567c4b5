/**
 * Control messages through the engine: X_PROMISC, X_DEBUG (set/clear semantics and the
 * reply), a client's X_NAT_T_NEW_MAPPING (refused), X_PLUMBIF / X_UNPLUMBIF (KLIPS's
 * interface numbering, answers and refusals to the sender alone).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, SADB_X_PROMISC, SADB_X_DEBUG, SADB_X_NAT_T_NEW_MAPPING, SADB_X_PLUMBIF,
  SADB_X_UNPLUMBIF, SADB_SATYPE_ESP, IPSECDEV_OFFSET, MASTTRANSPORT_OFFSET, SADB_FLUSH,
  DEBUG_SUBSYSTEMS, buildMessage, type DebugSubsystem, type MessageInput,
} from '../src/wire/index.js';
import {
  world, addReq, hdrReq, debugReq, plumbReq, drain, expectRefusal, expectSenderRefusal, addr, saExt,
} from './engine-helpers.js';

test('X_PROMISC: satype 1 turns it on, 0 off, the reply goes to the sender; 2 is EINVAL', () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  a.ok(hdrReq(SADB_X_PROMISC, 1, { seq: 3, pid: 30 }));
  const on = a.one('on');
  assert.equal(on.header.type, SADB_X_PROMISC);
  assert.equal(on.header.seq, 3);
  assert.equal(on.header.pid, 30);
  b.none('sender only');
  assert.equal(a.sock.promisc, true);
  a.ok(hdrReq(SADB_X_PROMISC, 0));
  a.one('off');
  assert.equal(a.sock.promisc, false);
  expectRefusal(w, a, [a, b], hdrReq(SADB_X_PROMISC, 2), ERRNO.EINVAL, 'X_PROMISC satype 2');
  assert.equal(a.sock.promisc, false);
  a.ok(hdrReq(SADB_X_PROMISC, 1));
  a.one();
  expectRefusal(w, a, [a, b], hdrReq(SADB_X_PROMISC, 2), ERRNO.EINVAL, 'X_PROMISC satype 2 while on');
  assert.equal(a.sock.promisc, true, 'a refused X_PROMISC changes nothing');
  a.ok(hdrReq(SADB_X_PROMISC, 0));
  a.one();
  const withExt: MessageInput = { header: { type: SADB_X_PROMISC, satype: 1 }, sa: saExt(0x100) };
  expectRefusal(w, b, [a, b], withExt, ERRNO.EINVAL, 'X_PROMISC with an extension');
});

test('X_DEBUG: the top bit of the netlink word sets (OR), without it clears (AND); the reply has the flags in force', () => {
  const lines: Array<[DebugSubsystem, string]> = [];
  const w = world({ log: (s, t) => lines.push([s, t]) });
  const [a, b] = [w.client(), w.client()];
  const zero = Object.fromEntries(DEBUG_SUBSYSTEMS.map((n) => [n, 0]));
  assert.deepEqual({ ...w.engine.debug }, zero);

  a.ok(debugReq({ netlink: 0x80000000, tunnel: 1, pfkey: 0xff }, { seq: 4, pid: 40 }));
  let r = a.one('set');
  b.none('X_DEBUG reply is the sender\'s');
  assert.equal(r.header.type, SADB_X_DEBUG);
  assert.equal(r.header.seq, 4);
  assert.equal(r.header.pid, 40);
  assert.deepEqual({ ...r.debug }, { ...zero, tunnel: 1, pfkey: 0xff });
  assert.deepEqual({ ...w.engine.debug }, { ...zero, tunnel: 1, pfkey: 0xff });

  a.ok(debugReq({ netlink: 0x80000000 | 2, spi: 4 }));
  r = a.one('set more');
  assert.deepEqual({ ...w.engine.debug }, { ...zero, tunnel: 1, pfkey: 0xff, netlink: 2, spi: 4 }, 'OR keeps what was set');
  assert.deepEqual({ ...r.debug }, { ...w.engine.debug });

  a.ok(debugReq({ netlink: 0, tunnel: 0xffffffff, pfkey: 0x0f }));
  r = a.one('clear');
  assert.deepEqual({ ...w.engine.debug }, { ...zero, tunnel: 1, pfkey: 0x0f }, 'AND clears every bit not given');
  assert.deepEqual({ ...r.debug }, { ...w.engine.debug });

  // With pfkey debugging on, the engine logs each message it handles.
  lines.length = 0;
  a.ok(hdrReq(SADB_FLUSH));
  drain(a, b);
  assert.ok(lines.some(([s, t]) => s === 'pfkey' && t.includes('FLUSH')), 'pfkey debug lines are logged');
  a.ok(debugReq({ netlink: 0 }));
  a.one('clear all');
  assert.deepEqual({ ...w.engine.debug }, zero);
  lines.length = 0;
  a.ok(hdrReq(SADB_FLUSH));
  drain(a, b);
  assert.equal(lines.length, 0, 'nothing logged with all flags clear');
  expectRefusal(w, a, [a, b], { header: { type: SADB_X_DEBUG, satype: 0 } }, ERRNO.EINVAL, 'X_DEBUG without the debug extension');
});

test('a client\'s X_NAT_T_NEW_MAPPING is EINVAL (only the engine sends it)', () => {
  const w = world();
  const [a, b] = [w.client(), w.client()];
  a.ok(addReq({ spi: 0x100, extra: { natTType: { type: 2 }, natTSport: { port: 4500 }, natTDport: { port: 4500 } } }));
  drain(a, b);
  const m: MessageInput = {
    header: { type: SADB_X_NAT_T_NEW_MAPPING, satype: SADB_SATYPE_ESP, seq: 5, pid: 50 },
    sa: saExt(0x100), addressSrc: addr('198.51.100.1'), addressDst: addr('192.0.2.2'),
    natTSport: { port: 1234 }, natTDport: { port: 4500 },
  };
  expectRefusal(w, a, [a, b], m, ERRNO.EINVAL, 'client NAT_T_NEW_MAPPING');
  assert.equal(w.engine.sadb.get({ proto: 50, spi: 0x100, dst: '192.0.2.2' })!.natT!.sport, 4500);
});

test('X_PLUMBIF / X_UNPLUMBIF: mast0, ipsec0, ipsec1 at start; ipsecN above 49152, mastN below 64; the answer goes to the sender alone', () => {
  const w = world({ start: 500 });
  const [a, b] = [w.client(), w.client()];
  const keys = () => [...w.engine.interfaces.keys()].sort((x, y) => x - y);
  assert.deepEqual(keys(), [0, IPSECDEV_OFFSET, IPSECDEV_OFFSET + 1], 'KLIPS loads with mast0, ipsec0, ipsec1');
  assert.deepEqual([...w.engine.interfaces.values()].map((i) => [i.name, i.pid, i.created]), [['mast0', 0, 500], ['ipsec0', 0, 500], ['ipsec1', 0, 500]]);

  const req = plumbReq(SADB_X_PLUMBIF, IPSECDEV_OFFSET + 2, { seq: 6, pid: 60 });
  a.ok(req);
  const raw = a.raw();
  assert.equal(raw.length, 1);
  assert.equal(Buffer.from(raw[0]).toString('hex'), Buffer.from(buildMessage(req)).toString('hex'), 'the reply is the request itself (errno 0)');
  b.none('PLUMBIF reply is the sender\'s (KLIPS pfkey_x_simple_reply)');
  assert.equal(w.engine.interfaces.get(IPSECDEV_OFFSET + 2)!.name, 'ipsec2');
  assert.equal(w.engine.interfaces.get(IPSECDEV_OFFSET + 2)!.pid, 60);
  a.ok(plumbReq(SADB_X_PLUMBIF, 3));
  a.ok(plumbReq(SADB_X_PLUMBIF, 63));
  a.ok(plumbReq(SADB_X_PLUMBIF, IPSECDEV_OFFSET + 63));
  assert.equal(a.read().length, 3);
  assert.deepEqual([3, 63, IPSECDEV_OFFSET + 63].map((k) => w.engine.interfaces.get(k)!.name), ['mast3', 'mast63', 'ipsec63']);

  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_PLUMBIF, 3, { seq: 7, pid: 70 }), ERRNO.EEXIST, 'mast3 again');
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_PLUMBIF, IPSECDEV_OFFSET + 1), ERRNO.EEXIST, 'ipsec1 exists from the start');
  expectSenderRefusal(w, b, [a, b], plumbReq(SADB_X_PLUMBIF, 64), ERRNO.ENOENT, 'mast64: 64 units at most');
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_PLUMBIF, IPSECDEV_OFFSET + 64), ERRNO.ENOENT, 'ipsec64');
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_PLUMBIF, IPSECDEV_OFFSET), ERRNO.ENOENT, '49152 is read as mast49152, as KLIPS (only numbers above it are ipsecN)');
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_PLUMBIF, MASTTRANSPORT_OFFSET + 1), ERRNO.ENOENT, 'a transport-mast number is no unit to make');

  b.ok(plumbReq(SADB_X_UNPLUMBIF, 3, { seq: 8 }));
  assert.equal(b.one('UNPLUMBIF').plumbif!.ifnum, 3);
  a.none();
  assert.ok(!w.engine.interfaces.has(3));
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_UNPLUMBIF, 3), ERRNO.ENOENT, 'UNPLUMBIF of a missing interface');
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_UNPLUMBIF, IPSECDEV_OFFSET), ERRNO.ENOENT, 'ipsec0 cannot be named by 49152');
  expectSenderRefusal(w, a, [a, b], plumbReq(SADB_X_UNPLUMBIF, 49999), ERRNO.ENOENT, 'UNPLUMBIF out of range');
  a.ok(plumbReq(SADB_X_UNPLUMBIF, IPSECDEV_OFFSET + 1));
  a.ok(plumbReq(SADB_X_UNPLUMBIF, 0));
  a.read();
  assert.deepEqual(keys(), [63, IPSECDEV_OFFSET, IPSECDEV_OFFSET + 2, IPSECDEV_OFFSET + 63]);
  // An SA type above 11 is refused before the handler runs: the usual broadcast errno.
  expectRefusal(w, a, [a, b], { ...plumbReq(SADB_X_PLUMBIF, 5), header: { type: SADB_X_PLUMBIF, satype: 99 } }, ERRNO.EINVAL, 'X_PLUMBIF satype 99');
});
