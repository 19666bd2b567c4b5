/**
 * KLIPS's virtual interfaces, ipsecN (ipsec_tunnel.c) and mastN (ipsec_mast.c), as rows
 * of the engine's interface table keyed by their X_PLUMBIF number: mastN is N, ipsecN is
 * IPSECDEV_OFFSET + N. The module starts with mast0, ipsec0 and ipsec1, as KLIPS's
 * ipsec_mast_init_devices and ipsec_tunnel_init_devices (IPSEC_NUM_IF = 2) make them.
 *
 * Two readings of an interface number, both KLIPS's:
 *  - X_PLUMBIF / X_UNPLUMBIF (pfkey_x_plumb_parse): above IPSECDEV_OFFSET it is ipsec(n -
 *    offset), otherwise mast(n); a unit of IPSEC_NUM_IFMAX or more is ENOENT. So ipsec0
 *    (IPSECDEV_OFFSET itself) is read as mast49152 and refused, as in KLIPS.
 *  - an SA's output interface (ADD's X_PLUMBIF; ipsec_mast_get_device): above
 *    IPSECDEV_OFFSET ipsecN; from MASTTRANSPORT_OFFSET mast(n - offset), transport-direct
 *    above the offset itself; otherwise mastN.
 */

import { IPSECDEV_OFFSET, MASTTRANSPORT_OFFSET } from '../wire/index.js';

/** The most ipsecN or mastN devices of each kind (units 0 … IPSEC_NUM_IFMAX - 1). */
export const IPSEC_NUM_IFMAX = 64;
/** ipsecN devices made when the module loads. */
export const IPSEC_NUM_IF = 2;

export interface VirtualInterface {
  /** The key of the interface table: N for mastN, IPSECDEV_OFFSET + N for ipsecN. */
  ifnum: number;
  name: string;
  created: number;
  /** pid of the X_PLUMBIF request (0 for the interfaces made at start). */
  pid: number;
  /** Set while the data plane's runtime carries this interface as a TUN device: how ESP leaves it, and its MTU. */
  attached?: { via: string; mtu: number };
}

export interface InterfaceUnit {
  kind: 'ipsec' | 'mast';
  unit: number;
  /** The interface table key of this unit. */
  key: number;
  name: string;
}

function unitOf(kind: 'ipsec' | 'mast', unit: number): InterfaceUnit {
  return { kind, unit, key: kind === 'ipsec' ? IPSECDEV_OFFSET + unit : unit, name: `${kind}${unit}` };
}

/** The interface an X_PLUMBIF / X_UNPLUMBIF number names, or undefined (ENOENT) when out of range. */
export function plumbTarget(ifnum: number): InterfaceUnit | undefined {
  const u = ifnum > IPSECDEV_OFFSET ? unitOf('ipsec', ifnum - IPSECDEV_OFFSET) : unitOf('mast', ifnum);
  return u.unit < IPSEC_NUM_IFMAX ? u : undefined;
}

/** The interfaces a fresh engine has: mast0, ipsec0 … ipsec(IPSEC_NUM_IF - 1). */
export function initialInterfaces(created: number): VirtualInterface[] {
  const units = [unitOf('mast', 0), ...Array.from({ length: IPSEC_NUM_IF }, (_, i) => unitOf('ipsec', i))];
  return units.map((u) => ({ ifnum: u.key, name: u.name, created, pid: 0 }));
}

/** An SA's output interface: the unit its X_PLUMBIF number names, and whether it is transport-direct. */
export function outifOf(ifnum: number): InterfaceUnit & { transport: boolean } {
  if (ifnum > IPSECDEV_OFFSET) return { ...unitOf('ipsec', ifnum - IPSECDEV_OFFSET), transport: false };
  if (ifnum >= MASTTRANSPORT_OFFSET) return { ...unitOf('mast', ifnum - MASTTRANSPORT_OFFSET), transport: ifnum > MASTTRANSPORT_OFFSET };
  return { ...unitOf('mast', ifnum), transport: false };
}
