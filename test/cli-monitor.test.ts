/**
 * `klips monitor` (ipsec pf_key) end to end: it registers, then prints what other clients
 * cause (broadcast ADD replies, errno replies, eroute replies), ACQUIREs for the SA types
 * it registered, copies of every request with --promisc (keys hidden unless
 * --show-keys), one JSON object per line with --json, and stops cleanly.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SPI_TRAP } from '../src/wire/index.js';
import { queryViews } from '../src/cli/client.js';
import { KEY_3DES, KEY_SHA1, klips, klipsBackground, klipsOk, useDaemon, startDaemon, waitUntil, within } from './cli-harness.js';

const kd = useDaemon();

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

test("monitor registers for AH, ESP, IPIP and IPCOMP and prints other clients' messages until stopped", async () => {
  const m = klipsBackground(['monitor', ...kd.S]);
  try {
    await waitUntil('four REGISTER replies', () => count(m.stdout(), /^SADB_REGISTER /gm) === 4);
    assert.match(m.stdout(), /^SADB_REGISTER satype=AH seq=1 pid=\d+ len=8\n {2}SUPPORTED_AUTH: MD5HMAC/m);
    assert.match(m.stdout(), /^SADB_REGISTER satype=X_COMP seq=4 /m);

    await klipsOk(['spi', ...kd.S, '--said', 'esp.1234@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-sha1-96', '--enckey', KEY_3DES, '--authkey', KEY_SHA1]);
    await waitUntil('the ADD reply', () => /^SADB_ADD satype=ESP/m.test(m.stdout()));
    const add = m.stdout().slice(m.stdout().indexOf('SADB_ADD'));
    assert.match(add, /^SADB_ADD satype=ESP seq=1 pid=\d+ len=13\n {2}SA: spi=0x00001234 replay=0 state=MATURE auth=SHA1HMAC encrypt=3DESCBC flags=0 ref=0\n {2}ADDRESS_SRC: 192\.0\.2\.1\n {2}ADDRESS_DST: 192\.0\.2\.2\n {2}X_SAREF: me=1 him=0\n\n/);
    assert.doesNotMatch(m.stdout(), /KEY_/, 'the broadcast ADD reply carries no keys');

    await klips(['spi', ...kd.S, '--said', 'esp.9999@192.0.2.2', '--del']);
    await waitUntil('the errno reply', () => /^SADB_DELETE satype=ESP seq=1 pid=\d+ len=2 errno=ESRCH\(3\)$/m.test(m.stdout()));
    await klipsOk(['eroute', ...kd.S, '--add', '--src', '10.0.1.0/24', '--dst', '10.0.2.0/24', '--said', '%trap']);
    await waitUntil('the ADDFLOW reply', () => /^SADB_X_ADDFLOW satype=X_INT/m.test(m.stdout()));

    // A packet hits the %trap: the engine sends ACQUIRE to the sockets registered for ESP.
    const trap = [...kd.d.server.engine.spd.entries()].find((e) => e.said.spi === SPI_TRAP)!;
    kd.d.server.engine.acquire({ family: 2, src: '10.0.1.7', dst: '10.0.2.8', proto: 6, sport: 1000, dport: 80 }, trap);
    await waitUntil('the ACQUIRE', () => /^SADB_ACQUIRE satype=ESP seq=\d+ pid=0 /m.test(m.stdout()));
    assert.match(m.stdout(), /ADDRESS_SRC: 10\.0\.1\.7\n {2}ADDRESS_DST: 10\.0\.2\.8\n {2}PROPOSAL: replay=64/);
    assert.equal(await m.stop(), 0, 'SIGTERM ends monitor with status 0');
    assert.equal(m.stderr(), '');
  } finally {
    await m.stop();
  }
});

test('--promisc --json shows requests from everyone, keys hidden; --show-keys shows them; --count stops', async () => {
  const m = klipsBackground(['monitor', ...kd.S, '--esp', '--promisc', '--json']);
  await waitUntil('the first monitor ready', () => m.stdout().includes('SADB_X_PROMISC'));
  // REGISTER and X_PROMISC replies, then the ADD request's copy and its reply: 4 messages.
  const k = klipsBackground(['monitor', ...kd.S, '--ah', '--promisc', '--json', '--show-keys', '--count', '4']);
  try {
    await waitUntil('both monitors ready', () => k.stdout().includes('SADB_X_PROMISC') && m.stdout().split('\n').length >= 5);
    const reg = (await queryViews('test', kd.d.socket, ['registered'], 5000)).registered.data as Array<{ satype: number; pid: number }>;
    assert.deepEqual(reg.filter((r) => r.pid === m.child.pid).map((r) => r.satype), [3], '--esp registers ESP only');
    assert.deepEqual(reg.filter((r) => r.pid === k.child.pid).map((r) => r.satype), [2], '--ah registers AH only');
    await klipsOk(['spi', ...kd.S, '--said', 'esp.5678@192.0.2.2', '--esp', '3des', '--enckey', KEY_3DES]);
    await waitUntil('the request copy', () => m.stdout().includes('"KEY_ENCRYPT"'));
    const lines = m.stdout().trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.slice(0, 2).map((x) => x.type), ['SADB_REGISTER', 'SADB_X_PROMISC'], 'only ESP was registered');
    const req = lines.find((x) => x.type === 'SADB_ADD' && x.extensions.KEY_ENCRYPT);
    assert.ok(req, 'the promiscuous copy of the ADD request');
    assert.equal(req.extensions.KEY_ENCRYPT.key, '[hidden]');
    assert.equal(await within(10000, 'monitor --count to exit', k.exited), 0);
    const shown = k.stdout().trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(shown.length, 4);
    const withKey = shown.find((x) => x.extensions.KEY_ENCRYPT);
    assert.equal(withKey.extensions.KEY_ENCRYPT.key, '0102030405060708090a0b0c0d0e0f101112131415161718');
  } finally {
    await m.stop();
    await k.stop();
  }
});

test('monitor exits 1 when klipsd goes away, and 2 on bad arguments', async () => {
  const r = await klips(['monitor', ...kd.S, '--count', 'many']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /invalid --count "many"/);
  const other = await startDaemon();
  const m = klipsBackground(['monitor', '--socket', other.socket]);
  try {
    await waitUntil('registered', () => m.stdout().includes('X_COMP'));
    await other.stop();
    assert.equal(await within(10000, 'monitor to notice', m.exited), 1);
    assert.match(m.stderr(), /monitor: klipsd closed the connection/);
  } finally {
    await m.stop();
  }
});
