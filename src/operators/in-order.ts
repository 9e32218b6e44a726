import { Observable, type OperatorFunction } from 'rxjs';

/** A reply for the request numbered `seq` (0, 1, 2, ... in the order the client sent them). */
export interface Slot<T> {
  seq: number;
  value: T;
}

/**
 * The per-client reorder buffer: replies arrive in any order (several backends answer at
 * their own pace) and leave strictly in request order. A reply that arrives early is held
 * until every reply before it has gone.
 *
 *   slots:  --(1:b)--(0:a)--(3:d)--(2:c)--|
 *   values: ---------(ab)-----------(cd)--|
 */
export function inOrder<T>(): OperatorFunction<Slot<T>, T> {
  return (source) =>
    new Observable<T>((subscriber) => {
      let next = 0;
      const early = new Map<number, T>();
      return source.subscribe({
        next({ seq, value }) {
          if (seq !== next) {
            if (seq > next) early.set(seq, value);
            return;
          }
          subscriber.next(value);
          next++;
          while (early.size > 0) {
            const v = early.get(next);
            if (v === undefined) break;
            early.delete(next);
            next++;
            subscriber.next(v);
          }
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}
