/**
 * The control plane's latency while the tunnel carries traffic (bench/tunnel.sh): an
 * open-loop PF_KEY client that sends SADB_GET for one SA every PERIOD ms for SECONDS
 * seconds, each due at t0 + k·PERIOD whatever happened to the others, and prints one
 * JSON line: how many were sent and answered, and the latency from each GET's due time to
 * its answer (p50, p99, max, in ms), so a stall counts for every GET that fell in it.
 *
 *   node dist/bench/tunnel-get.js SOCKET SAID SECONDS [PERIOD_MS]
 *   e.g. node dist/bench/tunnel-get.js /tmp/left.sock esp.1001@10.99.0.2 10
 */

import net from 'node:net';
import { parseSaidArg } from '../src/cli/args.js';
import { buildMessage, IPPROTO_AH, SADB_GET, SADB_SATYPE_AH, SADB_SATYPE_ESP } from '../src/wire/index.js';
import { FrameWalker } from './daemon.bench.js';
import { summarize } from './harness.js';

async function main(): Promise<void> {
  const [sock, saidText, secondsText, periodText] = process.argv.slice(2);
  if (!sock || !saidText || !secondsText) throw new Error('usage: tunnel-get SOCKET SAID SECONDS [PERIOD_MS]');
  const seconds = Number(secondsText);
  const period = Number(periodText ?? 1);
  const said = parseSaidArg(saidText);
  const pid = 40000 + (process.pid & 0x3fff);
  const get = (seq: number) => Buffer.from(buildMessage({
    header: { type: SADB_GET, satype: said.proto === IPPROTO_AH ? SADB_SATYPE_AH : SADB_SATYPE_ESP, seq, pid },
    sa: { spi: said.spi, replay: 0, state: 0, auth: 0, encrypt: 0, flags: 0 },
    addressDst: { family: said.family, addr: said.dst, proto: 0, prefixlen: 0, port: 0 },
  }));
  const c = net.connect(sock);
  await new Promise<void>((res, rej) => { c.once('connect', res); c.once('error', rej); });
  const max = Math.ceil((seconds * 1000) / period);
  const lat: number[] = [];
  let errors = 0;
  let k = 0;
  const t0 = performance.now();
  const due = (i: number) => t0 + i * period;
  const walker = new FrameWalker((type, errno, seq, fromPid) => {
    if (fromPid !== pid || type !== SADB_GET) return;
    if (errno) errors++;
    lat.push(performance.now() - due(seq));
  });
  c.on('data', (b: Buffer) => walker.push(b));
  await new Promise<void>((resolve) => {
    const pump = () => {
      const now = performance.now();
      while (k < max && due(k) <= now) c.write(get(k++));
      if (k >= max) return resolve();
      setTimeout(pump, Math.max(0, due(k) - performance.now()));
    };
    pump();
  });
  const deadline = performance.now() + 5000;
  while (lat.length < k && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  c.destroy();
  const s = summarize(lat);
  process.stdout.write(`${JSON.stringify({ sent: k, answered: lat.length, errors, p50: s.p50, p99: s.p99, max: s.max })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`tunnel-get: ${(e as Error).message}\n`);
  process.exit(1);
});
