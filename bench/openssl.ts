/**
 * `openssl speed` as a floor the data plane suite measures beside its own tasks: one child
 * process per figure, `openssl speed [-evp NAME | -hmac DIGEST] [-aead] [-decrypt]
 * -bytes N -seconds 1 -elapsed -mr`, its machine-readable `+R:count:name:seconds` line
 * (on stderr) read back as operations per second. `-elapsed` makes openssl divide by
 * wall-clock time, as every other figure in the suite does (its default is CPU time).
 *
 * Which binary: $KLIPS_BENCH_OPENSSL if set (a path, or "none" to skip), else `openssl`
 * on the PATH. Where it is missing or a run fails, the figure is undefined and the suite
 * says why instead of failing.
 */

import { spawnSync } from 'node:child_process';

export interface SpeedArgs {
  /** `-evp` cipher or digest name (aes-128-gcm, aes-128-cbc, sha1), or `-hmac` digest. */
  evp?: string;
  hmac?: string;
  decrypt?: boolean;
  /** `-aead`: a TLS-like sequence per operation (new IV, AAD, update, final, tag). */
  aead?: boolean;
  bytes: number;
}

export interface SpeedResult {
  /** Operations (blocks of `bytes`) per second. */
  ops: number;
  /** The command line that produced it. */
  command: string;
}

const binary = (): string | undefined => {
  const env = process.env.KLIPS_BENCH_OPENSSL;
  if (env === 'none' || env === '') return undefined;
  return env ?? 'openssl';
};

let unavailable: string | undefined;

/** Why openssl speed cannot be run here, or undefined if it can (checked once). */
export function opensslUnavailable(): string | undefined {
  if (unavailable !== undefined) return unavailable || undefined;
  const bin = binary();
  if (!bin) {
    unavailable = 'KLIPS_BENCH_OPENSSL=none';
    return unavailable;
  }
  const r = spawnSync(bin, ['version'], { encoding: 'utf8' });
  unavailable = r.error ? `${bin}: ${r.error.message}` : r.status !== 0 ? `${bin} version exited ${r.status}` : '';
  return unavailable || undefined;
}

/** `openssl version`, or undefined. */
export function opensslVersion(): string | undefined {
  if (opensslUnavailable()) return undefined;
  return spawnSync(binary()!, ['version'], { encoding: 'utf8' }).stdout.trim();
}

/** One `openssl speed` run of one second; undefined when openssl is unavailable or the run fails. */
export function opensslSpeed(a: SpeedArgs): SpeedResult | undefined {
  if (opensslUnavailable()) return undefined;
  const args = ['speed'];
  if (a.evp) args.push('-evp', a.evp);
  if (a.hmac) args.push('-hmac', a.hmac);
  if (a.aead) args.push('-aead');
  if (a.decrypt) args.push('-decrypt');
  args.push('-bytes', String(a.bytes), '-seconds', '1', '-elapsed', '-mr');
  const r = spawnSync(binary()!, args, { encoding: 'utf8', timeout: 30_000 });
  const command = `openssl ${args.join(' ')}`;
  if (r.error || r.status !== 0) return undefined;
  // +R:<count>:<name>:<seconds> (on stderr, with the progress lines), one for the one size asked for.
  const m = /^\+R:(\d+):[^:]*:([0-9.]+)$/m.exec(`${r.stderr}\n${r.stdout}`);
  if (!m) return undefined;
  const count = Number(m[1]);
  const seconds = Number(m[2]);
  if (!(count > 0 && seconds > 0)) return undefined;
  return { ops: count / seconds, command };
}
