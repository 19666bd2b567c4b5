/**
 * klipsd's life as a process under hostile surroundings: a log it cannot write (stderr
 * on a full disk, a pipe nobody drains) is dropped and counted while it keeps serving.
 * Also what needs klipsd in a process of its own to be seen: a client's rcvbuf charged
 * only with what the kernel has not taken, when klipsd was stopped (SIGSTOP) in between.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { AF_INET, ERRNO, SADB_ADD, SADB_REGISTER, SADB_SASTATE_MATURE, SADB_SATYPE_ESP, buildMessage } from '../src/wire/index.js';
import { infoPathFor } from '../src/daemon/paths.js';
import { LogSink } from '../src/daemon/log-sink.js';
import { DAEMON, DIST, RawClient, header, tempDir, waitUntil, within } from './cli-harness.js';
import { infoView, ready, spawnDaemon, stopWith, type Proc } from './daemon-child.js';

interface ServerCounters {
  framingErrors: number;
  logDropped: number;
  logLastError: string;
}

test('stderr on a full disk (/dev/full): every log line is dropped and counted, klipsd keeps serving and stops cleanly', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const full = fs.openSync('/dev/full', 'w');
  const p = spawnDaemon(['--socket', socket], { stderrFd: full });
  fs.closeSync(full);
  try {
    await ready(p, socket);
    // sadb_msg_len 0: unframeable, answered with EMSGSIZE, logged as a warning each time.
    const N = 60;
    const bad = Buffer.from('02090000000000000000000000000000', 'hex');
    for (let i = 0; i < N; i += 20) {
      const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.connect(socket)));
      for (const c of clients) c.write(bad);
      await waitUntil('the EMSGSIZE replies and closes', () => clients.every((c) => c.closed && c.messages.length === 1));
      for (const c of clients) assert.deepEqual([header(c.messages[0]).type, header(c.messages[0]).errno], [9, ERRNO.EMSGSIZE]);
    }
    const c = await RawClient.connect(socket);
    c.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 1, pid: 42 } });
    const reply = await c.waitFor('REGISTER reply', (m) => m.header.type === SADB_REGISTER && m.header.seq === 1);
    assert.equal(reply.header.errno, 0);
    c.close();
    const stats = (await infoView<{ server: ServerCounters }>(socket, 'stats')).server;
    // "klipsd listening" and one warning per unframeable message; nothing else at info.
    assert.deepEqual([stats.framingErrors, stats.logDropped, stats.logLastError], [N, N + 1, 'ENOSPC']);
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
    assert.equal(fs.existsSync(socket), false, 'socket file removed');
    assert.equal(fs.existsSync(infoPathFor(socket)), false, 'info socket file removed');
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('LogSink: lines a full pipe refuses are counted; once it drains, the first line written says how many were lost', () => {
  const dir = tempDir();
  const fifo = path.join(dir, 'log.fifo');
  execFileSync('mkfifo', [fifo]);
  const r = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const w = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  try {
    const sink = new LogSink(w, 'test');
    const line = `${JSON.stringify({ msg: 'x'.repeat(1000) })}\n`;
    let i = 0;
    while (sink.dropped === 0 && i++ < 1000) sink.write(line);
    assert.equal(sink.lastError, 'EAGAIN');
    const writtenWhenFull = sink.written;
    for (let k = 0; k < 4; k++) sink.write(line);
    assert.equal(sink.dropped, 5, 'the line that hit the full pipe and the 4 after it');
    // Drain the pipe; the next line is preceded by the notice.
    const buf = Buffer.alloc(1 << 20);
    let got = '';
    for (;;) {
      try {
        const n = fs.readSync(r, buf);
        if (n === 0) break;
        got += buf.toString('utf8', 0, n);
      } catch {
        break; // EAGAIN: empty
      }
    }
    sink.write('{"msg":"after"}\n');
    assert.equal(sink.written, writtenWhenFull + 1);
    const n = fs.readSync(r, buf);
    // Every line in the pipe is whole JSON, even if the refused line was cut short.
    const all = (got + buf.toString('utf8', 0, n)).split('\n').filter(Boolean);
    assert.ok(all.slice(0, -2).every((l) => l === line.trimEnd() || l.startsWith('{"msg":"xxx')), 'only whole lines or the one cut short');
    const lines = all.slice(-2).map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    assert.deepEqual([lines[0].msg, lines[0].lost, lines[0].lastError, lines[0].name, lines[0].level], ['log lines could not be written', 5, 'EAGAIN', 'test', 40]);
    assert.deepEqual(lines[1], { msg: 'after' });
  } finally {
    fs.closeSync(w);
    fs.closeSync(r);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('out of file descriptors (prlimit --nofile=48): klipsd says so at start, survives the connections the OS refuses, and serves again', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const p = spawnDaemon(['--socket', socket], { wrap: ['prlimit', '--nofile=48', '--'] });
  try {
    await ready(p, socket);
    await waitUntil('the warning', () => /"openFileLimit":48,"maxConnections":1024,.*"msg":"the open-file limit is below maxConnections/.test(p.stderr()));
    const many = await Promise.all(Array.from({ length: 80 }, () => RawClient.connect(socket).catch(() => undefined)));
    await waitUntil('the OS to close the connections over the limit', () => many.some((c) => c === undefined || c.closed));
    for (const c of many) c?.close();
    await waitUntil('klipsd to see them go', async () => (await infoView<{ server: { active: number } }>(socket, 'stats')).server.active === 0);
    const c = await RawClient.connect(socket);
    c.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 2, pid: 42 } });
    assert.equal((await c.waitFor('REGISTER reply', (m) => m.header.seq === 2)).header.errno, 0);
    c.close();
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Run klipsd in a private mount namespace (unshare: no effect outside it, nothing to
 * undo) where `dir` is a read-only tmpfs holding one directory, `existing`.
 */
function onReadOnlyFs(dir: string): string[] {
  const script = 'mount -t tmpfs -o size=64k none "$0" && mkdir "$0/existing" && mount -o remount,ro "$0" && exec "$@"';
  return ['unshare', '--map-root-user', '--mount', 'sh', '-c', script, dir];
}

test('on a read-only filesystem klipsd reports EROFS with the path, for a directory it must create and for the socket itself', async () => {
  const dir = tempDir();
  try {
    const cases: Array<[string, string]> = [
      [path.join(dir, 'run/klips/pfkey.sock'), `klipsd: cannot create ${path.join(dir, 'run')}: EROFS\n`],
      [path.join(dir, 'existing/pfkey.sock'), `klipsd: cannot listen on ${path.join(dir, 'existing/pfkey.sock')}: EROFS\n`],
    ];
    for (const [socket, want] of cases) {
      const p = spawnDaemon(['--socket', socket], { wrap: onReadOnlyFs(dir) });
      assert.equal(await within(10000, 'refusal', p.exited), 1, socket);
      assert.equal(p.stderr(), want);
    }
    // Where the kernel itself says ENOENT (procfs), that is what is reported, and promptly
    // (Node's recursive mkdir never returns there).
    const proc = spawnDaemon(['--socket', '/proc/klips-test/run/pfkey.sock']);
    assert.equal(await within(10000, 'refusal', proc.exited), 1);
    assert.equal(proc.stderr(), 'klipsd: cannot create /proc/klips-test: ENOENT\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM to `npm start` stops klipsd too (the start script execs node): no orphan, socket files removed', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  // npm's own CLI when the tests run under npm, else the npm on PATH; --ignore-scripts skips the prestart build.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  const child = spawn(npm[0], [...npm.slice(1), 'start', '--ignore-scripts'], {
    cwd: path.resolve(DIST, '..'), env: { ...process.env, KLIPS_SOCKET: socket }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  for (const s of [child.stdout!, child.stderr!]) s.setEncoding('utf8').on('data', (x: string) => { out += x; });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let pid = 0;
  try {
    await waitUntil('klipsd listening under npm', () => {
      const m = /"pid":(\d+)[^\n]*"msg":"klipsd listening"/.exec(out);
      if (m) pid = Number(m[1]);
      return pid > 0;
    }, 20000);
    assert.notEqual(pid, child.pid, 'klipsd is a child of npm');
    child.kill('SIGTERM');
    await within(10000, 'npm to exit', exited);
    await waitUntil('klipsd to be gone', () => !alive(pid), 5000);
    assert.match(out, /"signal":"SIGTERM","msg":"stopping"/);
    assert.equal(fs.existsSync(socket), false, 'socket file removed');
    assert.equal(fs.existsSync(infoPathFor(socket)), false, 'info socket file removed');
  } finally {
    child.kill('SIGKILL');
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The JSON log lines klipsd wrote whose msg matches (other lines, e.g. Node's own, are skipped). */
function logLines(p: Proc, msg: RegExp): Array<Record<string, unknown>> {
  return p.stderr().split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => msg.test(String(l.msg)));
}

test('SIGHUP reloads --config: log level, limits and debug flags at once, rcvbuf for new connections; what needs a restart is logged and kept; a bad file changes nothing', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const cfg = path.join(dir, 'klipsd.json');
  fs.writeFileSync(cfg, JSON.stringify({ logLevel: 'info', maxConnections: 8, larvalLifetime: 0 }));
  const p = spawnDaemon(['--socket', socket, '--config', cfg]);
  try {
    await ready(p, socket);
    fs.writeFileSync(cfg, JSON.stringify({ logLevel: 'debug', maxConnections: 2, rcvbuf: 65536, larvalLifetime: 30, debug: ['spi'] }));
    p.child.kill('SIGHUP');
    await waitUntil('the reload', () => logLines(p, /^configuration reloaded$/).length === 1);
    const [reloaded] = logLines(p, /^configuration reloaded$/);
    assert.deepEqual([reloaded.applied, reloaded.newConnections, reloaded.needRestart], [['maxConnections', 'logLevel', 'debug'], ['rcvbuf'], ['larvalLifetime']]);
    assert.deepEqual(logLines(p, /take effect only after a restart/)[0].keys, ['larvalLifetime']);
    // maxConnections 2: the third connection is refused with ENFILE.
    const a = await RawClient.connect(socket);
    const b = await RawClient.connect(socket);
    await waitUntil('the debug level: connections logged', () => logLines(p, /^connection opened$/).length === 2);
    const c = await RawClient.connect(socket);
    await waitUntil('the third to be refused', () => c.closed);
    assert.equal(header(c.messages[0]).errno, ERRNO.ENFILE);
    const debug = await infoView<Record<string, number>>(socket, 'klipsdebug');
    assert.equal(Object.entries(debug).filter(([, v]) => v !== 0).map(([k]) => k).join(), 'spi');
    // A bad file: logged, nothing changes.
    fs.writeFileSync(cfg, '{"maxConnections": "many"}');
    p.child.kill('SIGHUP');
    await waitUntil('the refusal', () => logLines(p, /^configuration not reloaded/).length === 1);
    assert.match(String(logLines(p, /^configuration not reloaded/)[0].error), /"maxConnections" must be an integer/);
    const d = await RawClient.connect(socket);
    await waitUntil('still two at most', () => d.closed);
    for (const x of [a, b]) x.close();
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Inodes of the listening TCP sockets on this host (/proc/net/tcp and tcp6, state 0A). */
function listeningTcpInodes(): Set<string> {
  const out = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const rows = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').slice(1) : [];
    for (const row of rows) {
      const col = row.trim().split(/\s+/);
      if (col[3] === '0A') out.add(col[9]);
    }
  }
  return out;
}

/** The TCP sockets process `pid` listens on. */
function listensOnTcp(pid: number): string[] {
  const listening = listeningTcpInodes();
  return fs.readdirSync(`/proc/${pid}/fd`)
    .map((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } })
    .map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1] ?? '')
    .filter((inode) => listening.has(inode));
}

test('SIGUSR1 does not open the Node inspector (no TCP listener, no "Debugger listening"); klipsd logs it and keeps serving', async () => {
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const p = spawnDaemon(['--socket', socket]);
  try {
    await ready(p, socket);
    p.child.kill('SIGUSR1');
    await waitUntil('klipsd to react', () => logLines(p, /^SIGUSR1 ignored/).length === 1 || /Debugger listening/.test(p.stderr()));
    assert.deepEqual(listensOnTcp(p.child.pid!), [], 'klipsd listens on no TCP port (the inspector would be 127.0.0.1:9229)');
    assert.doesNotMatch(p.stderr(), /Debugger listening/);
    assert.equal(logLines(p, /^SIGUSR1 ignored/).length, 1);
    const c = await RawClient.connect(socket);
    c.send({ header: { type: SADB_REGISTER, satype: SADB_SATYPE_ESP, seq: 3, pid: 42 } });
    assert.equal((await c.waitFor('REGISTER reply', (m) => m.header.seq === 3)).header.errno, 0);
    c.close();
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('klipsd --version prints the package version', () => {
  const version = (JSON.parse(fs.readFileSync(path.resolve(DIST, '../package.json'), 'utf8')) as { version: string }).version;
  assert.equal(execFileSync(process.execPath, [DAEMON, '--version'], { encoding: 'utf8' }), `${version}\n`);
});

test('rcvbuf charges only what the kernel has not taken: a client keeping its outstanding replies within rcvbuf loses none, even when klipsd reads its requests before its write finishes', async () => {
  // KLIPS drops a reply when the socket's queue is over rcvbuf. klipsd's queue includes
  // its write in flight: a write the kernel took in part must count only its part still
  // to go. Before, all of it counted until its last byte went, and a client that read the
  // part taken and sent as many requests lost replies it had room for. SIGSTOP makes the
  // order certain: klipsd, stopped with a write in flight, wakes to the new requests and
  // to room for its write at once, and libuv handles the requests first.
  const RCVBUF = 1 << 20;
  const dir = tempDir();
  const socket = path.join(dir, 'pfkey.sock');
  const config = path.join(dir, 'klipsd.json');
  fs.writeFileSync(config, JSON.stringify({ rcvbuf: RCVBUF }));
  const p = spawnDaemon(['--socket', socket, '--config', config, '--kame-socket', '']);
  const c = new net.Socket();
  try {
    await ready(p, socket);
    const v4 = (addr: string) => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr });
    let spi = 0x10000;
    const adds = (n: number) => Buffer.concat(Array.from({ length: n }, (_, i) => buildMessage({
      header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: i + 1, pid: 77 },
      sa: { spi: spi++, replay: 32, state: SADB_SASTATE_MATURE, auth: 3, encrypt: 12, flags: 0 },
      addressSrc: v4('192.0.2.1'), addressDst: v4('198.51.100.7'),
      keyAuth: { bits: 160, key: new Uint8Array(20).fill(0x11) }, keyEncrypt: { bits: 128, key: new Uint8Array(16).fill(0x5a) },
    })));
    // The reply to such an ADD is 104 bytes: K replies fit rcvbuf.
    const K = Math.floor(RCVBUF / 104);
    await new Promise<void>((resolve, reject) => { c.once('error', reject); c.connect(socket, resolve); });
    c.pause();
    // Replies counted whole (a message counts once its last byte is here), ENOBUFS notices apart.
    let got = 0;
    let notices = 0;
    let pending: Uint8Array = new Uint8Array(0);
    c.on('data', (d: Buffer) => {
      const b = pending.length ? Buffer.concat([pending, d]) : d;
      let o = 0;
      while (o + 8 <= b.length) {
        const len = b.readUInt16LE(o + 4) * 8;
        if (o + len > b.length) break;
        if (b[o + 1] === 0 && b[o + 2] === ERRNO.ENOBUFS) notices++;
        else got++;
        o += len;
      }
      pending = b.subarray(o);
    });
    // K requests, none read: the kernel's buffer fills, then klipsd's write is in flight and the rest queued.
    c.write(adds(K));
    await waitUntil('klipsd to handle the K ADDs', async () => (await infoView<{ server: { framesIn: number } }>(socket, 'stats')).server.framesIn === K, 20000);
    // One read's worth, so the write in flight is taken in part.
    c.resume();
    await within(5000, 'a first read', new Promise((r) => c.once('data', r)));
    c.pause();
    await new Promise((r) => setTimeout(r, 200));
    p.child.kill('SIGSTOP');
    try {
      // Everything the kernel holds, then as many requests as replies read: never more than K outstanding.
      c.resume();
      let last = -1;
      while (got !== last) { last = got; await new Promise((r) => setTimeout(r, 150)); }
      const read = got;
      assert.ok(read > 0 && read < K, `read ${read} of ${K} while klipsd was stopped`);
      c.write(adds(read));
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      p.child.kill('SIGCONT');
    }
    const sent = spi - 0x10000;
    // A drop shows as an ENOBUFS notice (and replies that never come): stop waiting at either.
    await waitUntil('a reply to every ADD, or a notice', () => got === sent || notices > 0, 20000).catch(() => undefined);
    assert.equal(notices, 0, 'no ENOBUFS notice');
    assert.equal(got, sent, 'a reply to every ADD');
    assert.equal(await stopWith(p, 'SIGTERM'), 0);
  } finally {
    c.destroy();
    p.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
