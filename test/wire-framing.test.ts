/**
 * The parse boundary's first steps in wire/: stream framing (src/wire/framing.ts) gives
 * whole messages by sadb_msg_len however the bytes are chunked, zero-copy views for
 * messages inside a chunk, and refuses the two unframeable headers (under 2 units, over
 * 64 KiB); the header reader (src/wire/header.ts) judges a header without throwing, with
 * the same errno, offset and reason as checkHeader; the errno replies copy the header.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRNO, FrameDecoder, MAX_MESSAGE_BYTES, PfkeyError, SADB_ADD, SADB_FLUSH, SADB_SATYPE_ESP, SADB_SASTATE_MATURE,
  buildMessage, checkHeader, errnoReplyTo, framingErrorReply, headerFault, parseMessage, readHeader,
} from '../src/wire/index.js';

const flush = buildMessage({ header: { type: SADB_FLUSH, satype: 0, seq: 7, pid: 99 } });
const add = buildMessage({
  header: { type: SADB_ADD, satype: SADB_SATYPE_ESP, seq: 8, pid: 99 },
  sa: { spi: 0x1234, replay: 0, state: SADB_SASTATE_MATURE, auth: 3, encrypt: 3, flags: 0 },
  addressSrc: { proto: 0, prefixlen: 0, family: 2, port: 0, addr: '192.0.2.1' },
  addressDst: { proto: 0, prefixlen: 0, family: 2, port: 0, addr: '192.0.2.2' },
  keyAuth: { bits: 160, key: new Uint8Array(20).fill(1) },
  keyEncrypt: { bits: 192, key: new Uint8Array(24).fill(2) },
});

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function feed(d: FrameDecoder, chunks: Uint8Array[]): { frames: Uint8Array[]; error?: string } {
  const frames: Uint8Array[] = [];
  for (const c of chunks) {
    const e = d.push(c, (f) => frames.push(f.slice()));
    if (e) return { frames, error: e.reason };
  }
  return { frames };
}

test('messages back to back in one chunk come out whole, as views into the chunk', () => {
  const chunk = concat(flush, add, flush);
  const views: Uint8Array[] = [];
  assert.equal(new FrameDecoder().push(chunk, (f) => views.push(f)), undefined);
  assert.deepEqual(views.map((v) => v.length), [16, add.length, 16]);
  assert.equal(views[1].buffer, chunk.buffer, 'no copy for a message inside the chunk');
  assert.deepEqual(views[1], add);
});

test('any chunking gives the same messages (every split point, and byte by byte)', () => {
  const stream = concat(add, flush, add);
  for (let cut = 1; cut < stream.length; cut++) {
    const r = feed(new FrameDecoder(), [stream.subarray(0, cut), stream.subarray(cut)]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.frames, [add, flush, add], `split at ${cut}`);
  }
  const d = new FrameDecoder();
  const bytes = [...stream].map((b) => Uint8Array.of(b));
  const r = feed(d, bytes);
  assert.deepEqual(r.frames, [add, flush, add]);
  assert.equal(d.buffered, 0);
});

test('a partial message is held and reported as buffered', () => {
  const d = new FrameDecoder();
  assert.deepEqual(feed(d, [add.subarray(0, 10)]).frames, []);
  assert.equal(d.buffered, 10);
  assert.deepEqual(feed(d, [add.subarray(10, 40)]).frames, []);
  assert.equal(d.buffered, 40);
  assert.deepEqual(feed(d, [add.subarray(40)]).frames, [add]);
  assert.equal(d.buffered, 0);
});

test('nextStart: where the first message to start in the next chunk starts (klipsd reads ahead from there), at every split', () => {
  const stream = concat(add, flush, add, flush);
  // Message boundaries in the stream.
  const starts = [0, add.length, add.length + 16, 2 * add.length + 16, stream.length];
  for (let cut = 0; cut <= stream.length; cut++) {
    const d = new FrameDecoder();
    feed(d, [stream.subarray(0, cut)]);
    const boundary = starts.find((b) => b >= cut)!;
    // Of the message cut, fewer than 6 bytes here: its length is not known yet.
    const inMessage = boundary - cut;
    const begun = cut - Math.max(...starts.filter((b) => b <= cut));
    const want = inMessage === 0 ? 0 : begun < 6 ? -1 : inMessage;
    assert.equal(d.nextStart, want, `split at ${cut}`);
  }
});

test('a header under 2 units cannot be framed, and the decoder stays failed', () => {
  for (const units of [0, 1]) {
    const bad = new Uint8Array(flush);
    bad[4] = units;
    const d = new FrameDecoder();
    const seen: Uint8Array[] = [];
    const err = d.push(concat(flush, bad, flush), (f) => seen.push(f));
    assert.ok(err, `len ${units}`);
    assert.match(err!.reason, /less than the 2 units/);
    assert.equal(seen.length, 1, 'the good message before it is delivered');
    assert.deepEqual(err!.header, bad);
    assert.ok(d.push(flush, () => assert.fail('nothing after a failure')));
  }
});

test('a header over 64 KiB cannot be framed; exactly 64 KiB can', () => {
  const over = new Uint8Array(flush);
  new DataView(over.buffer).setUint16(4, MAX_MESSAGE_BYTES / 8 + 1, true);
  const e = new FrameDecoder().push(over, () => assert.fail('no frame'));
  assert.match(e!.reason, /exceeds the 65536-byte maximum/);
  assert.equal(e!.claimed, MAX_MESSAGE_BYTES + 8);

  const max = new Uint8Array(MAX_MESSAGE_BYTES);
  max.set(flush);
  new DataView(max.buffer).setUint16(4, MAX_MESSAGE_BYTES / 8, true);
  const frames: Uint8Array[] = [];
  const d = new FrameDecoder();
  assert.equal(d.push(max.subarray(0, 5), (f) => frames.push(f)), undefined, 'not judged before the header is complete');
  assert.equal(d.push(max.subarray(5), (f) => frames.push(f)), undefined);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].length, MAX_MESSAGE_BYTES);
});

test('an unframeable header split across chunks is caught once its 16 bytes are in', () => {
  const bad = new Uint8Array(flush);
  bad[4] = 1;
  const d = new FrameDecoder();
  assert.equal(d.push(bad.subarray(0, 3), () => {}), undefined);
  assert.ok(d.push(bad.subarray(3), () => {}));
});

test('the EMSGSIZE reply copies type, satype, seq and pid; errno replies likewise', () => {
  const bad = new Uint8Array(add.subarray(0, 16));
  bad[4] = 0;
  const r = parseMessage(framingErrorReply(bad), { direction: 'out' });
  assert.deepEqual(
    { type: r.header.type, satype: r.header.satype, errno: r.header.errno, seq: r.header.seq, pid: r.header.pid, len: r.header.len },
    { type: SADB_ADD, satype: SADB_SATYPE_ESP, errno: ERRNO.EMSGSIZE, seq: 8, pid: 99, len: 2 },
  );
  const e = parseMessage(errnoReplyTo(add, ERRNO.EINVAL), { direction: 'out' });
  assert.equal(e.header.errno, ERRNO.EINVAL);
  assert.equal(e.header.seq, 8);
});

test('readHeader reads the fields without judging them; a short buffer reads as zeros past its end', () => {
  assert.deepEqual(readHeader(add), { version: 2, type: SADB_ADD, errno: 0, satype: SADB_SATYPE_ESP, len: add.length / 8, reserved: 0, seq: 8, pid: 99 });
  const odd = Uint8Array.from([7, 200, 5, 9, 1, 0, 0xff, 0xff, 1, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff]);
  assert.deepEqual(readHeader(odd), { version: 7, type: 200, errno: 5, satype: 9, len: 1, reserved: 0xffff, seq: 0x80000001, pid: 0xffffffff });
  assert.deepEqual(readHeader(Uint8Array.of(2, 3)), { version: 2, type: 3, errno: 0, satype: 0, len: 0, reserved: 0, seq: 0, pid: 0 });
});

test("headerFault: KLIPS's sendmsg checks in its order, each with its errno and offset; checkHeader throws the same", () => {
  const spoilt = (f: (b: Uint8Array) => void, from: Uint8Array = flush) => {
    const b = new Uint8Array(from);
    f(b);
    return b;
  };
  const cases: Array<[string, Uint8Array, { errno: number; offset: number; why: RegExp } | undefined]> = [
    ['a good FLUSH', flush, undefined],
    ['a good ADD', add, undefined],
    ['10 bytes', flush.subarray(0, 10), { errno: ERRNO.EMSGSIZE, offset: 0, why: /10 bytes is shorter than the 16-byte header/ }],
    ['len 3 for 16 bytes', spoilt((b) => { b[4] = 3; }), { errno: ERRNO.EMSGSIZE, offset: 4, why: /says 24 bytes, 16 given/ }],
    ['version 1', spoilt((b) => { b[0] = 1; }), { errno: ERRNO.EINVAL, offset: 0, why: /version 1, must be 2/ }],
    ['reserved 0x100', spoilt((b) => { b[7] = 1; }), { errno: ERRNO.EINVAL, offset: 6, why: /reserved must be zero/ }],
    ['type 0', spoilt((b) => { b[1] = 0; }), { errno: ERRNO.EINVAL, offset: 1, why: /type 0 out of range 1\.\.19/ }],
    ['type 20', spoilt((b) => { b[1] = 20; }), { errno: ERRNO.EINVAL, offset: 1, why: /type 20 out of range/ }],
    // Order: the length is judged before the version, the version before the type.
    ['len and version', spoilt((b) => { b[4] = 9; b[0] = 1; }), { errno: ERRNO.EMSGSIZE, offset: 4, why: /says 72 bytes/ }],
    ['version and type', spoilt((b) => { b[0] = 3; b[1] = 0; }), { errno: ERRNO.EINVAL, offset: 0, why: /version 3/ }],
  ];
  for (const [what, bytes, want] of cases) {
    const f = headerFault(bytes);
    if (!want) {
      assert.equal(f, undefined, what);
      assert.deepEqual(checkHeader(bytes), readHeader(bytes), what);
      continue;
    }
    assert.ok(f, what);
    assert.deepEqual([f.errno, f.offset], [want.errno, want.offset], what);
    assert.match(f.why, want.why, what);
    assert.throws(() => checkHeader(bytes), (e: unknown) => {
      assert.ok(e instanceof PfkeyError);
      assert.deepEqual([e.errno, e.offset, e.message], [f.errno, f.offset, `${e.errnoName}: ${f.why}`], what);
      return true;
    });
  }
});
