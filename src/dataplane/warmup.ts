/**
 * The data plane's warm-up, and what keeps the paths warm between packets.
 *
 * At start, before the runtime takes its first packet, the outbound and inbound paths run
 * a few thousand packets between two private engines, so that V8 has compiled them
 * (TurboFan). The packets take the runtime's own route: a TUN-like read (offloaded or
 * not), xmit, a carrier's send batch, a real receive from a private UDP socket (on a
 * port the kernel picks; it sends from 127.0.0.1 to itself at 127.0.0.2), rcv with the
 * runtime's options, the coalescer. So the compiled code
 * has seen the objects real traffic brings (the carrier's received datagrams, SAs made by
 * the ADD fast path, Buffers where the runtime has Buffers): code trained on other shapes
 * is thrown away at the first real packet, and a tunnel that carries one ping every 200
 * ms never runs long enough to compile it again.
 *
 * Between packets (`tick`, from the runtime's timer while traffic is recent), one small
 * packet of each suite crosses the same way, so the next real packet finds code and data
 * in the caches: on the 2-vCPU machine of BENCHMARKS.md an outbound packet took 60-70 µs
 * after 20 ms idle, 6-10 µs with the ticks.
 *
 * The private engines (their own SA and eroute tables, random keys, TEST-NET inner
 * addresses, 127.0.0.1 and 127.0.0.2 outside) and the private socket reach nothing of klipsd's:
 * not its tables, counters, PF_KEY sockets or carriers.
 *
 * What runs: KLIPS's tun + esp group for each suite a tunnel is likely to carry (AES-GCM,
 * AES-CBC with HMAC-SHA1 and with HMAC-SHA2-256), full-size and ACK-size TCP packets,
 * the TUN offload's cutting (gso.ts) and the coalescer that merges them back.
 */

import { randomBytes } from 'node:crypto';
import { Engine } from '../engine/engine.js';
import { PfkeySocket } from '../socket/pfkey-socket.js';
import {
  AF_INET, SADB_ADD, SADB_AALG_SHA1HMAC, SADB_X_AALG_SHA2_256HMAC, SADB_SASTATE_MATURE, SADB_SATYPE_ESP,
  SADB_X_ADDFLOW, SADB_X_EALG_AESCBC, SADB_X_EALG_AES_GCM_ICV16, SADB_X_GRPSA, SADB_X_SATYPE_IPIP, buildMessage,
  type Address, type MessageInput,
} from '../wire/index.js';
import { Carrier } from './carrier.js';
import { TunCoalescer, VNET_HDR_BYTES, offloadedPackets } from './gso.js';
import { buildIPv4Header, internetChecksum, onesSum } from './packet.js';
import { rcv, type RcvOptions } from './rcv.js';
import { pieceOptions, xmit } from './xmit.js';
import { wr16, wr16be, wr32be } from '../wire/bytes.js';

/** The private tunnels' ends, on the loopback network (the private carrier sends from WEST to EAST). */
const WEST = '127.0.0.1';
const EAST = '127.0.0.2';
const SUITES = [
  { encrypt: SADB_X_EALG_AES_GCM_ICV16, encBits: 160, auth: 0, authBits: 0 },
  { encrypt: SADB_X_EALG_AESCBC, encBits: 128, auth: SADB_AALG_SHA1HMAC, authBits: 160 },
  { encrypt: SADB_X_EALG_AESCBC, encBits: 128, auth: SADB_X_AALG_SHA2_256HMAC, authBits: 256 },
] as const;

const address = (a: string): Address => ({ proto: 0, prefixlen: 0, family: AF_INET, port: 0, addr: a });
const sa = (spi: number, auth = 0, encrypt = 0) => ({ spi, replay: 32, state: SADB_SASTATE_MATURE, auth, encrypt, flags: 0 });

/** Install tun 0x200+i and esp 0x100+i (west → east), grouped, on one engine; west also routes 10.1.i/24 → 10.2.i/24. */
function install(engine: Engine, i: number, suite: (typeof SUITES)[number], keys: { enc: Uint8Array; auth: Uint8Array }, west: boolean): void {
  const s = new PfkeySocket(engine);
  const send = (m: MessageInput) => {
    // (As klipsd's server hands them over: an ADD of the usual shape takes the fast path.)
    const b = buildMessage(m);
    const v = s.submitAt(b, 0, b.length);
    if (v.errno !== 0) throw new Error(`data plane warm-up: the private engine refused a message (errno ${v.errno}: ${v.why ?? ''})`);
  };
  const head = (type: number, satype: number) => ({ type, satype, seq: i + 1, pid: 0 });
  send({ header: head(SADB_ADD, SADB_X_SATYPE_IPIP), sa: sa(0x200 + i), addressSrc: address(WEST), addressDst: address(EAST) });
  const esp: MessageInput = {
    header: head(SADB_ADD, SADB_SATYPE_ESP), sa: sa(0x100 + i, suite.auth, suite.encrypt),
    addressSrc: address(WEST), addressDst: address(EAST), keyEncrypt: { bits: suite.encBits, key: keys.enc },
  };
  if (suite.authBits) esp.keyAuth = { bits: suite.authBits, key: keys.auth };
  send(esp);
  send({
    header: head(SADB_X_GRPSA, SADB_X_SATYPE_IPIP), sa: sa(0x200 + i), addressDst: address(EAST),
    satype2: { satype: SADB_SATYPE_ESP }, sa2: sa(0x100 + i), addressDst2: address(EAST),
  });
  if (west) {
    send({
      header: head(SADB_X_ADDFLOW, SADB_X_SATYPE_IPIP), sa: { ...sa(0x200 + i), replay: 0, state: 0 }, addressDst: address(EAST),
      addressSrcFlow: address(`10.1.${i}.0`), addressDstFlow: address(`10.2.${i}.0`),
      addressSrcMask: address('255.255.255.0'), addressDstMask: address('255.255.255.0'),
    });
  }
  s.close();
}

/** A TCP/IPv4 packet 10.1.i.5 → 10.2.i.7 with `payload` bytes (ACK, checksums right). */
function tcpPacket(i: number, payload: number, seq: number): Buffer {
  const tcp = Buffer.alloc(20 + payload);
  wr16be(tcp, 0, 40000);
  wr16be(tcp, 2, 5201);
  wr32be(tcp, 4, seq >>> 0);
  tcp[12] = 5 << 4;
  tcp[13] = 0x10;
  wr16be(tcp, 14, 512);
  const ip = buildIPv4Header({ tos: 0, id: seq & 0xffff, flags: 0x4000, ttl: 64, protocol: 6, src: Uint8Array.of(10, 1, i, 5), dst: Uint8Array.of(10, 2, i, 7), payloadLength: tcp.length });
  const p = Buffer.concat([ip, tcp]);
  wr16be(p, 36, internetChecksum(p, 20, p.length, onesSum(p, 12, 20) + 6 + tcp.length));
  return p;
}

/** One TUN read of a TCP super-segment (virtio_net_hdr, GSO TCPV4) of `segments` × 1348 bytes. */
export function superSegment(i: number, segments: number): Buffer {
  const p = tcpPacket(i, 1348 * segments, 0);
  const h = Buffer.alloc(VNET_HDR_BYTES);
  h[0] = 1;
  h[1] = 1;
  wr16(h, 2, 40);
  wr16(h, 4, 1348);
  wr16(h, 6, 20);
  wr16(h, 8, 16);
  return Buffer.concat([h, p]);
}

/**
 * Two private engines, west (at 127.0.0.1) and east (at 127.0.0.2), with a tunnel per
 * suite, random keys: suite i is tun 0x200+i and esp 0x100+i, west routing 10.1.i.0/24 to
 * 10.2.i.0/24 through it (AES-GCM-128 is suite 0). What the warm-up's packets cross, and
 * bench/route.bench.ts's.
 */
export function privateTunnels(): { west: Engine; east: Engine } {
  const west = new Engine({ localAddresses: () => [WEST] });
  const east = new Engine({ localAddresses: () => [EAST] });
  SUITES.forEach((suite, i) => {
    const keys = { enc: randomBytes(suite.encBits / 8), auth: randomBytes(Math.max(1, suite.authBits / 8)) };
    install(west, i, suite, keys, true);
    install(east, i, suite, keys, false);
  });
  return { west, east };
}

/** What of the runtime the warm-up copies: whether its TUN device gives offloaded reads. */
export interface WarmOptions {
  offload: boolean;
}

/**
 * Two private engines with a tunnel per suite (privateTunnels), a private carrier that
 * sends to itself over the loopback, and the packets that cross: the warm-up at start
 * (`run`) and the `tick` between packets. close() closes the carrier's socket.
 */
export class WarmPaths {
  private readonly west: Engine;
  private readonly east: Engine;
  // (Its options in the runtime's order, `private` included there: the same object shape.)
  private readonly carrier = new Carrier({ family: AF_INET, encap: 'udp', port: 0, batch: 16, slotBytes: 2048, socketBuffer: 1 << 20, private: true });
  /** The runtime's own rcv options, in the runtime's order (the same object shape). */
  private readonly rcvOptions: RcvOptions;
  /** Where a TUN-like read lies, as the runtime's read buffer holds it. */
  private readonly tunBuf = Buffer.allocUnsafeSlow(65536 + VNET_HDR_BYTES);
  private readonly scratch = Buffer.allocUnsafeSlow(65536);
  private readonly gro = new TunCoalescer(() => undefined, () => undefined);
  /** Per suite: a full window's TUN reads (8 full-size TCP segments, one super-segment when offloaded), and an ACK's. */
  private readonly windows: Buffer[][] = [];
  private readonly acks: Buffer[] = [];
  private crossed = 0;

  constructor(private readonly o: WarmOptions = { offload: true }) {
    this.rcvOptions = { natTPort: this.carrier.port, udpCarrier: true, inPlace: true };
    try {
      ({ west: this.west, east: this.east } = privateTunnels());
    } catch (e) {
      this.carrier.close();
      throw e;
    }
    this.makePackets();
  }

  /** Each suite's packets. */
  private makePackets(): void {
    const o = this.o;
    SUITES.forEach((_, i) => {
      const ack = tcpPacket(i, 0, 1);
      if (o.offload) {
        this.windows.push([superSegment(i, 8)]);
        this.acks.push(Buffer.concat([Buffer.alloc(VNET_HDR_BYTES), ack]));
      } else {
        this.windows.push(Array.from({ length: 8 }, (_, k) => tcpPacket(i, 1348, 1 + 1348 * k)));
        this.acks.push(ack);
      }
    });
  }

  /** Bytes of packet memory held (the private carrier's batches and the read buffers). */
  get memoryBytes(): number {
    return this.carrier.memoryBytes + this.tunBuf.length + this.scratch.length;
  }

  close(): void {
    this.carrier.close();
  }

  private readonly send = (p: Buffer, piece = 0): void => {
    const x = xmit(this.west, p, pieceOptions(piece));
    if (x.ok && x.action !== 'pass') this.carrier.queue(x.out.packet, x.out.natTPort);
  };

  /** A TUN-like read of `p` (with its virtio_net_hdr when offloaded) through the outbound path. */
  private read(p: Buffer): void {
    this.tunBuf.set(p, 0);
    if (!this.o.offload) this.send(this.tunBuf.subarray(0, p.length));
    else if (offloadedPackets(this.tunBuf, p.length, this.scratch, this.send)) throw new Error('data plane warm-up: a bad virtio_net_hdr');
  }

  /** Send what was queued, and take it back through the inbound path. */
  private deliver(): void {
    const k = this.carrier;
    k.flush();
    while (k.unread || k.receive() > 0) {
      while (k.unread) {
        const d = k.next();
        if (d.truncated) continue;
        const r = rcv(this.east, d.packet, d, this.rcvOptions);
        if (!r.ok || r.kind !== 'ipsec') continue;
        this.crossed++;
        this.gro.add(r.packet);
      }
      this.gro.flush();
    }
  }

  /**
   * Run `rounds` packets of each size through west's xmit and east's rcv for each suite,
   * and the offload cutting and coalescing. Returns how many packets crossed (all of them,
   * unless something is wrong with the paths; the caller logs it).
   */
  run(rounds = 1500): number {
    const before = this.crossed;
    for (let i = 0; i < SUITES.length; i++) {
      for (let n = 0; n < rounds; n += 8) {
        for (const p of this.windows[i]) this.read(p);
        this.deliver();
        this.read(this.acks[i]);
        this.deliver();
      }
    }
    return this.crossed - before;
  }

  /** One ACK-size packet of each suite across, the way the runtime reads them. */
  tick(): number {
    const before = this.crossed;
    for (const ack of this.acks) this.read(ack);
    this.deliver();
    return this.crossed - before;
  }
}

/** The warm-up at start, for a runtime whose TUN device gives offloaded reads or not. */
export function warmUp(rounds = 1500, o?: WarmOptions): number {
  const w = new WarmPaths(o);
  try {
    return w.run(rounds);
  } finally {
    w.close();
  }
}
