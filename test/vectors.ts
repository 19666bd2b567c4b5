/**
 * Where the captured vectors live (test/vectors/, see its README): found relative to this
 * file, whether it runs from test/ or compiled under dist/test/. Reading a missing
 * vector throws, so the test that needs it fails; nothing skips.
 */

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root: two levels up from dist/test/, one from test/. */
const root = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');

export const VECTORS_DIR = path.join(root, 'test', 'vectors');
export const CLIENTS_DIR = path.join(VECTORS_DIR, 'clients');
export const LINUX_DIR = path.join(VECTORS_DIR, 'linux-af_key');
/** Fixtures captured for klips's own tests (test/fixtures/, see its README). */
export const FIXTURES_DIR = path.join(root, 'test', 'fixtures');

/** Parse one JSON vector file under test/vectors/ (e.g. 'clients/openswan-spi.json'). */
export function readVector<T = unknown>(rel: string): T {
  return JSON.parse(fs.readFileSync(path.join(VECTORS_DIR, rel), 'utf8')) as T;
}

interface ClientVector { cases: Array<{ requests?: Array<{ hex: string }> }> }

/** Every request the captured clients sent (clients/*.json, files in name order), as bytes. */
export function clientRequests(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const f of fs.readdirSync(CLIENTS_DIR).filter((n) => n.endsWith('.json')).sort()) {
    for (const c of readVector<ClientVector>(`clients/${f}`).cases) for (const r of c.requests ?? []) out.push(Buffer.from(r.hex, 'hex'));
  }
  return out;
}
