/**
 * Tests for src/socket/pfkey-socket.ts on a real engine: per-socket queues, a full
 * receive queue dropping for that socket alone and reporting ENOBUFS once, close ending
 * registration and promiscuous mode, and send after shutdown/close.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
