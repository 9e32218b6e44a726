import { Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { Fifo } from '../util/fifo.js';

/** What happens to the read requests of a cluster that may get a backup request. */
export type HedgeEvent<T> =
  /** request `id` went to its master */
  | { kind: 'sent'; id: number }
  /**
   * an answer to request `id`: from its master (`primary`) or from the replica that got the
   * backup; `ok` false for an answer that is no answer (a lost connection, a redirect, a
   * replica that is loading): the other side's answer is then awaited
   */
  | { kind: 'answered'; id: number; from: 'primary' | 'backup'; ok: boolean; value: T };

export type HedgeAction<T> =
  /** send the backup of request `id` to a replica now */
  | { kind: 'backup'; id: number }
  /** a backup was due, but the budget is spent: none is sent (counted) */
  | { kind: 'exhausted'; id: number }
  /** the answer the client gets */
  | { kind: 'deliver'; id: number; from: 'primary' | 'backup'; value: T };

export interface HedgeOptions {
  /** a fixed threshold, ms (`trigger_slow_ms`); unset: `multiplier` times the recent master latency */
  triggerMs?: number;
  multiplier: number;
  /** the threshold never goes below this, ms (a burst of very fast answers must not hedge everything) */
  minMs: number;
  /** backups allowed, in percent of requests (a token bucket) */
  budgetPercent: number;
  /** the most backups the bucket holds (a burst after a quiet time); default 10 */
  burst?: number;
  scheduler: SchedulerLike;
}

interface Race<T> {
  id: number;
  sentAt: number;
  backup: boolean;
  settled: boolean;
  primaryDone: boolean;
  backupDone: boolean;
  /** a failed answer kept while the other side may still answer */
  failed?: { from: 'primary' | 'backup'; value: T };
}

/** weight of the newest master latency in the moving average */
const EWMA_WEIGHT = 0.1;

/**
 * Backup ("hedged") requests for reads: a read that its master has not answered within the
 * threshold is sent to a replica as well, and the first real answer wins; the other is dropped
 * when it comes (it must still be read off its connection, which keeps its FIFO order).
 *
 * The threshold is `triggerMs`, or `multiplier` times a moving average of the masters' recent
 * answer times (never below `minMs`): it follows the latency of now, not of the process's whole
 * life. Backups are limited to `budgetPercent` of the requests (a token bucket), so a slow
 * cluster is not sent twice the load. One timer for all requests: the races wait in send order,
 * and the timer is armed for the oldest one's deadline only.
 *
 *   events:  s----a-         s: sent; a: the master answers at 5; threshold 2
 *   actions: --b--d-         b: backup at 2; d: the master's answer delivered (the replica lost)
 */
export function hedgeRequests<T>(options: HedgeOptions | (() => HedgeOptions)): OperatorFunction<HedgeEvent<T>, HedgeAction<T>> {
  // options may be a function: a reload changes them for the races to come
  const opts = typeof options === 'function' ? options : () => options;
  const { scheduler } = opts();
  return (source) =>
    new Observable<HedgeAction<T>>((subscriber) => {
      const races = new Map<number, Race<T>>();
      const waiting = new Fifo<Race<T>>(64);
      let timer: Subscription | undefined;
      /** when the armed timer fires */
      let timerDue = Infinity;
      let ewma = -1;
      let tokens = opts().burst ?? 10;

      const threshold = (): number => {
        const { triggerMs, multiplier, minMs } = opts();
        return triggerMs ?? (ewma < 0 ? Infinity : Math.max(minMs, multiplier * ewma));
      };

      /** backups for the races past their deadline; the timer for the next one */
      const check = (): void => {
        timer = undefined;
        timerDue = Infinity;
        const now = scheduler.now();
        const limit = threshold();
        for (let r = waiting.peek(); r !== undefined; r = waiting.peek()) {
          if (r.settled || r.backup) {
            waiting.shift();
            continue;
          }
          const due = r.sentAt + limit;
          if (due > now) {
            timer = scheduler.schedule(check, due - now);
            timerDue = due;
            return;
          }
          waiting.shift();
          if (tokens >= 1) {
            tokens -= 1;
            r.backup = true;
            subscriber.next({ kind: 'backup', id: r.id });
          } else {
            subscriber.next({ kind: 'exhausted', id: r.id });
          }
        }
      };

      /**
       * the timer follows the threshold: when it went down (fast answers after a slow spell), the
       * oldest waiting race may be due before the armed timer fires
       */
      const rearm = (): void => {
        const head = waiting.peek();
        if (head === undefined || threshold() === Infinity) return;
        if (timer !== undefined && head.sentAt + threshold() >= timerDue) return;
        timer?.unsubscribe();
        check();
      };

      const settle = (r: Race<T>, from: 'primary' | 'backup', value: T): void => {
        r.settled = true;
        subscriber.next({ kind: 'deliver', id: r.id, from, value });
      };

      const input = source.subscribe({
        next: (e) => {
          if (e.kind === 'sent') {
            const r: Race<T> = { id: e.id, sentAt: scheduler.now(), backup: false, settled: false, primaryDone: false, backupDone: false };
            races.set(e.id, r);
            waiting.push(r);
            const { burst = 10, budgetPercent } = opts();
            tokens = Math.min(burst, tokens + budgetPercent / 100);
            rearm();
            return;
          }
          const r = races.get(e.id);
          if (r === undefined) return;
          if (e.from === 'primary') {
            r.primaryDone = true;
            // (an answer slower than a replica's that already won tells of a stall, not of the
            // usual latency: it would lift the threshold over the next stall)
            if (e.ok && !(r.settled && r.backup)) {
              const ms = scheduler.now() - r.sentAt;
              ewma = ewma < 0 ? ms : ewma + EWMA_WEIGHT * (ms - ewma);
            }
          } else {
            r.backupDone = true;
          }
          if (!r.settled) {
            // the other side may still give a real answer: wait for it
            const otherPending = e.from === 'primary' ? r.backup && !r.backupDone : !r.primaryDone;
            if (e.ok) settle(r, e.from, e.value);
            else if (!otherPending) settle(r, r.failed?.from ?? e.from, r.failed?.value ?? e.value);
            else r.failed ??= { from: e.from, value: e.value };
          }
          if (r.primaryDone && (!r.backup || r.backupDone)) races.delete(r.id);
          // the first sample starts the clock for the races already waiting; a lower threshold brings it forward
          rearm();
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });

      return () => {
        input.unsubscribe();
        timer?.unsubscribe();
      };
    });
}
