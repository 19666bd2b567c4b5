/**
 * Cross-check of the data plane against scapy's IPsec (scapy.layers.ipsec, run by
 * test/dataplane-scapy.py under /usr/bin/python3): for every ESP algorithm pair, AH with
 * every HMAC, both families, tunnel and transport mode, ESN, and ESP in UDP (NAT-T),
 * scapy decrypts/verifies what klips builds, klips decrypts/verifies what scapy builds,
 * and with the same IV and sequence number both produce the same bytes. Skipped, with a
 * message, only where /usr/bin/python3 or its scapy is missing; any mismatch fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ENCRYPT_ALGORITHMS, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
  ahInput, ahOutput, espInput, espOutput, nattDecap, nattEncap, refreshIPv4Checksum, trafficClassOf,
  type TransformSA,
} from '../src/dataplane/index.js';
import { ESPINUDP_WITH_NON_ESP, formatIPv4, formatIPv6 } from '../src/wire/index.js';
import {
  AUTHS, addr, ahSA, algPairs, bytes, espSA, ipv4, ipv6, optionsHeader, routingHeader, runScapy,
  samplePackets, scapyUnavailable, tcp, udp, type AlgPair, type ScapyCase, type ScapyResult,
} from './dataplane-helpers.js';

const why = scapyUnavailable();
if (why) console.log(`# SKIP dataplane scapy cross-check: ${why} (install python3-scapy for /usr/bin/python3)`);
const skip = why ? `scapy unavailable: ${why}` : false;

const V4_SA = { src: addr('192.0.2.1'), dst: addr('198.51.100.2') };
const V6_SA = { src: addr('2001:db8:ffff::1'), dst: addr('2001:db8:eeee::2') };
const fmt = (a: Uint8Array) => (a.length === 4 ? formatIPv4(a) : formatIPv6(a));

type Mode = 'tunnel' | 'transport';

/** One klips-vs-scapy comparison: the plaintext, the SA, and what to expect. */
interface Check {
  label: string;
  sa: TransformSA;
  mode: Mode;
  inner: Buffer;
  seq: number;
  seqHi: number;
  iv?: Buffer;
  natt?: boolean;
  /** Only compare klips's and scapy's output bytes (scapy cannot verify it as sent). */
  bytesOnly?: boolean;
  /** Only have scapy verify klips's packet (scapy's own output is wrong for it). */
  verifyOnly?: boolean;
}

function scapyBase(c: Check, pair?: AlgPair, authName?: string | null): Omit<ScapyCase, 'op' | 'packet'> {
  const id = 0x4000 + (c.seq & 0xfff);
  return {
    proto: pair ? 'ESP' : 'AH', spi: c.sa.spi, seq: c.seq, esn: c.sa.esn ?? false, seqhi: c.seqHi,
    crypt: pair?.scapyCrypt ?? null, ckey: Buffer.from(c.sa.encryptKey ?? []).toString('hex'), cicv: pair?.cicv,
    auth: pair ? pair.scapyAuth : authName, akey: Buffer.from(c.sa.authKey ?? []).toString('hex'),
    tunnel: c.mode === 'tunnel'
      ? { v: c.sa.src.length === 4 ? 4 : 6, src: fmt(c.sa.src), dst: fmt(c.sa.dst), tos: c.sa.src.length === 4 ? trafficClassOf(c.inner) : 0, id, ttl: 64 }
      : null,
    natt: c.natt ? { sport: c.sa.natT!.sport, dport: c.sa.natT!.dport } : null,
    iv: c.iv ? c.iv.toString('hex') : null,
  };
}

/** klips's protected packet for a check. */
function protect(c: Check, esp: boolean): Buffer {
  const tunnel = { id: 0x4000 + (c.seq & 0xfff) };
  const r = esp
    ? espOutput(c.sa, c.inner, { mode: c.mode, seq: c.seq, seqHi: c.seqHi, iv: c.iv, tunnel })
    : ahOutput(c.sa, c.inner, { mode: c.mode, seq: c.seq, seqHi: c.seqHi, tunnel });
  assert.ok(r.ok, `${c.label}: klips output dropped: ${r.ok ? '' : r.reason}`);
  if (!c.natt) return r.packet;
  const n = nattEncap(c.sa, r.packet);
  assert.ok(n.ok, `${c.label}: nattEncap dropped`);
  return n.packet;
}

/** klips's view of a packet scapy protected (seqHi from a fresh window's inference, or given). */
function unprotect(c: Check, esp: boolean, packet: Buffer): Buffer {
  let pkt = packet;
  if (c.natt) {
    const d = nattDecap(pkt, ESPINUDP_WITH_NON_ESP);
    assert.ok(d.ok && d.kind === 'esp', `${c.label}: nattDecap did not find ESP`);
    pkt = d.packet;
  }
  const opts = { mode: c.mode, seqHi: c.seqHi };
  const r = esp ? espInput(c.sa, pkt, opts) : ahInput(c.sa, pkt, opts);
  assert.ok(r.ok, `${c.label}: klips could not open scapy's packet: ${r.ok ? '' : r.reason}`);
  return r.packet;
}

function crossCheck(checks: { c: Check; pair?: AlgPair; authName?: string | null }[]): number {
  const cases: ScapyCase[] = [];
  const mine: Buffer[] = [];
  for (const { c, pair, authName } of checks) {
    const ours = protect(c, !!pair);
    mine.push(ours);
    const base = scapyBase(c, pair, authName);
    if (!c.verifyOnly) cases.push({ ...base, op: 'encrypt', packet: c.inner.toString('hex') });
    if (!c.bytesOnly) cases.push({ ...base, op: 'decrypt', packet: ours.toString('hex') });
  }
  const results = runScapy(cases);
  let k = 0;
  const ok = (r: ScapyResult, what: string) => {
    if (!r.ok) assert.fail(`${what}: scapy error ${r.error}`);
    return Buffer.from(r.packet, 'hex');
  };
  checks.forEach(({ c, pair }, i) => {
    const theirs = c.verifyOnly ? undefined : ok(results[k++], `${c.label} scapy encrypt`);
    if (theirs) assert.equal(theirs.toString('hex'), mine[i].toString('hex'), `${c.label}: klips and scapy built different bytes`);
    if (!c.bytesOnly) {
      const opened = ok(results[k++], `${c.label} scapy decrypt`);
      assert.equal(opened.toString('hex'), c.inner.toString('hex'), `${c.label}: scapy's decryption of klips's packet differs`);
    }
    if (theirs && !c.bytesOnly) {
      assert.equal(unprotect(c, !!pair, theirs).toString('hex'), c.inner.toString('hex'), `${c.label}: klips's decryption of scapy's packet differs`);
    }
  });
  return checks.length;
}

function ivFor(pair: AlgPair, seed: number): Buffer | undefined {
  const n = ENCRYPT_ALGORITHMS.get(pair.encrypt)!.ivBytes;
  return n ? bytes(n, seed) : undefined;
}

/**
 * IPv6 with hop-by-hop options (one mutable, one not), optionally a type 0 routing header
 * with `left` segments left, and destination options.
 */
function v6WithExtensions(routing?: number): Buffer {
  const tail = tcp(1234, 80, bytes(33, 5));
  const dst = optionsHeader(IPPROTO_TCP, Buffer.from([0x1e, 2, 0xaa, 0xbb]));
  const rh = routing === undefined ? Buffer.alloc(0) : routingHeader(IPPROTO_DSTOPTS, ['2001:db8:3::3', '2001:db8:2::7'], routing);
  const hbh = optionsHeader(routing === undefined ? IPPROTO_DSTOPTS : IPPROTO_ROUTING, Buffer.from([0x3e, 4, 1, 2, 3, 4, 0x05, 2, 0, 0]));
  return ipv6({ nh: IPPROTO_HOPOPTS, payload: Buffer.concat([hbh, rh, dst, tail]), dst: routing ? '2001:db8:9::9' : '2001:db8:2::7' });
}

/** IPv4 with router alert (immutable), record route (mutable) and NOP. */
function v4WithOptions(): Buffer {
  const opts = Buffer.from([0x94, 4, 0, 0, 0x07, 7, 8, 1, 2, 3, 4, 0x01]);
  return ipv4({ payload: tcp(2000, 3000, bytes(21, 9)), options: opts, tos: 0x10, flags: 0x4000 });
}

test('ESP: every algorithm pair, tunnel and transport, IPv4 and IPv6, against scapy', { skip }, () => {
  const checks: { c: Check; pair: AlgPair }[] = [];
  algPairs().forEach((pair, i) => {
    const pk = samplePackets(i + 1);
    const shapes: [string, Buffer, Mode, 'v4' | 'v6'][] = [
      ['v4 tcp tunnel/v4', pk[0].packet, 'tunnel', 'v4'],
      ['v6 udp transport', pk[4].packet, 'transport', 'v6'],
      ['v4 icmp transport', pk[2].packet, 'transport', 'v4'],
      ['v6 tcp tunnel/v6', pk[3].packet, 'tunnel', 'v6'],
      [i % 2 ? 'v6 udp tunnel/v4' : 'v4 udp tunnel/v6', i % 2 ? pk[4].packet : pk[1].packet, 'tunnel', i % 2 ? 'v4' : 'v6'],
    ];
    if (i % 5 === 0) shapes.push(['v6 extension headers transport', v6WithExtensions(0), 'transport', 'v6']);
    shapes.forEach(([shape, inner, mode, fam], j) => {
      const sa = espSA(pair, fam === 'v4' ? V4_SA : V6_SA, i + 1);
      const seq = 1 + i * 7 + j;
      checks.push({ pair, c: { label: `${pair.name} ${shape}`, sa, mode, inner, seq, seqHi: 0, iv: ivFor(pair, seq) } });
    });
  });
  assert.ok(crossCheck(checks) >= 250);
});

test('ESP with extended sequence numbers (RFC 4303 §2.2.1) against scapy', { skip }, () => {
  const wanted = ['aes128cbc/HMAC-SHA1-96', 'aes256ctr/SHA2-256-128', 'null/SHA2-512-256', '3des/HMAC-MD5-96',
    'aes128gcm16', 'aes256gcm8', 'aes192gcm12', 'aes192cbc/SHA2-384-192'];
  const checks: { c: Check; pair: AlgPair }[] = [];
  for (const pair of algPairs().filter((p) => wanted.includes(p.name))) {
    for (const [seqHi, seq] of [[1, 5], [0xfffffffe, 0xffffffff], [7, 0]]) {
      for (const mode of ['tunnel', 'transport'] as const) {
        const sa = espSA(pair, { ...V4_SA, esn: true }, seq & 0xff);
        const inner = samplePackets(seq & 0xff)[mode === 'tunnel' ? 3 : 0].packet;
        checks.push({ pair, c: { label: `${pair.name} esn ${seqHi}:${seq} ${mode}`, sa, mode, inner, seq, seqHi, iv: ivFor(pair, seq) } });
      }
    }
  }
  assert.equal(crossCheck(checks), wanted.length * 6);
});

test('ESP in UDP (NAT-T, RFC 3948) against scapy', { skip }, () => {
  const checks: { c: Check; pair: AlgPair }[] = [];
  const pairs = algPairs().filter((p) => ['aes128cbc/HMAC-SHA1-96', 'aes128gcm16', 'aes256ctr/SHA2-256-128', '3des/HMAC-MD5-96', 'null/HMAC-SHA1-96'].includes(p.name));
  pairs.forEach((pair, i) => {
    for (const [sport, dport] of [[4500, 4500], [31337, 4500]]) {
      const sa = espSA(pair, { ...V4_SA, natT: { type: ESPINUDP_WITH_NON_ESP, sport, dport } }, i + 40);
      const inner = samplePackets(i)[i % 5].packet;
      checks.push({ pair, c: { label: `${pair.name} natt ${sport}`, sa, mode: 'tunnel', inner, seq: 100 + i, seqHi: 0, iv: ivFor(pair, i), natt: true } });
    }
  });
  assert.equal(crossCheck(checks), pairs.length * 2);
});

test('AH: every HMAC, tunnel and transport, IPv4 (with options) and IPv6 (with extension headers), against scapy', { skip }, () => {
  const checks: { c: Check; authName: string }[] = [];
  AUTHS.forEach((auth, i) => {
    const pk = samplePackets(i + 11);
    const shapes: [string, Buffer, Mode, 'v4' | 'v6', ('bytes' | 'verify')?][] = [
      ['v4 tcp tunnel/v4', pk[0].packet, 'tunnel', 'v4'],
      ['v4 udp transport', pk[1].packet, 'transport', 'v4'],
      ['v4 options transport', v4WithOptions(), 'transport', 'v4'],
      ['v6 tcp transport', pk[3].packet, 'transport', 'v6'],
      ['v6 udp tunnel/v6', pk[4].packet, 'tunnel', 'v6'],
      ['v4 icmp tunnel/v6', pk[2].packet, 'tunnel', 'v6'],
      ['v6 extension headers transport', v6WithExtensions(), 'transport', 'v6'],
      ['v6 routing header arrived', v6WithExtensions(0), 'transport', 'v6', 'verify'],
      ['v6 routing header in flight', v6WithExtensions(2), 'transport', 'v6', 'bytes'],
    ];
    shapes.forEach(([shape, inner, mode, fam, only], j) => {
      const sa = ahSA(auth, fam === 'v4' ? V4_SA : V6_SA, i + 1);
      checks.push({
        authName: auth.scapy,
        c: { label: `AH ${auth.scapy} ${shape}`, sa, mode, inner, seq: 1 + j + 10 * i, seqHi: 0, bytesOnly: only === 'bytes', verifyOnly: only === 'verify' },
      });
    });
    for (const seqHi of [1, 0xffffffff]) {
      const sa = ahSA(auth, { ...V6_SA, esn: true }, i + 3);
      checks.push({ authName: auth.scapy, c: { label: `AH ${auth.scapy} esn ${seqHi}`, sa, mode: 'tunnel', inner: pk[0].packet, seq: 77, seqHi } });
    }
  });
  assert.equal(crossCheck(checks), AUTHS.length * 11);
});

test('AH: a scapy packet still verifies after routers change its mutable fields', { skip }, () => {
  const auth = AUTHS[2];
  const sa4 = ahSA(auth, V4_SA, 1);
  const sa6 = ahSA(auth, V6_SA, 2);
  const base = (sa: TransformSA, inner: Buffer): ScapyCase => ({
    op: 'encrypt', proto: 'AH', spi: sa.spi, seq: 9, auth: auth.scapy, akey: Buffer.from(sa.authKey!).toString('hex'),
    tunnel: null, packet: inner.toString('hex'),
  });
  const [r4, r6] = runScapy([base(sa4, v4WithOptions()), base(sa6, v6WithExtensions())]);
  assert.ok(r4.ok && r6.ok);

  const p4 = Buffer.from(r4.packet, 'hex');
  p4[1] = 0xb8; // DSCP rewritten
  p4[8] -= 3; // three hops
  p4.writeUInt16BE(0, 6); // DF cleared
  p4[26] = 12; // record route: pointer moved on …
  p4.set([203, 0, 113, 9], 27); // … and an address recorded
  refreshIPv4Checksum(p4);
  assert.ok(ahInput(sa4, p4, { mode: 'transport' }).ok);
  p4[22] ^= 1; // router alert value: immutable
  refreshIPv4Checksum(p4);
  assert.deepEqual(ahInput(sa4, p4, { mode: 'transport' }), { ok: false, reason: 'icv' });

  const p6 = Buffer.from(r6.packet, 'hex');
  p6.writeUInt32BE(0x6ab12345, 0); // traffic class and flow label
  p6[7] = 1; // hop limit
  p6[44] = 0x77; // data of the mutable hop-by-hop option (type 0x3e)
  assert.ok(ahInput(sa6, p6, { mode: 'transport' }).ok);
  p6[50] ^= 1; // data of the router alert option: immutable
  assert.deepEqual(ahInput(sa6, p6, { mode: 'transport' }), { ok: false, reason: 'icv' });
});

test('IPv4 header and TCP/UDP checksums as klips computes them equal scapy\'s', { skip }, () => {
  const packets = [
    ...samplePackets(3).filter((p) => p.name !== 'v4 icmp').map((p) => p.packet),
    v4WithOptions(),
    v6WithExtensions(),
    v6WithExtensions(0),
  ];
  for (let n = 0; n < 12; n++) {
    packets.push(ipv4({ proto: IPPROTO_UDP, payload: udp(n, 9, bytes(n, n)) }), ipv6({ payload: tcp(n, 9, bytes(n * 3, n)) }));
  }
  const results = runScapy(packets.map((p) => ({ op: 'checksums', packet: p.toString('hex') })));
  results.forEach((r, i) => {
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(r.packet, packets[i].toString('hex'));
  });
});
