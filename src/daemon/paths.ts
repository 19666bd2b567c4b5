/**
 * Where klipsd listens, resolved the same way by klipsd and by every `klips` tool:
 * `--socket PATH`, else `$KLIPS_SOCKET`, else `/run/klips/pfkey.sock` for root and
 * `$XDG_RUNTIME_DIR/klips/pfkey.sock` (or `<tmpdir>/klips-<uid>/pfkey.sock`) for anyone
 * else. The view channel (views and traces) lives beside the PF_KEY socket as `<path>.info`,
 * and the KAME-dialect PF_KEY socket (setkey's numbering, Linux's af_key) as `<path>.kame`.
 */

import os from 'node:os';
import path from 'node:path';

export const SOCKET_BASENAME = 'pfkey.sock';
export const INFO_SUFFIX = '.info';
export const KAME_SUFFIX = '.kame';

export interface PathEnv {
  env?: NodeJS.ProcessEnv;
  uid?: number;
  tmpdir?: string;
}

function currentUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : -1;
}

/** The default socket path for this user when neither --socket nor $KLIPS_SOCKET is given. */
export function defaultSocketPath(e: PathEnv = {}): string {
  const env = e.env ?? process.env;
  const uid = e.uid ?? currentUid();
  if (uid === 0) return path.join('/run/klips', SOCKET_BASENAME);
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'klips', SOCKET_BASENAME);
  return path.join(e.tmpdir ?? os.tmpdir(), `klips-${uid < 0 ? 'user' : uid}`, SOCKET_BASENAME);
}

/** `--socket` wins, then `$KLIPS_SOCKET`, then the default. The result is absolute. */
export function resolveSocketPath(option?: string, e: PathEnv = {}): string {
  const env = e.env ?? process.env;
  const chosen = option || env.KLIPS_SOCKET || defaultSocketPath(e);
  return path.resolve(chosen);
}

/** The view channel that answers `klips look` and the table listings. */
export function infoPathFor(socketPath: string): string {
  return socketPath + INFO_SUFFIX;
}

/** The PF_KEY socket that speaks the KAME dialect (`klips setkey`, Linux's numbering). */
export function kameSocketPathFor(socketPath: string): string {
  return socketPath + KAME_SUFFIX;
}

/** Unix socket paths are limited to 107 bytes on Linux (sun_path is 108 with the NUL). */
export const MAX_UNIX_PATH = 107;
