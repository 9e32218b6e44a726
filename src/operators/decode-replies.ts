import { Observable, type OperatorFunction } from 'rxjs';
import { ReplyDecoder, defaultReplyLimits, type ReplyLimits } from '../protocol/reply-decoder.js';

export interface ReplyFrame {
  frame: Buffer;
  /** a RESP3 push (out-of-band), not the answer to a request */
  push: boolean;
}

/**
 * Backend socket chunks in, one complete reply per emission out (raw bytes, never decoded
 * into values). A malformed or too deeply nested reply errors the stream: the connection's
 * request/reply alignment is then in doubt and it must be closed.
 *
 *   chunks:  --"+OK\r\n:1"--"\r\n"--|
 *   replies: --a------------b-------|
 */
export function decodeReplies(limits: ReplyLimits = defaultReplyLimits): OperatorFunction<Buffer, ReplyFrame> {
  return (source) =>
    new Observable<ReplyFrame>((subscriber) => {
      const decoder = new ReplyDecoder(limits);
      const emit = (frame: Buffer, push: boolean): void => subscriber.next({ frame, push });
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
