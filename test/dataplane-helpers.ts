/**
 * Shared by the dataplane-*.test.ts files: hex and address helpers, test packets (IPv4 and
 * IPv6 with TCP/UDP/ICMP, options and extension headers), TransformSAs for every algorithm
 * pair with the names scapy gives them, and the runner for test/dataplane-scapy.py under
 * /usr/bin/python3 (Debian's python3-scapy), with the reason it cannot run, if so.
 */

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  SADB_AALG_MD5HMAC, SADB_AALG_NONE, SADB_AALG_SHA1HMAC, SADB_EALG_3DESCBC, SADB_EALG_NULL,
  SADB_SATYPE_AH, SADB_SATYPE_ESP, SADB_X_AALG_SHA2_256HMAC, SADB_X_AALG_SHA2_384HMAC,
  SADB_X_AALG_SHA2_512HMAC, SADB_X_EALG_AESCBC, SADB_X_EALG_AESCTR, SADB_X_EALG_AES_GCM_ICV12,
  SADB_X_EALG_AES_GCM_ICV16, SADB_X_EALG_AES_GCM_ICV8, parseIPv4, parseIPv6,
} from '../src/wire/index.js';
import {
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, buildIPv4Header, buildIPv6Header, refreshTransportChecksum,
  type TransformSA,
} from '../src/dataplane/index.js';

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

export function addr(s: string): Uint8Array {
  const a = s.includes(':') ? parseIPv6(s) : parseIPv4(s);
  if (!a) throw new Error(`bad address ${s}`);
  return a;
}

/** Deterministic bytes (a small LCG), so failures reproduce. */
export function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export function tcp(sport: number, dport: number, data: Uint8Array): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(0x01020304, 4);
  h[12] = 5 << 4;
  h[13] = 0x18;
  h.writeUInt16BE(8192, 14);
  return Buffer.concat([h, data]);
}

export function udp(sport: number, dport: number, data: Uint8Array): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + data.length, 4);
  h.writeUInt16BE(0xffff, 6); // not "no checksum": ipv4()/ipv6() compute it
  return Buffer.concat([h, data]);
}

export function icmpEcho(data: Uint8Array): Buffer {
  return Buffer.concat([hex('0800 0000 1234 0001'), data]);
}

export interface V4 {
  src?: string;
  dst?: string;
  proto?: number;
  payload: Uint8Array;
  tos?: number;
  id?: number;
  ttl?: number;
  flags?: number;
  options?: Uint8Array;
}

/** An IPv4 packet with valid header and transport checksums. */
export function ipv4(p: V4): Buffer {
  const h = buildIPv4Header({
    tos: p.tos ?? 0, id: p.id ?? 0x1234, flags: p.flags ?? 0, ttl: p.ttl ?? 63, protocol: p.proto ?? IPPROTO_TCP,
    src: addr(p.src ?? '10.1.0.5'), dst: addr(p.dst ?? '10.2.0.7'), payloadLength: p.payload.length, options: p.options,
  });
  const pkt = Buffer.concat([h, p.payload]);
  refreshTransportChecksum(pkt);
  return pkt;
}

export interface V6 {
  src?: string;
  dst?: string;
  nh?: number;
  /** Extension headers and upper layer, already chained by the caller. */
  payload: Uint8Array;
  tc?: number;
  fl?: number;
  hlim?: number;
}

export function ipv6(p: V6): Buffer {
  const h = buildIPv6Header({
    trafficClass: p.tc ?? 0, flowLabel: p.fl ?? 0, hopLimit: p.hlim ?? 63, nextHeader: p.nh ?? IPPROTO_TCP,
    src: addr(p.src ?? '2001:db8:1::5'), dst: addr(p.dst ?? '2001:db8:2::7'), payloadLength: p.payload.length,
  });
  const pkt = Buffer.concat([h, p.payload]);
  refreshTransportChecksum(pkt);
  return pkt;
}

/** A hop-by-hop or destination options header carrying `options` (padded to 8 bytes). */
export function optionsHeader(nh: number, options: Uint8Array): Buffer {
  const raw = Buffer.concat([Buffer.from([nh, 0]), options]);
  const len = Math.ceil(raw.length / 8) * 8;
  const pad = len - raw.length;
  const padding = pad === 1 ? Buffer.from([0]) : pad > 1 ? Buffer.concat([Buffer.from([1, pad - 2]), Buffer.alloc(pad - 2)]) : Buffer.alloc(0);
  const h = Buffer.concat([raw, padding]);
  h[1] = len / 8 - 1;
  return h;
}

/** A type 0 routing header through `hops`, with `left` segments left. */
export function routingHeader(nh: number, hops: string[], left: number): Buffer {
  const h = Buffer.alloc(8 + 16 * hops.length);
  h[0] = nh;
  h[1] = hops.length * 2;
  h[2] = 0;
  h[3] = left;
  hops.forEach((a, i) => h.set(addr(a), 8 + 16 * i));
  return h;
}

/** Test packets of each family and a few shapes. */
export function samplePackets(seed = 1): { name: string; packet: Buffer }[] {
  return [
    { name: 'v4 tcp', packet: ipv4({ payload: tcp(40000, 443, bytes(37 + (seed % 20), seed)), tos: 0x28 }) },
    { name: 'v4 udp', packet: ipv4({ proto: IPPROTO_UDP, payload: udp(5353, 53, bytes(3 + (seed % 7), seed + 1)) }) },
    { name: 'v4 icmp', packet: ipv4({ proto: IPPROTO_ICMP, payload: icmpEcho(bytes(56, seed + 2)) }) },
    { name: 'v6 tcp', packet: ipv6({ payload: tcp(40001, 22, bytes(11 + (seed % 30), seed + 3)) }) },
    { name: 'v6 udp', packet: ipv6({ nh: IPPROTO_UDP, payload: udp(1000, 2000, bytes(100, seed + 4)) }) },
  ];
}

export interface AlgPair {
  name: string;
  encrypt: number;
  auth: number;
  encKeyBytes: number;
  authKeyBytes: number;
  scapyCrypt: string | null;
  scapyAuth: string | null;
  /** GCM ICV bytes. */
  cicv?: number;
}

export const AUTHS = [
  { id: SADB_AALG_MD5HMAC, key: 16, scapy: 'HMAC-MD5-96' },
  { id: SADB_AALG_SHA1HMAC, key: 20, scapy: 'HMAC-SHA1-96' },
  { id: SADB_X_AALG_SHA2_256HMAC, key: 32, scapy: 'SHA2-256-128' },
  { id: SADB_X_AALG_SHA2_384HMAC, key: 48, scapy: 'SHA2-384-192' },
  { id: SADB_X_AALG_SHA2_512HMAC, key: 64, scapy: 'SHA2-512-256' },
] as const;

const CIPHERS = [
  { id: SADB_X_EALG_AESCBC, key: 16, scapy: 'AES-CBC', name: 'aes128cbc' },
  { id: SADB_X_EALG_AESCBC, key: 24, scapy: 'AES-CBC', name: 'aes192cbc' },
  { id: SADB_X_EALG_AESCBC, key: 32, scapy: 'AES-CBC', name: 'aes256cbc' },
  { id: SADB_EALG_3DESCBC, key: 24, scapy: '3DES', name: '3des' },
  { id: SADB_X_EALG_AESCTR, key: 20, scapy: 'AES-CTR', name: 'aes128ctr' },
  { id: SADB_X_EALG_AESCTR, key: 36, scapy: 'AES-CTR', name: 'aes256ctr' },
  { id: SADB_EALG_NULL, key: 0, scapy: 'NULL', name: 'null' },
] as const;

/** Every cipher × every HMAC (and none, except for NULL), and GCM 8/12/16 at 128/192/256 bits. */
export function algPairs(): AlgPair[] {
  const out: AlgPair[] = [];
  for (const c of CIPHERS) {
    for (const a of [...AUTHS, { id: SADB_AALG_NONE, key: 0, scapy: null }]) {
      if (c.id === SADB_EALG_NULL && a.id === SADB_AALG_NONE) continue;
      out.push({
        name: `${c.name}/${a.scapy ?? 'none'}`, encrypt: c.id, auth: a.id, encKeyBytes: c.key, authKeyBytes: a.key,
        scapyCrypt: c.scapy, scapyAuth: a.scapy,
      });
    }
  }
  for (const [id, icv] of [[SADB_X_EALG_AES_GCM_ICV8, 8], [SADB_X_EALG_AES_GCM_ICV12, 12], [SADB_X_EALG_AES_GCM_ICV16, 16]]) {
    for (const key of [20, 28, 36]) {
      out.push({
        name: `aes${(key - 4) * 8}gcm${icv}`, encrypt: id, auth: SADB_AALG_NONE, encKeyBytes: key, authKeyBytes: 0,
        scapyCrypt: 'AES-GCM', scapyAuth: null, cicv: icv,
      });
    }
  }
  return out;
}

export function espSA(pair: AlgPair, over: Partial<TransformSA> = {}, seed = 7): TransformSA {
  return {
    satype: SADB_SATYPE_ESP, spi: 0x1000 + seed, encrypt: pair.encrypt, auth: pair.auth,
    encryptKey: bytes(pair.encKeyBytes, seed), authKey: bytes(pair.authKeyBytes, seed + 100),
    replayWindow: 64, src: addr('192.0.2.1'), dst: addr('198.51.100.2'), ...over,
  };
}

export function ahSA(auth: (typeof AUTHS)[number], over: Partial<TransformSA> = {}, seed = 9): TransformSA {
  return {
    satype: SADB_SATYPE_AH, spi: 0x2000 + seed, encrypt: 0, auth: auth.id, authKey: bytes(auth.key, seed),
    replayWindow: 64, src: addr('192.0.2.1'), dst: addr('198.51.100.2'), ...over,
  };
}

// --- scapy ---

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');
export const SCAPY_SCRIPT = path.join(root, 'test', 'dataplane-scapy.py');
export const PYTHON = '/usr/bin/python3';

/** Why the scapy cross-check cannot run here, or undefined when it can. */
export function scapyUnavailable(): string | undefined {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import scapy.layers.ipsec, cryptography'], { encoding: 'utf8' });
  if (r.status !== 0) return `scapy (python3-scapy) or cryptography not importable by ${PYTHON}: ${r.stderr.trim().split('\n').pop()}`;
  return undefined;
}

export interface ScapyCase {
  op: 'encrypt' | 'decrypt' | 'checksums';
  proto?: 'ESP' | 'AH';
  spi?: number;
  seq?: number;
  esn?: boolean;
  seqhi?: number;
  crypt?: string | null;
  ckey?: string;
  cicv?: number;
  auth?: string | null;
  akey?: string;
  tunnel?: { v: 4 | 6; src: string; dst: string; tos?: number; id?: number; ttl?: number } | null;
  natt?: { sport: number; dport: number } | null;
  iv?: string | null;
  packet: string;
}

export type ScapyResult = { ok: true; packet: string } | { ok: false; error: string };

/** Run a batch of cases through scapy in one process. */
export function runScapy(cases: ScapyCase[]): ScapyResult[] {
  const r = spawnSync(PYTHON, [SCAPY_SCRIPT], { input: JSON.stringify(cases), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`scapy helper failed (${r.status}): ${r.stderr}`);
  const out = JSON.parse(r.stdout) as ScapyResult[];
  if (out.length !== cases.length) throw new Error('scapy helper returned the wrong number of results');
  return out;
}
