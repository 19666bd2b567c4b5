#!/usr/bin/env node
/**
 * The klipsd binary: resolve the socket path, load the configuration (embedded default
 * or --config FILE), start the server, log as JSON lines on stderr (pino; a line that
 * cannot be written is dropped and counted, see log-sink.ts). Signals:
 *
 *   SIGTERM, SIGINT  stop accepting, close every connection, remove the socket files (and with
 *                    --dataplane the TUN interface and the ESP sockets), exit 0
 *   SIGHUP           reload --config FILE (config.ts's RELOAD table says what applies live);
 *                    a bad file is logged and the running configuration kept
 *   SIGUSR1          ignored and logged: Node would open its inspector (a debugger on
 *                    127.0.0.1:9229) in a process that holds keys
 *
 * --dataplane starts the data plane's runtime (daemon/dataplane.ts) once the server
 * listens; without the privileges it needs, klipsd says so in one line and exits 1.
 * --version prints the package's version. Bad arguments: usage and exit 2; a refusal to
 * start (live socket, bad configuration): one line on stderr and exit 1.
 */

import fs from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { pino, type Logger } from 'pino';
import { ConfigError, DEFAULT_CONFIG, LOG_LEVELS, loadConfigFile, type DaemonConfig, type LogLevel } from './config.js';
import { LogSink } from './log-sink.js';
import { defaultSocketPath, resolveSocketPath } from './paths.js';
import { ServerError, startServer, type KlipsServer } from './server.js';
import { DEFAULT_RUNTIME, type Encap } from '../dataplane/runtime-options.js';
// The data plane (daemon/dataplane.ts and what it loads) is imported only with --dataplane.
type DataplaneModule = typeof import('./dataplane.js');
type DataplaneRuntime = ReturnType<DataplaneModule['startDataplane']>;

interface Opts {
  socket?: string;
  kameSocket?: string;
  config?: string;
  group?: string;
  logLevel?: LogLevel;
  dataplane?: boolean;
  interface: string;
  mtu: number;
  encap: Encap;
  udpPort: number;
  offload: boolean;
  keepWarm: number;
}

function intIn(name: string, lo: number, hi: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < lo || n > hi) throw new InvalidArgumentError(`${name} must be a whole number from ${lo} to ${hi}`);
    return n;
  };
}

/** The version in package.json (dist/src/daemon/main.js is three levels below it). */
function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function parseArgs(argv: string[]): Opts {
  const program = new Command('klipsd')
    .description('KLIPS PF_KEY v2 kernel side, served on a Unix stream socket')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--socket <path>', `socket path (default: $KLIPS_SOCKET, else ${defaultSocketPath()})`)
    .option('--kame-socket <path>', 'the KAME-dialect (Linux numbering) PF_KEY socket (default: the socket path + .kame; "" for none)')
    .option('--config <file>', 'JSON configuration: supported algorithms, queue sizes, debug flags')
    .option('--group <group>', 'let this group use the socket (mode 0660 instead of 0600)')
    .addOption(new Option('--log-level <level>', 'log level (overrides the configuration)').choices(LOG_LEVELS as unknown as string[]))
    .option('--dataplane', 'carry traffic: create the TUN interface and the ESP sockets (root or CAP_NET_ADMIN)')
    .option('--interface <name>', 'with --dataplane: the TUN interface to create', DEFAULT_RUNTIME.interface)
    .option('--mtu <bytes>', 'with --dataplane: the interface MTU', intIn('--mtu', 576, 9000), DEFAULT_RUNTIME.mtu)
    .addOption(new Option('--encap <how>', 'with --dataplane: ESP in UDP (RFC 3948) or raw IP protocol 50').choices(['udp', 'raw']).default(DEFAULT_RUNTIME.encap))
    .option('--udp-port <port>', 'with --dataplane --encap udp: the port ESP in UDP uses', intIn('--udp-port', 1, 65535), DEFAULT_RUNTIME.udpPort)
    .option('--keep-warm <ms>', 'with --dataplane: for 10 s after a packet, run a private packet through the paths every <ms> ms so the next one finds them warm (0: never)', intIn('--keep-warm', 0, 1000), DEFAULT_RUNTIME.keepWarmMs)
    .option('--no-offload', 'with --dataplane: read the interface one packet at a time (no checksum or TCP segmentation offload)')
    .helpOption('-h, --help', 'show this help')
    .showHelpAfterError()
    .allowExcessArguments(false)
    .exitOverride();
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2);
    }
    throw e;
  }
  return program.opts<Opts>();
}

async function main(): Promise<void> {
  // Before anything else: with no listener, SIGUSR1 opens Node's inspector.
  let onUsr1 = (): void => {};
  process.on('SIGUSR1', () => onUsr1());
  const opts = parseArgs(process.argv.slice(2));
  let config: DaemonConfig;
  try {
    config = opts.config ? loadConfigFile(opts.config) : { ...DEFAULT_CONFIG, debug: [] };
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`klipsd: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  if (opts.logLevel) config.logLevel = opts.logLevel;
  const dp: DataplaneModule | undefined = opts.dataplane ? await import('./dataplane.js') : undefined;
  if (dp) {
    try {
      dp.checkDataplanePrivileges(opts);
    } catch (e) {
      if (!(e instanceof dp.DataplaneRefused)) throw e;
      process.stderr.write(`klipsd: ${e.message}\n`);
      process.exit(1);
    }
  }
  // A log that cannot be written (full disk, closed pipe) is dropped and counted, never fatal.
  const logSink = new LogSink(2);
  process.stderr.on('error', (e: NodeJS.ErrnoException) => logSink.lose(e.code));
  const logger: Logger = pino({ name: 'klipsd', level: config.logLevel }, logSink);
  const explicit = Boolean(opts.socket || process.env.KLIPS_SOCKET);
  const socketPath = resolveSocketPath(opts.socket);

  // Signals first: a SIGTERM that arrives while the sockets are being set up still stops us cleanly.
  let server: KlipsServer | undefined;
  let runtime: DataplaneRuntime | undefined;
  let stopping: string | undefined;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = signal;
    if (!server) return; // start-up finishes first, then stops
    logger.info({ signal }, 'stopping');
    const srv = server;
    (runtime ? runtime.close() : Promise.resolve()).then(() => srv.close()).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  onUsr1 = () => logger.warn({ signal: 'SIGUSR1' }, 'SIGUSR1 ignored: the Node inspector stays closed in a process that holds keys');
  process.on('SIGHUP', () => {
    if (!server || stopping) return;
    if (!opts.config) {
      logger.info({ signal: 'SIGHUP' }, 'no configuration file to reload (klipsd runs on its embedded default)');
      return;
    }
    let next: DaemonConfig;
    try {
      next = loadConfigFile(opts.config);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      logger.error({ signal: 'SIGHUP', error: e.message }, 'configuration not reloaded; the running one is kept');
      return;
    }
    if (opts.logLevel) next.logLevel = opts.logLevel;
    server.reconfigure(next);
  });

  try {
    server = await startServer({
      socketPath, config, logger, logSink, group: opts.group, kameSocketPath: opts.kameSocket,
      privateDir: !explicit && !socketPath.startsWith('/run/'),
    });
  } catch (e) {
    if (e instanceof ServerError) {
      process.stderr.write(`klipsd: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  if (dp) {
    try {
      runtime = dp.startDataplane(server, opts);
    } catch (e) {
      if (!(e instanceof dp.DataplaneRefused)) throw e;
      process.stderr.write(`klipsd: ${e.message}\n`);
      await server.close();
      process.exit(1);
    }
  }
  if (stopping) {
    const signal = stopping;
    stopping = undefined;
    stop(signal);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`klipsd: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
