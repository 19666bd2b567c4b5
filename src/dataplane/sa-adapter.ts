/**
 * From an SA of the engine's table (src/sadb) to what the transforms need: a TransformSA
 * (key bytes, algorithms, replay window size, NAT-T ports, endpoints as bytes), and the
 * per-SA state the paths keep beside it: the outbound sequence counter and the inbound
 * ReplayWindow. Cached per SA object in a WeakMap: the table replaces the object on
 * UPDATE (a new SA, fresh counters) and forgets it on DELETE. NAT-T's new mapping changes
 * an SA's src and natT in place (new objects each time), so the TransformSA is rebuilt
 * when either changed, keeping the sequence counter and replay window.
 */

import type { SA } from '../sadb/sadb.js';
import { SADB_AALG_NONE, SADB_X_AALG_NULL, type Address } from '../wire/index.js';
import { addressBytes } from '../wire/sockaddr.js';
import { ReplayWindow, MAX_REPLAY_WINDOW } from './replay.js';
import type { TransformSA } from './sa.js';

export interface SaRuntime {
  /** The transforms' view of the SA (rebuilt if a NAT-T mapping moved the peer). */
  tsa: TransformSA;
  /** Last outbound sequence number used (0 before the first packet). */
  seq: number;
  /** The inbound anti-replay window (size = the SA's sadb_sa_replay). */
  readonly replay: ReplayWindow;
  /** What tsa was built from. */
  src: Address;
  natT: SA['natT'];
}

const runtimes = new WeakMap<SA, SaRuntime>();

function transformSA(sa: SA): TransformSA {
  const t: {
    -readonly [K in keyof TransformSA]: TransformSA[K];
  } = {
    satype: sa.satype,
    spi: sa.said.spi >>> 0,
    encrypt: sa.encrypt,
    // KAME's SADB_X_AALG_NULL (251) is no authentication.
    auth: sa.auth === SADB_X_AALG_NULL ? SADB_AALG_NONE : sa.auth,
    replayWindow: sa.replay,
    src: addressBytes(sa.src.family, sa.src.addr),
    dst: addressBytes(sa.dst.family, sa.dst.addr),
  };
  const ek = sa.keyEncrypt;
  const ak = sa.keyAuth;
  if (ek) t.encryptKey = ek.key();
  if (ak) t.authKey = ak.key();
  if (sa.natT) t.natT = { type: sa.natT.type, sport: sa.natT.sport, dport: sa.natT.dport };
  return t;
}

/** The runtime state of an SA, made on first use. Throws only for an SA whose addresses are not IP text. */
export function runtimeOf(sa: SA): SaRuntime {
  let r = runtimes.get(sa);
  if (!r) {
    r = {
      tsa: transformSA(sa), seq: 0,
      replay: new ReplayWindow(Math.min(sa.replay, MAX_REPLAY_WINDOW)),
      src: sa.src, natT: sa.natT,
    };
    runtimes.set(sa, r);
  } else if (r.src !== sa.src || r.natT !== sa.natT) {
    r.tsa = transformSA(sa);
    r.src = sa.src;
    r.natT = sa.natT;
  }
  return r;
}

/** The TransformSA of an SA (cached). */
export function toTransformSA(sa: SA): TransformSA {
  return runtimeOf(sa).tsa;
}
