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
  EAGAIN, EINTR, IOVEC_BYTES, IPPROTO_IP, IPPROTO_IPV6, IPV6_PKTINFO, IPV6_RECVPKTINFO, IPV6_V6ONLY, IP_HDRINCL,
  IP_PKTINFO, MMSGHDR_BYTES, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOL_SOCKET, SO_RCVBUF,
  SO_ATTACH_REUSEPORT_CBPF, SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, errnoText, libc, nativeArena, type Libc,
  type NativeArena,
} from './libc.js';
import { formatAddress } from '../wire/sockaddr.js';
import { IPPROTO_UDP, IPV4_HEADER_BYTES, IPV6_HEADER_BYTES, writeIPv4Header, writeIPv6Header } from './packet.js';

import type { Encap } from './runtime-options.js';

export type { Encap };

/** The destination given back when the kernel gave no IP_PKTINFO / IPV6_PKTINFO. */
const ANY4 = new Uint8Array(4);
const ANY6 = new Uint8Array(16);
const SOCKADDR_BYTES = 28;
const CONTROL_BYTES = 64;
/** Room before each received payload for the headers given back (IPv6 40 + UDP 8). */
export const HEADROOM = 48;
const MSG_TRUNC = 0x20;

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

  constructor(readonly count: number, readonly slotBytes: number) {
    this.hdrOff = 0;
    this.iovOff = count * MMSGHDR_BYTES;
    this.nameOff = this.iovOff + count * IOVEC_BYTES;
    this.ctlOff = this.nameOff + count * SOCKADDR_BYTES;
    const dataOff = this.ctlOff + count * CONTROL_BYTES;
    this.arena = nativeArena(dataOff + count * (HEADROOM + slotBytes));
    const b = this.arena.buf;
    this.vec = b.subarray(0, this.iovOff);
    this.slots = [];
    for (let i = 0; i < count; i++) {
      const data = dataOff + i * (HEADROOM + slotBytes);
      this.slots.push(b.subarray(data, data + HEADROOM + slotBytes));
      const iov = this.iovOff + i * IOVEC_BYTES;
      b.writeBigUInt64LE(this.arena.base + BigInt(data + HEADROOM), iov);
      b.writeBigUInt64LE(BigInt(slotBytes), iov + 8);
      const h = this.hdrOff + i * MMSGHDR_BYTES;
      b.writeBigUInt64LE(this.arena.base + BigInt(this.nameOff + i * SOCKADDR_BYTES), h);
      b.writeUInt32LE(SOCKADDR_BYTES, h + 8);
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
      b.writeUInt32LE(SOCKADDR_BYTES, h + 8);
      // msg_controllen is a size_t: its high half stays 0.
      b.writeUInt32LE(CONTROL_BYTES, h + 40);
      b.writeUInt32LE(0, h + 48);
    }
  }

  received(i: number): number {
    return this.arena.buf.readUInt32LE(i * MMSGHDR_BYTES + 56);
  }

  flags(i: number): number {
    return this.arena.buf.readInt32LE(i * MMSGHDR_BYTES + 48);
  }

  name(i: number): Buffer {
    return this.arena.buf.subarray(this.nameOff + i * SOCKADDR_BYTES, this.nameOff + (i + 1) * SOCKADDR_BYTES);
  }

  /** The control area as received (msg_controllen bytes of cmsgs). */
  control(i: number): Buffer {
    const len = this.arena.buf.readUInt32LE(i * MMSGHDR_BYTES + 40);
    const off = this.ctlOff + i * CONTROL_BYTES;
    return this.arena.buf.subarray(off, off + Math.min(len, CONTROL_BYTES));
  }

  /** Make this a sending batch: no control data in any entry (set once). */
  forSending(): this {
    for (let i = 0; i < this.count; i++) this.arena.buf.fill(0, i * MMSGHDR_BYTES + 32, i * MMSGHDR_BYTES + 48);
    return this;
  }

  /** Before a send of slot i: `len` payload bytes to the address already in name(i). */
  prepareSend(i: number, len: number, nameLen: number): void {
    const b = this.arena.buf;
    const h = i * MMSGHDR_BYTES;
    b.writeUInt32LE(nameLen, h + 8);
    b.writeUInt32LE(len, this.iovOff + i * IOVEC_BYTES + 8);
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
    b.writeUInt16LE(code, o);
    b[o + 2] = jt;
    b[o + 3] = jf;
    b.writeUInt32LE(k, o + 4);
  });
  b.writeUInt16LE(STEER_IKE_TO_SECOND.length, 0);
  b.writeBigUInt64LE(prog.base + 16n, 8);
  return c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, b, 16) === 0;
}

function setInt(c: Libc, fd: number, level: number, name: number, value: number): boolean {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  return c.setsockopt(fd, level, name, v, 4) === 0;
}

export class Carrier {
  readonly stats: CarrierStats = { received: 0, sent: 0, receiveBatches: 0, sendBatches: 0, truncated: 0, sendErrors: 0 };
  readonly fd: number;
  private readonly c: Libc;
  private readonly rx: Batch;
  private readonly tx: Batch;
  /** Packets waiting in tx for the next flush. */
  private pending = 0;
  /** What the last receive gave (0..got-1 are valid). */
  private got = 0;

  constructor(readonly o: CarrierOptions) {
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
    if (!raw) {
      ok('SO_REUSEADDR', setInt(c, fd, SOL_SOCKET, SO_REUSEADDR, 1));
      ok('SO_REUSEPORT', setInt(c, fd, SOL_SOCKET, SO_REUSEPORT, 1));
      const sa = Buffer.alloc(SOCKADDR_BYTES);
      sa.writeUInt16LE(o.family, 0);
      sa.writeUInt16BE(o.port, 2);
      ok(`bind to port ${o.port}`, c.bind(fd, sa, o.family === AF_INET ? 16 : 28) === 0);
      ok('SO_ATTACH_REUSEPORT_CBPF', attachSteering(c, fd));
    }
    this.rx = new Batch(o.batch, o.slotBytes);
    this.tx = new Batch(o.batch, o.slotBytes).forSending();
  }

  describe(): string {
    const fam = this.o.family === AF_INET ? 'IPv4' : 'IPv6';
    return this.o.encap === 'udp' ? `the ${fam} UDP socket on port ${this.o.port}` : `the ${fam} raw ESP socket`;
  }

  /** Receive up to one batch; returns how many (0 when nothing waits). */
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
    return (this.got = n);
  }

  /** Received datagram i of the last batch, with its outer header given back. */
  datagram(i: number): Received {
    const b = this.rx;
    const len = b.received(i);
    const slot = b.slots[i];
    const truncated = (b.flags(i) & MSG_TRUNC) !== 0 || len > b.slotBytes;
    if (truncated) this.stats.truncated++;
    const name = b.name(i);
    const port = name.readUInt16BE(2);
    const v4 = this.o.family === AF_INET;
    const src = v4 ? name.subarray(4, 8) : name.subarray(8, 24);
    const addr = formatAddress(this.o.family, src);
    if (this.o.encap === 'raw' && v4) return { packet: slot.subarray(HEADROOM, HEADROOM + Math.min(len, b.slotBytes)), addr, port, truncated };
    const dst = this.localAddress(b.control(i), v4);
    const udp = this.o.encap === 'udp';
    const head = (v4 ? 20 : 40) + (udp ? 8 : 0);
    const start = HEADROOM - head;
    const total = head + Math.min(len, b.slotBytes);
    const p = slot.subarray(start, start + total);
    const protocol = udp ? IPPROTO_UDP : IPPROTO_ESP;
    if (v4) {
      writeIPv4Header(p, { tos: 0, id: 0, flags: 0, ttl: 64, protocol, src, dst: dst ?? ANY4, payloadLength: total - IPV4_HEADER_BYTES });
    } else {
      writeIPv6Header(p, { trafficClass: 0, flowLabel: 0, hopLimit: 64, nextHeader: protocol, src, dst: dst ?? ANY6, payloadLength: total - IPV6_HEADER_BYTES });
    }
    if (udp) {
      const u = v4 ? 20 : 40;
      p.writeUInt16BE(port, u);
      p.writeUInt16BE(this.o.port, u + 2);
      p.writeUInt16BE(total - u, u + 4);
      p.writeUInt16BE(0, u + 6);
    }
    return { packet: p, addr, port, truncated };
  }

  /** The destination address the datagram was sent to, from IP_PKTINFO / IPV6_PKTINFO. */
  private localAddress(ctl: Buffer, v4: boolean): Buffer | undefined {
    for (let off = 0; off + 16 <= ctl.length;) {
      const len = Number(ctl.readBigUInt64LE(off));
      if (len < 16) return undefined;
      const level = ctl.readInt32LE(off + 8);
      const type = ctl.readInt32LE(off + 12);
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
    let port = this.o.port;
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
    const name = this.tx.name(i);
    name.fill(0);
    name.writeUInt16LE(this.o.family, 0);
    name.writeUInt16BE(this.o.encap === 'udp' ? port : 0, 2);
    if (v4) name.set(packet.subarray(16, 20), 4);
    else name.set(packet.subarray(24, 40), 8);
    this.tx.prepareSend(i, len, v4 ? 16 : 28);
    return true;
  }

  /** Send what is queued. Returns how many were dropped (refused by the socket). */
  flush(): number {
    let dropped = 0;
    let at = 0;
    while (at < this.pending) {
      const vec = at === 0 ? this.tx.vec : this.tx.vec.subarray(at * MMSGHDR_BYTES);
      const n = this.c.sendmmsg(this.fd, vec, this.pending - at, MSG_DONTWAIT);
      if (n < 0) {
        const e = this.c.errno();
        if (e === EINTR) continue;
        // The first packet of the rest was refused: drop it, try the others.
        this.stats.sendErrors++;
        this.stats.lastSendError = errnoText(e);
        dropped++;
        at++;
        if (e === EAGAIN) {
          // Send buffer full: the rest would be refused too.
          this.stats.sendErrors += this.pending - at;
          dropped += this.pending - at;
          break;
        }
        continue;
      }
      this.stats.sendBatches++;
      this.stats.sent += n;
      at += n;
    }
    this.pending = 0;
    return dropped;
  }

  close(): void {
    this.c.close(this.fd);
  }
}
