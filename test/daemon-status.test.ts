/**
 * klipsd's status mode (wire/status.ts), the bridge's way of learning send()'s result:
 * after each request, once every reply it causes is queued, a header-only status with
 * the errno write() must fail with. Over a real Unix socket, with hand-made frames: the
 * exact bytes, the order (status after the replies, before the next request's), a header
 * refusal answered by the status alone, and a connection without status mode unchanged.
 */

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  AF_INET, ERRNO, KLIPSD_X_STATUS, SADB_ADD, SADB_DELETE, SADB_REGISTER, SADB_SATYPE_ESP, SADB_X_DEBUG,
  SADB_AALG_SHA1HMAC, SADB_EALG_3DESCBC, buildMessage, headerOnly, readStatus, reasonsRequest, readReason, statusRequest,
  statusMessage, type MessageInput,
} from '../src/wire/index.js';
import { sendErrno } from '../src/engine/engine.js';
import { RawClient, header, startDaemon, waitUntil, type Daemon } from './cli-harness.js';

let d: Daemon;
before(async () => { d = await startDaemon(); });
after(async () => { await d.stop(); });

const v4 = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
const add = (spi: number, seq: number): MessageInput => ({
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq, pid: 4711 },
  sa: { spi, replay: 0, state: 1, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_EALG_3DESCBC, flags: 0 },
  addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
  keyAuth: { bits: 160, key: new Uint8Array(20).fill(1) }, keyEncrypt: { bits: 192, key: new Uint8Array(24).fill(2) },
});
const del = (spi: number, seq: number): MessageInput => ({
  header: { type: SADB_DELETE, satype: SADB_SATYPE_ESP, seq, pid: 4711 },
  sa: { spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 },
  addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
});
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Connect and turn status mode on; the answer is the request's own header. */
async function statusClient(): Promise<RawClient> {
  const c = await RawClient.connect(d.socket);
  const on = statusRequest(true, 1, 4711);
  c.write(on);
  await waitUntil('the status opt-in echo', () => c.messages.length >= 1);
  assert.deepEqual(c.messages.map(hex), [hex(on)], 'the opt-in is answered by its own header, and nothing else');
  c.messages.length = 0;
  return c;
}

/** Send `bytes` and return everything up to and including its status. */
async function request(c: RawClient, bytes: Uint8Array): Promise<Uint8Array[]> {
  const from = c.messages.length;
  c.write(bytes);
  let end = -1;
  await waitUntil('the status', () => {
    end = c.messages.findIndex((m, i) => i >= from && m[1] === KLIPSD_X_STATUS);
    return end >= 0;
  });
  return c.messages.slice(from, end + 1);
}

test('status bytes: type 254, errno, the request type in satype, its number in reserved, its seq and pid', () => {
  const req = buildMessage(add(0x100, 0x01020304));
  assert.equal(hex(statusMessage(req, ERRNO.EEXIST, 0x10203)), `02fe1103020003020403020167120000`, 'the number modulo 2^16');
  assert.deepEqual(readStatus(statusMessage(req, 0, 7)), { type: SADB_ADD, errno: 0, seq: 0x01020304, pid: 4711, number: 7 });
  assert.equal(readStatus(req), undefined);
  assert.equal(hex(statusRequest(true, 9, 4711)), '02fe000102000000090000006712' + '0000');
  // The KLIPS dialect: every refusal fails write() with its errno; Linux's only at the header.
  assert.equal(sendErrno('klips', { errno: ERRNO.ESRCH, stage: 'message', why: '' }), ERRNO.ESRCH);
  assert.equal(sendErrno('klips', { errno: ERRNO.EINVAL, stage: 'header', why: '' }), ERRNO.EINVAL);
  assert.equal(sendErrno('klips', { errno: 0, stage: 'message', why: '' }), 0);
  assert.equal(sendErrno('kame', { errno: ERRNO.ESRCH, stage: 'message', why: '' }), 0);
  assert.equal(sendErrno('kame', { errno: ERRNO.EINVAL, stage: 'header', why: '' }), ERRNO.EINVAL);
});

test('each request: its replies, then its status; refusals carry their errno', async () => {
  const c = await statusClient();
  const plain = await RawClient.connect(d.socket);
  try {
    const ok = await request(c, buildMessage(add(0x200, 10)));
    assert.deepEqual(ok.map((m) => [m[1], m[2], header(m).seq]), [[SADB_ADD, 0, 10], [KLIPSD_X_STATUS, 0, 10]], 'the ADD reply, then the status');
    assert.equal(hex(ok[1]), hex(statusMessage(buildMessage(add(0x200, 10)), 0, 1)), 'the first request since status mode went on');

    const dup = await request(c, buildMessage(add(0x200, 11)));
    assert.deepEqual(dup.map((m) => [m[1], m[2], m[3], header(m).seq]), [
      [SADB_ADD, ERRNO.EEXIST, SADB_SATYPE_ESP, 11], // the engine's errno reply (to every socket, as KLIPS)
      [KLIPSD_X_STATUS, ERRNO.EEXIST, SADB_ADD, 11],
    ]);

    const gone = await request(c, buildMessage(del(0x999, 12)));
    assert.deepEqual(gone.map((m) => [m[1], m[2], header(m).seq]), [[SADB_DELETE, ERRNO.ESRCH, 12], [KLIPSD_X_STATUS, ERRNO.ESRCH, 12]]);

    // REGISTER: the sender-only reply (the supported algorithms) comes before the status.
    const reg = await request(c, headerOnly({ type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 13, pid: 4711 }));
    assert.deepEqual(reg.map((m) => [m[1], m[2]]), [[SADB_REGISTER, 0], [KLIPSD_X_STATUS, 0]]);
    assert.ok(reg[0].length > 16, 'the REGISTER reply lists algorithms');

    // A header refusal (version 3): the status alone, no header-only errno copy.
    const bad = Uint8Array.from([3, SADB_X_DEBUG, 0, 0, 2, 0, 0, 0, 14, 0, 0, 0, 0x67, 0x12, 0, 0]);
    const refused = await request(c, bad);
    assert.deepEqual(refused.map(hex), [hex(Uint8Array.from([2, KLIPSD_X_STATUS, ERRNO.EINVAL, SADB_X_DEBUG, 2, 0, 5, 0, 14, 0, 0, 0, 0x67, 0x12, 0, 0]))], 'the fifth request');

    // Several requests in one write: each status directly after its own replies.
    const burst = [buildMessage(add(0x300, 20)), buildMessage(add(0x300, 21)), buildMessage(del(0x300, 22))];
    const from = c.messages.length;
    c.write(Buffer.concat(burst));
    await waitUntil('three statuses', () => c.messages.slice(from).filter((m) => m[1] === KLIPSD_X_STATUS).length === 3);
    assert.deepEqual(c.messages.slice(from).map((m) => [m[1], m[2], header(m).seq]), [
      [SADB_ADD, 0, 20], [KLIPSD_X_STATUS, 0, 20],
      [SADB_ADD, ERRNO.EEXIST, 21], [KLIPSD_X_STATUS, ERRNO.EEXIST, 21],
      [SADB_DELETE, 0, 22], [KLIPSD_X_STATUS, 0, 22],
    ]);

    // Reasons and status together: the reason, then the status (last).
    c.write(reasonsRequest(true, 30, 4711));
    const both = await request(c, buildMessage(add(0x200, 31)));
    assert.deepEqual(both.map((m) => m[1]), [255, SADB_ADD, 255, KLIPSD_X_STATUS], 'reasons echo, errno reply, reason, status');
    assert.equal(readReason(both[2])?.errno, ERRNO.EEXIST);

    // A connection without status mode sees none, and still gets header refusals as before.
    const got = await request(c, buildMessage(add(0x400, 40)));
    assert.equal(got.length, 2);
    await waitUntil('the broadcast ADD reaches the plain client', () => plain.messages.some((m) => m[1] === SADB_ADD && header(m).seq === 40));
    plain.write(Uint8Array.from([3, SADB_X_DEBUG, 0, 0, 2, 0, 0, 0, 41, 0, 0, 0, 0, 0, 0, 0]));
    await waitUntil('the plain header refusal', () => plain.messages.some((m) => m[1] === SADB_X_DEBUG && m[2] === ERRNO.EINVAL && header(m).seq === 41));
    assert.equal(plain.messages.filter((m) => m[1] === KLIPSD_X_STATUS).length, 0, 'no status without status mode');

    // Off again: no status.
    c.write(statusRequest(false, 50, 4711));
    await waitUntil('the opt-out echo', () => c.messages.some((m) => m[1] === KLIPSD_X_STATUS && m[3] === 0 && header(m).seq === 50));
    const n = c.messages.length;
    c.write(buildMessage(del(0x400, 51)));
    await waitUntil('the DELETE reply', () => c.messages.some((m) => m[1] === SADB_DELETE && header(m).seq === 51));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(c.messages.slice(n).map((m) => m[1]), [SADB_DELETE]);
  } finally {
    c.close();
    plain.close();
  }
});

test('a status is never dropped: a client that does not read is paused, not answered without one', async () => {
  const small = await startDaemon({ config: { ...(await import('../src/daemon/config.js')).DEFAULT_CONFIG, rcvbuf: 4096 } });
  const c = await RawClient.connect(small.socket);
  try {
    c.sock.pause(); // read nothing for now
    c.write(statusRequest(true, 1, 1));
    // 20,000 REGISTERs (320 KB, several reads): each reply is far bigger than a status,
    // so the queue overflows, and the statuses alone pass rcvbuf.
    const N = 20000;
    const regs = Buffer.concat(Array.from({ length: N }, (_, i) => headerOnly({ type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 100 + i, pid: 1 })));
    c.write(regs);
    await new Promise((r) => setTimeout(r, 300));
    const read = small.server.stats.framesIn;
    assert.ok(read < N + 1, `klipsd stopped reading the connection (read ${read} of ${N + 1} frames)`);
    assert.ok(small.server.budget.used < 4096 + 65536 + 4096, `what klipsd holds stays bounded (${small.server.budget.used} bytes)`);
    c.sock.resume();
    const statuses = () => c.messages.filter((m) => m[1] === KLIPSD_X_STATUS && m[3] === SADB_REGISTER);
    await waitUntil('every status', () => statuses().length === N, 20000);
    assert.deepEqual(statuses().map((m) => header(m).seq), Array.from({ length: N }, (_, i) => 100 + i), 'one status per request, in order');
    assert.deepEqual(statuses().map((m) => readStatus(m)!.number), Array.from({ length: N }, (_, i) => (i + 1) & 0xffff), 'numbered from 1');
    assert.ok(small.server.engine.stats.dropped > 0, 'replies were dropped meanwhile (as a full socket drops them)');
  } finally {
    c.close();
    await small.stop();
  }
});
