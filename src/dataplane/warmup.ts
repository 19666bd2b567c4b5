/**
 * The data plane's warm-up: before the runtime takes its first packet, the outbound and
 * inbound paths run a few thousand packets between two private engines, so that V8 has
 * compiled them (TurboFan) before any real traffic arrives. Without it the first packets
 * of a fresh klipsd run in the interpreter: on the 2-vCPU machine of BENCHMARKS.md an
 * isolated ping crossed the tunnel in 2.7-5 ms, against about 1.2 ms once the paths were
 * compiled. The private engines (their own SA and eroute tables, random keys, TEST-NET
 * addresses) are dropped afterwards: nothing of them reaches klipsd's tables, counters or
 * PF_KEY sockets.
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
import { TunCoalescer, VNET_HDR_BYTES, offloadedPackets } from './gso.js';
import { buildIPv4Header, internetChecksum, onesSum } from './packet.js';
import { rcv } from './rcv.js';
import { xmit } from './xmit.js';

const WEST = '192.0.2.1';
const EAST = '192.0.2.2';
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
    const rc = s.send(buildMessage(m));
    if (rc !== 0) throw new Error(`data plane warm-up: the private engine refused a message (errno ${rc})`);
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
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(5201, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp[12] = 5 << 4;
  tcp[13] = 0x10;
  tcp.writeUInt16BE(512, 14);
  const ip = buildIPv4Header({ tos: 0, id: seq & 0xffff, flags: 0x4000, ttl: 64, protocol: 6, src: Uint8Array.of(10, 1, i, 5), dst: Uint8Array.of(10, 2, i, 7), payloadLength: tcp.length });
  const p = Buffer.concat([ip, tcp]);
  p.writeUInt16BE(internetChecksum(p, 20, p.length, onesSum(p, 12, 20) + 6 + tcp.length), 36);
  return p;
}

/** One TUN read of a TCP super-segment (virtio_net_hdr, GSO TCPV4) of `segments` × 1348 bytes. */
function superSegment(i: number, segments: number): Buffer {
  const p = tcpPacket(i, 1348 * segments, 0);
  const h = Buffer.alloc(VNET_HDR_BYTES);
  h[0] = 1;
  h[1] = 1;
  h.writeUInt16LE(40, 2);
  h.writeUInt16LE(1348, 4);
  h.writeUInt16LE(20, 6);
  h.writeUInt16LE(16, 8);
  return Buffer.concat([h, p]);
}

/**
 * Run `rounds` packets of each size through west's xmit and east's rcv for each suite, and
 * the offload cutting and coalescing. Returns how many packets crossed (all of them, unless
 * something is wrong with the paths; the caller logs it).
 */
export function warmUp(rounds = 1500): number {
  const west = new Engine({ localAddresses: () => [WEST] });
  const east = new Engine({ localAddresses: () => [EAST] });
  const scratch = Buffer.allocUnsafeSlow(65536);
  let crossed = 0;
  const gro = new TunCoalescer(() => undefined, () => undefined);
  SUITES.forEach((suite, i) => {
    const keys = { enc: randomBytes(suite.encBits / 8), auth: randomBytes(Math.max(1, suite.authBits / 8)) };
    install(west, i, suite, keys, true);
    install(east, i, suite, keys, false);
    const big = superSegment(i, 8);
    const ack = tcpPacket(i, 0, 1);
    const across = (p: Buffer) => {
      const x = xmit(west, p);
      if (!x.ok) return;
      const r = rcv(east, x.out.packet, { addr: WEST, port: 0 }, {});
      if (!r.ok || r.kind !== 'ipsec') return;
      crossed++;
      gro.add(r.packet);
    };
    for (let n = 0; n < rounds; n += 8) {
      offloadedPackets(big, big.length, scratch, across);
      gro.flush();
      across(ack);
      gro.flush();
    }
  });
  return crossed;
}
