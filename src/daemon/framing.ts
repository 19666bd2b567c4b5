/**
 * Framing moved to wire/ (src/wire/framing.ts). This re-export keeps `src/cli/client.ts`
 * and the test harness building until they import it from wire/; delete it then.
 */
export { FrameDecoder, MAX_MESSAGE_BYTES, errnoReplyTo, framingErrorReply, type FrameError } from '../wire/framing.js';
