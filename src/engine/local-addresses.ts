/**
 * The host's own addresses, which KLIPS asked the kernel for (ip_chk_addr / ip6_chk_addr
 * == IS_MYADDR) to mark an SA inbound (EMT_INBOUND) at GETSPI, ADD and UPDATE. klips keeps
 * them in a set, read from a source (by default os.networkInterfaces()) when the engine
 * is made and again by refresh(), which the engine's tick() calls every few seconds, so
 * an address added to or removed from an interface is noticed without a timer of its own.
 * Tests give a fixed source.
 */

import os from 'node:os';
import { AF_INET6, formatAddress, parseIPv4, parseIPv6 } from '../wire/index.js';

/** Where the addresses come from: any textual IPv4 or IPv6 addresses (zone suffixes allowed). */
export type AddressSource = () => Iterable<string>;

/** Every address of every interface of this host, as os.networkInterfaces() reports them. */
export const hostAddresses: AddressSource = () =>
  Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));

/** An address in the text form the wire codec gives (canonical IPv6), or undefined if it is none. */
function canonical(text: string): string | undefined {
  const bare = text.split('%')[0];
  if (parseIPv4(bare)) return bare;
  const v6 = parseIPv6(bare);
  return v6 ? formatAddress(AF_INET6, v6) : undefined;
}

export class LocalAddresses {
  private set = new Set<string>();
  /** The last address asked about and the answer (a key manager adds SA after SA to the same peer). */
  private lastAddr: string | undefined;
  private lastAnswer = false;

  constructor(private readonly source: AddressSource = hostAddresses) {
    this.refresh();
  }

  /** Read the source again; the set is replaced whole. */
  refresh(): void {
    const next = new Set<string>();
    for (const a of this.source()) {
      const c = canonical(a);
      if (c) next.add(c);
    }
    this.set = next;
    this.lastAddr = undefined;
  }

  /** Whether `addr` (as the wire codec writes it) is one of the host's addresses. */
  has(addr: string): boolean {
    if (addr !== this.lastAddr) {
      this.lastAddr = addr;
      this.lastAnswer = this.set.has(addr);
    }
    return this.lastAnswer;
  }

  list(): string[] {
    return [...this.set];
  }
}
