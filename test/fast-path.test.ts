/**
 * The ADD and GET fast paths (wire/scan.ts, engine/fast-path.ts, the stored SAs of sadb.ts)
 * against the general path: two engines on the same clock, one with the fast path and
 * one without (EngineOptions.fastPath false), get the same random and mutated ADD and
 * UPDATE messages, valid and not, mixed with GET, DELETE, DUMP, FLUSH, the clock running
 * lifetimes out, a KAME-dialect socket that dumps, in batches or not (klipsd's reads). After every message the verdicts (errno, stage, offset, reason)
 * and every byte each socket received (the sender, maybe another socket, maybe a promiscuous one) must
 * be the same, and at the end the tables (SAs, SAref slots, counters). So the fast path
 * gives the general path's replies, errnos and effects, and falls back for the rest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fc from 'fast-check';
import {
  AF_INET, AF_INET6, SADB_ADD, SADB_UPDATE, SADB_GET, SADB_DELETE, SADB_DUMP, SADB_FLUSH, SADB_X_PROMISC,
  SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_SATYPE_COMP, SADB_X_SATYPE_IPIP, SADB_SASTATE_MATURE,
  buildMessage, type Address, type MessageInput,
} from '../src/wire/index.js';
import { Engine } from '../src/engine/engine.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import { addReq, hdrReq, parseOut, saidReq, seededRandom, snapshot, updateReq } from './engine-helpers.js';

/** The host's own address (SAs to it are inbound) and a peer. */
const LOCAL = '192.0.2.2';
const DSTS = [LOCAL, '198.51.100.7', '2001:db8::2'];
const SRCS = ['192.0.2.1', '198.51.100.9', '2001:db8::1'];
const SPIS = { min: 250, max: 300 };

const address = (a: string, port: number, proto: number): Address => (a.includes(':')
  ? { proto, prefixlen: 0, family: AF_INET6, port, addr: a, flowinfo: 0, scopeId: 0 }
  : { proto, prefixlen: 0, family: AF_INET, port, addr: a });

const u64 = fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 100000n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));
const lifetimeArb = fc.record({
  allocations: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10 }), fc.constant(0xffffffff)),
  bytes: u64, addtime: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 30n }), u64), usetime: u64,
}).chain((l) => fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }).map((packets) => (packets === undefined ? l : { ...l, packets })));
const keyArb = fc.constantFrom(0, 1, 64, 128, 160, 161, 192, 256, 288, 512).chain((bits) =>
  fc.uint8Array({ minLength: Math.ceil(bits / 8), maxLength: Math.ceil(bits / 8) }).map((key) => ({ bits, key })));

const keyOf = (bits: number) => fc.uint8Array({ minLength: Math.ceil(bits / 8), maxLength: Math.ceil(bits / 8) }).map((key) => ({ bits, key }));
/** An algorithm with a key that fits it (auth: MD5, SHA1, SHA2-256; encrypt: AES-CBC, 3DES, AES-CTR, NULL), or none, or anything. */
const authArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom([2, 128], [3, 160], [5, 256]).chain(([auth, bits]) => keyOf(bits).map((keyAuth) => ({ auth, keyAuth }))) },
  { weight: 1, arbitrary: fc.constant({ auth: 0, keyAuth: undefined }) },
  { weight: 1, arbitrary: fc.record({ auth: fc.constantFrom(0, 3, 7, 250), keyAuth: fc.option(keyArb, { nil: undefined }) }) },
);
const encryptArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom([12, 128], [12, 256], [3, 192], [13, 160]).chain(([encrypt, bits]) => keyOf(bits).map((keyEncrypt) => ({ encrypt, keyEncrypt }))) },
  { weight: 1, arbitrary: fc.constantFrom({ encrypt: 11, keyEncrypt: undefined }, { encrypt: 0, keyEncrypt: undefined }) },
  { weight: 1, arbitrary: fc.record({ encrypt: fc.constantFrom(0, 11, 12, 250), keyEncrypt: fc.option(keyArb, { nil: undefined }) }) },
);
const algsArb = fc.tuple(authArb, encryptArb).map(([a, e]) => ({ ...a, ...e }));

/** An ADD or UPDATE, mostly of the shape the fast path takes, often not (other SA types, IPv6, extensions it leaves to the parser). */
/**
 * The fields of an ADD or UPDATE: `usual` ones, of the shape the fast path takes (AH or
 * ESP, MATURE, IPv4, no other extension: it still refuses some, e.g. a key that does not
 * fit its algorithm), or `wild` ones (other SA types, states, IPv6, extensions the fast
 * path leaves to the parser).
 */
const fieldsArb = (wild: boolean) => fc.record({
  type: wild ? fc.constantFrom(SADB_ADD, SADB_UPDATE) : fc.constant(SADB_ADD),
  satype: wild ? fc.constantFrom(SADB_SATYPE_ESP, SADB_SATYPE_AH, SADB_X_SATYPE_COMP, SADB_X_SATYPE_IPIP, 0, 1, 12) : fc.constantFrom(SADB_SATYPE_ESP, SADB_SATYPE_ESP, SADB_SATYPE_AH),
  spi: fc.integer(SPIS),
  replay: wild ? fc.constantFrom(0, 32, 64, 65) : fc.constantFrom(0, 32, 64),
  state: wild ? fc.constantFrom(SADB_SASTATE_MATURE, 0, 2, 3) : fc.constant(SADB_SASTATE_MATURE),
  algs: algsArb,
  flags: fc.constantFrom(0, 1, 0x40, 0xffffffff),
  ref: fc.option(fc.constantFrom(0, 7, 0xffffffff, 32767, ...(wild ? [40000] : [])), { nil: undefined }),
  hard: fc.option(lifetimeArb, { nil: undefined }),
  soft: fc.option(lifetimeArb, { nil: undefined }),
  src: wild ? fc.integer({ min: 0, max: 2 }) : fc.integer({ min: 0, max: 1 }),
  dst: wild ? fc.integer({ min: 0, max: 2 }) : fc.integer({ min: 0, max: 1 }),
  port: fc.constantFrom(0, 500, 4500),
  proto: fc.constantFrom(0, 17),
  extra: wild ? fc.constantFrom('none', 'identity', 'natt', 'saref', 'proxy') : fc.constant('none'),
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  pid: fc.integer({ min: 0, max: 0xffffffff }),
});

const saMsgArb: fc.Arbitrary<MessageInput> = fc.oneof({ weight: 3, arbitrary: fieldsArb(false) }, { weight: 2, arbitrary: fieldsArb(true) }).map((o) => {
  // Mostly IPv4 on both sides, as the fast path wants; sometimes mixed or IPv6.
  const srcText = o.src === 2 && o.dst !== 2 ? SRCS[0] : SRCS[o.src];
  const m: MessageInput = {
    header: { type: o.type, satype: o.satype, seq: o.seq, pid: o.pid },
    sa: { spi: o.spi, replay: o.replay, state: o.state, auth: o.algs.auth, encrypt: o.algs.encrypt, flags: o.flags, ...(o.ref !== undefined ? { ref: o.ref } : {}) },
    addressSrc: address(srcText, o.port, o.proto),
    addressDst: address(DSTS[o.dst], o.port, o.proto),
  };
  if (o.hard) m.lifetimeHard = o.hard;
  if (o.soft) m.lifetimeSoft = o.soft;
  if (o.algs.keyAuth) m.keyAuth = o.algs.keyAuth;
  if (o.algs.keyEncrypt) m.keyEncrypt = o.algs.keyEncrypt;
  if (o.extra === 'identity') m.identitySrc = { type: 2, id: 0n, data: 'left.example' };
  if (o.extra === 'natt') { m.natTType = { type: 1 }; m.natTSport = { port: 4500 }; m.natTDport = { port: 4500 }; }
  if (o.extra === 'saref') m.saref = { me: 9, him: 11 };
  if (o.extra === 'proxy') m.addressProxy = address('203.0.113.5', 0, 0);
  return m;
});

/** Byte edits: set a byte, or cut the message short (keeping sadb_msg_len or not). */
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), fixLen: fc.boolean() }),
);
type Mutation = { kind: 'byte'; at: number; value: number } | { kind: 'cut'; at: number; fixLen: boolean };

function mutate(bytes: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = bytes.slice();
  for (const m of ms) {
    if (m.kind === 'byte') b[m.at % b.length] = m.value;
    else {
      const n = Math.max(16, (m.at % b.length) & ~7);
      b = b.slice(0, n);
      if (m.fixLen) { b[4] = (n / 8) & 0xff; b[5] = (n / 8) >> 8; }
    }
  }
  return b;
}

type Op =
  | { op: 'sa'; m: MessageInput; mutations: Mutation[] }
  | { op: 'get' | 'delete'; spi: number; satype: number; dst: number; state: number; mutations: Mutation[] }
  | { op: 'dump'; satype: number }
  | { op: 'flush'; satype: number }
  | { op: 'time'; seconds: number }
  | { op: 'kame' }
  | { op: 'batch' }
  | { op: 'burst'; ms: MessageInput[] };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 60, arbitrary: fc.record({ op: fc.constant('sa' as const), m: saMsgArb, mutations: fc.oneof({ weight: 3, arbitrary: fc.constant([] as Mutation[]) }, { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) }) }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constantFrom('get' as const, 'get' as const, 'delete' as const), spi: fc.integer(SPIS), satype: fc.constantFrom(SADB_SATYPE_ESP, SADB_SATYPE_AH), dst: fc.integer({ min: 0, max: 2 }), state: fc.constantFrom(0, 1, 2, 3), mutations: fc.oneof({ weight: 3, arbitrary: fc.constant([] as Mutation[]) }, { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) }) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('dump' as const), satype: fc.constantFrom(0, SADB_SATYPE_ESP, SADB_SATYPE_AH) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('flush' as const), satype: fc.constantFrom(0, SADB_SATYPE_ESP, SADB_SATYPE_AH) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('time' as const), seconds: fc.constantFrom(0.5, 1, 3, 11, 20) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'kame' as const }) },
  { weight: 5, arbitrary: fc.constant({ op: 'batch' as const }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('burst' as const), ms: fc.array(saMsgArb, { minLength: 2, maxLength: 6 }) }) },
);

/**
 * One engine and its sockets: the sender, and unless `alone` another socket (a reply to
 * a lone socket is written straight into its queue, to several through a scratch), and
 * when asked a promiscuous one.
 */
function side(fastPath: boolean, clock: { t: number }, promisc: boolean, alone = false) {
  const engine = new Engine({ fastPath, clock: () => clock.t, random: seededRandom(7), localAddresses: () => [LOCAL] });
  const socks = [new PfkeySocket(engine, { rcvbuf: 1 << 20 })];
  if (!alone) socks.push(new PfkeySocket(engine, { rcvbuf: 1 << 20 }));
  if (promisc) {
    const p = new PfkeySocket(engine, { rcvbuf: 1 << 20 });
    assert.equal(p.send(buildMessage(hdrReq(SADB_X_PROMISC, 1))), 0);
    socks.push(p);
  }
  return { engine, socks };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** `bytes` at offset `at` of a larger buffer, itself a view at an odd offset of its memory. */
function within(bytes: Uint8Array, at: number): Uint8Array {
  const mem = new Uint8Array(bytes.length + at + 16).fill(0xa5);
  const buf = mem.subarray(3);
  buf.set(bytes, at);
  return buf;
}

/**
 * A verdict, or the error the engine threw (klipsd answers that as an engine fault): the
 * general path still has faults of its own (an IPv6 SA with an IPv4 proxy address, when
 * a KAME socket is open, fails to build the KAME notice), which the fast path, standing
 * aside, must share.
 */
function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    return { threw: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}
const received = (socks: PfkeySocket[]) => socks.map((s) => s.recvAll().map(hex));

function request(op: Op): Uint8Array {
  switch (op.op) {
    case 'sa': return mutate(buildMessage(op.m), op.mutations);
    case 'get':
    case 'delete': {
      const m = saidReq(op.op === 'get' ? SADB_GET : SADB_DELETE, { satype: op.satype, spi: op.spi, src: SRCS[op.dst], dst: DSTS[op.dst] });
      m.sa!.state = op.state;
      return mutate(buildMessage(m), op.mutations);
    }
    case 'dump': return buildMessage(hdrReq(SADB_DUMP, op.satype, { seq: 5 }));
    case 'flush': return buildMessage(hdrReq(SADB_FLUSH, op.satype, { seq: 6 }));
    case 'time':
    case 'kame':
    case 'batch':
    case 'burst': throw new Error('no request');
  }
}

/** ADDs the fast path took, over all runs. */
let fastAdds = 0;

test('fast and general path: same verdicts, same bytes to every socket, same tables', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60, size: 'max' }), fc.boolean(), fc.boolean(), (ops, promisc, alone) => {
      // A clock with a fraction of a second: lifetimes carry whole seconds of it.
      const clock = { t: 1000.75 };
      const fast = side(true, clock, promisc, alone);
      const slow = side(false, clock, promisc, alone);
      received(fast.socks);
      received(slow.socks);
      let inBatch = false;
      // The buffers the fast side was given: once handle() returned (or the batch ended) they are the sender's again, and scribbled on.
      const used: Uint8Array[] = [];
      const scribble = () => { for (const b of used.splice(0)) b.fill(0xee); };
      for (const [i, op] of ops.entries()) {
        const what = `op ${i} (${op.op})`;
        if (op.op === 'batch') {
          // Messages handled as one batch, as klipsd handles one read (stored requests copied at its end).
          for (const s of [fast, slow]) inBatch ? s.engine.endBatch() : s.engine.beginBatch();
          inBatch = !inBatch;
          if (!inBatch) scribble();
        } else if (op.op === 'burst') {
          // Messages back to back in one buffer, as in one read: the fast side reads each where it lies.
          const msgs = op.ms.map((m) => buildMessage(m));
          const buf = new Uint8Array(msgs.reduce((n, m) => n + m.length, 0));
          let off = 0;
          for (const [j, m] of msgs.entries()) {
            buf.set(m, off);
            const vf = outcome(() => fast.socks[0].submitAt(buf, off, m.length));
            const vs = outcome(() => slow.socks[0].submit(m));
            assert.deepEqual(vf, vs, `${what}, message ${j}: verdict`);
            off += m.length;
          }
          used.push(buf);
        } else if (op.op === 'time') {
          clock.t += op.seconds;
          assert.deepEqual(outcome(() => fast.engine.tick()), outcome(() => slow.engine.tick()), `${what}: expiries`);
        } else if (op.op === 'kame') {
          // A KAME-dialect socket (the fast path stands aside while one is open: they hear
          // of SAs in their numbering) dumps the SAs, stored ones made on the way.
          const [kf, ks] = [fast, slow].map((s) => {
            const k = new PfkeySocket(s.engine, { rcvbuf: 1 << 20, dialect: 'kame' });
            s.socks.push(k);
            return outcome(() => k.send(buildMessage(hdrReq(SADB_DUMP, 0, { seq: 8 }))));
          });
          assert.deepEqual(kf, ks, `${what}: KAME DUMP`);
        } else {
          const bytes = request(op);
          const before = fast.engine.sadb.storedCount;
          // The fast side reads it where it lies in a larger buffer, at any alignment, as klipsd's frames lie in a read chunk.
          const where = within(bytes, i % 13);
          used.push(where);
          const vf = outcome(() => fast.socks[0].submitAt(where, i % 13, bytes.length));
          if (fast.engine.sadb.storedCount > before) fastAdds++;
          const vs = outcome(() => slow.socks[0].submit(bytes));
          assert.deepEqual(vf, vs, `${what}: verdict`);
        }
        if (!inBatch) scribble();
        assert.deepEqual(received(fast.socks), received(slow.socks), `${what}: what the sockets received`);
      }
      if (inBatch) for (const s of [fast, slow]) s.engine.endBatch();
      assert.deepEqual(fast.engine.stats, slow.engine.stats, 'engine counters');
      assert.equal(snapshot(fast.engine), snapshot(slow.engine), 'tables');
      assert.equal(fast.engine.sadb.storedCount, 0, 'the snapshot made every SA');
    }),
    { numRuns: 500, includeErrorInReport: true },
  );
  assert.ok(fastAdds >= 1000, `the fast path took ${fastAdds} ADDs, too few to compare it`);
});

test('a typical ADD takes the fast path and is stored until asked for; GET answers from the stored request; the SA made later is the general path\'s', () => {
  const clock = { t: 1000 };
  const fast = side(true, clock, false);
  const slow = side(false, clock, false);
  const add = buildMessage(addReq({ spi: 0x1234, dst: LOCAL, seq: 7, pid: 99, extra: { lifetimeHard: { allocations: 0, bytes: 0n, addtime: 60n, usetime: 0n }, lifetimeSoft: { allocations: 0, bytes: 0n, addtime: 90n, usetime: 0n, packets: 5 } } }));
  for (const s of [fast, slow]) assert.equal(s.socks[0].send(add), 0);
  assert.equal(fast.engine.sadb.storedCount, 1, 'stored, not made');
  assert.equal(slow.engine.sadb.storedCount, 0);
  assert.deepEqual(received(fast.socks), received(slow.socks));
  clock.t += 30;
  const get = buildMessage(saidReq(SADB_GET, { spi: 0x1234, dst: LOCAL }));
  for (const s of [fast, slow]) assert.equal(s.socks[0].send(get), 0);
  assert.equal(fast.engine.sadb.storedCount, 1, 'GET answered without making it');
  assert.deepEqual(received(fast.socks), received(slow.socks));
  assert.equal(snapshot(fast.engine), snapshot(slow.engine));
  assert.equal(fast.engine.sadb.storedCount, 0, 'the snapshot made it');
  // The soft limit (clamped to the hard one, 60 s) and the hard one fire alike.
  clock.t += 31;
  assert.equal(fast.engine.tick(), slow.engine.tick());
  assert.deepEqual(received(fast.socks), received(slow.socks));
  assert.equal(fast.engine.sadb.size, 0);
});

test('a batch read ahead of any bytes (klipsd passes each read) changes nothing and throws nothing', () => {
  // beginBatch(chunk) walks the chunk's messages to touch the SPI index; the chunk is a
  // client's bytes, so truncated, zero-length and garbage messages must all be harmless.
  const adds = [0x1234, 0x1235, 0x99999].map((spi, i) => buildMessage(addReq({ spi, dst: i === 2 ? LOCAL : '198.51.100.7', seq: i + 1 })));
  const chunkArb = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    // Real messages, then cut, and with bytes changed where the walk reads (type, length, SA extension).
    fc.tuple(fc.array(fc.constantFrom(...adds), { maxLength: 6 }), fc.nat(), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }))
      .map(([ms, cut, pokes]) => {
        const b = new Uint8Array(ms.reduce((n, m) => n + m.length, 0));
        let o = 0;
        for (const m of ms) { b.set(m, o); o += m.length; }
        for (const [at, v] of pokes) if (b.length) b[at % b.length] = v;
        return b.subarray(0, b.length ? cut % (b.length + 1) : 0);
      }),
  );
  fc.assert(fc.property(chunkArb, fc.nat({ max: 400 }), (chunk, from) => {
    const clock = { t: 1000 };
    const fast = side(true, clock, false, true);
    for (const a of adds.slice(0, 2)) assert.equal(fast.socks[0].send(a), 0);
    received(fast.socks);
    const before = snapshot(fast.engine);
    fast.engine.beginBatch(chunk, from);
    fast.engine.endBatch();
    assert.deepEqual(received(fast.socks), [[]]);
    assert.equal(snapshot(fast.engine), before);
    // The engine still serves: the third ADD is taken, on the fast path.
    const stored = fast.engine.sadb.storedCount;
    assert.equal(fast.socks[0].send(adds[2]), 0);
    assert.equal(fast.engine.sadb.size, 3);
    assert.equal(fast.engine.sadb.storedCount, stored + 1);
  }));
});

test('a batch reads its own wall clock once, when a message first needs it: a GET needs none, the ADDs of one batch share one time', (t) => {
  let now = 1_700_000_000_000;
  const reads = t.mock.method(Date, 'now', () => now);
  // The engine's own clock (no injected one), as klipsd runs it.
  const engine = new Engine({ localAddresses: () => [LOCAL] });
  const sock = new PfkeySocket(engine, { rcvbuf: 1 << 20 });
  const addtimeOf = (spi: number): bigint => {
    assert.equal(sock.send(buildMessage(saidReq(SADB_GET, { spi, dst: '198.51.100.7' }))), 0);
    const reply = parseOut(sock.recv()!, 'GET');
    return reply.lifetimeCurrent!.addtime;
  };
  assert.equal(sock.send(buildMessage(addReq({ spi: 0x1000, dst: '198.51.100.7' }))), 0);
  sock.recv();
  const before = reads.mock.callCount();
  engine.beginBatch();
  // A GET answered on the fast path needs no time.
  assert.equal(sock.send(buildMessage(saidReq(SADB_GET, { spi: 0x1000, dst: '198.51.100.7' }))), 0);
  assert.equal(reads.mock.callCount(), before, 'the GET read the clock');
  assert.equal(sock.send(buildMessage(addReq({ spi: 0x1001, dst: '198.51.100.7' }))), 0);
  assert.equal(reads.mock.callCount(), before + 1, 'the first ADD of the batch reads the clock once');
  now += 5000;
  assert.equal(sock.send(buildMessage(addReq({ spi: 0x1002, dst: '198.51.100.7' }))), 0);
  assert.equal(reads.mock.callCount(), before + 1, 'the second ADD takes the batch\'s time');
  engine.endBatch();
  while (sock.recv());
  assert.equal(addtimeOf(0x1001), 1_700_000_000n);
  assert.equal(addtimeOf(0x1002), 1_700_000_000n);
  // Outside a batch each message reads the clock itself.
  assert.equal(sock.send(buildMessage(addReq({ spi: 0x1003, dst: '198.51.100.7' }))), 0);
  sock.recv();
  assert.equal(addtimeOf(0x1003), 1_700_000_005n);
  // The next batch reads it afresh.
  now += 5000;
  engine.beginBatch();
  assert.equal(sock.send(buildMessage(addReq({ spi: 0x1004, dst: '198.51.100.7' }))), 0);
  engine.endBatch();
  sock.recv();
  assert.equal(addtimeOf(0x1004), 1_700_000_010n);
});

test('a DUMP whose reader closes while it waits for room unpins the table', async () => {
  const clock = { t: 1000 };
  const s = side(true, clock, false);
  for (let spi = 0x1000; spi < 0x1000 + 3000; spi++) assert.equal(s.socks[0].send(buildMessage(addReq({ spi }))), 0);
  received(s.socks);
  const small = new PfkeySocket(s.engine, { rcvbuf: 4096 });
  assert.equal(small.send(buildMessage(hdrReq(SADB_DUMP, 0, { seq: 3 }))), 0);
  // The DUMP lists the SAs in 1 ms slices, each after the first from a timer; it waits
  // for room once its queue stays the same for a few slices.
  let last = -1;
  for (let i = 0; i < 1000 && (small.pending === 0 || small.pending !== last); i++) {
    last = small.pending;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(small.pending > 0 && small.pending < 3000, 'the DUMP waits for the reader');
  small.close();
  // Unpinned, a FLUSH removes the stored SAs without making them.
  assert.equal(s.socks[0].send(buildMessage(hdrReq(SADB_FLUSH, 0, { seq: 4 }))), 0);
  assert.equal(s.engine.sadb.size, 0);
  assert.equal(s.engine.sadb.storedCount, 0);
  // While pinned, the FLUSH would have made them first (and kept them made until the DUMP ended):
  // the table is empty and holds nothing made while pinned.
  assert.equal(s.engine.sadb.madeFrom(0), undefined);
});

test('a DUMP that lists stored SAs sends them as listed, whatever DELETE, UPDATE, GET and FLUSH do meanwhile', async () => {
  const clock = { t: 1000.5 };
  const outs = await Promise.all([true, false].map(async (fastPath) => {
    const s = side(fastPath, clock, false);
    for (let spi = 0x1000; spi < 0x1000 + 200; spi++) assert.equal(s.socks[0].send(buildMessage(addReq({ spi, seq: spi }))), 0);
    received(s.socks);
    const reader = new PfkeySocket(s.engine, { rcvbuf: 4096 });
    const got: string[] = [];
    assert.equal(reader.send(buildMessage(hdrReq(SADB_DUMP, 0, { seq: 3 }))), 0);
    // (Reading everything would let the DUMP go on at once: the reader takes a few.)
    for (let n = 0; n < 5; n++) got.push(hex(reader.recv()!));
    assert.ok(reader.pending < 150, 'the DUMP waits for its reader');
    // The DUMP has listed all 200 and waits for its reader; meanwhile:
    const said = (spi: number) => ({ spi, seq: 9 });
    assert.equal(s.socks[0].send(buildMessage(saidReq(SADB_DELETE, said(0x1000 + 150)))), 0);
    assert.equal(s.socks[0].send(buildMessage(saidReq(SADB_GET, said(0x1000 + 170)))), 0);
    assert.equal(s.socks[0].send(buildMessage(updateReq({ spi: 0x1000 + 160, replay: 7, seq: 10 }))), 0);
    assert.equal(s.socks[0].send(buildMessage(saidReq(SADB_DELETE, said(0x1000 + 160)))), 0);
    assert.equal(s.socks[0].send(buildMessage(hdrReq(SADB_FLUSH, SADB_SATYPE_AH, { seq: 11 }))), 0);
    assert.equal(s.socks[0].send(buildMessage(hdrReq(SADB_FLUSH, 0, { seq: 12 }))), 0);
    const lastDumpReply = (h: string) => h.slice(2, 4) === '0a' && h.slice(16, 24) === '00000000';
    for (let turns = 0; turns < 5000 && !got.some(lastDumpReply); turns++) {
      await new Promise((r) => setTimeout(r, 1));
      got.push(...reader.recvAll().map(hex));
    }
    return { got, others: received(s.socks), size: s.engine.sadb.size };
  }));
  assert.equal(outs[0].got.filter((h) => h.slice(2, 4) === '0a').length, 200, 'all 200 listed SAs were sent');
  assert.deepEqual(outs[0], outs[1]);
});

test('stored SAs survive the arena being rewritten when most of its records are gone', () => {
  const clock = { t: 1000 };
  const [fast, slow] = [true, false].map((fastPath) => side(fastPath, clock, false, true));
  const n = 40_000;
  for (const s of [fast, slow]) {
    for (let spi = 0x1000; spi < 0x1000 + n; spi++) assert.equal(s.socks[0].send(buildMessage(addReq({ spi, seq: spi, authBits: 160 }))), 0);
    // Three SAs of every four updated (made) or deleted: every chunk keeps some stored records.
    for (let spi = 0x1000; spi < 0x1000 + n; spi++) {
      if (spi % 4 === 1) assert.equal(s.socks[0].send(buildMessage(updateReq({ spi, replay: 9 }))), 0);
      else if (spi % 4 !== 0) assert.equal(s.socks[0].send(buildMessage(saidReq(SADB_DELETE, { spi }))), 0);
    }
    received(s.socks);
  }
  assert.equal(fast.engine.sadb.storedCount, n / 4, 'a quarter still stored');
  // What is left reads back the same: a GET of each stored SA, then a DUMP, then the tables.
  for (const s of [fast, slow]) for (let spi = 0x1000; spi < 0x1000 + n; spi += 4) assert.equal(s.socks[0].send(buildMessage(saidReq(SADB_GET, { spi }))), 0);
  assert.deepEqual(received(fast.socks), received(slow.socks));
  assert.equal(snapshot(fast.engine), snapshot(slow.engine));
});
