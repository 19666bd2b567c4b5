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
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { startServer, type KlipsServer } from '../src/daemon/server.js';
import { kameSocketPathFor } from '../src/daemon/paths.js';
import { parseConfig } from '../src/daemon/config.js';
import {
  buildMessage, parseMessage, ERRNO, AF_INET, SADB_REGISTER, SADB_SATYPE_ESP, SADB_X_SPDADD, SADB_X_ADDFLOW,
  SADB_X_AALG_NULL, IPSEC_POLICY_NONE, IPSEC_DIR_OUTBOUND, IPSEC_ULPROTO_ANY, SPI_PASS, type KameMessage,
} from '../src/wire/index.js';
import { ConfigError } from '../src/daemon/config.js';
import { spawn } from 'node:child_process';
import { seededRandom } from './engine-helpers.js';
import { basicScenario, numberedScenario, NUMBERED, replay, type ReplayTarget } from './kame-replay.js';
import { DAEMON, RawClient, startDaemon, tempDir, waitUntil, within, header } from './cli-harness.js';

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

const kameParse = (b: Uint8Array): KameMessage => parseMessage(b, { dialect: 'kame', direction: 'out' });
const v4 = (addr: string, prefixlen: number) => ({ proto: IPSEC_ULPROTO_ANY, prefixlen, family: AF_INET, port: 0, addr });

test("klipsd serves the KAME dialect on <socket>.kame: each connection answered in its own numbering, one set of tables", async () => {
  const d = await startDaemon();
  try {
    assert.equal(d.server.kamePath, kameSocketPathFor(d.socket));
    assert.equal(fs.statSync(d.server.kamePath!).mode & 0o777, fs.statSync(d.socket).mode & 0o777, 'made as the PF_KEY socket is');
    const klips = await RawClient.connect(d.socket);
    const kame = await RawClient.connect(d.server.kamePath!);
    // REGISTER on each: KAME's reply lists NULL authentication (251), as Linux's does; KLIPS's does not.
    kame.write(buildMessage({ dialect: 'kame', header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 9 } }));
    await waitUntil('the KAME REGISTER reply', () => kame.messages.length === 1);
    assert.equal(kameParse(kame.messages[0]).supportedAuth!.algs[0].id, SADB_X_AALG_NULL);
    klips.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 2, pid: 9 } });
    const kr = await klips.waitFor('the KLIPS REGISTER reply', (m) => m.header.seq === 2);
    assert.ok(!kr.supportedAuth!.algs.some((a) => a.id === SADB_X_AALG_NULL));
    // A policy added on the KAME socket is an eroute; the KLIPS connection hears X_ADDFLOW.
    kame.write(buildMessage({
      dialect: 'kame', header: { type: SADB_X_SPDADD, satype: 0, seq: 3, pid: 9 },
      addressSrc: v4('10.5.0.0', 16), addressDst: v4('10.6.0.0', 16),
      policy: { type: IPSEC_POLICY_NONE, dir: IPSEC_DIR_OUTBOUND, id: 0, priority: 0, requests: [] },
    }));
    const flow = await klips.waitFor('X_ADDFLOW', (m) => m.header.type === SADB_X_ADDFLOW);
    assert.equal(flow.sa!.spi, SPI_PASS);
    await waitUntil('the SPDADD reply', () => kame.messages.length === 2);
    assert.equal(kameParse(kame.messages[1]).header.type, SADB_X_SPDADD);
    assert.equal(d.server.engine.spd.size, 1);
    // A header Linux cannot take: no message exists; the stream's stand-in for send() failing is an errno header to this connection.
    const bad = buildMessage({ header: { type: SADB_REGISTER, satype: 3, seq: 4, pid: 9 } });
    bad[0] = 3;
    kame.write(bad);
    await waitUntil('the header refusal', () => kame.messages.length === 3);
    assert.deepEqual(header(kame.messages[2]), { version: 2, type: SADB_REGISTER, errno: ERRNO.EINVAL, satype: 3, len: 2, seq: 4, pid: 9 });
    assert.equal(d.server.stats.headerRefusals, 1);
    klips.close();
    kame.close();
  } finally {
    const kamePath = d.server.kamePath!;
    await d.stop();
    assert.equal(fs.existsSync(kamePath), false, 'the KAME socket file is removed');
  }
});

test('kameSocket: null is the socket path + .kame, "" is none, anything but a string or null is refused', async () => {
  assert.equal(parseConfig({}).kameSocket, null);
  assert.equal(parseConfig({ kameSocket: '' }).kameSocket, '');
  assert.equal(parseConfig({ kameSocket: '/run/k/kame.sock' }).kameSocket, '/run/k/kame.sock');
  assert.throws(() => parseConfig({ kameSocket: 5 }), ConfigError);
  const d = await startDaemon({ kameSocketPath: '' });
  try {
    assert.equal(d.server.kamePath, undefined);
    assert.equal(fs.existsSync(kameSocketPathFor(d.socket)), false);
  } finally {
    await d.stop();
  }
});

test('klipsd --kame-socket PATH listens there, speaks the KAME dialect, and removes it on SIGTERM', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const kamePath = path.join(dir, 'other', 'kame.sock');
  const child = spawn(process.execPath, [DAEMON, '--socket', socket, '--kame-socket', kamePath, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await waitUntil('the KAME socket', () => fs.existsSync(kamePath), 10_000);
    const c = await RawClient.connect(kamePath);
    c.write(buildMessage({ dialect: 'kame', header: { type: SADB_REGISTER, satype: 0, seq: 1, pid: 3 } }));
    await waitUntil('a reply', () => c.messages.length === 1);
    // Linux's REGISTER with SA type 0 asks without registering: a reply, no EINVAL (KLIPS says EINVAL).
    assert.equal(header(c.messages[0]).errno, 0);
    c.close();
    child.kill('SIGTERM');
    assert.equal(await within(10_000, 'klipsd to stop', exited), 0);
    assert.equal(fs.existsSync(kamePath), false);
    assert.equal(fs.existsSync(kameSocketPathFor(socket)), false, 'no socket at the default path');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
