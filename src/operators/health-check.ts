import { Observable, Subscription, type OperatorFunction, type SchedulerLike } from 'rxjs';

/** The answer to one health probe (a PING): `ok`, or why not. */
export interface PingOutcome {
  ok: boolean;
  /** why the probe failed ("connect ECONNREFUSED ...", "-LOADING ...", "no answer in 1000 ms") */
  detail?: string;
}

/** A change of a server's service state; nothing is emitted while it stays the same. */
export type HealthEvent =
  /** `failures` consecutive failures reached the limit; `reason` is the last one */
  | { type: 'eject'; failures: number; reason: string }
  /** a probe succeeded while the server was out; `failures` is how many had failed in a row before it */
  | { type: 'restore'; failures: number };

export interface HealthCheckOptions {
  /** consecutive failures that take the server out of service; 0 (or less): checks are off */
  failLimit: number;
  /** pause between probes while the server is in service, ms (ping_succ_interval) */
  healthyIntervalMs: number;
  /** pause between probes while it is out of service, ms (ping_interval) */
  ejectedIntervalMs: number;
  /** a probe not answered after this long has failed, ms */
  timeoutMs: number;
  /** start out of service (a server that was ejected before a reload) */
  startEjected?: boolean;
  scheduler: SchedulerLike;
}

/**
 * Health checks for one server. Probes it with `ping()` on the scheduler, one probe at a time,
 * pausing `healthyIntervalMs` (in service) or `ejectedIntervalMs` (out) between the end of one
 * probe and the start of the next. Each value of the source is a failure seen elsewhere (a
 * `-LOADING` reply on the data path) and counts like a failed probe. After `failLimit`
 * consecutive failures the server is ejected, and it is restored by the first probe that
 * succeeds: one success is enough, whatever the count was (aster v1 restored only when the
 * count had gone above the limit, so a server that failed exactly `failLimit` times never
 * came back). A probe that errors, completes without an answer or outlasts `timeoutMs` fails.
 * Ejection cuts the pause: the next probe comes `ejectedIntervalMs` after it.
 *
 *   failLimit 2, healthy 3, ejected 5, each probe answers after 1 frame
 *   probes:  ---f---f-----f-----t---      (f fails, t succeeds)
 *   events:  --------e-----------r---     (eject at the 2nd failure, restore at the 1st success)
 */
export function healthCheck(options: HealthCheckOptions, ping: () => Observable<PingOutcome>): OperatorFunction<string, HealthEvent> {
  const { failLimit, healthyIntervalMs, ejectedIntervalMs, timeoutMs, scheduler } = options;
  return (failures$) =>
    new Observable<HealthEvent>((subscriber) => {
      let ejected = options.startEjected === true;
      let failures = 0;
      /** the pause before the next probe, or the probe in flight */
      let step: Subscription | null = null;
      let probing = false;

      const record = (ok: boolean, detail: string): void => {
        if (ok) {
          if (ejected) {
            ejected = false;
            subscriber.next({ type: 'restore', failures });
          }
          failures = 0;
          return;
        }
        failures++;
        if (!ejected && failures >= failLimit) {
          ejected = true;
          subscriber.next({ type: 'eject', failures, reason: detail });
        }
      };

      const wait = (): void => {
        step?.unsubscribe();
        if (subscriber.closed) return;
        step = scheduler.schedule(probe, ejected ? ejectedIntervalMs : healthyIntervalMs);
      };

      function probe(): void {
        const attempt = new Subscription();
        step = attempt;
        probing = true;
        let done = false;
        const finish = (ok: boolean, detail: string): void => {
          if (done) return;
          done = true;
          probing = false;
          attempt.unsubscribe();
          record(ok, detail);
          wait();
        };
        attempt.add(scheduler.schedule(() => finish(false, `no answer in ${timeoutMs} ms`), timeoutMs));
        const failed = (err: unknown): void => finish(false, err instanceof Error ? err.message : String(err));
        try {
          // a probe that answers synchronously has finished before this add: the add then tears it down at once
          attempt.add(
            ping().subscribe({
              next: (o) => finish(o.ok, o.detail ?? (o.ok ? 'ok' : 'failed')),
              error: failed,
              complete: () => finish(false, 'closed without an answer'),
            }),
          );
        } catch (err) {
          failed(err);
        }
      }

      if (failLimit <= 0) {
        // checks off: nothing is probed and nothing is counted
        return failures$.subscribe({ error: (err: unknown) => subscriber.error(err), complete: () => subscriber.complete() });
      }
      const reports = failures$.subscribe({
        next: (reason) => {
          if (ejected) return;
          record(false, reason);
          // ejected now: the next probe waits the ejected pause from here (one in flight finishes)
          if (ejected && !probing) wait();
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
      wait();
      return () => {
        reports.unsubscribe();
        step?.unsubscribe();
        step = null;
      };
    });
}
