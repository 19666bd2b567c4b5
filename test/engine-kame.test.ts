/**
 * The KAME dialect in the engine, next to KLIPS's on the same tables: a policy added with
 * X_SPDADD is an eroute the KLIPS views show (%trap until its templates find an SA, then
 * the SA), an eroute added with X_ADDFLOW is a policy X_SPDDUMP lists (an SA group as
 * templates, shunts as none/discard), deletions and flushes cross over; ACQUIRE and EXPIRE
 * reach the sockets of both dialects, each in its own numbering; a template eroute carries
 * traffic through a tunnel-mode SA out and back in; send() fails as each dialect's kernel.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildMessage, parseMessage, headerOnly, ERRNO, AF_INET,
  SADB_ADD, SADB_GET, SADB_DELETE, SADB_REGISTER, SADB_EXPIRE, SADB_ACQUIRE, SADB_DUMP, SADB_GETSPI, SADB_UPDATE,
  SADB_X_SPDADD, SADB_X_SPDDUMP, SADB_X_SPDDELETE, SADB_X_SPDFLUSH, SADB_X_ADDFLOW, SADB_X_DELFLOW,
  SADB_X_SPDGET, SADB_X_SPDDELETE2, SADB_X_SPDUPDATE, SADB_X_SPDSETIDX, SADB_X_MIGRATE, IPSEC_LEVEL_USE, IPSEC_LEVEL_UNIQUE,
  SADB_SATYPE_ESP, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_INT, SADB_SASTATE_LARVAL, SADB_SASTATE_MATURE,
  SADB_SASTATE_DYING, SADB_SASTATE_DEAD, SADB_AALG_SHA1HMAC, SADB_X_EALG_AESCBC, SADB_X_SAFLAGS_CLEARFLOW,
  IPSEC_POLICY_IPSEC, IPSEC_POLICY_NONE, IPSEC_POLICY_DISCARD, IPSEC_DIR_OUTBOUND, IPSEC_DIR_INBOUND,
  IPSEC_MODE_TUNNEL, IPSEC_MODE_TRANSPORT, IPSEC_LEVEL_REQUIRE, IPSEC_ULPROTO_ANY, IPPROTO_ESP,
  SPI_TRAP, SPI_PASS, SPI_DROP,
  type Address, type KameMessage, type KameMessageInput, type IpsecRequest,
} from '../src/wire/index.js';
import { sendErrno } from '../src/engine/engine.js';
import { erouteView } from '../src/engine/views.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import { xmit } from '../src/dataplane/xmit.js';
import { rcv } from '../src/dataplane/rcv.js';
import {
  world, addReq, addflowReq, grpsaReq, hdrReq, saidReq, key, lifetime, snapshot, type World,
} from './engine-helpers.js';
import { ipv4, icmpEcho, udp } from './dataplane-helpers.js';

// ---------- a KAME client ----------

class Kame {
  readonly sock: PfkeySocket;
  constructor(w: World) {
    this.sock = new PfkeySocket(w.engine, { dialect: 'kame' });
  }
  send(m: KameMessageInput | Uint8Array): number {
    return this.sock.send(m instanceof Uint8Array ? m : buildMessage(m));
  }
  ok(m: KameMessageInput, what: string): void {
    assert.equal(this.send(m), 0, what);
  }
  /** Everything queued, each parsed as a kernel message of the KAME dialect. */
  read(): KameMessage[] {
    return this.sock.recvAll().map((b) => parseMessage(b, { dialect: 'kame', direction: 'out' }));
  }
  one(what: string): KameMessage {
    const all = this.read();
    assert.equal(all.length, 1, `${what}: ${all.map((m) => `${m.header.type}/${m.header.errno}`).join(', ')}`);
    return all[0];
  }
}

const v4 = (a: string, prefixlen = 32, proto = 0, port = 0): Address => ({ proto, prefixlen, family: AF_INET, port, addr: a });
const sock4 = (a: string) => ({ family: AF_INET, port: 0, addr: a });

function spdadd(src: string, spfx: number, dst: string, dpfx: number, requests: IpsecRequest[], o: { type?: number; dir?: number; seq?: number } = {}): KameMessageInput {
  return {
    dialect: 'kame',
    header: { type: SADB_X_SPDADD, satype: 0, seq: o.seq ?? 1, pid: 4242 },
    addressSrc: v4(src, spfx, IPSEC_ULPROTO_ANY),
    addressDst: v4(dst, dpfx, IPSEC_ULPROTO_ANY),
    policy: { type: o.type ?? IPSEC_POLICY_IPSEC, dir: o.dir ?? IPSEC_DIR_OUTBOUND, id: 0, priority: 0, requests },
  };
}

const TUNNEL_ESP: IpsecRequest = { proto: IPPROTO_ESP, mode: IPSEC_MODE_TUNNEL, level: IPSEC_LEVEL_REQUIRE, reqid: 0, src: sock4('192.0.2.1'), dst: sock4('192.0.2.2') };
const TRANSPORT_ESP: IpsecRequest = { proto: IPPROTO_ESP, mode: IPSEC_MODE_TRANSPORT, level: IPSEC_LEVEL_REQUIRE, reqid: 0 };

function kameAdd(spi: number, o: { src?: string; dst?: string; mode?: number; seq?: number; soft?: number; hard?: number } = {}): KameMessageInput {
  const m: KameMessageInput = {
    dialect: 'kame',
    header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: o.seq ?? 2, pid: 4242 },
    sa: { spi, replay: 32, state: SADB_SASTATE_LARVAL, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_X_EALG_AESCBC, flags: 0 },
    addressSrc: v4(o.src ?? '192.0.2.1'),
    addressDst: v4(o.dst ?? '192.0.2.2'),
    keyAuth: key(160, 0x11),
    keyEncrypt: key(128, 0x77),
    xSa2: { mode: o.mode ?? IPSEC_MODE_TUNNEL, sequence: 0, reqid: 0 },
  };
  if (o.hard !== undefined) {
    m.lifetimeHard = lifetime({ addtime: o.hard });
    m.lifetimeSoft = lifetime({ addtime: o.soft ?? 0 });
  }
  return m;
}

/** The eroute view's lines without the counts and padding. */
const eroutes = (w: World) => erouteView(w.engine).text.split('\n').filter(Boolean).map((l) => l.replace(/^\d+\s+/, '').replace(/\s+/g, ' '));

// ---------- the mapping, both ways ----------

test('X_SPDADD is an eroute: klips eroute shows %trap until an SA answers its template, then that SA; KLIPS sockets hear X_ADDFLOW', () => {
  const w = world();
  const kame = new Kame(w);
  const klips = w.client();
  kame.ok(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [TUNNEL_ESP]), 'SPDADD');
  const reply = kame.one('SPDADD reply');
  assert.equal(reply.header.type, SADB_X_SPDADD);
  assert.equal(reply.policy!.id, 1, "the first outbound policy's index, as Linux numbers it");
  assert.deepEqual(reply.policy!.requests, [TUNNEL_ESP]);
  assert.deepEqual(reply.extOrder, [5, 6, 3, 4, 2, 18], "pfkey_xfrm_policy2msg's order");

  const f = klips.one('the KLIPS notice');
  assert.equal(f.header.type, SADB_X_ADDFLOW);
  assert.equal(f.header.satype, SADB_X_SATYPE_INT);
  assert.equal(f.sa!.spi, SPI_TRAP);
  assert.deepEqual([f.addressSrcFlow!.addr, f.addressSrcMask!.addr, f.addressDstFlow!.addr, f.addressDstMask!.addr], ['10.1.0.0', '255.255.0.0', '10.2.0.0', '255.255.0.0']);

  assert.deepEqual(eroutes(w), ['10.1.0.0/16 -> 10.2.0.0/16 => %trap']);
  const row = (erouteView(w.engine).data as Array<Record<string, any>>)[0];
  assert.deepEqual(row.policy, { id: 1, type: 'ipsec', priority: 0, templates: ['esp/tunnel/192.0.2.1-192.0.2.2/require'] });

  // A tunnel-mode ESP SA between the template's endpoints answers it.
  kame.ok(kameAdd(0x1234), 'ADD');
  kame.read();
  assert.deepEqual(eroutes(w), ['10.1.0.0/16 -> 10.2.0.0/16 => esp0x1234@192.0.2.2']);
  // The KLIPS socket heard of the SA as KLIPS's ADD (its parser's rules hold).
  const add = klips.one('the KLIPS ADD notice');
  assert.equal(add.header.type, SADB_ADD);
  assert.equal(add.sa!.spi, 0x1234);
  assert.equal(add.sa!.ref, 0, "KLIPS's 24-byte SA extension");
});

test('X_ADDFLOW is a policy: X_SPDDUMP lists KLIPS eroutes (an SA group as templates, shunts as none and discard), newest first', () => {
  const w = world();
  const klips = w.client();
  const kame = new Kame(w);
  klips.ok(addReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x100, auth: 0, encrypt: 0, authBits: 0, encBits: 0 }), 'ADD tun');
  klips.ok(addReq({ spi: 0x101 }), 'ADD esp');
  klips.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x100 }, { satype: SADB_SATYPE_ESP, spi: 0x101 }), 'GRPSA');
  klips.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x100, src: '10.1.0.0', srcMask: '255.255.255.0', dst: '10.2.0.0', dstMask: '255.255.255.0' }), 'ADDFLOW tun');
  klips.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_PASS, src: '10.9.0.0', srcMask: '255.255.0.0', dst: '0.0.0.0', dstMask: '0.0.0.0' }), 'ADDFLOW %pass');
  klips.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_DROP, src: '10.8.0.0', srcMask: '255.255.0.0', dst: '0.0.0.0', dstMask: '0.0.0.0', proto: 17, dport: 53 }), 'ADDFLOW %drop');
  // The KAME socket heard each SA and each eroute (Linux tells PF_KEY of what others install).
  const heard = kame.read().map((m) => m.header.type);
  assert.deepEqual(heard, [SADB_ADD, SADB_X_SPDADD, SADB_X_SPDADD, SADB_X_SPDADD], 'the ESP SA (the IPIP one has no KAME SA type) and three policies');

  kame.ok({ dialect: 'kame', header: { type: SADB_X_SPDDUMP, satype: 0, seq: 9, pid: 7 } }, 'SPDDUMP');
  const dump = kame.read();
  assert.deepEqual(dump.map((m) => m.header.seq), [1, 2, 0], 'numbered 1, 2, …, 0 as Linux');
  assert.deepEqual(dump.map((m) => [m.policy!.id, m.policy!.type, m.policy!.dir]), [
    [17, IPSEC_POLICY_DISCARD, IPSEC_DIR_OUTBOUND],
    [9, IPSEC_POLICY_NONE, IPSEC_DIR_OUTBOUND],
    [1, IPSEC_POLICY_IPSEC, IPSEC_DIR_OUTBOUND],
  ]);
  // tun0x100 → esp0x101: one ESP tunnel template between the IPIP SA's endpoints.
  assert.deepEqual(dump[2].policy!.requests, [TUNNEL_ESP]);
  assert.deepEqual(dump[2].addressSrc, v4('10.1.0.0', 24, IPSEC_ULPROTO_ANY));
  // The %drop eroute's protocol and port are the selector's.
  assert.deepEqual(dump[0].addressDst, v4('0.0.0.0', 0, 17, 53));
});

test("X_SPDDELETE of a KLIPS eroute, and X_SPDFLUSH, reach KLIPS's sockets as X_DELFLOW; in/fwd policies are not eroutes", () => {
  const w = world();
  const klips = w.client();
  const kame = new Kame(w);
  klips.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_PASS, src: '10.9.0.0', srcMask: '255.255.0.0', dst: '10.7.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW');
  klips.read();
  kame.read();
  kame.ok({ ...spdadd('10.9.0.0', 16, '10.7.0.0', 16, []), header: { type: SADB_X_SPDDELETE, satype: 0, seq: 3, pid: 1 }, policy: { type: 0, dir: IPSEC_DIR_OUTBOUND, id: 0, priority: 0, requests: [] } }, 'SPDDELETE');
  assert.equal(kame.one('SPDDELETE reply').header.type, SADB_X_SPDDELETE);
  const del = klips.one('the KLIPS notice');
  assert.equal(del.header.type, SADB_X_DELFLOW);
  assert.equal(del.addressSrcFlow!.addr, '10.9.0.0');
  assert.equal(w.engine.spd.size, 0);

  // An inbound policy is kept and dumped, but is no eroute.
  kame.ok(spdadd('10.2.0.0', 16, '10.1.0.0', 16, [TUNNEL_ESP], { dir: IPSEC_DIR_INBOUND }), 'SPDADD in');
  assert.equal(kame.one('SPDADD in').policy!.id, 8 + 0, 'an inbound index (direction 0 in the low bits)');
  assert.equal(w.engine.spd.size, 0);
  klips.none('no KLIPS notice for an inbound policy');
  kame.ok(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [TUNNEL_ESP]), 'SPDADD out');
  kame.read();
  klips.read();
  kame.ok({ dialect: 'kame', header: { type: SADB_X_SPDFLUSH, satype: 0, seq: 5, pid: 1 } }, 'SPDFLUSH');
  assert.deepEqual(kame.read().map((m) => m.header.type), [SADB_X_SPDFLUSH, SADB_X_SPDFLUSH], "Linux's sender hears a flush twice");
  const clear = klips.read().filter((m) => m.header.type === SADB_X_DELFLOW);
  assert.equal(clear.length, 1);
  assert.equal(clear[0].sa!.flags, SADB_X_SAFLAGS_CLEARFLOW);
  assert.equal(w.engine.spd.policyCount, 0);
});

// ---------- ACQUIRE and EXPIRE to both dialects ----------

test('ACQUIRE from a template eroute reaches both dialects once, each in its numbering; GETSPI with its seq takes the larval SA over', () => {
  const w = world();
  const kameReg = new Kame(w);
  const kameIdle = new Kame(w);
  const klipsReg = w.client();
  kameReg.ok({ dialect: 'kame', header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 5 } }, 'REGISTER kame');
  klipsReg.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP), 'REGISTER klips');
  kameIdle.ok(spdadd('127.0.0.1', 32, '127.0.0.2', 32, [TRANSPORT_ESP]), 'SPDADD');
  for (const c of [kameReg, kameIdle]) c.read();
  klipsReg.read();

  const packet = ipv4({ src: '127.0.0.1', dst: '127.0.0.2', proto: 17, payload: udp(40000, 9, Uint8Array.of(1, 2, 3)) });
  const r = xmit(w.engine, packet);
  assert.equal(r.ok, false);
  const acq = kameReg.one('KAME ACQUIRE');
  assert.equal(acq.header.type, SADB_ACQUIRE);
  assert.equal(acq.header.satype, SADB_SATYPE_ESP);
  assert.equal(acq.header.pid, 0);
  assert.deepEqual(acq.extOrder, [5, 6, 18, 13], "pfkey_send_acquire's order");
  assert.deepEqual([acq.addressSrc!.addr, acq.addressDst!.addr, acq.addressSrc!.prefixlen], ['127.0.0.1', '127.0.0.2', 32]);
  assert.deepEqual(acq.policy, { type: IPSEC_POLICY_IPSEC, dir: IPSEC_DIR_OUTBOUND, id: 1, priority: 0, requests: [] });
  assert.deepEqual(acq.proposal, { replay: 32, combs: [] });
  const k = klipsReg.one('KLIPS ACQUIRE');
  assert.equal(k.header.type, SADB_ACQUIRE);
  assert.equal(k.header.seq, acq.header.seq, 'one ACQUIRE, one seq, two numberings');
  assert.equal(k.proposal!.combs.length, 3, "KLIPS's proposal");
  assert.equal(kameIdle.read().length, 0, 'an unregistered KAME socket hears no ACQUIRE');

  // While it is under way (a larval SA stands for it), packets are dropped without another ACQUIRE.
  assert.equal(xmit(w.engine, packet).ok, false);
  assert.equal(kameReg.read().length + klipsReg.raw().length, 0);
  kameIdle.ok({ dialect: 'kame', header: { type: SADB_DUMP, satype: 0, seq: 3, pid: 5 } }, 'DUMP');
  const larval = kameIdle.one('DUMP of the larval SA');
  assert.deepEqual([larval.sa!.spi, larval.sa!.state, larval.lifetimeHard!.addtime], [0, SADB_SASTATE_LARVAL, 30n]);

  // GETSPI with the ACQUIRE's seq turns that larval SA into one with an SPI.
  kameReg.ok({
    dialect: 'kame', header: { type: SADB_GETSPI, satype: SADB_SATYPE_ESP, seq: acq.header.seq, pid: 5 },
    addressSrc: v4('127.0.0.1'), addressDst: v4('127.0.0.2'), spirange: { min: 0x7000, max: 0x7000 },
  }, 'GETSPI');
  assert.equal(kameReg.one('GETSPI reply').sa!.spi, 0x7000);
  assert.equal(w.engine.sadb.size, 1, 'the placeholder was taken over, not kept beside');
  kameReg.ok({ ...kameAdd(0x7000, { src: '127.0.0.1', dst: '127.0.0.2', mode: IPSEC_MODE_TRANSPORT, seq: acq.header.seq }), header: { type: SADB_UPDATE, satype: SADB_SATYPE_ESP, seq: acq.header.seq, pid: 5 } }, 'UPDATE');
  assert.equal(kameReg.one('UPDATE').sa!.state, SADB_SASTATE_MATURE);
  const sent = xmit(w.engine, packet);
  assert.ok(sent.ok && sent.action === 'ipsec', 'the packet now goes through the SA');
  assert.equal(sent.ok && sent.out.packet[9], IPPROTO_ESP, 'ESP in transport mode');
});

test('ACQUIRE from a KLIPS %trap eroute also reaches the KAME sockets, with the eroute as the policy', () => {
  const w = world();
  const kame = new Kame(w);
  kame.ok({ dialect: 'kame', header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 5 } }, 'REGISTER');
  kame.read();
  const klips = w.client();
  klips.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_TRAP, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW %trap');
  const trapId = kame.one('X_SPDADD notice').policy!.id;
  xmit(w.engine, ipv4({ src: '10.1.0.5', dst: '10.2.0.7', payload: icmpEcho(Uint8Array.of(1)) }));
  const msgs = kame.read();
  const acq = msgs.find((m) => m.header.type === SADB_ACQUIRE)!;
  assert.ok(acq, 'a KAME ACQUIRE, though no KLIPS socket registered');
  assert.deepEqual([acq.addressSrc!.addr, acq.addressDst!.addr, acq.policy!.id], ['10.1.0.5', '10.2.0.7', trapId]);
  // KLIPS's %trap then holds the host pair: the KAME socket hears of the %hold eroute as a discard policy.
  const hold = msgs.find((m) => m.header.type === SADB_X_SPDADD)!;
  assert.equal(hold.policy!.type, IPSEC_POLICY_DISCARD);
});

test('EXPIRE reaches both dialects: KLIPS to every KLIPS socket, Linux to the registered KAME sockets (no keys, seq 0; DYING, then DEAD)', () => {
  const w = world();
  const kameReg = new Kame(w);
  const kameIdle = new Kame(w);
  const klips = w.client();
  kameReg.ok({ dialect: 'kame', header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 5 } }, 'REGISTER');
  kameIdle.ok(kameAdd(0x3000, { soft: 10, hard: 20 }), 'ADD');
  for (const c of [kameReg, kameIdle]) c.read();
  klips.read();
  w.advance(10);
  w.engine.tick();
  const soft = kameReg.one('soft EXPIRE');
  assert.deepEqual([soft.header.type, soft.header.seq, soft.header.pid, soft.sa!.state], [SADB_EXPIRE, 0, 0, SADB_SASTATE_DYING]);
  assert.ok(soft.lifetimeSoft && !soft.lifetimeHard && !soft.keyAuth && !soft.keyEncrypt);
  const ks = klips.one('KLIPS soft EXPIRE');
  assert.equal(ks.header.type, SADB_EXPIRE);
  assert.equal(ks.lifetimeSoft!.packets, 0, "KLIPS's 40-byte lifetime");
  assert.equal(kameIdle.read().length, 0);
  w.advance(10);
  w.engine.tick();
  const hard = kameReg.one('hard EXPIRE');
  assert.deepEqual([hard.sa!.state, hard.lifetimeHard!.addtime], [SADB_SASTATE_DEAD, 20n]);
  assert.equal(klips.one('KLIPS hard EXPIRE').header.type, SADB_EXPIRE);
  assert.equal(w.engine.sadb.size, 0);
});

// ---------- traffic through a KAME policy ----------

test('a template eroute carries a packet through a tunnel-mode SA, and the SA takes it back in', () => {
  const w = world();
  const kame = new Kame(w);
  kame.ok(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [TUNNEL_ESP]), 'SPDADD');
  kame.ok(kameAdd(0x4242), 'ADD');
  const inner = ipv4({ src: '10.1.0.5', dst: '10.2.0.7', payload: icmpEcho(Uint8Array.of(9, 8, 7)) });
  const out = xmit(w.engine, inner);
  assert.ok(out.ok && out.action === 'ipsec', JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.out.dst, '192.0.2.2');
  assert.equal(out.out.packet[9], IPPROTO_ESP);
  assert.equal(out.out.packet.readUInt32BE(20), 0x4242, 'the SA\'s SPI');
  const back = rcv(w.engine, out.out.packet);
  assert.ok(back.ok && back.kind === 'ipsec', JSON.stringify(back));
  if (back.ok) assert.equal(Buffer.from(back.packet).toString('hex'), inner.toString('hex'), 'the inner packet, its outer header gone');
});

// ---------- send() per dialect, cross-dialect SA notices ----------

test("send() fails as each dialect's kernel: KLIPS with every refusal's errno, Linux only at the header", () => {
  const w = world();
  const klips = w.client();
  const kame = new Kame(w);
  // GET of a missing SA: KLIPS's send() fails ESRCH; Linux's succeeds and the errno comes in the reply.
  assert.equal(klips.send(saidReq(SADB_GET, { spi: 0x999 })), ERRNO.ESRCH);
  assert.equal(klips.one('KLIPS broadcasts its errno reply').header.errno, ERRNO.ESRCH);
  const get: KameMessageInput = {
    dialect: 'kame', header: { type: SADB_GET, satype: SADB_SATYPE_ESP, seq: 7, pid: 1 },
    sa: { spi: 0x999, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 }, addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
  };
  assert.equal(kame.send(get), 0);
  assert.deepEqual(kame.read().map((m) => [m.header.type, m.header.errno, m.header.seq]), [[SADB_GET, ERRNO.ESRCH, 7]]);
  klips.none('a KAME error goes to its sender alone');
  // A bad version fails send() in both, with no message.
  const v3 = headerOnly({ type: SADB_GET, satype: 3 });
  v3[0] = 3;
  assert.equal(kame.send(v3), ERRNO.EINVAL);
  assert.equal(kame.read().length, 0);
  // Types 20-24 are Linux's; KLIPS's sendmsg refuses them (its last is 19).
  const spdflush = headerOnly({ type: SADB_X_SPDFLUSH });
  assert.equal(klips.send(headerOnly({ type: 20 })), ERRNO.EINVAL);
  assert.equal(kame.send(spdflush), 0);
  const verdict = w.engine.handle(kame.sock, buildMessage(get));
  assert.deepEqual([verdict.errno, verdict.stage], [ERRNO.ESRCH, 'message']);
  assert.equal(sendErrno('kame', verdict), 0);
  assert.equal(sendErrno('klips', verdict), ERRNO.ESRCH);
  assert.equal(sendErrno('kame', { errno: ERRNO.EMSGSIZE, stage: 'header', why: '' }), ERRNO.EMSGSIZE);
});

test('SAs cross over: a KLIPS ADD reaches KAME sockets as Linux notifies (keys, X_SA2), a KAME DELETE reaches KLIPS sockets as KLIPS replies', () => {
  const w = world();
  const klips = w.client();
  const kame = new Kame(w);
  klips.ok(addReq({ spi: 0x5000 }), 'KLIPS ADD');
  klips.read();
  const add = kame.one('KAME ADD notice');
  assert.deepEqual([add.header.type, add.sa!.spi, add.sa!.state, add.keyAuth!.bits, add.keyEncrypt!.bits], [SADB_ADD, 0x5000, SADB_SASTATE_MATURE, 160, 128]);
  assert.deepEqual(add.xSa2, { mode: IPSEC_MODE_TRANSPORT, sequence: 0, reqid: 0 });
  kame.ok({
    dialect: 'kame', header: { type: SADB_DELETE, satype: SADB_SATYPE_ESP, seq: 8, pid: 1 },
    sa: { spi: 0x5000, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 }, addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
  }, 'KAME DELETE');
  assert.equal(kame.one('DELETE').sa!.state, SADB_SASTATE_DEAD);
  const del = klips.one('KLIPS DELETE notice');
  assert.deepEqual([del.header.type, del.sa!.spi, del.header.seq], [SADB_DELETE, 0x5000, 8]);
  assert.equal(w.engine.sadb.size, 0);
});

test("Linux's SPD rules: ELOOP past six templates, optional tunnel templates refused outbound, unique reqids chosen above 0x3fff, indexes kept by X_SPDUPDATE; refusals change nothing", () => {
  const w = world();
  const kame = new Kame(w);
  const errnoOf = (m: KameMessageInput) => {
    assert.equal(kame.send(m), 0, 'send() succeeds: the errno travels in the reply');
    const r = kame.one('reply');
    return r.header.errno;
  };
  const before = snapshot(w.engine);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, Array(7).fill(TRANSPORT_ESP))), ERRNO.ELOOP);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [{ ...TUNNEL_ESP, level: IPSEC_LEVEL_USE }])), ERRNO.EINVAL);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [{ ...TRANSPORT_ESP, mode: 0 }])), ERRNO.EINVAL);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [{ ...TUNNEL_ESP, src: undefined, dst: undefined }])), ERRNO.EINVAL);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [{ ...TRANSPORT_ESP, proto: 4 }])), ERRNO.EINVAL);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [], { type: 3 })), ERRNO.EINVAL, 'ENTRUST is a socket policy');
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [], { dir: 4 })), ERRNO.EINVAL);
  assert.equal(errnoOf({ dialect: 'kame', header: { type: SADB_X_SPDGET, satype: 0, seq: 1, pid: 1 }, policy: { type: 0, dir: 0, id: 3, priority: 0, requests: [] } }), ERRNO.EINVAL, 'index 3 names direction 3');
  assert.equal(errnoOf({ dialect: 'kame', header: { type: SADB_X_SPDDELETE2, satype: 0, seq: 1, pid: 1 }, policy: { type: 0, dir: 0, id: 9, priority: 0, requests: [] } }), ERRNO.ENOENT);
  assert.equal(errnoOf({ ...spdadd('10.1.0.0', 16, '10.2.0.0', 16, []), header: { type: SADB_X_MIGRATE, satype: 0, seq: 1, pid: 1 } }), ERRNO.ENOPROTOOPT);
  assert.equal(snapshot(w.engine), before, 'no refusal changed a table');

  // level unique without a reqid: Linux's gen_reqid picks the first above IPSEC_MANUAL_REQID_MAX.
  kame.ok({ ...spdadd('10.1.0.0', 16, '10.2.0.0', 16, [{ ...TUNNEL_ESP, level: IPSEC_LEVEL_UNIQUE }]), header: { type: SADB_X_SPDSETIDX, satype: 0, seq: 2, pid: 1 } }, 'SPDSETIDX');
  const added = kame.one('SETIDX reply');
  assert.equal(added.header.type, SADB_X_SPDADD, 'SETIDX is answered as X_SPDADD, as Linux');
  assert.deepEqual([added.policy!.requests[0].level, added.policy!.requests[0].reqid], [IPSEC_LEVEL_UNIQUE, 0x4000]);
  assert.equal(errnoOf(spdadd('10.1.0.0', 16, '10.2.0.0', 16, [TUNNEL_ESP])), ERRNO.EEXIST);
  kame.ok({ ...spdadd('10.1.0.0', 16, '10.2.0.0', 16, [TRANSPORT_ESP]), header: { type: SADB_X_SPDUPDATE, satype: 0, seq: 3, pid: 1 } }, 'SPDUPDATE');
  const updated = kame.one('SPDUPDATE reply');
  assert.deepEqual([updated.header.type, updated.policy!.id], [SADB_X_SPDUPDATE, added.policy!.id], 'the index is kept');
  assert.deepEqual(updated.policy!.requests, [TRANSPORT_ESP]);
});

test("an SA a KAME client added reads back in both dialects: KAME's GET with its PROXY prefix, KLIPS's GET by KLIPS's rules", () => {
  const w = world();
  const kame = new Kame(w);
  const klips = w.client();
  kame.ok({ ...kameAdd(0x6000, { mode: IPSEC_MODE_TRANSPORT }), addressProxy: v4('10.1.0.0', 24, 6) }, 'ADD with PROXY');
  kame.read();
  klips.read();
  kame.ok({
    dialect: 'kame', header: { type: SADB_GET, satype: SADB_SATYPE_ESP, seq: 4, pid: 1 },
    sa: { spi: 0x6000, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 }, addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
  }, 'KAME GET');
  const g = kame.one('KAME GET');
  assert.deepEqual(g.addressProxy, { ...v4('10.1.0.0', 24, IPSEC_ULPROTO_ANY) }, "Linux's selector: the PROXY's address and prefix, protocol any");
  assert.equal(g.sa!.replay, 32);
  klips.ok(saidReq(SADB_GET, { spi: 0x6000 }), 'KLIPS GET');
  const k = klips.one('KLIPS GET, parsed by KLIPS\'s outbound rules');
  assert.deepEqual([k.addressProxy!.addr, k.addressProxy!.prefixlen], ['10.1.0.0', 0]);
  assert.equal(k.sa!.ref, 0);
});
