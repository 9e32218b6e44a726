import { Observable, type OperatorFunction } from 'rxjs';

/**
 * The lanes a request can take (`laneOf`'s answer, plus the `REPLAN` flag).
 *
 * A client's requests run in the order it sent them only if each connection they use is one
 * queue at the server. Requests in one lane share the queues (the shared connections of one
 * RESP version, the transaction's connection, the subscriber connections); a request that
 * changes lane waits until every earlier request is answered, and becomes the lane the next
 * ones compare with.
 */
export const Lane = {
  /** answered by the proxy (or an error): runs in whatever lane is current */
  any: 0,
  /** blocking commands and WAIT: each one a lane of its own, waiting for the earlier requests; the later ones wait for it */
  exclusive: 1,
  /** the shared connections of a RESP2 client */
  shared2: 2,
  /** the shared connections of a RESP3 client */
  shared3: 3,
  /** the client's transaction (MULTI/EXEC/WATCH) connection */
  transaction: 4,
  /** the client's subscriber connections */
  subscriber: 5,
} as const;

/**
 * Flag on a lane: the request changes what `laneOf` answers for the ones after it (HELLO,
 * MULTI, EXEC, SUBSCRIBE...). The requests admitted up to it are emitted, and so dispatched,
 * before the next one is planned.
 */
export const REPLAN = 0x100;

/** before the first replies of a client, this many requests may be in flight whatever their size */
export const INITIAL_WINDOW = 64;

/** What the reply side reports, once per event-loop turn in which it wrote or drained. */
export interface Progress {
  /** replies released to the client so far (in request order) */
  answered: number;
  /** reply bytes released so far */
  bytes: number;
  /** reply bytes the client has not read yet: held for order, buffered, unsent */
  unread: number;
}

export interface AdmitOptions<T> {
  /** the item's lane (`Lane`), with `REPLAN` when it changes the lanes of later items; called when the item is next to be admitted */
  laneOf(item: T): number;
  /** most requests a client may have unanswered */
  maxPendingRequests: number;
  /** most reply bytes a client may have unread, counting its unanswered requests at its recent reply size */
  maxPendingBytes: number;
}

/** One emission: the items to dispatch now, in order, and whether later ones are held back. */
export interface Admitted<T> {
  items: T[];
  /** items are waiting: the client's socket should not be read until this is false again */
  holding: boolean;
}

/**
 * The plan stage's gate: batches of a client's requests in, batches of requests that may be
 * dispatched now out. It holds a request back while
 *
 *  - it changes lane and an earlier request is not answered (execution order across
 *    connections), or
 *  - the client has `maxPendingRequests` unanswered, or its unread reply bytes plus its
 *    unanswered requests times its recent reply size reach `maxPendingBytes` (flow control:
 *    a client that does not read stops being served, instead of filling the proxy's memory
 *    and the shared backend connections' pipelines).
 *
 * A request is always admitted when the client has nothing unanswered and nothing unread, so a
 * single reply larger than the bound still gets through. The recent reply size starts at
 * `maxPendingBytes / INITIAL_WINDOW` (a new client may pipeline 64 requests before its
 * replies say how large they are), goes up at once to a larger average seen in a report, and
 * down as far as a report's replies show (all the way for 16 or more of them). Nothing is dropped: held requests
 * leave, in order, as `progress$` reports answers and reads. The output completes once the
 * input has completed and every held request has left.
 *
 *   laneOf: a, b: shared; B: exclusive
 *   batches:  --(abB)------------a-----|
 *   progress: ---------2-----3---------
 *   admitted: --(ab)---B-----a---------|     (B waits for a and b; the last a waits for B)
 */
export function admitRequests<T>(progress$: Observable<Progress>, opts: AdmitOptions<T>): OperatorFunction<T[], Admitted<T>> {
  return (source) =>
    new Observable<Admitted<T>>((subscriber) => {
      let queue: T[] = [];
      let head = 0;
      let sent = 0;
      let answered = 0;
      let bytes = 0;
      let unread = 0;
      // bytes per reply, recently; before any reply, as if the first INITIAL_WINDOW replies could
      // fill the bound (a client that pipelines large replies at once overshoots by no more)
      let estimate = opts.maxPendingBytes / INITIAL_WINDOW;
      let lane: number = Lane.any;
      let holding = false;
      let done = false;
      let pumping = false;

      /** the items from `from` to `head`, dispatched now (the queue itself when it is all of it) */
      const emit = (from: number, nowHolding: boolean): void => {
        const items = from === 0 && head === queue.length ? queue : queue.slice(from, head);
        subscriber.next({ items, holding: nowHolding });
      };

      const pump = (): void => {
        if (pumping) return;
        pumping = true;
        let from = head;
        while (head < queue.length) {
          const planned = opts.laneOf(queue[head]);
          const l = planned & ~REPLAN;
          const pending = sent - answered;
          if (l !== Lane.any && (l === Lane.exclusive || l !== lane) && pending > 0) break;
          if (pending > 0 || unread > 0) {
            if (pending >= opts.maxPendingRequests) break;
            if (unread + pending * estimate >= opts.maxPendingBytes) break;
          }
          head++;
          sent++;
          if (l !== Lane.any) lane = l;
          if ((planned & REPLAN) !== 0) {
            // dispatched now: the next item is planned on the state this one leaves
            emit(from, head < queue.length);
            from = head;
          }
        }
        const nowHolding = head < queue.length;
        if (head > from || nowHolding !== holding) emit(from, nowHolding);
        if (!nowHolding) {
          queue = [];
          head = 0;
        }
        holding = nowHolding;
        pumping = false;
        if (done && !holding) subscriber.complete();
      };

      const reports = progress$.subscribe((p) => {
        const n = p.answered - answered;
        if (n > 0) {
          const size = (p.bytes - bytes) / n;
          estimate = size > estimate ? size : estimate - (estimate - size) * Math.min(1, n / 16);
        }
        answered = p.answered;
        bytes = p.bytes;
        unread = p.unread;
        if (holding) pump();
      });
      const input = source.subscribe({
        next(batch) {
          if (queue.length === 0) queue = batch;
          else for (const item of batch) queue.push(item);
          pump();
        },
        error: (err: unknown) => subscriber.error(err),
        complete() {
          done = true;
          if (!holding && !pumping) subscriber.complete();
        },
      });
      return () => {
        input.unsubscribe();
        reports.unsubscribe();
      };
    });
}
