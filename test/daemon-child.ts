/**
 * klipsd as a child process, for the daemon-*.test.ts files that need the real binary:
 * spawn it (stderr captured, or sent to a descriptor of the test's choosing), wait until
 * both sockets accept, ask its view channel, and stop it with a signal (bounded).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { infoPathFor } from '../src/daemon/paths.js';
import { DAEMON, waitUntil, within } from './cli-harness.js';

export interface Proc {
  child: ChildProcess;
  /** What klipsd wrote on stderr so far ('' when stderr went to a descriptor). */
  stderr(): string;
  exited: Promise<number>;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  /** A descriptor for klipsd's stderr instead of a pipe (e.g. /dev/full). */
  stderrFd?: number;
  /** Run through this command instead of node (e.g. ['unshare', ...]); klipsd's arguments follow. */
  wrap?: string[];
}

export function spawnDaemon(args: string[], o: SpawnOptions = {}): Proc {
  const argv = [...(o.wrap ?? []), process.execPath, DAEMON, ...args];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', o.stderrFd ?? 'pipe'], env: o.env ?? process.env });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const exited = new Promise<number>((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig === 'SIGKILL' ? 137 : 128))));
  return { child, stderr: () => err, exited };
}

export function connectable(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(p, () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

export async function ready(p: Proc, socket: string): Promise<void> {
  let exited = false;
  p.exited.then(() => { exited = true; });
  await waitUntil(`klipsd to listen on ${socket}`, async () => {
    if (exited) throw new Error(`klipsd exited early: ${p.stderr()}`);
    return (await connectable(socket)) && (await connectable(infoPathFor(socket)));
  }, 10000);
}

export async function stopWith(p: Proc, signal: NodeJS.Signals): Promise<number> {
  p.child.kill(signal);
  return within(10000, `klipsd to exit on ${signal}`, p.exited);
}

/** One view from klipsd's view channel `<socket>.info` (its JSON data). */
export function infoView<T = Record<string, unknown>>(socket: string, view: string): Promise<T> {
  return within(5000, `the ${view} view`, new Promise<T>((resolve, reject) => {
    const c = net.connect(infoPathFor(socket), () => c.write(`${JSON.stringify({ view })}\n`));
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (s: string) => {
      buf += s;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      c.destroy();
      const answer = JSON.parse(buf.slice(0, i)) as { data?: T; error?: string };
      if (answer.error !== undefined) reject(new Error(answer.error));
      else resolve(answer.data as T);
    });
    c.on('error', reject);
  }));
}
