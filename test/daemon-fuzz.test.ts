/**
 * Fuzzing klipsd over a real Unix socket with mutated real requests: every request the
 * captured clients sent (test/vectors/clients/*.json: openswan's tools and setkey) is
 * bent by a few seeded mutations (bit flips, byte values, extension lengths and types,
 * header fields, truncation, extension, dropped, duplicated and swapped extensions, an
 * unframeable length) and sent, followed by a probe (an X_DEBUG query answered to the
 * sender) that marks the end of its replies. For each one:
 *
 *  - what the wire parser refuses gets a reply with exactly that errno (and the
 *    request's type, seq and pid); an unframeable length gets EMSGSIZE and a close;
 *  - a request answered with an errno left the engine's tables as they were
 *    (SAs with keys and counters, eroutes, interfaces, debug flags, pending ACQUIREs,
 *    registrations and promiscuous mode);
 *  - the probe is answered: klipsd still serves, and no fault escaped the engine.
 *
 * About three seconds, bounded in iterations too. The seed is printed; set
 * KLIPS_FUZZ_SEED to replay a run.
 */

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, PfkeyError, SADB_ACQUIRE, SADB_X_DEBUG, buildMessage, parseMessage, readHeader, KLIPSD_X_REASON, isReasonsRequest, reasonsRequest, KLIPSD_X_STATUS, isStatusRequest, statusRequest,
} from '../src/wire/index.js';
import { Engine } from '../src/engine/engine.js';
import { clientRequests } from './vectors.js';
import { seededRandom, snapshot } from './engine-helpers.js';
import { RawClient, header, startDaemon, waitUntil, within, type Daemon } from './cli-harness.js';

const SECONDS = 3;
const MAX_ITERATIONS = 50_000;
const PROBE_PID = 0xfeedbeef;

/** Offsets and lengths of the extensions that can be walked (stops at the first broken one). */
function extensions(u8: Uint8Array): Array<{ off: number; len: number }> {
  const out: Array<{ off: number; len: number }> = [];
  for (let off = 16; off + 4 <= u8.length;) {
    const len = (u8[off] | (u8[off + 1] << 8)) * 8;
    if (len === 0 || off + len > u8.length) break;
    out.push({ off, len });
    off += len;
  }
  return out;
}

const INTERESTING = [0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff];

/** One mutation: returns new bytes (a whole number of 8-byte units, at least the header). */
type Mutation = (u8: Uint8Array, rnd: (n: number) => number) => Uint8Array;

const MUTATIONS: Array<[string, Mutation]> = [
  ['flip a bit', (u8, rnd) => {
    const b = new Uint8Array(u8);
    let i = rnd(b.length);
    if (i === 4 || i === 5) i = 0;
    b[i] ^= 1 << rnd(8);
    return b;
  }],
  ['set a byte', (u8, rnd) => {
    const b = new Uint8Array(u8);
    let i = rnd(b.length);
    if (i === 4 || i === 5) i = 3;
    b[i] = rnd(4) === 0 ? rnd(256) : INTERESTING[rnd(INTERESTING.length)];
    return b;
  }],
  ['header field', (u8, rnd) => {
    const b = new Uint8Array(u8);
    const field = rnd(5);
    if (field === 0) b[0] = rnd(4);                  // version
    else if (field === 1) b[1] = rnd(26);            // type
    else if (field === 2) b[2] = rnd(3) ? 0 : rnd(256); // errno
    else if (field === 3) b[3] = rnd(14);            // satype
    else b[6 + rnd(2)] = 1 + rnd(255);               // reserved
    return b;
  }],
  ['extension length or type', (u8, rnd) => {
    const b = new Uint8Array(u8);
    const exts = extensions(b);
    if (exts.length === 0) return b;
    const e = exts[rnd(exts.length)];
    if (rnd(2)) b[e.off] = rnd(10);                  // sadb_ext_len (units)
    else b[e.off + 2] = rnd(40);                     // sadb_ext_type
    return b;
  }],
  ['truncate', (u8, rnd) => u8.slice(0, 16 + 8 * rnd((u8.length - 16) / 8 + 1))],
  ['append random units', (u8, rnd) => {
    const extra = Uint8Array.from({ length: 8 * (1 + rnd(4)) }, () => rnd(256));
    return new Uint8Array(Buffer.concat([u8, extra]));
  }],
  ['duplicate an extension', (u8, rnd) => {
    const exts = extensions(u8);
    if (exts.length === 0) return u8;
    const e = exts[rnd(exts.length)];
    return new Uint8Array(Buffer.concat([u8, u8.subarray(e.off, e.off + e.len)]));
  }],
  ['drop an extension', (u8, rnd) => {
    const exts = extensions(u8);
    if (exts.length === 0) return u8;
    const e = exts[rnd(exts.length)];
    return new Uint8Array(Buffer.concat([u8.subarray(0, e.off), u8.subarray(e.off + e.len)]));
  }],
  ['swap two extensions', (u8, rnd) => {
    const exts = extensions(u8);
    if (exts.length < 2) return u8;
    const i = rnd(exts.length - 1);
    const [x, y] = [exts[i], exts[i + 1]];
    return new Uint8Array(Buffer.concat([
      u8.subarray(0, x.off), u8.subarray(y.off, y.off + y.len), u8.subarray(x.off, x.off + x.len), u8.subarray(y.off + y.len),
    ]));
  }],
];

/** A copy whose sadb_msg_len matches its bytes (or says `units`), so the stream stays framed. */
function withLength(u8: Uint8Array, units = u8.length / 8): Uint8Array {
  const b = new Uint8Array(u8);
  b[4] = units & 0xff;
  b[5] = units >> 8;
  return b;
}

/** Tables plus what each open socket subscribed to. */
function state(engine: Engine): string {
  const subs = [...engine.endpoints].map((e) => `${[...e.registered].sort().join(',')}/${e.promisc}/${e.pchange}`);
  return `${snapshot(engine)}|${subs.join(';')}`;
}

const hex = (u8: Uint8Array) => Buffer.from(u8).toString('hex');

/** The probe: X_DEBUG OR-ing nothing into the flags (klipsdebug's query), answered to the sender alone. */
const probe = (seq: number) => buildMessage({
  header: { type: SADB_X_DEBUG, seq, pid: PROBE_PID },
  debug: { tunnel: 0, netlink: 0x80000000, xform: 0, eroute: 0, spi: 0, radij: 0, esp: 0, ah: 0, rcv: 0, pfkey: 0, ipcomp: 0, verbose: 0 },
});

/** Resolves as soon as a message from index `from` on satisfies `pred` (event-driven, no polling); bounded. */
function arrival(c: RawClient, what: string, pred: (m: Uint8Array) => boolean, from: number): Promise<void> {
  return within(5000, what, new Promise<void>((resolve) => {
    let i = from;
    const look = (): boolean => {
      for (; i < c.messages.length; i++) if (pred(c.messages[i])) return true;
      return false;
    };
    if (look()) return resolve();
    // RawClient's own 'data' listener runs first and has collected the chunk's messages.
    const onData = () => {
      if (!look()) return;
      c.sock.off('data', onData);
      resolve();
    };
    c.sock.on('data', onData);
  }));
}

let d: Daemon | undefined;
after(async () => d?.stop());

test('fuzz: mutated real requests through klipsd: errno replies, no table change on refusal, still serving', async (t) => {
  const seed = process.env.KLIPS_FUZZ_SEED ? Number(process.env.KLIPS_FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`seed ${seed} (KLIPS_FUZZ_SEED=${seed} replays this run)`);
  const rnd = seededRandom(seed);
  // Reads poisoned once handled (read-buffer.ts): a view of a mutated request kept too long shows.
  d = await startDaemon({ engine: new Engine({ clock: () => 1000, random: seededRandom(seed ^ 0x5a5a5a5a) }), poisonReads: true });
  const engine = d.server.engine;
  const requests = clientRequests();
  assert.ok(requests.length >= 100, `${requests.length} captured requests`);

  let c = await RawClient.connect(d.socket);
  let probeSeq = 0;
  /** Send `bytes` then the probe; the messages that arrived before the probe's answer. */
  const exchange = async (bytes: Uint8Array, what: string): Promise<Uint8Array[]> => {
    const from = c.messages.length;
    const seq = ++probeSeq;
    c.write(Buffer.concat([bytes, probe(seq)]));
    await arrival(c, `the probe after ${what}`, (m) => {
      const h = header(m);
      return h.type === SADB_X_DEBUG && h.pid === PROBE_PID && h.seq === seq;
    }, from);
    return c.messages.slice(from);
  };
  // The tables as the captured clients left them, again whenever a FLUSH emptied them.
  const replay = async () => { for (const r of requests) await exchange(r, 'a captured request'); };
  await replay();
  const tally = { sent: 0, refusedByParser: 0, errnoReplies: 0, accepted: 0, unframeable: 0 };
  const errnos = new Map<number, number>();

  const deadline = Date.now() + SECONDS * 1000;
  for (let i = 0; i < MAX_ITERATIONS && Date.now() < deadline; i++) {
    const base = requests[rnd(requests.length)];
    let bytes: Uint8Array = base;
    const applied: string[] = [];
    for (let k = 1 + rnd(3); k > 0; k--) {
      const [name, mutate] = MUTATIONS[rnd(MUTATIONS.length)];
      bytes = mutate(bytes, rnd);
      applied.push(name);
    }
    bytes = withLength(bytes);
    const where = `seed ${seed}, iteration ${i} (${applied.join(', ')}): ${hex(bytes)}`;
    const h = readHeader(bytes);
    const before = state(engine);
    const tablesBefore = snapshot(engine);
    tally.sent++;

    if (rnd(50) === 0) {
      // An unframeable length: EMSGSIZE, the header's fields copied, and the connection closes.
      bytes = withLength(bytes, [0, 1, 8193, 0xffff][rnd(4)]);
      const from = c.messages.length;
      c.write(bytes);
      await waitUntil('the close after an unframeable length', () => c.closed, 5000);
      const got = c.messages.slice(from).map(header);
      assert.deepEqual(got.map((x) => [x.type, x.errno, x.seq, x.pid]), [[h.type, ERRNO.EMSGSIZE, h.seq, h.pid]], where);
      // Its PF_KEY socket (and what it registered for) went with the connection; the tables stay.
      assert.equal(snapshot(engine), tablesBefore, `tables changed by an unframeable message: ${where}`);
      tally.unframeable++;
      c = await RawClient.connect(d.socket);
      continue;
    }

    if (isReasonsRequest(bytes)) {
      // klipsd's reasons opt-in (not PF_KEY): answered by an echo; switch reasons off again.
      const got = await exchange(bytes, where);
      assert.ok(got.some((x) => x[1] === KLIPSD_X_REASON && x[2] === 0), `the reasons opt-in is echoed: ${where}`);
      if (bytes[3] === 1) await exchange(reasonsRequest(false, h.seq, h.pid), where);
      continue;
    }
    if (isStatusRequest(bytes)) {
      // klipsd's status-mode opt-in (the bridge's; not PF_KEY): echoed; switch it off again.
      const got = await exchange(bytes, where);
      assert.ok(got.some((x) => x[1] === KLIPSD_X_STATUS && x[2] === 0), `the status opt-in is echoed: ${where}`);
      if (bytes[3] === 1) await exchange(statusRequest(false, h.seq, h.pid), where);
      continue;
    }
    let parserErrno: number | undefined;
    try {
      parseMessage(bytes, { direction: 'in' });
    } catch (e) {
      if (!(e instanceof PfkeyError)) throw e;
      parserErrno = e.errno;
    }
    const got = await exchange(bytes, where);
    const replies = got.map(header).filter((x) => x.type === h.type && x.seq === h.seq && x.pid === h.pid);
    const refusals = replies.filter((x) => x.errno !== 0 && x.len === 2);
    if (parserErrno !== undefined) {
      tally.refusedByParser++;
      errnos.set(parserErrno, (errnos.get(parserErrno) ?? 0) + 1);
      assert.ok(refusals.some((x) => x.errno === parserErrno), `expected an errno ${parserErrno} reply, got ${JSON.stringify(replies)}: ${where}`);
    }
    // A request carrying an errno of its own (an ACQUIRE failure report) is relayed with it; that is not a refusal.
    const ownErrno = h.type === SADB_ACQUIRE && h.errno !== 0;
    if (refusals.length > 0 && !ownErrno) {
      tally.errnoReplies++;
      assert.equal(state(engine), before, `tables changed by a refused request: ${where}`);
    } else if (parserErrno === undefined) {
      tally.accepted++;
    }
    if (i % 500 === 499 && engine.sadb.size === 0) await replay();
  }

  t.diagnostic(`${JSON.stringify(tally)}; parser errnos ${JSON.stringify(Object.fromEntries(errnos))}`);
  assert.ok(tally.refusedByParser > 0 && tally.accepted > 0 && tally.unframeable > 0, 'every outcome was exercised');
  assert.equal(d.server.stats.internalErrors, 0, `no fault escaped the engine (seed ${seed})`);
  // Still serving, to this client and to a new one.
  await exchange(new Uint8Array(0), 'the end');
  const fresh = await RawClient.connect(d.socket);
  fresh.write(probe(1));
  await fresh.waitFor('a new client served', (m) => m.header.type === SADB_X_DEBUG && m.header.pid === PROBE_PID && m.header.errno === 0);
  c.close();
  fresh.close();
});
