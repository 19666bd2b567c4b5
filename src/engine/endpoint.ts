/**
 * The shapes the engine's parts meet through: an Endpoint (what the engine needs of a
 * PF_KEY socket; socket/ implements it), the operations a message handler may use on the
 * engine (EngineOps; engine.ts implements them), a Request (what a handler is given), and
 * SenderRefusal (a refusal answered to the sender alone), and how a dump shares the
 * thread with everything else (DUMP_SLICE_MS, nextDumpSlice).
 * Keeping them here lets handlers.ts and engine.ts each depend on this file, not on each other.
 */

import { PfkeyError, type DebugSubsystem, type Dialect, type PfkeyMessage } from '../wire/index.js';
import type { SA, Sadb } from '../sadb/sadb.js';
import type { Eroute, ErouteTable } from '../spd/eroute-table.js';
import type { SupportedLists } from './algorithms.js';
import type { VirtualInterface } from './interfaces.js';
import type { LocalAddresses } from './local-addresses.js';

export type { VirtualInterface } from './interfaces.js';

/** What the engine needs of a PF_KEY socket. */
export interface Endpoint {
  readonly id: number;
  /** The numbering the socket speaks (default 'klips'): a property of the connection. */
  readonly dialect?: Dialect;
  /** Queue one message for the client; false if its receive queue was full (dropped). */
  deliver(msg: Uint8Array): boolean;
  /**
   * deliver() a copy of the first `len` bytes of `src`, which the engine reuses once this
   * returns (its fast path writes replies into a scratch). Without it the engine copies.
   */
  deliverCopy?(src: Uint8Array, len: number): boolean;
  /**
   * Room for a message of `len` bytes that the engine writes in place, at the returned
   * offset of `appendView`, before anything reads the socket: the message is queued
   * from now on. APPEND_DROPPED when it was dropped (full, as deliver() drops), or
   * APPEND_PUSH when the socket needs the message as its own buffer (deliver() then).
   */
  append?(len: number): number;
  readonly appendView?: DataView;
  /** Free bytes in the receive queue (DUMP paces itself on this). */
  room(): number;
  /** The receive queue's size in bytes. */
  readonly rcvbuf: number;
  /** Call `cb` once when the receive queue has drained, or the socket closed. */
  onDrain(cb: () => void): void;
  readonly closed: boolean;
  /** SA types this socket registered for (SADB_REGISTER), in its dialect's numbering. */
  readonly registered: Set<number>;
  promisc: boolean;
  /** Subscribed to X_PCHANGE eroute notices. */
  pchange: boolean;
}

/** Endpoint.append() gave no room: the message was dropped. */
export const APPEND_DROPPED = -1;
/** Endpoint.append() gave no room: deliver() the message as a buffer of its own instead. */
export const APPEND_PUSH = -2;

/** What a message handler may do with the engine. */
export interface EngineOps {
  readonly sadb: Sadb;
  readonly spd: ErouteTable;
  readonly interfaces: Map<number, VirtualInterface>;
  readonly supported: Map<number, SupportedLists>;
  readonly debug: Record<DebugSubsystem, number>;
  readonly larvalLifetime: number;
  readonly localAddresses: LocalAddresses;
  now(): number;
  random(n: number): number;
  toAll(bytes: Uint8Array): void;
  toSender(ep: Endpoint, bytes: Uint8Array): void;
  /** toSender() of a scratch the caller reuses once this returns. */
  toSenderCopy(ep: Endpoint, scratch: Uint8Array): void;
  toRegistered(satype: number, bytes: Uint8Array): number;
  registeredFor(satype: number): Endpoint[];
  settleAcquire(seq: number): boolean;
  checkLimits(sa: SA): void;
  pchangeNotice(e: Eroute, flags: number, seq: number): void;
  release(e: Eroute | undefined): void;
}

/**
 * What a handler is given: the engine, the sending socket, the parsed message and its
 * bytes. A handler of message type T gets `Request<InboundMessage<T>>`, in which the
 * extensions the rules require for T are not optional.
 */
export interface Request<M extends PfkeyMessage = PfkeyMessage> {
  engine: EngineOps;
  ep: Endpoint;
  msg: M;
  bytes: Uint8Array;
}

/**
 * What became of a message a client sent: errno 0, or the errno sendmsg fails with and
 * where and why it was refused. `stage` 'header': KLIPS's sendmsg refused the header and
 * no message was sent to anyone; 'message': the parser or a handler refused it and the
 * errno reply was already delivered. Returned by Engine.handle, so nobody re-parses a
 * message to learn what went wrong.
 */
export interface Verdict {
  readonly errno: number;
  readonly stage: 'header' | 'message';
  /** Byte offset of the header field or extension at fault, when known. */
  readonly offset?: number;
  /** The extension type at fault, when the fault lies in one. */
  readonly exttype?: number;
  readonly why: string;
}

/** The verdict on every accepted message (one object, no allocation per message). */
export const ACCEPTED: Verdict = Object.freeze({ errno: 0, stage: 'message', why: '' });

/**
 * What a real kernel's send() returns for a message with this verdict: KLIPS's
 * pfkey_sendmsg fails with every refusal's errno (and also broadcasts it); Linux's fails
 * only when it cannot take the message at all (the header stage: a bad version, reserved
 * field or type, EINVAL; a length that is not the datagram's, EMSGSIZE) and otherwise
 * succeeds, the errno travelling in the reply alone.
 */
export function sendErrno(dialect: Dialect | undefined, verdict: Verdict): number {
  if (dialect !== 'kame') return verdict.errno;
  return verdict.stage === 'header' ? verdict.errno : 0;
}

/**
 * A refusal answered to the sending socket alone with `reply` (KLIPS's
 * pfkey_x_simple_reply: the request's own extensions with sadb_msg_errno set), instead of
 * the header-only errno message every other refusal sends to every open socket.
 */
export class SenderRefusal extends PfkeyError {
  constructor(errno: number, reason: string, readonly reply: Uint8Array) {
    super(errno, reason);
  }
}

/** Work a dump (DUMP; the KAME dialect's DUMP and X_SPDDUMP) does at a time: other sockets wait at most about this long. */
export const DUMP_SLICE_MS = 1;

/**
 * Run the next slice of a dump to `ep` from a timer, never straight from its reader's
 * progress: the event loop's other work (other sockets' requests and writes) runs
 * between two slices, and a dump takes at most about half of the thread it runs on,
 * however fast its reader reads (docs/semantics.md, DUMP). A reader that closed ends
 * the dump at once (`step` sees it and lets go of the table), not a slice later.
 */
export function nextDumpSlice(ep: Endpoint, step: () => void): void {
  if (ep.closed) step();
  else setTimeout(step, 0);
}
