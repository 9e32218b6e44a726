import { Observable, type OperatorFunction } from 'rxjs';
import { ReplyDecoder, defaultReplyLimits, type ReplyLimits } from '../protocol/reply-decoder.js';

/**
 * Backend socket chunks in, one complete reply per emission out (raw bytes, never decoded
 * into values). A RESP3 push (out-of-band, answering no request) is a frame starting with `>`:
 * see `isPush`. A malformed or too deeply nested reply errors the stream: the connection's
 * request/reply alignment is then in doubt and it must be closed.
 *
 *   chunks:  --"+OK\r\n:1"--"\r\n"--|
 *   replies: --a------------b-------|
 */
export function decodeReplies(limits: ReplyLimits = defaultReplyLimits): OperatorFunction<Buffer, Buffer> {
  return (source) =>
    new Observable<Buffer>((subscriber) => {
      const decoder = new ReplyDecoder(limits);
      const emit = (frame: Buffer): void => subscriber.next(frame);
      return source.subscribe({
        next(chunk) {
          try {
            decoder.push(chunk, emit);
          } catch (err) {
            subscriber.error(err);
          }
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}

/** true for a RESP3 push frame (pub/sub messages, invalidations): it answers no request */
export const isPush = (frame: Buffer): boolean => frame[0] === 0x3e; /* > */
