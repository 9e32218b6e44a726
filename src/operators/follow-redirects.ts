import { asyncScheduler, map, mergeMap, of, timer, type Observable, type OperatorFunction, type SchedulerLike } from 'rxjs';
import type { Redirect } from '../routing/redirect.js';

/** A request a cluster node redirected: the `count`-th redirect of that request. */
export interface Redirected<A> {
  attempt: A;
  redirect: Redirect;
  /** the node's reply (the MOVED, ASK, TRYAGAIN or CLUSTERDOWN error) */
  frame: Buffer;
  /** 1 for the first redirect of this request */
  count: number;
}

/** What to do with a redirected request. */
export type RedirectStep<A> =
  /** send it again: to `redirect`'s node for MOVED (after updating the map) and ASK (after ASKING), else to the slot's owner */
  | { kind: 'retry'; attempt: A; redirect: Redirect }
  /** answer the client with `frame` */
  | { kind: 'give-up'; attempt: A; frame: Buffer };

export interface FollowRedirectsOptions {
  /** redirects one request may follow; one more ends it with an error */
  maxRedirects: number;
  /** first wait before retrying after TRYAGAIN (a multi-key request during a slot migration), ms; doubled each time */
  tryAgainDelayMs: number;
  /** first wait before retrying after CLUSTERDOWN, ms; doubled each time */
  clusterDownDelayMs: number;
  /** builds the error that ends a request caught in a MOVED/ASK loop */
  tooMany: (r: Redirected<unknown>) => Buffer;
  scheduler?: SchedulerLike;
}

/**
 * Decides, for each redirected request, whether and when it is sent again.
 *
 * MOVED and ASK are retried at once; TRYAGAIN and CLUSTERDOWN after a wait that doubles with
 * each redirect of the same request. A request redirected more than `maxRedirects` times ends:
 * a TRYAGAIN or CLUSTERDOWN reaches the client as the node said it; a MOVED or ASK loop becomes
 * the `tooMany` error (a MOVED passed on would send a cluster-aware client around the proxy).
 * Waits run side by side; one slow retry holds up no other request.
 *
 *   in:  -m-t-c-M--     maxRedirects 1; tryAgainDelayMs 2, clusterDownDelayMs 3; M is a 2nd redirect
 *   out: -m---t-Xc-     (m, t, c: retry; X: give-up)
 */
export function followRedirects<A>(options: FollowRedirectsOptions): OperatorFunction<Redirected<A>, RedirectStep<A>> {
  const { maxRedirects, tryAgainDelayMs, clusterDownDelayMs, tooMany, scheduler = asyncScheduler } = options;
  return mergeMap((r: Redirected<A>): Observable<RedirectStep<A>> => {
    const { attempt, redirect } = r;
    if (r.count > maxRedirects) {
      const immediate = redirect.kind === 'moved' || redirect.kind === 'ask';
      return of({ kind: 'give-up', attempt, frame: immediate ? tooMany(r) : r.frame });
    }
    const retry: RedirectStep<A> = { kind: 'retry', attempt, redirect };
    if (redirect.kind === 'moved' || redirect.kind === 'ask') return of(retry);
    const base = redirect.kind === 'tryagain' ? tryAgainDelayMs : clusterDownDelayMs;
    return timer(base * 2 ** (r.count - 1), scheduler).pipe(map(() => retry));
  });
}
