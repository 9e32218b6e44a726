import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

export interface ThrottleRefreshOptions<R> {
  /** least time between the starts of two fetches, ms */
  minGapMs: number;
  /** one fetch of the topology; emits what it learnt (or nothing) and completes */
  fetch: () => Observable<R>;
  scheduler?: SchedulerLike;
}

/**
 * Turns refresh triggers (a timer, MOVED replies, lost connections) into topology fetches that
 * never overlap and start at least `minGapMs` apart.
 *
 * A trigger while nothing runs starts a fetch at once, or when the gap since the last start has
 * passed. Triggers that arrive while a fetch runs or waits for its gap fold into one more
 * fetch after it: never dropped (a MOVED seen during a fetch may describe a change the running
 * fetch missed), never queued one per trigger (a thousand clients meeting the same dead master
 * give one fetch per gap, not a thousand). A fetch that errors counts as done.
 *
 *   triggers: -a-bc-------d---|    minGapMs 4, each fetch takes 2 frames
 *   fetches:  -^-!-^-!----^-!      b and c during the first: one more, at the gap
 *   output:   ---x---x------x-|
 */
export function throttleRefresh<T, R>(options: ThrottleRefreshOptions<R>): OperatorFunction<T, R> {
  const { minGapMs, fetch, scheduler = asyncScheduler } = options;
  return (source) =>
    new Observable<R>((subscriber) => {
      let busy = false; // a fetch runs
      let wanted = false; // a trigger came while busy or waiting: one more fetch
      let lastStart = -Infinity;
      let gapTimer: Subscription | undefined;
      let running: Subscription | undefined;
      let sourceDone = false;

      const finishIfDone = (): void => {
        if (sourceDone && !busy && !wanted && gapTimer === undefined) subscriber.complete();
      };

      // a loop, not recursion: fetches that complete synchronously do not stack up
      const kick = (): void => {
        while (wanted && !busy && gapTimer === undefined && !subscriber.closed) {
          const wait = lastStart + minGapMs - scheduler.now();
          if (wait > 0) {
            gapTimer = scheduler.schedule(() => {
              gapTimer = undefined;
              kick();
            }, wait);
            return;
          }
          wanted = false;
          busy = true;
          lastStart = scheduler.now();
          let sync = true;
          const done = (): void => {
            busy = false;
            running = undefined;
            if (!sync) kick();
          };
          const sub = fetch().subscribe({ next: (r) => subscriber.next(r), error: done, complete: done });
          sync = false;
          if (busy) running = sub;
        }
        finishIfDone();
      };

      const input = source.subscribe({
        next: () => {
          wanted = true;
          kick();
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => {
          sourceDone = true;
          finishIfDone();
        },
      });

      return () => {
        input.unsubscribe();
        running?.unsubscribe();
        gapTimer?.unsubscribe();
      };
    });
}
