/**
 * The receive bounds of src/socket/pfkey-socket.ts: bytes an owner still holds after
 * recv() (klipsd's write buffer) count against rcvbuf until released, and a ReceiveBudget
 * shared by several sockets bounds their sum, with a per-socket reserve that keeps a
 * reading client served once the total is used up. Exact byte and drop counts.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRNO, SADB_X_PROMISC, buildMessage } from '../src/wire/index.js';
import { ReceiveBudget } from '../src/socket/pfkey-socket.js';
import { assertPfkeyError, hdrReq, world } from './engine-helpers.js';

/** X_PROMISC off: answered to the sender alone with a 16-byte header, changes nothing else. */
const ping = (seq: number) => buildMessage(hdrReq(SADB_X_PROMISC, 0, { seq }));

test('held bytes count against rcvbuf until released; release wakes a waiter once at most half is used', () => {
  const w = world();
  const c = w.client({ rcvbuf: 64 });
  for (let i = 1; i <= 4; i++) c.ok(ping(i));
  assert.equal(c.sock.room(), 0);
  // The owner takes two messages out but still holds them (its write buffer).
  c.sock.recv();
  c.sock.recv();
  c.sock.hold(32);
  assert.deepEqual([c.sock.room(), c.sock.holding], [0, 64]);
  c.ok(ping(5));
  assert.equal(c.sock.dropped, 1, 'no room: the reply was dropped');
  let woken = 0;
  c.sock.onDrain(() => woken++);
  c.sock.release(16);
  assert.deepEqual([woken, c.sock.holding], [0, 48]);
  c.sock.release(16);
  assert.deepEqual([woken, c.sock.holding], [1, 32]);
  c.ok(ping(6));
  assertPfkeyError(() => c.sock.recv(), ERRNO.ENOBUFS, 'the drop is reported once');
  assert.deepEqual(c.sock.recvAll().map((m) => m.length), [16, 16, 16]);
});

test('a shared budget bounds the sum; a socket under its reserve is still served; close gives its bytes back', () => {
  const w = world();
  const budget = new ReceiveBudget(64, 32);
  const [a, b, r] = [1, 2, 3].map(() => w.client({ rcvbuf: 1024, budget }));
  // a fills the total by itself (it never reads).
  for (let i = 1; i <= 5; i++) a.ok(ping(i));
  assert.deepEqual([a.sock.holding, budget.used, a.sock.dropped, budget.dropped], [64, 64, 1, 1]);
  // b and r are over the total but under their reserve: 32 bytes each.
  for (let i = 1; i <= 3; i++) b.ok(ping(i));
  assert.deepEqual([b.sock.holding, b.sock.dropped, budget.used, budget.dropped], [32, 1, 96, 2]);
  // r reads as it goes: it is served every time.
  for (let i = 1; i <= 50; i++) {
    r.ok(ping(i));
    assert.equal(r.sock.recv()?.length, 16);
  }
  assert.equal(r.sock.dropped, 0);
  // Held bytes (r's write buffer) count toward the total and the reserve too.
  r.sock.hold(32);
  r.ok(ping(51));
  assert.deepEqual([r.sock.dropped, budget.used], [1, 128]);
  r.sock.release(32);
  // a goes away: what it held no longer counts, so b has room again.
  a.close();
  assert.equal(budget.used, 32);
  assertPfkeyError(() => b.sock.recv(), ERRNO.ENOBUFS, "b's earlier drop");
  b.ok(ping(4));
  b.ok(ping(5));
  assert.deepEqual([b.sock.holding, b.sock.dropped, budget.used], [64, 1, 64]);
  assert.equal(budget.dropped, 3);
  // Reading after close returns nothing to a budget twice.
  b.close();
  assert.equal(budget.used, 0);
  assert.equal(b.sock.recvAll().length, 4);
  assert.equal(budget.used, 0);
});

test('room() is the largest message deliver() takes: within rcvbuf, and within the total or the reserve', () => {
  const w = world();
  const budget = new ReceiveBudget(100, 40);
  const a = w.client({ rcvbuf: 80, budget });
  const b = w.client({ rcvbuf: 80, budget });
  assert.deepEqual([a.sock.room(), b.sock.room()], [80, 80]);
  for (let i = 1; i <= 4; i++) a.ok(ping(i));
  assert.deepEqual([a.sock.room(), b.sock.room()], [16, 40], 'a: its rcvbuf; b: its reserve (40), more than what is left of the total (36)');
  b.ok(ping(1));
  b.ok(ping(2));
  assert.deepEqual([budget.used, b.sock.room()], [96, 8], 'b: total spent, 8 left of its 40-byte reserve');
  b.ok(ping(3));
  assert.deepEqual([b.sock.dropped, budget.dropped], [1, 1]);
});
