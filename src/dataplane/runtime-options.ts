/**
 * The data plane runtime's options and their defaults, apart from the runtime itself so
 * that klipsd can name them in its usage without loading the data plane (which it does
 * only with --dataplane).
 */

import { AF_INET, AF_INET6 } from '../wire/index.js';

export type Encap = 'udp' | 'raw';

export interface RuntimeOptions {
  /** The TUN device's name (KLIPS: ipsec0). */
  interface: string;
  mtu: number;
  encap: Encap;
  /** UDP carrier: the port listened on and sent to (RFC 3948: 4500). */
  udpPort: number;
  /** Datagrams per recvmmsg/sendmmsg, and TUN reads per turn divided by 4. */
  batch: number;
  /** SO_RCVBUF/SO_SNDBUF for the carriers (bytes; 0: the system's default). */
  socketBuffer: number;
  /**
   * For this long (ms) after the last packet, the runtime waits for the next one with a
   * blocking poll on the event loop's own thread, up to `waitMicros` at a time, instead of
   * the thread pool's: a wake costs one sleeping thread (50–300 µs on a VM's idle vCPU)
   * instead of two. PF_KEY messages and timers then wait at most waitMicros longer.
   */
  activeMs: number;
  waitMicros: number;
  /** A turn stops taking packets after this long (ms), so PF_KEY messages wait at most about that. */
  turnMs: number;
  /** Take checksum and TCP segmentation offloads from the TUN device (gso.ts). */
  offload: boolean;
  /** Run the paths over private engines before the first packet, so V8 has compiled them (warmup.ts). */
  warmUp: boolean;
  /**
   * For warmForMs after the last packet, run a packet of each suite across the warm-up's
   * private engines every keepWarmMs (0: never), so that the next real packet finds the
   * paths' code and data in the caches: after 20 ms idle an outbound packet took 60-70 µs
   * on the benchmark machine, 6-10 µs with the ticks. The cost: 5% of a core at 4 ms (8%
   * at 2 ms) for the warmForMs after traffic; a tick within keepWarmMs of a real packet
   * does nothing.
   */
  keepWarmMs: number;
  warmForMs: number;
  /**
   * Idle, wait for packets from Node's own event loop (libuv's uv_poll on the TUN and the
   * carriers, through koffi), so a packet wakes one thread; else (or where libuv's symbols
   * are not found) a poll() on the thread pool, which wakes a pool thread and then the loop.
   */
  loopWatch: boolean;
  /** Address families to carry ESP over (a family whose socket cannot open is left out, logged). */
  families: readonly number[];
  log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export const DEFAULT_RUNTIME: Omit<RuntimeOptions, 'log'> = {
  interface: 'ipsec0',
  mtu: 1400,
  encap: 'udp',
  udpPort: 4500,
  batch: 64,
  socketBuffer: 4 << 20,
  activeMs: 50,
  waitMicros: 200,
  turnMs: 1,
  offload: true,
  warmUp: true,
  keepWarmMs: 4,
  warmForMs: 10_000,
  loopWatch: true,
  families: [AF_INET, AF_INET6],
};
