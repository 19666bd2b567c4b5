/**
 * The differential suite's definition (issue 13): every exchange klipsd's KAME socket is
 * compared on against a real Linux af_key, as code that writes
 * test/fixtures/linux-af_key-suite/suite.json. Requests are built here with klips's own
 * extension codecs for what RFC 2367 shares (SA, lifetimes, addresses, keys) and small
 * KAME encoders for the rest (host-order SPIRANGE, X_POLICY with its ipsecrequests,
 * X_SA2, NAT-T), or written out byte for byte (setkey's own requests from
 * test/vectors/clients, the ACQUIRE capture's requests, the malformed ones).
 *
 *   node dist/scripts/kame-suite.js > test/fixtures/linux-af_key-suite/suite.json
 *
 * A request may name a value the kernel chose in an earlier step: `{{spi:STEP}}` is the
 * SPI (4 bytes, network order) of the SA extension in STEP's reply to its sender,
 * `{{policy:STEP}}` the policy id (4 bytes, host order) of the X_POLICY extension there.
 * Both runners (scripts/refkernel-capture.py, scripts/kame-compare.ts) fill them in.
 */

import { pathToFileURL } from 'node:url';
import {
  AF_INET, AF_INET6, EXT_TABLE, SADB_EXT_SA, SADB_EXT_LIFETIME_HARD, SADB_EXT_LIFETIME_SOFT,
  SADB_EXT_ADDRESS_SRC, SADB_EXT_ADDRESS_DST, SADB_EXT_KEY_AUTH, SADB_EXT_KEY_ENCRYPT,
  SADB_SASTATE_MATURE, familyOf, addressBytes, sockaddrLength, type Address, type Lifetime, type Sa,
} from '../src/wire/index.js';
import {
  K, KAME_EXT, KAME_MSG, IPSEC_POLICY, IPSEC_DIR, IPSEC_MODE, IPSEC_LEVEL, type Suite, type SuiteStep,
} from './kame-diff.js';

const PID = 4242;

// ---------- encoders ----------

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const cat = (parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));

/** An extension RFC 2367 and KLIPS number alike, written by klips's own codec. */
function shared(type: number, value: unknown): Uint8Array {
  const codec = EXT_TABLE[type]!.codec;
  const u8 = new Uint8Array(codec.encodingLength(value));
  codec.encode(value, u8, 0, type);
  return u8;
}

/** An extension from its type and body bytes (the 4-byte header is added, padding too). */
function ext(type: number, body: Uint8Array | string): Uint8Array {
  const b = typeof body === 'string' ? fromHex(body) : body;
  const len = (4 + b.length + 7) & ~7;
  const u8 = new Uint8Array(len);
  u8[0] = (len / 8) & 0xff; u8[1] = (len / 8) >> 8;
  u8[2] = type & 0xff; u8[3] = type >> 8;
  u8.set(b, 4);
  return u8;
}

/* Placeholders: a sentinel value stands for a kernel-chosen one and becomes {{kind:STEP}} in the hex. */
const sentinels: Array<{ hex: string; token: string }> = [];
function sentinel(kind: 'spi' | 'policy', step: string): number {
  const v = ((kind === 'spi' ? 0xa5c39e00 : 0x5ac3e900) + sentinels.length) >>> 0;
  const b = Buffer.alloc(4);
  if (kind === 'spi') b.writeUInt32BE(v); else b.writeUInt32LE(v);
  sentinels.push({ hex: b.toString('hex'), token: `{{${kind}:${step}}}` });
  return v;
}
const spiOf = (step: string): number => sentinel('spi', step);
const policyOf = (step: string): number => sentinel('policy', step);

interface Hdr {
  type: number;
  satype?: number;
  errno?: number;
  version?: number;
  reserved?: number;
  /** sadb_msg_len when it must lie; else the real length. */
  len?: number;
  seq?: number;
  pid?: number;
}

/** A whole message as hex, placeholders in place. `trailing` bytes go after what sadb_msg_len covers. */
function message(h: Hdr, exts: Uint8Array[], trailing = ''): string {
  const body = cat(exts);
  const u8 = new Uint8Array(16);
  const dv = new DataView(u8.buffer);
  u8[0] = h.version ?? 2; u8[1] = h.type; u8[2] = h.errno ?? 0; u8[3] = h.satype ?? 0;
  dv.setUint16(4, h.len ?? (16 + body.length) / 8, true);
  dv.setUint16(6, h.reserved ?? 0, true);
  dv.setUint32(8, h.seq ?? 0, true);
  dv.setUint32(12, h.pid ?? PID, true);
  let s = hex(u8) + hex(body) + trailing;
  for (const { hex: sv, token } of sentinels) {
    const at: number[] = [];
    for (let i = s.indexOf(sv); i !== -1; i = s.indexOf(sv, i + 1)) if (i % 2 === 0) at.push(i);
    if (at.length > 1) throw new Error(`placeholder ${token} occurs ${at.length} times`);
    if (at.length === 1) s = s.slice(0, at[0]) + token + s.slice(at[0] + sv.length);
  }
  return s;
}

const fullPrefix = (addr: string): number => (familyOf(addr) === AF_INET6 ? 128 : 32);

/** sadb_address + sockaddr; SA requests carry proto 0 and a full prefix, as the earlier probe did. */
function address(type: number, addr: string, o: { prefixlen?: number; proto?: number; port?: number } = {}): Uint8Array {
  const a: Address = { proto: o.proto ?? 0, prefixlen: o.prefixlen ?? fullPrefix(addr), family: familyOf(addr), port: o.port ?? 0, addr };
  return shared(type, a);
}
const src = (addr: string, o?: Parameters<typeof address>[2]) => address(SADB_EXT_ADDRESS_SRC, addr, o);
const dst = (addr: string, o?: Parameters<typeof address>[2]) => address(SADB_EXT_ADDRESS_DST, addr, o);

function sa(spi: number, auth: number, encrypt: number, o: Partial<Sa> = {}): Uint8Array {
  return shared(SADB_EXT_SA, { spi, replay: o.replay ?? 32, state: o.state ?? SADB_SASTATE_MATURE, auth, encrypt, flags: o.flags ?? 0 });
}
/** The SA extension of GET/DELETE: SPI only. */
const saRef = (spi: number): Uint8Array => sa(spi, 0, 0, { replay: 0 });

function lifetime(type: number, l: Partial<Lifetime>): Uint8Array {
  return shared(type, { allocations: l.allocations ?? 0, bytes: l.bytes ?? 0n, addtime: l.addtime ?? 0n, usetime: l.usetime ?? 0n });
}
const hard = (l: Partial<Lifetime>) => lifetime(SADB_EXT_LIFETIME_HARD, l);
const soft = (l: Partial<Lifetime>) => lifetime(SADB_EXT_LIFETIME_SOFT, l);

function key(type: number, keyHex: string, bits = keyHex.length * 4): Uint8Array {
  return shared(type, { bits, key: fromHex(keyHex) });
}
const authKey = (k: string, bits?: number) => key(SADB_EXT_KEY_AUTH, k, bits);
const encKey = (k: string, bits?: number) => key(SADB_EXT_KEY_ENCRYPT, k, bits);

/** SPIRANGE as Linux and KAME read it: bounds in host order. */
function spirange(min: number, max: number): Uint8Array {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(min); b.writeUInt32LE(max, 4);
  return ext(K.SADB_EXT_SPIRANGE, b);
}

/** sadb_x_sa2: mode, reqid (and the sequence KAME keeps at 0). */
function sa2(mode: number, reqid: number): Uint8Array {
  const b = Buffer.alloc(12);
  b[0] = mode; b.writeUInt32LE(reqid, 8);
  return ext(KAME_EXT.X_SA2, b);
}

function sockaddr(addr: string, port = 0): Uint8Array {
  const family = familyOf(addr);
  const b = Buffer.alloc(sockaddrLength(family));
  b.writeUInt16LE(family); b.writeUInt16BE(port, 2);
  b.set(addressBytes(family, addr), family === AF_INET ? 4 : 8);
  return b;
}

interface Req {
  proto: number;
  mode: number;
  level: number;
  reqid?: number;
  /** Tunnel end points (tunnel mode). */
  tunnel?: [string, string];
  /** sadb_x_ipsecrequest_len when it must lie. */
  len?: number;
}

/** sadb_x_ipsecrequest: 16 bytes, then the tunnel's two sockaddrs; its length counts bytes. */
function ipsecrequest(r: Req): Uint8Array {
  const addrs = r.tunnel ? cat([sockaddr(r.tunnel[0]), sockaddr(r.tunnel[1])]) : new Uint8Array(0);
  const b = Buffer.alloc(16 + addrs.length);
  b.writeUInt16LE(r.len ?? b.length); b.writeUInt16LE(r.proto, 2);
  b[4] = r.mode; b[5] = r.level; b.writeUInt32LE(r.reqid ?? 0, 8);
  b.set(addrs, 16);
  return b;
}

/** sadb_x_policy: type, dir, id, priority, then the ipsecrequests. */
function policy(type: number, dir: number, o: { id?: number; priority?: number; reqs?: Req[]; tail?: string } = {}): Uint8Array {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(type); b[2] = dir; b.writeUInt32LE(o.id ?? 0, 4); b.writeUInt32LE(o.priority ?? 0, 8);
  return ext(KAME_EXT.X_POLICY, cat([b, ...(o.reqs ?? []).map(ipsecrequest), fromHex(o.tail ?? '')]));
}

const u8 = (n: number) => Uint8Array.of(n, 0, 0, 0);
const natType = (t: number) => ext(KAME_EXT.X_NAT_T_TYPE, u8(t));
function natPort(type: number, port: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(port); // network order, as Linux's encap_sport/dport
  return ext(type, b);
}

/** IPv4 header + UDP for the ACQUIRE traffic (checksums filled in; UDP checksum 0). */
function udpPacket(from: string, to: string, sport: number, dport: number, payload: string): string {
  const data = Buffer.from(payload, 'latin1');
  const p = Buffer.alloc(28 + data.length);
  p[0] = 0x45; p.writeUInt16BE(p.length, 2); p[8] = 64; p[9] = 17;
  p.set(addressBytes(AF_INET, from), 12); p.set(addressBytes(AF_INET, to), 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
  p.writeUInt16BE(sport, 20); p.writeUInt16BE(dport, 22); p.writeUInt16BE(8 + data.length, 24);
  p.set(data, 28);
  return p.toString('hex');
}

/** A setkey request from test/vectors/clients/ipsec-tools-setkey.json, its seq and pid replaced. */
function setkey(captured: string, seq: number): string {
  const b = Buffer.from(captured, 'hex');
  b.writeUInt32LE(seq, 8); b.writeUInt32LE(PID, 12);
  return b.toString('hex');
}

// ---------- the suite ----------

const A = { v4: ['192.0.2.1', '192.0.2.2'], v6: ['2001:db8::1', '2001:db8::2'] } as const;
const KEYS = {
  aes128: '000102030405060708090a0b0c0d0e0f',
  aes96: '000102030405060708090a0b',
  sha1: '101112131415161718191a1b1c1d1e1f20212223',
  sha256: '404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f',
  sha512: '606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
  md5: '0102030405060708090a0b0c0d0e0f10',
  des3: '0102030405060708090a0b0c0d0e0f101112131415161718',
  gcm160: '000102030405060708090a0b0c0d0e0f10111213',
};
const { SADB_SATYPE_AH: AH, SADB_SATYPE_ESP: ESP, SADB_X_SATYPE_IPCOMP: IPCOMP } = K;
const { SADB_AALG_SHA1HMAC: SHA1, SADB_AALG_MD5HMAC: MD5, SADB_X_AALG_SHA2_256HMAC: SHA256, SADB_X_AALG_SHA2_512HMAC: SHA512 } = K;
const { SADB_X_EALG_AESCBC: AESCBC, SADB_EALG_3DESCBC: DES3, SADB_X_EALG_AES_GCM_ICV16: GCM16 } = K;
const M = KAME_MSG;
const ANY = 255; // IPSEC_ULPROTO_ANY in a selector's sadb_address_proto

/** An ESP SA, v4, AES-128-CBC + HMAC-SHA1: the suite's usual SA. */
function espSa(spi: number, extra: Uint8Array[] = []): Uint8Array[] {
  return [sa(spi, SHA1, AESCBC), ...extra, src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1), encKey(KEYS.aes128)];
}
const said = (spi: number, fam: 'v4' | 'v6' = 'v4') => [saRef(spi), src(A[fam][0]), dst(A[fam][1])];

/** The out tunnel policy's selector: 10.1.0.0/16 -> 10.2.0.0/16, any protocol. */
const SEL_OUT = () => [src('10.1.0.0', { prefixlen: 16, proto: ANY }), dst('10.2.0.0', { prefixlen: 16, proto: ANY })];
const SEL_IN = () => [src('10.2.0.0', { prefixlen: 16, proto: ANY }), dst('10.1.0.0', { prefixlen: 16, proto: ANY })];
const PRIO = 0x80000000; // setkey's default priority
const espTunnel = (a: string, b: string, level: number, reqid = 0): Req => ({ proto: K.IPPROTO_ESP, mode: IPSEC_MODE.TUNNEL, level, reqid, tunnel: [a, b] });

/* 07_acquire's requests, byte for byte (its X_POLICY's ipsecrequest says 18 bytes in a 24-byte slot, as the probe wrote it). */
const ACQ = {
  registerEsp: '02070003020000000100000092100000',
  registerAh: '02070002020000000200000092100000',
  spdadd: '020e00000d000000030000009210000003000500ff200000020000007f000001000000000000000003000600ff200000020000007f000002000000000000000005001200020002000000000000000000120032000102000000000000000000000000000000000000',
  dump: '020a0000020000000400000092100000',
  spdflush: '02130000020000000500000092100000',
  flush: '02090000020000000600000092100000',
};
/* setkey 0.9.1's bytes (test/vectors/clients/ipsec-tools-setkey.json, case names in the comments). */
const SETKEY = {
  // setkey-add-esp-sha256-v6: add 2001:db8::1 2001:db8::2 esp 0x1002 -m transport -E aes-cbc … -A hmac-sha256 …
  espV6: '020300031800000000000000fb0100000300090080000000000102030405060708090a0b0c0d0e0f0500080000010000111111111111111111111111111111111111111111111111111111111111111102000100000010020000050c400000000200130001000000000000000000000005000500ff8000000a0000000000000020010db8000000000000000000000001000000000000000005000600ff8000000a0000000000000020010db80000000000000000000000020000000000000000',
  // setkey-add-esp-tunnel-life: esp 0x1001 -m tunnel -u 100 -r 32 -lh 3600 -ls 3000 -bh 1000000 -bs 900000 3des-cbc hmac-md5
  espTunnelLife: '020300031b00000000000000e901000004000900c00000000102030405060708090a0b0c0d0e0f10111213141516171803000800800000000102030405060708090a0b0c0d0e0f10040003000000000040420f0000000000100e00000000000000000000000000000400040000000000a0bb0d0000000000b80b0000000000000000000000000000020001000000100120000203400000000200130002000000000000006400000003000500ff20000002000000c0000201000000000000000003000600ff20000002000000c00002020000000000000000',
  // setkey-add-esp-udp-natt: add 192.0.2.1[4500] 192.0.2.2[4500] esp-udp 0x1003 -m tunnel aes-cbc hmac-sha1
  espNatt: '020300031600000000000000010200000300090080000000000102030405060708090a0b0c0d0e0f04000800a00000000102030405060708090a0b0c0d0e0f10111213140000000002000100000010030000030c4000000002001300020000000000000000000000010014000200000003000500ff20000002001194c0000201000000000000000003000600ff20000002001194c0000202000000000000000001001500119400000100160011940000',
  // setkey-add-esp-null-auth: esp 0x1004 -E null -A hmac-sha1
  espNull: '020300031100000000000000fe010000010009000000000004000800a00000000102030405060708090a0b0c0d0e0f10111213140000000002000100000010040000030b400000000200130000000000000000000000000003000500ff20000002000000c0000201000000000000000003000600ff20000002000000c00002020000000000000000',
  // setkey-add-ipcomp: ipcomp 0x3000 -C deflate
  ipcomp: '020300090c0000000000000007020000020001000000300000000002400000000200130000000000000000000000000003000500ff20000002000000c0000201000000000000000003000600ff20000002000000c00002020000000000000000',
  // setkey-spdadd-transport-ports: 192.0.2.1[any] 192.0.2.2[80] tcp -P out ipsec esp/transport//require ah/transport//use
  spdTransportPorts: '020e00000e000000000000002b020000060012000200020000000000000000801000320001020000000000000000000010003300010100000000000000000000030005000620000002000000c00002010000000000000000030006000620000002000050c00002020000000000000000',
  // setkey-spdadd-none-discard, first and second request
  spdNone: '020e00000a00000000000000310200000200120001000200000000000000008003000500ff180000020000000a000300000000000000000003000600ff180000020000000a0004000000000000000000',
  spdDiscard: '020e00000a0000000000000031020000020012000000020000000000000000800300050001180000020000000a00050000000000000000000300060001180000020000000a0006000000000000000000',
  // setkey-spdadd-v6: 2001:db8:1::/48 2001:db8:2::/48 any -P out ipsec esp/tunnel/2001:db8::1-2001:db8::2/require
  spdV6Tunnel: '020e00001700000000000000370200000b001200020002000000000000000080480032000202000000000000000000000a0000000000000020010db8000000000000000000000001000000000a0000000000000020010db80000000000000000000000020000000005000500ff3000000a0000000000000020010db8000100000000000000000000000000000000000005000600ff3000000a0000000000000020010db80002000000000000000000000000000000000000',
};

type Draft = Omit<SuiteStep, 'request'> & { request?: (seq: number) => string };
type Extra = Partial<Omit<SuiteStep, 'request'>>;

function draft(): Draft[] {
  const S: Draft[] = [];
  const send = (group: string, name: string, socket: number, comment: string, request: (seq: number) => string, more: Extra = {}) =>
    S.push({ group, name, socket, comment, request, ...more });
  const open = (group: string, name: string, ids: number[], comment: string) => S.push({ group, name, open: ids, comment });
  const close = (group: string, name: string, ids: number[], comment: string) => S.push({ group, name, close: ids, comment });

  // --- setup
  open('setup', 'open_all', [0, 1, 2, 3, 4], 'five sockets: 0 acts, 1 will register ESP, 2 AH, 3 turns promiscuous, 4 is scratch');
  send('setup', 'flush_sad', 0, 'FLUSH all SA types (clean start): to the sender twice, to every socket once', (q) => message({ type: M.SADB_FLUSH, seq: q }, []));
  send('setup', 'flush_spd', 0, 'X_SPDFLUSH (clean start)', (q) => message({ type: M.SADB_X_SPDFLUSH, seq: q }, []));

  // --- REGISTER per SA type
  const reg = (name: string, s: number, satype: number, comment: string) => send('register', name, s, comment, (q) => message({ type: M.SADB_REGISTER, satype, seq: q }, []));
  reg('register_esp', 1, ESP, 'REGISTER ESP: the supported lists, to the sender and every registered socket');
  reg('register_ah', 2, AH, 'REGISTER AH: 1 is registered too and gets a copy');
  reg('register_esp_again', 1, ESP, 'REGISTER ESP a second time on the same socket: EEXIST');
  reg('register_unspec', 0, 0, 'REGISTER satype 0: a query, the lists without registering');
  reg('register_ipcomp', 4, IPCOMP, 'REGISTER X_IPCOMP (KAME satype 9)');
  reg('register_rsvp', 4, K.SADB_SATYPE_RSVP, 'REGISTER satype 5 (RSVP): a valid number with no algorithms behind it');
  reg('register_satype10', 4, 10, 'REGISTER satype 10, above SADB_SATYPE_MAX (9): EINVAL');
  close('register', 'close_4', [4], 'closing drops 4\'s registrations');
  open('register', 'reopen_4', [4], '4 again, unregistered');

  // --- the SA life cycle, v4 and v6, ESP and AH, lifetimes
  send('sa', 'getspi_range', 0, 'GETSPI ESP in 0x1000-0x1fff (host order): a larval SA, its SPI the kernel\'s choice; reply to the sender alone',
    (q) => message({ type: M.SADB_GETSPI, satype: ESP, seq: q }, [src(A.v4[0]), dst(A.v4[1]), spirange(0x1000, 0x1fff)]));
  send('sa', 'update_larval', 0, 'UPDATE that larval SA (same seq as the GETSPI): AES-128-CBC + HMAC-SHA1; to every socket, keys included',
    (q) => message({ type: M.SADB_UPDATE, satype: ESP, seq: q - 1 }, espSa(spiOf('getspi_range'))));
  send('sa', 'get_updated', 0, 'GET it: keys, lifetimes, X_SA2; sender only', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(spiOf('getspi_range'))));
  send('sa', 'getspi_fixed', 0, 'GETSPI with min = max = 0x5000', (q) => message({ type: M.SADB_GETSPI, satype: ESP, seq: q }, [src(A.v4[0]), dst(A.v4[1]), spirange(0x5000, 0x5000)]));
  send('sa', 'update_fixed_lifetimes', 0, 'UPDATE 0x5000: 3DES-CBC + HMAC-MD5 with hard and soft lifetimes (bytes, addtime, usetime)',
    (q) => message({ type: M.SADB_UPDATE, satype: ESP, seq: q }, [sa(0x5000, MD5, DES3), hard({ bytes: 1000000000n, addtime: 86400n, usetime: 3600n }),
      soft({ bytes: 900000000n, addtime: 43200n, usetime: 1800n }), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.md5), encKey(KEYS.des3)]));
  send('sa', 'getspi_taken', 0, 'GETSPI 0x5000 again while a mature SA holds it', (q) => message({ type: M.SADB_GETSPI, satype: ESP, seq: q }, [src(A.v4[0]), dst(A.v4[1]), spirange(0x5000, 0x5000)]));
  send('sa', 'add_esp_sha256', 0, 'ADD ESP 0x2000, AES-128-CBC + HMAC-SHA256, hard/soft addtime 86400/43200 and allocations',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2000, SHA256, AESCBC), hard({ allocations: 100, addtime: 86400n }), soft({ allocations: 90, addtime: 43200n }),
      src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha256), encKey(KEYS.aes128)]));
  send('sa', 'add_esp_duplicate', 0, 'the same ADD again: EEXIST, to the sender alone',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2000, SHA256, AESCBC), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha256), encKey(KEYS.aes128)]));
  send('sa', 'add_ah_sha1', 0, 'ADD AH 0x2100, HMAC-SHA1', (q) => message({ type: M.SADB_ADD, satype: AH, seq: q }, [sa(0x2100, SHA1, 0), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1)]));
  send('sa', 'add_ah_v6_sha512', 0, 'ADD AH 0x2300 over IPv6, HMAC-SHA512', (q) => message({ type: M.SADB_ADD, satype: AH, seq: q }, [sa(0x2300, SHA512, 0), src(A.v6[0]), dst(A.v6[1]), authKey(KEYS.sha512)]));
  send('sa', 'add_esp_v6_setkey', 0, 'setkey: add 2001:db8::1 2001:db8::2 esp 0x1002 -m transport aes-cbc/hmac-sha256 (X_SA2 mode transport, SA flags 0x40)', (q) => setkey(SETKEY.espV6, q));
  send('sa', 'add_esp_tunnel_setkey', 0, 'setkey: esp 0x1001 -m tunnel -u 100 -r 32 with byte and time lifetimes, 3des-cbc/hmac-md5', (q) => setkey(SETKEY.espTunnelLife, q));
  send('sa', 'add_esp_natt_setkey', 0, 'setkey: esp-udp 0x1003 (X_NAT_T_TYPE 2, ports 4500 in network order)', (q) => setkey(SETKEY.espNatt, q));
  send('sa', 'add_esp_null_setkey', 0, 'setkey: esp 0x1004 -E null -A hmac-sha1', (q) => setkey(SETKEY.espNull, q));
  send('sa', 'add_ipcomp_setkey', 0, 'setkey: ipcomp 0x3000 -C deflate (KAME satype 9)', (q) => setkey(SETKEY.ipcomp, q));
  send('sa', 'add_esp_sa2_reqid', 0, 'ADD ESP 0x2400 with X_SA2 mode tunnel, reqid 7',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, espSa(0x2400, [sa2(IPSEC_MODE.TUNNEL, 7)])));
  send('sa', 'get_esp_sha256', 0, 'GET 0x2000 (allocations and addtime limits shown)', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x2000)));
  send('sa', 'get_ah', 0, 'GET AH 0x2100', (q) => message({ type: M.SADB_GET, satype: AH, seq: q }, said(0x2100)));
  send('sa', 'get_esp_v6', 0, 'GET ESP 0x1002 over IPv6', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x1002, 'v6')));
  send('sa', 'get_esp_natt', 0, 'GET the NAT-T SA 0x1003', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x1003)));
  send('sa', 'update_mature_lifetimes', 0, 'UPDATE the mature 0x2000 with new lifetimes (its keys unchanged)',
    (q) => message({ type: M.SADB_UPDATE, satype: ESP, seq: q }, [sa(0x2000, SHA256, AESCBC), hard({ addtime: 7200n }), soft({ addtime: 3600n }),
      src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha256), encKey(KEYS.aes128)]));
  send('sa', 'dump_esp', 0, 'DUMP ESP: one message per SA to the sender, seq counting down to 0', (q) => message({ type: M.SADB_DUMP, satype: ESP, seq: q }, []));
  send('sa', 'dump_all', 0, 'DUMP every SA type', (q) => message({ type: M.SADB_DUMP, seq: q }, []));
  send('sa', 'update_missing', 0, 'UPDATE an SA that does not exist: ESRCH', (q) => message({ type: M.SADB_UPDATE, satype: ESP, seq: q }, espSa(0x2abc)));
  send('sa', 'delete_esp', 0, 'DELETE 0x2000: to every socket', (q) => message({ type: M.SADB_DELETE, satype: ESP, seq: q }, said(0x2000)));
  send('sa', 'get_deleted', 0, 'GET the deleted SA: ESRCH', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x2000)));
  send('sa', 'delete_again', 0, 'DELETE it again: ESRCH', (q) => message({ type: M.SADB_DELETE, satype: ESP, seq: q }, said(0x2000)));
  send('sa', 'flush_ah', 0, 'FLUSH AH only', (q) => message({ type: M.SADB_FLUSH, satype: AH, seq: q }, []));
  send('sa', 'dump_after_flush_ah', 0, 'DUMP all: no AH SA left', (q) => message({ type: M.SADB_DUMP, seq: q }, []));
  send('sa', 'flush_all', 0, 'FLUSH all', (q) => message({ type: M.SADB_FLUSH, seq: q }, []));
  send('sa', 'dump_empty', 0, 'DUMP of an empty SADB: ENOENT', (q) => message({ type: M.SADB_DUMP, seq: q }, []));

  // --- EXPIRE from time lifetimes
  send('expire', 'add_expiring', 0, 'ADD ESP 0x3000 with soft addtime 1 s and hard addtime 2 s',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, espSa(0x3000, [hard({ addtime: 2n }), soft({ addtime: 1n })])));
  S.push({ group: 'expire', name: 'expire_wait', wait: 3.5, comment: 'soft then hard EXPIRE, to the registered sockets (1 and 2)' });
  send('expire', 'get_expired', 0, 'GET after the hard expiry: ESRCH', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x3000)));

  // --- X_PROMISC
  const promisc = (name: string, satype: number, comment: string) => send('promisc', name, 3, comment, (q) => message({ type: M.SADB_X_PROMISC, satype, seq: q }, []));
  promisc('promisc_on', 1, 'X_PROMISC satype 1: 3 sees every message from now on');
  send('promisc', 'promisc_add', 0, 'ADD ESP 0x4000: 3 gets the request and the notice', (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, espSa(0x4000)));
  send('promisc', 'promisc_get', 0, 'GET 0x4000: the reply to the sender alone, copies to 3', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x4000)));
  send('promisc', 'promisc_get_missing', 0, 'GET a missing SA: the errno reply and its copy', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, said(0x4999)));
  send('promisc', 'promisc_bad_type', 0, 'message type 99: send() fails, nothing for 3', (q) => message({ type: 99, satype: ESP, seq: q }, []));
  promisc('promisc_satype2', 2, 'X_PROMISC satype 2: EINVAL');
  promisc('promisc_off', 0, 'X_PROMISC satype 0: off');
  send('promisc', 'promisc_delete', 0, 'DELETE 0x4000: 3 gets only the notice now', (q) => message({ type: M.SADB_DELETE, satype: ESP, seq: q }, said(0x4000)));

  // --- the SPD (KAME X_SPD* messages)
  const P = IPSEC_POLICY;
  const D = IPSEC_DIR;
  const L = IPSEC_LEVEL;
  const spd = (type: number) => (q: number, exts: Uint8Array[]) => message({ type, seq: q }, exts);
  const spdadd = spd(M.SADB_X_SPDADD);
  send('spd', 'spdadd_out_tunnel', 0, 'X_SPDADD out 10.1/16 -> 10.2/16 any, ESP tunnel 192.0.2.1 -> 192.0.2.2, require',
    (q) => spdadd(q, [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { priority: PRIO, reqs: [espTunnel(A.v4[0], A.v4[1], L.REQUIRE)] })]));
  send('spd', 'spdadd_out_again', 0, 'the same X_SPDADD again: EEXIST',
    (q) => spdadd(q, [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { priority: PRIO, reqs: [espTunnel(A.v4[0], A.v4[1], L.REQUIRE)] })]));
  send('spd', 'spdupdate_out_unique', 0, 'X_SPDUPDATE of it: level unique, reqid 7',
    (q) => spd(M.SADB_X_SPDUPDATE)(q, [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { priority: PRIO, reqs: [espTunnel(A.v4[0], A.v4[1], L.UNIQUE, 7)] })]));
  send('spd', 'spdadd_in_tunnel', 0, 'X_SPDADD in 10.2/16 -> 10.1/16, ESP tunnel 192.0.2.2 -> 192.0.2.1, use',
    (q) => spdadd(q, [...SEL_IN(), policy(P.IPSEC, D.INBOUND, { priority: PRIO, reqs: [espTunnel(A.v4[1], A.v4[0], L.USE)] })]));
  send('spd', 'spdadd_fwd_tunnel', 0, 'X_SPDADD fwd 10.2/16 -> 10.1/16, ESP tunnel, require',
    (q) => spdadd(q, [...SEL_IN(), policy(P.IPSEC, D.FWD, { priority: PRIO, reqs: [espTunnel(A.v4[1], A.v4[0], L.REQUIRE)] })]));
  send('spd', 'spdadd_out_tunnel_use', 0, 'X_SPDADD out 10.3/16 -> 10.4/16 with an optional (use) tunnel template',
    (q) => spdadd(q, [src('10.3.0.0', { prefixlen: 16, proto: ANY }), dst('10.4.0.0', { prefixlen: 16, proto: ANY }),
      policy(P.IPSEC, D.OUTBOUND, { priority: PRIO, reqs: [espTunnel(A.v4[0], A.v4[1], L.USE)] })]));
  send('spd', 'spdadd_transport_ports_setkey', 0, 'setkey: 192.0.2.1[any] 192.0.2.2[80] tcp -P out ipsec esp/transport//require ah/transport//use', (q) => setkey(SETKEY.spdTransportPorts, q));
  send('spd', 'spdadd_none_setkey', 0, 'setkey: spdadd 10.0.3.0/24 10.0.4.0/24 any -P out none', (q) => setkey(SETKEY.spdNone, q));
  send('spd', 'spdadd_discard_setkey', 0, 'setkey: spdadd 10.0.5.0/24 10.0.6.0/24 icmp -P out discard', (q) => setkey(SETKEY.spdDiscard, q));
  send('spd', 'spdadd_v6_tunnel_setkey', 0, 'setkey: 2001:db8:1::/48 2001:db8:2::/48 any -P out ipsec esp/tunnel/2001:db8::1-2001:db8::2/require', (q) => setkey(SETKEY.spdV6Tunnel, q));
  send('spd', 'spdadd_v6_ah_unique', 0, 'X_SPDADD in 2001:db8::2/128 -> 2001:db8::1/128 any, AH transport unique reqid 100',
    (q) => spdadd(q, [src(A.v6[1], { proto: ANY }), dst(A.v6[0], { proto: ANY }),
      policy(P.IPSEC, D.INBOUND, { priority: PRIO, reqs: [{ proto: K.IPPROTO_AH, mode: IPSEC_MODE.TRANSPORT, level: L.UNIQUE, reqid: 100 }] })]));
  send('spd', 'spdget_out', 0, 'X_SPDGET by the id the kernel gave the out policy',
    (q) => spd(M.SADB_X_SPDGET)(q, [policy(0, 0, { id: policyOf('spdadd_out_tunnel') })]));
  send('spd', 'spdget_missing', 0, 'X_SPDGET of an id nobody has: ENOENT', (q) => spd(M.SADB_X_SPDGET)(q, [policy(0, 0, { id: 0x7ffff0 })]));
  send('spd', 'spddump', 0, 'X_SPDDUMP: every policy, seq counting down to 0', (q) => spd(M.SADB_X_SPDDUMP)(q, []));
  send('spd', 'spddelete_out', 0, 'X_SPDDELETE the out policy by selector and direction',
    (q) => spd(M.SADB_X_SPDDELETE)(q, [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND)]));
  send('spd', 'spddelete_out_again', 0, 'X_SPDDELETE it again: ENOENT', (q) => spd(M.SADB_X_SPDDELETE)(q, [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND)]));
  send('spd', 'spddelete2_in', 0, 'X_SPDDELETE2 the in policy by id',
    (q) => spd(M.SADB_X_SPDDELETE2)(q, [policy(0, 0, { id: policyOf('spdadd_in_tunnel') })]));
  send('spd', 'spddelete2_missing', 0, 'X_SPDDELETE2 of an id nobody has: ENOENT', (q) => spd(M.SADB_X_SPDDELETE2)(q, [policy(0, 0, { id: 0x7ffff0 })]));
  send('spd', 'spdflush', 0, 'X_SPDFLUSH: to the sender twice, to every socket once', (q) => spd(M.SADB_X_SPDFLUSH)(q, []));
  send('spd', 'spddump_empty', 0, 'X_SPDDUMP of an empty SPD: ENOENT', (q) => spd(M.SADB_X_SPDDUMP)(q, []));

  // --- bad inputs: refused by send() itself
  const get0 = (q: number) => said(0x2000);
  send('bad', 'bad_version', 0, 'version 1: send() fails EINVAL, no message', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q, version: 1 }, get0(q)));
  send('bad', 'bad_reserved', 0, 'sadb_msg_reserved 1: send() EINVAL', (q) => message({ type: M.SADB_FLUSH, seq: q, reserved: 1 }, []));
  send('bad', 'bad_type0', 0, 'message type 0: send() EINVAL', (q) => message({ type: 0, satype: ESP, seq: q }, []));
  send('bad', 'bad_type25', 0, 'message type 25, above SADB_MAX (24): send() EINVAL', (q) => message({ type: 25, satype: ESP, seq: q }, []));
  send('bad', 'bad_len_short', 4, 'sadb_msg_len 1 on a 16-byte message: send() EMSGSIZE', (q) => message({ type: M.SADB_FLUSH, seq: q, len: 1 }, []));
  close('bad', 'bad_len_short_close', [4], 'over a stream the framing error ends the connection: both sides start 4 afresh');
  open('bad', 'bad_len_short_reopen', [4], '');
  send('bad', 'bad_len_long', 4, 'sadb_msg_len 3 (24 bytes) on a 16-byte message: send() EMSGSIZE (a stream waits for the rest, then times out)',
    (q) => message({ type: M.SADB_FLUSH, seq: q, len: 3 }, []), { settle: 1.5 });
  close('bad', 'bad_len_long_close', [4], '');
  open('bad', 'bad_len_long_reopen', [4], '');
  send('bad', 'bad_len_trailing', 4, 'a GET with 8 bytes after what sadb_msg_len covers: send() EMSGSIZE', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, get0(q), '0100010000000000'), { settle: 1.5 });
  close('bad', 'bad_len_trailing_close', [4], '');
  open('bad', 'bad_len_trailing_reopen', [4], '');
  // --- bad inputs: errno replies
  send('bad', 'bad_errno_in_request', 0, 'a FLUSH whose sadb_msg_errno is 5', (q) => message({ type: M.SADB_FLUSH, errno: 5, seq: q }, []));
  send('bad', 'bad_dup_ext', 0, 'GET with ADDRESS_SRC twice: EINVAL', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, [...said(0x2000), src(A.v4[0])]));
  send('bad', 'bad_zero_len_ext', 0, 'GET whose SA extension has sadb_ext_len 0: EINVAL',
    (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, [fromHex('0000010000000000'), fromHex('0000000000000000'), src(A.v4[0]), dst(A.v4[1])]));
  send('bad', 'bad_ext_overrun', 0, 'GET whose SA extension claims 40 units: EINVAL',
    (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, [fromHex('2800010000002000'), fromHex('0000000000000000'), src(A.v4[0]), dst(A.v4[1])]));
  send('bad', 'bad_ext_type0', 0, 'GET with an extension of type 0: EINVAL', (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, [...said(0x2000), fromHex('0100000000000000')]));
  send('bad', 'bad_ext_type27', 0, 'GET with an extension of type 27 (above SADB_EXT_MAX 26): Linux skips it, so the GET runs (ESRCH)',
    (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, [...said(0x2000), fromHex('01001b0000000000')]));
  send('bad', 'bad_add_no_sa', 0, 'ADD without the SA extension: EINVAL',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1), encKey(KEYS.aes128)]));
  send('bad', 'bad_add_no_dst', 0, 'ADD without ADDRESS_DST: EINVAL',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, SHA1, AESCBC), src(A.v4[0]), authKey(KEYS.sha1), encKey(KEYS.aes128)]));
  send('bad', 'bad_satype99', 0, 'ADD with satype 99: EINVAL', (q) => message({ type: M.SADB_ADD, satype: 99, seq: q }, espSa(0x2500)));
  send('bad', 'bad_satype_unspec', 0, 'ADD with satype 0: EINVAL', (q) => message({ type: M.SADB_ADD, satype: 0, seq: q }, espSa(0x2500)));
  send('bad', 'bad_enc_alg99', 0, 'ADD with encryption algorithm 99: ENOSYS',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, SHA1, 99), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1), encKey(KEYS.aes128)]));
  send('bad', 'bad_auth_alg99', 0, 'ADD with authentication algorithm 99: ENOSYS',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, 99, AESCBC), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1), encKey(KEYS.aes128)]));
  send('bad', 'bad_aes_gcm', 0, 'ADD ESP AES-GCM-16 (20) with a 160-bit key: Linux cannot make AEAD SAs through PF_KEY (ENOSYS)',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, 0, GCM16), src(A.v4[0]), dst(A.v4[1]), encKey(KEYS.gcm160)]));
  send('bad', 'bad_aes_key_96', 0, 'ADD AES-CBC with a 96-bit key: EINVAL',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, SHA1, AESCBC), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1), encKey(KEYS.aes96)]));
  send('bad', 'add_sha1_key_128', 0, 'ADD HMAC-SHA1 with a 128-bit key (the algorithm says 160)',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2600, SHA1, AESCBC), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.md5), encKey(KEYS.aes128)]));
  send('bad', 'bad_esp_no_enc_key', 0, 'ADD ESP AES-CBC without KEY_ENCRYPT: EINVAL',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, SHA1, AESCBC), src(A.v4[0]), dst(A.v4[1]), authKey(KEYS.sha1)]));
  send('bad', 'bad_ah_no_auth_key', 0, 'ADD AH HMAC-SHA1 without KEY_AUTH: EINVAL', (q) => message({ type: M.SADB_ADD, satype: AH, seq: q }, [sa(0x2500, SHA1, 0), src(A.v4[0]), dst(A.v4[1])]));
  send('bad', 'bad_hard_without_soft', 0, 'ADD with LIFETIME_HARD and no LIFETIME_SOFT: EINVAL',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, espSa(0x2500, [hard({ addtime: 100n })])));
  send('bad', 'bad_family_mismatch', 0, 'ADD with an IPv4 source and an IPv6 destination: EINVAL',
    (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, [sa(0x2500, SHA1, AESCBC), src(A.v4[0]), dst(A.v6[1]), authKey(KEYS.sha1), encKey(KEYS.aes128)]));
  send('bad', 'bad_prefixlen_33', 0, 'GET whose IPv4 source has prefix length 33: EINVAL',
    (q) => message({ type: M.SADB_GET, satype: ESP, seq: q }, [saRef(0x2000), src(A.v4[0], { prefixlen: 33 }), dst(A.v4[1])]));
  send('bad', 'bad_spi_zero', 0, 'ADD with SPI 0', (q) => message({ type: M.SADB_ADD, satype: ESP, seq: q }, espSa(0)));
  send('bad', 'bad_getspi_min_gt_max', 0, 'GETSPI with min > max: EINVAL', (q) => message({ type: M.SADB_GETSPI, satype: ESP, seq: q }, [src(A.v4[0]), dst(A.v4[1]), spirange(0x2000, 0x1000)]));
  send('bad', 'getspi_no_range', 0, 'GETSPI without SPIRANGE: Linux takes 0x100-0x0fffffff', (q) => message({ type: M.SADB_GETSPI, satype: ESP, seq: q }, [src(A.v4[0]), dst(A.v4[1])]));
  send('bad', 'bad_delete_missing', 0, 'DELETE a missing SA: ESRCH', (q) => message({ type: M.SADB_DELETE, satype: ESP, seq: q }, said(0x2777)));
  const userType = (name: string, type: number, comment: string) => send('bad', name, 0, comment, (q) => message({ type, satype: ESP, seq: q }, []));
  userType('bad_user_expire', M.SADB_EXPIRE, 'EXPIRE sent by a user: EOPNOTSUPP');
  userType('bad_user_pchange', M.SADB_X_PCHANGE, 'X_PCHANGE sent by a user: EOPNOTSUPP');
  userType('bad_user_spdacquire', M.SADB_X_SPDACQUIRE, 'X_SPDACQUIRE sent by a user: EOPNOTSUPP');
  userType('bad_user_spdexpire', M.SADB_X_SPDEXPIRE, 'X_SPDEXPIRE sent by a user: EOPNOTSUPP');
  userType('bad_user_nat_t_new_mapping', M.SADB_X_NAT_T_NEW_MAPPING, 'X_NAT_T_NEW_MAPPING sent by a user: EOPNOTSUPP');
  userType('bad_user_migrate', M.SADB_X_MIGRATE, 'X_MIGRATE with no extensions');
  userType('bad_user_acquire_empty', M.SADB_ACQUIRE, 'ACQUIRE from a user with no extensions and no errno');
  const badPolicy = (name: string, comment: string, exts: () => Uint8Array[]) => send('bad', name, 0, comment, (q) => spdadd(q, exts()));
  badPolicy('bad_policy_short', 'X_SPDADD whose X_POLICY is 8 bytes (below sizeof sadb_x_policy): EINVAL', () => [...SEL_OUT(), ext(KAME_EXT.X_POLICY, '02000200')]);
  badPolicy('bad_policy_request_len_8', 'X_SPDADD whose ipsecrequest says 8 bytes: EINVAL',
    () => [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { reqs: [{ proto: K.IPPROTO_ESP, mode: IPSEC_MODE.TRANSPORT, level: L.REQUIRE, len: 8 }] })]);
  badPolicy('bad_policy_request_overrun', 'X_SPDADD whose ipsecrequest says 64 bytes in a 16-byte remainder: EINVAL',
    () => [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { reqs: [{ proto: K.IPPROTO_ESP, mode: IPSEC_MODE.TRANSPORT, level: L.REQUIRE, len: 64 }] })]);
  badPolicy('bad_policy_tunnel_no_addrs', 'X_SPDADD with a tunnel-mode ipsecrequest that carries no end points: EINVAL',
    () => [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { reqs: [{ proto: K.IPPROTO_ESP, mode: IPSEC_MODE.TUNNEL, level: L.REQUIRE }] })]);
  badPolicy('bad_policy_proto_tcp', 'X_SPDADD with an ipsecrequest for protocol 6: EINVAL',
    () => [...SEL_OUT(), policy(P.IPSEC, D.OUTBOUND, { reqs: [{ proto: 6, mode: IPSEC_MODE.TRANSPORT, level: L.REQUIRE }] })]);
  badPolicy('bad_policy_dir0', 'X_SPDADD with direction 0 (any): EINVAL', () => [...SEL_OUT(), policy(P.IPSEC, 0, { reqs: [] })]);
  badPolicy('bad_policy_dir4', 'X_SPDADD with direction 4: EINVAL', () => [...SEL_OUT(), policy(P.NONE, 4)]);
  badPolicy('bad_policy_type_entrust', 'X_SPDADD with policy type 3 (ENTRUST): EINVAL', () => [...SEL_OUT(), policy(P.ENTRUST, D.OUTBOUND)]);
  badPolicy('bad_spdadd_no_dst', 'X_SPDADD without ADDRESS_DST: EINVAL', () => [SEL_OUT()[0], policy(P.NONE, D.OUTBOUND)]);
  badPolicy('bad_spdadd_no_policy', 'X_SPDADD without X_POLICY: EINVAL', () => SEL_OUT());
  badPolicy('bad_spdadd_prefix_33', 'X_SPDADD whose source prefix length is 33: EINVAL',
    () => [src('10.1.0.0', { prefixlen: 33, proto: ANY }), SEL_OUT()[1], policy(P.NONE, D.OUTBOUND)]);
  send('bad', 'cleanup_flush', 0, 'FLUSH all (what the bad inputs may have added)', (q) => message({ type: M.SADB_FLUSH, seq: q }, []));
  send('bad', 'cleanup_spdflush', 0, 'X_SPDFLUSH', (q) => message({ type: M.SADB_X_SPDFLUSH, seq: q }, []));

  // --- ACQUIRE from traffic: the 07_acquire capture (the relay cannot send packets inside the VM)
  const cap = (step: number) => ({ file: 'test/vectors/linux-af_key/07_acquire.json', step, sockets: { a: 0, b: 1, c: 2 } });
  close('acquire', 'acquire_close_all', [0, 1, 2, 3, 4], 'fresh sockets for the captured scenario');
  open('acquire', 'acquire_open', [0, 1, 2], '0 acts (unregistered), 1 registers ESP, 2 AH');
  send('acquire', 'acquire_register_esp', 1, '1 registers ESP', () => ACQ.registerEsp, { capture: cap(3) });
  send('acquire', 'acquire_register_ah', 2, '2 registers AH', () => ACQ.registerAh, { capture: cap(4) });
  send('acquire', 'acquire_spdadd', 0, 'X_SPDADD out 127.0.0.1 -> 127.0.0.2, ESP transport, require', () => ACQ.spdadd, { capture: cap(5) });
  const pkt = udpPacket('127.0.0.1', '127.0.0.2', 40000, 9, 'refkernel');
  S.push({ group: 'acquire', name: 'acquire_traffic', traffic: { packet: pkt, what: 'UDP 127.0.0.1 -> 127.0.0.2:9 "refkernel"' }, comment: 'the first packet: ACQUIRE (kernel seq, pid 0) to every registered socket', capture: cap(6) });
  S.push({ group: 'acquire', name: 'acquire_wait', wait: 0.5, comment: 'collect ACQUIREs', capture: cap(7) });
  S.push({ group: 'acquire', name: 'acquire_traffic_again', traffic: { packet: udpPacket('127.0.0.1', '127.0.0.2', 40000, 9, 'again'), what: 'UDP 127.0.0.1 -> 127.0.0.2:9 "again"' },
    comment: 'a second packet while the ACQUIRE is pending', capture: cap(8) });
  S.push({ group: 'acquire', name: 'acquire_wait_again', wait: 1.0, comment: 'no second ACQUIRE', capture: cap(9) });
  send('acquire', 'acquire_dump', 0, 'DUMP all: the larval SA the ACQUIRE left', () => ACQ.dump, { capture: cap(10) });
  send('acquire', 'acquire_spdflush', 0, 'X_SPDFLUSH', () => ACQ.spdflush, { capture: cap(11) });
  send('acquire', 'acquire_flush', 0, 'FLUSH', () => ACQ.flush, { capture: cap(12) });
  close('acquire', 'close_all', [0, 1, 2], 'done');
  return S;
}

/** The suite, sequence numbers given in step order (1, 2, …) unless a request fixes its own. */
export function buildSuite(): Suite {
  sentinels.length = 0;
  let seq = 0;
  const steps: SuiteStep[] = draft().map((d) => {
    const { request, ...rest } = d;
    if (!request) return rest;
    return { ...rest, request: request(++seq) };
  });
  const names = new Set<string>();
  for (const s of steps) {
    if (names.has(s.name)) throw new Error(`step name ${s.name} used twice`);
    names.add(s.name);
  }
  return {
    title: 'klipsd KAME socket vs Linux af_key: the differential suite (issue 13)',
    about: 'Generated by scripts/kame-suite.ts (do not edit by hand). Steps run in order on sockets 0-4. A step opens or closes sockets, sends `request` (hex) on `socket`, waits `wait` seconds, or injects `traffic` (an IPv4 packet); afterwards every open socket\'s messages are collected for `settle` seconds (default below). {{spi:STEP}} and {{policy:STEP}} in a request stand for the SPI / policy id in STEP\'s reply to its sender. Steps with `capture` are not run on the VM: their Linux answers come from that earlier capture (the relay cannot send packets inside the VM).',
    pid: PID,
    settle: 0.5,
    steps,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(buildSuite(), null, 2)}\n`);
}
