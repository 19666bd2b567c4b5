// The UDP carrier shares its port with an IKE daemon as KLIPS shared pluto's NAT-T port:
// ESP (a non-zero SPI first) stays with klipsd's carrier, datagrams with the non-ESP
// marker go to the daemon's socket that joined the port's SO_REUSEPORT group after it.
// UDP segmentation offloads: a run of equal datagrams to one destination leaves as one
// UDP_SEGMENT message and reaches a UDP_GRO carrier as one buffer, cut back into the same
// datagrams; a plain socket gets them one by one; other destinations break the run.
// Real sockets on loopback; no root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Carrier } from '../src/dataplane/carrier.js';
import { libc, SOL_SOCKET, SO_REUSEPORT, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_DONTWAIT } from '../src/dataplane/libc.js';
import { AF_INET } from '../src/wire/index.js';

const PORT = 40000 + (process.pid % 20000);

function ikeDaemonSocket(port: number): number {
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert.ok(fd >= 0);
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  assert.equal(c.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, one, 4), 0);
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(AF_INET, 0);
  sa.writeUInt16BE(port, 2);
  assert.equal(c.bind(fd, sa, 16), 0, 'the daemon joins the port');
  return fd;
}

/** Every datagram waiting on a plain socket (first byte of each, to tell them apart). */
function drainPlain(fd: number): number[] {
  const c = libc();
  const buf = Buffer.alloc(2048);
  const got: number[] = [];
  for (;;) {
    const n = c.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, null, null);
    if (n < 0) return got;
    got.push(buf[n >= 5 ? 4 : 0]);
  }
}

function drainCarrier(k: Carrier): number[] {
  const got: number[] = [];
  for (let n = k.receive(); n > 0; n = k.receive()) {
    for (let i = 0; i < n; i++) {
      const d = k.datagram(i).packet;
      const payload = d.subarray(28);
      got.push(payload[payload.length >= 5 ? 4 : 0]);
    }
  }
  return got;
}

async function sendAll(datagrams: Buffer[], port: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  for (const d of datagrams) await new Promise<void>((r, j) => s.send(d, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  s.close();
  await new Promise((r) => setTimeout(r, 50));
}

const esp = (tag: number) => Buffer.from([0, 0, 0x10, 0x01, tag, 0, 0, 1, 9, 9, 9, 9]);
const ike = (tag: number) => Buffer.from([0, 0, 0, 0, tag, 1, 2, 3, 4, 5, 6, 7]);

test('ESP stays with the carrier, IKE (non-ESP marker) goes to the daemon bound after it', async () => {
  const k = new Carrier({ family: AF_INET, encap: 'udp', port: PORT, batch: 8, slotBytes: 2048, socketBuffer: 0 });
  const daemon = ikeDaemonSocket(PORT);
  try {
    await sendAll([esp(1), ike(2), esp(3), ike(4), ike(5), Buffer.from([0xff])], PORT);
    assert.deepEqual(drainCarrier(k), [1, 3, 0xff], 'ESP and the 1-byte keepalive come to klipsd');
    assert.deepEqual(drainPlain(daemon), [2, 4, 5], 'IKE goes to the daemon');
  } finally {
    libc().close(daemon);
    k.close();
  }
});

test('with no daemon on the port, everything comes to the carrier (IKE then counted there as not ESP)', async () => {
  const k = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 1, batch: 8, slotBytes: 2048, socketBuffer: 0 });
  try {
    await sendAll([esp(1), ike(2)], PORT + 1);
    assert.deepEqual(drainCarrier(k), [1, 2]);
  } finally {
    k.close();
  }
});

test('a socket without SO_REUSEPORT still cannot take the carrier\'s port', () => {
  const k = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 2, batch: 8, slotBytes: 2048, socketBuffer: 0 });
  try {
    const c = libc();
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(PORT + 2, 2);
    assert.equal(c.bind(fd, sa, 16), -1);
    assert.equal(c.errno(), 98, 'EADDRINUSE');
    c.close(fd);
  } finally {
    k.close();
  }
});

/** An outer IPv4 packet to 127.0.0.1 with a UDP header (a NAT-T SA's), then `payload`. */
function natTPacket(payload: Buffer): Buffer {
  const p = Buffer.alloc(28 + payload.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = 17;
  Buffer.from([127, 0, 0, 1]).copy(p, 12);
  Buffer.from([127, 0, 0, 1]).copy(p, 16);
  payload.copy(p, 28);
  return p;
}

const payloadOf = (n: number, tag: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i === 0 ? 0 : i < 4 ? 0x10 : (tag * 31 + i) & 0xff)));

test('UDP_SEGMENT out, UDP_GRO in: eleven datagrams leave in one message and arrive in one buffer, cut back the same', async () => {
  const a = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 3, batch: 64, slotBytes: 2048, socketBuffer: 0 });
  const b = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 4, batch: 64, slotBytes: 2048, socketBuffer: 0 });
  try {
    assert.ok(b.gro, 'this kernel takes UDP_GRO');
    const payloads = [...Array.from({ length: 10 }, (_, i) => payloadOf(1000, i + 1)), payloadOf(500, 11)];
    for (const p of payloads) assert.ok(a.queue(natTPacket(p), PORT + 4));
    assert.equal(a.flush(), 0);
    assert.deepEqual([a.stats.sent, a.stats.gsoSends, a.stats.sendBatches], [11, 1, 1]);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(b.receive(), 1, 'one buffer');
    assert.equal(b.segments(0), 11);
    const got = Array.from({ length: 11 }, (_, s) => {
      const d = b.datagram(0, s);
      assert.equal(d.truncated, false);
      assert.equal(d.port, PORT + 3);
      // The given-back header: IPv4 (length), then UDP to our port.
      assert.equal(d.packet.readUInt16BE(2), d.packet.length);
      assert.equal(d.packet.readUInt16BE(22), PORT + 4);
      return d.packet.subarray(28).toString('hex');
    });
    assert.deepEqual(got, payloads.map((p) => p.toString('hex')));
    assert.deepEqual([b.stats.received, b.stats.groReceives], [11, 1]);
  } finally {
    a.close();
    b.close();
  }
});

test('a run reaches a plain socket as single datagrams; another destination or size breaks the run', async () => {
  const a = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 5, batch: 64, slotBytes: 2048, socketBuffer: 0 });
  const c = libc();
  const plain = (port: number) => {
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(port, 2);
    Buffer.from([127, 0, 0, 1]).copy(sa, 4);
    assert.equal(c.bind(fd, sa, 16), 0);
    return fd;
  };
  const x = plain(PORT + 6);
  const y = plain(PORT + 7);
  const sizes = (fd: number) => {
    const buf = Buffer.alloc(70000);
    const got: number[] = [];
    for (let n = c.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, null, null); n >= 0; n = c.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, null, null)) got.push(n);
    return got;
  };
  try {
    // x: 3 × 800 (a run), then 900 (larger: a new message), y: 800, x: 800 (a new message).
    for (let i = 0; i < 3; i++) a.queue(natTPacket(payloadOf(800, i)), PORT + 6);
    a.queue(natTPacket(payloadOf(900, 3)), PORT + 6);
    a.queue(natTPacket(payloadOf(800, 4)), PORT + 7);
    a.queue(natTPacket(payloadOf(800, 5)), PORT + 6);
    assert.equal(a.flush(), 0);
    assert.deepEqual([a.stats.sent, a.stats.gsoSends], [6, 1]);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(sizes(x), [800, 800, 800, 900, 800], 'the kernel cut the run into its datagrams');
    assert.deepEqual(sizes(y), [800]);
  } finally {
    c.close(x);
    c.close(y);
    a.close();
  }
});

test('next() hands out a receive datagram by datagram, a UDP_GRO buffer piece by piece, and then has nothing unread', async () => {
  const a = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 8, batch: 64, slotBytes: 2048, socketBuffer: 0 });
  const b = new Carrier({ family: AF_INET, encap: 'udp', port: PORT + 9, batch: 64, slotBytes: 2048, socketBuffer: 0 });
  try {
    const run = Array.from({ length: 5 }, (_, i) => payloadOf(600, i));
    const lone = payloadOf(90, 9);
    for (const p of run) a.queue(natTPacket(p), PORT + 9);
    a.queue(natTPacket(lone), PORT + 9); // shorter: ends the run, joins it as its last piece
    a.flush();
    a.queue(natTPacket(payloadOf(700, 7)), PORT + 9);
    a.flush();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(b.unread, false);
    assert.equal(b.receive(), 2);
    const got: string[] = [];
    while (b.unread) got.push(b.next().packet.subarray(28).toString('hex'));
    assert.deepEqual(got, [...run, lone, payloadOf(700, 7)].map((p) => p.toString('hex')));
    assert.equal(b.lastBatchFull, false);
    assert.equal(b.stats.received, 7);
  } finally {
    a.close();
    b.close();
  }
});
