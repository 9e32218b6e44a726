import { Observable, type OperatorFunction, type SchedulerLike } from 'rxjs';

export interface OverdueOptions {
  /** how long a request may wait for its reply, ms */
  timeoutMs: number;
  /** when the oldest request still waiting was sent (scheduler time), or undefined if none */
  oldestSentAt: () => number | undefined;
  scheduler: SchedulerLike;
}

/**
 * Request timeouts without a timer per request. Requests on one backend connection are
 * answered in the order they were sent, so the oldest one waiting carries the earliest
 * deadline; on each tick of the source, this emits the age of that request when it is past
 * `timeoutMs`. One ticker serves every request of the connection.
 *
 *   ticks:   --t--t--t--t--|     oldest sent at 0, timeout 7 (ticks at frames 2, 5, 8, 11)
 *   overdue: --------a--b--|     a = 8, b = 11 (the age at those ticks)
 */
export function overdue(options: OverdueOptions): OperatorFunction<unknown, number> {
  const { timeoutMs, oldestSentAt, scheduler } = options;
  return (source) =>
    new Observable<number>((subscriber) =>
      source.subscribe({
        next() {
          const sentAt = oldestSentAt();
          if (sentAt === undefined) return;
          const age = scheduler.now() - sentAt;
          if (age >= timeoutMs) subscriber.next(age);
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      }),
    );
}
