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
import { jsonRecords, KEY_3DES, KEY_SHA1, klips, klipsBackground, klipsOk, RawClient, useDaemon, startDaemon, waitUntil, within } from './cli-harness.js';

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

/**
 * Messages monitor cannot parse when it sees their promiscuous copies: a client's EXPIRE
 * carrying KEY_AUTH (no rule lets a client send that), one whose second extension claims
 * length 0, and one with an extension of a type klips has no name for.
 */
const KEY = Buffer.from('secret key bytes');
function hostileMessages(): Buffer[] {
  const header = (len: number, seq: number) => {
    const h = Buffer.alloc(16);
    h.writeUInt8(2, 0); // version
    h.writeUInt8(8, 1); // SADB_EXPIRE
    h.writeUInt8(3, 3); // ESP
    h.writeUInt16LE(len / 8, 4);
    h.writeUInt32LE(seq, 8);
    h.writeUInt32LE(4242, 12);
    return h;
  };
  // SA: len 2, type 1, spi 0x1234 (network order), replay 0, state MATURE, auth SHA1, encrypt 3DES, flags 0.
  const sa = Buffer.from('0200010000001234000103030000000000', 'hex').subarray(0, 16);
  // KEY_AUTH: len 3, type 8, 128 bits, reserved, then the key.
  const keyAuth = Buffer.concat([Buffer.from('0300080080000000', 'hex'), KEY]);
  const zeroLen = Buffer.concat([Buffer.from('00000900', 'hex'), KEY.subarray(0, 4)]);
  const unknown = Buffer.concat([Buffer.from('01002800', 'hex'), KEY.subarray(0, 4)]);
  return [Buffer.concat([header(56, 1), sa, keyAuth]), Buffer.concat([header(40, 2), sa, zeroLen]), Buffer.concat([header(40, 3), sa, unknown])];
}

test('--promisc: a message klips cannot parse shows its parts, key material hidden unless --show-keys', async () => {
  const json = klipsBackground(['monitor', ...kd.S, '--esp', '--promisc', '--json']);
  const text = klipsBackground(['monitor', ...kd.S, '--esp', '--promisc']);
  const keys = klipsBackground(['monitor', ...kd.S, '--esp', '--promisc', '--json', '--show-keys']);
  const raw = await RawClient.connect(kd.d.socket);
  try {
    await waitUntil('three monitors ready', () => [json, text, keys].every((m) => m.stdout().includes('X_PROMISC')));
    for (const m of hostileMessages()) raw.write(m);
    await waitUntil('the copies at every monitor', () => [json, text, keys].every((m) => (m.stdout().match(/unparsable/g) ?? []).length === 3));
    for (const m of [json, text, keys]) assert.equal(await m.stop(), 0, m.stderr());
    const keyHex = KEY.toString('hex');
    for (const m of [json, text]) assert.ok(!m.stdout().includes(keyHex) && !m.stdout().includes(keyHex.slice(0, 8)), `no key bytes:\n${m.stdout()}`);

    const hostile = (out: string) => jsonRecords(out).filter((r) => 'unparsable' in r);
    const [expire, zero, unknown] = hostile(json.stdout());
    assert.deepEqual(expire, {
      type: 'SADB_EXPIRE', satype: 'ESP', errno: null,
      header: { version: 2, type: 8, errno: 0, satype: 3, len: 7, reserved: 0, seq: 1, pid: 4242 },
      unparsable: expire.unparsable,
      parts: [
        { ext: 'SA', offset: 16, len: 16, hex: sa16() },
        { ext: 'KEY_AUTH', offset: 32, len: 24, hex: '[hidden]' },
      ],
    });
    assert.match(expire.unparsable, /^EINVAL at byte \d+: /);
    assert.equal('hex' in expire, false, 'no raw hex without --show-keys');
    assert.deepEqual(zero.parts, [{ ext: 'SA', offset: 16, len: 16, hex: sa16() }, { ext: null, offset: 32, len: 8, hex: '[hidden]' }], 'bytes no extension accounts for are hidden');
    assert.deepEqual(unknown.parts[1], { ext: 'ext40', offset: 32, len: 8, hex: '[hidden]' }, 'an extension klips has no name for is hidden');

    const t = text.stdout();
    assert.match(t, /^SADB_EXPIRE satype=ESP seq=1 pid=4242 len=7: unparsable \(EINVAL at byte \d+: .+\)\n {2}SA at byte 16, 16 bytes: [0-9a-f]{32}\n {2}KEY_AUTH at byte 32, 24 bytes: \[hidden\]\n\n/m);

    assert.match(t, /^SADB_EXPIRE satype=ESP seq=2 pid=4242 len=5: unparsable \(.+\)\n {2}SA at byte 16, 16 bytes: [0-9a-f]{32}\n {2}\(no extension\) at byte 32, 8 bytes: \[hidden\]\n\n/m);

    const shown = hostile(keys.stdout());
    assert.equal(shown[0].parts[1].hex, `0300080080000000${keyHex}`, '--show-keys: the key extension as it came');
    assert.deepEqual(shown.map((r) => r.hex), hostileMessages().map((b) => b.toString('hex')), '--show-keys: the raw hex too');
    assert.equal(shown[1].parts[1].hex, `00000900${keyHex.slice(0, 8)}`);
  } finally {
    raw.close();
    for (const m of [json, text, keys]) await m.stop();
  }
});

const sa16 = () => hostileMessages()[0].subarray(16, 32).toString('hex');

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
