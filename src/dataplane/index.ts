/**
 * The data plane's packet transforms (KLIPS's ipsec_xmit/ipsec_rcv building blocks) as pure
 * functions on buffers: the IPv4/IPv6 codec and eroute selectors, ESP, AH, IPIP, IPCOMP,
 * NAT-T encapsulation and the anti-replay window. Every function returns a Result; a
 * Drop names its reason (drop.ts). The SA a transform needs is a TransformSA (sa.ts),
 * which an adapter fills from src/sadb. On top of them: the outbound and inbound paths
 * over an engine's live tables (xmit.ts, rcv.ts), their counters (counters.ts), and
 * klips trace's dry runs, steps and packet decoding (trace.ts).
 */

export * from './drop.js';
export * from './algorithms.js';
export { espCrypto, setEspCrypto, evpUnavailable, type EspCryptoName } from './cipher.js';
export { evpLibrary } from './evp.js';
export * from './sa.js';
export * from './packet.js';
export * from './replay.js';
export * from './ipip.js';
export * from './esp.js';
export * from './ah.js';
export * from './ipcomp.js';
export * from './natt.js';
export * from './counters.js';
export * from './sa-adapter.js';
export * from './xmit.js';
export * from './rcv.js';
export * from './trace.js';
