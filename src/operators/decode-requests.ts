import { Observable, type OperatorFunction } from 'rxjs';
import { ProtocolError, RequestDecoder, defaultRequestLimits, type Request, type RequestLimits } from '../protocol/request-decoder.js';

/** What one socket chunk holds: its complete requests, in order; a protocol violation ends it. */
export type RequestBatch = Array<Request | ProtocolError>;

/**
 * Socket chunks in, one batch per chunk out: the requests the chunk completed (a chunk that
 * completes none emits nothing). Partial requests wait, with their parse state, for the next
 * chunk. A protocol violation is the last item of its batch (after every request before it),
 * and the stream then completes: nothing after it is read. While `limits.preAuth` is set,
 * each request is a batch of its own, emitted before the next is decoded. With a clock `now`,
 * every request's `at` is when its chunk arrived (one reading per chunk).
 *
 *   chunks:   --"*1\r\n$4\r\nPI"--"NG\r\n*1\r\n$4\r\nPING\r\n"--|
 *   batches:  ---------------------[a,b]------------------------|
 */
export function decodeRequests(limits: RequestLimits = defaultRequestLimits, now?: () => number): OperatorFunction<Buffer, RequestBatch> {
  return (source) =>
    new Observable<RequestBatch>((subscriber) => {
      const decoder = new RequestDecoder(limits);
      let batch: RequestBatch = [];
      let at = 0;
      const emit = (req: Request): void => {
        req.at = at;
        batch.push(req);
        // before AUTH each request is its own batch: it runs before the next is decoded, so an
        // AUTH lifts the pre-auth limits for the rest of its chunk
        if (limits.preAuth === true) {
          const out = batch;
          batch = [];
          subscriber.next(out);
        }
      };
      let ended = false; // after a protocol error: chunks still arriving are not read
      return source.subscribe({
        next(chunk) {
          if (ended) return;
          let failed: ProtocolError | null = null;
          if (now !== undefined) at = now();
          try {
            decoder.push(chunk, emit);
          } catch (err) {
            if (!(err instanceof ProtocolError)) {
              subscriber.error(err);
              return;
            }
            failed = err;
            batch.push(err);
          }
          if (batch.length > 0) {
            const out = batch;
            batch = [];
            subscriber.next(out);
          }
          if (failed !== null) {
            ended = true;
            subscriber.complete();
          }
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}
