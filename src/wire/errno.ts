/**
 * The errno values PF_KEY speaks in (`sadb_msg_errno`, Linux numbering) and the typed
 * error every refusal in klips carries: an errno, a reason, and where parsing stopped.
 */

export const ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9,
  EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, ENODEV: 19,
  EINVAL: 22, ENFILE: 23, ENOSPC: 28, EPIPE: 32, ENOSYS: 38, ELOOP: 40, EMSGSIZE: 90,
  ENOPROTOOPT: 92, EPROTONOSUPPORT: 93, ESOCKTNOSUPPORT: 94, EOPNOTSUPP: 95,
  EPFNOSUPPORT: 96, EAFNOSUPPORT: 97, ENOBUFS: 105,
} as const;
export type ErrnoName = keyof typeof ERRNO;

const NAME_BY_NUMBER: Record<number, ErrnoName> = Object.fromEntries(
  Object.entries(ERRNO).map(([k, v]) => [v, k as ErrnoName]),
);

const DESCRIPTIONS: Partial<Record<ErrnoName, string>> = {
  EPERM: 'operation not permitted',
  ENOENT: 'no such entry',
  ESRCH: 'no such SA',
  ENOMEM: 'out of memory',
  EACCES: 'permission denied',
  EFAULT: 'no such eroute',
  EBUSY: 'busy',
  EEXIST: 'already exists',
  ENODEV: 'no such device',
  EINVAL: 'invalid argument',
  ENFILE: 'too many open PF_KEY sockets',
  ENOSPC: 'no space left',
  EPIPE: 'socket shut down',
  ENOSYS: 'no such operation in KLIPS',
  EMSGSIZE: 'message size wrong',
  EPROTONOSUPPORT: 'no registered listener',
  EOPNOTSUPP: 'operation not supported',
  EPFNOSUPPORT: 'address family not supported',
  EAFNOSUPPORT: 'address prefix length not supported',
  ENOBUFS: 'receive queue overflowed, messages lost',
};

export function errnoName(errno: number): string {
  return NAME_BY_NUMBER[errno] ?? `E${errno}`;
}

/** e.g. "EEXIST (already exists)". */
export function errnoText(errno: number): string {
  const name = NAME_BY_NUMBER[errno];
  const d = name ? DESCRIPTIONS[name] : undefined;
  return d ? `${errnoName(errno)} (${d})` : errnoName(errno);
}

/** A refusal: the errno a KLIPS user would see, why, and where in the bytes it happened. */
export class PfkeyError extends Error {
  readonly errno: number;
  /** Byte offset in the message where parsing stopped (the header or extension at fault). */
  readonly offset: number | undefined;
  /** Extension type being parsed, when the fault lies in one. */
  readonly exttype: number | undefined;

  /** Why, in words (the message without its errno name). */
  readonly reason: string;

  constructor(errno: number, reason: string, where?: { offset?: number; exttype?: number }) {
    super(`${errnoName(errno)}: ${reason}`);
    this.reason = reason;
    this.name = 'PfkeyError';
    this.errno = errno;
    this.offset = where?.offset;
    this.exttype = where?.exttype;
  }

  get errnoName(): string {
    return errnoName(this.errno);
  }
}

export function fail(errno: number, reason: string, where?: { offset?: number; exttype?: number }): never {
  throw new PfkeyError(errno, reason, where);
}
