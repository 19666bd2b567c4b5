/**
 * `klipsd --dataplane`: start the data plane's runtime (the TUN interface and the ESP
 * carriers, src/dataplane/runtime.ts) on the server's engine, after checking the process
 * may: creating a TUN device needs CAP_NET_ADMIN, and raw ESP sockets CAP_NET_RAW.
 * Whatever stops it from starting becomes one line for the operator (DataplaneRefused).
 * The runtime's counters are served as the "runtime" view (`klips look --view runtime`).
 */

import fs from 'node:fs';
import { CarrierError } from '../dataplane/carrier.js';
import { countersText } from '../dataplane/counters.js';
import { LibcUnavailable } from '../dataplane/libc.js';
import { DEFAULT_RUNTIME, DataplaneRuntime, RuntimeError, type Encap, type RuntimeStats } from '../dataplane/runtime.js';
import { TunError } from '../dataplane/tun.js';
import type { KlipsServer } from './server.js';

export class DataplaneRefused extends Error {}

const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;

/** The effective capability set of this process, from /proc/self/status (undefined where unreadable). */
function effectiveCaps(): bigint | undefined {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

export interface DataplaneFlags {
  interface: string;
  mtu: number;
  encap: Encap;
  udpPort: number;
  /** Take the TUN device's checksum and TCP segmentation offloads (default on). */
  offload?: boolean;
  /** Keep the paths warm between packets: every this many ms (0: never; see RuntimeOptions.keepWarmMs). */
  keepWarm?: number;
}

/** Before anything starts: may this process run the data plane? Throws DataplaneRefused if not. */
export function checkDataplanePrivileges(f: Pick<DataplaneFlags, 'encap'>): void {
  const caps = effectiveCaps();
  const has = (bit: number) => caps === undefined || (caps & (1n << BigInt(bit))) !== 0n;
  if (!has(CAP_NET_ADMIN)) throw new DataplaneRefused('--dataplane needs root or CAP_NET_ADMIN (to create the TUN interface); run as root, or without --dataplane for the control plane alone');
  if (f.encap === 'raw' && !has(CAP_NET_RAW)) throw new DataplaneRefused('--encap raw needs root or CAP_NET_RAW (raw ESP sockets); use --encap udp, or run as root');
}

/** Start the runtime on the server's engine (checkDataplanePrivileges first: main does, before the server starts). */
export function startDataplane(server: KlipsServer, f: DataplaneFlags): DataplaneRuntime {
  const log = server.logger.child({ subsystem: 'dataplane' });
  let rt: DataplaneRuntime;
  try {
    rt = DataplaneRuntime.start(server.engine, {
      interface: f.interface, mtu: f.mtu, encap: f.encap, udpPort: f.udpPort, offload: f.offload ?? true,
      keepWarmMs: f.keepWarm ?? DEFAULT_RUNTIME.keepWarmMs,
      log: (level, msg, fields) => log[level](fields ?? {}, msg),
    });
  } catch (e) {
    if (e instanceof TunError || e instanceof CarrierError || e instanceof RuntimeError || e instanceof LibcUnavailable) {
      throw new DataplaneRefused(`data plane not started: ${e.message}`);
    }
    throw e;
  }
  server.addView('runtime', () => {
    const s = rt.stats();
    return { text: runtimeText(s), data: s };
  });
  return rt;
}

/** The runtime view as text, one fact per line (as KLIPS's /proc files). */
function runtimeText(s: RuntimeStats): string {
  const lines = [
    `${s.interface} mtu=${s.mtu} encap=${s.encap}${s.udpPort !== undefined ? ` port=${s.udpPort}` : ''} memory=${s.memoryBound}`,
    `tun read=${s.tun.read} written=${s.tun.written} merged=${s.tun.merged}`,
    ...s.carriers.map((c) => `${c.family} received=${c.received} sent=${c.sent} truncated=${c.truncated} send_errors=${c.sendErrors}${c.lastSendError ? ` last_error=${c.lastSendError}` : ''}`),
    `turns=${s.turns} wakes=${s.wakes} busy_turns=${s.busyTurns} warm_ticks=${s.warm.ticks} warm_packets=${s.warm.packets}`,
    `drops ${Object.entries(s.drops).map(([k, v]) => `${k}=${v}`).join(' ')}`,
  ];
  if (s.kernel) lines.push(`kernel tun_tx_dropped=${s.kernel.tunTxDropped} tun_rx_dropped=${s.kernel.tunRxDropped}`);
  return lines.map((l) => `${l}\n`).join('') + countersText(s.paths);
}
