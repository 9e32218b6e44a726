import { Observable, type OperatorFunction } from 'rxjs';
import { RequestDecoder, defaultRequestLimits, type Request, type RequestLimits } from '../protocol/request-decoder.js';

/**
 * Socket chunks in, one request per emission out. Partial requests wait, with their parse
 * state, for the next chunk. A protocol violation errors the stream with a ProtocolError
 * after every request before it has been emitted.
 *
 *   chunks:   --"*1\r\n$4\r\nPI"--"NG\r\n*1\r\n$4\r\nPING\r\n"--|
 *   requests: ---------------------(ab)------------------------|
 */
export function decodeRequests(limits: RequestLimits = defaultRequestLimits): OperatorFunction<Buffer, Request> {
  return (source) =>
    new Observable<Request>((subscriber) => {
      const decoder = new RequestDecoder(limits);
      const emit = (req: Request): void => subscriber.next(req);
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
