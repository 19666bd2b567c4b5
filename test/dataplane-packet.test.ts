/**
 * Tests for src/dataplane/packet.ts: the internet checksum, IPv4/IPv6 parsing and its
 * drops, header building, the next-header walks (eroute selectors through extension
 * headers and fragments, the transport-mode insertion point), reassembly with lengths
 * and checksums right, and selectors that src/spd's eroute table accepts as they are.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AF_INET, AF_INET6, IPPROTO_AH, IPPROTO_ESP, IPPROTO_INT, SPI_PASS } from '../src/wire/index.js';
import { ErouteTable, type PacketSelector } from '../src/spd/eroute-table.js';
import {
  IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, IP_DF,
  IP_MF, assemble, buildIPv4Header, buildIPv6Header, findHeader, insertionPoint, internetChecksum, movedIp, parseIp,
  refreshIPv4Checksum, selectorOf, trafficClassOf, type Selector,
} from '../src/dataplane/index.js';
import { addr, bytes, hex, icmpEcho, ipv4, ipv6, optionsHeader, routingHeader, tcp, udp } from './dataplane-helpers.js';

test('internet checksum: RFC 1071\'s worked example, odd lengths, and a seed', () => {
  const b = hex('0001f203f4f5f6f7');
  assert.equal(internetChecksum(b, 0, 8), ~0xddf2 & 0xffff);
  assert.equal(internetChecksum(hex('01'), 0, 1), ~0x0100 & 0xffff);
  assert.equal(internetChecksum(b, 0, 4, 0xf4f5 + 0xf6f7), internetChecksum(b, 0, 8));
  const h = buildIPv4Header({ tos: 0, id: 1, flags: 0, ttl: 64, protocol: 6, src: addr('10.0.0.1'), dst: addr('10.0.0.2'), payloadLength: 0 });
  assert.equal(internetChecksum(h, 0, 20), 0);
});

test('IPv4 parse: fields, trailing bytes trimmed, and the drops', () => {
  const pkt = ipv4({ payload: tcp(1, 2, bytes(10)), tos: 0x10, ttl: 7, flags: IP_DF | 3, options: Buffer.from([1, 1, 1, 0]) });
  const p = parseIp(Buffer.concat([pkt, bytes(5)]));
  assert.ok(p.ok);
  assert.equal(p.ip.version, 4);
  assert.equal(p.ip.headerLength, 24);
  assert.equal(p.ip.bytes.length, pkt.length);
  assert.equal(p.ip.protocol, IPPROTO_TCP);
  assert.deepEqual([p.ip.dontFragment, p.ip.moreFragments, p.ip.fragmentOffset, p.ip.ttl], [true, false, 24, 7]);
  assert.equal(Buffer.from(p.ip.src).toString('hex'), '0a010005');
  assert.equal(trafficClassOf(pkt), 0x10);
  const edit = (f: (b: Buffer) => void, fix = true) => {
    const b = Buffer.from(pkt);
    f(b);
    if (fix) refreshIPv4Checksum(b);
    return parseIp(b);
  };
  assert.deepEqual(parseIp(new Uint8Array(0)), { ok: false, reason: 'too-short' });
  assert.deepEqual(parseIp(pkt.subarray(0, 19)), { ok: false, reason: 'too-short' });
  assert.deepEqual(edit((b) => { b[0] = 0x54; }, false), { ok: false, reason: 'bad-ip-header' });
  assert.deepEqual(edit((b) => { b[0] = 0x44; }, false), { ok: false, reason: 'bad-ip-header' }, 'IHL 4');
  assert.deepEqual(edit((b) => { b.writeUInt16BE(23, 2); }), { ok: false, reason: 'bad-ip-header' }, 'total length under the header');
  assert.deepEqual(edit((b) => { b.writeUInt16BE(pkt.length + 1, 2); }), { ok: false, reason: 'too-short' });
  assert.deepEqual(edit((b) => { b[8] ^= 1; }, false), { ok: false, reason: 'bad-ip-checksum' });
});

test('IPv6 parse: fields and the drops; a zero payload length is an empty packet', () => {
  const pkt = ipv6({ payload: udp(1, 2, bytes(3)), nh: IPPROTO_UDP, tc: 0xab, fl: 0x54321, hlim: 3 });
  const p = parseIp(Buffer.concat([pkt, bytes(2)]));
  assert.ok(p.ok);
  assert.deepEqual([p.ip.version, p.ip.headerLength, p.ip.protocol, p.ip.bytes.length, p.ip.ttl], [6, 40, IPPROTO_UDP, pkt.length, 3]);
  assert.equal(trafficClassOf(pkt), 0xab);
  assert.equal(pkt.readUInt32BE(0), 0x6ab54321);
  assert.deepEqual(parseIp(pkt.subarray(0, 39)), { ok: false, reason: 'too-short' });
  assert.deepEqual(parseIp(pkt.subarray(0, pkt.length - 1)), { ok: false, reason: 'too-short' });
  const empty = buildIPv6Header({ trafficClass: 0, flowLabel: 0, hopLimit: 1, nextHeader: 59, src: addr('::1'), dst: addr('::2'), payloadLength: 0 });
  const e = parseIp(empty);
  assert.ok(e.ok && e.ip.bytes.length === 40);
});

test('selectors: addresses, protocol and TCP/UDP ports, as KLIPS\'s ipsec_extract_ports', () => {
  const sel = (pkt: Buffer): Selector => {
    const r = selectorOf(pkt);
    assert.ok(r.ok, r.ok ? '' : r.reason);
    return r.selector;
  };
  const t = sel(ipv4({ src: '10.1.2.3', dst: '172.16.0.9', payload: tcp(40000, 443, bytes(4)) }));
  assert.deepEqual([t.family, Buffer.from(t.src).toString('hex'), Buffer.from(t.dst).toString('hex'), t.proto, t.sport, t.dport],
    [AF_INET, '0a010203', 'ac100009', IPPROTO_TCP, 40000, 443]);
  const u = sel(ipv4({ proto: IPPROTO_UDP, payload: udp(53, 5353, bytes(1)) }));
  assert.deepEqual([u.proto, u.sport, u.dport], [IPPROTO_UDP, 53, 5353]);
  const i = sel(ipv4({ proto: IPPROTO_ICMP, payload: icmpEcho(bytes(8)) }));
  assert.deepEqual([i.proto, i.sport, i.dport], [IPPROTO_ICMP, 0, 0]);
  const first = sel(ipv4({ payload: tcp(1, 2, bytes(8)), flags: IP_MF }));
  assert.deepEqual([first.sport, first.dport], [1, 2], 'first fragment carries the ports');
  const later = sel(ipv4({ payload: tcp(1, 2, bytes(8)), flags: IP_MF | 100 }));
  assert.deepEqual([later.proto, later.sport, later.dport], [IPPROTO_TCP, 0, 0], 'later fragments do not');
  const stub = sel(ipv4({ payload: Buffer.from([0, 80]) }));
  assert.deepEqual([stub.sport, stub.dport], [0, 0], 'truncated TCP header');
  const e = sel(ipv4({ proto: IPPROTO_ESP, payload: bytes(16) }));
  assert.deepEqual([e.proto, e.sport], [IPPROTO_ESP, 0]);
});

test('IPv6 selectors walk hop-by-hop, routing, destination options, fragment and AH headers to the upper layer', () => {
  const frag = (nh: number, offset: number, more: boolean) => {
    const f = Buffer.alloc(8);
    f[0] = nh;
    f.writeUInt16BE((offset & 0xfff8) | (more ? 1 : 0), 2);
    f.writeUInt32BE(0xabcd, 4);
    return f;
  };
  const ah = Buffer.concat([Buffer.from([IPPROTO_TCP, 4, 0, 0]), bytes(20)]); // 24 bytes: (4 + 2) × 4
  const chain = Buffer.concat([
    optionsHeader(IPPROTO_ROUTING, Buffer.from([0x05, 2, 0, 0])),
    routingHeader(IPPROTO_DSTOPTS, ['2001:db8::9'], 0),
    optionsHeader(IPPROTO_FRAGMENT, Buffer.from([0x1e, 2, 0, 0])),
    frag(IPPROTO_AH, 0, true),
    ah,
    tcp(1111, 2222, bytes(3)),
  ]);
  const pkt = ipv6({ nh: IPPROTO_HOPOPTS, payload: chain });
  const s = selectorOf(pkt);
  assert.ok(s.ok);
  assert.deepEqual([s.selector.family, s.selector.proto, s.selector.sport, s.selector.dport], [AF_INET6, IPPROTO_TCP, 1111, 2222]);
  const later = selectorOf(ipv6({ nh: IPPROTO_FRAGMENT, payload: Buffer.concat([frag(IPPROTO_UDP, 1448, false), bytes(30)]) }));
  assert.ok(later.ok);
  assert.deepEqual([later.selector.proto, later.selector.sport, later.selector.dport], [IPPROTO_UDP, 0, 0]);
  const cut = ipv6({ nh: IPPROTO_HOPOPTS, payload: Buffer.from([IPPROTO_TCP, 3, 1, 0, 0, 0, 0, 0]) }); // claims 32 bytes
  assert.deepEqual(selectorOf(cut), { ok: false, reason: 'bad-ip-header' });
});

test('where transport-mode headers go, and where an inbound IPsec header is found', () => {
  const pkt = ipv6({
    nh: IPPROTO_HOPOPTS,
    payload: Buffer.concat([
      optionsHeader(IPPROTO_DSTOPTS, Buffer.from([0x05, 2, 0, 0])),
      optionsHeader(IPPROTO_ROUTING, Buffer.from([0x1e, 2, 0, 0])),
      routingHeader(IPPROTO_DSTOPTS, ['2001:db8::9'], 0),
      optionsHeader(IPPROTO_TCP, Buffer.from([0x1e, 2, 0, 0])),
      tcp(1, 2, bytes(4)),
    ]),
  });
  const p = parseIp(pkt);
  assert.ok(p.ok);
  const at = insertionPoint(p.ip);
  assert.ok(at.ok);
  assert.deepEqual([at.at.offset, at.at.protocol, at.at.protocolField], [40 + 8 + 8 + 24, IPPROTO_DSTOPTS, 40 + 16]);
  const v4 = parseIp(ipv4({ payload: tcp(1, 2, bytes(1)), options: Buffer.from([1, 1, 1, 0]) }));
  assert.ok(v4.ok);
  const at4 = insertionPoint(v4.ip);
  assert.ok(at4.ok);
  assert.deepEqual([at4.at.offset, at4.at.protocol, at4.at.protocolField], [24, IPPROTO_TCP, 9]);
  const f = findHeader(p.ip, IPPROTO_TCP);
  assert.ok(f.ok && f.at.offset === 40 + 48);
  assert.deepEqual(findHeader(p.ip, IPPROTO_ESP), { ok: false, reason: 'no-sa' });
});

test('assemble: relabels, sets lengths and the IPv4 checksum, and refuses more than 65,535 bytes', () => {
  const pkt = ipv4({ payload: tcp(1, 2, bytes(8)) });
  const r = assemble(pkt.subarray(0, 20), 9, IPPROTO_UDP, bytes(3), bytes(4));
  assert.ok(r.ok);
  assert.deepEqual([r.packet.length, r.packet.readUInt16BE(2), r.packet[9], internetChecksum(r.packet, 0, 20)], [27, 27, IPPROTO_UDP, 0]);
  assert.deepEqual(assemble(pkt.subarray(0, 20), 9, 6, Buffer.alloc(65535 - 19)), { ok: false, reason: 'too-big' });
  const v6 = ipv6({ payload: bytes(4) });
  const r6 = assemble(v6.subarray(0, 40), 6, 59, Buffer.alloc(65535));
  assert.ok(r6.ok && r6.packet.readUInt16BE(4) === 65535);
  assert.deepEqual(assemble(v6.subarray(0, 40), 6, 59, Buffer.alloc(65536)), { ok: false, reason: 'too-big' });
});

test('a selector is what src/spd looks eroutes up with', () => {
  const table = new ErouteTable();
  const flow = ErouteTable.makeFlow(AF_INET, '10.1.0.0', 16, '10.2.0.0', 16);
  table.add(flow, { proto: IPPROTO_INT, spi: SPI_PASS, dst: '0.0.0.0' });
  const s = selectorOf(ipv4({ src: '10.1.9.9', dst: '10.2.3.4', payload: tcp(5, 6, bytes(1)) }));
  assert.ok(s.ok);
  const key: PacketSelector = s.selector;
  assert.ok(table.lookup(key));
  const miss = selectorOf(ipv4({ src: '10.3.9.9', dst: '10.2.3.4', payload: tcp(5, 6, bytes(1)) }));
  assert.ok(miss.ok && !table.lookup(miss.selector));
});

test('movedIp gives what parseIp gives for a packet whose header was moved and rewritten in place (NAT-T\'s and ESP\'s in-place steps)', () => {
  const data = Buffer.alloc(40, 7);
  for (const original of [
    ipv4({ proto: IPPROTO_UDP, ttl: 17, flags: IP_DF, payload: udp(4500, 4500, data) }),
    ipv4({ proto: IPPROTO_UDP, options: Buffer.from([1, 1, 1, 0]), payload: udp(4500, 4500, data) }),
    ipv6({ nh: IPPROTO_UDP, hlim: 9, payload: udp(4500, 4500, data) }),
  ]) {
    const before = parseIp(original);
    assert.ok(before.ok);
    // As nattDecapAt does in place: the header moves up over the 8 UDP bytes, names ESP, and has its lengths (and checksum) set again.
    const v4 = original[0] >> 4 === 4;
    const hl = before.ip.headerLength;
    original.copyWithin(8, 0, hl);
    const q = original.subarray(8);
    q[v4 ? 9 : 6] = IPPROTO_ESP;
    if (v4) {
      q.writeUInt16BE(q.length, 2);
      refreshIPv4Checksum(q);
    } else {
      q.writeUInt16BE(q.length - 40, 4);
    }
    const fresh = parseIp(q);
    assert.ok(fresh.ok);
    const moved = movedIp(before.ip, q);
    for (const k of ['version', 'headerLength', 'protocol', 'ttl', 'fragmentOffset', 'moreFragments', 'dontFragment'] as const) {
      assert.equal(moved[k], fresh.ip[k], k);
    }
    assert.deepEqual(moved.bytes, fresh.ip.bytes);
    assert.deepEqual(moved.src, fresh.ip.src);
    assert.deepEqual(moved.dst, fresh.ip.dst);
  }
});
