/**
 * The data plane's runtime: KLIPS's ipsec0 as a TUN device and the ESP carriers (UDP or
 * raw, IPv4 and IPv6) tied to the engine's live tables through the outbound path (xmit)
 * and the inbound path (rcv). One event loop does it all, beside the PF_KEY server:
 *
 *   idle:    the TUN and the carriers are watched from Node's own event loop (libuv's
 *            uv_poll, through koffi); one turning readable starts a turn. Where libuv's
 *            symbols are not found, a poll() on the thread pool does it (with a wake pipe).
 *   a turn:  drain each ready source (TUN: one packet, or with offloads one TCP
 *            super-segment, per read; carriers: a batch per recvmmsg, UDP_GRO buffers cut
 *            into their datagrams), run the paths, merge the inbound TCP segments for the
 *            TUN (gso.ts), send each carrier's batch with one sendmmsg (UDP_SEGMENT runs
 *            where the datagrams allow); then,
 *            while packets keep coming, wait for the next ones right here (ppoll, up to
 *            200 µs) and drain again, serving only the descriptors that are ready. After
 *            1 ms the turn ends and the event loop runs (PF_KEY messages, timers) before
 *            the next turn; after 50 ms without a packet the runtime goes back to idle.
 *
 * A wake-up of a sleeping thread costs 50–300 µs on a VM's idle vCPU; the thread pool's
 * poll costs two of them, the event loop's watch and a wait inside a turn one.
 *
 * Between packets: for 10 s after the last one, a timer takes one private packet of each
 * suite through the paths every 4 ms (warmup.ts's tick), so a packet after a pause finds
 * the code compiled and in the caches (an isolated ping's RTT fell from 1.3-1.4 ms to
 * about 0.65 ms on the benchmark machine, for 5% of a core while the ticks last). Under
 * load the ticks do nothing.
 *
 * Nothing queues in user space: a packet is read, transformed and handed to the kernel in
 * the same turn (a received batch may straddle two turns when the first runs out of time). Under overload the kernel's own bounded queues (the TUN's txqueuelen, the
 * sockets' buffers) drop, and the runtime reports their counters beside its own. Memory
 * is the fixed arenas, allocated at start (see `memoryBound`).
 *
 * Held packets released by the engine (a %hold or %trap eroute replaced once the SA
 * arrives) go out through the outbound path at once.
 */

import fs from 'node:fs';
import type { Engine } from '../engine/engine.js';
import type { Eroute } from '../spd/eroute-table.js';
import { AF_INET, AF_INET6 } from '../wire/index.js';
import { Carrier, type CarrierStats } from './carrier.js';
import { DEFAULT_RUNTIME, type Encap, type RuntimeOptions } from './runtime-options.js';
import { rd16, wr16, wr32 } from '../wire/bytes.js';

export { DEFAULT_RUNTIME, type Encap, type RuntimeOptions };
import {
  EAGAIN, EINTR, O_CLOEXEC, O_NONBLOCK, POLLIN, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, errnoText, libc, watchFromLoop,
  type Libc, type LoopWatch,
} from './libc.js';
import { dataplaneCounters, type DataplaneCounters } from './counters.js';
import { TunCoalescer, VNET_HDR_BYTES, offloadedPackets } from './gso.js';
import { rcv, type RcvOptions } from './rcv.js';
import { openTun, type TunDevice } from './tun.js';
import { WarmPaths } from './warmup.js';
import { pieceOptions, xmit } from './xmit.js';

const IPPROTO_RAW = 255;

/** Drops the runtime itself makes, past the paths' own counters. */
export interface RuntimeDrops {
  /** Outbound: the outer packet's family has no carrier. */
  noCarrier: number;
  /** Outbound: the outer packet is larger than a carrier slot. */
  tooBig: number;
  /** Outbound: the socket refused the packet (send buffer full, unreachable, …). */
  txRefused: number;
  /** Inbound: a datagram larger than a slot. */
  truncated: number;
  /** Inbound: the TUN device refused the inner packet. */
  tunWrite: number;
  /** Outbound %pass: the clear packet could not be sent. */
  passUnsent: number;
  /** Outbound: the TUN device's offload header made no sense (the read is dropped). */
  badVnetHeader: number;
}

export interface RuntimeStats {
  interface: string;
  mtu: number;
  encap: Encap;
  udpPort?: number;
  /** Reads and writes on the TUN device; `merged`: inbound segments written inside another's super-segment. */
  tun: { read: number; written: number; merged: number };
  carriers: (CarrierStats & { family: string })[];
  turns: number;
  wakes: number;
  /** Turns that ended with a source still full (the next turn came at once). */
  busyTurns: number;
  /** The keep-warm ticks run, and the private packets they took across (warmup.ts; none reach the real tables). */
  warm: { ticks: number; packets: number };
  drops: RuntimeDrops;
  /** Bytes of packet memory held, fixed at start. */
  memoryBound: number;
  /** The outbound and inbound paths' counters (drops by reason), as dataplaneCounters gives them. */
  paths: DataplaneCounters;
  /** The kernel's own drops on the TUN device (its queue full: klipsd not reading fast enough). */
  kernel?: { tunTxDropped: number; tunRxDropped: number };
}

export class RuntimeError extends Error {}

export class DataplaneRuntime {
  private readonly c: Libc;
  readonly tun: TunDevice;
  private readonly carriers = new Map<number, Carrier>();
  private readonly pass = new Map<number, number>();
  private readonly tunBuf: Buffer;
  /** Offloads: where a super-segment's pieces are built, and the header-prefixed write buffer. */
  private readonly segBuf: Buffer;
  private readonly tunOut: Buffer;
  /** Offloads: the inbound path's TCP segments merged into super-segments (gso.ts). */
  private readonly gro: TunCoalescer | undefined;
  private readonly pollfds: Buffer;
  private readonly nfds: number;
  private readonly wake: Int32Array = new Int32Array(2);
  private readonly wakeByte = Buffer.of(1);
  private closed = false;
  private polling = false;
  private pollDone: (() => void) | undefined;
  /** Idle: the TUN and carrier descriptors watched from the event loop itself, where libuv's symbols were found. */
  private readonly watch: LoopWatch | undefined;
  private readonly turnBudget: number;
  private readonly rcvOptions: RcvOptions;
  private readonly waitSpec = Buffer.alloc(16);
  private turnEnds = 0;
  private readonly counters = {
    tunRead: 0, tunWritten: 0, turns: 0, wakes: 0, busyTurns: 0, warmTicks: 0, warmPackets: 0,
    drops: { noCarrier: 0, tooBig: 0, txRefused: 0, truncated: 0, tunWrite: 0, passUnsent: 0, badVnetHeader: 0 } as RuntimeDrops,
  };
  readonly memoryBound: number;

  private constructor(readonly engine: Engine, readonly o: RuntimeOptions) {
    this.c = libc();
    this.tun = openTun(o.interface, o.mtu, o.offload);
    const slot = Math.max(o.mtu + 256, 2048);
    try {
      for (const family of o.families) {
        try {
          this.carriers.set(family, new Carrier({ family, encap: o.encap, port: o.udpPort, batch: o.batch, slotBytes: slot, socketBuffer: o.socketBuffer, private: false }));
        } catch (e) {
          if (this.carriers.size === 0 && family === o.families[o.families.length - 1]) throw e;
          o.log?.('warn', `${(e as Error).message}: that family is not carried`);
        }
      }
      if (this.carriers.size === 0) throw new RuntimeError('no carrier socket could be opened');
      if (this.c.pipe2(this.wake, O_NONBLOCK | O_CLOEXEC) < 0) throw new RuntimeError(`pipe: ${errnoText(this.c.errno())}`);
    } catch (e) {
      for (const k of this.carriers.values()) k.close();
      this.tun.close();
      throw e;
    }
    this.tunBuf = Buffer.allocUnsafeSlow(65536 + VNET_HDR_BYTES);
    this.segBuf = Buffer.allocUnsafeSlow(65536);
    this.tunOut = Buffer.alloc(65536 + VNET_HDR_BYTES);
    if (this.tun.offload) this.gro = new TunCoalescer((p) => this.writeTun(p), (buf, len) => this.writeHeld(buf, len));
    this.turnBudget = o.batch * 4;
    this.rcvOptions = { natTPort: o.udpPort, udpCarrier: o.encap === 'udp', inPlace: true };
    this.waitSpec.writeBigInt64LE(BigInt(o.waitMicros * 1000), 8);
    const fds = [this.wake[0], this.tun.fd, ...[...this.carriers.values()].map((k) => k.fd)];
    this.nfds = fds.length;
    this.watch = o.loopWatch ? watchFromLoop(fds.slice(1), this.woken) : undefined;
    this.pollfds = Buffer.alloc(8 * fds.length);
    fds.forEach((fd, i) => {
      wr32(this.pollfds, i * 8, fd);
      wr16(this.pollfds, i * 8 + 4, POLLIN);
    });
    if (o.warmUp) this.warm = this.newWarmPaths();
    this.memoryBound = (this.warm?.memoryBytes ?? 0) + this.tunBuf.length + this.segBuf.length + 2 * this.tunOut.length + [...this.carriers.values()].reduce((n, k) => n + k.memoryBytes, 0);
  }

  /** Open the TUN device and the carriers, and start moving packets. Throws RuntimeError/TunError/CarrierError. */
  static start(engine: Engine, opts: Partial<RuntimeOptions> = {}): DataplaneRuntime {
    const o: RuntimeOptions = { ...DEFAULT_RUNTIME, ...opts };
    const rt = new DataplaneRuntime(engine, o);
    if (rt.warm) {
      const t0 = performance.now();
      const crossed = rt.warm.run();
      if (crossed > 0) o.log?.('info', 'data plane paths compiled', { packets: crossed, ms: Math.round(performance.now() - t0) });
      else rt.dropWarm();
    }
    engine.onRelease = (e, packets) => rt.release(e, packets);
    rt.attach(true);
    rt.arm();
    o.log?.('info', 'data plane running', {
      interface: rt.tun.name, mtu: o.mtu, encap: o.encap, udpPort: o.encap === 'udp' ? o.udpPort : undefined,
      families: [...rt.carriers.keys()].map((f) => (f === AF_INET ? 'inet' : 'inet6')), memoryBound: rt.memoryBound,
    });
    return rt;
  }

  private arm(): void {
    if (this.closed || this.polling) return;
    this.polling = true;
    if (this.watch) {
      this.watch.start();
      return;
    }
    this.c.pollAsync(this.pollfds, this.nfds, -1, (err) => {
      if (this.closed) this.pollDone?.();
      else if (err) this.o.log?.('error', `poll failed: ${String(err)}`);
      this.woken();
    });
  }

  /** The idle wait (the event loop's watch, which has stopped itself, or the pool's poll) saw something readable. */
  private readonly woken = (): void => {
    this.polling = false;
    if (this.closed) return;
    this.counters.wakes++;
    this.turn();
  };

  /**
   * One turn: drain what is ready, then, while packets flow, wait for more right here
   * (ppoll, up to waitMicros) and drain again, until turnMs has passed; then the event loop
   * runs (PF_KEY, timers) and the next turn follows at once. Idle for activeMs: back to
   * the thread pool's poll.
   */
  private readonly turn = (): void => {
    if (this.closed) return;
    this.counters.turns++;
    const start = performance.now();
    this.turnEnds = start + this.o.turnMs;
    let all = true;
    for (;;) {
      const before = this.counters.tunRead + this.received();
      let busy = false;
      // (The packets of one drain count their traffic on one reading of the clock.)
      this.engine.beginBatch();
      try {
        if (all || this.ready(1)) busy = this.outbound();
        let i = 2;
        for (const k of this.carriers.values()) {
          // (A carrier with datagrams of its last receive still unread is ready whatever ppoll said.)
          if (all || k.unread || this.ready(i)) busy = this.inbound(k) || busy;
          i++;
        }
        this.flush();
      } catch (e) {
        this.o.log?.('error', `data plane turn failed: ${(e as Error).stack ?? String(e)}`);
      } finally {
        this.engine.endBatch();
      }
      const now = performance.now();
      if (this.counters.tunRead + this.received() !== before) {
        this.lastPacket = now;
        this.keepWarm();
      }
      if (now >= this.turnEnds) {
        if (busy) this.counters.busyTurns++;
        setImmediate(this.turn);
        return;
      }
      if (busy) {
        all = true;
        continue;
      }
      if (now - this.lastPacket >= this.o.activeMs) {
        this.arm();
        return;
      }
      const wait = Math.min(this.o.waitMicros, Math.ceil((this.turnEnds - now) * 1000));
      this.waitSpec.writeBigInt64LE(BigInt(wait * 1000), 8);
      all = false;
      // (The wake pipe needs no look here: close() runs between turns, never during one.)
      this.c.ppoll(this.pollfds, this.nfds, this.waitSpec, null);
    }
  };

  /** Whether pollfd i reported something (revents) at the last ppoll. */
  private ready(i: number): boolean {
    return rd16(this.pollfds, i * 8 + 6) !== 0;
  }

  private lastPacket = -Infinity;
  private warm: WarmPaths | undefined;
  private warmTimer: NodeJS.Timeout | undefined;

  /** A packet came: keep the paths warm for warmForMs from now (see RuntimeOptions.keepWarmMs). */
  private keepWarm(): void {
    if (this.warmTimer || !this.o.keepWarmMs || !this.warm) return;
    this.warmTimer = setInterval(this.warmTick, this.o.keepWarmMs);
    this.warmTimer.unref();
  }

  private readonly warmTick = (): void => {
    if (this.closed || performance.now() - this.lastPacket > this.o.warmForMs) {
      clearInterval(this.warmTimer);
      this.warmTimer = undefined;
      return;
    }
    // (While packets flow the paths are warm already.)
    if (performance.now() - this.lastPacket < this.o.keepWarmMs) return;
    const crossed = this.warm!.tick();
    this.counters.warmTicks++;
    this.counters.warmPackets += crossed;
    if (crossed > 0) return;
    // (Its SAs ran out of sequence numbers after 2^32 ticks: start afresh. If the fresh
    // ones do not cross either, the loopback is down: stop.)
    this.warm!.close();
    this.warm = this.newWarmPaths();
    if (this.warm === undefined || this.warm.tick() === 0) this.dropWarm();
  };

  /** Private paths for the warm-up and its ticks, or undefined (logged) where they cannot be made. */
  private newWarmPaths(): WarmPaths | undefined {
    try {
      return new WarmPaths({ offload: this.tun.offload });
    } catch (e) {
      this.o.log?.('warn', `no data plane warm-up: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** The private packets do not cross (they go from 127.0.0.1 to 127.0.0.2: is lo down?): no warm-up, no ticks. */
  private dropWarm(): void {
    this.warm?.close();
    this.warm = undefined;
    clearInterval(this.warmTimer);
    this.warmTimer = undefined;
    this.o.log?.('warn', 'no data plane warm-up: its private packets do not cross (is lo down?)');
  }

  private received(): number {
    let n = 0;
    for (const k of this.carriers.values()) n += k.stats.received;
    return n;
  }

  /** TUN → xmit → carriers; true when the budget ran out with packets left. */
  private outbound(): boolean {
    const fd = this.tun.fd;
    for (let i = 0; i < this.turnBudget; i++) {
      const n = this.c.read(fd, this.tunBuf, this.tunBuf.length);
      if (n < 0) {
        const e = this.c.errno();
        if (e !== EAGAIN && e !== EINTR) this.o.log?.('error', `read from ${this.tun.name}: ${errnoText(e)}`);
        return false;
      }
      this.counters.tunRead++;
      if (!this.tun.offload) this.send(this.tunBuf.subarray(0, n));
      else if (offloadedPackets(this.tunBuf, n, this.segBuf, this.sendOne)) this.counters.drops.badVnetHeader++;
      // (One read may be a 64 KB super-segment, dozens of packets: the clock is read after each.)
      if (performance.now() > this.turnEnds) return true;
    }
    return true;
  }

  /** A piece of an offloaded read; the pieces after the first take the first one's route (XmitOptions.sameFlow). */
  private readonly sendOne = (packet: Buffer, piece: number): void => this.send(packet, piece);

  /** One packet through the outbound path, and onto its carrier. */
  private send(packet: Uint8Array, piece = 0): void {
    const r = xmit(this.engine, packet, pieceOptions(piece));
    if (r.ok) {
      if (r.action === 'pass') {
        this.sendClear(r.out.packet);
        return;
      }
      const outer = r.out.packet;
      const k = this.carriers.get(outer[0] >> 4 === 4 ? AF_INET : AF_INET6);
      if (!k) this.counters.drops.noCarrier++;
      else if (!k.queue(outer, r.out.natTPort)) this.counters.drops.tooBig++;
      return;
    }
    if (r.icmp) this.writeTun(r.icmp);
  }

  /**
   * Carrier → rcv → TUN; true when there may be more (a whole batch came, or the turn's
   * time ran out with datagrams of the last receive still unread: the next turn goes on
   * from there, so a 64 KB UDP_GRO buffer never holds a turn past its time by much).
   */
  private inbound(k: Carrier): boolean {
    let n = 0;
    for (let round = 0; round < 4; round++) {
      if (!k.unread && k.receive() === 0) return false;
      while (k.unread) {
        const d = k.next();
        if (d.truncated) this.counters.drops.truncated++;
        else {
          const r = rcv(this.engine, d.packet, d, this.rcvOptions);
          if (r.ok && r.kind === 'ipsec') {
            if (this.gro) this.gro.add(r.packet);
            else this.writeTun(r.packet);
          }
        }
        if ((++n & 7) === 0 && performance.now() > this.turnEnds) {
          this.gro?.flush();
          return true;
        }
      }
      this.gro?.flush();
      if (!k.lastBatchFull) return false;
      if (performance.now() > this.turnEnds) return true;
    }
    return true;
  }

  private writeTun(packet: Uint8Array): void {
    let n: number;
    if (this.tun.offload) {
      // An all-zero virtio_net_hdr: a whole packet, checksums done.
      this.tunOut.set(packet, VNET_HDR_BYTES);
      n = this.c.write(this.tun.fd, this.tunOut, VNET_HDR_BYTES + packet.length);
    } else {
      n = this.c.write(this.tun.fd, packet, packet.length);
    }
    if (n < 0) this.counters.drops.tunWrite++;
    else this.counters.tunWritten++;
  }

  /** The coalescer's buffer: a virtio_net_hdr and one packet or super-segment. */
  private writeHeld(buf: Buffer, len: number): void {
    if (this.c.write(this.tun.fd, buf, len) < 0) this.counters.drops.tunWrite++;
    else this.counters.tunWritten++;
  }

  private flush(): void {
    for (const k of this.carriers.values()) this.counters.drops.txRefused += k.flush();
  }

  /** %pass: the packet leaves as it is, through a raw socket that takes whole IP packets. */
  private sendClear(packet: Uint8Array): void {
    const family = packet[0] >> 4 === 4 ? AF_INET : AF_INET6;
    let fd = this.pass.get(family);
    if (fd === undefined) {
      fd = this.c.socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
      this.pass.set(family, fd);
    }
    const sa = Buffer.alloc(family === AF_INET ? 16 : 28);
    wr16(sa, 0, family);
    if (family === AF_INET) sa.set(packet.subarray(16, 20), 4);
    else sa.set(packet.subarray(24, 40), 8);
    if (fd < 0 || this.c.sendto(fd, packet, packet.length, 0, sa, sa.length) < 0) this.counters.drops.passUnsent++;
  }

  /** The engine released packets held on a %hold/%trap eroute: send them now. */
  release(_e: Eroute, packets: Uint8Array[]): void {
    if (this.closed) return;
    for (const p of packets) this.send(p);
    this.flush();
  }

  stats(): RuntimeStats {
    const c = this.counters;
    const s: RuntimeStats = {
      interface: this.tun.name, mtu: this.o.mtu, encap: this.o.encap,
      tun: { read: c.tunRead, written: c.tunWritten, merged: this.gro?.merged ?? 0 },
      carriers: [...this.carriers].map(([f, k]) => ({ family: f === AF_INET ? 'inet' : 'inet6', ...k.stats })),
      turns: c.turns, wakes: c.wakes, busyTurns: c.busyTurns, warm: { ticks: c.warmTicks, packets: c.warmPackets }, drops: { ...c.drops }, memoryBound: this.memoryBound,
      paths: dataplaneCounters(this.engine),
    };
    if (this.o.encap === 'udp') s.udpPort = this.o.udpPort;
    const k = kernelCounters(this.tun.name);
    if (k) s.kernel = k;
    return s;
  }

  /** Mark the engine's interface of the same name as carried (klips tncfg shows it), or no longer. */
  private attach(on: boolean): void {
    for (const i of this.engine.interfaces.values()) {
      if (i.name !== this.tun.name) continue;
      if (on) i.attached = { via: this.o.encap === 'udp' ? `udp:${this.o.udpPort}` : 'raw', mtu: this.o.mtu };
      else delete i.attached;
    }
  }

  /** Stop: the poll returns (wake pipe), then the TUN device and the sockets are closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.warmTimer);
    if (this.engine.onRelease) this.engine.onRelease = undefined;
    this.attach(false);
    if (this.watch) {
      this.watch.close();
      this.polling = false;
    } else if (this.polling) {
      const done = new Promise<void>((resolve) => { this.pollDone = resolve; });
      this.c.write(this.wake[1], this.wakeByte, 1);
      await done;
    }
    for (const k of this.carriers.values()) k.close();
    for (const fd of this.pass.values()) if (fd >= 0) this.c.close(fd);
    this.c.close(this.wake[0]);
    this.c.close(this.wake[1]);
    this.warm?.close();
    this.tun.close();
    this.o.log?.('info', 'data plane stopped', { interface: this.tun.name });
  }
}

function kernelCounters(name: string): RuntimeStats['kernel'] | undefined {
  try {
    const read = (f: string) => Number(fs.readFileSync(`/sys/class/net/${name}/statistics/${f}`, 'utf8'));
    return { tunTxDropped: read('tx_dropped'), tunRxDropped: read('rx_dropped') };
  } catch {
    return undefined;
  }
}
