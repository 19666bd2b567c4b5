/**
 * Where klips matches KLIPS's pfkey_v2_parser.c byte for byte: NAT-T UPDATE (ports only),
 * NAT-T types, the SA-type rules every message shares, a client's ACQUIRE, the replies
 * KLIPS builds for UPDATE, GETSPI, X_GRPSA, X_ADDFLOW, X_DELFLOW and EXPIRE, X_GRPSA's
 * linking rules, and inbound SAs (destination among the host's addresses).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, SADB_GETSPI, SADB_UPDATE, SADB_GET, SADB_ACQUIRE, SADB_REGISTER,
  SADB_EXPIRE, SADB_FLUSH, SADB_DUMP, SADB_X_PROMISC, SADB_X_PCHANGE, SADB_X_GRPSA,
  SADB_X_ADDFLOW, SADB_X_DELFLOW, SADB_X_DEBUG, SADB_X_PLUMBIF, SADB_X_UNPLUMBIF,
  SADB_SATYPE_ESP, SADB_SATYPE_AH, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_INT, SADB_SASTATE_LARVAL,
  SADB_SASTATE_MATURE, SADB_AALG_SHA1HMAC, SADB_AALG_MD5HMAC, SADB_EALG_3DESCBC,
  SADB_X_EALG_AESCBC, SADB_X_SAFLAGS_CLEARFLOW, SADB_X_SAFLAGS_POLICYONLY, SPI_PASS,
  buildMessage, type Address, type Comb, type MessageInput, type Sens,
} from '../src/wire/index.js';
import { renderView } from '../src/engine/views.js';
import {
  world, addReq, updateReq, getspiReq, saidReq, hdrReq, grpsaReq, addflowReq, delflowReq,
  debugReq, plumbReq, addr, lifetime, drain, expectRefusal, snapshot, espSaid, ipipSaid, until,
  type Client, type World,
} from './engine-helpers.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Every client gets exactly `want` (as KLIPS builds it), byte for byte. */
function allGet(cs: Client[], want: MessageInput, what: string): void {
  const bytes = hex(buildMessage(want));
  for (const c of cs) {
    const raw = c.raw();
    assert.equal(raw.length, 1, `${what}: one message each`);
    assert.equal(hex(raw[0]), bytes, what);
  }
}

function setup(local: string[] = []): { w: World; a: Client; b: Client; all: Client[]; local: string[] } {
  const w = world({ localAddresses: () => local });
  const a = w.client();
  const b = w.client();
  return { w, a, b, all: [a, b], local };
}

const SENS: Sens = { dpd: 1, sensLevel: 0, integLevel: 0, sensBitmap: new Uint8Array(0), integBitmap: new Uint8Array(0) };
const COMB: Comb = {
  auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0, authMinbits: 160, authMaxbits: 160,
  encryptMinbits: 128, encryptMaxbits: 256, softAllocations: 0, hardAllocations: 0, softBytes: 0n,
  hardBytes: 0n, softAddtime: 0n, hardAddtime: 0n, softUsetime: 0n, hardUsetime: 0n,
};
const acquireReq = (satype: number, extra: Partial<MessageInput> = {}): MessageInput => ({
  header: { type: SADB_ACQUIRE, satype, seq: 12, pid: 120 },
  addressSrc: addr('10.0.0.1'), addressDst: addr('10.0.1.1'), proposal: { replay: 32, combs: [COMB] }, ...extra,
});

/** The reply's address: the sockaddr as given, protocol 0. */
const out = (a: string, port = 0): Address => addr(a, port, 0);

// ---------------------------------------------------------------- NAT-T UPDATE

test('UPDATE with a NAT-T port changes only the ports: keys, algorithms, lifetimes stay; the reply is KLIPS\'s', () => {
  const { w, a, b, all } = setup();
  a.ok(addReq({
    spi: 0x500, extra: {
      natTType: { type: 2 }, natTSport: { port: 4500 }, natTDport: { port: 4500 },
      identitySrc: { type: 1, id: 0n, data: '192.0.2.1/32' }, lifetimeHard: lifetime({ addtime: 3600 }),
    },
  }));
  drain(...all);
  const before = w.engine.sadb.get(espSaid(0x500))!;
  const [ka, ke] = [hex(before.keyAuth!.key()), hex(before.keyEncrypt!.key())];
  w.advance(7);
  // Ports only: an SA extension whose algorithms must parse, no keys, a different algorithm even.
  const ports: MessageInput = {
    ...updateReq({ spi: 0x500, auth: SADB_AALG_MD5HMAC, encrypt: SADB_EALG_3DESCBC, authBits: 0, encBits: 0, seq: 21, pid: 210 }),
    natTSport: { port: 1234 },
  };
  b.ok(ports, 'a ports-only UPDATE');
  const sa = w.engine.sadb.get(espSaid(0x500))!;
  assert.equal(sa, before, 'the same SA, patched in place');
  assert.deepEqual([sa.auth, sa.encrypt, hex(sa.keyAuth!.key()), hex(sa.keyEncrypt!.key())], [SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC, ka, ke]);
  assert.deepEqual(sa.natT, { type: 2, sport: 1234, dport: 4500, oa: undefined });
  assert.equal(sa.src.port, 1234, 'KLIPS also sets the IPv4 source address\'s port');
  assert.equal(sa.dst.port, 0);
  assert.equal(sa.hard.addtime, 3600);
  allGet(all, {
    header: { type: SADB_UPDATE, satype: SADB_SATYPE_ESP, seq: 21, pid: 210 },
    sa: { spi: 0x500, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0, ref: 0 },
    lifetimeCurrent: lifetime({ addtime: 1000, packets: 0 }),
    addressSrc: out('192.0.2.1', 1234),
    addressDst: out('192.0.2.2'),
    identitySrc: { type: 1, id: 0n, data: '192.0.2.1/32' },
  }, 'ports-only UPDATE reply: the SA as it is now, LIFETIME_CURRENT, no NAT-T extensions');

  b.ok({ ...updateReq({ spi: 0x500, authBits: 0, encBits: 0 }), natTDport: { port: 4501 } });
  drain(...all);
  assert.deepEqual([sa.natT!.sport, sa.natT!.dport, sa.src.port, sa.dst.port], [1234, 4501, 1234, 4501]);
  // Zero ports are no port: this is a full UPDATE, which replaces algorithms and keys and drops NAT-T.
  b.ok({ ...updateReq({ spi: 0x500, encrypt: SADB_EALG_3DESCBC, encBits: 192 }), natTSport: { port: 0 } });
  drain(...all);
  const full = w.engine.sadb.get(espSaid(0x500))!;
  assert.notEqual(full, sa);
  assert.equal(full.encrypt, SADB_EALG_3DESCBC);
  assert.equal(full.keyEncrypt!.bits, 192);
  assert.equal(full.natT!.sport, 0);
  assert.equal(full.src.port, 0);
});

test('a ports-only UPDATE of a larval SA, or of an IPv6 SA; refusals before the ports path', () => {
  const { w, a, all } = setup();
  a.ok(getspiReq({ min: 0x600, max: 0x600 }));
  drain(...all);
  a.ok({ ...updateReq({ spi: 0x600, authBits: 0, encBits: 0 }), natTSport: { port: 4500 } });
  drain(...all);
  const larval = w.engine.sadb.get(espSaid(0x600))!;
  assert.equal(larval.state, SADB_SASTATE_LARVAL, 'only the ports change, the state too stays (KLIPS)');
  assert.equal(larval.natT!.sport, 4500);

  a.ok(addReq({ spi: 0x601, src: '2001:db8::1', dst: '2001:db8::2' }));
  a.ok({ ...updateReq({ spi: 0x601, src: '2001:db8::1', dst: '2001:db8::2', authBits: 0, encBits: 0 }), natTDport: { port: 4500 } });
  drain(...all);
  const v6 = w.engine.sadb.get(espSaid(0x601, '2001:db8::2'))!;
  assert.deepEqual([v6.natT!.dport, v6.dst.port], [4500, 0], 'an IPv6 address keeps its port');

  const ports = (o: Partial<MessageInput>) => ({ ...updateReq({ spi: 0x600, authBits: 0, encBits: 0 }), natTSport: { port: 99 }, ...o });
  expectRefusal(w, a, all, { ...ports({}), sa: { ...ports({}).sa!, spi: 0x6ff } }, ERRNO.ENOENT, 'ports-only UPDATE of a missing SA');
  expectRefusal(w, a, all, ports({ lifetimeCurrent: lifetime({}) }), ERRNO.EINVAL, 'with LIFETIME_CURRENT');
  expectRefusal(w, a, all, ports({ sensitivity: SENS }), ERRNO.EINVAL, 'with SENSITIVITY');
  expectRefusal(w, a, all, { ...ports({}), sa: { ...ports({}).sa!, state: SADB_SASTATE_LARVAL } }, ERRNO.EINVAL, 'an SA extension not MATURE');
});

test('NAT-T type: ESPINUDP_WITH_NON_IKE (1) and _NON_ESP (2) only; others EINVAL before anything else', () => {
  const { w, a, all } = setup();
  for (const type of [1, 2]) {
    a.ok(addReq({ spi: 0x700 + type, extra: { natTType: { type }, natTSport: { port: 4500 }, natTDport: { port: 4500 } } }));
    assert.equal(w.engine.sadb.get(espSaid(0x700 + type))!.natT!.type, type);
  }
  drain(...all);
  for (const type of [0, 3, 255]) {
    expectRefusal(w, a, all, addReq({ spi: 0x710, extra: { natTType: { type } } }), ERRNO.EINVAL, `NAT-T type ${type}`);
  }
  expectRefusal(w, a, all, addReq({ spi: 0x701, extra: { natTType: { type: 0 } } }), ERRNO.EINVAL, 'processed before the EEXIST check, as KLIPS');
  a.ok(addReq({ spi: 0x710 }));
  assert.equal(a.one().saref!.me, 3, 'refused ADDs took no SAref');
  assert.match(renderView('spi', w.engine)!.text, /^esp0x701@192\.0\.2\.2 .* natencap=nonike natsport=4500 natdport=4500 /m);
});

// ---------------------------------------------------------------- SA types

test('an SA type above 11 is EINVAL for every message; FLUSH of a type with no protocol too', () => {
  const { w, a, all } = setup();
  a.ok(addReq({ spi: 0x800 }));
  a.ok(addflowReq({ src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0', spi: 0x800 }));
  drain(...all);
  const withSatype = (m: MessageInput, satype: number): MessageInput => ({ ...m, header: { ...m.header, satype } });
  const requests: Array<[string, MessageInput]> = [
    ['FLUSH', hdrReq(SADB_FLUSH)],
    ['EXPIRE', hdrReq(SADB_EXPIRE, 1)],
    ['DUMP', hdrReq(SADB_DUMP)],
    ['REGISTER', hdrReq(SADB_REGISTER, 1)],
    ['X_PROMISC', hdrReq(SADB_X_PROMISC)],
    ['X_PCHANGE', hdrReq(SADB_X_PCHANGE)],
    ['X_DEBUG', debugReq({ netlink: 0x80000000, pfkey: 1 })],
    ['X_DELFLOW', delflowReq({ src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' })],
    ['ACQUIRE', acquireReq(SADB_SATYPE_ESP)],
    ['X_PLUMBIF', plumbReq(SADB_X_PLUMBIF, 5)],
    ['X_UNPLUMBIF', plumbReq(SADB_X_UNPLUMBIF, 0)],
  ];
  a.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  drain(...all);
  for (const [name, m] of requests) {
    for (const satype of [12, 99, 200, 255]) expectRefusal(w, a, all, withSatype(m, satype), ERRNO.EINVAL, `${name} satype ${satype}`);
  }
  for (const satype of [1, 4, 5, 6, 7, 8]) expectRefusal(w, a, all, hdrReq(SADB_FLUSH, satype), ERRNO.EINVAL, `FLUSH satype ${satype} (no protocol)`);
  for (const satype of [SADB_X_SATYPE_IPIP, 10, SADB_X_SATYPE_INT, SADB_SATYPE_AH]) {
    a.ok(hdrReq(SADB_FLUSH, satype), `FLUSH satype ${satype}`);
    drain(...all);
  }
  assert.equal(w.engine.sadb.size, 1, 'none of those held the ESP SA');
  a.ok(hdrReq(SADB_FLUSH, 0));
  drain(...all);
  assert.equal(w.engine.sadb.size, 0, 'satype 0: all');
});

// ---------------------------------------------------------------- client ACQUIRE

test('a client ACQUIRE: nobody registered is EPROTONOSUPPORT, a SENSITIVITY is EINVAL', () => {
  const { w, a, b, all } = setup();
  expectRefusal(w, a, all, acquireReq(SADB_SATYPE_ESP), ERRNO.EPROTONOSUPPORT, 'nobody registered');
  const errForm: MessageInput = { header: { type: SADB_ACQUIRE, satype: SADB_SATYPE_ESP, errno: ERRNO.ENOENT, seq: 5, pid: 50 } };
  expectRefusal(w, a, all, errForm, ERRNO.EPROTONOSUPPORT, 'the errno form too');
  b.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_AH));
  drain(...all);
  expectRefusal(w, a, all, acquireReq(SADB_SATYPE_ESP), ERRNO.EPROTONOSUPPORT, 'registered for another SA type only');
  expectRefusal(w, a, all, acquireReq(SADB_SATYPE_AH, { sensitivity: SENS }), ERRNO.EINVAL, 'with a SENSITIVITY');
  a.ok(acquireReq(SADB_SATYPE_AH));
  assert.equal(b.one('relayed').header.type, SADB_ACQUIRE);
  a.none();
});

// ---------------------------------------------------------------- replies as KLIPS builds them

test('GETSPI, full UPDATE and EXPIRE replies: 24-byte SA, LIFETIME_CURRENT always, no PROXY or NAT-T', async () => {
  const { w, a, b, all } = setup();
  a.ok(getspiReq({ min: 0x900, max: 0x900, seq: 1, pid: 11 }));
  allGet(all, {
    header: { type: SADB_GETSPI, satype: SADB_SATYPE_ESP, seq: 1, pid: 11 },
    sa: { spi: 0x900, replay: 0, state: SADB_SASTATE_LARVAL, auth: 0, encrypt: 0, flags: 0, ref: 0 },
    addressSrc: out('192.0.2.1'), addressDst: out('192.0.2.2'),
  }, 'GETSPI reply');
  w.advance(3);
  const upd = updateReq({ spi: 0x900, seq: 2, pid: 22, flags: 0x40, extra: { addressProxy: addr('192.0.2.9'), lifetimeSoft: lifetime({ bytes: 500 }) } });
  upd.addressSrc = addr('192.0.2.1', 0, 17);
  b.ok(upd);
  allGet(all, {
    header: { type: SADB_UPDATE, satype: SADB_SATYPE_ESP, seq: 2, pid: 22 },
    sa: { spi: 0x900, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0x40, ref: 0 },
    lifetimeCurrent: lifetime({ addtime: 1003, packets: 0 }),
    lifetimeSoft: lifetime({ bytes: 500, packets: 0 }),
    addressSrc: out('192.0.2.1'), addressDst: out('192.0.2.2'),
  }, 'UPDATE reply: LIFETIME_CURRENT, the request\'s LIFETIME_SOFT, addresses with protocol 0, no PROXY');
  assert.equal(w.engine.sadb.get(espSaid(0x900))!.proxy!.addr, '192.0.2.9', 'the proxy is kept, only not in the reply');
  b.ok(saidReq(SADB_GET, { spi: 0x900 }));
  assert.equal(b.one('GET').addressProxy!.addr, '192.0.2.9', 'GET shows it');
  b.ok(hdrReq(SADB_DUMP));
  await until(() => b.sock.room() < b.sock.rcvbuf);
  assert.equal(b.one('DUMP').addressProxy!.addr, '192.0.2.9', 'and DUMP');
  // UPDATE without lifetimes: none in the reply but LIFETIME_CURRENT.
  a.ok(updateReq({ spi: 0x900, seq: 3 }));
  const r = a.one();
  assert.deepEqual([r.lifetimeCurrent !== undefined, r.lifetimeHard, r.lifetimeSoft], [true, undefined, undefined]);
  drain(b);
  a.ok(addReq({ spi: 0x901, extra: { lifetimeHard: lifetime({ addtime: 5 }) } }));
  drain(...all);
  w.advance(5);
  w.engine.tick();
  const exp = a.one('EXPIRE');
  assert.equal(exp.header.type, SADB_EXPIRE);
  assert.deepEqual(exp.sa, { spi: 0x901, replay: 32, state: SADB_SASTATE_MATURE, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0, ref: 0 });
  drain(b);
});

test('X_ADDFLOW reply: the request\'s SA (24 bytes, algorithms only as the protocol has them), SRC/DST, flows alone', () => {
  const { w, a, all } = setup();
  const req = addflowReq({ src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0', proto: 6, sport: 1000, dport: 443, spi: 0xa00, seq: 8, pid: 80 });
  req.sa = { ...req.sa!, auth: 3, encrypt: 12, replay: 7 };
  req.addressSrc = addr('192.0.2.1', 0, 50);
  a.ok(req);
  allGet(all, {
    header: { type: SADB_X_ADDFLOW, satype: SADB_SATYPE_ESP, seq: 8, pid: 80 },
    sa: { spi: 0xa00, replay: 7, state: 0, auth: 3, encrypt: 12, flags: 0, ref: 0 },
    addressSrc: out('192.0.2.1'), addressDst: out('192.0.2.2'),
    addressSrcFlow: out('10.0.0.0'), addressDstFlow: out('10.0.1.0'),
    addressSrcMask: out('255.255.255.0'), addressDstMask: out('255.255.255.0'),
  }, 'ADDFLOW reply: no ports, no X_PROTOCOL');
  assert.deepEqual([...w.engine.spd.entries()][0].flow.dport, 443, 'the eroute itself keeps its ports');
  const shunt = addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_PASS, src: '2001:db8::', srcMask: 'ffff:ffff::', dst: '2001:db9::', dstMask: 'ffff:ffff::', seq: 9 });
  shunt.sa = { ...shunt.sa!, auth: 3, encrypt: 12 };
  a.ok(shunt);
  allGet(all, {
    header: { type: SADB_X_ADDFLOW, satype: SADB_X_SATYPE_INT, seq: 9, pid: 100 },
    sa: { spi: SPI_PASS, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref: 0 },
    addressDst: out('::'),
    addressSrcFlow: out('2001:db8::'), addressDstFlow: out('2001:db9::'),
    addressSrcMask: out('ffff:ffff::'), addressDstMask: out('ffff:ffff::'),
  }, 'a shunt\'s SA carries no algorithms; IPv6 flows');
});

test('X_DELFLOW reply: always an SA extension, flows alone; CLEARFLOW and POLICYONLY: the SA only', () => {
  const { w, a, all } = setup();
  const flow = { src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' };
  a.ok(addflowReq({ ...flow, proto: 17, dport: 53 }));
  a.ok(addflowReq({ ...flow, dst: '10.0.2.0' }));
  drain(...all);
  a.ok(delflowReq({ ...flow, proto: 17, dport: 53, seq: 40, pid: 4 }));
  allGet(all, {
    header: { type: SADB_X_DELFLOW, satype: SADB_SATYPE_ESP, seq: 40, pid: 4 },
    sa: { spi: 0, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref: 0 },
    addressSrcFlow: out('10.0.0.0'), addressDstFlow: out('10.0.1.0'),
    addressSrcMask: out('255.255.255.0'), addressDstMask: out('255.255.255.0'),
  }, 'DELFLOW reply without an SA in the request');
  const withSa = delflowReq({ ...flow, dst: '10.0.2.0', withSa: true, spi: 0x1000, seq: 41 });
  withSa.sa = { ...withSa.sa!, auth: 3, encrypt: 12 };
  a.ok(withSa);
  assert.deepEqual(a.one().sa, { spi: 0x1000, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref: 0 }, 'X_DELFLOW names no protocol: no algorithms echoed');
  drain(...all);
  a.ok(addflowReq({ ...flow }));
  drain(...all);
  const policyOnly = delflowReq({ ...flow, flags: SADB_X_SAFLAGS_POLICYONLY | SADB_X_SAFLAGS_CLEARFLOW, seq: 42 });
  a.ok(policyOnly);
  allGet(all, {
    header: { type: SADB_X_DELFLOW, satype: SADB_SATYPE_ESP, seq: 42, pid: 100 },
    sa: { spi: 0x1000, replay: 0, state: 0, auth: 0, encrypt: 0, flags: SADB_X_SAFLAGS_POLICYONLY | SADB_X_SAFLAGS_CLEARFLOW, ref: 0 },
  }, 'POLICYONLY reply');
  assert.equal(w.engine.spd.size, 1, 'POLICYONLY wins over CLEARFLOW: nothing deleted (KLIPS checks it first)');
});

// ---------------------------------------------------------------- X_GRPSA

test('X_GRPSA links an SA2 that already has a predecessor (it leaves that chain); the reply is the request\'s', () => {
  const { w, a, all } = setup();
  a.ok(addReq({ spi: 0xb00 }));
  a.ok(addReq({ spi: 0xb01, satype: SADB_X_SATYPE_IPIP }));
  a.ok(addReq({ spi: 0xb02, satype: SADB_X_SATYPE_IPIP }));
  a.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0xb01 }, { satype: SADB_SATYPE_ESP, spi: 0xb00 }));
  drain(...all);
  const req = grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0xb02 }, { satype: SADB_SATYPE_ESP, spi: 0xb00 }, { seq: 51, pid: 5 });
  req.sa = { ...req.sa!, auth: 3, encrypt: 12, flags: 0x20 };
  req.sa2 = { ...req.sa2!, auth: 3, encrypt: 12 };
  a.ok(req);
  allGet(all, {
    header: { type: SADB_X_GRPSA, satype: SADB_X_SATYPE_IPIP, seq: 51, pid: 5 },
    sa: { spi: 0xb02, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0x20, ref: 0 },
    addressDst: out('192.0.2.2'),
    satype2: { satype: SADB_SATYPE_ESP },
    sa2: { spi: 0xb00, replay: 0, state: 0, auth: 3, encrypt: 12, flags: 0, ref: 0 },
    addressDst2: out('192.0.2.2'),
  }, 'GRPSA reply: the SAs as the request gave them, with their protocols\' algorithms');
  const [esp, tun1, tun2] = [w.engine.sadb.get(espSaid(0xb00))!, w.engine.sadb.get(ipipSaid(0xb01))!, w.engine.sadb.get(ipipSaid(0xb02))!];
  assert.equal(tun2.next, esp);
  assert.equal(esp.prev, tun2);
  assert.equal(tun1.next, undefined, 'the former predecessor\'s chain ends');
  assert.deepEqual(renderView('spigrp', w.engine)!.text.split('\n').filter(Boolean).sort(), [
    'esp0xb00@192.0.2.2 ', 'tun0xb01@192.0.2.2 ', 'tun0xb02@192.0.2.2 esp0xb00@192.0.2.2 ',
  ]);
  expectRefusal(w, a, all, grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0xb02 }, { satype: SADB_SATYPE_ESP, spi: 0xb00 }), ERRNO.EEXIST, 'SA1 already has a next');
});

test('inbound SAs: dir=in when the destination is a host address; EMT_INBOUND in reply flags; X_GRPSA swaps an inbound pair', () => {
  const local = ['192.0.2.2', 'fe80::1%eth0', '2001:DB8::2'];
  const { w, a, b, all } = setup(local);
  a.ok(getspiReq({ min: 0xc00, max: 0xc00 }));
  assert.equal(a.one().sa!.flags, 0, 'GETSPI\'s reply carries no flags');
  drain(b);
  assert.equal(w.engine.sadb.get(espSaid(0xc00))!.dir, 'in');
  a.ok(updateReq({ spi: 0xc00, flags: 0x20 }));
  assert.equal(a.one().sa!.flags, 0x21, 'UPDATE\'s reply: the SA\'s flags with EMT_INBOUND (KLIPS keeps it in ips_flags)');
  a.ok(addReq({ spi: 0xc01, satype: SADB_X_SATYPE_IPIP }));
  assert.equal(a.one().sa!.flags, 1);
  a.ok(addReq({ spi: 0xc02, dst: '192.0.2.7' }));
  assert.equal(a.one().sa!.flags, 0, 'an outbound SA');
  a.ok(addReq({ spi: 0xc03, src: '2001:db8::1', dst: '2001:db8::2' }));
  assert.equal(a.one().sa!.flags, 1, 'IPv6, compared in canonical form');
  drain(b);
  assert.equal(w.engine.sadb.get(espSaid(0xc03, '2001:db8::2'))!.dir, 'in');
  b.ok(saidReq(SADB_GET, { spi: 0xc00 }));
  assert.equal(b.one().sa!.flags, 0x21);
  const spi = renderView('spi', w.engine)!;
  assert.match(spi.text, /^esp0xc00@192\.0\.2\.2 ESP_AES_HMAC_SHA1: dir=in  src=192\.0\.2\.1 ooowin=32 flags=0x20<> /m, '/proc hides EMT_INBOUND from flags=');
  assert.match(spi.text, /^esp0xc02@192\.0\.2\.7 ESP_AES_HMAC_SHA1: dir=out src=/m);
  assert.equal((spi.data as Array<{ said: string; dir: string }>).find((s) => s.said === 'esp.c00@192.0.2.2')!.dir, 'in');

  // userspace groups inner to outer (tun, esp); an inbound pair is linked esp -> tun, as KLIPS does.
  a.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0xc01 }, { satype: SADB_SATYPE_ESP, spi: 0xc00 }));
  drain(...all);
  const [esp, tun] = [w.engine.sadb.get(espSaid(0xc00))!, w.engine.sadb.get(ipipSaid(0xc01))!];
  assert.equal(esp.next, tun);
  assert.equal(tun.prev, esp);
  a.ok(addReq({ spi: 0xc04, satype: SADB_X_SATYPE_IPIP, dst: '192.0.2.7' }));
  a.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0xc04, dst: '192.0.2.7' }, { satype: SADB_SATYPE_ESP, spi: 0xc02, dst: '192.0.2.7' }));
  drain(...all);
  assert.equal(w.engine.sadb.get(ipipSaid(0xc04, '192.0.2.7'))!.next, w.engine.sadb.get(espSaid(0xc02, '192.0.2.7')), 'an outbound pair as given');

  // The host's addresses are watched: tick() reads them again after localAddressRefresh (5 s).
  local.push('192.0.2.7');
  a.ok(addReq({ spi: 0xc05, dst: '192.0.2.7' }));
  assert.equal(a.one().sa!.flags, 0, 'not yet re-read');
  w.advance(5);
  w.engine.tick();
  drain(...all);
  a.ok(addReq({ spi: 0xc06, dst: '192.0.2.7' }));
  assert.equal(a.one().sa!.flags, 1, 'a new address is seen after the refresh');
  assert.equal(w.engine.sadb.get(espSaid(0xc05, '192.0.2.7'))!.dir, 'out', 'an SA keeps the direction it was given');
  drain(b);
  const before = snapshot(w.engine);
  local.length = 0;
  w.advance(5);
  w.engine.tick();
  assert.equal(snapshot(w.engine), before);
  assert.deepEqual(w.engine.localAddresses.list(), []);
});

test('the engine reads the host\'s own addresses by default (os.networkInterfaces): loopback is local', () => {
  const w = world({ localAddresses: undefined });
  assert.ok(w.engine.localAddresses.has('127.0.0.1'));
  const c = w.client();
  c.ok(addReq({ spi: 0xd00, dst: '127.0.0.1' }));
  assert.equal(c.one().sa!.flags, 1);
});
