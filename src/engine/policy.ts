/**
 * One policy table, two models: KLIPS's eroutes send a flow to one SAID (an SA and the
 * SAs grouped after it) or to a shunt, while KAME's policies give a selector, a
 * direction, an action and templates that describe the SAs a packet needs (protocol,
 * mode, tunnel endpoints, level, reqid), which the kernel finds at packet time. This
 * module owns the mapping between the two:
 *
 * - policyView(): any eroute as a KAME policy. One made by X_SPDADD carries its own
 *   attributes; a KLIPS eroute is read off its SAID: %pass is NONE, %drop/%reject/%hold
 *   DISCARD, %trap/%trapsubnet IPSEC with one ESP transport template (what it will ask
 *   an ACQUIRE for), and an SAID IPSEC with a template per transform of its SA group (an
 *   IPIP SA makes the next transform's template tunnel mode, with the IPIP SA's
 *   endpoints).
 * - saidForPolicy(): the SAID an X_SPDADD policy gets as an eroute: %pass (NONE), %drop
 *   (DISCARD), or %trap (IPSEC): an eroute that behaves as %trap whenever its templates
 *   find no SA, and that KLIPS's views show as such.
 * - resolveTemplates(): Linux's xfrm_tmpl_resolve for a packet: per template the newest
 *   mature SA (not dying, if one is not) of that protocol, mode and reqid between the
 *   template's endpoints (the tunnel's, else the packet's, else the previous tunnel's),
 *   or the template that has none, and whether an ACQUIRE for it is already under way (a
 *   larval SA for those endpoints).
 *
 * docs/semantics.md ("One policy table for both dialects") says where the models do not
 * map.
 */

import {
  AF_INET6, IPPROTO_AH, IPPROTO_COMP, IPPROTO_ESP, IPPROTO_INT, IPPROTO_IPIP,
  IPSEC_LEVEL_REQUIRE, IPSEC_LEVEL_USE, IPSEC_MODE_TRANSPORT, IPSEC_MODE_TUNNEL,
  IPSEC_POLICY_DISCARD, IPSEC_POLICY_IPSEC, IPSEC_POLICY_NONE, SADB_SASTATE_DYING, SADB_SASTATE_LARVAL,
  SADB_SASTATE_MATURE, SPI_DROP, SPI_HOLD, SPI_PASS, SPI_REJECT, SPI_TRAP, SPI_TRAPSUBNET,
} from '../wire/index.js';
import { currentOf, type SA, type Sadb } from '../sadb/sadb.js';
import type { Said } from '../sadb/said.js';
import type { Eroute, PolicyDir, PolicyLimits, Template } from '../spd/eroute-table.js';

export const NO_POLICY_LIMITS: Readonly<PolicyLimits> = Object.freeze({ allocations: 0, bytes: 0, addtime: 0, usetime: 0 });

/** A policy as the KAME dialect lists it. */
export interface PolicyView {
  dir: PolicyDir;
  type: number;
  templates: Template[];
  priority: number;
  hard: PolicyLimits;
  soft: PolicyLimits;
}

/** The unspecified address of a family (a shunt's SAID destination). */
export const anyAddress = (family: number): string => (family === AF_INET6 ? '::' : '0.0.0.0');

/** A shunt's SAID (protocol 61, the magic SPI, the unspecified address). */
export function shuntSaid(spi: number, family: number): Said {
  return { proto: IPPROTO_INT, spi, dst: anyAddress(family) };
}

/** The SAID an X_SPDADD policy's eroute gets: %trap (IPSEC, until its templates find SAs), %pass (NONE), %drop (DISCARD). */
export function saidForPolicy(type: number, family: number): Said {
  return shuntSaid(type === IPSEC_POLICY_IPSEC ? SPI_TRAP : type === IPSEC_POLICY_NONE ? SPI_PASS : SPI_DROP, family);
}

/** An eroute whose packets go through templates (an IPSEC policy from the KAME dialect). */
export function hasTemplates(e: Eroute): boolean {
  return e.policy !== undefined && e.policy.type === IPSEC_POLICY_IPSEC;
}

/** An SA's mode as a template compares it: its KAME mode, or transport for a KLIPS SA. */
export function saMode(sa: SA): number {
  return sa.kame?.mode ?? IPSEC_MODE_TRANSPORT;
}

/** The templates of a KLIPS SA group, head first: an IPIP SA makes the next transform tunnel mode. */
function chainTemplates(head: SA | undefined, said: Said, family: number): Template[] {
  const out: Template[] = [];
  let tunnel: { family: number; src: string; dst: string } | undefined;
  if (!head) {
    // An eroute to an SA that is not (yet) there: what its SAID says.
    if (said.proto === IPPROTO_IPIP) return [{ proto: IPPROTO_ESP, mode: IPSEC_MODE_TUNNEL, level: IPSEC_LEVEL_REQUIRE, reqid: 0, family, src: anyAddress(family), dst: said.dst }];
    return [{ proto: said.proto, mode: IPSEC_MODE_TRANSPORT, level: IPSEC_LEVEL_REQUIRE, reqid: 0, family }];
  }
  for (let sa: SA | undefined = head; sa; sa = sa.next) {
    if (sa.said.proto === IPPROTO_IPIP) {
      tunnel = { family: sa.dst.family, src: sa.src.addr, dst: sa.dst.addr };
      continue;
    }
    const own = sa.kame?.mode === IPSEC_MODE_TUNNEL ? { family: sa.dst.family, src: sa.src.addr, dst: sa.dst.addr } : undefined;
    const t = tunnel ?? own;
    out.push(t
      ? { proto: sa.said.proto, mode: IPSEC_MODE_TUNNEL, level: IPSEC_LEVEL_REQUIRE, reqid: sa.kame?.reqid ?? 0, family: t.family, src: t.src, dst: t.dst }
      : { proto: sa.said.proto, mode: saMode(sa), level: IPSEC_LEVEL_REQUIRE, reqid: sa.kame?.reqid ?? 0, family });
    tunnel = undefined;
  }
  // A lone IPIP SA: Linux has no template for it; it is listed as what it is (protocol 4).
  if (tunnel) out.push({ proto: IPPROTO_IPIP, mode: IPSEC_MODE_TUNNEL, level: IPSEC_LEVEL_REQUIRE, reqid: 0, ...tunnel });
  return out;
}

/** Any eroute (or in/fwd policy) as a KAME policy. */
export function policyView(sadb: Sadb, e: Eroute): PolicyView {
  if (e.policy) return { dir: e.dir, ...e.policy };
  const family = e.flow.family;
  const base = { dir: e.dir, priority: 0, hard: NO_POLICY_LIMITS, soft: NO_POLICY_LIMITS };
  if (e.said.proto === IPPROTO_INT) {
    switch (e.said.spi) {
      case SPI_PASS:
        return { ...base, type: IPSEC_POLICY_NONE, templates: [] };
      case SPI_TRAP:
      case SPI_TRAPSUBNET:
        return { ...base, type: IPSEC_POLICY_IPSEC, templates: [{ proto: IPPROTO_ESP, mode: IPSEC_MODE_TRANSPORT, level: IPSEC_LEVEL_REQUIRE, reqid: 0, family }] };
      case SPI_DROP:
      case SPI_REJECT:
      case SPI_HOLD:
      default:
        return { ...base, type: IPSEC_POLICY_DISCARD, templates: [] };
    }
  }
  return { ...base, type: IPSEC_POLICY_IPSEC, templates: chainTemplates(sadb.get(e.said), e.said, family) };
}

// ---------- finding SAs for templates ----------

/** SAs by protocol, destination and source, rebuilt when the SA table changed (Sadb.version). */
interface PeerIndex {
  version: number;
  byPeers: Map<string, SA[]>;
}
const indexes = new WeakMap<Sadb, PeerIndex>();
const peerKey = (proto: number, dst: string, src: string) => `${proto}|${dst}|${src}`;

function peerIndex(sadb: Sadb): Map<string, SA[]> {
  let ix = indexes.get(sadb);
  if (!ix || ix.version !== sadb.version) {
    const byPeers = new Map<string, SA[]>();
    for (const sa of sadb.values()) {
      const k = peerKey(sa.said.proto, sa.dst.addr, sa.src.addr);
      const list = byPeers.get(k);
      if (list) list.push(sa);
      else byPeers.set(k, [sa]);
    }
    ix = { version: sadb.version, byPeers };
    indexes.set(sadb, ix);
  }
  return ix.byPeers;
}

/**
 * The SA a template takes between `src` and `dst` (Linux's xfrm_state_find): same
 * protocol, family, mode and reqid; a mature SA before a dying one, then the newest. A
 * larval SA there (GETSPI, or an ACQUIRE's placeholder) means an ACQUIRE is under way.
 */
export function findSa(sadb: Sadb, t: Template, src: string, dst: string): { sa?: SA; larval?: SA } {
  let best: SA | undefined;
  let larval: SA | undefined;
  for (const sa of peerIndex(sadb).get(peerKey(t.proto, dst, src)) ?? []) {
    if (sa.dst.family !== t.family || saMode(sa) !== t.mode || (sa.kame?.reqid ?? 0) !== t.reqid) continue;
    if (sa.state === SADB_SASTATE_LARVAL) {
      larval ??= sa;
      continue;
    }
    if (sa.state !== SADB_SASTATE_MATURE && sa.state !== SADB_SASTATE_DYING) continue;
    if (!best || better(sa, best)) best = sa;
  }
  return best ? { sa: best } : { larval };
}

function better(a: SA, b: SA): boolean {
  if (a.state !== b.state) return a.state === SADB_SASTATE_MATURE;
  return currentOf(a).addtime >= currentOf(b).addtime;
}

/** A template no SA answers, with the endpoints it was looked for between. */
export interface Unresolved {
  template: Template;
  src: string;
  dst: string;
  /** A larval SA for it: an ACQUIRE is under way. */
  larval?: SA;
}

export type Resolution =
  | { ok: true; sas: SA[]; optionalMissing: Unresolved[] }
  | { ok: false; missing: Unresolved; optionalMissing: Unresolved[] };

/**
 * The SAs a packet from `src` to `dst` (its family's text) goes through under a template
 * eroute, in template order (the first is applied first), or the first required template
 * that has none. Optional (level use) templates without an SA are skipped, and reported.
 */
export function resolveTemplates(sadb: Sadb, e: Eroute, src: string, dst: string): Resolution {
  const sas: SA[] = [];
  const optionalMissing: Unresolved[] = [];
  let s = src;
  let d = dst;
  for (const t of e.policy?.templates ?? []) {
    const a = t.mode === IPSEC_MODE_TUNNEL && t.src !== undefined ? t.src : s;
    const b = t.mode === IPSEC_MODE_TUNNEL && t.dst !== undefined ? t.dst : d;
    const f = findSa(sadb, t, a, b);
    if (f.sa) {
      sas.push(f.sa);
      s = a;
      d = b;
      continue;
    }
    const u: Unresolved = { template: t, src: a, dst: b, larval: f.larval };
    if (t.level === IPSEC_LEVEL_USE) optionalMissing.push(u);
    else return { ok: false, missing: u, optionalMissing };
  }
  return { ok: true, sas, optionalMissing };
}

/** The protocols a template may name (Linux's xfrm_id_proto_valid, as far as klips carries them). */
export const TEMPLATE_PROTOS: ReadonlySet<number> = new Set([IPPROTO_ESP, IPPROTO_AH, IPPROTO_COMP]);
