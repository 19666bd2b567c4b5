/**
 * The data plane's counters, kept per engine (a WeakMap keyed by the Engine, so the
 * engine itself carries nothing of the data plane): packets in and out, what became of
 * them, and drops by reason (KLIPS kept tx_dropped/rx_dropped on the ipsec device and
 * per-SA ips_errs; here each drop names its reason). The path-level reasons add to the
 * transforms' DROP_REASONS what only a path can decide: no eroute, a shunt, a hold.
 * `dataplaneCounters(engine)` gives a plain-object snapshot for `klips look`, and
 * `dataplaneView(engine)` the same as klipsd's `dataplane` view.
 */

import type { Engine } from '../engine/engine.js';
import type { View } from '../engine/views.js';
import type { DropReason } from './drop.js';

export const PATH_DROP_REASONS = [
  /** Outbound: no eroute covers the packet (KLIPS's default %drop). */
  'no-eroute',
  /** Outbound: the eroute is %drop. */
  'shunt-drop',
  /** Outbound: the eroute is %reject (an ICMP unreachable goes back to the sender). */
  'shunt-reject',
  /** Outbound: the eroute is %hold; the packet is kept on it as its last packet. */
  'hold',
  /** Outbound: a %trap/%trapsubnet eroute sent ACQUIRE; the packet is held on the new %hold. */
  'trap',
  /** Outbound: a %trap eroute was hit but no socket is registered for ESP (no ACQUIRE sent). */
  'no-listener',
  /** Outbound: an eroute names an SA the table does not hold, or one still larval, or its group lost the ESP/AH SA it had. */
  'no-eroute-sa',
  /** Inbound: an SA of the chain is of a kind this path cannot apply. */
  'bad-chain',
] as const;

export type PathDropReason = DropReason | (typeof PATH_DROP_REASONS)[number];

export interface DirectionCounters {
  /** Packets handed to the path. */
  packets: number;
  /** Outbound: protected and sent; inbound: decapsulated and delivered. */
  ipsec: number;
  /** Outbound: %pass; inbound: not IPsec (or IKE / keepalive on the NAT-T port), handed on as is. */
  passed: number;
  dropped: number;
  /** Drops by reason; only reasons that happened appear. */
  drops: Partial<Record<PathDropReason, number>>;
}

export interface DataplaneCounters {
  xmit: DirectionCounters;
  rcv: DirectionCounters;
  /** Outbound ICMP unreachables built for %reject. */
  icmpSent: number;
  /** Inbound NAT-T mapping changes reported to the engine. */
  natTMappings: number;
}

const fresh = (): DirectionCounters => ({ packets: 0, ipsec: 0, passed: 0, dropped: 0, drops: {} });
const perEngine = new WeakMap<Engine, DataplaneCounters>();

/** The live counters of an engine's data plane (created on first use). */
export function countersOf(engine: Engine): DataplaneCounters {
  // (Every packet asks, nearly always about the engine the last one asked about.)
  if (engine === lastEngine) return lastCounters!;
  let c = perEngine.get(engine);
  if (!c) {
    c = { xmit: fresh(), rcv: fresh(), icmpSent: 0, natTMappings: 0 };
    perEngine.set(engine, c);
  }
  lastEngine = engine;
  lastCounters = c;
  return c;
}

let lastEngine: Engine | undefined;
let lastCounters: DataplaneCounters | undefined;

/** A plain-object copy of the counters (JSON-safe), for views and `klips look`. */
export function dataplaneCounters(engine: Engine): DataplaneCounters {
  const c = countersOf(engine);
  const copy = (d: DirectionCounters): DirectionCounters => ({ ...d, drops: { ...d.drops } });
  return { xmit: copy(c.xmit), rcv: copy(c.rcv), icmpSent: c.icmpSent, natTMappings: c.natTMappings };
}

/** Count a drop on one direction. */
export function countDrop(d: DirectionCounters, reason: PathDropReason): void {
  d.dropped++;
  d.drops[reason] = (d.drops[reason] ?? 0) + 1;
}

/**
 * klipsd's `dataplane` view: the counters as data, and as text one `name=value` line per
 * counter (as the stats view writes its own), drops by reason as `xmit.drops.REASON=N`.
 */
export function dataplaneView(engine: Engine): View<'dataplane'> {
  const data = dataplaneCounters(engine);
  return { view: 'dataplane', text: countersText(data), data };
}

/** The counters as the dataplane view's text (the runtime view ends with the same lines). */
export function countersText(data: DataplaneCounters): string {
  const lines: string[] = [];
  for (const dir of ['xmit', 'rcv'] as const) {
    const d = data[dir];
    lines.push(`${dir}.packets=${d.packets}`, `${dir}.ipsec=${d.ipsec}`, `${dir}.passed=${d.passed}`, `${dir}.dropped=${d.dropped}`);
    for (const [reason, n] of Object.entries(d.drops)) lines.push(`${dir}.drops.${reason}=${n}`);
  }
  lines.push(`icmpSent=${data.icmpSent}`, `natTMappings=${data.natTMappings}`);
  return lines.map((l) => `${l}\n`).join('');
}
