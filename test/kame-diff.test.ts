/**
 * The differential check's own machinery (issue 13), on the captured data itself:
 * suite.json is exactly what scripts/kame-suite.ts writes; linux.json answers every step
 * and names its kernel; Linux compared with Linux is equal on every step; a mutated byte
 * is reported at the field it lies in; each mask hides exactly what it should (and no
 * more); a send() failure is equal to klipsd's stream refusal; and the stream replay
 * (scripts/kame-compare.ts) judges a server answering exactly as Linux did equal, step by
 * step, and a server that departs from it different, at the right step.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { buildSuite } from '../scripts/kame-suite.js';
import { compareRuns, fillRequest, streamRefusal, type Run, type StepResult, type Suite } from '../scripts/kame-diff.js';
import { FIXTURES, ROOT, readJson, replayStream } from '../scripts/kame-compare.js';
import { tempDir } from './cli-harness.js';

const SUITE_FILE = path.join(FIXTURES, 'suite.json');
const LINUX_FILE = path.join(FIXTURES, 'linux.json');
const suite = (): Suite => readJson<Suite>(SUITE_FILE);
const linux = (): Run => readJson<Run>(LINUX_FILE);
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const step = (run: Run, name: string): StepResult => {
  const r = run.steps.find((s) => s.name === name);
  assert.ok(r, `no step ${name}`);
  return r;
};

/** Byte offset of the first extension of `type` in a message (hex). */
function extAt(h: string, type: number): number {
  const b = Buffer.from(h, 'hex');
  for (let off = 16; off < b.length; off += b.readUInt16LE(off) * 8) if (b.readUInt16LE(off + 2) === type) return off;
  throw new Error(`no extension ${type}`);
}

/** Change byte `at` of message `i` of `socket` in step `name` (xor with `x`). */
function poke(run: Run, name: string, socket: number, i: number, at: number, x = 0x01): void {
  const list = step(run, name).received[String(socket)];
  const b = Buffer.from(list[i], 'hex');
  b[at] ^= x;
  list[i] = b.toString('hex');
}

function compare(a: Run, b: Run) {
  return compareRuns(suite(), { label: 'linux', run: a }, { label: 'other', run: b });
}
function unequal(a: Run, b: Run): Record<string, string[]> {
  return Object.fromEntries(compare(a, b).filter((r) => !r.equal).map((r) => [r.name, r.differences]));
}

/** What a perfect KAME socket gives over a stream: Linux's messages, a failed send() as its refusal message (EMSGSIZE also closes). */
function asStream(run: Run, s: Suite): Run {
  const out = clone(run);
  out.transport = 'stream';
  for (const r of out.steps) {
    const st = s.steps.find((x) => x.name === r.name)!;
    if (r.send && r.send[1] !== 0 && r.request) {
      const k = String(st.socket);
      r.received[k] = [streamRefusal(r.request, r.send[1]), ...(r.received[k] ?? [])];
      if (r.send[1] === 90) r.closed = [st.socket!];
    }
    delete r.send;
  }
  return out;
}

test('suite.json is exactly what scripts/kame-suite.ts builds: 144 steps, 127 requests, every group of the issue', () => {
  const text = fs.readFileSync(SUITE_FILE, 'utf8');
  assert.equal(text, `${JSON.stringify(buildSuite(), null, 2)}\n`, 'regenerate: node dist/scripts/kame-suite.js > test/fixtures/linux-af_key-suite/suite.json');
  const s = suite();
  assert.equal(s.steps.length, 144);
  assert.equal(s.steps.filter((x) => x.request !== undefined).length, 127);
  assert.deepEqual([...new Set(s.steps.map((x) => x.group))], ['setup', 'register', 'sa', 'expire', 'promisc', 'spd', 'bad', 'acquire']);
  for (const x of s.steps) {
    if (x.socket !== undefined) assert.ok(x.socket >= 0 && x.socket <= 4, `${x.name}: socket ${x.socket}`);
  }
});

test('linux.json: one result per suite step in order, its kernel and date, the suite it ran, ACQUIRE from the 07_acquire capture', () => {
  const s = suite();
  const l = linux();
  assert.equal(l.transport, 'datagram');
  assert.match(l.kernel, /^Linux 6\.1\.\d+-\d+-amd64$/);
  assert.match(String(l.captured), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(l.suite_sha256, createHash('sha256').update(fs.readFileSync(SUITE_FILE)).digest('hex'), 'linux.json was captured from this suite.json');
  assert.deepEqual(l.steps.map((r) => r.name), s.steps.map((x) => x.name));
  const cap = readJson<{ steps: Array<{ step: number; request?: string }> }>(path.join(ROOT, 'test/vectors/linux-af_key/07_acquire.json'));
  for (const x of s.steps.filter((y) => y.capture)) {
    const r = step(l, x.name);
    assert.match(r.source ?? '', /^test\/vectors\/linux-af_key\/07_acquire\.json step \d+ \(kernel 6\.1\.0-56-amd64\)$/);
    if (x.request) assert.equal(x.request, cap.steps.find((c) => c.step === x.capture!.step)!.request, `${x.name}: the captured request`);
  }
  // A few facts the rest of the suite leans on.
  assert.deepEqual(step(l, 'bad_version').send, [-1, 22]);
  assert.deepEqual(step(l, 'bad_len_long').send, [-1, 90]);
  const acq = step(l, 'acquire_traffic').received;
  assert.deepEqual(Object.keys(acq), ['1', '2'], 'ACQUIRE to the two registered sockets');
  assert.equal(Buffer.from(acq['1'][0], 'hex')[1], 6);
});

test('placeholders: kame-diff fills {{spi:…}} and {{policy:…}} to the very bytes the capture script sent', () => {
  const s = suite();
  const l = linux();
  const results = new Map(l.steps.map((r) => [r.name, r]));
  let n = 0;
  for (const x of s.steps) {
    if (!x.request?.includes('{{')) continue;
    const { hex, unresolved } = fillRequest(x.request, s.steps, results);
    assert.deepEqual(unresolved, [], x.name);
    assert.equal(hex, step(l, x.name).request, x.name);
    n++;
  }
  assert.equal(n, 4);
  // An unresolvable placeholder is named and written as zeros.
  const r = fillRequest('0000{{spi:no_such_step}}', s.steps, results);
  assert.deepEqual(r, { hex: '000000000000', unresolved: ['{{spi:no_such_step}}'] });
});

test('Linux against Linux: every step equal', () => {
  const reports = compare(linux(), linux());
  assert.equal(reports.length, 144);
  assert.deepEqual(reports.filter((r) => !r.equal).map((r) => r.name), []);
});

test('a mutated byte is reported at its field, in its step, socket and message only', () => {
  const l = linux();
  const m = clone(l);
  const upd = step(m, 'update_larval').received['1'][0];
  poke(m, 'update_larval', 1, 0, extAt(upd, 9) + 8); // first key byte of KEY_ENCRYPT
  poke(m, 'get_ah', 0, 0, extAt(step(m, 'get_ah').received['0'][0], 1) + 10, 0x07); // SA auth 3 -> 4
  poke(m, 'spddump', 0, 0, extAt(step(m, 'spddump').received['0'][0], 18) + 6, 0x01); // a dump entry's policy dir
  poke(m, 'register_ah', 2, 0, 3, 0x01); // header: satype 2 -> 3
  const d = unequal(l, m);
  assert.deepEqual(Object.keys(d), ['register_ah', 'update_larval', 'get_ah', 'spddump']);
  assert.deepEqual(d.update_larval, ['socket 1 message 1 (UPDATE): KEY_ENCRYPT.key: linux 000102030405060708090a0b0c0d0e0f, other 010102030405060708090a0b0c0d0e0f']);
  assert.deepEqual(d.get_ah, ['socket 0 message 1 (GET): SA.auth: linux 3, other 4']);
  assert.equal(d.register_ah.length, 1);
  assert.equal(d.register_ah[0], 'socket 2 message 1 (REGISTER): sadb_msg_satype: linux 2, other 3');
  assert.equal(d.spddump.length, 1);
  assert.match(d.spddump[0], /^socket 0: DUMP entry: X_POLICY\.dir: linux \d, other \d$/);
});

test('masks: clock readings, originated seq/pid, X_SPD reserved and extension order are not differences; the same fields elsewhere are', () => {
  const l = linux();
  const m = clone(l);
  const get = step(m, 'get_updated').received['0'][0];
  poke(m, 'get_updated', 0, 0, extAt(get, 2) + 16, 0xff); // LIFETIME_CURRENT addtime
  poke(m, 'get_updated', 0, 0, extAt(get, 2) + 24, 0x01); // LIFETIME_CURRENT usetime
  poke(m, 'acquire_traffic', 1, 0, 8, 0x10); // ACQUIRE seq
  poke(m, 'expire_wait', 1, 1, 12, 0x20); // EXPIRE pid
  poke(m, 'spdadd_in_tunnel', 0, 0, 6, 0x04); // X_SPDADD sadb_msg_reserved (Linux: the refcount)
  assert.deepEqual(unequal(l, m), {});
  // The same fields where they are fixed: LIFETIME_CURRENT bytes, a reply's seq, reserved of an SA message.
  poke(m, 'get_updated', 0, 0, extAt(get, 2) + 8, 0x01);
  poke(m, 'get_ah', 0, 0, 8, 0x01);
  poke(m, 'update_larval', 2, 0, 6, 0x01);
  assert.deepEqual(unequal(l, m), {
    update_larval: ['socket 2 message 1 (UPDATE): sadb_msg_reserved: linux 0, other 1'],
    get_updated: ['socket 0 message 1 (GET): LIFETIME_CURRENT.bytes: linux 0, other 1'],
    get_ah: [`socket 0 message 1 (GET): sadb_msg_seq: linux ${Buffer.from(step(l, 'get_ah').received['0'][0], 'hex').readUInt32LE(8)}, other ${Buffer.from(step(m, 'get_ah').received['0'][0], 'hex').readUInt32LE(8)}`],
  });
  // Extensions in another order: equal.
  const o = clone(l);
  const r = step(o, 'get_esp_sha256').received;
  const b = Buffer.from(r['0'][0], 'hex');
  const exts: Buffer[] = [];
  for (let off = 16; off < b.length; off += b.readUInt16LE(off) * 8) exts.push(b.subarray(off, off + b.readUInt16LE(off) * 8));
  r['0'][0] = Buffer.concat([b.subarray(0, 16), ...exts.reverse()]).toString('hex');
  assert.deepEqual(unequal(l, o), {});
});

test('masks: a GETSPI SPI is anything inside the range, named by its step; a policy id by order of appearance', () => {
  const l = linux();
  const spi = Buffer.from(step(l, 'getspi_range').received['0'][0], 'hex').subarray(extAt(step(l, 'getspi_range').received['0'][0], 1) + 4).subarray(0, 4).toString('hex');
  const swap = (run: Run, names: (n: string) => boolean, from: string, to: string) => {
    for (const r of run.steps.filter((x) => names(x.name))) {
      for (const k of Object.keys(r.received)) r.received[k] = r.received[k].map((h) => h.split(from).join(to));
      if (r.request) r.request = r.request.split(from).join(to);
    }
  };
  const sa = new Set(suite().steps.filter((x) => x.group === 'sa').map((x) => x.name));
  const inRange = clone(l);
  swap(inRange, (n) => sa.has(n), spi, spi === '00001abc' ? '00001abd' : '00001abc');
  assert.deepEqual(unequal(l, inRange), {});
  const outside = clone(l);
  swap(outside, (n) => sa.has(n), spi, '00002abc');
  assert.deepEqual(unequal(l, outside), { getspi_range: ['other chose SPI 0x2abc outside 0x1000-0x1fff'] });
  // Policy ids: the out policy's id replaced everywhere in the spd group by another value.
  const add = step(l, 'spdadd_out_tunnel').received['0'][0];
  const id = add.slice((extAt(add, 18) + 8) * 2, (extAt(add, 18) + 12) * 2);
  const spd = new Set(suite().steps.filter((x) => x.group === 'spd').map((x) => x.name));
  const other = clone(l);
  swap(other, (n) => spd.has(n), `${id}00000080`, '7777000000000080'); // in replies: the id, then setkey's priority 0x80000000
  const get = step(other, 'spdget_out');
  const at = (extAt(get.request!, 18) + 8) * 2; // X_SPDGET's request: the id
  assert.equal(get.request!.slice(at, at + 8), id);
  get.request = `${get.request!.slice(0, at)}77770000${get.request!.slice(at + 8)}`;
  assert.notDeepEqual(other, l);
  assert.deepEqual(unequal(l, other), {});
});

test('DUMP: entries in another order are equal; the i-th seq, a missing entry and a missing message are not', () => {
  const l = linux();
  const m = clone(l);
  const list = step(m, 'dump_all').received['0'];
  const seqs = list.map((h) => h.slice(16, 24));
  list.reverse();
  for (let i = 0; i < list.length; i++) list[i] = list[i].slice(0, 16) + seqs[i] + list[i].slice(24);
  assert.deepEqual(unequal(l, m), {});
  const n = clone(m);
  const last = step(n, 'dump_all').received['0'];
  last[last.length - 1] = `${last[last.length - 1].slice(0, 16)}01000000${last[last.length - 1].slice(24)}`;
  assert.match(unequal(l, n).dump_all[0], /^socket 0: DUMP seq numbering: linux \[1,2,3,4,5,6,7,8,9,10,0\], other \[1,2,3,4,5,6,7,8,9,10,1\]$/);
  const g = clone(l);
  step(g, 'dump_esp').received['0'].splice(2, 1);
  step(g, 'promisc_get').received['3'].pop();
  const d = unequal(l, g);
  assert.deepEqual(Object.keys(d), ['dump_esp', 'promisc_get']);
  assert.match(d.dump_esp.join('\n'), /DUMP seq numbering/);
  assert.match(d.dump_esp.join('\n'), /DUMP entry only linux sent: \{"spi":/);
  assert.deepEqual(d.promisc_get, ['socket 3 message 2: only linux sent GET']);
});

test('stream view: a failed send() equals klipsd\'s header-only refusal to the sender (EMSGSIZE also closing it); anything else is a difference', () => {
  const s = suite();
  const l = linux();
  const st = asStream(l, s);
  assert.deepEqual(compare(l, st).filter((r) => !r.equal).map((r) => r.name), []);
  assert.equal(streamRefusal('01050003020000000700000092100000', 22), '02051603020000000700000092100000', 'version 2, errno set, len 2, seq and pid kept');
  const m = clone(st);
  step(m, 'bad_version').received['0'][0] = streamRefusal(step(l, 'bad_version').request!, 95);
  step(m, 'bad_type25').received['1'] = [step(m, 'bad_type25').received['0'][0]];
  step(m, 'get_ah').closed = [0];
  delete step(m, 'bad_len_long').closed;
  assert.deepEqual(unequal(l, m), {
    get_ah: ['other closed socket 0'],
    bad_version: ['socket 0 message 1 (GET errno EINVAL): sadb_msg_errno: linux 22, other 95'],
    bad_type25: ['socket 1 message 1: only other sent type 25 errno EINVAL'],
  });
});

test('scripts/kame-compare.js --against: a markdown report, exit 0 when equal and 1 when not', () => {
  const script = path.join(ROOT, 'dist/scripts/kame-compare.js');
  const out = execFileSync(process.execPath, [script, '--against', LINUX_FILE], { encoding: 'utf8' });
  assert.match(out, /^## Linux 6\.1\.\S+ against Linux 6\.1\.\S+ \(captured .+\)\n\n144 of 144 steps equal\.\n/);
  assert.match(out, /\n\| `register_esp` \| register \| equal \|\n/);
  const dir = tempDir();
  try {
    const m = clone(linux());
    poke(m, 'get_ah', 0, 0, 2, 0x03);
    fs.writeFileSync(path.join(dir, 'm.json'), JSON.stringify(m));
    let code = 0;
    let text = '';
    try {
      execFileSync(process.execPath, [script, '--against', path.join(dir, 'm.json')], { encoding: 'utf8' });
    } catch (e) {
      code = (e as { status: number }).status;
      text = (e as { stdout: string }).stdout;
    }
    assert.equal(code, 1);
    assert.match(text, /143 of 144 steps equal\./);
    assert.match(text, /\| `get_ah` \| sa \| socket 0 message 1 \(GET\): sadb_msg_errno: linux 0, other 3 \|/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A stand-in KAME socket that answers exactly as Linux did (linux.json, in the stream
 * view): connections take suite socket ids in the order the suite opens them; a request
 * is recognised by its bytes; a wait step's messages come 200 ms after the step before
 * it; a trace on the view channel answers a traffic step. `depart` rewrites one step's
 * answer, to see the replay notice.
 */
async function standIn(s: Suite, run: Run, depart: (name: string, msgs: Record<string, string[]>) => void = () => {}) {
  const dir = tempDir('kame-standin-');
  const sock = path.join(dir, 'pfkey.sock.kame');
  const info = path.join(dir, 'pfkey.sock.info');
  const conns = new Map<number, net.Socket>();
  const openOrder = s.steps.flatMap((x) => x.open ?? []);
  let accepted = 0;
  let next = 0; // the next suite step not yet answered
  const deliver = (name: string) => {
    const r = run.steps.find((x) => x.name === name)!;
    const msgs = clone(r.received);
    depart(name, msgs);
    for (const [k, list] of Object.entries(msgs)) for (const h of list) conns.get(Number(k))?.write(Buffer.from(h, 'hex'));
    for (const id of r.closed ?? []) conns.get(id)?.end();
  };
  /** Answer steps up to and including `i`; wait steps after it are timed. */
  const answer = (i: number) => {
    deliver(s.steps[i].name);
    next = i + 1;
    for (let j = next; j < s.steps.length && s.steps[j].wait !== undefined; j++) {
      const name = s.steps[j].name;
      setTimeout(() => deliver(name), 200);
      next = j + 1;
    }
  };
  const server = net.createServer((c) => {
    const id = openOrder[accepted++];
    conns.set(id, c);
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString('hex');
      for (;;) {
        const i = s.steps.findIndex((x, k) => k >= next && x.socket === id && x.request !== undefined);
        const want = i >= 0 ? run.steps[i].request! : undefined;
        if (!want || !buf.startsWith(want)) break;
        buf = buf.slice(want.length);
        answer(i);
      }
    });
    c.on('error', () => {});
  });
  const infoServer = net.createServer((c) => {
    c.once('data', () => {
      const i = s.steps.findIndex((x, k) => k >= next && x.traffic !== undefined);
      c.end('{"trace":"ok"}\n');
      if (i >= 0) answer(i);
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  await new Promise<void>((r) => infoServer.listen(info, r));
  return {
    sock,
    async close() {
      for (const c of conns.values()) c.destroy();
      await new Promise((r) => server.close(r));
      await new Promise((r) => infoServer.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('replayStream: a KAME socket answering exactly as Linux did is equal on every step; one that departs is caught at that step', { timeout: 120_000 }, async () => {
  const s = suite();
  const l = linux();
  const st = asStream(l, s);
  const perfect = await standIn(s, st);
  try {
    const run = await replayStream(s, perfect.sock, { quietMs: 30 });
    assert.equal(run.transport, 'stream');
    assert.deepEqual(run.steps.filter((r) => r.request).map((r) => r.request), l.steps.filter((r) => r.request).map((r) => r.request), 'the requests as sent, placeholders filled');
    assert.deepEqual(compareRuns(s, { label: 'linux', run: l }, { label: 'klipsd', run }).filter((r) => !r.equal).map((r) => [r.name, r.differences]), []);
  } finally {
    await perfect.close();
  }
  // A socket that answers GET with the reply's LIFETIME_HARD addtime off by one, and forgets the promiscuous copy of an ADD.
  // (The suite up to the SPD steps is enough here.)
  const part: Suite = { ...s, steps: s.steps.slice(0, s.steps.findIndex((x) => x.group === 'spd')) };
  const flawed = await standIn(part, st, (name, msgs) => {
    if (name === 'get_esp_sha256') {
      const b = Buffer.from(msgs['0'][0], 'hex');
      b[extAt(msgs['0'][0], 3) + 16] ^= 1;
      msgs['0'][0] = b.toString('hex');
    }
    if (name === 'promisc_add') msgs['3'].shift();
  });
  try {
    const run = await replayStream(part, flawed.sock, { quietMs: 30 });
    const bad = compareRuns(part, { label: 'linux', run: l }, { label: 'klipsd', run }).filter((r) => !r.equal);
    assert.deepEqual(bad.map((r) => r.name), ['get_esp_sha256', 'promisc_add']);
    assert.deepEqual(bad[0].differences, ['socket 0 message 1 (GET): LIFETIME_HARD.addtime: linux 86400, klipsd 86401']);
    assert.match(bad[1].differences.join('\n'), /^socket 3 message 1 \(ADD\): /);
  } finally {
    await flawed.close();
  }
});
