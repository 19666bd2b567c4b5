/**
 * klipsd's reasons (wire/reason.ts): a connection that turns them on gets, after each
 * refusal, the reason in words; a connection that did not (any unmodified PF_KEY client)
 * never sees one. Over a real Unix socket, with hand-made frames.
 */

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  AF_INET, ERRNO, KLIPSD_X_REASON, SADB_ADD, SADB_SATYPE_ESP, SADB_X_DEBUG, SADB_AALG_SHA1HMAC, SADB_EALG_3DESCBC,
  buildMessage, readReason, reasonsRequest, type MessageInput,
} from '../src/wire/index.js';
import { RawClient, startDaemon, waitUntil, type Daemon } from './cli-harness.js';

let d: Daemon;
before(async () => { d = await startDaemon(); });
after(async () => { await d.stop(); });

const v4 = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
/** An ESP ADD whose 3DES key has 64 bits (3DES takes 192): EINVAL from the engine. */
const badAdd = (seq: number): MessageInput => ({
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq, pid: 4711 },
  sa: { spi: 0x4242, replay: 0, state: 1, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_EALG_3DESCBC, flags: 0 },
  addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
  keyAuth: { bits: 160, key: new Uint8Array(20).fill(1) }, keyEncrypt: { bits: 64, key: new Uint8Array(8).fill(2) },
});
/** A bad version: refused at the header, before any parsing. */
const badHeader = (seq: number) => Uint8Array.from([3, SADB_X_DEBUG, 0, 0, 2, 0, 0, 0, seq, 0, 0, 0, 0x67, 0x12, 0, 0]);

/**
 * Send `bytes`, then a probe that is always answered (the opt-in, repeating the mode
 * `reasons` the connection is in), and return what came back before the probe's answer.
 */
async function exchange(c: RawClient, bytes: Uint8Array, probeSeq: number, reasons = true): Promise<Uint8Array[]> {
  const from = c.messages.length;
  c.write(bytes);
  c.write(reasonsRequest(reasons, probeSeq, 999));
  let end = -1;
  await waitUntil('the probe echo', () => {
    end = c.messages.findIndex((m, i) => i >= from && m[1] === KLIPSD_X_REASON && m.length === 16 && m[8] === probeSeq);
    return end >= 0;
  });
  return c.messages.slice(from, end);
}

test('a client that asked gets the reason after the errno reply; one that did not never sees one', async () => {
  const plain = await RawClient.connect(d.socket);
  const asking = await RawClient.connect(d.socket);
  try {
    // The opt-in is answered with its own header (errno 0).
    asking.write(reasonsRequest(true, 1, 4711));
    await waitUntil('the opt-in echo', () => asking.messages.some((m) => m[1] === KLIPSD_X_REASON && m[3] === 1 && m[2] === 0));
    asking.messages.length = 0;

    const got = await exchange(asking, buildMessage(badAdd(7)), 200);
    const errnoReply = got.findIndex((m) => m[1] === SADB_ADD && m[2] === ERRNO.EINVAL && m[8] === 7);
    assert.ok(errnoReply >= 0, 'the errno reply (as KLIPS: header only, to every socket)');
    const reasons = got.map(readReason).filter((r) => r !== undefined);
    assert.equal(reasons.length, 1);
    assert.deepEqual({ ...reasons[0], why: undefined }, { type: SADB_ADD, errno: ERRNO.EINVAL, seq: 7, pid: 4711, why: undefined });
    assert.match(reasons[0]!.why, /64 bits/, 'the reason names the key length');
    assert.ok(got.findIndex((m) => readReason(m) !== undefined) > errnoReply, 'the reason follows the errno reply');

    const hdr = await exchange(asking, badHeader(8), 201);
    const hdrReason = hdr.map(readReason).find((r) => r !== undefined);
    assert.deepEqual(hdrReason && [hdrReason.type, hdrReason.errno, hdrReason.seq], [SADB_X_DEBUG, ERRNO.EINVAL, 8]);
    assert.match(hdrReason!.why, /version 3/);

    // Something of type 255 that is not exactly the opt-in is refused like any unknown type.
    const bogus = reasonsRequest(true, 3, 4711);
    bogus[2] = 0xd6;
    const refused = await exchange(plain, bogus, 203, false);
    assert.deepEqual(refused.map((m) => [m[1], m[2], m[8]]), [[KLIPSD_X_REASON, ERRNO.EINVAL, 3]], 'header-level EINVAL, and reasons stay off');

    // The other socket saw the broadcast errno reply, and no reason.
    await waitUntil('the broadcast reaches the plain client', () => plain.messages.some((m) => m[1] === SADB_ADD && m[2] === ERRNO.EINVAL));
    assert.equal(plain.messages.filter((m) => readReason(m) !== undefined).length, 0);

    // Off again: no more reasons.
    asking.write(reasonsRequest(false, 2, 4711));
    await waitUntil('the opt-out echo', () => asking.messages.some((m) => m[1] === KLIPSD_X_REASON && m[3] === 0 && m[8] === 2));
    const after = await exchange(asking, buildMessage(badAdd(9)), 202, false);
    assert.ok(after.some((m) => m[1] === SADB_ADD && m[2] === ERRNO.EINVAL && m[8] === 9));
    assert.equal(after.filter((m) => readReason(m) !== undefined).length, 0);
  } finally {
    plain.close();
    asking.close();
  }
});
