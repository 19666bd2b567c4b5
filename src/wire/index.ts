/**
 * The wire layer's public face: PF_KEY v2 constants, extension codecs, the per-message
 * extension rules, message parse/build and renderings. Imports nothing of ours.
 */
export * from './constants.js';
export * from './errno.js';
export * from './sockaddr.js';
export * from './extensions.js';
export * from './rules.js';
export * from './message.js';
export * from './render.js';
export { allocMessage } from './bytes.js';
