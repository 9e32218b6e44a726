import { describe, it } from 'node:test';
import { overdue } from '../../src/operators/overdue.js';
import { testScheduler } from './helpers.js';

describe('overdue', () => {
  it('emits the age of the oldest request on each tick once it is past the timeout', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const ticks = hot('--t--t--t--t--|');
      const sentAt = 1; // the oldest request was sent at frame 1
      expectObservable(ticks.pipe(overdue({ timeoutMs: 7, oldestSentAt: () => sentAt, scheduler: ts }))).toBe('--------a--b--|', { a: 7, b: 10 });
    });
  });

  it('unsubscribes from the ticks when unsubscribed', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable, expectSubscriptions }) => {
      const ticks = hot('--t--t--t--t--|');
      expectObservable(ticks.pipe(overdue({ timeoutMs: 4, oldestSentAt: () => 0, scheduler: ts })), '^-------!').toBe('-----a--', { a: 5 });
      expectSubscriptions(ticks.subscriptions).toBe('^-------!');
    });
  });

  it('stays quiet while nothing is waiting', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const ticks = hot('--t--t--t--|');
      expectObservable(ticks.pipe(overdue({ timeoutMs: 1, oldestSentAt: () => undefined, scheduler: ts }))).toBe('-----------|');
    });
  });

  it('follows the queue: a reply that arrives in time removes the deadline', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable }) => {
      const queue: number[] = [0, 6]; // two requests, sent at frames 0 and 6
      cold('----x').subscribe(() => queue.shift()); // the first one is answered at frame 4
      const ticks = hot('---t---t---t---t--|');
      const out = ticks.pipe(overdue({ timeoutMs: 8, oldestSentAt: () => queue[0], scheduler: ts }));
      expectObservable(out).toBe('---------------a--|', { a: 9 });
    });
  });
});
