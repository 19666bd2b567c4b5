/**
 * klipsd under abuse, with a raw stream client of our own: unframeable headers,
 * headers KLIPS refuses before dispatch, clients that leave in the middle of a message,
 * clients that flood without reading, clients that never read while others broadcast or
 * while they DUMP (each within its rcvbuf, all within rcvbufTotal), refused headers
 * from a client that never reads, connections beyond maxConnections (ENFILE), messages
 * stalled half-way (EMSGSIZE after partialFrameTimeoutMs), and random bytes. Through all
 * of it a second client's requests keep succeeding, and nothing reaches it that was
 * meant for the abuser alone.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { pino } from 'pino';
import {
  ERRNO, IPPROTO_ESP, SADB_ADD, SADB_DUMP, SADB_FLUSH, SADB_SASTATE_MATURE, SADB_SATYPE_ESP, SADB_X_DEBUG,
  SADB_X_PROMISC, buildMessage, type MessageInput,
} from '../src/wire/index.js';
import { DEFAULT_CONFIG } from '../src/daemon/config.js';
import type { PfkeySocket } from '../src/socket/pfkey-socket.js';
import { RawClient, header, startDaemon, waitUntil, within, type Daemon } from './cli-harness.js';

let d: Daemon;
before(async () => {
  d = await startDaemon({ config: { ...DEFAULT_CONFIG, debug: [], rcvbuf: 16384, writeHighWater: 65536 } });
});
after(async () => d.stop());

const PID_B = 4242;
let seqB = 0;

function add(spi: number, seq: number, pid: number): MessageInput {
  return {
    header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq, pid },
    sa: { spi, replay: 0, state: SADB_SASTATE_MATURE, auth: 3, encrypt: 3, flags: 0 },
    addressSrc: { proto: 0, prefixlen: 0, family: 2, port: 0, addr: '192.0.2.1' },
    addressDst: { proto: 0, prefixlen: 0, family: 2, port: 0, addr: '192.0.2.2' },
    keyAuth: { bits: 160, key: new Uint8Array(20).fill(1) },
    keyEncrypt: { bits: 192, key: new Uint8Array(24).fill(2) },
  };
}

/** The well-behaved client: one X_DEBUG query (answered to the sender) must come back. */
async function bIsServed(b: RawClient, ms = 3000): Promise<number> {
  const seq = ++seqB;
  const t0 = Date.now();
  b.send({ header: { type: SADB_X_DEBUG, satype: 0, seq, pid: PID_B }, debug: { tunnel: 0, netlink: 0x80000000, xform: 0, eroute: 0, spi: 0, radij: 0, esp: 0, ah: 0, rcv: 0, pfkey: 0, ipcomp: 0, verbose: 0 } });
  await b.waitFor(`B's X_DEBUG reply seq ${seq}`, (m) => m.header.type === SADB_X_DEBUG && m.header.seq === seq && m.header.pid === PID_B, ms);
  return Date.now() - t0;
}

/** Messages B received that were not its own replies or broadcasts it should see. */
function foreignTo(b: RawClient, pid: number): Uint8Array[] {
  return b.messages.filter((m) => header(m).pid === pid);
}

test('an unframeable header (length 0, 1, or over 64 KiB) gets EMSGSIZE and a closed connection; B never notices', async () => {
  const b = await RawClient.connect(d.socket);
  await bIsServed(b);
  for (const [units, seq] of [[0, 101], [1, 102], [8193, 103], [0xffff, 104]]) {
    const a = await RawClient.connect(d.socket);
    const before = d.server.stats.framingErrors;
    a.send({ header: { type: SADB_FLUSH, satype: 0, seq: seq - 100, pid: 77 } });
    const bad = Buffer.from(buildMessage({ header: { type: SADB_FLUSH, satype: 3, seq, pid: 77 } }));
    bad.writeUInt16LE(units, 4);
    a.write(bad);
    a.write(buildMessage({ header: { type: SADB_FLUSH, satype: 0, seq: 999, pid: 77 } }));
    await waitUntil('the connection to close', () => a.closed);
    const hs = a.messages.map(header);
    assert.deepEqual(hs.map((h) => [h.type, h.errno, h.seq]), [[SADB_FLUSH, 0, seq - 100], [SADB_FLUSH, ERRNO.EMSGSIZE, seq]], `len ${units}`);
    assert.deepEqual([hs[1].satype, hs[1].pid, hs[1].len], [3, 77, 2], 'type, satype, seq and pid copied from the bad header');
    assert.equal(d.server.stats.framingErrors, before + 1);
    await bIsServed(b);
    assert.ok(!b.messages.some((m) => header(m).errno === ERRNO.EMSGSIZE), 'B saw no EMSGSIZE');
  }
  b.close();
});

test('a header KLIPS refuses before dispatch: an errno reply to that connection only, which stays open', async () => {
  const a = await RawClient.connect(d.socket);
  const b = await RawClient.connect(d.socket);
  const cases: Array<[string, (x: Buffer) => void]> = [
    ['version 3', (x) => { x[0] = 3; }],
    ['reserved set', (x) => { x.writeUInt16LE(1, 6); }],
    ['type 0', (x) => { x[1] = 0; }],
    ['type 99', (x) => { x[1] = 99; }],
  ];
  for (const [i, [what, spoil]] of cases.entries()) {
    const x = Buffer.from(buildMessage({ header: { type: SADB_FLUSH, satype: 0, seq: 200 + i, pid: 78 } }));
    spoil(x);
    a.write(x);
    await waitUntil(`A's reply to ${what}`, () => a.messages.some((m) => header(m).seq === 200 + i));
    const h = header(a.messages.find((m) => header(m).seq === 200 + i)!);
    assert.deepEqual([h.errno, h.pid, h.type], [ERRNO.EINVAL, 78, x[1]], what);
  }
  assert.equal(a.closed, false);
  a.send({ header: { type: SADB_X_PROMISC, satype: 0, seq: 300, pid: 78 } });
  await a.waitFor('A still served', (m) => m.header.seq === 300 && m.header.errno === 0);
  await bIsServed(b);
  assert.deepEqual(foreignTo(b, 78), [], 'B saw none of the header refusals');

  // A refusal after the header check is KLIPS's broadcast errno message: B sees it too.
  const noSa = Buffer.from(buildMessage(add(0x5555, 301, 78)));
  noSa.writeUInt16LE(0, 16 + 6); // corrupt: SA extension type 0
  a.write(noSa);
  await waitUntil('the broadcast errno', () => foreignTo(b, 78).some((m) => header(m).seq === 301));
  assert.equal(header(foreignTo(b, 78)[0]).errno, ERRNO.EINVAL);
  a.close();
  b.close();
});

test('a client that leaves in the middle of a message leaves no trace', async () => {
  const b = await RawClient.connect(d.socket);
  for (const cut of [5, 16, 40]) {
    const a = await RawClient.connect(d.socket);
    const before = d.server.stats.midMessageDisconnects;
    const whole = buildMessage(add(0x6000 + cut, 1, 79));
    a.write(whole.subarray(0, cut));
    await waitUntil('the server to hold the partial message', () => d.server.stats.bytesIn > 0);
    a.close();
    await waitUntil('the disconnect to be noticed', () => d.server.stats.midMessageDisconnects === before + 1);
    assert.equal(d.server.engine.sadb.get({ proto: IPPROTO_ESP, spi: 0x6000 + cut, dst: '192.0.2.2' }), undefined);
    await bIsServed(b);
  }
  const half = await RawClient.connect(d.socket);
  half.sock.end(buildMessage(add(0x6100, 1, 79)).subarray(0, 30));
  await waitUntil('half-close mid-message noticed', () => d.server.stats.midMessageDisconnects >= 4);
  // A whole request followed by a half-close is still answered, then the connection ends.
  const polite = await RawClient.connect(d.socket);
  polite.sock.end(buildMessage({ header: { type: SADB_X_PROMISC, satype: 0, seq: 5, pid: 79 } }));
  await polite.waitFor('the answer after a half-close', (m) => m.header.seq === 5 && m.header.pid === 79);
  await waitUntil('the half-closed connection to end', () => polite.closed);
  b.close();
  await waitUntil('no connection left behind', () => d.server.connectionCount() === 0 && d.server.engine.endpoints.size === 0);
});

test('a flood from a client that never reads: its own queue drops (counted), B keeps being served', async () => {
  const b = await RawClient.connect(d.socket);
  const f = await RawClient.connect(d.socket);
  f.sock.pause(); // never read
  const droppedBefore = d.server.engine.stats.dropped;
  const one = buildMessage({ header: { type: SADB_X_PROMISC, satype: 0, seq: 1, pid: 80 } });
  const burst = Buffer.concat(Array.from({ length: 4096 }, () => one));
  let written = 0;
  const flood = async () => {
    for (let i = 0; i < 60 && !f.closed; i++) {
      if (!f.sock.write(burst)) await new Promise((r) => f.sock.once('drain', r));
      written += 4096;
    }
  };
  const flooding = flood();
  const latencies: number[] = [];
  for (let i = 0; i < 30; i++) latencies.push(await bIsServed(b, 5000));
  await within(60000, 'the flood to be written', flooding);
  await waitUntil('the flood to be handled', () => d.server.stats.framesIn >= written, 30000);
  assert.ok(d.server.engine.stats.dropped > droppedBefore, 'replies to the flooder were dropped');
  for (let i = 0; i < 5; i++) latencies.push(await bIsServed(b, 5000));
  assert.ok(Math.max(...latencies) < 5000, `B's worst wait ${Math.max(...latencies)} ms`);
  assert.deepEqual(foreignTo(b, 80), [], 'B saw nothing of the flood');

  // When the flooder finally reads, the overflow is reported once in the stream.
  f.sock.resume();
  await waitUntil('the ENOBUFS notice', () => f.messages.some((m) => header(m).errno === ERRNO.ENOBUFS), 20000);
  const notices = f.messages.filter((m) => header(m).errno === ERRNO.ENOBUFS).map(header);
  assert.equal(notices[0].type, 0);
  assert.ok(notices[0].seq > 0, 'seq carries the number of messages dropped');
  f.close();
  b.close();
});

test('a client that never reads while others broadcast: only its own queue overflows', async () => {
  // The default PF_KEY queue, so that readers keep up with a pipelining client's bursts.
  const own = await startDaemon({ config: { ...DEFAULT_CONFIG, debug: [], writeHighWater: 65536 } });
  try {
    const n = await RawClient.connect(own.socket);
    n.sock.pause();
    const b = await RawClient.connect(own.socket);
    const c = await RawClient.connect(own.socket);
    // ADD replies go to every socket (as KLIPS): 8000 of them are ~700 KB for each listener,
    // more than the idle client's queue, connection buffer and kernel buffer together.
    const COUNT = 8000;
    c.write(Buffer.concat(Array.from({ length: COUNT }, (_, i) => buildMessage(add(0x10000 + i, i + 1, 81)))));
    await c.waitFor('the last ADD reply', (m) => m.header.type === SADB_ADD && m.header.seq === COUNT, 30000);
    assert.equal(c.messages.filter((m) => header(m).pid === 81 && header(m).errno === 0).length, COUNT, 'the sender lost none of its replies');
    await waitUntil('B got every broadcast', () => foreignTo(b, 81).length === COUNT, 30000);
    assert.ok(own.server.engine.stats.dropped > 0, 'the idle client lost messages');
    assert.equal(own.server.engine.sadb.size, COUNT);
    await bIsServed(b);
    n.sock.resume();
    await waitUntil('the idle client sees the ENOBUFS notice', () => n.messages.some((m) => header(m).errno === ERRNO.ENOBUFS), 10000);
    n.close();
    b.close();
    c.close();
  } finally {
    await own.stop();
  }
});

test('random bytes and random frames never stop klipsd', async () => {
  const b = await RawClient.connect(d.socket);
  const rnd = crypto.createHash('sha256');
  let seed = 0;
  const bytes = (n: number) => {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i += 32) {
      rnd.update(String(seed++));
      rnd.copy().digest().copy(out, i);
    }
    return out;
  };
  for (let i = 0; i < 20; i++) {
    const a = await RawClient.connect(d.socket);
    a.write(bytes(64 + i * 13));
    await waitUntil('the garbage to be dealt with', () => a.closed || a.messages.length > 0, 3000).catch(() => undefined);
    a.close();
  }
  // Framed messages with a valid header and random extensions, in one stream.
  const a = await RawClient.connect(d.socket);
  for (let i = 0; i < 500; i++) {
    const body = bytes(8 * (1 + (i % 12)));
    const h = Buffer.from(buildMessage({ header: { type: 1 + (i % 19), satype: i % 12, seq: i, pid: 82 } }));
    h.writeUInt16LE(2 + body.length / 8, 4);
    a.write(Buffer.concat([h, body]));
  }
  await waitUntil('the random frames to be handled', () => a.messages.filter((m) => header(m).pid === 82).length > 0, 5000);
  await bIsServed(b);
  assert.equal(d.server.stats.internalErrors, 0, 'no exception escaped the engine');
  a.close();
  b.close();
});

/** Poll until `value()` stops changing for a few looks (bounded): klipsd has done what it can. */
async function settled(what: string, value: () => string, ms = 20000): Promise<void> {
  let last = '';
  let same = 0;
  await waitUntil(what, () => {
    const v = value();
    same = v === last ? same + 1 : 0;
    last = v;
    return same >= 10;
  }, ms);
}

test('clients that never read: each holds at most its rcvbuf, klipsd at most its total, and a reading client is still served', async () => {
  // Total 256 KiB; reserve: 256 KiB / 16 is under the 64 KiB floor (the largest message), so 64 KiB.
  const config = { ...DEFAULT_CONFIG, debug: [], rcvbuf: 131072, writeHighWater: 16384, rcvbufTotal: 262144, maxConnections: 16 };
  const RESERVE = 65536;
  const own = await startDaemon({ config });
  try {
    const c = await RawClient.connect(own.socket);
    const SAS = 2000;
    c.write(Buffer.concat(Array.from({ length: SAS }, (_, i) => buildMessage(add(0x20000 + i, i + 1, 83)))));
    await c.waitFor('the last ADD reply', (m) => m.header.type === SADB_ADD && m.header.seq === SAS, 20000);
    // Eight clients ask for a DUMP (~550 KB each, more than their rcvbuf and the kernel's socket buffers) and never read.
    const idle = await Promise.all(Array.from({ length: 8 }, () => RawClient.connect(own.socket)));
    for (const [i, n] of idle.entries()) {
      n.sock.pause();
      n.send({ header: { type: SADB_DUMP, satype: SADB_SATYPE_ESP, seq: 1, pid: 900 + i } });
    }
    const budget = own.server.budget;
    const sockets = () => [...own.server.engine.endpoints] as PfkeySocket[];
    await settled('the DUMPs to stall', () => `${own.server.stats.bytesOut}/${budget.used}`);
    const held = sockets().map((s) => s.holding);
    assert.ok(held.every((h) => h <= config.rcvbuf), `each connection within its rcvbuf: ${held}`);
    assert.ok(budget.used <= config.rcvbufTotal + idle.length * RESERVE, `klipsd's total ${budget.used}`);
    assert.ok(budget.used > config.rcvbufTotal - 300, `the total was reached: ${budget.used}`);
    assert.equal(budget.used, held.reduce((a, b) => a + b, 0), 'the total is the sum of what the connections hold');

    // A reading client: its whole DUMP arrives (paced within its reserve, nothing dropped).
    const r = await RawClient.connect(own.socket);
    r.send({ header: { type: SADB_DUMP, satype: SADB_SATYPE_ESP, seq: 7, pid: 84 } });
    await r.waitFor('the last DUMP message', (m) => m.header.type === SADB_DUMP && m.header.seq === 0 && m.header.pid === 84, 20000);
    const dumped = r.messages.map(header).filter((h) => h.type === SADB_DUMP && h.pid === 84);
    assert.deepEqual(dumped.map((h) => h.seq), Array.from({ length: SAS }, (_, i) => SAS - 1 - i));

    // Broadcasts now: the idle clients lose them (over their rcvbuf or over the total), the readers do not.
    const droppedBefore = own.server.engine.stats.dropped;
    const perSocketBefore = sockets().reduce((a, s) => a + s.dropped, 0);
    const totalDropsBefore = budget.dropped;
    for (let i = 0; i < 10; i++) c.send(add(0x30000 + i, 1000 + i, 83));
    await c.waitFor('the last broadcast ADD', (m) => m.header.seq === 1009, 5000);
    await waitUntil('r to get every broadcast', () => r.messages.filter((m) => header(m).seq >= 1000 && header(m).pid === 83).length === 10);
    const lost = own.server.engine.stats.dropped - droppedBefore;
    assert.ok(lost > 0, 'the idle clients lost broadcasts');
    assert.equal(sockets().reduce((a, s) => a + s.dropped, 0) - perSocketBefore, lost, "every loss is some socket's");
    assert.ok(budget.dropped > totalDropsBefore, 'some were refused for the total alone');
    assert.ok(budget.used <= config.rcvbufTotal + idle.length * RESERVE);

    // When they read, each idle client that lost broadcasts gets the ENOBUFS notice, and one
    // that had room for them (what the kernel took of its DUMP is not klipsd's to hold) gets
    // all ten: nothing is lost unannounced. When all leave, nothing is held.
    for (const n of idle) n.sock.resume();
    const notified = (n: RawClient) => n.messages.some((m) => header(m).errno === ERRNO.ENOBUFS && header(m).type === 0);
    const allTen = (n: RawClient) => n.messages.filter((m) => header(m).seq >= 1000 && header(m).pid === 83).length === 10;
    await waitUntil('every idle client to see ENOBUFS or every broadcast', () => idle.every((n) => notified(n) || allTen(n)), 20000);
    assert.ok(idle.some(notified), 'the idle clients that lost broadcasts were told');
    for (const n of [...idle, r, c]) n.close();
    await waitUntil('every connection to go', () => own.server.connectionCount() === 0);
    assert.equal(budget.used, 0);
  } finally {
    await own.stop();
  }
});

test('a client that sends refused headers and never reads: its errno replies stay within its rcvbuf, and each is delivered or counted', async () => {
  const a = await RawClient.connect(d.socket);
  a.sock.pause();
  const N = 20000;
  const bad = Buffer.from(buildMessage({ header: { type: SADB_FLUSH, satype: 0, seq: 1, pid: 85 } }));
  bad[0] = 3; // version 3: EINVAL at the header, answered by klipsd itself
  const framesBefore = d.server.stats.framesIn;
  const droppedBefore = d.server.stats.repliesDropped;
  let written = 0;
  while (written < N) {
    const burst = Buffer.concat(Array.from({ length: 1000 }, () => bad));
    if (!a.sock.write(burst)) await new Promise((r) => a.sock.once('drain', r));
    written += 1000;
  }
  await waitUntil('klipsd to handle every frame', () => d.server.stats.framesIn - framesBefore === N, 20000);
  const sock = [...d.server.engine.endpoints].map((e) => e as PfkeySocket).find((s) => s.dropped > 0);
  assert.ok(sock, 'its socket dropped replies');
  assert.ok(sock.holding <= 16384 + 16, `held ${sock.holding}: its rcvbuf and one ENOBUFS notice at most`);
  const dropped = d.server.stats.repliesDropped - droppedBefore;
  a.sock.resume();
  await waitUntil('the ENOBUFS notice and every queued reply', () => {
    const hs = a.messages.map(header);
    return hs.some((h) => h.type === 0 && h.errno === ERRNO.ENOBUFS) && hs.filter((h) => h.errno === ERRNO.EINVAL).length + dropped === N;
  }, 20000);
  const notices = a.messages.map(header).filter((h) => h.type === 0).map((h) => h.seq);
  assert.equal(notices.at(-1), dropped, 'the last notice carries the number dropped in all');
  assert.ok(notices.every((n, i) => i === 0 || n > notices[i - 1]), `notices count up: ${notices}`);
  a.close();
});

test('beyond maxConnections: each connection gets a header-only ENFILE and is closed; counted; one log line per 10 s', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => { lines.push(s); } });
  const own = await startDaemon({ config: { ...DEFAULT_CONFIG, debug: [], maxConnections: 4 }, logger });
  try {
    const served = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(own.socket)));
    await waitUntil('four connections', () => own.server.connectionCount() === 4);
    const over = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(own.socket)));
    await waitUntil('the six over the limit to be closed', () => over.every((c) => c.closed), 5000);
    for (const c of over) {
      assert.equal(c.messages.length, 1);
      assert.equal(Buffer.from(c.messages[0]).toString('hex'), `0200${ERRNO.ENFILE.toString(16).padStart(2, '0')}00020000000000000000000000`);
    }
    assert.equal(own.server.stats.refusedConnections, 6);
    assert.equal(own.server.connectionCount(), 4);
    const refusals = lines.map((l) => JSON.parse(l)).filter((l) => /too many connections/.test(l.msg));
    assert.equal(refusals.length, 1, 'rate-limited to one line');
    assert.deepEqual([refusals[0].since, refusals[0].total, refusals[0].maxConnections], [1, 1, 4]);
    // The four are served throughout; when one leaves, a newcomer is accepted.
    await bIsServed(served[0]);
    served[3].close();
    await waitUntil('a free place', () => own.server.connectionCount() === 3);
    const late = await RawClient.connect(own.socket);
    await bIsServed(late);
    assert.equal(own.server.stats.refusedConnections, 6);
    for (const c of [...served, late]) c.close();
  } finally {
    await own.stop();
  }
});

test('a connection stalled mid-message is closed after partialFrameTimeoutMs with EMSGSIZE; idle ones at a boundary, and slow ones making progress, stay', async () => {
  const own = await startDaemon({ config: { ...DEFAULT_CONFIG, debug: [], partialFrameTimeoutMs: 300 } });
  try {
    const whole = buildMessage(add(0x7000, 31, 86));
    const short = await RawClient.connect(own.socket); // stops inside the header
    short.write(whole.subarray(0, 10));
    const long = await RawClient.connect(own.socket); // stops inside the body
    long.write(whole.subarray(0, 40));
    const idle = await RawClient.connect(own.socket); // one whole message, then silence
    await bIsServed(idle);
    const slow = await RawClient.connect(own.socket); // a byte every 100 ms: progress
    let sent = 0;
    const trickle = setInterval(() => { if (sent < 12) slow.write(whole.subarray(sent, ++sent)); }, 100);
    try {
      await waitUntil('the two stalled connections to be closed', () => short.closed && long.closed, 5000);
      assert.equal(own.server.stats.partialFrameTimeouts, 2);
      // The reply copies what the header had: short held 10 bytes (up to seq's low half; no pid), long the whole header.
      assert.deepEqual(short.messages.map(header).map((h) => [h.type, h.errno, h.satype, h.seq, h.pid, h.len]), [[SADB_ADD, ERRNO.EMSGSIZE, SADB_SATYPE_ESP, 31, 0, 2]]);
      assert.deepEqual(long.messages.map(header).map((h) => [h.type, h.errno, h.satype, h.seq, h.pid, h.len]), [[SADB_ADD, ERRNO.EMSGSIZE, SADB_SATYPE_ESP, 31, 86, 2]]);
      // Three timeouts' worth later: the idle and the slow connections are still open.
      await new Promise((r) => setTimeout(r, 900));
      assert.deepEqual([idle.closed, slow.closed, own.server.stats.partialFrameTimeouts], [false, false, 2]);
    } finally {
      clearInterval(trickle);
    }
    slow.write(whole.subarray(sent));
    await slow.waitFor('the slow ADD', (m) => m.header.type === SADB_ADD && m.header.seq === 31 && m.header.errno === 0);
    await bIsServed(idle);
    assert.equal(own.server.stats.midMessageDisconnects, 0, 'a timeout is not counted as a client leaving');
    assert.equal(own.server.engine.sadb.size, 1, 'only the completed ADD took effect');
    for (const c of [idle, slow]) c.close();
  } finally {
    await own.stop();
  }
});
