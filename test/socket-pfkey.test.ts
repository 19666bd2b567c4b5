/**
 * Tests for src/socket/pfkey-socket.ts on a real engine: per-socket queues, a full
 * receive queue dropping for that socket alone and reporting ENOBUFS once, close ending
 * registration and promiscuous mode, and send after shutdown/close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Engine } from '../src/engine/engine.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import {
  ERRNO, SADB_ADD, SADB_REGISTER, SADB_X_PROMISC, SADB_SATYPE_ESP, SADB_FLUSH, SADB_GET,
  SADB_X_PCHANGE, SADB_SATYPE_AH, buildMessage,
} from '../src/wire/index.js';
import {
  world, addReq, hdrReq, saidReq, assertPfkeyError, drain, parseOut, addflowReq,
} from './engine-helpers.js';

test('messages queue per socket, in order, and recv() returns undefined when empty', () => {
  const w = world();
  const a = w.client();
  const b = w.client();
  a.ok(addReq({ spi: 0x1001, seq: 11 }));
  a.ok(addReq({ spi: 0x1002, seq: 12 }));
  assert.equal(a.sock.pending, 2);
  assert.equal(b.sock.pending, 2);
  const ra = a.read();
  assert.deepEqual(ra.map((m) => m.header.seq), [11, 12]);
  assert.equal(a.sock.recv(), undefined);
  // b's queue is its own: still there after a read everything.
  assert.deepEqual(b.read().map((m) => m.sa!.spi), [0x1001, 0x1002]);
});

test('a full receive queue drops for that socket only; the next recv() throws ENOBUFS once', () => {
  const w = world();
  const small = w.client({ rcvbuf: 300 });
  const big = w.client();
  const sender = w.client();
  let sent = 0;
  for (let spi = 0x2000; spi < 0x2000 + 10; spi++) {
    assert.equal(sender.send(addReq({ spi })), 0, 'a full queue elsewhere must not fail the ADD');
    sent++;
  }
  assert.equal(w.engine.sadb.size, 10, 'every ADD took effect');
  assert.ok(small.sock.dropped > 0, 'the small socket dropped some replies');
  assert.equal(big.sock.dropped, 0);
  assert.equal(big.read().length, sent, 'the other socket got every reply');
  assert.equal(sender.read().length, sent);
  const queued = small.sock.pending;
  assert.ok(queued >= 1);
  assertPfkeyError(() => small.sock.recv(), ERRNO.ENOBUFS, 'first recv after overflow');
  // Reported once: the queued messages are then readable, then the queue is empty.
  const rest = small.read();
  assert.equal(rest.length, queued);
  assert.equal(small.sock.recv(), undefined);
  // room() accounts for what is queued.
  assert.equal(small.sock.room(), 300);
});

test('recvAll() stops before an ENOBUFS report and leaves it for the next recv()', () => {
  const w = world();
  const s = w.client({ rcvbuf: 200 });
  const c = w.client();
  for (let spi = 0x2100; spi < 0x2104; spi++) c.ok(addReq({ spi }));
  assert.ok(s.sock.dropped > 0);
  const got = s.sock.recvAll();
  assert.equal(got.length, 0, 'recvAll reports nothing while an overflow is pending');
  assertPfkeyError(() => s.sock.recv(), ERRNO.ENOBUFS);
  assert.ok(s.sock.recvAll().length >= 1);
});

test('closing a socket unregisters it and ends promiscuous mode; it receives nothing more', () => {
  const w = world();
  const a = w.client();
  const b = w.client();
  a.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  a.ok(hdrReq(SADB_X_PROMISC, 1));
  a.ok(hdrReq(SADB_X_PCHANGE, 1));
  drain(a, b);
  assert.ok(a.sock.registered.has(SADB_SATYPE_ESP));
  assert.equal(a.sock.promisc, true);
  a.close();
  assert.equal(a.sock.closed, true);
  assert.equal(a.sock.registered.size, 0, 'registrations end at close');
  assert.equal(a.sock.promisc, false, 'promiscuous mode ends at close');
  assert.equal(a.sock.pchange, false);
  assert.ok(!w.engine.endpoints.has(a.sock), 'the engine forgot the socket');
  assert.equal(w.engine.registeredFor(SADB_SATYPE_ESP).length, 0);
  b.ok(addReq({ spi: 0x3000 }));
  b.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_ESP));
  assert.equal(a.sock.pending, 0, 'a closed socket is not delivered to');
  assert.equal(a.send(hdrReq(SADB_FLUSH)), ERRNO.EBADF, 'send on a closed socket');
  // With the only ESP listener closed, kernel ACQUIRE has nobody (b registered after).
  b.close();
  assertPfkeyError(() => w.engine.acquire({ family: 2, src: '10.0.0.1', dst: '10.0.1.1', proto: 6, sport: 1, dport: 2 }), ERRNO.EPROTONOSUPPORT);
});

test('send after shutdown is EPIPE; queued messages can still be read; the engine sees nothing', () => {
  const w = world();
  const a = w.client();
  const b = w.client();
  a.ok(addReq({ spi: 0x3100 }));
  a.sock.shutdown();
  const before = w.engine.stats.requests;
  assert.equal(a.send(addReq({ spi: 0x3101 })), ERRNO.EPIPE);
  assert.equal(a.send(new Uint8Array(3)), ERRNO.EPIPE, 'EPIPE comes before any header check');
  assert.equal(w.engine.stats.requests, before, 'nothing reached the engine');
  assert.equal(w.engine.sadb.size, 1);
  assert.equal(a.read().length, 1, 'the earlier reply is still readable');
  assert.equal(b.read().length, 1, 'no errno broadcast for EPIPE');
  // Still delivered to after shutdown (only sending is shut).
  b.ok(addReq({ spi: 0x3102 }));
  assert.equal(a.read().length, 1);
});

test('readable() resolves when a message is queued, and the async iterator yields until close', async () => {
  const w = world();
  const a = w.client();
  const b = w.client();
  const p = a.sock.readable();
  let resolved = false;
  void p.then(() => { resolved = true; });
  await new Promise((r) => setImmediate(r));
  assert.equal(resolved, false);
  b.ok(addReq({ spi: 0x3200 }));
  await p;
  const seen: number[] = [];
  const loop = (async () => {
    for await (const m of a.sock) seen.push(parseOut(m).header.type);
  })();
  await new Promise((r) => setImmediate(r));
  b.ok(saidReq(SADB_GET, { spi: 0x3200 }));
  b.ok(hdrReq(SADB_FLUSH, 0));
  await new Promise((r) => setImmediate(r));
  a.close();
  await loop;
  assert.deepEqual(seen, [SADB_ADD, SADB_FLUSH], 'GET went to b only');
});

test('a socket registered for AH only is not an ESP listener', () => {
  const w = world();
  const a = w.client();
  a.ok(hdrReq(SADB_REGISTER, SADB_SATYPE_AH));
  assert.deepEqual([...a.sock.registered], [SADB_SATYPE_AH]);
  assertPfkeyError(() => w.engine.acquire({ family: 2, src: '10.0.0.1', dst: '10.0.1.1', proto: 0, sport: 0, dport: 0 }), ERRNO.EPROTONOSUPPORT);
});

test('the engine never delivers into a closed socket even while it is iterating endpoints', () => {
  const w = world();
  const a = w.client();
  const b = w.client();
  b.ok(addflowReq({ src: '10.0.0.0', srcMask: '255.255.255.0', dst: '10.0.1.0', dstMask: '255.255.255.0' }));
  drain(a, b);
  a.close();
  assert.equal(b.send(buildMessage(hdrReq(SADB_FLUSH))), 0);
  assert.equal(a.sock.pending, 0);
  assert.equal(b.read().length, 1);
});

test('onMessage() pushes each message while the queue is empty; queued ones still need recv()', () => {
  const w = world();
  const a = w.client({ rcvbuf: 1 << 20 });
  const b = w.client();
  const pushed: number[] = [];
  a.sock.onMessage((m) => pushed.push(parseOut(m).header.seq));
  b.ok(addReq({ spi: 0x4000, seq: 1 }));
  b.ok(addReq({ spi: 0x4001, seq: 2 }));
  assert.deepEqual(pushed, [1, 2]);
  assert.equal(a.sock.pending, 0, 'pushed messages are not queued');
  b.read();
});

// ---------- the queue's chunks: recycled, never overwritten while queued or held ----------

/** A message of `units` 8-byte units whose bytes are a pattern of `id` (sadb_msg_len set, as takeRun walks it). */
function patterned(id: number, units: number, into?: Uint8Array): Uint8Array {
  const m = into ?? new Uint8Array(units * 8);
  for (let i = 0; i < units * 8; i++) m[i] = (id * 31 + i * 7) & 0xff;
  m[4] = units & 0xff;
  m[5] = units >> 8;
  return m;
}

type ChunkOp = { op: 'copy' | 'plain'; units: number; times: number } | { op: 'take' | 'write'; max: number } | { op: 'release' } | { op: 'recycle' };

test('queue chunks: what is queued or held by the owner is never overwritten, whatever recycle() frees (property)', () => {
  const opArb: fc.Arbitrary<ChunkOp> = fc.oneof(
    // A burst of copies (a DUMP's slice, a read's replies) builds the queue up across chunks.
    { weight: 8, arbitrary: fc.record({ op: fc.constant('copy' as const), units: fc.oneof(fc.integer({ min: 2, max: 40 }), fc.integer({ min: 500, max: 2000 })), times: fc.integer({ min: 1, max: 24 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('plain' as const), units: fc.integer({ min: 2, max: 40 }), times: fc.constant(1) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('take' as const), max: fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.constant(64 * 1024)) }) },
    // klipsd's write: take a run, the write completes (released), recycle().
    { weight: 3, arbitrary: fc.record({ op: fc.constant('write' as const), max: fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.constant(64 * 1024)) }) },
    { weight: 3, arbitrary: fc.constant({ op: 'release' as const }) },
    { weight: 2, arbitrary: fc.constant({ op: 'recycle' as const }) },
  );
  fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), (ops) => {
    const sock = new PfkeySocket(new Engine(), { rcvbuf: 1 << 30 });
    const scratch = new Uint8Array(2000 * 8);
    let nextId = 1;
    /** The model: messages queued, in order; views the owner took and holds, with what they must read. */
    const queued: Uint8Array[] = [];
    const held: Array<{ view: Uint8Array; want: Uint8Array }> = [];
    const check = () => { for (const h of held) assert.deepEqual(h.view, h.want, 'a view the owner holds was overwritten'); };
    for (const o of ops) {
      if (o.op === 'copy') {
        for (let k = 0; k < o.times; k++) {
          const want = patterned(nextId, o.units).slice();
          patterned(nextId++, o.units, scratch);
          assert.equal(sock.deliverCopy(scratch, o.units * 8), true);
          scratch.fill(0xee); // the caller reuses its buffer
          queued.push(want);
        }
      } else if (o.op === 'plain') {
        const m = patterned(nextId++, o.units);
        assert.equal(sock.deliver(m), true);
        queued.push(m.slice());
      } else if (o.op === 'take' || o.op === 'write') {
        const view = sock.takeRun(o.max);
        if (view === undefined) { assert.equal(queued.length, 0); continue; }
        // The view is the first few queued messages, back to back.
        let n = 0;
        let bytes = 0;
        while (bytes < view.length) bytes += queued[n++].length;
        assert.equal(bytes, view.length, 'a run ends at a message boundary');
        const want = Buffer.concat(queued.splice(0, n));
        assert.deepEqual(view, new Uint8Array(want));
        held.push({ view, want: new Uint8Array(want) });
        if (o.op === 'write' && held.length === 1) {
          held.pop();
          sock.release(view.length);
          sock.recycle();
        }
      } else if (o.op === 'release') {
        const h = held.shift();
        if (h) sock.release(h.view.length);
      } else if (held.length === 0) {
        // klipsd's rule: recycle() only once no write holds a view.
        sock.recycle();
      }
      check();
    }
    // Everything still queued reads as it was queued.
    for (let v = sock.takeRun(1 << 30); v !== undefined; v = sock.takeRun(1 << 30)) {
      let n = 0;
      let bytes = 0;
      while (bytes < v.length) bytes += queued[n++].length;
      assert.deepEqual(v, new Uint8Array(Buffer.concat(queued.splice(0, n))));
    }
    assert.equal(queued.length, 0);
    check();
    sock.close();
  }), { numRuns: 200 });
});

test('queue chunks: recycle() frees no chunk that messages still queued lie in, the first, smaller chunks included', () => {
  const sock = new PfkeySocket(new Engine(), { rcvbuf: 1 << 30 });
  // 40 messages of 8000 bytes: chunks of 8, 16, 32 KiB, then 64 KiB ones; nothing taken yet.
  for (let i = 0; i < 40; i++) assert.equal(sock.deliverCopy(patterned(i, 1000), 8000), true);
  sock.recycle();
  for (let i = 40; i < 60; i++) assert.equal(sock.deliverCopy(patterned(i, 1000), 8000), true);
  for (let i = 0; i < 60; i++) assert.deepEqual(sock.takeRun(8000), patterned(i, 1000), `message ${i}`);
  sock.close();
});

test('queue chunks: a socket kept busy reuses a few chunks instead of making one per write; not once recv() gave views away', () => {
  /** Rounds of ~150 KiB of copies taken as klipsd's writes take them, one message always left queued. */
  const buffersSeen = (useRecv: boolean): number => {
    const sock = new PfkeySocket(new Engine(), { rcvbuf: 1 << 30 });
    const msg = patterned(7, 125); // 1000 bytes
    const seen = new Set<ArrayBufferLike>();
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 150; i++) assert.equal(sock.deliverCopy(msg, msg.length), true);
      while (sock.pending > 1) {
        const v = useRecv ? sock.recv()! : sock.takeRun(64 * 1024)!;
        seen.add(v.buffer);
        if (!useRecv) sock.release(v.length);
      }
      if (!useRecv) sock.recycle();
    }
    sock.close();
    return seen.size;
  };
  const recycled = buffersSeen(false);
  const viaRecv = buffersSeen(true);
  assert.ok(recycled <= 8, `${recycled} chunks for 60 rounds of 150 KiB with recycle()`);
  assert.ok(viaRecv >= 100, `${viaRecv} chunks when recv() gave views away (never reused)`);
});
