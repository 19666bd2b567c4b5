/**
 * Properties of the PF_KEY v2 codec, with fast-check:
 * (a) any valid message, built from values the parser accepts and the extensions its
 *     type permits, survives build -> parse -> build unchanged (outbound and inbound);
 * (b) mutated messages (flipped, truncated, extended, spliced bytes) are either refused
 *     with a PfkeyError carrying a known positive errno, or accepted and rebuilt byte for
 *     byte; nothing else is ever thrown.
 * Plus the sockaddr text forms and the X_KMPRIVATE codec (no message type permits it).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fc from 'fast-check';
import {
  parseMessage, buildMessage, RULES, EXT_TABLE, extTypes, PfkeyError, errnoName,
  formatIPv4, formatIPv6, parseIPv4, parseIPv6, prefixToMask, maskToPrefix, familyOf,
  AF_INET, AF_INET6, DEBUG_SUBSYSTEMS, SADB_X_SAFLAGS_CLEARFLOW,
  type PfkeyMessage, type ExtField, type Direction, type Sa, type MessageInput,
} from '../src/wire/index.js';
import { hex, unhex, extHeaders, klipsRequests } from './wire-helpers.js';

// ---------------------------------------------------------------- value arbitraries

/** fc.record, but with ordinary prototypes so deepStrictEqual compares like with like. */
const rec: typeof fc.record = ((model: any, c?: any) => fc.record(model, { ...c, noNullPrototype: true })) as any;

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
/** Zero more often than chance, since zero means "no limit" / "none" in several fields. */
const u32z = fc.oneof(fc.constant(0), u32);
const u64z = fc.oneof(fc.constant(0n), u64);

/** SA: state LARVAL/MATURE/DYING (DEAD refused), replay <= 64, ref in the 24-byte form only. */
const saArb: fc.Arbitrary<Sa> = rec(
  {
    spi: u32,
    replay: fc.integer({ min: 0, max: 64 }),
    state: fc.integer({ min: 0, max: 2 }),
    auth: u8,
    encrypt: u8,
    flags: u32,
    ref: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 32767 }), fc.constant(0xffffffff)),
  },
  { requiredKeys: ['spi', 'replay', 'state', 'auth', 'encrypt', 'flags'] },
);

/** Lifetime: packets present exactly in the 40-byte form. */
const lifetimeArb = rec(
  { allocations: u32, bytes: u64, addtime: u64, usetime: u64, packets: u32 },
  { requiredKeys: ['allocations', 'bytes', 'addtime', 'usetime'] },
);

/** IPv6 words biased to zero so that "::" compression shows up often. */
const v6Bytes = fc.array(fc.oneof(fc.constant(0), u16), { minLength: 8, maxLength: 8 }).map((w) => {
  const b = new Uint8Array(16);
  w.forEach((x, i) => { b[2 * i] = x >> 8; b[2 * i + 1] = x & 0xff; });
  return b;
});

/** Address: IPv4 or IPv6 (with flowinfo and scope id), prefixlen always 0 (KLIPS's rule). */
const addressArb = fc.oneof(
  rec({
    proto: u8, prefixlen: fc.constant(0), family: fc.constant(AF_INET), port: u16,
    addr: fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => formatIPv4(b)),
  }),
  rec({
    proto: u8, prefixlen: fc.constant(0), family: fc.constant(AF_INET6), port: u16,
    addr: v6Bytes.map((b) => formatIPv6(b)), flowinfo: u32, scopeId: u32,
  }),
);

/** Key: bits > 0 and ceil(bits/8) bytes; a partial last byte is kept as it is. */
const keyArb = fc.integer({ min: 1, max: 2048 }).chain((bits) =>
  fc.uint8Array({ minLength: Math.ceil(bits / 8), maxLength: Math.ceil(bits / 8) }).map((key) => ({ bits, key })),
);

/** Identity: C-string bytes 1..255 as latin1 text (no NUL). */
const identArb = rec({
  type: fc.integer({ min: 0, max: 4 }),
  id: u64,
  data: fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
});

/** Whole 8-byte words. */
const words = (max: number) => fc.integer({ min: 0, max }).chain((n) => fc.uint8Array({ minLength: 8 * n, maxLength: 8 * n }));

const sensArb = rec({ dpd: u32, sensLevel: u8, integLevel: u8, sensBitmap: words(3), integBitmap: words(3) });

/** An algorithm's key-size pair: 1 <= min <= max with an algorithm, 0/0 without. */
const bitsFor = (alg: number) =>
  alg ? u16.filter((x) => x > 0).chain((min) => fc.integer({ min, max: 0xffff }).map((max) => [min, max] as const)) : fc.constant([0, 0] as const);
/** soft <= hard unless hard is 0 (no limit). */
const softHard32 = u32z.chain((hard) => (hard ? fc.integer({ min: 0, max: hard }) : u32).map((soft) => [soft, hard] as const));
const softHard64 = u64z.chain((hard) => (hard ? fc.bigInt({ min: 0n, max: hard }) : u64).map((soft) => [soft, hard] as const));

const combArb = fc.tuple(fc.oneof(fc.constant(0), u8), fc.oneof(fc.constant(0), u8)).chain(([auth, encrypt]) =>
  fc.tuple(bitsFor(auth), bitsFor(encrypt), u16, softHard32, softHard64, softHard64, softHard64).map(
    ([[authMinbits, authMaxbits], [encryptMinbits, encryptMaxbits], flags, al, by, ad, us]) => ({
      auth, encrypt, flags, authMinbits, authMaxbits, encryptMinbits, encryptMaxbits,
      softAllocations: al[0], hardAllocations: al[1], softBytes: by[0], hardBytes: by[1],
      softAddtime: ad[0], hardAddtime: ad[1], softUsetime: us[0], hardUsetime: us[1],
    }),
  ),
);
const propArb = rec({ replay: fc.integer({ min: 0, max: 64 }), combs: fc.array(combArb, { maxLength: 3 }) });

const supportedArb = rec({
  algs: fc.array(rec({ id: u8, ivlen: u8, minbits: u16, maxbits: u16 }), { maxLength: 6 }),
});

/** SPI range: 255 < min <= max. */
const spirangeArb = fc.integer({ min: 256, max: 0xffffffff }).chain((min) => fc.integer({ min, max: 0xffffffff }).map((max) => ({ min, max })));

const kmprivateArb = rec({ data: words(4) });
const satype2Arb = rec({ satype: fc.constantFrom(2, 3, 9, 10, 11) });
const debugArb = rec(Object.fromEntries(DEBUG_SUBSYSTEMS.map((s) => [s, u32z])) as Record<(typeof DEBUG_SUBSYSTEMS)[number], fc.Arbitrary<number>>);
const protocolArb = rec({ proto: u8, direction: u8, flags: u8 });
const natTTypeArb = rec({ type: u8 });
const portArb = rec({ port: u16 });
const plumbifArb = rec({ ifnum: u16 });
const sarefArb = rec({ me: u32, him: u32 });

/** One arbitrary per extension field of src/wire/extensions.ts. */
const ARB: Record<ExtField, fc.Arbitrary<unknown>> = {
  sa: saArb, lifetimeCurrent: lifetimeArb, lifetimeHard: lifetimeArb, lifetimeSoft: lifetimeArb,
  addressSrc: addressArb, addressDst: addressArb, addressProxy: addressArb,
  keyAuth: keyArb, keyEncrypt: keyArb, identitySrc: identArb, identityDst: identArb,
  sensitivity: sensArb, proposal: propArb, supportedAuth: supportedArb, supportedEncrypt: supportedArb,
  spirange: spirangeArb, kmprivate: kmprivateArb, satype2: satype2Arb, sa2: saArb,
  addressDst2: addressArb, addressSrcFlow: addressArb, addressDstFlow: addressArb,
  addressSrcMask: addressArb, addressDstMask: addressArb, debug: debugArb, protocol: protocolArb,
  natTType: natTTypeArb, natTSport: portArb, natTDport: portArb, natTOa: addressArb,
  plumbif: plumbifArb, saref: sarefArb,
};

test('every extension type 1..32 has an arbitrary', () => {
  for (let t = 1; t <= 32; t++) assert.ok(ARB[EXT_TABLE[t]!.field], `extension ${t}`);
});

// ---------------------------------------------------------------- message arbitraries

/** SA types a message type accepts: a protocol for the SA-keyed ones, non-zero for a few. */
function satypeFor(type: number): fc.Arbitrary<number> {
  if ([1, 2, 3, 4, 5, 13, 14].includes(type)) return fc.constantFrom(2, 3, 9, 10, 11);
  if ([6, 7, 8].includes(type)) return fc.integer({ min: 1, max: 255 });
  return u8;
}

interface Generated {
  dir: Direction;
  msg: MessageInput;
}

/**
 * A message of a random type in a direction: its required extensions plus a random subset
 * of the others its rules permit, errno 0. Inbound, the per-type semantic rules are made
 * to hold (ADD/UPDATE: a MATURE SA fit for its SA type; X_DELFLOW: flows or CLEARFLOW).
 */
function messageArb(dir: Direction): fc.Arbitrary<Generated> {
  return fc.integer({ min: 1, max: 19 }).chain((type) => {
    const rule = RULES[type][dir];
    const optional = extTypes((rule.permitted & ~rule.required) >>> 0);
    return fc.subarray(optional).chain((opt) => {
      const types = [...extTypes(rule.required), ...opt];
      const model = Object.fromEntries(types.map((t) => [EXT_TABLE[t]!.field, ARB[EXT_TABLE[t]!.field]]));
      return rec({ satype: satypeFor(type), seq: u32, pid: u32, exts: rec(model), sa: saArb }).map(({ satype, seq, pid, exts, sa }) => {
        const m = { header: { version: 2, type, errno: 0, satype, len: 0, reserved: 0, seq, pid }, ...exts } as MessageInput;
        if (dir === 'in') fixInbound(m, sa);
        return { dir, msg: m };
      });
    });
  });
}

function fixInbound(m: MessageInput, spare: Sa): void {
  const { type, satype } = m.header as { type: number; satype: number };
  if (type === 2 || type === 3) {
    const sa = m.sa!;
    sa.state = 1;
    if (sa.spi <= 255) sa.spi += 256;
    if (satype === 2) { sa.auth ||= 2; sa.encrypt = 0; }
    if (satype === 3) { sa.encrypt ||= 3; if (sa.encrypt === 11) sa.auth ||= 3; }
    if (satype === 10) { sa.encrypt ||= 2; sa.auth = 0; }
  }
  if (type === 15 && !(m.addressSrcFlow && m.addressDstFlow && m.addressSrcMask && m.addressDstMask)) {
    m.sa ??= spare;
    m.sa.flags = (m.sa.flags | SADB_X_SAFLAGS_CLEARFLOW) >>> 0;
  }
}

/** What parse must give for a generated message: the same, with the header's len filled in. */
function expected(g: Generated, built: Uint8Array): PfkeyMessage {
  return { ...g.msg, header: { ...(g.msg.header as PfkeyMessage['header']), len: built.length / 8 } } as PfkeyMessage;
}

test('(a) valid outbound messages: build -> parse(out) gives the input, and rebuilds the same bytes', () => {
  fc.assert(
    fc.property(messageArb('out'), (g) => {
      const b = buildMessage(g.msg);
      const m = parseMessage(b, { direction: 'out' });
      assert.deepStrictEqual(m, expected(g, b));
      assert.equal(hex(buildMessage(m)), hex(b));
    }),
    { numRuns: 600 },
  );
});

test('(a) valid inbound messages: build -> parse(in) gives the input, and rebuilds the same bytes', () => {
  fc.assert(
    fc.property(messageArb('in'), (g) => {
      const b = buildMessage(g.msg);
      const m = parseMessage(b, { direction: 'in' });
      assert.deepStrictEqual(m, expected(g, b));
      assert.equal(hex(buildMessage(m)), hex(b));
    }),
    { numRuns: 400 },
  );
});

test('(a) a kept non-ascending extension order round-trips too', () => {
  fc.assert(
    fc.property(messageArb('out'), fc.nat(), (g, seed) => {
      const b0 = buildMessage(g.msg);
      const exts = extHeaders(b0);
      if (exts.length < 2) return;
      // Rotate the extensions and rewrite the message in that order.
      const k = 1 + (seed % (exts.length - 1));
      const order = [...exts.slice(k), ...exts.slice(0, k)];
      const b = new Uint8Array(b0.length);
      b.set(b0.subarray(0, 16));
      let off = 16;
      for (const e of order) { b.set(b0.subarray(e.off, e.off + e.len), off); off += e.len; }
      const m = parseMessage(b, { direction: 'out' });
      assert.deepEqual(m.extOrder, order.map((e) => e.type));
      assert.equal(hex(buildMessage(m)), hex(b));
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------- (b) mutations

type Mutation =
  | { k: 'set'; pos: number; val: number }
  | { k: 'flip'; pos: number; bit: number }
  | { k: 'set16'; pos: number; val: number }
  | { k: 'truncate'; len: number }
  | { k: 'append'; bytes: Uint8Array }
  | { k: 'insert'; pos: number; bytes: Uint8Array }
  | { k: 'delete'; pos: number; count: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  rec({ k: fc.constant('set' as const), pos: fc.nat(), val: u8 }),
  rec({ k: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  // A 16-bit write at a word boundary hits sadb_ext_len / sadb_ext_type and similar fields.
  rec({ k: fc.constant('set16' as const), pos: fc.nat(), val: fc.oneof(u16, fc.integer({ min: 0, max: 40 })) }),
  rec({ k: fc.constant('truncate' as const), len: fc.nat() }),
  rec({ k: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  rec({ k: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  rec({ k: fc.constant('delete' as const), pos: fc.nat(), count: fc.integer({ min: 1, max: 24 }) }),
);

function mutate(src: Uint8Array, ops: Mutation[], fixLen: boolean): Uint8Array {
  let b = Uint8Array.from(src);
  for (const op of ops) {
    const at = (p: number) => (b.length ? p % b.length : 0);
    switch (op.k) {
      case 'set': if (b.length) b[at(op.pos)] = op.val; break;
      case 'flip': if (b.length) b[at(op.pos)] ^= 1 << op.bit; break;
      case 'set16': {
        if (b.length >= 2) { const p = at(op.pos) & ~1; b[p] = op.val & 0xff; if (p + 1 < b.length) b[p + 1] = op.val >> 8; }
        break;
      }
      case 'truncate': b = b.slice(0, op.len % (b.length + 1)); break;
      case 'append': { const n = new Uint8Array(b.length + op.bytes.length); n.set(b); n.set(op.bytes, b.length); b = n; break; }
      case 'insert': {
        const p = op.pos % (b.length + 1);
        const n = new Uint8Array(b.length + op.bytes.length);
        n.set(b.subarray(0, p)); n.set(op.bytes, p); n.set(b.subarray(p), p + op.bytes.length);
        b = n;
        break;
      }
      case 'delete': { const p = at(op.pos); b = Uint8Array.from([...b.subarray(0, p), ...b.subarray(p + op.count)]); break; }
    }
  }
  // Most mutations change the size; cutting to whole units and fixing sadb_msg_len lets
  // them get past the header checks to the extension parser.
  if (fixLen && b.length >= 16) {
    b = b.slice(0, b.length - (b.length % 8));
    new DataView(b.buffer).setUint16(4, b.length / 8, true);
  }
  return b;
}

const vectorBytes = klipsRequests().map((r) => unhex(r.req.hex));
const sourceArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.oneof(messageArb('in'), messageArb('out')).map((g) => buildMessage(g.msg)),
  ...(vectorBytes.length ? [fc.constantFrom(...vectorBytes)] : []),
);

test('(b) mutated messages: refused with a known errno, or accepted and rebuilt byte for byte', (t) => {
  const stats = { accepted: 0, refused: 0 };
  const errnos = new Map<string, number>();
  fc.assert(
    fc.property(sourceArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (src, ops, fixLen) => {
      const b = mutate(src, ops, fixLen);
      for (const dir of ['in', 'out'] as const) {
        let m: PfkeyMessage;
        try {
          m = parseMessage(b, { direction: dir });
        } catch (e) {
          if (!(e instanceof PfkeyError)) throw new Error(`not a PfkeyError for ${hex(b)} (${dir}): ${String(e)}`);
          assert.ok(Number.isInteger(e.errno) && e.errno > 0, `errno ${e.errno}`);
          assert.doesNotMatch(errnoName(e.errno), /^E\d+$/, `errno ${e.errno} has a name`);
          errnos.set(errnoName(e.errno), (errnos.get(errnoName(e.errno)) ?? 0) + 1);
          stats.refused++;
          continue;
        }
        stats.accepted++;
        const rebuilt = hex(buildMessage(m));
        assert.equal(rebuilt, hex(b), `accepted (${dir}) but rebuilt differently`);
      }
    }),
    { numRuns: 1000 },
  );
  t.diagnostic(`mutations: ${stats.accepted} accepted, ${stats.refused} refused ${JSON.stringify(Object.fromEntries(errnos))}`);
  assert.ok(stats.accepted > 0 && stats.refused > 0, 'both outcomes were exercised');
});

test('(b) arbitrary bytes behind a valid header never throw anything but PfkeyError', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 19 }), u8, fc.uint8Array({ maxLength: 96 }), fc.constantFrom<Direction>('in', 'out'), (type, satype, body, dir) => {
      const n = body.length - (body.length % 8);
      const b = new Uint8Array(16 + n);
      b.set([2, type, 0, satype, (2 + n / 8) & 0xff, (2 + n / 8) >> 8]);
      b.set(body.subarray(0, n), 16);
      try {
        const m = parseMessage(b, { direction: dir });
        assert.equal(hex(buildMessage(m)), hex(b));
      } catch (e) {
        if (!(e instanceof PfkeyError)) throw e;
        assert.ok(e.errno > 0);
      }
    }),
    { numRuns: 1000 },
  );
});

// ---------------------------------------------------------------- sockaddr and kmprivate

test('IPv4 and IPv6 text round-trips: parse(format(bytes)) === bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), v6Bytes, fc.uint8Array({ minLength: 16, maxLength: 16 }), (a4, a6, r6) => {
      assert.deepStrictEqual(parseIPv4(formatIPv4(a4)), a4);
      assert.equal(familyOf(formatIPv4(a4)), AF_INET);
      for (const b of [a6, r6]) {
        const s = formatIPv6(b);
        assert.deepStrictEqual(parseIPv6(s), b, s);
        assert.equal(familyOf(s), AF_INET6);
        // RFC 5952: lower case, no leading zeros, at most one "::".
        assert.equal(s, s.toLowerCase());
        assert.ok(s.split('::').length <= 2, s);
        if (!s.includes('.')) assert.ok(s.split(':').every((g) => g === '' || g === '0' || !g.startsWith('0')), s);
      }
    }),
    { numRuns: 500 },
  );
});

test('prefixToMask and maskToPrefix are inverse for every prefix length', () => {
  for (let p = 0; p <= 32; p++) assert.equal(maskToPrefix(AF_INET, prefixToMask(AF_INET, p)), p);
  for (let p = 0; p <= 128; p++) assert.equal(maskToPrefix(AF_INET6, prefixToMask(AF_INET6, p)), p);
});

test('X_KMPRIVATE codec round-trips any whole-word payload', () => {
  const codec = EXT_TABLE[17]!.codec;
  fc.assert(
    fc.property(kmprivateArb, (v) => {
      const out = new Uint8Array(codec.encodingLength(v));
      codec.encode(v, out, 0, 17);
      assert.equal((out[0] | (out[1] << 8)) * 8, out.length);
      assert.deepStrictEqual(codec.decode(out, 0, out.length, 17), v);
    }),
    { numRuns: 200 },
  );
});
