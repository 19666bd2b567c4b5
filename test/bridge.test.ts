/**
 * The bridge (`klips run`, bridge/klips-preload.c) against a real klipsd: programs that
 * open PF_KEY sockets as on a kernel, run unmodified under `klips run`.
 *
 * - Our own C client (test/bridge/pfkey-client.c, compiled here with cc): datagram
 *   reads, MSG_PEEK, MSG_TRUNC, poll/select, EAGAIN, SO_TYPE, dup/close (klipsd's stats
 *   view), fork, write()'s errno (EEXIST, ESRCH), a REGISTER's reply readable with
 *   poll(..., 0) when write() returns, a program that never reads (drops, one ENOBUFS
 *   notice), KLIPS's /proc files from klipsd's views, ENFILE at maxConnections, and
 *   `klips run` itself (exit status, signals, environment, --dialect).
 *   Skipped, with the reason printed, only where there is no C compiler.
 * - openswan's own spi, eroute and spigrp (built by scripts/build-clients.sh into
 *   $KLIPS_CLIENTS_DIR or /opt/klips-clients/bin): add, replace, delete, and EEXIST/ESRCH
 *   with a non-zero exit, as on KLIPS. Skipped, with the reason printed, where the
 *   binaries are absent.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, DIST, startDaemon, tempDir, waitUntil, within, type Daemon } from './cli-harness.js';
import { infoView } from './daemon-child.js';
import { Engine } from '../src/engine/engine.js';
import { renderView } from '../src/engine/views.js';
import { BRIDGE_LIBRARY, dialectFor } from '../src/cli/run.js';
import { PfkeySocket } from '../src/socket/pfkey-socket.js';
import { Carrier } from '../src/dataplane/carrier.js';
import { AF_INET, SADB_ADD, SADB_AALG_SHA1HMAC, SADB_DELETE, SADB_EALG_3DESCBC, SADB_SATYPE_ESP, buildMessage, type MessageInput } from '../src/wire/index.js';

const ROOT = path.resolve(DIST, '..');
const hasCc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).error === undefined;
const noCc = hasCc ? false : 'no C compiler (cc) on this machine: the bridge library and the test client cannot be built';
const CLIENTS = process.env.KLIPS_CLIENTS_DIR || '/opt/klips-clients/bin';
const OPENSWAN = ['spi', 'eroute', 'spigrp'].map((p) => path.join(CLIENTS, p));
const noOpenswan = hasCc
  ? (OPENSWAN.every((p) => fs.existsSync(p)) ? false : `openswan's spi/eroute/spigrp are not in ${CLIENTS} (build them with scripts/build-clients.sh, or set KLIPS_CLIENTS_DIR)`)
  : noCc;
if (noCc) console.log(`# bridge tests skipped: ${noCc}`);
else if (noOpenswan) console.log(`# openswan bridge tests skipped: ${noOpenswan}`);

let d: Daemon;
let dir: string;
let client: string;
/** The engine's clock, fixed so the views' times are the same in the program and here. */
const clock = { t: 1_000_000 };

before(async () => {
  if (noCc) return;
  if (!fs.existsSync(BRIDGE_LIBRARY)) {
    // `npm run build` builds it; a bare `tsc` does not.
    const b = spawnSync('sh', [path.join(ROOT, 'scripts/build-bridge.sh')], { encoding: 'utf8' });
    assert.equal(b.status, 0, `building the bridge library failed:\n${b.stdout}${b.stderr}`);
  }
  dir = tempDir('klips-bridge-');
  client = path.join(dir, 'pfkey-client');
  const cc = spawnSync('cc', ['-O2', '-pthread', '-Wall', '-Wextra', '-Werror', '-o', client, path.join(ROOT, 'test/bridge/pfkey-client.c')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, `compiling the test client failed:\n${cc.stderr}`);
  d = await startDaemon({ engine: new Engine({ clock: () => clock.t, localAddresses: () => [] }) });
});

after(async () => {
  await d?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** `klips run --socket S -- ARGS` (with `raw`, `klips run ARGS`); `answer` is called with each `wait STEP` line the program prints, and resumes it when it resolves. */
function run(args: string[], o: { socket?: string; raw?: boolean; answer?: (step: string) => Promise<void> } = {}): Promise<Ran> {
  const argv = o.raw ? ['run', ...args] : ['run', '--socket', o.socket ?? d.socket, '--', ...args];
  return within(30000, `klips ${argv.join(' ')}`, new Promise<Ran>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let seen = 0;
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      const waits = [...stdout.matchAll(/^wait (\S+)$/gm)];
      for (; seen < waits.length; seen++) {
        const step = waits[seen][1];
        (o.answer ?? (async () => {}))(step).then(() => child.stdin.write('\n'), (e) => { child.kill(); reject(e); });
      }
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code: code ?? 128, stdout, stderr: stderr + (signal ? `killed by ${signal}` : '') }));
  }));
}

/** The client's `name value` lines. */
async function check(args: string[], o: Parameters<typeof run>[1] = {}): Promise<string[]> {
  const r = await run([client, ...args], o);
  assert.equal(r.code, 0, `pfkey-client ${args.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
  assert.equal(r.stderr, '', 'the bridge prints nothing when all is well');
  return r.stdout.trimEnd().split('\n');
}

const spiView = () => renderView('spi', d.server.engine)!.text;
const v4 = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
const espAdd = (spi: number): MessageInput => ({
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: 1, pid: 1 },
  sa: { spi, replay: 0, state: 1, auth: SADB_AALG_SHA1HMAC, encrypt: SADB_EALG_3DESCBC, flags: 0 },
  addressSrc: v4('192.0.2.1'), addressDst: v4('192.0.2.2'),
  keyAuth: { bits: 160, key: new Uint8Array(20).fill(1) }, keyEncrypt: { bits: 192, key: new Uint8Array(24).fill(2) },
});

test('one message per read, MSG_PEEK then read gives the same bytes, a short buffer gives MSG_TRUNC and the real length', { skip: noCc }, async () => {
  assert.deepEqual(await check(['datagram']), [
    'read1 len=104 type=3 seq=1', // the first ADD's reply (SA, addresses, no keys: 104 bytes), alone
    'peek len=104 read2 len=104 type=3 seq=2 same=1',
    'queued-after 0',
    'trunc ret=128 flags-trunc=1 first-bytes=02070003', // REGISTER's reply is 128 bytes; 8 read, the rest discarded
    'queued-after-trunc 0',
    'register len=128 units=16',
  ]);
});

test('poll and select are readable exactly while a message is queued; a REGISTER reply is there when write() returns', { skip: noCc }, async () => {
  assert.deepEqual(await check(['poll']), [
    'idle poll=0',
    'idle select=0',
    'after-register poll0=1',
    'after-register select=1',
    'register-reply type=7 errno=0 seq=1 len=128',
    'drained poll=0',
    'register-loop ready=200 of 200',
  ]);
});

test('EAGAIN on an O_NONBLOCK socket with nothing queued (SOCK_NONBLOCK and fcntl)', { skip: noCc }, async () => {
  assert.deepEqual(await check(['nonblock']), ['nonblock read=-1 errno=EAGAIN', 'fcntl-nonblock recv=-1 errno=EAGAIN']);
});

test("getsockopt answers as af_key: SO_TYPE SOCK_RAW, SO_DOMAIN PF_KEY, SO_PROTOCOL PF_KEY_V2; socket()'s own refusals", { skip: noCc }, async () => {
  assert.deepEqual(await check(['sockopt']), [
    'SO_TYPE 3',
    'SO_DOMAIN 15',
    'SO_PROTOCOL 2',
    'SO_RCVBUF 212992',
    'SO_RCVBUF-after-set 131072', // doubled by the kernel, as for any socket
    'socket-dgram -1 ESOCKTNOSUPPORT',
    'socket-proto1 -1 EPROTONOSUPPORT',
  ]);
});

test("write() fails as KLIPS's sendmsg did: EEXIST for an existing SA's ADD, ESRCH for a missing SA's DELETE", { skip: noCc }, async () => {
  assert.deepEqual(await check(['errno']), [
    'add ret=144 errno=0',
    'add-again ret=-1 errno=EEXIST',
    'delete-missing ret=-1 errno=ESRCH',
    'delete ret=80 errno=0',
    'bad-version ret=-1 errno=EINVAL',
    'length-mismatch ret=-1 errno=EMSGSIZE',
    'short ret=-1 errno=EMSGSIZE',
    'replies 4', // ADD, EEXIST, ESRCH, DELETE: the header refusals queue nothing (as KLIPS)
  ]);
  assert.doesNotMatch(spiView(), /esp0x6001@/, 'the SA added was deleted');
});

test('dup and close: one klipsd connection for all the descriptors, closed with the last of them', { skip: noCc }, async () => {
  const stats = async () => (await infoView<{ server: { active: number; accepted: number } }>(d.socket, 'stats')).server;
  const before = (await stats()).accepted;
  const lines = await check(['dup'], {
    answer: async (step) => {
      if (step === 'open' || step === 'one-left') {
        const s = await stats();
        assert.deepEqual([s.active, s.accepted - before], [1, 1], `${step}: one connection for three descriptors`);
      } else {
        await waitUntil('klipsd to see the connection close', async () => (await stats()).active === 0);
      }
    },
  });
  assert.deepEqual(lines, [
    'wait open',
    'after-close-one type=7 seq=1 len=128',
    'after-close-two type=7 seq=2 len=128',
    'wait one-left',
    'wait closed',
  ]);
});

test('after fork() the child sends and receives on the inherited socket, and so does the parent after it', { skip: noCc }, async () => {
  assert.deepEqual(await check(['fork']), [
    'child add-reply type=3 errno=0 seq=10 len=104',
    'child add-again ret=-1 errno=EEXIST',
    'child exit=0',
    'parent poll0=1',
    'parent register-reply type=7 seq=20 len=128',
    'parent delete ret=80 errno=0',
  ]);
});

test('threads writing at once on one socket: each write() fails or succeeds with its own request\'s errno', { skip: noCc }, async () => {
  // 4 threads x 500 x (ADD, the same ADD again: EEXIST, DELETE); every reply read by a fifth thread.
  // A reader that falls behind (a busy machine) loses replies to the full queue; the ENOBUFS notice counts them.
  assert.deepEqual(await check(['threads']), ['threads writes=6000 wrong=0 replies+dropped=6000']);
});

test('a program that never reads: every write() succeeds, replies that do not fit are dropped, one ENOBUFS notice counts them', { skip: noCc }, async () => {
  assert.deepEqual(await check(['fill', '20000']), ['fill writes=20000 replies-read=some notices=1 dropped+read=20000']);
});

test("KLIPS's /proc files are klipsd's views; /proc/net/pfkey (af_key's) is absent; all gone when klipsd is", { skip: noCc }, async () => {
  // Something to show: an SA, added on a socket of klipsd's own engine.
  const e = d.server.engine;
  const local = new PfkeySocket(e);
  try {
    assert.equal(local.send(buildMessage(espAdd(0x4321))), 0);
    const spi = spiView();
    assert.match(spi, /^esp0x4321@192\.0\.2\.2 ESP_3DES_HMAC_SHA1: dir=out /m);
    assert.equal(`${(await check(['cat', '/proc/net/ipsec_spi'])).join('\n')}\n`, spi);
    assert.equal(`${(await check(['cat', '/proc/net/ipsec/spi/all'])).join('\n')}\n`, spi);
    for (const [file, view] of [
      ['/proc/net/ipsec/version', 'version'], ['/proc/net/ipsec_tncfg', 'tncfg'], ['/proc/net/ipsec/natt', 'natt'],
      ['/proc/net/ipsec_klipsdebug', 'klipsdebug'], ['/proc/net/ipsec/xforms', 'xforms'], ['/proc/net/pf_key_supported', 'supported'],
      ['/proc/net/ipsec/eroute/all', 'eroute'], ['/proc/net/ipsec/stats/trap_count', 'trap_count'],
    ]) {
      assert.equal((await run([client, 'cat', file])).stdout, renderView(view, e)!.text, file);
    }
    assert.deepEqual(await check(['stat', '/proc/net/ipsec/spi/all', '/proc/net/ipsec_version', '/proc/net/ipsec/spi', '/proc/net/pfkey']), [
      '/proc/net/ipsec/spi/all mode=100400 readable=1',
      '/proc/net/ipsec_version mode=100444 readable=1',
      '/proc/net/ipsec/spi mode=40555 readable=1',
      '/proc/net/pfkey errno=ENOENT',
    ]);
    // A shell's own cat reads them too (opened through libc, as by any program).
    const sh = await run(['sh', '-c', 'cat /proc/net/ipsec_spigrp; test -e /proc/net/pfkey || echo no-pfkey']);
    assert.equal(sh.stdout, `${renderView('spigrp', e)!.text}no-pfkey\n`);
  } finally {
    local.send(buildMessage({ ...espAdd(0x4321), header: { type: SADB_DELETE, satype: SADB_SATYPE_ESP, seq: 2, pid: 1 } }));
    local.close();
  }
  // No klipsd: no KLIPS, neither its socket nor its files.
  const gone = path.join(dir, 'none.sock');
  const r = await run([client, 'stat', '/proc/net/ipsec/spi/all'], { socket: gone });
  assert.equal(r.stdout, '/proc/net/ipsec/spi/all errno=ENOENT\n');
  const s = await run([client, 'sockopt'], { socket: gone });
  assert.equal(s.code, 2);
  assert.equal(s.stdout, 'error socket: No such file or directory\n');
  assert.equal(s.stderr, `klips-preload: socket(PF_KEY): cannot connect to klipsd at ${gone}: No such file or directory\n`);
});

test('klips run --dialect kame connects to the KAME socket beside the KLIPS one (<socket>.kame)', { skip: noCc }, async () => {
  const k = await run(['--dialect', 'kame', '--socket', d.socket, '--', client, 'sockopt'], { raw: true });
  if (fs.existsSync(`${d.socket}.kame`)) {
    assert.equal(k.code, 0, k.stderr); // klipsd serves the KAME dialect there
  } else {
    assert.equal(k.code, 2);
    assert.equal(k.stderr, `klips-preload: socket(PF_KEY): cannot connect to klipsd at ${d.socket}.kame: No such file or directory\n`);
  }
});

test('klips run: the command\'s exit status, 128 + a killing signal, 127 when it cannot start; SIGTERM passed on; its environment', { skip: noCc }, async () => {
  assert.equal((await run(['sh', '-c', 'exit 3'])).code, 3);
  assert.equal((await run(['sh', '-c', 'kill -KILL $$'])).code, 137);
  const missing = await run(['/nonexistent/program']);
  assert.deepEqual([missing.code, missing.stderr], [127, 'klips run: cannot run /nonexistent/program: ENOENT\n']);
  const env = await run(['sh', '-c', 'echo "$LD_PRELOAD|$KLIPS_SOCKET|$KLIPS_DIALECT"']);
  const preload = process.env.LD_PRELOAD ? `${BRIDGE_LIBRARY} ${process.env.LD_PRELOAD}` : BRIDGE_LIBRARY;
  assert.equal(env.stdout, `${preload}|${d.socket}|klips\n`);
  // In a process group of its own, so nothing it started can outlive the test.
  const child = spawn(process.execPath, [CLI, 'run', '--socket', d.socket, '--', 'sh', '-c', 'trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const code = await within(20000, 'SIGTERM through klips run', new Promise<number>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => { if (s.includes('ready')) child.kill('SIGTERM'); });
    child.on('exit', (c) => resolve(c ?? -1));
  })).finally(() => {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* the group is gone: nothing was left behind */ }
    child.stdout.destroy();
  });
  assert.equal(code, 7, 'the command got SIGTERM and exited 7; klips run exited with its status');
});

test('socket() fails with ENFILE when klipsd is at maxConnections', { skip: noCc }, async () => {
  const { DEFAULT_CONFIG } = await import('../src/daemon/config.js');
  const full = await startDaemon({ config: { ...DEFAULT_CONFIG, maxConnections: 1 } });
  const { RawClient } = await import('./cli-harness.js');
  const holder = await RawClient.connect(full.socket);
  try {
    await waitUntil('the one connection', () => full.server.connectionCount() === 1);
    const r = await run([client, 'sockopt'], { socket: full.socket });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, 'error socket: Too many open files in system\n');
    assert.equal(r.stderr, `klips-preload: socket(PF_KEY): klipsd at ${full.socket} is at its connection limit: Too many open files in system\n`);
  } finally {
    holder.close();
    await full.stop();
  }
});

// ---------- openswan's own tools ----------

const KEYS = ['--enckey', '0x0102030405060708090a0b0c0d0e0f101112131415161718', '--authkey', '0x0102030405060708090a0b0c0d0e0f10'];
const tool = (name: string) => path.join(CLIENTS, name);

test("openswan's spi: add, EEXIST on a second add (exit 1), delete, ESRCH on a second delete (exit 1)", { skip: noOpenswan }, async () => {
  const add = ['--said', 'esp.2001@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-md5-96', ...KEYS];
  const first = await run([tool('spi'), ...add]);
  assert.deepEqual([first.code, first.stdout, first.stderr], [0, '', '']);
  assert.match(spiView(), /^esp0x2001@192\.0\.2\.2 ESP_3DES_HMAC_MD5: dir=out src=192\.0\.2\.1 alen=128 aklen=128 eklen=192 /m);
  const again = await run([tool('spi'), ...add]);
  assert.deepEqual([again.code, again.stderr], [1, `${tool('spi')}: pfkey write failed (errno=17): SA already in use.  Delete old one first.\n`]);
  const listing = await run([tool('spi')]);
  assert.equal(listing.stdout, spiView(), 'spi with no arguments cats /proc/net/ipsec_spi');
  const del = await run([tool('spi'), '--said', 'esp.2001@192.0.2.2', '--del']);
  assert.deepEqual([del.code, del.stderr], [0, '']);
  assert.doesNotMatch(spiView(), /esp0x2001@/);
  const gone = await run([tool('spi'), '--said', 'esp.2001@192.0.2.2', '--del']);
  assert.deepEqual([gone.code, gone.stderr], [1, `${tool('spi')}: pfkey write failed (errno=3): SA does not exist.  Cannot delete.\n`]);
});

test("openswan's eroute: add, EEXIST on a second add (exit 1), --replace, delete, EFAULT on a second delete (KLIPS's radij answer; exit 1)", { skip: noOpenswan }, async () => {
  const sa = await run([tool('spi'), '--said', 'esp.2002@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-md5-96', ...KEYS]);
  assert.equal(sa.code, 0, sa.stderr);
  const flow = ['--eraf', 'inet', '--src', '10.1.0.0/24', '--dst', '10.2.0.0/24'];
  const eroutes = () => renderView('eroute', d.server.engine)!.text;
  const add = await run([tool('eroute'), '--add', ...flow, '--said', 'esp.2002@192.0.2.2']);
  assert.deepEqual([add.code, add.stderr], [0, '']);
  assert.equal(eroutes(), '0          10.1.0.0/24        -> 10.2.0.0/24        => esp0x2002@192.0.2.2\n');
  const again = await run([tool('eroute'), '--add', ...flow, '--said', 'esp.2002@192.0.2.2']);
  assert.deepEqual([again.code, again.stderr], [1, `${tool('eroute')}: pfkey write failed, returning -1 with errno=17.\neroute already in use.  Delete old one first.\n`]);
  const replace = await run([tool('eroute'), '--replace', ...flow, '--said', '%pass']);
  assert.deepEqual([replace.code, replace.stderr], [0, '']);
  assert.equal(eroutes(), '0          10.1.0.0/24        -> 10.2.0.0/24        => %pass\n');
  const listing = await run([tool('eroute')]);
  assert.equal(listing.stdout, eroutes(), 'eroute with no arguments cats /proc/net/ipsec_eroute');
  const del = await run([tool('eroute'), '--del', ...flow]);
  assert.deepEqual([del.code, del.stderr], [0, '']);
  assert.equal(eroutes(), '');
  const gone = await run([tool('eroute'), '--del', ...flow]);
  assert.deepEqual([gone.code, gone.stderr], [1, `${tool('eroute')}: pfkey write failed, returning -1 with errno=14.\nAddress not found.\n`]);
  assert.equal((await run([tool('spi'), '--said', 'esp.2002@192.0.2.2', '--del'])).code, 0);
});

test("openswan's spigrp: group two SAs, ENOENT for a missing one (exit 1)", { skip: noOpenswan }, async () => {
  for (const args of [
    ['--said', 'tun.2003@192.0.2.2', '--src', '192.0.2.1', '--dst', '192.0.2.2', '--ip4'],
    ['--said', 'esp.2003@192.0.2.2', '--src', '192.0.2.1', '--esp', '3des-md5-96', ...KEYS],
  ]) {
    const r = await run([tool('spi'), ...args]);
    assert.equal(r.code, 0, r.stderr);
  }
  const grp = await run([tool('spigrp'), 'inet', '192.0.2.2', '0x2003', 'tun', 'inet', '192.0.2.2', '0x2003', 'esp']);
  assert.deepEqual([grp.code, grp.stderr], [0, '']);
  const groups = renderView('spigrp', d.server.engine)!.text;
  assert.match(groups, /^tun0x2003@192\.0\.2\.2 esp0x2003@192\.0\.2\.2 $/m);
  const listing = await run([tool('spigrp')]);
  assert.equal(listing.stdout, groups, 'spigrp with no arguments cats /proc/net/ipsec_spigrp');
  const missing = await run([tool('spigrp'), 'inet', '192.0.2.2', '0x2004', 'tun', 'inet', '192.0.2.2', '0x2003', 'esp']);
  const failed = `${tool('spigrp')}: pfkey write failed, returning -1 with errno=2.\n`;
  assert.deepEqual([missing.code, missing.stderr], [1, `${failed}${failed}device does not exist.  See FreeS/WAN installation procedure.\n`], 'spigrp prints its first line twice');
  assert.equal((await run([tool('spi'), '--said', 'tun.2003@192.0.2.2', '--del'])).code, 0, 'DELETE removes the whole group');
  assert.doesNotMatch(spiView(), /0x2003@/);
});

for (const addr of [undefined, '127.0.0.1']) test(`an IKE daemon binding the NAT-T port${addr ? ` on one address (${addr}, as pluto binds)` : ''} joins klipsd's carrier and gets the IKE, klipsd keeps the ESP`, { skip: noCc }, async () => {
  const port = 30000 + (process.pid % 20000) + (addr ? 1 : 0);
  const carrier = new Carrier({ family: AF_INET, encap: 'udp', port, batch: 8, slotBytes: 2048, socketBuffer: 0 });
  const saved = process.env.KLIPS_NATT_PORT;
  process.env.KLIPS_NATT_PORT = String(port);
  try {
    const send = async (b: Buffer) => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((res, rej) => s.send(b, port, '127.0.0.1', (e) => (e ? rej(e) : res())));
      s.close();
    };
    const ike = (tag: number) => Buffer.from([0, 0, 0, 0, tag, 0, 0, 0]);
    const esp = (tag: number) => Buffer.from([0, 0, 0x10, 1, tag, 0, 0, 1]);
    const lines = await check(['natt', String(port), ...(addr ? [addr] : [])], {
      answer: async () => {
        for (const b of [ike(1), esp(2), ike(3), esp(4), ike(255)]) await send(b);
      },
    });
    assert.deepEqual(lines, ['wait bound', 'got 1', 'got 3', 'got 255'], 'the daemon sees the IKE alone');
    const mine: number[] = [];
    for (let n = carrier.receive(); n > 0; n = carrier.receive()) for (let i = 0; i < n; i++) mine.push(carrier.datagram(i).packet[28 + 4]);
    assert.deepEqual(mine, [2, 4], 'klipsd\'s carrier keeps the ESP');
    // Without the bridge the same bind is refused: the port is klipsd's.
    const plain = spawnSync(client, ['natt', String(port), ...(addr ? [addr] : [])], { encoding: 'utf8', input: '\n' });
    assert.equal(plain.stdout.trim(), 'bind errno=98');
  } finally {
    if (saved === undefined) delete process.env.KLIPS_NATT_PORT;
    else process.env.KLIPS_NATT_PORT = saved;
    carrier.close();
  }
});

test('socket bypass policies (IP_IPSEC_POLICY, IPV6_IPSEC_POLICY of type BYPASS, as charon sets on its IKE sockets) are accepted by the bridge; any other request gets the kernel\'s answer', { skip: noCc }, async () => {
  const lines = await check(['bypass']);
  const plain = spawnSync(client, ['bypass'], { encoding: 'utf8' });
  assert.equal(plain.status, 0, plain.stderr);
  const kernel = plain.stdout.trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, 4), ['ip4-bypass-in 0', 'ip4-bypass-out 0', 'ip6-bypass-in 0', 'ip6-bypass-out 0']);
  assert.deepEqual(lines.slice(4), kernel.slice(4), 'the kernel answers what the bridge does not take');
  assert.deepEqual(lines.slice(4).map((l) => l.split(' ')[0]), ['ip6-socket-ip4-option', 'ip4-discard', 'ip4-ipsec', 'ip4-bypass-dir0', 'ip4-bypass-short']);
});

test('klips run picks the dialect by the program\'s name when --dialect is not given', () => {
  assert.equal(dialectFor('/opt/klips-clients/bin/setkey'), 'kame');
  assert.equal(dialectFor('charon'), 'kame');
  assert.equal(dialectFor('/usr/sbin/racoon'), 'kame');
  assert.equal(dialectFor('/opt/klips-clients/bin/pluto'), 'klips');
  assert.equal(dialectFor('spi'), 'klips');
  assert.equal(dialectFor('/usr/bin/setkey-wrapper'), 'klips', 'the whole name, not a prefix');
});
