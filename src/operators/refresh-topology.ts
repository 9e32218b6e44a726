import { filter, interval, map, merge, of, type Observable, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { throttleRefresh } from './throttle-refresh.js';

export interface RefreshTopologyOptions<R> {
  /** one fetch of the topology (see throttleRefresh) */
  fetch: () => Observable<R>;
  /** least time between the starts of two fetches, ms */
  minGapMs: number;
  /** the periodic refresh (`fetch_interval`), ms */
  periodMs: number;
  /** while `degraded()` holds, a refresh at least this often, ms */
  degradedEveryMs: number;
  /** slots without an owner, or a master that cannot be reached */
  degraded: () => boolean;
  scheduler: SchedulerLike;
}

/**
 * The topology stream of a cluster: what triggers a slot-map fetch, and the fetches.
 *
 * Triggers: the start, the events the source emits (a MOVED, a CLUSTERDOWN, a node found down,
 * a reload), every `periodMs`, and every `degradedEveryMs` while `degraded()` (until a failover
 * is over a dead master sends nothing; the map must be asked again until it shows the new
 * master). They all go through one `throttleRefresh`: never two fetches at once, at least
 * `minGapMs` apart, triggers during a fetch folded into one more.
 *
 *   events:   ---m-m------            minGapMs 2, periodMs 8, fetch takes 1 frame, never degraded
 *   fetches:  ^!-^!^!--^!             start; m; the folded m; the period
 *   output:   -v--v-v--v--
 */
export function refreshTopology<R>(options: RefreshTopologyOptions<R>): OperatorFunction<unknown, R> {
  const { fetch, minGapMs, periodMs, degradedEveryMs, degraded, scheduler } = options;
  return (events$) =>
    merge(
      of('start'),
      events$,
      interval(periodMs, scheduler).pipe(map(() => 'periodic')),
      interval(degradedEveryMs, scheduler).pipe(filter(() => degraded())),
    ).pipe(throttleRefresh({ minGapMs, fetch, scheduler }));
}
