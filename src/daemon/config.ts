/**
 * klipsd's configuration: an embedded default (no file needed, no root needed), and an
 * optional JSON file (`--config FILE`) that sizes the queues and limits, narrows the
 * supported algorithms and turns on debug flags. Every field is checked; a mistake is
 * reported with the file, the field and what was expected, never half-applied. The
 * keys, their units and defaults, an example with every one, and what a reload (SIGHUP)
 * changes (the RELOAD table below) are in docs/klipsd.md.
 *
 * An algorithm is a name (`aes`, `sha2_256`, `deflate`), a number, or an object
 * `{ "name" | "id", "ivlen", "minbits", "maxbits", "sizes" }`; the default entry for the
 * same algorithm supplies any field left out.
 */

import fs from 'node:fs';
import { DEBUG_SUBSYSTEMS, type DebugSubsystem } from '../wire/index.js';
import { defaultSupported, type AlgSpec, type SupportedLists } from '../engine/algorithms.js';
import { AUTH_NAMES, SATYPE_BY_CONFIG_NAME, encryptNamesFor, type NameTable } from '../engine/algorithm-names.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface DaemonConfig {
  rcvbuf: number;
  rcvbufTotal: number;
  writeHighWater: number;
  maxConnections: number;
  partialFrameTimeoutMs: number;
  larvalLifetime: number;
  logLevel: LogLevel;
  debug: DebugSubsystem[];
  /** The engine's supported-algorithm registry; undefined = the engine's default. */
  supported?: Map<number, SupportedLists>;
  /** Where the KAME-dialect PF_KEY socket listens: null = `<socket>.kame` (the default), '' = none. */
  kameSocket: string | null;
}

export const DEFAULT_CONFIG: Readonly<DaemonConfig> = Object.freeze({
  rcvbuf: 212992,
  rcvbufTotal: 64 * 1024 * 1024,
  writeHighWater: 64 * 1024,
  maxConnections: 1024,
  partialFrameTimeoutMs: 10_000,
  larvalLifetime: 0,
  logLevel: 'info',
  debug: [],
  kameSocket: null,
});

/**
 * How a changed key takes effect when klipsd reloads its configuration (SIGHUP): at
 * once, for connections accepted from then on, or only after a restart (the engine was
 * built with it; the running value stays).
 */
export const RELOAD: Readonly<Record<keyof DaemonConfig, 'live' | 'new connections' | 'restart'>> = Object.freeze({
  rcvbuf: 'new connections',
  rcvbufTotal: 'live',
  writeHighWater: 'live',
  maxConnections: 'live',
  partialFrameTimeoutMs: 'live',
  larvalLifetime: 'restart',
  logLevel: 'live',
  debug: 'live',
  supported: 'restart',
  kameSocket: 'restart',
});

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const KNOWN_KEYS = ['rcvbuf', 'rcvbufTotal', 'writeHighWater', 'maxConnections', 'partialFrameTimeoutMs', 'larvalLifetime', 'logLevel', 'debug', 'supported', 'kameSocket'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function intField(src: string, key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${src}: "${key}" must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function resolveAlg(src: string, where: string, entry: unknown, names: NameTable, defaults: AlgSpec[]): AlgSpec {
  let id: number | undefined;
  let over: Record<string, unknown> = {};
  const byName = (n: string): number => {
    const found = names.byName[n.toLowerCase()];
    if (found === undefined) {
      throw new ConfigError(`${src}: ${where}: unknown algorithm "${n}" (known: ${Object.values(names.byId).join(', ')})`);
    }
    return found;
  };
  if (typeof entry === 'string') id = byName(entry);
  else if (typeof entry === 'number') id = intField(src, `${where} id`, entry, 1, 255);
  else if (isObject(entry)) {
    over = entry;
    for (const k of Object.keys(entry)) {
      if (!['name', 'id', 'ivlen', 'minbits', 'maxbits', 'sizes'].includes(k)) {
        throw new ConfigError(`${src}: ${where}: unknown field "${k}" (expected name, id, ivlen, minbits, maxbits, sizes)`);
      }
    }
    if (typeof entry.name === 'string') id = byName(entry.name);
    else if (entry.id !== undefined) id = intField(src, `${where} id`, entry.id, 1, 255);
    else throw new ConfigError(`${src}: ${where}: an algorithm object needs "name" or "id"`);
  } else {
    throw new ConfigError(`${src}: ${where}: an algorithm is a name, a number or an object, got ${JSON.stringify(entry)}`);
  }
  const base = defaults.find((a) => a.id === id);
  const pick = (k: 'ivlen' | 'minbits' | 'maxbits', max: number): number => {
    if (over[k] !== undefined) return intField(src, `${where} ${k}`, over[k], 0, max);
    if (base) return base[k];
    throw new ConfigError(`${src}: ${where}: algorithm ${id} has no default entry; give ivlen, minbits and maxbits`);
  };
  const spec: AlgSpec = { id: id!, ivlen: pick('ivlen', 255), minbits: pick('minbits', 65535), maxbits: pick('maxbits', 65535) };
  if (spec.minbits > spec.maxbits) throw new ConfigError(`${src}: ${where}: minbits ${spec.minbits} > maxbits ${spec.maxbits}`);
  if (over.sizes !== undefined) {
    if (!Array.isArray(over.sizes) || over.sizes.length === 0) throw new ConfigError(`${src}: ${where}: "sizes" must be a non-empty array of bit counts`);
    spec.sizes = over.sizes.map((s, i) => intField(src, `${where} sizes[${i}]`, s, 1, 65535));
  } else if (base?.sizes && over.minbits === undefined && over.maxbits === undefined) {
    spec.sizes = [...base.sizes];
  }
  return spec;
}

function parseSupported(src: string, v: unknown): Map<number, SupportedLists> {
  if (!isObject(v)) throw new ConfigError(`${src}: "supported" must be an object keyed by SA type (ah, esp, ipip, comp)`);
  const defaults = defaultSupported();
  const out = new Map<number, SupportedLists>();
  for (const [satype, lists] of defaults) out.set(satype, { auth: [...lists.auth], encrypt: [...lists.encrypt] });
  for (const [key, val] of Object.entries(v)) {
    const satype = SATYPE_BY_CONFIG_NAME[key.toLowerCase()];
    if (satype === undefined) {
      throw new ConfigError(`${src}: "supported.${key}": unknown SA type (expected ${Object.keys(SATYPE_BY_CONFIG_NAME).join(', ')})`);
    }
    if (val === null) {
      out.delete(satype);
      continue;
    }
    if (!isObject(val)) throw new ConfigError(`${src}: "supported.${key}" must be an object { "auth": [...], "encrypt": [...] } or null`);
    for (const k of Object.keys(val)) {
      if (k !== 'auth' && k !== 'encrypt') throw new ConfigError(`${src}: "supported.${key}.${k}": unknown field (expected auth, encrypt)`);
    }
    const def = defaults.get(satype) ?? { auth: [], encrypt: [] };
    const list = (kind: 'auth' | 'encrypt'): AlgSpec[] => {
      const raw = val[kind];
      if (raw === undefined) return [...def[kind]];
      if (!Array.isArray(raw)) throw new ConfigError(`${src}: "supported.${key}.${kind}" must be an array`);
      const names = kind === 'auth' ? AUTH_NAMES : encryptNamesFor(satype);
      const specs = raw.map((e, i) => resolveAlg(src, `supported.${key}.${kind}[${i}]`, e, names, def[kind]));
      const seen = new Set<number>();
      for (const s of specs) {
        if (seen.has(s.id)) throw new ConfigError(`${src}: "supported.${key}.${kind}" lists algorithm ${s.id} twice`);
        seen.add(s.id);
      }
      return specs;
    };
    out.set(satype, { auth: list('auth'), encrypt: list('encrypt') });
  }
  return out;
}

/** Check a parsed JSON value and turn it into a configuration (defaults fill the gaps). */
export function parseConfig(value: unknown, src = 'config'): DaemonConfig {
  if (!isObject(value)) throw new ConfigError(`${src}: the configuration must be a JSON object`);
  for (const k of Object.keys(value)) {
    if (!KNOWN_KEYS.includes(k)) throw new ConfigError(`${src}: unknown field "${k}" (known: ${KNOWN_KEYS.join(', ')})`);
  }
  const cfg: DaemonConfig = { ...DEFAULT_CONFIG, debug: [] };
  if (value.rcvbuf !== undefined) cfg.rcvbuf = intField(src, 'rcvbuf', value.rcvbuf, 1024, 1 << 30);
  if (value.rcvbufTotal !== undefined) cfg.rcvbufTotal = intField(src, 'rcvbufTotal', value.rcvbufTotal, 65536, 2 ** 40);
  if (value.writeHighWater !== undefined) cfg.writeHighWater = intField(src, 'writeHighWater', value.writeHighWater, 16384, 1 << 30);
  if (value.maxConnections !== undefined) cfg.maxConnections = intField(src, 'maxConnections', value.maxConnections, 1, 1 << 20);
  if (value.partialFrameTimeoutMs !== undefined) {
    cfg.partialFrameTimeoutMs = intField(src, 'partialFrameTimeoutMs', value.partialFrameTimeoutMs, 0, 24 * 3600 * 1000);
  }
  if (value.larvalLifetime !== undefined) cfg.larvalLifetime = intField(src, 'larvalLifetime', value.larvalLifetime, 0, 0x7fffffff);
  if (value.logLevel !== undefined) {
    if (typeof value.logLevel !== 'string' || !(LOG_LEVELS as readonly string[]).includes(value.logLevel)) {
      throw new ConfigError(`${src}: "logLevel" must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value.logLevel)}`);
    }
    cfg.logLevel = value.logLevel as LogLevel;
  }
  if (value.debug !== undefined) cfg.debug = parseDebugList(value.debug, src);
  if (value.supported !== undefined) cfg.supported = parseSupported(src, value.supported);
  if (value.kameSocket !== undefined) {
    if (value.kameSocket !== null && (typeof value.kameSocket !== 'string' || value.kameSocket.includes('\0'))) {
      throw new ConfigError(`${src}: "kameSocket" must be a path, "" for no KAME socket, or null for the socket's path + .kame, got ${JSON.stringify(value.kameSocket)}`);
    }
    cfg.kameSocket = value.kameSocket;
  }
  return cfg;
}

export function parseDebugList(v: unknown, src = 'config'): DebugSubsystem[] {
  if (!Array.isArray(v)) throw new ConfigError(`${src}: "debug" must be an array of subsystem names`);
  const out = new Set<DebugSubsystem>();
  for (const name of v) {
    if (name === 'all') {
      for (const s of DEBUG_SUBSYSTEMS) out.add(s);
      continue;
    }
    if (typeof name !== 'string' || !(DEBUG_SUBSYSTEMS as readonly string[]).includes(name)) {
      throw new ConfigError(`${src}: "debug": unknown subsystem ${JSON.stringify(name)} (known: ${DEBUG_SUBSYSTEMS.join(', ')}, all)`);
    }
    out.add(name as DebugSubsystem);
  }
  return [...out];
}

/** Read and check a configuration file. */
export function loadConfigFile(file: string): DaemonConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(value, file);
}
