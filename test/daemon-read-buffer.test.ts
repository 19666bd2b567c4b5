/**
 * klipsd's connections read into one buffer the server owns (src/daemon/read-buffer.ts),
 * reused by every read. Here:
 *
 *  - the mechanism: an adopted socket reads into that buffer, read after read; a view of a
 *    read kept past its handler is poisoned when asked; writing, half-close and the
 *    listener's connection count work as on the socket it replaces;
 *  - nothing behind klipsd keeps a view of a read: every request the captured clients sent
 *    goes through a klipsd whose buffer is poisoned after each read and through one whose
 *    buffer is not, each request in a read of its own; what the sender, a promiscuous
 *    listener and a registered listener receive, and the tables after each request, are the same
 *    byte for byte.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { buildMessage, headerOnly, SADB_REGISTER, SADB_SATYPE_ESP, SADB_X_DEBUG, SADB_X_PROMISC } from '../src/wire/index.js';
import { Engine } from '../src/engine/engine.js';
import { POISON_BYTE, ReadBuffer } from '../src/daemon/read-buffer.js';
import { clientRequests } from './vectors.js';
import { seededRandom, snapshot } from './engine-helpers.js';
import { RawClient, header, startDaemon, tempDir, waitUntil, within } from './cli-harness.js';

test('an adopted socket reads into the one buffer, read after read; a view kept past its read is poisoned', async () => {
  const rb = new ReadBuffer(true);
  const reads: Array<{ bytes: string; buffer: ArrayBufferLike }> = [];
  const kept: Uint8Array[] = [];
  let adopted: net.Socket | undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
    adopted = rb.adopt(accepted, (buf, n) => {
      reads.push({ bytes: Buffer.from(buf.subarray(0, n)).toString(), buffer: buf.buffer });
      kept.push(buf.subarray(0, n));
      adopted!.write(Buffer.from(`echo:${Buffer.from(buf.subarray(0, n))}`));
    });
    adopted.on('end', () => adopted!.end());
  });
  const sockPath = path.join(tempDir(), 's');
  server.listen(sockPath);
  await once(server, 'listening');
  try {
    const c = net.connect(sockPath);
    await once(c, 'connect');
    let got = '';
    c.on('data', (d: Buffer) => { got += d.toString(); });
    c.write('first');
    await waitUntil('the first echo', () => got === 'echo:first');
    c.write('second');
    await waitUntil('the second echo', () => got === 'echo:firstecho:second');
    assert.deepEqual(reads.map((r) => r.bytes), ['first', 'second']);
    assert.equal(reads[0].buffer, reads[1].buffer, 'both reads went into the same buffer');
    assert.notEqual(adopted, undefined);
    for (const v of kept) assert.ok(v.every((b) => b === POISON_BYTE), 'a view kept past its read reads poison');
    const count = () => new Promise<number>((res, rej) => server.getConnections((e, n) => (e ? rej(e) : res(n))));
    assert.equal(await count(), 1, 'the listener counts the adopted connection');
    // Half-close: the adopted socket sees the end and ends its side.
    c.end();
    await within(5000, 'the adopted side closing', once(c, 'close'));
    await waitUntil('the listener uncounting it', async () => (await count()) === 0);
  } finally {
    server.close();
  }
});

/** X_DEBUG OR-ing nothing in (klipsdebug's query), answered to its sender alone: the end of a request's replies. */
const PROBE_PID = 0x0b0b0b0b;
const probe = (seq: number) => buildMessage({
  header: { type: SADB_X_DEBUG, seq, pid: PROBE_PID },
  debug: { tunnel: 0, netlink: 0x80000000, xform: 0, eroute: 0, spi: 0, radij: 0, esp: 0, ah: 0, rcv: 0, pfkey: 0, ipcomp: 0, verbose: 0 },
});
const isProbe = (m: Uint8Array, seq: number) => { const h = header(m); return h.type === SADB_X_DEBUG && h.pid === PROBE_PID && h.seq === seq; };

/** Every captured request through a klipsd, each in a read of its own; what three clients received, and the tables. */
async function replayAll(poisonReads: boolean): Promise<{ sender: string[]; promisc: string[]; registered: string[]; tables: string[]; most: number }> {
  const d = await startDaemon({ engine: new Engine({ clock: () => 1_700_000_000, random: seededRandom(0x7ead), localAddresses: () => [] }), poisonReads });
  try {
    const promisc = await RawClient.connect(d.socket);
    promisc.write(headerOnly({ type: SADB_X_PROMISC, satype: 1, seq: 1, pid: 77 }));
    await waitUntil('promiscuous mode on', () => promisc.messages.some((m) => header(m).type === SADB_X_PROMISC));
    const registered = await RawClient.connect(d.socket);
    registered.write(headerOnly({ type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 78 }));
    await waitUntil('registered for ESP', () => registered.messages.some((m) => header(m).type === SADB_REGISTER && header(m).pid === 78));
    const sender = await RawClient.connect(d.socket);
    const requests = clientRequests();
    const tables: string[] = [];
    let most = 0;
    assert.ok(requests.length >= 100, `${requests.length} captured requests`);
    for (let i = 0; i < requests.length; i++) {
      const seq = i + 1;
      // The request, then (after klipsd has surely read it) the probe: two reads.
      sender.write(requests[i]);
      await new Promise((r) => setTimeout(r, 1));
      sender.write(probe(seq));
      await waitUntil(`the probe after request ${i}`, () => sender.messages.some((m) => isProbe(m, seq)));
      tables.push(snapshot(d.server.engine));
      most = Math.max(most, d.server.engine.sadb.size);
    }
    // A stream keeps order: a listener has all it was sent once its own probe is answered.
    for (const [k, c] of [promisc, registered].entries()) {
      const seq = 1_000_000 + k;
      c.write(probe(seq));
      await waitUntil('the listener\'s own probe', () => c.messages.some((m) => isProbe(m, seq)));
    }
    const hex = (ms: Uint8Array[]) => ms.map((m) => Buffer.from(m).toString('hex'));
    return { sender: hex(sender.messages), promisc: hex(promisc.messages), registered: hex(registered.messages), tables, most };
  } finally {
    await d.stop();
  }
}

test('nothing keeps a view of a read: every captured request, poisoned after each read or not, gives the same replies and tables', async () => {
  const plain = await replayAll(false);
  const poisoned = await replayAll(true);
  assert.ok(plain.sender.length > 200 && plain.promisc.length > 200, `${plain.sender.length} replies to the sender, ${plain.promisc.length} to the promiscuous listener`);
  assert.deepEqual(poisoned.sender, plain.sender, 'the sender got the same bytes');
  assert.deepEqual(poisoned.promisc, plain.promisc, 'the promiscuous listener got the same bytes');
  assert.deepEqual(poisoned.registered, plain.registered, 'the registered listener got the same bytes');
  assert.deepEqual(poisoned.tables, plain.tables, 'the same tables after every request');
  assert.ok(plain.most >= 5, `at most ${plain.most} SAs at once: too few to compare`);
});
