/**
 * Tests for src/spd/eroute-table.ts: exact add/get/delete/replace with KLIPS's errors,
 * most-specific-match lookups (IPv4 and IPv6), packet counting, pruning, a randomized
 * check against a brute-force scan, and the /proc/net/ipsec_eroute line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ErouteTable, ErouteError, formatErouteProc,
  type Eroute, type ValidFlow, type PacketSelector,
} from '../src/spd/eroute-table.js';
import type { Said } from '../src/sadb/said.js';
import {
  AF_INET, AF_INET6, IPPROTO_ESP, IPPROTO_INT, SPI_TRAP, SPI_PASS, SPI_DROP,
  parseIPv4, parseIPv6,
} from '../src/wire/index.js';

const mk = ErouteTable.makeFlow;
const esp = (spi: number, dst = '192.0.2.2'): Said => ({ proto: IPPROTO_ESP, spi, dst });
const shunt = (spi: number, dst = '0.0.0.0'): Said => ({ proto: IPPROTO_INT, spi, dst });

function pkt4(src: string, dst: string, proto = 6, sport = 1234, dport = 80): PacketSelector {
  return { family: AF_INET, src: parseIPv4(src)!, dst: parseIPv4(dst)!, proto, sport, dport };
}
function pkt6(src: string, dst: string, proto = 6, sport = 1234, dport = 80): PacketSelector {
  return { family: AF_INET6, src: parseIPv6(src)!, dst: parseIPv6(dst)!, proto, sport, dport };
}

function assertErouteError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ErouteError, `expected ErouteError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

test('makeFlow normalises, accepts masks or prefix lengths, and rejects bad input', () => {
  const f = mk(AF_INET, '10.1.2.3', '255.255.0.0', '172.16.5.6', '255.255.255.255');
  assert.deepEqual(f, {
    family: AF_INET, src: '10.1.0.0', srcPrefix: 16, dst: '172.16.5.6', dstPrefix: 32,
    proto: 0, sport: 0, dport: 0,
  });
  assert.deepEqual(mk(AF_INET, '10.1.2.3', 8, '0.0.0.0', '0.0.0.0', 17, 0, 53), {
    family: AF_INET, src: '10.0.0.0', srcPrefix: 8, dst: '0.0.0.0', dstPrefix: 0,
    proto: 17, sport: 0, dport: 53,
  });
  const f6 = mk(AF_INET6, '2001:DB8:0:0:1::5', 'ffff:ffff::', '::1', 128);
  assert.equal(f6.src, '2001:db8::');
  assert.equal(f6.srcPrefix, 32);
  assert.equal(f6.dst, '::1');
  assert.throws(() => mk(AF_INET, '10.0.0.0', '255.0.255.0', '0.0.0.0', '0.0.0.0'), (e: unknown) =>
    e instanceof ErouteError && e.code === 'EINVAL' && /not contiguous/.test(e.message));
  assert.throws(() => mk(AF_INET, '2001:db8::', '255.0.0.0', '0.0.0.0', '0.0.0.0'), (e: unknown) =>
    e instanceof ErouteError && e.code === 'EINVAL' && /not IPv4/.test(e.message));
  assert.throws(() => mk(AF_INET6, '2001:db8::', '255.0.0.0', '::', '::'), (e: unknown) =>
    e instanceof ErouteError && e.code === 'EINVAL' && /mask .* not IPv6/.test(e.message));
  assert.throws(() => mk(99, '10.0.0.0', 8, '0.0.0.0', 0), ErouteError);
  assert.throws(() => mk(AF_INET, '10.0.0.0', 33, '0.0.0.0', 0), ErouteError);
  assert.throws(() => mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0, 256), ErouteError);
  assert.throws(() => mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0, 6, 70000), ErouteError);
});

test('exact add, get, delete', () => {
  const t = new ErouteTable(() => 1000);
  const f = mk(AF_INET, '10.1.2.0', 24, '172.16.0.0', 16);
  const e = t.add(f, esp(0x1234), { pid: 77, identSrc: { type: 2, data: '@west' } });
  assert.equal(t.size, 1);
  assert.equal(e.pid, 77);
  assert.equal(e.packets, 0);
  assert.equal(e.lastUsed, 0);
  assert.equal(e.created, 1000);
  assert.deepEqual(e.identSrc, { type: 2, data: '@west' });
  assert.equal(e.identDst, undefined);
  assert.equal(t.get(f), e);
  // A hand-written flow with host bits set finds the same (normalised) eroute.
  assert.equal(t.get({ ...f, src: '10.1.2.99' }), e);
  assert.equal(t.get({ ...f, dstPrefix: 15 }), undefined);
  assert.equal(t.get({ ...f, proto: 6 }), undefined);
  assert.equal(t.delete(f), e);
  assert.equal(t.size, 0);
  assert.equal(t.get(f), undefined);
  assert.equal(t.nodeCount(), 0);
});

test('duplicate add is EEXIST; delete or replace of an absent flow is EFAULT; bad flows are EINVAL', () => {
  const t = new ErouteTable();
  const f = mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0);
  t.add(f, esp(1));
  assertErouteError(() => t.add(f, esp(2)), 'EEXIST');
  assertErouteError(() => t.add({ ...f, src: '10.9.9.9' }, esp(2)), 'EEXIST');
  assert.equal(t.get(f)!.said.spi, 1);
  const absent = mk(AF_INET, '10.0.0.0', 16, '0.0.0.0', 0);
  assertErouteError(() => t.delete(absent), 'EFAULT');
  assertErouteError(() => t.replace(absent, esp(3)), 'EFAULT');
  // Only makeFlow makes a flow the table accepts, and it refuses bad ones.
  assertErouteError(() => mk(AF_INET, '10.0.0.0', 40, '0.0.0.0', 0), 'EINVAL');
  assertErouteError(() => mk(AF_INET6, '10.0.0.0', 8, '0.0.0.0', 0), 'EINVAL');
  assertErouteError(() => mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0, 0, 0, -1), 'EINVAL');
  assertErouteError(() => mk(AF_INET, 'bogus', 8, '0.0.0.0', 0), 'EINVAL');
  assertErouteError(() => mk(AF_INET, Uint8Array.of(10, 0, 0), 8, '0.0.0.0', 0), 'EINVAL');
  assert.equal(mk(AF_INET, Uint8Array.of(10, 1, 2, 3), 8, Uint8Array.of(0, 0, 0, 0), 0).src, '10.0.0.0', 'addresses as bytes');
  try {
    t.add(f, esp(2));
  } catch (err) {
    assert.ok(err instanceof ErouteError);
    assert.equal(err.errno, 17);
  }
  assert.equal(t.size, 1);
});

test('replace swaps the SAID, resets counters and hands back the old eroute', () => {
  let now = 10;
  const t = new ErouteTable(() => now);
  const f = mk(AF_INET, '10.1.0.0', 16, '0.0.0.0', 0);
  const old = t.add(f, shunt(SPI_TRAP), { pid: 5 });
  t.match(pkt4('10.1.2.3', '8.8.8.8'));
  old.held = new Uint8Array([0x45]);
  now = 20;
  const r = t.replace(f, esp(0xabc), { pid: 6 });
  assert.equal(r.old, old);
  assert.equal(r.old.packets, 1);
  assert.deepEqual(r.old.held, new Uint8Array([0x45]));
  assert.deepEqual(r.now.said, esp(0xabc));
  assert.equal(r.now.pid, 6);
  assert.equal(r.now.packets, 0);
  assert.equal(r.now.held, undefined);
  assert.equal(r.now.created, 20);
  assert.equal(t.size, 1);
  assert.equal(t.get(f), r.now);
  assert.equal(t.lookup(pkt4('10.1.2.3', '8.8.8.8')), r.now);
});

test('overlapping eroutes: the most specific wins', () => {
  const t = new ErouteTable();
  const any = t.add(mk(AF_INET, '0.0.0.0', 0, '0.0.0.0', 0), shunt(SPI_TRAP));
  const e8 = t.add(mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0), esp(8));
  const e16 = t.add(mk(AF_INET, '10.1.0.0', 16, '0.0.0.0', 0), esp(16));
  const e24 = t.add(mk(AF_INET, '10.1.2.0', 24, '0.0.0.0', 0), esp(24));
  const host = t.add(mk(AF_INET, '10.1.2.3', 32, '0.0.0.0', 0), esp(32));
  const dns = t.add(mk(AF_INET, '10.1.2.0', 24, '0.0.0.0', 0, 17, 0, 53), shunt(SPI_PASS));
  assert.equal(t.lookup(pkt4('192.168.1.1', '8.8.8.8')), any);
  assert.equal(t.lookup(pkt4('10.200.0.1', '8.8.8.8')), e8);
  assert.equal(t.lookup(pkt4('10.1.200.1', '8.8.8.8')), e16);
  assert.equal(t.lookup(pkt4('10.1.2.4', '8.8.8.8')), e24);
  assert.equal(t.lookup(pkt4('10.1.2.3', '8.8.8.8')), host);
  assert.equal(t.lookup(pkt4('10.1.2.4', '8.8.8.8', 17, 5353, 53)), dns);
  // The /32 source is more specific than the /24 with proto and port.
  assert.equal(t.lookup(pkt4('10.1.2.3', '8.8.8.8', 17, 5353, 53)), host);
  // Proto or port that do not fit fall back to the plain /24.
  assert.equal(t.lookup(pkt4('10.1.2.4', '8.8.8.8', 6, 5353, 53)), e24);
  assert.equal(t.lookup(pkt4('10.1.2.4', '8.8.8.8', 17, 53, 5353)), e24);
  // Removing the more specific ones uncovers the less specific.
  t.delete(host.flow);
  assert.equal(t.lookup(pkt4('10.1.2.3', '8.8.8.8')), e24);
  t.delete(e24.flow);
  assert.equal(t.lookup(pkt4('10.1.2.3', '8.8.8.8')), e16);
  assert.equal(t.lookup(pkt4('10.1.2.3', '8.8.8.8', 17, 1, 53)), dns);
});

test('proto/ports ranking within one (src, dst) pair', () => {
  const t = new ErouteTable();
  const base = ['10.0.0.0', 8, '172.16.0.0', 12] as const;
  const plain = t.add(mk(AF_INET, ...base), esp(1));
  const udp = t.add(mk(AF_INET, ...base, 17), esp(2));
  const udpD = t.add(mk(AF_INET, ...base, 17, 0, 500), esp(3));
  const udpS = t.add(mk(AF_INET, ...base, 17, 500, 0), esp(4));
  const udpSD = t.add(mk(AF_INET, ...base, 17, 500, 500), esp(5));
  const p = (sport: number, dport: number, proto = 17) => t.lookup(pkt4('10.1.1.1', '172.17.0.1', proto, sport, dport));
  assert.equal(p(500, 500), udpSD);
  assert.equal(p(500, 4500), udpS);
  assert.equal(p(4500, 500), udpD);
  assert.equal(p(1, 2), udp);
  assert.equal(p(500, 500, 6), plain);
});

test('a longer source prefix beats a longer destination prefix', () => {
  const t = new ErouteTable();
  const longSrc = t.add(mk(AF_INET, '10.1.0.0', 16, '0.0.0.0', 0), esp(1));
  const longDst = t.add(mk(AF_INET, '10.0.0.0', 8, '172.16.1.1', 32), esp(2));
  assert.equal(t.lookup(pkt4('10.1.5.5', '172.16.1.1')), longSrc);
  assert.equal(t.lookup(pkt4('10.2.5.5', '172.16.1.1')), longDst);
  // With equal source prefixes the destination decides.
  const sameSrc = t.add(mk(AF_INET, '10.1.0.0', 16, '172.16.0.0', 16), esp(3));
  assert.equal(t.lookup(pkt4('10.1.5.5', '172.16.1.1')), sameSrc);
  assert.equal(t.lookup(pkt4('10.1.5.5', '172.17.1.1')), longSrc);
  // A longer source whose destination does not fit yields to a shorter source.
  const t2 = new ErouteTable();
  const wide = t2.add(mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0), esp(4));
  t2.add(mk(AF_INET, '10.1.2.3', 32, '192.168.0.0', 16), esp(5));
  assert.equal(t2.lookup(pkt4('10.1.2.3', '8.8.8.8')), wide);
});

test('IPv6 eroutes, kept apart from IPv4', () => {
  const t = new ErouteTable();
  const all6 = t.add(mk(AF_INET6, '::', 0, '::', 0), shunt(SPI_DROP, '::'));
  const site = t.add(mk(AF_INET6, '2001:db8::', 32, '2001:db8:ffff::', 48), esp(1, '2001:db8::2'));
  const sub = t.add(mk(AF_INET6, '2001:db8:1:2::', 64, '::', 0), esp(2, '2001:db8::2'));
  const host = t.add(mk(AF_INET6, '2001:db8:1:2::99', 128, '2001:db8:ffff::1', 128), esp(3, '2001:db8::2'));
  const ike = t.add(mk(AF_INET6, '2001:db8:1:2::', 64, '::', 0, 17, 500, 500), shunt(SPI_PASS, '::'));
  const v4 = t.add(mk(AF_INET, '0.0.0.0', 0, '0.0.0.0', 0), esp(4));
  assert.equal(t.lookup(pkt6('fe80::1', 'ff02::1')), all6);
  assert.equal(t.lookup(pkt6('2001:db8:9::1', '2001:db8:ffff:1::1')), site);
  assert.equal(t.lookup(pkt6('2001:db8:1:2::1', '2001:db8:ffff:1::1')), sub);
  assert.equal(t.lookup(pkt6('2001:db8:1:2::99', '2001:db8:ffff::1')), host);
  assert.equal(t.lookup(pkt6('2001:db8:1:2::99', '2001:db8:ffff::2')), sub);
  assert.equal(t.lookup(pkt6('2001:db8:1:2::1', '2001:db8:ffff::1', 17, 500, 500)), ike);
  assert.equal(t.lookup(pkt4('1.2.3.4', '5.6.7.8')), v4);
  t.delete(all6.flow);
  assert.equal(t.lookup(pkt6('fe80::1', 'ff02::1')), undefined);
  assert.equal(t.lookup(pkt4('1.2.3.4', '5.6.7.8')), v4);
  const order = [...t.entries()].map((e) => `${e.flow.src}/${e.flow.srcPrefix}`);
  assert.deepEqual(order, ['0.0.0.0/0', '2001:db8::/32', '2001:db8:1:2::/64', '2001:db8:1:2::/64', '2001:db8:1:2::99/128']);
});

test('no match is undefined, and malformed packets do not match', () => {
  const t = new ErouteTable();
  assert.equal(t.lookup(pkt4('10.0.0.1', '10.0.0.2')), undefined);
  t.add(mk(AF_INET, '10.0.0.0', 8, '10.0.0.0', 8), esp(1));
  assert.equal(t.lookup(pkt4('11.0.0.1', '10.0.0.2')), undefined);
  assert.equal(t.lookup(pkt4('10.0.0.1', '11.0.0.2')), undefined);
  assert.equal(t.lookup(pkt6('::1', '::2')), undefined);
  assert.equal(t.lookup({ family: 1, src: new Uint8Array(4), dst: new Uint8Array(4), proto: 0, sport: 0, dport: 0 }), undefined);
  assert.equal(t.lookup({ family: AF_INET, src: new Uint8Array(2), dst: new Uint8Array(4), proto: 0, sport: 0, dport: 0 }), undefined);
  assert.equal(t.match(pkt4('11.0.0.1', '10.0.0.2')), undefined);
});

test('match counts packets and lastUsed with the injected clock; lookup does not', () => {
  let now = 100;
  const t = new ErouteTable(() => now);
  const e = t.add(mk(AF_INET, '10.0.0.0', 8, '0.0.0.0', 0), esp(1));
  assert.equal(t.lookup(pkt4('10.1.1.1', '1.1.1.1')), e);
  assert.equal(e.packets, 0);
  assert.equal(e.lastUsed, 0);
  now = 150;
  assert.equal(t.match(pkt4('10.1.1.1', '1.1.1.1')), e);
  now = 175;
  assert.equal(t.match(pkt4('10.2.2.2', '1.1.1.1')), e);
  assert.equal(e.packets, 2);
  assert.equal(e.lastUsed, 175);
  assert.equal(e.created, 100);
});

test('deleting everything prunes every node; clear() empties and returns all', () => {
  const t = new ErouteTable();
  const flows: ValidFlow[] = [];
  for (let i = 0; i < 300; i++) {
    const f = mk(AF_INET, `10.${i & 7}.${i & 255}.0`, 16 + (i % 17), `172.16.${i % 5}.${i % 251}`, 24 + (i % 9), i % 3 === 0 ? 17 : 0, 0, i % 6 === 0 ? 53 : 0);
    if (t.get(f)) continue;
    t.add(f, esp(i));
    flows.push(f);
    const g = mk(AF_INET6, `2001:db8:${i.toString(16)}::`, 48 + (i % 81), '::', i % 129);
    if (!t.get(g)) { t.add(g, esp(i, '2001:db8::2')); flows.push(g); }
  }
  assert.ok(t.nodeCount() > 0);
  assert.ok(t.nodeCount() <= 4 * flows.length, `node count ${t.nodeCount()} for ${flows.length} eroutes`);
  // Delete in a scrambled order.
  const order = flows.map((f, i) => [((i * 7919) % flows.length), f] as const).sort((a, b) => a[0] - b[0]);
  for (const [, f] of order.slice(0, -1)) t.delete(f);
  // One eroute left: exactly its source node and its destination node remain.
  assert.equal(t.size, 1);
  assert.equal(t.nodeCount(), 2);
  t.delete(order[order.length - 1][1]);
  assert.equal(t.size, 0);
  assert.equal(t.nodeCount(), 0);
  assert.equal([...t.entries()].length, 0);
  for (const f of flows) t.add(f, esp(1));
  const all = t.clear();
  assert.equal(all.length, flows.length);
  assert.equal(t.size, 0);
  assert.equal(t.nodeCount(), 0);
  assert.equal(t.lookup(pkt4('10.1.1.1', '172.16.0.1')), undefined);
});

test('entries() is in /proc order: KLIPS radix key order, more specific duplicates first', () => {
  const t = new ErouteTable();
  const add = (s: string, sp: number, d: string, dp: number, proto = 0, dport = 0) =>
    t.add(mk(AF_INET, s, sp, d, dp, proto, 0, dport), esp(1));
  add('192.168.0.0', 16, '0.0.0.0', 0);
  add('10.1.0.0', 16, '172.16.0.0', 12);
  add('10.0.0.0', 8, '0.0.0.0', 0);
  add('10.1.0.0', 16, '0.0.0.0', 0, 17, 53);
  add('10.1.0.0', 16, '0.0.0.0', 0);
  add('0.0.0.0', 0, '0.0.0.0', 0);
  add('10.0.0.0', 16, '0.0.0.0', 0);
  add('10.0.0.0', 24, '172.16.0.0', 12);
  add('10.1.0.0', 24, '0.0.0.0', 0);
  add('200.0.0.0', 8, '0.0.0.0', 0);
  t.add(mk(AF_INET6, '::', 0, '::', 0), esp(1, '::1'));
  const lines = [...t.entries()].map((e) => `${e.flow.src}/${e.flow.srcPrefix}>${e.flow.dst}/${e.flow.dstPrefix}:${e.flow.proto}`);
  assert.deepEqual(lines, [
    '0.0.0.0/0>0.0.0.0/0:0',
    '10.0.0.0/16>0.0.0.0/0:0', // same key bytes as the /8: the more specific first
    '10.0.0.0/8>0.0.0.0/0:0',
    '10.0.0.0/24>172.16.0.0/12:0', // key 10.0.0.0|172.16.0.0 sorts after 10.0.0.0|0.0.0.0
    '10.1.0.0/24>0.0.0.0/0:0',
    '10.1.0.0/16>0.0.0.0/0:0',
    '10.1.0.0/16>0.0.0.0/0:17', // proto is part of the key: 0 before 17
    '10.1.0.0/16>172.16.0.0/12:0',
    '192.168.0.0/16>0.0.0.0/0:0',
    '200.0.0.0/8>0.0.0.0/0:0', // unsigned order: 200 after 192
    '::/0>::/0:0',
  ]);
  assert.deepEqual([...t].map((e) => e.flow), [...t.entries()].map((e) => e.flow));
});

/* ---- randomized check against a brute-force scan --------------------------------- */

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytesToBig(b: Uint8Array): bigint {
  let x = 0n;
  for (const v of b) x = (x << 8n) | BigInt(v);
  return x;
}

/** The reference: scan every eroute; the match with the largest specificity tuple wins. */
function bruteForce(all: Eroute[], p: PacketSelector): Eroute | undefined {
  return reference(all)(p);
}

const references = new WeakMap<Eroute[], (p: PacketSelector) => Eroute | undefined>();

/** A brute-force matcher over a fixed list (addresses pre-parsed into bigints once). */
function reference(all: Eroute[]): (p: PacketSelector) => Eroute | undefined {
  const cached = references.get(all);
  if (cached) return cached;
  const rows = all.map((e) => {
    const f = e.flow;
    const width = f.family === AF_INET ? 32n : 128n;
    const parse = (a: string) => bytesToBig(f.family === AF_INET ? parseIPv4(a)! : parseIPv6(a)!);
    return {
      e, f, sShift: width - BigInt(f.srcPrefix), dShift: width - BigInt(f.dstPrefix),
      s: parse(f.src) >> (width - BigInt(f.srcPrefix)), d: parse(f.dst) >> (width - BigInt(f.dstPrefix)),
      tuple: [f.srcPrefix, f.dstPrefix, f.proto ? 1 : 0, f.sport ? 1 : 0, f.dport ? 1 : 0],
    };
  });
  const fn = (p: PacketSelector): Eroute | undefined => {
    const ps = bytesToBig(p.src);
    const pd = bytesToBig(p.dst);
    let best: (typeof rows)[number] | undefined;
    for (const r of rows) {
      const f = r.f;
      if (f.family !== p.family) continue;
      if ((ps >> r.sShift) !== r.s || (pd >> r.dShift) !== r.d) continue;
      if ((f.proto && f.proto !== p.proto) || (f.sport && f.sport !== p.sport) || (f.dport && f.dport !== p.dport)) continue;
      if (best === undefined) { best = r; continue; }
      for (let i = 0; i < r.tuple.length; i++) {
        if (r.tuple[i] !== best.tuple[i]) { if (r.tuple[i] > best.tuple[i]) best = r; break; }
      }
    }
    return best?.e;
  };
  references.set(all, fn);
  return fn;
}

function describeE(e: Eroute | undefined): string {
  return e ? formatErouteProc(e) : 'none';
}

function randomizedCheck(family: number, seed: number, nEroutes: number, nPackets: number): void {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const bytes = family === AF_INET ? 4 : 16;
  const bits = bytes * 8;
  // A small address space so that eroutes overlap a lot.
  const randAddr = (): Uint8Array => {
    const b = new Uint8Array(bytes);
    b[0] = family === AF_INET ? 10 : 0x20;
    if (family === AF_INET6) b[1] = 0x01;
    for (let i = family === AF_INET ? 1 : 2; i < bytes; i++) b[i] = int(4) === 0 ? int(256) : int(3);
    return b;
  };
  const prefixes = family === AF_INET ? [0, 1, 8, 9, 15, 16, 17, 23, 24, 25, 30, 31, 32] : [0, 1, 16, 31, 48, 64, 65, 96, 120, 127, 128];
  const toText = (b: Uint8Array) => family === AF_INET ? [...b].join('.') : [...Array(8)].map((_, i) => ((b[2 * i] << 8) | b[2 * i + 1]).toString(16)).join(':');
  const t = new ErouteTable();
  let tries = 0;
  while (t.size < nEroutes && tries++ < nEroutes * 10) {
    const proto = pick([0, 0, 0, 6, 17]);
    const sport = proto === 0 ? pick([0, 0, 0, 500]) : pick([0, 0, 500, 4500]);
    const dport = pick([0, 0, 53, 500]);
    const f = mk(family, toText(randAddr()), pick(prefixes), toText(randAddr()), pick(prefixes), proto, sport, dport);
    if (t.get(f)) continue;
    t.add(f, esp(t.size + 1));
  }
  assert.equal(t.size, nEroutes);
  assert.ok(t.nodeCount() < 4 * nEroutes + 2);
  const all = [...t.entries()];
  let hits = 0;
  for (let i = 0; i < nPackets; i++) {
    let src = randAddr();
    let dst = randAddr();
    if (i % 2 === 0) {
      // Aim inside a random eroute: copy its prefixes' bits.
      const f = pick(all).flow;
      const fs = family === AF_INET ? parseIPv4(f.src)! : parseIPv6(f.src)!;
      const fd = family === AF_INET ? parseIPv4(f.dst)! : parseIPv6(f.dst)!;
      const blend = (net: Uint8Array, prefix: number, host: Uint8Array) => {
        const out = new Uint8Array(bytes);
        for (let k = 0; k < bits; k++) {
          const from = k < prefix ? net : host;
          if (from[k >> 3] & (0x80 >> (k & 7))) out[k >> 3] |= 0x80 >> (k & 7);
        }
        return out;
      };
      src = blend(fs, f.srcPrefix, src);
      dst = blend(fd, f.dstPrefix, dst);
    }
    const p: PacketSelector = {
      family, src, dst, proto: pick([6, 17, 17, 50]), sport: pick([500, 4500, 1234]), dport: pick([53, 500, 80]),
    };
    const want = bruteForce(all, p);
    const got = t.lookup(p);
    if (want) hits++;
    assert.equal(got, want, `packet ${toText(src)} -> ${toText(dst)} proto ${p.proto} ${p.sport}->${p.dport}: got ${describeE(got)}, want ${describeE(want)}`);
  }
  assert.ok(hits > nPackets / 2, `only ${hits} of ${nPackets} packets matched anything`);
  // Delete half, check again, then delete the rest: everything prunes.
  for (let i = 0; i < all.length; i += 2) t.delete(all[i].flow);
  const rest = [...t.entries()];
  assert.equal(rest.length, all.length - Math.ceil(all.length / 2));
  // Patricia bound: every glue node has two children, so each trie holds fewer than twice
  // as many nodes as values (source and destination tries together: < 4 per eroute).
  assert.ok(t.nodeCount() < 4 * rest.length, `${t.nodeCount()} nodes for ${rest.length} eroutes`);
  for (let i = 0; i < nPackets / 5; i++) {
    const p: PacketSelector = { family, src: randAddr(), dst: randAddr(), proto: pick([6, 17]), sport: pick([500, 1]), dport: pick([53, 500, 80]) };
    assert.equal(t.lookup(p), bruteForce(rest, p));
  }
  for (const e of rest) t.delete(e.flow);
  assert.equal(t.size, 0);
  assert.equal(t.nodeCount(), 0);
}

test('randomized: 2,000 IPv4 eroutes and 5,000 packets agree with a brute-force scan', () => {
  randomizedCheck(AF_INET, 0x5eed, 2000, 5000);
});

test('randomized: 1,000 IPv6 eroutes and 3,000 packets agree with a brute-force scan', () => {
  randomizedCheck(AF_INET6, 0xbeef, 1000, 3000);
});

test('the brute-force reference itself is strict about the ordering', () => {
  // Guard against a reference that would accept anything: two overlapping eroutes where
  // only the tuple order decides.
  const t = new ErouteTable();
  const a = t.add(mk(AF_INET, '10.0.0.0', 8, '10.0.0.0', 32), esp(1));
  const b = t.add(mk(AF_INET, '10.0.0.0', 9, '0.0.0.0', 0), esp(2));
  const p = pkt4('10.0.0.1', '10.0.0.0');
  assert.equal(bruteForce([a, b], p), b);
  assert.equal(bruteForce([b, a], p), b);
  assert.equal(t.lookup(p), b);
});

/* ---- /proc/net/ipsec_eroute ------------------------------------------------------ */

test('formatErouteProc gives KLIPS\'s /proc/net/ipsec_eroute line', () => {
  const t = new ErouteTable();
  const e = t.add(mk(AF_INET, '10.1.2.0', 24, '172.16.0.0', 16), esp(0x12345678));
  e.packets = 42;
  assert.equal(formatErouteProc(e),
    '42         10.1.2.0/24        -> 172.16.0.0/16      => esp0x12345678@192.0.2.2');
  const trap = t.add(mk(AF_INET, '0.0.0.0', 0, '0.0.0.0', 0), shunt(SPI_TRAP));
  assert.equal(formatErouteProc(trap),
    '0          0.0.0.0/0          -> 0.0.0.0/0          => %trap');
  const dns = t.add(mk(AF_INET, '192.168.1.1', 32, '8.8.8.8', 32, 17, 1053, 53), shunt(SPI_PASS));
  assert.equal(formatErouteProc(dns),
    '0          192.168.1.1/32:1053 -> 8.8.8.8/32:53      => %pass:17');
  const six = t.add(mk(AF_INET6, '2001:db8::', 32, '::', 0, 6, 0, 443), esp(0x105, '2001:db8::2'));
  assert.equal(formatErouteProc(six),
    '0          2001:db8::/32      -> [::/0]:443         => esp0x105@2001:db8::2:6');
  const odd = t.add(mk(AF_INET, '10.9.0.0', 16, '0.0.0.0', 0), shunt(999));
  assert.equal(formatErouteProc(odd),
    '0          10.9.0.0/16        -> 0.0.0.0/0          => %unk-999');
});
