import { Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** What happens to a client's subscriber connections. */
export type PlacementEvent = 'lost' | 'up';

export interface RetryPlacementOptions {
  /** first wait after a lost connection, ms */
  minDelayMs: number;
  /** longest wait, ms */
  maxDelayMs: number;
  scheduler: SchedulerLike;
}

/**
 * When to place subscriptions again after their connection was lost (a backend restart, a
 * failover, a slot that moved): emits a retry after a wait that doubles while the retries keep
 * losing their connections, and goes back to `minDelayMs` once a connection comes up. Losses
 * while a retry is waiting fold into it.
 *
 *   events:  -l---l-l-u-l----      minDelayMs 2, maxDelayMs 8
 *   retries: ---r-----r---r--      waits 2, then 4 (the l at 7 folds in); u resets it: 2 again
 */
export function retryPlacement(options: RetryPlacementOptions): OperatorFunction<PlacementEvent, void> {
  const { minDelayMs, maxDelayMs, scheduler } = options;
  return (source) =>
    new Observable<void>((subscriber) => {
      let delay = minDelayMs;
      let timer: Subscription | undefined;
      const input = source.subscribe({
        next: (event) => {
          if (event === 'up') {
            delay = minDelayMs;
            return;
          }
          if (timer !== undefined) return;
          const wait = delay;
          delay = Math.min(maxDelayMs, delay * 2);
          timer = scheduler.schedule(() => {
            timer = undefined;
            subscriber.next();
          }, wait);
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
