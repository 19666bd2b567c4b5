/**
 * klipsd's KAME socket: the captured Linux af_key exchanges (test/vectors/linux-af_key)
 * replayed through it with one connection per captured socket, every message compared
 * with Linux's field by field (kame-replay.ts masks what Linux leaves free and lists what
 * klipsd answers differently on purpose); and the socket itself: where it listens, that
 * the dialect belongs to the connection, and send()'s errno per dialect (sendErrno).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Engine, sendErrno } from '../src/engine/engine.js';
import { startServer, type KlipsServer } from '../src/daemon/server.js';
import { kameSocketPathFor } from '../src/daemon/paths.js';
import { parseConfig } from '../src/daemon/config.js';
import {
  FrameDecoder, buildMessage, parseMessage, ERRNO, SADB_REGISTER, SADB_SATYPE_ESP, SADB_X_SPDDUMP,
} from '../src/wire/index.js';
import { seededRandom } from './engine-helpers.js';
import { basicScenario, numberedScenario, NUMBERED, replay, type ReplayTarget } from './kame-replay.js';

async function withServer<T>(fn: (s: KlipsServer, target: ReplayTarget) => Promise<T>, opts: { kameSocketPath?: string } = {}): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klips-kame-'));
  const clock = { t: 1_700_000_000 };
  const engine = new Engine({ clock: () => clock.t, random: seededRandom(), localAddresses: () => [] });
  const server = await startServer({ socketPath: path.join(dir, 'pfkey.sock'), engine, tickMs: 3_600_000, ...opts });
  try {
    return await fn(server, { kamePath: server.kamePath!, engine, setClock: (t) => { clock.t = t; }, now: () => clock.t });
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('basic-exchanges.json through klipsd\'s KAME socket: every message as Linux sent it, field by field', async () => {
  await withServer(async (_s, target) => {
    const r = await replay(target, [basicScenario()]);
    assert.deepEqual(r.differences, []);
    assert.deepEqual(r.skipped, []);
    assert.equal(r.compared, 46, 'messages compared');
    // The one difference klipsd has on purpose here: its own algorithm lists in REGISTER's reply.
    assert.deepEqual([...r.masks.known], [["REGISTER: the supported algorithm lists are klipsd's", 1]]);
    assert.equal(r.masks.spi.size, 1, 'the GETSPI SPI, mapped');
  });
});

test('01..07_*.json through klipsd\'s KAME socket, in order on one klipsd: every message as Linux sent it, field by field', async () => {
  await withServer(async (_s, target) => {
    const r = await replay(target, NUMBERED.map(numberedScenario));
    assert.deepEqual(r.differences, []);
    // A byte stream framed by sadb_msg_len cannot carry a datagram whose length disagrees with it.
    assert.deepEqual(r.skipped.map((w) => w.replace(/ .*/, '')), ['05_bad_inputs[5]', '05_bad_inputs[6]', '05_bad_inputs[7]', '05_bad_inputs[8]', '05_bad_inputs[9]', '05_bad_inputs[30]']);
    assert.equal(r.compared, 194, 'messages compared');
    assert.deepEqual([...r.masks.known], [["REGISTER: the supported algorithm lists are klipsd's", 26]]);
    // klipsd numbers policies as Linux's xfrm_gen_index does (steps of 8, the direction in the low bits).
    assert.deepEqual([...r.masks.policyId], [[1, 1], [8, 8], [17, 17], [25, 25]]);
  });
});
