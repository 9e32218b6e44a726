import { describe, it } from 'node:test';
import { map } from 'rxjs';
import { retryPlacement, type PlacementEvent } from '../../src/operators/retry-placement.js';
import { testScheduler } from './helpers.js';

const events = { l: 'lost' as PlacementEvent, u: 'up' as PlacementEvent };

describe('retryPlacement', () => {
  it('retries after minDelayMs, doubles while losses go on, folds losses into a waiting retry, resets on up', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const out = hot('-l---l-l-u-l----', events).pipe(retryPlacement({ minDelayMs: 2, maxDelayMs: 8, scheduler: ts }), map(() => 'r'));
      expectObservable(out).toBe('---r-----r---r--');
    });
  });

  it('never waits longer than maxDelayMs', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      // each retry loses its connection again: waits 1, 2, then 3 and 3 (capped)
      const out = hot('l-l--l---l--', events).pipe(retryPlacement({ minDelayMs: 1, maxDelayMs: 3, scheduler: ts }), map(() => 'r'));
      expectObservable(out).toBe('-r--r---r---r');
    });
  });

  it('cancels a waiting retry on unsubscribe', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const out = hot('-l------', events).pipe(retryPlacement({ minDelayMs: 4, maxDelayMs: 8, scheduler: ts }), map(() => 'r'));
      expectObservable(out, '^--!').toBe('----');
    });
  });
});
