/**
 * SA groups and eroutes through the engine: X_GRPSA, X_ADDFLOW (SAs, every shunt,
 * REPLACEFLOW, INFLOW), X_DELFLOW (one, CLEARFLOW), X_PCHANGE notices, and the packet
 * path's engine.route() picking the most specific eroute and counting packets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, SADB_X_GRPSA, SADB_X_ADDFLOW, SADB_X_DELFLOW, SADB_X_PCHANGE, SADB_SATYPE_ESP,
  SADB_SATYPE_AH, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_COMP, SADB_X_SATYPE_INT,
  SADB_X_SAFLAGS_REPLACEFLOW, SADB_X_SAFLAGS_CLEARFLOW, SADB_X_SAFLAGS_INFLOW,
  SADB_X_SAFLAGS_POLICYONLY, SADB_X_CALG_DEFLATE, SPI_PASS, SPI_DROP, SPI_REJECT, SPI_HOLD,
  SPI_TRAP, SPI_TRAPSUBNET, IPPROTO_INT, IPPROTO_ESP, AF_INET, AF_INET6, type MessageInput,
} from '../src/wire/index.js';
import {
  world, addReq, hdrReq, grpsaReq, addflowReq, delflowReq, clearflowReq, drain, expectRefusal,
  espSaid, ipipSaid, compSaid, pkt, addr, type Client, type World, type FlowOpts,
} from './engine-helpers.js';

function three(): { w: World; a: Client; b: Client; c: Client; all: Client[] } {
  const w = world();
  const a = w.client();
  const b = w.client();
  const c = w.client();
  return { w, a, b, c, all: [a, b, c] };
}

const NET_A = { src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' };

// ---------------------------------------------------------------- X_GRPSA

test('X_GRPSA links two and three SAs; the reply goes to all; ungroup with no SA2', () => {
  const { w, a, all } = three();
  a.ok(addReq({ spi: 0x100 }));
  a.ok(addReq({ spi: 0x101, satype: SADB_X_SATYPE_IPIP }));
  a.ok(addReq({ spi: 0x102, satype: SADB_X_SATYPE_COMP, encrypt: SADB_X_CALG_DEFLATE }));
  drain(...all);
  a.ok(grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x100 }, { satype: SADB_X_SATYPE_IPIP, spi: 0x101 }, { seq: 50, pid: 5 }));
  for (const x of all) {
    const r = x.one('X_GRPSA');
    assert.equal(r.header.type, SADB_X_GRPSA);
    assert.equal(r.header.seq, 50);
    assert.equal(r.sa!.spi, 0x100);
    assert.equal(r.sa2!.spi, 0x101);
    assert.equal(r.satype2!.satype, SADB_X_SATYPE_IPIP);
    assert.equal(r.addressDst2!.addr, '192.0.2.2');
  }
  const sadb = w.engine.sadb;
  const esp = sadb.get(espSaid(0x100))!;
  const ipip = sadb.get(ipipSaid(0x101))!;
  const comp = sadb.get(compSaid(0x102))!;
  assert.equal(esp.next, ipip);
  assert.equal(ipip.prev, esp);
  a.ok(grpsaReq({ satype: SADB_X_SATYPE_COMP, spi: 0x102 }, { satype: SADB_SATYPE_ESP, spi: 0x100 }));
  drain(...all);
  assert.deepEqual(sadb.group(ipip).map((s) => s.said.spi), [0x102, 0x100, 0x101], 'comp -> esp -> ipip');
  // Ungroup: X_GRPSA naming the head with no SA2.
  a.ok(grpsaReq({ satype: SADB_X_SATYPE_COMP, spi: 0x102 }));
  for (const x of all) assert.equal(x.one('ungroup').sa2, undefined);
  for (const s of [esp, ipip, comp]) {
    assert.equal(s.next, undefined);
    assert.equal(s.prev, undefined);
  }
  assert.equal(sadb.size, 3, 'ungrouping deletes nothing');
});

test('X_GRPSA refusals: missing SA ENOENT, first already linked or a cycle EEXIST, half an SA2 ENOENT', () => {
  const { w, a, all } = three();
  a.ok(addReq({ spi: 0x200 }));
  a.ok(addReq({ spi: 0x201, satype: SADB_X_SATYPE_IPIP }));
  a.ok(addReq({ spi: 0x202, satype: SADB_SATYPE_AH }));
  a.ok(grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x200 }, { satype: SADB_X_SATYPE_IPIP, spi: 0x201 }));
  drain(...all);
  const esp = { satype: SADB_SATYPE_ESP, spi: 0x200 };
  const ipip = { satype: SADB_X_SATYPE_IPIP, spi: 0x201 };
  const ah = { satype: SADB_SATYPE_AH, spi: 0x202 };
  expectRefusal(w, a, all, grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x999 }, ipip), ERRNO.ENOENT, 'first SA missing');
  expectRefusal(w, a, all, grpsaReq(ah, { satype: SADB_SATYPE_ESP, spi: 0x999 }), ERRNO.ENOENT, 'second SA missing');
  expectRefusal(w, a, all, grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x999 }), ERRNO.ENOENT, 'ungroup of a missing SA');
  expectRefusal(w, a, all, grpsaReq(esp, ah), ERRNO.EEXIST, 'first already has a next');
  expectRefusal(w, a, all, grpsaReq(ipip, esp), ERRNO.EEXIST, 'a cycle');
  expectRefusal(w, a, all, grpsaReq(ah, ah), ERRNO.EEXIST, 'an SA with itself');
  // Part of a second SAID names no SA: KLIPS looks it up as it is and finds nothing.
  const full = grpsaReq(ah, { satype: SADB_SATYPE_ESP, spi: 0x200 });
  for (const drop of ['sa2', 'satype2', 'addressDst2'] as const) {
    const half: MessageInput = { ...full };
    delete half[drop];
    expectRefusal(w, a, all, half, ERRNO.ENOENT, `second SA without ${drop}`);
  }
});

// ---------------------------------------------------------------- X_ADDFLOW / X_DELFLOW

test('X_ADDFLOW installs an eroute to an SA; the reply (to all) echoes the flow', () => {
  const { w, a, all } = three();
  a.ok(addReq({ spi: 0x300 }));
  drain(...all);
  a.ok(addflowReq({ ...NET_A, spi: 0x300, proto: 6, dport: 443, seq: 60, pid: 6 }));
  for (const x of all) {
    const r = x.one('X_ADDFLOW');
    assert.equal(r.header.type, SADB_X_ADDFLOW);
    assert.equal(r.header.seq, 60);
    assert.equal(r.header.pid, 6);
    assert.equal(r.sa!.spi, 0x300);
    assert.equal(r.addressSrcFlow!.addr, '10.0.0.0');
    assert.equal(r.addressDstFlow!.port, 0, 'KLIPS\'s reply carries the flow addresses alone');
    assert.equal(r.addressDstMask!.addr, '255.255.255.0');
    assert.equal(r.protocol, undefined, 'and no X_PROTOCOL');
  }
  const [e] = [...w.engine.spd.entries()];
  assert.deepEqual(e.flow, { family: AF_INET, src: '10.0.0.0', srcPrefix: 24, dst: '10.0.1.0', dstPrefix: 24, proto: 6, sport: 0, dport: 443 });
  assert.deepEqual(e.said, espSaid(0x300));
  assert.equal(e.pid, 6);
  assert.equal(w.engine.sadb.get(espSaid(0x300))!.current.allocations, 1, 'the eroute is the SA\'s one allocation');
  // An eroute may point to an SA that does not exist (yet), as in KLIPS.
  a.ok(addflowReq({ src: '10.0.2.0', srcMask: '255.255.255.0', dst: '10.0.3.0', dstMask: '255.255.255.0', spi: 0x301 }));
  assert.equal(w.engine.spd.size, 2);
});

test('X_ADDFLOW to every shunt: %pass %drop %reject %hold %trap %trapsubnet (satype INT, spi 256..261, dst 0.0.0.0)', () => {
  const { w, a, all } = three();
  const shunts = [SPI_PASS, SPI_DROP, SPI_REJECT, SPI_HOLD, SPI_TRAP, SPI_TRAPSUBNET];
  shunts.forEach((spi, i) => {
    a.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi, src: '10.1.0.0', srcMask: '255.255.0.0', dst: `172.16.${i}.0`, dstMask: '255.255.255.0' }), `shunt ${spi}`);
    for (const x of all) {
      const r = x.one(`shunt ${spi}`);
      assert.equal(r.header.satype, SADB_X_SATYPE_INT);
      assert.equal(r.sa!.spi, spi);
      assert.equal(r.addressDst!.addr, '0.0.0.0');
    }
  });
  const es = [...w.engine.spd.entries()];
  assert.equal(es.length, 6);
  assert.deepEqual(es.map((e) => e.said.spi).sort(), shunts);
  for (const e of es) {
    assert.equal(e.said.proto, IPPROTO_INT);
    assert.equal(e.said.dst, '0.0.0.0');
  }
  for (let i = 0; i < 6; i++) assert.equal(w.engine.route(pkt('10.1.9.9', `172.16.${i}.7`))!.said.spi, shunts[i]);
  // IPv6 shunt with dst ::
  a.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_PASS, src: '2001:db8::', srcMask: 'ffff:ffff::', dst: '2001:db9::', dstMask: 'ffff:ffff::' }));
  drain(...all);
  const v6 = w.engine.route(pkt('2001:db8::5', '2001:db9::7'));
  assert.equal(v6!.said.spi, SPI_PASS);
  assert.equal(v6!.said.dst, '::');
  assert.equal(v6!.flow.family, AF_INET6);
});

test('X_ADDFLOW refusals: duplicate EEXIST, REPLACEFLOW of a missing eroute EFAULT, non-contiguous mask EINVAL', () => {
  const { w, a, all } = three();
  a.ok(addReq({ spi: 0x400 }));
  a.ok(addflowReq({ ...NET_A, spi: 0x400 }));
  drain(...all);
  expectRefusal(w, a, all, addflowReq({ ...NET_A, spi: 0x400 }), ERRNO.EEXIST, 'duplicate');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, spi: 0x401 }), ERRNO.EEXIST, 'same flow, other SA');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, src: '10.0.0.77' }), ERRNO.EEXIST, 'same flow after host bits are cleared');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, dst: '10.0.9.0', flags: SADB_X_SAFLAGS_REPLACEFLOW }), ERRNO.EFAULT, 'REPLACEFLOW of a missing eroute');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, dst: '10.0.9.0', srcMask: '255.0.255.0' }), ERRNO.EINVAL, 'non-contiguous source mask');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, dst: '10.0.9.0', dstMask: '255.255.0.255' }), ERRNO.EINVAL, 'non-contiguous destination mask');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, dst: '2001:db8::', dstMask: 'ffff::' }), ERRNO.EINVAL, 'mixed families');
  const noMask = addflowReq({ ...NET_A, dst: '10.0.9.0' });
  delete noMask.addressDstMask;
  expectRefusal(w, a, all, noMask, ERRNO.EINVAL, 'no DST_MASK');
  assert.equal(w.engine.spd.size, 1);
  assert.equal(w.engine.sadb.get(espSaid(0x400))!.current.allocations, 1, 'refusals count no allocation');
});

test('REPLACEFLOW points an existing eroute to another SA', () => {
  const { w, a, all } = three();
  a.ok(addReq({ spi: 0x500 }));
  a.ok(addReq({ spi: 0x501 }));
  a.ok(addflowReq({ ...NET_A, spi: 0x500 }));
  drain(...all);
  w.engine.route(pkt('10.0.0.1', '10.0.1.1'));
  a.ok(addflowReq({ ...NET_A, spi: 0x501, flags: SADB_X_SAFLAGS_REPLACEFLOW }));
  for (const x of all) assert.equal(x.one('REPLACEFLOW').sa!.flags, SADB_X_SAFLAGS_REPLACEFLOW);
  assert.equal(w.engine.spd.size, 1);
  const e = w.engine.route(pkt('10.0.0.1', '10.0.1.1'))!;
  assert.deepEqual(e.said, espSaid(0x501));
  assert.equal(w.engine.sadb.get(espSaid(0x501))!.current.allocations, 1, 'REPLACEFLOW binds the eroute to the new SA: one allocation');
});

test('X_ADDFLOW with INFLOW stores the inbound policy on the IPIP SA of the group; without one it is ENOENT', () => {
  const { w, a, all } = three();
  a.ok(addReq({ spi: 0x600 }));
  a.ok(addReq({ spi: 0x601, satype: SADB_X_SATYPE_IPIP }));
  a.ok(addReq({ spi: 0x602 }));
  a.ok(grpsaReq({ satype: SADB_SATYPE_ESP, spi: 0x600 }, { satype: SADB_X_SATYPE_IPIP, spi: 0x601 }));
  drain(...all);
  a.ok(addflowReq({ ...NET_A, spi: 0x600, flags: SADB_X_SAFLAGS_INFLOW, proto: 17 }));
  for (const x of all) assert.equal(x.one('INFLOW').header.type, SADB_X_ADDFLOW);
  assert.equal(w.engine.spd.size, 0, 'INFLOW makes no eroute');
  const tun = w.engine.sadb.get(ipipSaid(0x601))!;
  assert.ok(tun.inbound, 'inbound policy stored on the IPIP SA');
  assert.equal(tun.inbound!.srcFlow.addr, '10.0.0.0');
  assert.equal(tun.inbound!.dstMask.addr, '255.255.255.0');
  assert.equal(tun.inbound!.proto, 17);
  assert.ok(tun.flags & SADB_X_SAFLAGS_INFLOW);
  assert.equal(w.engine.sadb.get(espSaid(0x600))!.inbound, undefined);
  // POLICYONLY too.
  a.ok(addflowReq({ ...NET_A, spi: 0x601, satype: SADB_X_SATYPE_IPIP, flags: SADB_X_SAFLAGS_POLICYONLY }));
  drain(...all);
  assert.ok(tun.flags & SADB_X_SAFLAGS_POLICYONLY);
  expectRefusal(w, a, all, addflowReq({ ...NET_A, spi: 0x602, flags: SADB_X_SAFLAGS_INFLOW }), ERRNO.ENOENT, 'INFLOW with no IPIP SA in the group');
  expectRefusal(w, a, all, addflowReq({ ...NET_A, spi: 0x6ff, flags: SADB_X_SAFLAGS_INFLOW }), ERRNO.ENOENT, 'INFLOW for a missing SA');
});

test('X_DELFLOW deletes one eroute (missing: EFAULT); CLEARFLOW deletes them all', () => {
  const { w, a, all } = three();
  a.ok(addflowReq({ ...NET_A, spi: 0x700 }));
  a.ok(addflowReq({ ...NET_A, dst: '10.0.2.0', spi: 0x700 }));
  a.ok(addflowReq({ ...NET_A, dst: '10.0.2.0', proto: 6, dport: 22, spi: 0x701 }));
  a.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_DROP, src: '0.0.0.0', srcMask: '0.0.0.0', dst: '0.0.0.0', dstMask: '0.0.0.0' }));
  drain(...all);
  a.ok(delflowReq({ ...NET_A, dst: '10.0.2.0', proto: 6, dport: 22, seq: 70, pid: 7 }));
  for (const x of all) {
    const r = x.one('X_DELFLOW');
    assert.equal(r.header.type, SADB_X_DELFLOW);
    assert.equal(r.header.seq, 70);
    assert.equal(r.protocol, undefined);
    assert.deepEqual(r.sa, { spi: 0, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0, ref: 0 }, 'an SA extension, all zero when the request had none');
  }
  assert.equal(w.engine.spd.size, 3);
  assert.deepEqual(w.engine.route(pkt('10.0.0.1', '10.0.2.1', 6, 999, 22))!.said, espSaid(0x700), 'the port-specific eroute is gone, the subnet one stays');
  expectRefusal(w, a, all, delflowReq({ ...NET_A, dst: '10.0.2.0', proto: 6, dport: 22 }), ERRNO.EFAULT, 'DELFLOW of a missing eroute');
  expectRefusal(w, a, all, delflowReq({ ...NET_A, dst: '10.0.9.0' }), ERRNO.EFAULT, 'DELFLOW of a flow never added');
  expectRefusal(w, a, all, { header: { type: SADB_X_DELFLOW, satype: SADB_SATYPE_ESP, seq: 1 }, addressSrcFlow: addr('10.0.0.0') }, ERRNO.EINVAL, 'DELFLOW with only part of a flow');
  a.ok(clearflowReq({ seq: 71 }));
  for (const x of all) assert.equal(x.one('CLEARFLOW').sa!.flags, SADB_X_SAFLAGS_CLEARFLOW);
  assert.equal(w.engine.spd.size, 0);
  assert.equal(w.engine.route(pkt('10.0.0.1', '10.0.1.1')), undefined);
  a.ok(clearflowReq());
  drain(...all);
});

test('engine.route() picks the most specific of overlapping eroutes and counts packets', () => {
  const { w, a, all } = three();
  const flows: Array<[Partial<FlowOpts>, number]> = [
    [{ src: '0.0.0.0', srcMask: '0.0.0.0', dst: '0.0.0.0', dstMask: '0.0.0.0' }, 0x10],
    [{ src: '10.0.0.0', srcMask: '255.0.0.0', dst: '0.0.0.0', dstMask: '0.0.0.0' }, 0x11],
    [{ src: '10.1.0.0', srcMask: '255.255.0.0', dst: '0.0.0.0', dstMask: '0.0.0.0' }, 0x12],
    [{ src: '10.1.2.0', srcMask: '255.255.255.0', dst: '0.0.0.0', dstMask: '0.0.0.0' }, 0x13],
    [{ src: '10.1.2.0', srcMask: '255.255.255.0', dst: '192.168.0.0', dstMask: '255.255.0.0' }, 0x14],
    [{ src: '10.1.2.0', srcMask: '255.255.255.0', dst: '192.168.0.0', dstMask: '255.255.0.0', proto: 6 }, 0x15],
    [{ src: '10.1.2.0', srcMask: '255.255.255.0', dst: '192.168.0.0', dstMask: '255.255.0.0', proto: 6, dport: 80 }, 0x16],
    [{ src: '10.1.2.3', srcMask: '255.255.255.255', dst: '192.168.7.7', dstMask: '255.255.255.255' }, 0x17],
  ];
  for (const [f, spi] of flows) a.ok(addflowReq({ ...(f as FlowOpts), spi }), `flow 0x${spi.toString(16)}`);
  drain(...all);
  const cases: Array<[ReturnType<typeof pkt>, number]> = [
    [pkt('11.0.0.1', '8.8.8.8'), 0x10],
    [pkt('10.9.0.1', '8.8.8.8'), 0x11],
    [pkt('10.1.9.1', '8.8.8.8'), 0x12],
    [pkt('10.1.2.9', '8.8.8.8'), 0x13],
    [pkt('10.1.2.9', '192.168.1.1', 17, 5, 53), 0x14],
    [pkt('10.1.2.9', '192.168.1.1', 6, 5, 443), 0x15],
    [pkt('10.1.2.9', '192.168.1.1', 6, 5, 80), 0x16],
    [pkt('10.1.2.3', '192.168.7.7', 6, 5, 80), 0x17],
  ];
  for (const [p, spi] of cases) assert.equal(w.engine.route(p)!.said.spi, spi, `packet to spi 0x${spi.toString(16)}`);
  for (let i = 0; i < 4; i++) w.engine.route(pkt('10.1.2.9', '192.168.1.1', 6, 5, 80));
  const byspi = new Map([...w.engine.spd.entries()].map((e) => [e.said.spi, e]));
  assert.equal(byspi.get(0x16)!.packets, 5);
  assert.equal(byspi.get(0x10)!.packets, 1);
  assert.equal(byspi.get(0x16)!.lastUsed, Math.floor(w.clock.t));
  assert.equal(w.engine.route(pkt('2001:db8::1', '2001:db8::2')), undefined, 'no IPv6 eroute: the caller applies %drop');
  assert.ok([...w.engine.spd.entries()].every((e) => e.said.proto === IPPROTO_ESP));
});

// ---------------------------------------------------------------- X_PCHANGE

test('X_PCHANGE subscribers get a notice per eroute change: add 0, REPLACEFLOW 2, delete and CLEARFLOW 4', () => {
  const { w, a, b, c, all } = three();
  assert.equal(b.send(hdrReq(SADB_X_PCHANGE, 1, { seq: 1 })), 0);
  assert.equal(b.one('subscription reply to the sender').header.type, SADB_X_PCHANGE);
  a.none('subscription reply is the sender\'s');
  assert.equal(b.sock.pchange, true);
  expectRefusal(w, c, all, hdrReq(SADB_X_PCHANGE, 2), ERRNO.EINVAL, 'X_PCHANGE satype 2');

  const notices = (what: string) => b.read(what).filter((m) => m.header.type === SADB_X_PCHANGE);
  a.ok(addflowReq({ ...NET_A, spi: 0x800, proto: 6, sport: 1000, dport: 80, seq: 81 }));
  let n = notices('add');
  assert.equal(n.length, 1);
  assert.equal(n[0].sa!.flags, 0);
  assert.equal(n[0].sa!.spi, 0x800);
  assert.equal(n[0].header.satype, SADB_SATYPE_ESP);
  assert.equal(n[0].header.seq, 81);
  assert.equal(n[0].header.pid, 0);
  assert.equal(n[0].addressDst!.addr, '192.0.2.2');
  assert.equal(n[0].addressSrcFlow!.addr, '10.0.0.0');
  assert.equal(n[0].addressSrcFlow!.port, 1000);
  assert.equal(n[0].addressDstFlow!.addr, '10.0.1.0');
  assert.equal(n[0].addressDstFlow!.port, 80);
  assert.equal(n[0].addressSrcMask!.addr, '255.255.255.0');
  assert.equal(n[0].addressDstMask!.addr, '255.255.255.0');
  assert.equal(n[0].protocol!.proto, 6);
  assert.deepEqual(a.read('a').map((m) => m.header.type), [SADB_X_ADDFLOW], 'notices go to subscribers only (a got only the ADDFLOW reply)');

  a.ok(addflowReq({ ...NET_A, spi: 0x801, proto: 6, sport: 1000, dport: 80, flags: SADB_X_SAFLAGS_REPLACEFLOW }));
  n = notices('replace');
  assert.equal(n.length, 1);
  assert.equal(n[0].sa!.flags, SADB_X_SAFLAGS_REPLACEFLOW);
  assert.equal(n[0].sa!.spi, 0x801);

  a.ok(delflowReq({ ...NET_A, proto: 6, sport: 1000, dport: 80 }));
  n = notices('delete');
  assert.equal(n.length, 1);
  assert.equal(n[0].sa!.flags, SADB_X_SAFLAGS_CLEARFLOW);
  assert.equal(n[0].sa!.spi, 0x801);

  a.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi: SPI_TRAP, src: '10.5.0.0', srcMask: '255.255.0.0', dst: '10.6.0.0', dstMask: '255.255.0.0' }));
  a.ok(addflowReq({ ...NET_A, spi: 0x802 }));
  n = notices('two adds');
  assert.equal(n.length, 2);
  assert.equal(n[0].header.satype, SADB_X_SATYPE_INT);
  assert.equal(n[0].sa!.spi, SPI_TRAP);
  assert.equal(n[0].addressDst!.addr, '0.0.0.0');
  a.ok(clearflowReq());
  n = notices('clear');
  assert.equal(n.length, 2);
  assert.ok(n.every((m) => m.sa!.flags === SADB_X_SAFLAGS_CLEARFLOW));
  drain(a, c);

  // Failed changes produce no notice; unsubscribing stops them.
  assert.equal(a.send(delflowReq({ ...NET_A })), ERRNO.EFAULT);
  assert.equal(notices('failed delete').length, 0);
  assert.equal(b.send(hdrReq(SADB_X_PCHANGE, 0)), 0);
  b.one('unsubscribe reply');
  assert.equal(b.sock.pchange, false);
  a.ok(addflowReq({ ...NET_A, spi: 0x803 }));
  assert.equal(notices('after unsubscribe').length, 0);
});

test('X_PCHANGE notices for an IPv6 eroute carry IPv6 flows and masks', () => {
  const { a, b } = three();
  b.ok(hdrReq(SADB_X_PCHANGE, 1));
  b.raw();
  a.ok(addflowReq({ src: '2001:db8:1::', srcMask: 'ffff:ffff:ffff::', dst: '2001:db8:2::', dstMask: 'ffff:ffff:ffff:ffff::', spi: 0x900, said_dst: '2001:db8::2' }));
  const n = b.read('v6 notice').filter((m) => m.header.type === SADB_X_PCHANGE);
  assert.equal(n.length, 1);
  assert.equal(n[0].addressSrcFlow!.family, AF_INET6);
  assert.equal(n[0].addressSrcMask!.addr, 'ffff:ffff:ffff::');
  assert.equal(n[0].addressDstMask!.addr, 'ffff:ffff:ffff:ffff::');
  assert.equal(n[0].addressDst!.addr, '2001:db8::2');
});
