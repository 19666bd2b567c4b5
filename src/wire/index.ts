/**
 * The wire layer's public face: PF_KEY v2 constants, extension codecs, the per-message
 * extension rules, the non-throwing header reader, message parse/build, framing a byte
 * stream into messages, errno replies and renderings, for both dialects (KLIPS and
 * KAME/Linux). Imports nothing of ours.
 */
export * from './constants.js';
export * from './errno.js';
export * from './sockaddr.js';
export * from './extensions.js';
export * from './kame.js';
export * from './rules.js';
export * from './header.js';
export * from './message.js';
export * from './framing.js';
export * from './render.js';
export { allocMessage, dataViewOf } from './bytes.js';
export * from './scan.js';
export * from './reason.js';
export * from './status.js';
