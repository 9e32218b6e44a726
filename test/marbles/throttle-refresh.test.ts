import { describe, it } from 'node:test';
import { defer, of, throwError } from 'rxjs';
import { throttleRefresh } from '../../src/operators/throttle-refresh.js';
import { testScheduler } from './helpers.js';

describe('throttleRefresh', () => {
  it('starts a fetch at the first trigger and folds the triggers during it into one more, at the gap', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const triggers = hot('-a-bc-------d---|');
      const fetch = cold('  --(x|)');
      expectObservable(triggers.pipe(throttleRefresh({ minGapMs: 4, scheduler: ts, fetch: () => fetch }))).toBe('---x---x------x-|');
      expectSubscriptions(fetch.subscriptions).toBe(['-^-!', '-----^-!', '------------^-!']);
    });
  });

  it('never runs two fetches at once, however slow a fetch is', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const triggers = hot('ab-c-d------|');
      const fetch = cold('  -----(x|)');
      expectObservable(triggers.pipe(throttleRefresh({ minGapMs: 2, scheduler: ts, fetch: () => fetch }))).toBe('-----x----x-|');
      expectSubscriptions(fetch.subscriptions).toBe(['^----!', '-----^----!']);
    });
  });

  it('waits out the gap after a quick fetch: a burst of triggers gives one fetch per gap', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      let n = 0;
      const fetch = () => defer(() => of(++n));
      const triggers = hot('aaaaaaaaaaa|');
      expectObservable(triggers.pipe(throttleRefresh({ minGapMs: 5, scheduler: ts, fetch }))).toBe('1----2----3|', { 1: 1, 2: 2, 3: 3 });
    });
  });

  it('a fetch that fails counts as done; the next trigger fetches again', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable }) => {
      let calls = 0;
      const ok = cold('-(v|)');
      const fetch = () => (++calls === 1 ? throwError(() => new Error('no node answered')) : ok);
      expectObservable(hot('-a--b---|').pipe(throttleRefresh({ minGapMs: 1, scheduler: ts, fetch }))).toBe('-----v--|');
    });
  });

  it('emits everything a fetch emits, and completes after the fetch a last trigger asked for', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable }) => {
      const fetch = cold('-x-(y|)');
      expectObservable(hot('a-b|').pipe(throttleRefresh({ minGapMs: 0, scheduler: ts, fetch: () => fetch }))).toBe('-x-yx-(y|)');
    });
  });

  it('cancels the running fetch and the gap timer on unsubscribe', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const fetch = cold('---(x|)');
      const triggers = hot('a-b--------');
      expectObservable(triggers.pipe(throttleRefresh({ minGapMs: 10, scheduler: ts, fetch: () => fetch })), '^-----!').toBe('---x--');
      expectSubscriptions(fetch.subscriptions).toBe('^--!');
    });
  });
});
