/**
 * klipsd as a process: the socket path rules, file modes, stale and live socket files,
 * the embedded default configuration and --config, bad arguments, and a clean stop on
 * SIGTERM/SIGINT (sockets closed, files removed, exit 0).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  SADB_REGISTER, SADB_SATYPE_ESP, SADB_X_AALG_SHA2_256HMAC, SADB_X_EALG_AESCBC, SADB_AALG_SHA1HMAC,
} from '../src/wire/index.js';
import { defaultSocketPath, infoPathFor, resolveSocketPath } from '../src/daemon/paths.js';
import { ConfigError, DEFAULT_CONFIG, RELOAD, parseConfig } from '../src/daemon/config.js';
import { DIST, RawClient, klips, tempDir, waitUntil, within } from './cli-harness.js';
import { connectable, ready, spawnDaemon, stopWith } from './daemon-child.js';

test('socket path: --socket, then $KLIPS_SOCKET, then /run/klips for root, $XDG_RUNTIME_DIR or a per-user temp dir', () => {
  assert.equal(defaultSocketPath({ uid: 0, env: {} }), '/run/klips/pfkey.sock');
  assert.equal(defaultSocketPath({ uid: 1000, env: { XDG_RUNTIME_DIR: '/run/user/1000' } }), '/run/user/1000/klips/pfkey.sock');
  assert.equal(defaultSocketPath({ uid: 1000, env: {}, tmpdir: '/tmp' }), '/tmp/klips-1000/pfkey.sock');
  assert.equal(defaultSocketPath({ uid: 1000, env: { XDG_RUNTIME_DIR: 'relative' }, tmpdir: '/tmp' }), '/tmp/klips-1000/pfkey.sock');
  assert.equal(resolveSocketPath(undefined, { uid: 1000, env: { KLIPS_SOCKET: '/x/k.sock', XDG_RUNTIME_DIR: '/run/user/1000' } }), '/x/k.sock');
  assert.equal(resolveSocketPath('/y/k.sock', { uid: 1000, env: { KLIPS_SOCKET: '/x/k.sock' } }), '/y/k.sock');
  assert.equal(infoPathFor('/y/k.sock'), '/y/k.sock.info');
});

test('klipsd serves with the embedded default configuration; files are 0600; SIGTERM removes them and exits 0', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const p = spawnDaemon(['--socket', socket]);
  try {
    await ready(p, socket);
    for (const f of [socket, infoPathFor(socket)]) {
      const st = fs.statSync(f);
      assert.ok(st.isSocket(), `${f} is a socket`);
      assert.equal(st.mode & 0o777, 0o600, `${f} mode`);
    }
    const c = await RawClient.connect(socket);
    c.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 42 } });
    const reply = await c.waitFor('REGISTER reply', (m) => m.header.type === SADB_REGISTER);
    assert.deepEqual(reply.supportedAuth!.algs.map((a) => a.id), [2, 3, 5, 6, 7]);
    assert.deepEqual(reply.supportedEncrypt!.algs.map((a) => a.id), [3, 12, 13, 18, 19, 20, 11]);
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
    await waitUntil('client to see the close', () => c.closed);
    assert.equal(fs.existsSync(socket), false, 'socket file removed');
    assert.equal(fs.existsSync(infoPathFor(socket)), false, 'info socket file removed');
    assert.match(p.stderr(), /"msg":"klipsd listening"/);
    assert.match(p.stderr(), /"msg":"klipsd stopped"/);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGINT stops klipsd the same way', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const p = spawnDaemon(['--socket', socket, '--log-level', 'silent']);
  try {
    await ready(p, socket);
    assert.equal(await stopWith(p, 'SIGINT'), 0);
    assert.equal(fs.existsSync(socket), false);
    assert.equal(p.stderr(), '', 'silent log level writes nothing');
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('$KLIPS_SOCKET is honoured by klipsd and by the tools alike', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'env.sock');
  const env = { ...process.env, KLIPS_SOCKET: socket };
  const p = spawnDaemon(['--log-level', 'warn'], { env });
  try {
    await ready(p, socket);
    const r = await klips(['tncfg', '--create', 'mast1'], { env });
    assert.equal(r.code, 0, r.stderr);
    const list = await klips(['tncfg'], { env });
    assert.equal(list.stdout, ['mast0', 'mast1', 'ipsec0', 'ipsec1'].map((n) => `${n} -> NULL mtu=0(0) -> 0\n`).join(''), 'mast1 beside the interfaces KLIPS starts with');
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a stale socket file is replaced; a live one is refused with a clear message', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const first = spawnDaemon(['--socket', socket, '--log-level', 'warn']);
  try {
    await ready(first, socket);
    first.child.kill('SIGKILL');
    await within(5000, 'SIGKILL', first.exited);
    assert.ok(fs.existsSync(socket), 'a killed klipsd leaves its socket file behind');

    const second = spawnDaemon(['--socket', socket]);
    try {
      await ready(second, socket);
      assert.match(second.stderr(), /replaced a stale socket file/);

      const third = spawnDaemon(['--socket', socket]);
      assert.equal(await within(10000, 'refusal', third.exited), 1);
      assert.match(third.stderr(), /is in use: another klipsd is serving it/);
      assert.ok(await connectable(socket), 'the live klipsd is untouched');
      const r = await klips(['tncfg', '--socket', socket]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await stopWith(second, 'SIGTERM'), 0);
    } finally {
      second.child.kill('SIGKILL');
    }
  } finally {
    first.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a path that is not a socket is never replaced', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  fs.writeFileSync(socket, 'precious');
  try {
    const p = spawnDaemon(['--socket', socket]);
    assert.equal(await within(10000, 'refusal', p.exited), 1);
    assert.match(p.stderr(), /exists and is not a socket; refusing to replace it/);
    assert.equal(fs.readFileSync(socket, 'utf8'), 'precious');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--group opens the sockets to a group (mode 0660)', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const gid = String(process.getgid!());
  const p = spawnDaemon(['--socket', socket, '--group', gid, '--log-level', 'warn']);
  try {
    await ready(p, socket);
    const st = fs.statSync(socket);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, Number(gid));
    assert.equal(fs.statSync(infoPathFor(socket)).mode & 0o777, 0o660);
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const bad = spawnDaemon(['--socket', socket, '--group', 'no-such-group-klips']);
  assert.equal(await within(10000, 'refusal', bad.exited), 1);
  assert.match(bad.stderr(), /no such group "no-such-group-klips"/);
});

test('--config narrows the supported algorithms and sets debug flags', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const cfg = path.join(dir, 'klipsd.json');
  fs.writeFileSync(cfg, JSON.stringify({
    rcvbuf: 65536,
    logLevel: 'info',
    debug: ['pfkey', 'spi'],
    supported: { esp: { auth: ['sha1', 'sha2_256'], encrypt: ['aes'] }, ah: null },
  }));
  const p = spawnDaemon(['--socket', socket, '--config', cfg]);
  try {
    await ready(p, socket);
    const c = await RawClient.connect(socket);
    c.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 42 } });
    const reply = await c.waitFor('REGISTER reply', (m) => m.header.type === SADB_REGISTER);
    assert.deepEqual(reply.supportedAuth!.algs.map((a) => a.id), [SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC]);
    assert.deepEqual(reply.supportedEncrypt!.algs, [{ id: SADB_X_EALG_AESCBC, ivlen: 128, minbits: 128, maxbits: 256 }]);
    c.close();
    // klipsdebug flags on: the engine's debug lines go to the log (at info), never key bytes.
    const add = await klips(['spi', '--socket', socket, '--said', 'esp.1234@192.0.2.2', '--esp', 'aes128-sha1',
      '--enckey', '0xfeedfacefeedfacefeedfacefeedface', '--authkey', '0xdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef']);
    assert.equal(add.code, 0, add.stderr);
    await waitUntil('the debug line', () => p.stderr().includes('"klipsdebug":"pfkey","msg":"ADD seq=1'));
    assert.doesNotMatch(p.stderr(), /feedface|deadbeef/i);
    const dbg = await klips(['debug', '--socket', socket]);
    assert.match(dbg.stdout, /^debug_spi=ffffffff\.$/m);
    assert.match(dbg.stdout, /^debug_pfkey=ffffffff\.$/m);
    assert.match(dbg.stdout, /^debug_esp=00000000\.$/m);
    const sup = await klips(['look', '--socket', socket, '--json']);
    assert.equal(sup.code, 0);
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad configuration file stops klipsd with the file, the field and the problem', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const cases: Array<[string, RegExp]> = [
    ['{ not json', /not valid JSON/],
    ['{"rcvbuf": -1}', /"rcvbuf" must be an integer from 1024/],
    ['{"bogus": 1}', /unknown field "bogus"/],
    ['{"supported": {"esp": {"encrypt": ["rot13"]}}}', /supported\.esp\.encrypt\[0\]: unknown algorithm "rot13"/],
    ['{"debug": ["everything"]}', /"debug": unknown subsystem "everything"/],
  ];
  try {
    for (const [text, why] of cases) {
      const cfg = path.join(dir, 'bad.json');
      fs.writeFileSync(cfg, text);
      const p = spawnDaemon(['--socket', socket, '--config', cfg]);
      assert.equal(await within(10000, 'refusal', p.exited), 1, text);
      assert.match(p.stderr(), why);
      assert.ok(p.stderr().startsWith(`klipsd: ${cfg}: `), p.stderr());
      assert.equal(fs.existsSync(socket), false);
    }
    const missing = spawnDaemon(['--socket', socket, '--config', path.join(dir, 'absent.json')]);
    assert.equal(await within(10000, 'refusal', missing.exited), 1);
    assert.match(missing.stderr(), /cannot read: ENOENT/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad klipsd arguments print usage and exit 2', async () => {
  for (const args of [['--bogus'], ['--log-level', 'loud'], ['extra']]) {
    const p = spawnDaemon(args);
    assert.equal(await within(10000, 'usage', p.exited), 2, args.join(' '));
    assert.match(p.stderr(), /Usage: klipsd/);
  }
});

test('parseConfig fills defaults and resolves algorithm names, numbers and objects', () => {
  const c = parseConfig({ supported: { esp: { auth: [3, { name: 'sha2_256' }], encrypt: ['aes_gcm_16', { id: 12, minbits: 128, maxbits: 128 }] } } });
  assert.equal(c.rcvbuf, 212992);
  assert.equal(c.writeHighWater, 65536);
  assert.equal(c.rcvbufTotal, 64 << 20);
  const esp = c.supported!.get(SADB_SATYPE_ESP)!;
  assert.deepEqual(esp.auth.map((a) => a.id), [3, 5]);
  assert.deepEqual(esp.encrypt[0], { id: 20, ivlen: 64, minbits: 160, maxbits: 288, sizes: [160, 224, 288] });
  assert.deepEqual(esp.encrypt[1], { id: 12, ivlen: 128, minbits: 128, maxbits: 128 });
  assert.ok(c.supported!.has(2), 'an SA type left out keeps its default');
  assert.throws(() => parseConfig({ supported: { esp: { auth: ['sha1', 3] } } }), ConfigError);
  assert.throws(() => parseConfig({ supported: { esp: { auth: [{ id: 99 }] } } }), /no default entry/);
  assert.throws(() => parseConfig({ supported: { foo: {} } }), /unknown SA type/);
  assert.throws(() => parseConfig([]), /must be a JSON object/);
  assert.deepEqual(parseConfig({ debug: ['all'] }).debug.length, 12);
});

test('docs/klipsd.md: its example configuration is valid and shows every key', () => {
  const doc = fs.readFileSync(path.resolve(DIST, '../docs/klipsd.md'), 'utf8');
  const example = JSON.parse(/```json\n([\s\S]*?)```/.exec(doc)![1]) as Record<string, unknown>;
  assert.deepEqual(Object.keys(example).sort(), Object.keys(RELOAD).sort());
  const c = parseConfig(example, 'docs/klipsd.md');
  assert.deepEqual({ ...c, supported: undefined }, { ...DEFAULT_CONFIG, supported: undefined }, 'the example shows the defaults');
  assert.deepEqual(c.supported!.get(SADB_SATYPE_ESP)!.encrypt.map((a) => a.id), [SADB_X_EALG_AESCBC, 3, 20]);
  assert.equal(c.supported!.has(2), false, 'ah: null');
});
