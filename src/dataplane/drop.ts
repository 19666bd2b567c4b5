/**
 * Why the data plane dropped a packet. Every transform returns a Result: the transformed
 * packet, or a Drop naming one reason from DROP_REASONS, so a caller can count drops per
 * reason (KLIPS kept such counters in ips_errs and the ipsec device's stats). Nothing on
 * the packet path throws for a bad packet, and no reason ever carries key material or
 * packet bytes.
 */

export const DROP_REASONS = [
  /** Shorter than the headers it claims to carry. */
  'too-short',
  /** IPv4/IPv6 header unusable: version, header or total length, malformed options. */
  'bad-ip-header',
  /** IPv4 header checksum wrong. */
  'bad-ip-checksum',
  /** A fragment where a whole packet is needed (reassemble first). */
  'fragment',
  /** The packet is not for this SA (SPI/CPI mismatch, or no IPsec header of its kind). */
  'no-sa',
  /** The SA cannot run: wrong SA type, key length, address family or algorithm pairing. */
  'bad-sa',
  /** An algorithm id this data plane does not implement. */
  'unsupported',
  /** Sequence number already seen (or zero). */
  'replay',
  /** Sequence number to the left of the anti-replay window. */
  'replay-stale',
  /** Outbound sequence number would cycle (RFC 4303 §3.3.3) or is zero. */
  'seq-overflow',
  /** Integrity check failed (HMAC mismatch or AEAD tag rejected). */
  'icv',
  /** Ciphertext not a whole number of cipher blocks. */
  'bad-length',
  /** ESP padding not 1, 2, 3, … or longer than the payload. */
  'bad-padding',
  /** ESP/IPCOMP next header not acceptable here (e.g. not IPIP in tunnel mode). */
  'bad-next-header',
  /** ESP dummy packet (next header 59, RFC 4303 §2.6): discarded by design. */
  'dummy',
  /** A transform header is malformed (AH length, IPCOMP flags, UDP length, …). */
  'malformed',
  /** Inbound policy check failed (outer source is not the SA's peer). */
  'policy',
  /** The deflate stream is corrupt or truncated. */
  'decompress-failed',
  /** The result would exceed the 65,535-byte IP limit. */
  'too-big',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export interface Drop {
  readonly ok: false;
  readonly reason: DropReason;
}

/** A transform's outcome: its fields with ok: true, or a Drop. */
export type Result<T extends object> = ({ readonly ok: true } & T) | Drop;

const DROPS = Object.fromEntries(
  DROP_REASONS.map((reason) => [reason, Object.freeze({ ok: false as const, reason })]),
) as Record<DropReason, Drop>;

/** The (shared, frozen) Drop for a reason: dropping allocates nothing. */
export function drop(reason: DropReason): Drop {
  return DROPS[reason];
}

/** A zeroed counter per reason, for a caller that tallies drops. */
export function dropCounters(): Record<DropReason, number> {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
}
