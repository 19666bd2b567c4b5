/**
 * klips trace's data plane: xmit/rcv with a step sink and as a dry run (nothing changes:
 * sequence numbers, replay windows, lifetimes, eroute counts, path counters, %hold,
 * ACQUIRE, NAT-T mapping), the same with count (everything as a real packet), the
 * steps each path reports, the view channel's trace request, probe packets (checked
 * against scapy's bytes) and the layer-by-layer decoding.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { world, addReq, grpsaReq, addflowReq, hdrReq, type World, type Client } from './engine-helpers.js';
import {
  SADB_SATYPE_ESP, SADB_SATYPE_AH, SADB_X_SATYPE_IPIP, SADB_X_SATYPE_INT, SADB_X_SATYPE_COMP, SADB_X_CALG_DEFLATE,
  SADB_REGISTER, SADB_ACQUIRE, SPI_TRAP, SPI_HOLD, SPI_REJECT, ESPINUDP_WITH_NON_ESP, IPPROTO_ESP, IPPROTO_IPIP,
  parseIPv4, parseIPv6,
} from '../src/wire/index.js';
import {
  xmit, rcv, dataplaneCounters, runtimeOf, runTrace, traceAnswer, buildProbe, decodeLayers, parseIp,
  type TraceStep,
} from '../src/dataplane/index.js';

const W = '192.0.2.1';
const E = '192.0.2.2';
const v4 = (s: string) => parseIPv4(s)!;
const v6 = (s: string) => parseIPv6(s)!;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const FRESH = { packets: 0, ipsec: 0, passed: 0, dropped: 0, drops: {} };

interface Pair { west: World; east: World; wc: Client; ec: Client }

/** West and east with tun 0x200 + esp 0x100 (AES-CBC, HMAC-SHA1, window 32) W → E; west's eroute 10.1/16 → 10.2/16. */
function tunnel(): Pair {
  const west = world({ localAddresses: () => [W] });
  const east = world({ localAddresses: () => [E] });
  const p = { west, east, wc: west.client(), ec: east.client() };
  for (const c of [p.wc, p.ec]) {
    c.ok(addReq({ spi: 0x200, satype: SADB_X_SATYPE_IPIP, src: W, dst: E }), 'ADD tun');
    c.ok(addReq({ spi: 0x100, src: W, dst: E }), 'ADD esp');
    c.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, dst: E }, { satype: SADB_SATYPE_ESP, spi: 0x100, dst: E }), 'GRPSA');
  }
  p.wc.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW');
  p.wc.raw();
  p.ec.raw();
  return p;
}

/** A 100-byte UDP probe 10.1.0.5 → 10.2.0.7. */
const inner = () => buildProbe({ src: v4('10.1.0.5'), dst: v4('10.2.0.7'), proto: 'udp', payload: Buffer.alloc(72, 0x61) });

const espSaid = { proto: IPPROTO_ESP, spi: 0x100, dst: E };
const tunSaid = { proto: IPPROTO_IPIP, spi: 0x200, dst: E };

/** What a dry run must leave alone on west: the ESP counter, lifetimes, the eroute's count, the path counters. */
function westState(p: Pair) {
  const esp = p.west.engine.sadb.get(espSaid)!;
  const tun = p.west.engine.sadb.get(tunSaid)!;
  return {
    seq: runtimeOf(esp).seq, esp: { ...esp.current }, tun: { ...tun.current }, used: [esp.used, tun.used],
    eroute: [...p.west.engine.spd.entries()].map((e) => e.packets), counters: dataplaneCounters(p.west.engine),
  };
}

function collect(): { steps: TraceStep[]; trace: (s: TraceStep) => void } {
  const steps: TraceStep[] = [];
  return { steps, trace: (s) => { steps.push(s); } };
}

const OUT_STEPS = (seq: number): TraceStep[] => [
  { step: 'eroute', eroute: '10.1.0.0/16 -> 10.2.0.0/16 => tun0x200@192.0.2.2' },
  { step: 'sa', said: 'tun0x200@192.0.2.2', xform: 'IPIP', before: 100, after: 120 },
  // 20 outer + 8 ESP + 16 IV + (100 + 2 → 112) + 12 ICV.
  { step: 'sa', said: 'esp0x100@192.0.2.2', xform: 'ESP_AES_HMAC_SHA1', before: 120, after: 168, seq },
  { step: 'send', dst: E, bytes: 168 },
];

test('xmit dry run: the steps, the next sequence number used but not stored, nothing counted', () => {
  const p = tunnel();
  const before = westState(p);
  for (let i = 0; i < 2; i++) {
    const t = collect();
    const x = xmit(p.west.engine, inner(), { dryRun: true, trace: t.trace });
    assert.ok(x.ok && x.action === 'ipsec');
    assert.equal(x.out.packet.readUInt32BE(24), 1, 'ESP seq 1 each time');
    assert.deepEqual(t.steps, OUT_STEPS(1));
  }
  assert.deepEqual(westState(p), before);
  assert.deepEqual(dataplaneCounters(p.west.engine), { xmit: FRESH, rcv: FRESH, icmpSent: 0, natTMappings: 0 });
  // A dry run without a sink changes nothing either.
  assert.ok(xmit(p.west.engine, inner(), { dryRun: true }).ok);
  assert.deepEqual(westState(p), before);
});

test('xmit traced with count: the same steps, and everything moves as for a real packet', () => {
  const p = tunnel();
  for (const seq of [1, 2]) {
    const t = collect();
    const x = xmit(p.west.engine, inner(), { trace: t.trace });
    assert.ok(x.ok);
    assert.deepEqual(t.steps, OUT_STEPS(seq));
  }
  const s = westState(p);
  assert.equal(s.seq, 2);
  assert.deepEqual([s.esp.packets, s.esp.bytes, s.tun.packets, s.tun.bytes], [2, 336, 2, 240]);
  assert.deepEqual(s.eroute, [2]);
  assert.deepEqual(s.counters.xmit, { packets: 2, ipsec: 2, passed: 0, dropped: 0, drops: {} });
  // After two real packets, a dry run shows the third number and leaves the counter at 2.
  const t = collect();
  assert.ok(xmit(p.west.engine, inner(), { dryRun: true, trace: t.trace }).ok);
  assert.equal((t.steps[2] as { seq: number }).seq, 3);
  assert.equal(runtimeOf(p.west.engine.sadb.get(espSaid)!).seq, 2);
});

const IN_STEPS: TraceStep[] = [
  { step: 'lookup', said: 'esp0x100@192.0.2.2', found: true, xform: 'ESP_AES_HMAC_SHA1' },
  { step: 'replay', said: 'esp0x100@192.0.2.2', seq: 1, window: 32, verdict: 'ok' },
  { step: 'icv', said: 'esp0x100@192.0.2.2', verdict: 'ok' },
  { step: 'decap', said: 'esp0x100@192.0.2.2', xform: 'ESP_AES_HMAC_SHA1', before: 168, after: 120, nextHeader: 4 },
  { step: 'policy', said: 'tun0x200@192.0.2.2', check: 'source', ok: true },
  { step: 'decap', said: 'tun0x200@192.0.2.2', xform: 'IPIP', before: 120, after: 100, nextHeader: 4 },
  { step: 'policy', said: 'tun0x200@192.0.2.2', check: 'complete', ok: true },
  { step: 'deliver', kind: 'ipsec', bytes: 100 },
];

test('rcv dry run: replay checked but the window not moved; then counted; then the dry run sees the replay', () => {
  const p = tunnel();
  const x = xmit(p.west.engine, inner());
  assert.ok(x.ok);
  const esp = p.east.engine.sadb.get(espSaid)!;
  for (let i = 0; i < 2; i++) {
    const t = collect();
    const r = rcv(p.east.engine, x.out.packet, undefined, { dryRun: true, trace: t.trace });
    assert.ok(r.ok && r.kind === 'ipsec');
    assert.equal(hex(r.packet), hex(inner()));
    assert.deepEqual(t.steps, IN_STEPS);
  }
  assert.equal(runtimeOf(esp).replay.top, 0n, 'the window did not move');
  assert.deepEqual(esp.current.packets, 0);
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv, FRESH);
  const t = collect();
  assert.ok(rcv(p.east.engine, x.out.packet, undefined, { trace: t.trace }).ok);
  assert.deepEqual(t.steps, IN_STEPS);
  assert.equal(runtimeOf(esp).replay.top, 1n);
  assert.equal(esp.current.packets, 1);
  assert.deepEqual(dataplaneCounters(p.east.engine).rcv, { packets: 1, ipsec: 1, passed: 0, dropped: 0, drops: {} });
  const again = collect();
  assert.deepEqual(rcv(p.east.engine, x.out.packet, undefined, { dryRun: true, trace: again.trace }), { ok: false, reason: 'replay', said: espSaid });
  assert.deepEqual(again.steps, [
    IN_STEPS[0],
    { step: 'replay', said: 'esp0x100@192.0.2.2', seq: 1, window: 32, verdict: 'replay' },
    { step: 'drop', reason: 'replay', said: 'esp0x100@192.0.2.2' },
  ]);
  assert.equal(dataplaneCounters(p.east.engine).rcv.dropped, 0, 'a dry run counts no drop');
});

test('rcv trace: a tampered packet fails its ICV; an unknown SPI is not found', () => {
  const p = tunnel();
  const x = xmit(p.west.engine, inner());
  assert.ok(x.ok);
  const bad = Buffer.from(x.out.packet);
  bad[bad.length - 1] ^= 1;
  const t = collect();
  assert.equal((rcv(p.east.engine, bad, undefined, { dryRun: true, trace: t.trace }) as { reason: string }).reason, 'icv');
  assert.deepEqual(t.steps, [
    IN_STEPS[0], IN_STEPS[1],
    { step: 'icv', said: 'esp0x100@192.0.2.2', verdict: 'failed' },
    { step: 'drop', reason: 'icv', said: 'esp0x100@192.0.2.2' },
  ]);
  const other = Buffer.from(x.out.packet);
  other.writeUInt32BE(0x999, 20);
  const u = collect();
  assert.equal((rcv(p.east.engine, other, undefined, { dryRun: true, trace: u.trace }) as { reason: string }).reason, 'no-sa');
  assert.deepEqual(u.steps, [
    { step: 'lookup', said: 'esp0x999@192.0.2.2', found: false },
    { step: 'drop', reason: 'no-sa', said: 'esp0x999@192.0.2.2' },
  ]);
});

test('shunts traced: no eroute, %reject with its ICMP, %hold kept only when counted, %trap: ACQUIRE only when counted', () => {
  const w = world({ localAddresses: () => [W] });
  const c = w.client();
  for (const [spi, dst] of [[SPI_REJECT, '10.9.3.0'], [SPI_HOLD, '10.9.4.0'], [SPI_TRAP, '10.9.5.0']] as const) {
    c.ok(addflowReq({ satype: SADB_X_SATYPE_INT, spi, src: '10.1.0.0', srcMask: '255.255.0.0', dst, dstMask: '255.255.255.0' }), 'ADDFLOW');
  }
  const pluto = w.client();
  pluto.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP), 'REGISTER');
  pluto.read();
  c.raw();
  const probe = (dst: string) => buildProbe({ src: v4('10.1.0.5'), dst: v4(dst), proto: 'icmp' });
  const run = (dst: string, count: boolean) => {
    const t = collect();
    const r = xmit(w.engine, probe(dst), { dryRun: !count, trace: t.trace });
    return { r, steps: t.steps };
  };
  assert.deepEqual(run('10.8.0.1', false).steps, [{ step: 'eroute', eroute: null }, { step: 'drop', reason: 'no-eroute' }]);
  assert.deepEqual(run('10.9.3.1', false).steps, [
    { step: 'eroute', eroute: '10.1.0.0/16 -> 10.9.3.0/24 => %reject' },
    // 20 + 8 + the probe's 20-byte header and 8 bytes of ICMP.
    { step: 'icmp', dst: '10.1.0.5', type: 3, code: 13, bytes: 56 },
    { step: 'drop', reason: 'shunt-reject' },
  ]);
  const hold = [...w.engine.spd.entries()].find((e) => e.said.spi === SPI_HOLD)!;
  assert.deepEqual(run('10.9.4.1', false).steps, [
    { step: 'eroute', eroute: '10.1.0.0/16 -> 10.9.4.0/24 => %hold' },
    { step: 'hold', kept: false },
    { step: 'drop', reason: 'hold' },
  ]);
  assert.equal(hold.held, undefined);
  assert.deepEqual(run('10.9.4.1', true).steps[1], { step: 'hold', kept: true });
  assert.equal(hex(hold.held!), hex(probe('10.9.4.1')));

  const dry = run('10.9.5.1', false);
  assert.deepEqual(dry.steps, [
    { step: 'eroute', eroute: '10.1.0.0/16 -> 10.9.5.0/24 => %trap' },
    { step: 'acquire', sent: false, listeners: 1 },
    { step: 'drop', reason: 'trap' },
  ]);
  pluto.none('a dry run sends no ACQUIRE');
  assert.equal(w.engine.stats.traps, 0);
  assert.equal([...w.engine.spd.entries()].length, 3, 'no %hold eroute made');
  const real = run('10.9.5.1', true);
  assert.ok(!real.r.ok && real.r.reason === 'trap' && typeof real.r.acquireSeq === 'number');
  assert.deepEqual(real.steps[1], { step: 'acquire', sent: true, listeners: 1, seq: real.r.acquireSeq });
  const acq = pluto.one('the counted trace sends one ACQUIRE');
  assert.equal(acq.header.type, SADB_ACQUIRE);
  assert.equal(acq.header.seq, real.r.acquireSeq);
  assert.equal([...w.engine.spd.entries()].length, 4, 'the %hold the trap made');
  assert.deepEqual(dataplaneCounters(w.engine).xmit, { packets: 2, ipsec: 0, passed: 0, dropped: 2, drops: { hold: 1, trap: 1 } });
  // With nobody registered, a dry run says so.
  pluto.close();
  assert.deepEqual(run('10.9.5.2', false).steps.slice(1), [{ step: 'acquire', sent: false, listeners: 0 }, { step: 'drop', reason: 'no-listener' }]);
});

test('NAT-T traced: the UDP step, and a new mapping reported but not sent in a dry run', () => {
  const west = world({ localAddresses: () => [W] });
  const east = world({ localAddresses: () => [E] });
  const natT = { natTType: { type: ESPINUDP_WITH_NON_ESP }, natTSport: { port: 4500 }, natTDport: { port: 4500 } };
  for (const c of [west.client(), east.client()]) c.ok(addReq({ spi: 0x600, src: W, dst: E, extra: natT }), 'ADD');
  west.client().ok(addflowReq({ satype: SADB_SATYPE_ESP, spi: 0x600, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW');
  const pluto = east.client();
  pluto.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP), 'REGISTER');
  pluto.read();
  const t = collect();
  const x = xmit(west.engine, buildProbe({ src: v4(W), dst: v4(E), proto: 'udp', payload: Buffer.from('nat') }), { dryRun: true, trace: t.trace });
  assert.ok(x.ok);
  assert.deepEqual(t.steps.slice(1), [
    // 31-byte probe: 20 + 8 + 16 + (11 + 2 → 16) + 12 = 72, then 8 bytes of UDP.
    { step: 'sa', said: 'esp0x600@192.0.2.2', xform: 'ESP_AES_HMAC_SHA1', before: 31, after: 80, seq: 1, natTPort: 4500 },
    { step: 'send', dst: E, bytes: 80, natTPort: 4500 },
  ]);
  const from = { addr: '198.51.100.9', port: 1024 };
  const r = collect();
  assert.ok(rcv(east.engine, x.out.packet, from, { dryRun: true, trace: r.trace }).ok);
  assert.deepEqual(r.steps.slice(0, 3), [
    { step: 'natt', kind: 'esp', sport: 4500, dport: 4500 },
    { step: 'lookup', said: 'esp0x600@192.0.2.2', found: true, xform: 'ESP_AES_HMAC_SHA1' },
    { step: 'policy', said: 'esp0x600@192.0.2.2', check: 'natt', ok: true },
  ]);
  assert.deepEqual(r.steps.find((s) => s.step === 'mapping'), { step: 'mapping', said: 'esp0x600@192.0.2.2', addr: '198.51.100.9', port: 1024, sent: false });
  pluto.none('a dry run sends no NAT_T_NEW_MAPPING');
  assert.equal(east.engine.sadb.get({ proto: IPPROTO_ESP, spi: 0x600, dst: E })!.src.addr, W);
  assert.equal(dataplaneCounters(east.engine).natTMappings, 0);
});

test('AH traced: replay and ICV verdicts; ESP without integrity says icv none', () => {
  const west = world({ localAddresses: () => [W] });
  const east = world({ localAddresses: () => [E] });
  for (const c of [west.client(), east.client()]) {
    c.ok(addReq({ spi: 0x300, satype: SADB_SATYPE_AH, src: W, dst: E }), 'ADD ah');
    c.ok(addReq({ spi: 0x301, src: W, dst: '192.0.2.3', auth: 0, authBits: 0 }), 'ADD esp without integrity');
  }
  west.client().ok(addflowReq({ satype: SADB_SATYPE_AH, spi: 0x300, said_dst: E, src: W, srcMask: '255.255.255.255', dst: E, dstMask: '255.255.255.255' }), 'ADDFLOW');
  west.client().ok(addflowReq({ satype: SADB_SATYPE_ESP, spi: 0x301, said_dst: '192.0.2.3', src: W, srcMask: '255.255.255.255', dst: '192.0.2.3', dstMask: '255.255.255.255' }), 'ADDFLOW');
  const x = xmit(west.engine, buildProbe({ src: v4(W), dst: v4(E), proto: 'tcp' }));
  assert.ok(x.ok);
  const t = collect();
  assert.ok(rcv(east.engine, x.out.packet, undefined, { dryRun: true, trace: t.trace }).ok);
  assert.deepEqual(t.steps, [
    { step: 'lookup', said: 'ah0x300@192.0.2.2', found: true, xform: 'AH_HMAC_SHA1' },
    { step: 'replay', said: 'ah0x300@192.0.2.2', seq: 1, window: 32, verdict: 'ok' },
    { step: 'icv', said: 'ah0x300@192.0.2.2', verdict: 'ok' },
    // 20 + 24 AH + 20 TCP.
    { step: 'decap', said: 'ah0x300@192.0.2.2', xform: 'AH_HMAC_SHA1', before: 64, after: 40, nextHeader: 6 },
    { step: 'policy', said: 'ah0x300@192.0.2.2', check: 'complete', ok: true },
    { step: 'deliver', kind: 'ipsec', bytes: 40 },
  ]);
  const y = xmit(west.engine, buildProbe({ src: v4(W), dst: v4('192.0.2.3'), proto: 'tcp' }));
  assert.ok(y.ok);
  const u = collect();
  assert.ok(rcv(east.engine, y.out.packet, undefined, { dryRun: true, trace: u.trace }).ok);
  assert.deepEqual(u.steps[2], { step: 'icv', said: 'esp0x301@192.0.2.3', verdict: 'none' });
});

test('the view channel request: runTrace/traceAnswer answer with steps and hex, and refuse bad requests', () => {
  const p = tunnel();
  const pk = inner();
  const a = traceAnswer(p.west.engine, { dir: 'out', packet: hex(pk), count: false });
  assert.ok(!('error' in a));
  assert.deepEqual(Object.keys(a), ['dir', 'count', 'steps', 'result', 'packet', 'dst']);
  assert.deepEqual([a.dir, a.count, a.result, a.dst], ['out', false, 'ipsec', E]);
  assert.deepEqual(a.steps, OUT_STEPS(1));
  const b = runTrace(p.east.engine, { dir: 'in', packet: Buffer.from(a.packet!, 'hex'), count: true });
  assert.deepEqual(b, { dir: 'in', count: true, steps: IN_STEPS, result: 'ipsec', packet: hex(pk) });
  const none = runTrace(p.west.engine, { dir: 'out', packet: buildProbe({ src: v4('10.7.0.1'), dst: v4('10.2.0.7'), proto: 'icmp' }), count: false });
  assert.deepEqual(none, { dir: 'out', count: false, steps: [{ step: 'eroute', eroute: null }, { step: 'drop', reason: 'no-eroute' }], result: 'drop', reason: 'no-eroute' });
  const refusals: Array<[unknown, string]> = [
    [null, 'trace: expected {"dir": "out"|"in", "packet": HEX, "count": BOOLEAN}'],
    [{ dir: 'up', packet: '45' }, 'trace: "dir" must be "out" or "in"'],
    [{ dir: 'out', packet: '4' }, 'trace: "packet" must be the packet in hex (an even number of hex digits)'],
    [{ dir: 'out', packet: 'zz' }, 'trace: "packet" must be the packet in hex (an even number of hex digits)'],
    [{ dir: 'out', packet: '45', count: 'yes' }, 'trace: "count" must be true or false'],
    [{ dir: 'out', packet: '00'.repeat(65576) }, 'trace: the packet is longer than 65575 bytes'],
  ];
  for (const [req, error] of refusals) assert.deepEqual(traceAnswer(p.west.engine, req), { error });
  // A packet that does not parse is a drop, not a refusal.
  assert.deepEqual(traceAnswer(p.west.engine, { dir: 'out', packet: '45' }), {
    dir: 'out', count: false, steps: [{ step: 'drop', reason: 'too-short' }], result: 'drop', reason: 'too-short',
  });
});

test('probe packets are the bytes scapy builds for the same fields', () => {
  const cases: Array<[Parameters<typeof buildProbe>[0], string]> = [
    [{ src: v4(W), dst: v4(E), proto: 'icmp', payload: Buffer.from('kl') }, '4500001e000100004001f6dac0000201c000020208008c91000100016b6c'],
    [{ src: v6('2001:db8::1'), dst: v6('2001:db8::2'), proto: 'icmp', payload: Buffer.from('kl') },
      '60000000000a3a4020010db800000000000000000000000120010db80000000000000000000000028000b8d7000100016b6c'],
    [{ src: v4(W), dst: v4(E), proto: 'tcp' }, '45000028000100004006f6cbc0000201c0000202c000005000000001000000005002ffff6b8d0000'],
    [{ src: v6('2001:db8::1'), dst: v6('2001:db8::2'), proto: 'udp', payload: Buffer.from('abc') },
      '60000000000b114020010db800000000000000000000000120010db8000000000000000000000002c0000035000b1fcb616263'],
  ];
  for (const [spec, want] of cases) assert.equal(hex(buildProbe(spec)), want, `${spec.proto} ${spec.src.length}`);
  assert.throws(() => buildProbe({ src: v4(W), dst: v6('2001:db8::2'), proto: 'udp' }), /both IPv4 or both IPv6/);
});

test('decodeLayers: ESP tunnel (encrypted), NAT-T, IPCOMP inflated to its inner packet, AH, transport headers', () => {
  const p = tunnel();
  const x = xmit(p.west.engine, inner());
  assert.ok(x.ok);
  const outer = parseIp(x.out.packet);
  assert.ok(outer.ok);
  const id = outer.ip.bytes.readUInt16BE(4);
  assert.deepEqual(decodeLayers(x.out.packet), [
    { layer: 'ipv4', src: W, dst: E, protocol: 50, ttl: 64, id, length: 168, df: false, mf: false, fragmentOffset: 0 },
    { layer: 'esp', spi: 0x100, seq: 1, encrypted: 140 },
  ]);
  assert.deepEqual(decodeLayers(inner()), [
    { layer: 'ipv4', src: '10.1.0.5', dst: '10.2.0.7', protocol: 17, ttl: 64, id: 1, length: 100, df: false, mf: false, fragmentOffset: 0 },
    { layer: 'udp', sport: 49152, dport: 53, length: 80, checksum: 'ok' },
    { layer: 'data', bytes: 72 },
  ]);
  const icmp6 = buildProbe({ src: v6('2001:db8::1'), dst: v6('2001:db8::2'), proto: 'icmp', payload: Buffer.from('kl') });
  icmp6[icmp6.length - 1] ^= 1;
  assert.deepEqual(decodeLayers(icmp6).slice(1), [
    { layer: 'icmpv6', type: 128, code: 0, checksum: 'bad', id: 1, seq: 1 },
    { layer: 'data', bytes: 2 },
  ]);

  // IPCOMP (tun → comp → esp): decode the packet between comp and esp, i.e. what the comp SA made.
  const west = world({ localAddresses: () => [W] });
  const c = west.client();
  c.ok(addReq({ spi: 0x200, satype: SADB_X_SATYPE_IPIP, src: W, dst: E }), 'ADD tun');
  c.ok(addReq({ spi: 0x4000, satype: SADB_X_SATYPE_COMP, src: W, dst: E, encrypt: SADB_X_CALG_DEFLATE, replay: 0 }), 'ADD comp');
  c.ok(grpsaReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, dst: E }, { satype: SADB_X_SATYPE_COMP, spi: 0x4000, dst: E }), 'GRPSA');
  c.ok(addflowReq({ satype: SADB_X_SATYPE_IPIP, spi: 0x200, said_dst: E, src: '10.1.0.0', srcMask: '255.255.0.0', dst: '10.2.0.0', dstMask: '255.255.0.0' }), 'ADDFLOW');
  const big = buildProbe({ src: v4('10.1.0.5'), dst: v4('10.2.0.7'), proto: 'udp', payload: Buffer.from('klips '.repeat(20)) });
  const z = xmit(west.engine, big);
  assert.ok(z.ok);
  const layers = decodeLayers(z.out.packet);
  const comp = layers[1] as { layer: string; cpi: number; nextHeader: number; compressed: number; inflated: number };
  assert.deepEqual([comp.layer, comp.cpi, comp.nextHeader, comp.inflated], ['ipcomp', 0x4000, 4, big.length]);
  assert.equal(comp.compressed, z.out.packet.length - 24);
  assert.deepEqual(layers.slice(2), [
    { layer: 'ipv4', src: '10.1.0.5', dst: '10.2.0.7', protocol: 17, ttl: 64, id: 1, length: 148, df: false, mf: false, fragmentOffset: 0 },
    { layer: 'udp', sport: 49152, dport: 53, length: 128, checksum: 'ok' },
    { layer: 'data', bytes: 120 },
  ]);

  // ESP in UDP and IKE on the NAT-T port.
  const udp = (payload: Buffer) => buildProbe({ src: v4(W), dst: v4(E), proto: 'udp', sport: 4500, dport: 4500, payload });
  assert.deepEqual(decodeLayers(udp(Buffer.from('000001000000000700', 'hex'))).slice(1), [
    { layer: 'udp', sport: 4500, dport: 4500, length: 17, checksum: 'ok' },
    { layer: 'natt', kind: 'esp' },
    { layer: 'esp', spi: 0x100, seq: 7, encrypted: 1 },
  ]);
  assert.deepEqual(decodeLayers(udp(Buffer.from('00000000aabb', 'hex'))).slice(2), [{ layer: 'natt', kind: 'ike' }, { layer: 'data', bytes: 2 }]);
  assert.deepEqual(decodeLayers(udp(Buffer.from('ff', 'hex'))).slice(2), [{ layer: 'natt', kind: 'keepalive' }]);
  assert.deepEqual(decodeLayers(Buffer.from('4500', 'hex')), [{ layer: 'error', reason: 'IP header: too-short' }]);
});
