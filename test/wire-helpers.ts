/**
 * Small helpers shared by the wire-*.test.ts files: hex in and out, a message-header
 * writer for hand-built vectors, an assertion for PfkeyError refusals, and loaders for
 * the captured vectors under test/vectors/.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PfkeyError } from '../src/wire/errno.js';

/** Bytes to lower-case hex. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Hex (spaces allowed, for readability) to a plain Uint8Array (not a Buffer). */
export function unhex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 || !/^[0-9a-fA-F]*$/.test(clean)) throw new Error(`bad hex: ${s}`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

export interface HdrFields {
  version?: number;
  errno?: number;
  /** sadb_msg_len in 8-byte units; computed from the body when omitted. */
  len?: number;
  reserved?: number;
  seq?: number;
  pid?: number;
}

/**
 * The 16-byte sadb_msg header as hex: version, type, errno, satype (u8 each), len and
 * reserved (u16 little-endian), seq and pid (u32 little-endian).
 */
export function hdrHex(type: number, satype: number, bodyBytes: number, f: HdrFields = {}): string {
  const h = Buffer.alloc(16);
  h[0] = f.version ?? 2;
  h[1] = type;
  h[2] = f.errno ?? 0;
  h[3] = satype;
  h.writeUInt16LE(f.len ?? (16 + bodyBytes) / 8, 4);
  h.writeUInt16LE(f.reserved ?? 0, 6);
  h.writeUInt32LE(f.seq ?? 0, 8);
  h.writeUInt32LE(f.pid ?? 0, 12);
  return h.toString('hex');
}

/** A whole message as hex: header (len computed unless given) followed by the extensions. */
export function msgHex(type: number, satype: number, exts: string[], f: HdrFields = {}): string {
  const body = exts.map((e) => e.replace(/\s+/g, '')).join('');
  return hdrHex(type, satype, body.length / 2, f) + body;
}

/** The same as msgHex, as bytes. */
export function msg(type: number, satype: number, exts: string[], f: HdrFields = {}): Uint8Array {
  return unhex(msgHex(type, satype, exts, f));
}

export interface Refusal {
  errno: number;
  offset?: number;
  exttype?: number;
}

/** Assert that fn throws a PfkeyError with exactly this errno (and offset/exttype when given). */
export function assertRefused(fn: () => unknown, want: Refusal, what = ''): PfkeyError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `${what}: expected a refusal with errno ${want.errno}, but it was accepted`);
  assert.ok(caught instanceof PfkeyError, `${what}: expected a PfkeyError, got ${String(caught)}`);
  const e = caught as PfkeyError;
  assert.equal(e.errno, want.errno, `${what}: errno (${e.message})`);
  if ('offset' in want) assert.equal(e.offset, want.offset, `${what}: offset (${e.message})`);
  if ('exttype' in want) assert.equal(e.exttype, want.exttype, `${what}: exttype (${e.message})`);
  return e;
}

/** Walk a message's extension headers: [offset, length in bytes, type] for each. */
export function extHeaders(b: Uint8Array): Array<{ off: number; len: number; type: number }> {
  const out: Array<{ off: number; len: number; type: number }> = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let off = 16; off + 4 <= b.length; ) {
    const len = dv.getUint16(off, true) * 8;
    out.push({ off, len, type: dv.getUint16(off + 2, true) });
    if (len === 0) break;
    off += len;
  }
  return out;
}

// ---------- captured vectors ----------

import { CLIENTS_DIR, LINUX_DIR } from './vectors.js';
export { CLIENTS_DIR, LINUX_DIR };

export interface ClientRequest {
  hex: string;
  type: number;
  satype: number;
  version: number;
  errno: number;
  len: number;
  seq: number;
  pid: number;
  exts: number[];
}
export interface ClientCase {
  name: string;
  command: string;
  requests: ClientRequest[];
}
export interface ClientFile {
  file: string;
  tool: string;
  dialect: 'klips' | 'kame';
  cases: ClientCase[];
}

export function loadClientFiles(): ClientFile[] {
  return fs
    .readdirSync(CLIENTS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: f, ...JSON.parse(fs.readFileSync(path.join(CLIENTS_DIR, f), 'utf8')) }));
}

/** Every request (hex) of every case of the klips-dialect client captures. */
export function klipsRequests(): Array<{ name: string; req: ClientRequest }> {
  const out: Array<{ name: string; req: ClientRequest }> = [];
  for (const f of loadClientFiles()) {
    if (f.dialect !== 'klips') continue;
    for (const c of f.cases) c.requests.forEach((req, i) => out.push({ name: `${c.name}#${i}`, req }));
  }
  return out;
}

export interface LinuxDatagram {
  /** Where it came from, for messages. */
  where: string;
  hex: string;
  /** The request that the step sent, when there was one. */
  request?: string;
}

/**
 * Every datagram the Linux kernel delivered in the linux-af_key captures, with the request
 * of its step. Two layouts: basic-exchanges.json is a list of {request, received: {sock:
 * [hex]}}; the numbered scenarios have steps[] with {request?, received: {sock: [{hex}]}}.
 */
export function linuxDatagrams(): LinuxDatagram[] {
  const out: LinuxDatagram[] = [];
  for (const f of fs.readdirSync(LINUX_DIR).filter((x) => x.endsWith('.json')).sort()) {
    const j = JSON.parse(fs.readFileSync(path.join(LINUX_DIR, f), 'utf8'));
    const steps: any[] = Array.isArray(j) ? j : j.steps;
    steps.forEach((s, i) => {
      for (const [sock, list] of Object.entries<any[]>(s.received ?? {})) {
        list.forEach((d, k) => {
          const h = typeof d === 'string' ? d : d.hex;
          out.push({ where: `${f}[${i}] sock ${sock} #${k}`, hex: h, request: s.request });
        });
      }
    });
  }
  return out;
}
