/**
 * How ESP travels between two klipsd: a carrier is one socket of one address family,
 * either UDP (`--encap udp`, ESP in UDP as RFC 3948 frames it, on port 4500 by default:
 * no raw socket needed and it crosses NAT) or raw (`--encap raw`, IP protocol 50 as KLIPS
 * sent it). Packets are received and sent in batches (recvmmsg / sendmmsg) through fixed
 * arenas in native memory, so a busy carrier costs one syscall per batch and allocates
 * nothing per packet.
 *
 * The inbound path wants whole IP packets, so each received datagram is given back the
 * outer header the socket took off, written into the slot's headroom just before the
 * payload: for UDP an IP and UDP header (source from the datagram, destination from
 * IP_PKTINFO / IPV6_PKTINFO), for raw IPv6 an IPv6 header (IPv4 raw sockets keep theirs).
 * On the way out the outbound path's packet is cut back to what the socket adds itself:
 * the IP header (and for UDP any UDP header a NAT-T SA put there, whose port then wins).
 *
 * UDP carriers also use the kernel's UDP segmentation offloads both ways. Sending, the
 * packets queued in a row for one destination with one size (the last may be shorter:
 * what an offloaded TCP read gives, gso.ts) leave as one message with UDP_SEGMENT, so
 * the kernel builds one skb for up to 64 of them and cuts it at the device (or delivers
 * it whole to a peer socket that asked for UDP_GRO). Receiving, the socket asks for
 * UDP_GRO: a run of datagrams may arrive as one buffer with its segment size, and each
 * piece is handed to the inbound path as its own datagram. A kernel or device that
 * refuses either (EIO: no checksum offload) turns it off for that carrier, and the
 * refused packets go out one by one.
 *
 * The UDP port is shared with the IKE daemon, as KLIPS shared it with pluto's NAT-T
 * socket (RFC 3948: IKE and ESP on one port, told apart by the non-ESP marker): the
 * carrier binds with SO_REUSEPORT and gives the port's group a classic BPF program that
 * steers each datagram by its first four bytes: zero (the non-ESP marker of IKE) to the
 * group's second socket, anything else (an SPI; keepalives and runts alike) to the
 * first. klipsd binds first, so ESP comes here; an IKE daemon that binds the port
 * afterwards with SO_REUSEPORT (the bridge, `klips run`, sets it for the daemon) gets
 * IKE. With no second socket the kernel falls back to the first, and IKE datagrams
 * are dropped here and counted as not ESP, as before.
 */

import { AF_INET, AF_INET6, IPPROTO_ESP } from '../wire/index.js';
import {
  EAGAIN, EINTR, EIO, IOVEC_BYTES, IPPROTO_IP, IPPROTO_IPV6, IPV6_PKTINFO, IPV6_RECVPKTINFO, IPV6_V6ONLY, IP_HDRINCL,
  IP_PKTINFO, MMSGHDR_BYTES, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOL_SOCKET, SO_RCVBUF,
  SO_ATTACH_REUSEPORT_CBPF, SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, errnoText, libc, nativeArena, type Libc,
  type NativeArena,
} from './libc.js';
import { formatAddress } from '../wire/sockaddr.js';
import { sameBytes } from './algorithms.js';
import { IPPROTO_UDP, IPV4_HEADER_BYTES, IPV6_HEADER_BYTES, writeIPv4Header, writeIPv6Header } from './packet.js';

import type { Encap } from './runtime-options.js';
import { rd16be, rd32, wr16, wr16be, wr32 } from '../wire/bytes.js';

export type { Encap };

/** The destination given back when the kernel gave no IP_PKTINFO / IPV6_PKTINFO. */
const ANY4 = new Uint8Array(4);
const ANY6 = new Uint8Array(16);
const SOCKADDR_BYTES = 28;
const CONTROL_BYTES = 64;
/** Room before each received payload for the headers given back (IPv6 40 + UDP 8). */
export const HEADROOM = 48;
const MSG_TRUNC = 0x20;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const UDP_GRO = 104;
/** UDP_SEGMENT's cmsg: cmsghdr (len, level, type) and a u16, padded (CMSG_SPACE(2)). */
const SEGMENT_CMSG_LEN = 18;
const SEGMENT_CMSG_SPACE = 24;
/** At most this many datagrams in one UDP_SEGMENT send (the kernel's UDP_MAX_SEGMENTS before 6.6 raised it). */
const GSO_MAX_SEGMENTS = 64;
/** At most this many payload bytes in one UDP_SEGMENT send (below any IP length limit). */
const GSO_MAX_BYTES = 65000;
/** A receive slot's size when UDP_GRO may hand over a run of datagrams in one buffer. */
const GRO_SLOT_BYTES = 65535;
/** Receive slots of that size (2 MB per carrier). */
const GRO_SLOTS = 32;

export class CarrierError extends Error {}

/** One batch of datagram slots in native memory: mmsghdrs, iovecs, addresses, control, data. */
class Batch {
  readonly arena: NativeArena;
  /** The mmsghdr vector, as the calls take it. */
  readonly vec: Buffer;
  /** Each slot's bytes (headroom included), made once. */
  readonly slots: Buffer[];
  private readonly hdrOff: number;
  private readonly nameOff: number;
  private readonly ctlOff: number;
  private readonly iovOff: number;
  /** Sending: the messages as sendmmsg takes them, each one slot or a UDP_SEGMENT run of slots. */
  readonly msgs: Buffer;

  constructor(readonly count: number, readonly slotBytes: number) {
    this.hdrOff = 0;
    this.iovOff = count * MMSGHDR_BYTES;
    this.nameOff = this.iovOff + count * IOVEC_BYTES;
    this.ctlOff = this.nameOff + count * SOCKADDR_BYTES;
    const msgOff = this.ctlOff + count * CONTROL_BYTES;
    const dataOff = msgOff + count * MMSGHDR_BYTES;
    this.arena = nativeArena(dataOff + count * (HEADROOM + slotBytes));
    const b = this.arena.buf;
    this.vec = b.subarray(0, this.iovOff);
    this.msgs = b.subarray(msgOff, dataOff);
    this.slots = [];
    for (let i = 0; i < count; i++) {
      const data = dataOff + i * (HEADROOM + slotBytes);
      this.slots.push(b.subarray(data, data + HEADROOM + slotBytes));
      const iov = this.iovOff + i * IOVEC_BYTES;
      b.writeBigUInt64LE(this.arena.base + BigInt(data + HEADROOM), iov);
      b.writeBigUInt64LE(BigInt(slotBytes), iov + 8);
      const h = this.hdrOff + i * MMSGHDR_BYTES;
      b.writeBigUInt64LE(this.arena.base + BigInt(this.nameOff + i * SOCKADDR_BYTES), h);
      wr32(b, h + 8, SOCKADDR_BYTES);
      b.writeBigUInt64LE(this.arena.base + BigInt(iov), h + 16);
      b.writeBigUInt64LE(1n, h + 24);
      b.writeBigUInt64LE(this.arena.base + BigInt(this.ctlOff + i * CONTROL_BYTES), h + 32);
      b.writeBigUInt64LE(BigInt(CONTROL_BYTES), h + 40);
    }
  }

  /** Before a receive: the lengths the kernel overwrote in the first n entries go back to the whole areas. */
  resetForReceive(n: number): void {
    const b = this.arena.buf;
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR_BYTES;
      wr32(b, h + 8, SOCKADDR_BYTES);
      // msg_controllen is a size_t: its high half stays 0.
      wr32(b, h + 40, CONTROL_BYTES);
      wr32(b, h + 48, 0);
    }
  }

  received(i: number): number {
    return rd32(this.arena.buf, i * MMSGHDR_BYTES + 56);
  }

  flags(i: number): number {
    return rd32(this.arena.buf, i * MMSGHDR_BYTES + 48);
  }

  name(i: number): Buffer {
    return this.arena.buf.subarray(this.nameOff + i * SOCKADDR_BYTES, this.nameOff + (i + 1) * SOCKADDR_BYTES);
  }

  /** The control area as received (msg_controllen bytes of cmsgs). */
  control(i: number): Buffer {
    const len = rd32(this.arena.buf, i * MMSGHDR_BYTES + 40);
    const off = this.ctlOff + i * CONTROL_BYTES;
    return this.arena.buf.subarray(off, off + Math.min(len, CONTROL_BYTES));
  }

  /** Make this a sending batch: no control data in any slot's entry until a message asks (set once). */
  forSending(): this {
    for (let i = 0; i < this.count; i++) this.arena.buf.fill(0, i * MMSGHDR_BYTES + 40, i * MMSGHDR_BYTES + 48);
    return this;
  }

  /** Message m of a send starts as slot i's entry (one datagram, no control data). */
  startMessage(m: number, i: number): void {
    this.arena.buf.copy(this.msgs, m * MMSGHDR_BYTES, i * MMSGHDR_BYTES, (i + 1) * MMSGHDR_BYTES);
  }

  /** Message m, which starts at slot i, carries `segments` slots cut at `size` bytes (UDP_SEGMENT). */
  segmentMessage(m: number, i: number, segments: number, size: number): void {
    const h = m * MMSGHDR_BYTES;
    wr32(this.msgs, h + 24, segments);
    if (segments !== 2) return;
    wr32(this.msgs, h + 40, SEGMENT_CMSG_SPACE);
    const b = this.arena.buf;
    const c = this.ctlOff + i * CONTROL_BYTES;
    wr32(b, c, SEGMENT_CMSG_LEN);
    wr32(b, c + 4, 0);
    wr32(b, c + 8, SOL_UDP);
    wr32(b, c + 12, UDP_SEGMENT);
    wr16(b, c + 16, size);
  }

  /** Slots i+1 … i+n-1 sent alone, to slot i's destination (a refused UDP_SEGMENT run, one by one). */
  copyName(i: number, n: number, nameLen: number): void {
    const b = this.arena.buf;
    for (let k = i + 1; k < i + n; k++) {
      b.copy(b, this.nameOff + k * SOCKADDR_BYTES, this.nameOff + i * SOCKADDR_BYTES, this.nameOff + i * SOCKADDR_BYTES + SOCKADDR_BYTES);
      wr32(b, k * MMSGHDR_BYTES + 8, nameLen);
    }
  }

  /** The UDP_GRO segment size in received entry i's control data, or 0. */
  groSize(i: number): number {
    const ctl = this.control(i);
    for (let off = 0; off + 16 <= ctl.length;) {
      const len = rd32(ctl, off);
      if (len < 16) return 0;
      if (rd32(ctl, off + 8) === SOL_UDP && rd32(ctl, off + 12) === UDP_GRO && len >= 20) return rd32(ctl, off + 16);
      off += (len + 7) & ~7;
    }
    return 0;
  }

  /** Before a send of slot i: `len` payload bytes to the address already in name(i). */
  prepareSend(i: number, len: number, nameLen: number): void {
    const b = this.arena.buf;
    const h = i * MMSGHDR_BYTES;
    wr32(b, h + 8, nameLen);
    wr32(b, this.iovOff + i * IOVEC_BYTES + 8, len);
  }
}

/** A datagram received, with the outer header given back in front of it. */
export interface Received {
  /** The whole packet: the given-back header, then the datagram. */
  packet: Buffer;
  /** Where it came from (for NAT-T: after any NAT). */
  addr: string;
  port: number;
  truncated: boolean;
}

export interface CarrierStats {
  received: number;
  sent: number;
  receiveBatches: number;
  sendBatches: number;
  /** Datagrams larger than a slot (cut short by the kernel), dropped. */
  truncated: number;
  /** Packets refused by the socket (its send buffer full: EAGAIN; or another errno), dropped. */
  sendErrors: number;
  /** The last send errno, as a name. */
  lastSendError?: string;
  /** Messages sent as a UDP_SEGMENT run (several datagrams each), and buffers received as a UDP_GRO run. */
  gsoSends: number;
  groReceives: number;
}

export interface CarrierOptions {
  family: number;
  encap: Encap;
  /** UDP: the port to listen on and send to. */
  port: number;
  /** Datagrams per batch. */
  batch: number;
  /** Largest datagram accepted. */
  slotBytes: number;
  /** SO_RCVBUF / SO_SNDBUF to ask for (bytes); 0 leaves the system default. */
  socketBuffer: number;
  /**
   * UDP only: a private socket on a port the kernel picks (`port` is then ignored; the
   * carrier's `port` says which), outside any SO_REUSEPORT group. The data plane's warm-up
   * sends its packets to itself through one, from 127.0.0.1 to 127.0.0.2 (warmup.ts).
   */
  private?: boolean;
}

/**
 * The steering program, as struct sock_filter entries {code u16, jt u8, jf u8, k u32}:
 * A = payload[0..4] (a runt fails the load: result 0); A == 0 ? 1 : 0.
 */
const STEER_IKE_TO_SECOND: ReadonlyArray<readonly [number, number, number, number]> = [
  [0x20, 0, 0, 0], // BPF_LD | BPF_W | BPF_ABS   ld [0]
  [0x15, 0, 1, 0], // BPF_JMP | BPF_JEQ | BPF_K  jeq #0, next, skip one
  [0x06, 0, 0, 1], // BPF_RET | BPF_K            ret #1: IKE, to the daemon's socket
  [0x06, 0, 0, 0], // BPF_RET | BPF_K            ret #0: ESP, to klipsd's
];

/** Attaches STEER_IKE_TO_SECOND to fd's SO_REUSEPORT group (struct sock_fprog on LP64). */
function attachSteering(c: Libc, fd: number): boolean {
  const prog = nativeArena(16 + 8 * STEER_IKE_TO_SECOND.length);
  const b = prog.buf;
  STEER_IKE_TO_SECOND.forEach(([code, jt, jf, k], i) => {
    const o = 16 + 8 * i;
    wr16(b, o, code);
    b[o + 2] = jt;
    b[o + 3] = jf;
    wr32(b, o + 4, k);
  });
  wr16(b, 0, STEER_IKE_TO_SECOND.length);
  b.writeBigUInt64LE(prog.base + 16n, 8);
  return c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, b, 16) === 0;
}

function setInt(c: Libc, fd: number, level: number, name: number, value: number): boolean {
  const v = Buffer.alloc(4);
  wr32(v, 0, value);
  return c.setsockopt(fd, level, name, v, 4) === 0;
}

export class Carrier {
  readonly stats: CarrierStats = { received: 0, sent: 0, receiveBatches: 0, sendBatches: 0, truncated: 0, sendErrors: 0, gsoSends: 0, groReceives: 0 };
  readonly fd: number;
  private readonly c: Libc;
  private readonly rx: Batch;
  private readonly tx: Batch;
  /** Packets waiting in tx for the next flush (slots 0..pending-1), in `messages` messages. */
  private pending = 0;
  private messages = 0;
  /** Each message's first slot and slot count. */
  private readonly msgFirst: Int32Array;
  private readonly msgSlots: Int32Array;
  /** The message being built: its datagram size (the first's), bytes, destination; closed by a shorter one. */
  private runSize = 0;
  private runBytes = 0;
  private runPort = 0;
  private runClosed = true;
  private readonly runDst = new Uint8Array(16);
  /** UDP segmentation offloads in use (UDP carriers, until the kernel refuses them). */
  private gso: boolean;
  readonly gro: boolean;
  /** What the last receive gave (0..got-1 are valid), and where next() is in it. */
  private got = 0;
  private at = 0;
  private piece = 0;
  private pieces = 0;
  /** The received entry whose pieces datagram() is handing out: its segment size and local address. */
  private curEntry = -1;
  private curSize = 0;
  private curDst: Buffer | undefined;
  private curSrc: Buffer = Buffer.alloc(0);
  private curAddr = '';
  private curPort = 0;
  /** UDP: the port listened on and sent to. */
  readonly port: number;

  constructor(readonly o: CarrierOptions) {
    this.port = o.port;
    this.c = libc();
    const c = this.c;
    const raw = o.encap === 'raw';
    const fd = c.socket(o.family, (raw ? SOCK_RAW : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, raw ? IPPROTO_ESP : 0);
    if (fd < 0) throw new CarrierError(`cannot open ${this.describe()}: ${errnoText(c.errno())}`);
    this.fd = fd;
    const ok = (what: string, r: boolean) => {
      if (r) return;
      const e = c.errno();
      c.close(fd);
      throw new CarrierError(`${this.describe()}: ${what}: ${errnoText(e)}`);
    };
    if (o.family === AF_INET6) {
      // (A raw IPv6 socket is IPv6 only already, and refuses the option.)
      if (!raw) ok('IPV6_V6ONLY', setInt(c, fd, IPPROTO_IPV6, IPV6_V6ONLY, 1));
      ok('IPV6_RECVPKTINFO', setInt(c, fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1));
    } else if (raw) {
      ok('IP_HDRINCL', setInt(c, fd, IPPROTO_IP, IP_HDRINCL, 1));
    } else {
      ok('IP_PKTINFO', setInt(c, fd, IPPROTO_IP, IP_PKTINFO, 1));
    }
    if (o.socketBuffer > 0) {
      setInt(c, fd, SOL_SOCKET, SO_RCVBUF, o.socketBuffer);
      setInt(c, fd, SOL_SOCKET, SO_SNDBUF, o.socketBuffer);
    }
    if (!raw && o.private) {
      const sa = Buffer.alloc(SOCKADDR_BYTES);
      wr16(sa, 0, o.family);
      const len = Int32Array.of(SOCKADDR_BYTES);
      ok('bind to a free port', c.bind(fd, sa, o.family === AF_INET ? 16 : 28) === 0 && c.getsockname(fd, sa, len) === 0);
      this.port = rd16be(sa, 2);
    } else if (!raw) {
      ok('SO_REUSEADDR', setInt(c, fd, SOL_SOCKET, SO_REUSEADDR, 1));
      ok('SO_REUSEPORT', setInt(c, fd, SOL_SOCKET, SO_REUSEPORT, 1));
      const sa = Buffer.alloc(SOCKADDR_BYTES);
      wr16(sa, 0, o.family);
      wr16be(sa, 2, o.port);
      ok(`bind to port ${o.port}`, c.bind(fd, sa, o.family === AF_INET ? 16 : 28) === 0);
      ok('SO_ATTACH_REUSEPORT_CBPF', attachSteering(c, fd));
    }
    this.gso = !raw;
    // (A kernel without UDP_GRO refuses the option: datagrams then come one by one.)
    this.gro = !raw && setInt(c, fd, SOL_UDP, UDP_GRO, 1);
    this.rx = this.gro ? new Batch(Math.min(o.batch, GRO_SLOTS), GRO_SLOT_BYTES) : new Batch(o.batch, o.slotBytes);
    this.tx = new Batch(o.batch, o.slotBytes).forSending();
    this.msgFirst = new Int32Array(o.batch);
    this.msgSlots = new Int32Array(o.batch);
  }

  /** Bytes of native memory the carrier holds (its two batches). */
  get memoryBytes(): number {
    return this.rx.arena.buf.length + this.tx.arena.buf.length;
  }

  describe(): string {
    const fam = this.o.family === AF_INET ? 'IPv4' : 'IPv6';
    return this.o.encap === 'udp' ? `the ${fam} UDP socket on port ${this.port}` : `the ${fam} raw ESP socket`;
  }

  /** Receive up to one batch (what next() had not handed out of the last one is dropped); returns how many (0 when nothing waits). */
  receive(): number {
    // The kernel rewrote the entries the last receive filled; the rest are as set up.
    this.rx.resetForReceive(this.got);
    const n = this.c.recvmmsg(this.fd, this.rx.vec, this.rx.count, MSG_DONTWAIT, null);
    if (n < 0) {
      const e = this.c.errno();
      if (e === EAGAIN || e === EINTR) return (this.got = 0);
      throw new CarrierError(`${this.describe()}: receive: ${errnoText(e)}`);
    }
    this.stats.receiveBatches++;
    this.stats.received += n;
    this.curEntry = -1;
    this.at = 0;
    this.piece = 0;
    return (this.got = n);
  }

  /** Datagrams of the last receive not yet handed out by next(). */
  get unread(): boolean {
    return this.at < this.got;
  }

  /** Whether the last receive filled the whole batch (more may be waiting). */
  get lastBatchFull(): boolean {
    return this.got === this.rx.count;
  }

  /** The next datagram of the last receive (entries in order, a UDP_GRO buffer piece by piece); only while unread. */
  next(): Received {
    if (this.piece === 0) this.pieces = this.segments(this.at);
    const d = this.datagram(this.at, this.piece);
    if (++this.piece >= this.pieces || d.truncated) {
      this.at++;
      this.piece = 0;
    }
    return d;
  }

  /** How many datagrams received entry i holds: 1, or a UDP_GRO run's count. */
  segments(i: number): number {
    this.enter(i);
    if (this.curSize === 0) return 1;
    const n = Math.ceil(this.rx.received(i) / this.curSize);
    if (n > 1) {
      this.stats.received += n - 1;
      this.stats.groReceives++;
    }
    return Math.max(n, 1);
  }

  /** Entry i's control data read once: its UDP_GRO segment size and the local address. */
  private enter(i: number): void {
    if (this.curEntry === i) return;
    this.curEntry = i;
    const b = this.rx;
    this.curSize = this.gro ? b.groSize(i) : 0;
    this.curDst = this.o.encap === 'raw' && this.o.family === AF_INET ? undefined : this.localAddress(b.control(i), this.o.family === AF_INET);
    const name = b.name(i);
    this.curPort = rd16be(name, 2);
    this.curSrc = this.o.family === AF_INET ? name.subarray(4, 8) : name.subarray(8, 24);
    this.curAddr = formatAddress(this.o.family, this.curSrc);
  }

  /**
   * Received datagram i of the last batch (piece `seg` of a UDP_GRO run), with its outer
   * header given back. The header of a piece is written over the end of the piece before
   * it: take the pieces in order, each done with before the next.
   */
  datagram(i: number, seg = 0): Received {
    const b = this.rx;
    this.enter(i);
    let len = b.received(i);
    let at = HEADROOM;
    if (this.curSize > 0) {
      at += seg * this.curSize;
      len = Math.min(this.curSize, len - seg * this.curSize);
    }
    const slot = b.slots[i];
    const truncated = (b.flags(i) & MSG_TRUNC) !== 0 || at - HEADROOM + len > b.slotBytes;
    if (truncated && seg === 0) this.stats.truncated++;
    const port = this.curPort;
    const v4 = this.o.family === AF_INET;
    const src = this.curSrc;
    const addr = this.curAddr;
    if (this.o.encap === 'raw' && v4) return { packet: slot.subarray(at, at + Math.min(len, b.slotBytes)), addr, port, truncated };
    const dst = this.curDst;
    const udp = this.o.encap === 'udp';
    const head = (v4 ? 20 : 40) + (udp ? 8 : 0);
    const start = at - head;
    const total = head + Math.max(0, Math.min(len, b.slotBytes - (at - HEADROOM)));
    const p = slot.subarray(start, start + total);
    const protocol = udp ? IPPROTO_UDP : IPPROTO_ESP;
    if (v4) {
      writeIPv4Header(p, { tos: 0, id: 0, flags: 0, ttl: 64, protocol, src, dst: dst ?? ANY4, payloadLength: total - IPV4_HEADER_BYTES });
    } else {
      writeIPv6Header(p, { trafficClass: 0, flowLabel: 0, hopLimit: 64, nextHeader: protocol, src, dst: dst ?? ANY6, payloadLength: total - IPV6_HEADER_BYTES });
    }
    if (udp) {
      const u = v4 ? 20 : 40;
      wr16be(p, u, port);
      wr16be(p, u + 2, this.port);
      wr16be(p, u + 4, total - u);
      wr16be(p, u + 6, 0);
    }
    return { packet: p, addr, port, truncated };
  }

  /** The destination address the datagram was sent to, from IP_PKTINFO / IPV6_PKTINFO. */
  private localAddress(ctl: Buffer, v4: boolean): Buffer | undefined {
    for (let off = 0; off + 16 <= ctl.length;) {
      const len = Number(ctl.readBigUInt64LE(off));
      if (len < 16) return undefined;
      const level = rd32(ctl, off + 8);
      const type = rd32(ctl, off + 12);
      if (v4 && level === IPPROTO_IP && type === IP_PKTINFO) return ctl.subarray(off + 24, off + 28);
      if (!v4 && level === IPPROTO_IPV6 && type === IPV6_PKTINFO) return ctl.subarray(off + 16, off + 32);
      off += (len + 7) & ~7;
    }
    return undefined;
  }

  /**
   * Queue an outer packet from the outbound path (its IP header first). UDP: the payload
   * after the IP header, or after the UDP header a NAT-T SA put there (`natTPort` given);
   * raw IPv4: the whole packet (IP_HDRINCL); raw IPv6: the payload after the header.
   * Returns false when the packet cannot be carried (too big for a slot).
   */
  queue(packet: Uint8Array, natTPort: number | undefined): boolean {
    const v4 = this.o.family === AF_INET;
    const ihl = v4 ? (packet[0] & 0x0f) * 4 : 40;
    let from = this.o.encap === 'raw' && v4 ? 0 : ihl;
    let port = this.port;
    if (natTPort !== undefined && this.o.encap === 'udp') {
      from = ihl + 8;
      port = natTPort;
    }
    const len = packet.length - from;
    if (len > this.tx.slotBytes || len < 0) return false;
    if (this.pending === this.tx.count) this.flush();
    const i = this.pending++;
    const slot = this.tx.slots[i];
    slot.set(packet.subarray(from), HEADROOM);
    this.tx.prepareSend(i, len, v4 ? 16 : 28);
    const dstAt = v4 ? 16 : 24;
    const dstLen = v4 ? 4 : 16;
    if (this.gso && !this.runClosed && len <= this.runSize && port === this.runPort && this.runBytes + len <= GSO_MAX_BYTES &&
        this.msgSlots[this.messages - 1] < GSO_MAX_SEGMENTS && sameBytes(packet, dstAt, this.runDst, 0, dstLen)) {
      // One more datagram of the run: the kernel cuts it off the message at runSize.
      const m = this.messages - 1;
      const n = ++this.msgSlots[m];
      this.tx.segmentMessage(m, this.msgFirst[m], n, this.runSize);
      this.runBytes += len;
      if (len < this.runSize) this.runClosed = true;
      return true;
    }
    const name = this.tx.name(i);
    name.fill(0);
    wr16(name, 0, this.o.family);
    wr16be(name, 2, this.o.encap === 'udp' ? port : 0);
    name.set(packet.subarray(dstAt, dstAt + dstLen), v4 ? 4 : 8);
    const m = this.messages++;
    this.tx.startMessage(m, i);
    this.msgFirst[m] = i;
    this.msgSlots[m] = 1;
    this.runSize = len;
    this.runBytes = len;
    this.runPort = port;
    this.runClosed = false;
    for (let k = 0; k < dstLen; k++) this.runDst[k] = packet[dstAt + k];
    return true;
  }

  /** Send what is queued. Returns how many datagrams were dropped (refused by the socket). */
  flush(): number {
    let dropped = 0;
    let at = 0;
    const total = this.messages;
    while (at < total) {
      const vec = at === 0 ? this.tx.msgs : this.tx.msgs.subarray(at * MMSGHDR_BYTES);
      const n = this.c.sendmmsg(this.fd, vec, total - at, MSG_DONTWAIT);
      if (n < 0) {
        const e = this.c.errno();
        if (e === EINTR) continue;
        const slots = this.msgSlots[at];
        if (slots > 1 && e !== EAGAIN) {
          // The run was refused as a run (EIO: the device cannot checksum it; EINVAL/EMSGSIZE:
          // the route's MTU): its datagrams go one by one, and after EIO no run is tried again.
          if (e === EIO) this.gso = false;
          dropped += this.sendAlone(this.msgFirst[at], slots);
          at++;
          continue;
        }
        // The first message of the rest was refused: drop it, try the others; when the send
        // buffer is full (EAGAIN) the rest would be refused too.
        let lost = slots;
        at++;
        if (e === EAGAIN) for (; at < total; at++) lost += this.msgSlots[at];
        this.stats.sendErrors += lost;
        this.stats.lastSendError = errnoText(e);
        dropped += lost;
        continue;
      }
      this.stats.sendBatches++;
      for (let m = at; m < at + n; m++) {
        this.stats.sent += this.msgSlots[m];
        if (this.msgSlots[m] > 1) this.stats.gsoSends++;
      }
      at += n;
    }
    this.pending = 0;
    this.messages = 0;
    this.runClosed = true;
    return dropped;
  }

  /** Slots first … first+n-1 sent as single datagrams (their own entries); returns how many were refused. */
  private sendAlone(first: number, n: number): number {
    this.tx.copyName(first, n, this.o.family === AF_INET ? 16 : 28);
    let at = 0;
    let dropped = 0;
    while (at < n) {
      const r = this.c.sendmmsg(this.fd, this.tx.vec.subarray((first + at) * MMSGHDR_BYTES), n - at, MSG_DONTWAIT);
      if (r < 0) {
        const e = this.c.errno();
        if (e === EINTR) continue;
        this.stats.sendErrors++;
        this.stats.lastSendError = errnoText(e);
        dropped++;
        at++;
        continue;
      }
      this.stats.sendBatches++;
      this.stats.sent += r;
      at += r;
    }
    return dropped;
  }

  close(): void {
    this.c.close(this.fd);
  }
}
