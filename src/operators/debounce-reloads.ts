import { asyncScheduler, debounceTime, Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

export interface DebounceReloadsOptions<T, R> {
  /** how long the triggers must stay quiet before a reload starts, ms */
  quietMs: number;
  /** runs one reload for the last trigger of a burst; completes when the reload is done */
  reload: (trigger: T) => Observable<R>;
  scheduler?: SchedulerLike;
}

/**
 * Turns bursts of reload triggers (file events, signals) into reloads that never overlap.
 *
 * A burst gives one reload, for its last trigger, once `quietMs` pass without another. While a
 * reload runs, the bursts that settle are folded into one pending reload, started when the
 * running one completes. Not `exhaustMap`: that would drop a change made after the running
 * reload read the file, and the proxy would serve a stale config until the next edit. Not
 * `concatMap`: that would queue one reload per settled burst, each rereading the same file.
 * At most one reload runs and at most one waits.
 *
 *   triggers: -a--b--c----|              quietMs 2, each reload takes 8 frames
 *   reload a: ---^-------!                b and c settle while a runs:
 *   reload c: -----------^-------!        one reload, for c, after a
 *   output:   -----------A-------(C|)
 */
export function debounceReloads<T, R>(options: DebounceReloadsOptions<T, R>): OperatorFunction<T, R> {
  const { quietMs, reload, scheduler = asyncScheduler } = options;
  return (source) =>
    new Observable<R>((subscriber) => {
      let pending: { trigger: T } | undefined;
      let running: Subscription | undefined;
      let busy = false;
      let sourceDone = false;

      // a loop, not recursion, so that reloads completing synchronously do not stack up
      const runNext = (): void => {
        while (pending !== undefined && !busy && !subscriber.closed) {
          const { trigger } = pending;
          pending = undefined;
          busy = true;
          let sync = true;
          const sub = reload(trigger).subscribe({
            next: (r) => subscriber.next(r),
            error: (err: unknown) => subscriber.error(err),
            complete: () => {
              busy = false;
              running = undefined;
              if (!sync) runNext();
            },
          });
          sync = false;
          if (busy) running = sub;
        }
        if (sourceDone && !busy && pending === undefined) subscriber.complete();
      };

      const input = source.pipe(debounceTime(quietMs, scheduler)).subscribe({
        next: (trigger) => {
          pending = { trigger };
          runNext();
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => {
          sourceDone = true;
          runNext();
        },
      });

      return () => {
        input.unsubscribe();
        running?.unsubscribe();
        pending = undefined;
      };
    });
}
