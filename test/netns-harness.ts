/**
 * Two hosts on one machine for the data plane's runtime tests: network namespaces joined
 * by a veth pair, a `klipsd --dataplane` in each, commands run inside one of them, and
 * an ESP tunnel between their protected subnets installed with the klips tools as an
 * operator would (spi, spigrp, eroute, then a route into ipsec0). Needs root and
 * iproute2 (CI is root); `netnsUnavailable()` says why not, for a skip message.
 *
 * Everything lives in namespaces named after this process, and `close()` removes them
 * (their veth and TUN devices go with them), killing what was started inside.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KLIPS = path.join(ROOT, 'dist/src/cli/main.js');
export const KLIPSD = path.join(ROOT, 'dist/src/daemon/main.js');

/** Why namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'not root (ip netns and TUN devices need root; CI runs as root)';
  if (!fs.existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  const probe = `klprobe${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `ip netns add failed: ${r.error?.message ?? r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

export function sh(cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: opts.timeout ?? 30_000, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}${r.stdout.trim() ? `\n${r.stdout.trim()}` : ''}`);
  return r.stdout;
}

export interface Family {
  name: 'inet' | 'inet6';
  /** Outer (veth) addresses, left and right, and the prefix length. */
  outer: [string, string];
  outerPrefix: number;
  /** One host address in each protected subnet (on lo), and the subnets. */
  inner: [string, string];
  subnets: [string, string];
  /** --ip4 or --ip6 for the tunnel SA. */
  tunFlag: '--ip4' | '--ip6';
}

export const INET: Family = {
  name: 'inet', outer: ['10.99.0.1', '10.99.0.2'], outerPrefix: 24,
  inner: ['10.98.1.1', '10.98.2.1'], subnets: ['10.98.1.0/24', '10.98.2.0/24'], tunFlag: '--ip4',
};
export const INET6: Family = {
  name: 'inet6', outer: ['fd00:99::1', 'fd00:99::2'], outerPrefix: 64,
  inner: ['fd00:98:1::1', 'fd00:98:2::1'], subnets: ['fd00:98:1::/64', 'fd00:98:2::/64'], tunFlag: '--ip6',
};

export interface Side {
  ns: string;
  veth: string;
  socket: string;
  daemon?: ChildProcess;
  log: string[];
}

let counter = 0;

export class Testbed {
  readonly left: Side;
  readonly right: Side;
  readonly dir: string;
  private readonly children: ChildProcess[] = [];

  constructor(readonly family: Family, readonly encap: 'udp' | 'raw') {
    const tag = `${process.pid}x${counter++}`;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klips-netns-'));
    this.left = { ns: `klt${tag}l`, veth: 'kl0', socket: path.join(this.dir, 'left.sock'), log: [] };
    this.right = { ns: `klt${tag}r`, veth: 'kr0', socket: path.join(this.dir, 'right.sock'), log: [] };
  }

  /** Namespaces, veth, addresses (both families), links up and carrier seen. */
  network(): void {
    const { left: l, right: r } = this;
    for (const s of [l, r]) sh('ip', ['netns', 'add', s.ns]);
    sh('ip', ['link', 'add', l.veth, 'netns', l.ns, 'type', 'veth', 'peer', 'name', r.veth, 'netns', r.ns]);
    for (const [i, s] of [[0, l], [1, r]] as const) {
      for (const f of [INET, INET6]) {
        sh('ip', ['-n', s.ns, 'addr', 'add', `${f.outer[i]}/${f.outerPrefix}`, 'dev', s.veth, ...(f === INET6 ? ['nodad'] : [])]);
        sh('ip', ['-n', s.ns, 'addr', 'add', `${f.inner[i]}/${f === INET6 ? 128 : 32}`, 'dev', 'lo', ...(f === INET6 ? ['nodad'] : [])]);
      }
      sh('ip', ['-n', s.ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', s.ns, 'link', 'set', s.veth, 'up']);
    }
    // klipsd reads the host's addresses at start (to mark inbound SAs): wait for the carrier.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if ([l, r].every((s) => sh('ip', ['-n', s.ns, '-br', 'link', 'show', s.veth]).includes('LOWER_UP'))) return;
      spawnSync('sleep', ['0.05']);
    }
    throw new Error('veth carrier did not come up in 5 s');
  }

  /** Start klipsd --dataplane in a side's namespace; resolves when its data plane runs. */
  async daemon(s: Side, extra: string[] = []): Promise<void> {
    const p = spawn('ip', ['netns', 'exec', s.ns, process.execPath, KLIPSD, '--dataplane', '--encap', this.encap, '--socket', s.socket, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
    s.daemon = p;
    this.children.push(p);
    p.stderr!.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`klipsd in ${s.ns} did not start: ${s.log.join('')}`)), 10_000);
      p.stderr!.on('data', (d: string) => {
        s.log.push(d);
        if (s.log.join('').includes('data plane running')) {
          clearTimeout(t);
          resolve();
        }
      });
      p.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`klipsd in ${s.ns} exited ${code}: ${s.log.join('')}`));
      });
    });
  }

  /** Run `klips ARGS --socket side` (the tools reach klipsd over its socket; no namespace needed). */
  klips(s: Side, args: string[]): string {
    return sh(process.execPath, [KLIPS, ...args, '--socket', s.socket]);
  }

  /** Run a command inside a side's namespace. */
  exec(s: Side, cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): string {
    return sh('ip', ['netns', 'exec', s.ns, cmd, ...args], opts);
  }

  /** Start a long-running command inside a side's namespace (killed by close()). */
  start(s: Side, cmd: string, args: string[]): ChildProcess & { out: string[] } {
    const p = spawn('ip', ['netns', 'exec', s.ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { out: string[] };
    p.out = [];
    p.stdout!.setEncoding('utf8');
    p.stderr!.setEncoding('utf8');
    p.stdout!.on('data', (d: string) => p.out.push(d));
    p.stderr!.on('data', (d: string) => p.out.push(d));
    this.children.push(p);
    return p;
  }

  /**
   * The tunnel as an operator installs it on each side: outbound tun+esp grouped, inbound
   * esp+tun (spigrp lists a group the same way on both sides; the engine reverses an
   * inbound one), an eroute from our subnet to theirs, and a route into ipsec0.
   */
  tunnel(opts: { esp?: string; enckey?: string; authkey?: string; life?: string; eroute?: boolean } = {}): void {
    const f = this.family;
    const esp = opts.esp ?? 'aes_gcm128';
    const enckey = opts.enckey ?? '0x000102030405060708090a0b0c0d0e0f10111213';
    for (const [i, s] of [[0, this.left], [1, this.right]] as const) {
      const me = f.outer[i];
      const peer = f.outer[1 - i];
      const [out, inn] = i === 0 ? ['1001', '2001'] : ['2001', '1001'];
      // openswan writes an IPv6 SAID with ':' after the protocol (esp:1001@fd00::1).
      const d = f === INET6 ? ':' : '.';
      const keys = ['--enckey', enckey, ...(opts.authkey ? ['--authkey', opts.authkey] : [])];
      const life = opts.life && i === 0 ? ['--life', opts.life] : [];
      this.klips(s, ['spi', '--said', `tun${d}${out}@${peer}`, '--src', me, '--dst', peer, f.tunFlag]);
      this.klips(s, ['spi', '--said', `esp${d}${out}@${peer}`, '--src', me, '--esp', esp, ...keys, ...life, '--replay_window', '32']);
      this.klips(s, ['spigrp', `tun${d}${out}@${peer}`, `esp${d}${out}@${peer}`]);
      this.klips(s, ['spi', '--said', `tun${d}${inn}@${me}`, '--src', peer, '--dst', me, f.tunFlag]);
      this.klips(s, ['spi', '--said', `esp${d}${inn}@${me}`, '--src', peer, '--esp', esp, ...keys, '--replay_window', '32']);
      this.klips(s, ['spigrp', `tun${d}${inn}@${me}`, `esp${d}${inn}@${me}`]);
      if (opts.eroute !== false) this.eroute(s, i, `tun${d}${out}@${peer}`, '--add');
      this.route(s, i);
    }
  }

  eroute(s: Side, i: 0 | 1, said: string, verb: '--add' | '--replace'): void {
    const f = this.family;
    this.klips(s, ['eroute', verb, '--eraf', f.name, '--src', f.subnets[i], '--dst', f.subnets[1 - i], '--said', said]);
  }

  route(s: Side, i: 0 | 1): void {
    const f = this.family;
    const r = spawnSync('ip', ['-n', s.ns, ...(f === INET6 ? ['-6'] : []), 'route', 'replace', f.subnets[1 - i], 'dev', 'ipsec0', 'src', f.inner[i]], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip route: ${r.stderr}`);
  }

  /** The runtime view's data (counters) of a side. */
  runtime(s: Side): RuntimeView {
    const line = this.klips(s, ['look', '--view', 'runtime', '--json']).trim();
    return (JSON.parse(line) as { data: RuntimeView }).data;
  }

  async close(): Promise<void> {
    for (const p of this.children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await Promise.all(this.children.map((p) => (p.exitCode !== null || p.signalCode !== null ? undefined : new Promise<void>((r) => {
      const t = setTimeout(() => { p.kill('SIGKILL'); r(); }, 3000);
      p.on('exit', () => { clearTimeout(t); r(); });
    }))));
    for (const s of [this.left, this.right]) spawnSync('ip', ['netns', 'del', s.ns]);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface DirectionCounters {
  packets: number; ipsec: number; passed: number; dropped: number; drops: Record<string, number>;
}

export interface RuntimeView {
  interface: string;
  tun: { read: number; written: number; merged: number };
  warm: { ticks: number; packets: number };
  carriers: { family: string; received: number; sent: number }[];
  drops: Record<string, number>;
  paths: { xmit: DirectionCounters; rcv: DirectionCounters };
}

/** Wait until `check()` holds, polling every 50 ms; fails after `ms` naming `what`. */
export async function until(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A tcpdump filter for a veth without its own link-local housekeeping, which comes and
 * goes with the kernel's timers and is no traffic of ours: ARP, IGMP, IPv6 neighbour
 * discovery (ICMPv6 133..137) and link-scope multicast (MLD reports to ff02::16 carry a
 * hop-by-hop header, so they are matched by destination, not by ICMPv6 type).
 */
export const NO_HOUSEKEEPING = 'not arp and not igmp and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 137) and not (ip6 and dst net ff02::/16)';

/** `count` pings from one side's protected host to the other's; ping's output. */
export function ping(tb: Testbed, from: 0 | 1, count = 3): string {
  const f = tb.family;
  const s = from === 0 ? tb.left : tb.right;
  return tb.exec(s, 'ping', [...(f === INET6 ? ['-6'] : []), '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '3', '-I', f.inner[from], f.inner[1 - from]]);
}

const TCP_SINK = `
const net = require('net'), crypto = require('crypto');
const [addr, port] = process.argv.slice(1);
const h = crypto.createHash('sha256'); let n = 0;
const s = net.createServer((k) => {
  k.on('data', (d) => { h.update(d); n += d.length; });
  k.on('end', () => { console.log(JSON.stringify({ n, sha: h.digest('hex') })); k.end(); s.close(); });
}).listen(Number(port), addr, () => console.log('listening'));
setTimeout(() => process.exit(3), 90000).unref();
`;

const TCP_SOURCE = `
const net = require('net'), crypto = require('crypto');
const [src, dst, port, total] = process.argv.slice(1);
const h = crypto.createHash('sha256'); let left = Number(total);
const k = net.connect({ host: dst, port: Number(port), localAddress: src }, () => {
  const pump = () => {
    while (left > 0) {
      const b = crypto.randomBytes(Math.min(65536, left)); left -= b.length; h.update(b);
      if (!k.write(b)) return k.once('drain', pump);
    }
    k.end();
  };
  pump();
});
k.on('data', () => {});
k.on('close', () => console.log(JSON.stringify({ sha: h.digest('hex') })));
k.on('error', (e) => { console.error(e.message); process.exit(2); });
setTimeout(() => process.exit(3), 90000).unref();
`;

/** `bytes` random bytes over TCP between the protected hosts; both ends' SHA-256 must agree. */
export async function tcpTransfer(tb: Testbed, from: 0 | 1, bytes: number, port = 5201): Promise<void> {
  const f = tb.family;
  const [src, dst] = from === 0 ? [tb.left, tb.right] : [tb.right, tb.left];
  const server = tb.start(dst, process.execPath, ['-e', TCP_SINK, f.inner[1 - from], String(port)]);
  await until('the TCP server', 10_000, () => server.out.join('').includes('listening'));
  const client = JSON.parse(tb.exec(src, process.execPath, ['-e', TCP_SOURCE, f.inner[from], f.inner[1 - from], String(port), String(bytes)], { timeout: 90_000 }).trim()) as { sha: string };
  await until('the TCP server to finish', 30_000, () => server.out.join('').includes('"sha"'));
  const got = JSON.parse(server.out.join('').split('\n').find((l) => l.includes('"sha"'))!) as { n: number; sha: string };
  if (got.n !== bytes || got.sha !== client.sha) throw new Error(`TCP transfer: sent ${bytes} bytes (sha ${client.sha}), received ${got.n} (sha ${got.sha})`);
}
