import { describe, it } from 'node:test';
import { tap } from 'rxjs';
import { admitRequests, Lane, REPLAN, type Admitted, type Progress } from '../../src/operators/admit-requests.js';
import { testScheduler } from './helpers.js';

// items are letters: a b (shared, RESP2), g (shared of the current protocol), B (blocking:
// exclusive), L (answered by the proxy), H (HELLO 3: any, and re-plans), t (transaction)
const lanes: Record<string, number> = { a: Lane.shared2, b: Lane.shared2, B: Lane.exclusive, L: Lane.any, H: Lane.any | REPLAN, t: Lane.transaction | REPLAN };
const opts = (over: Partial<{ maxPendingRequests: number; maxPendingBytes: number }> = {}, proto = { v: 2 }) => ({
  laneOf: (x: string) => (x === 'g' ? (proto.v === 3 ? Lane.shared3 : Lane.shared2) : lanes[x]),
  maxPendingRequests: over.maxPendingRequests ?? 100,
  maxPendingBytes: over.maxPendingBytes ?? 1 << 20,
});
const adm = (items: string, holding: boolean): Admitted<string> => ({ items: [...items], holding });
const p = (answered: number, bytes = answered * 10, unread = 0): Progress => ({ answered, bytes, unread });

describe('admitRequests', () => {
  it('a request that changes lane waits for every earlier answer, and the later ones wait for it', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x------y-|', { x: [...'abBa'], y: [...'b'] });
      const progress = hot('---q-r-----', { q: p(2), r: p(3) });
      expectObservable(batches.pipe(admitRequests(progress, opts()))).toBe('-u-v-w--k-|', {
        u: adm('ab', true),
        v: adm('B', true),
        w: adm('a', false),
        k: adm('b', false),
      });
    });
  });

  it('requests of one lane, and those the proxy answers, go at once', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x-y-|', { x: [...'abLa'], y: [...'LLb'] });
      expectObservable(batches.pipe(admitRequests(hot('-'), opts()))).toBe('-u-v-|', { u: adm('abLa', false), v: adm('LLb', false) });
    });
  });

  it('two blocking commands in a row: the second waits for the first', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x---', { x: [...'BB'] });
      const progress = hot('---q-', { q: p(1) });
      expectObservable(batches.pipe(admitRequests(progress, opts()))).toBe('-u-v-', { u: adm('B', true), v: adm('B', false) });
    });
  });

  it('a request that re-plans is dispatched before the next is planned (HELLO 3 moves the next GET to another lane)', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const proto = { v: 2 };
      const batches = cold('-x---', { x: [...'aHg'] });
      const progress = hot('------q-', { q: p(2) });
      const out = batches.pipe(
        admitRequests(progress, opts({}, proto)),
        tap(({ items }) => {
          if (items.includes('H')) proto.v = 3;
        }),
      );
      expectObservable(out).toBe('-(uv)-q-', { u: adm('aH', true), v: adm('', true), q: adm('g', false) });
    });
  });

  it('flow control: at most maxPendingRequests unanswered', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x------', { x: [...'aaaaa'] });
      const progress = hot('---q-r--', { q: p(1), r: p(3) });
      expectObservable(batches.pipe(admitRequests(progress, opts({ maxPendingRequests: 2 })))).toBe('-u-v-w--', {
        u: adm('aa', true),
        v: adm('a', true),
        w: adm('aa', false),
      });
    });
  });

  it('flow control: the bounds are read at each decision, so a reload that changes them applies to a client already connected', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const bounds = opts({ maxPendingRequests: 2 });
      const batches = cold('-x-------', { x: [...'aaaaaa'] });
      // the report at frame 3 answers 1; then the bound goes up to 4 (a reload) before the next one
      const progress = hot('---q--r--', { q: p(1), r: p(2) });
      const out = batches.pipe(
        admitRequests(
          progress.pipe(
            tap((x) => {
              if (x.answered === 2) bounds.maxPendingRequests = 4;
            }),
          ),
          bounds,
        ),
      );
      expectObservable(out).toBe('-u-v--w--', { u: adm('aa', true), v: adm('a', true), w: adm('aaa', false) });
    });
  });

  it('flow control: a client with maxPendingBytes unread gets nothing more until it reads', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x-y------', { x: [...'a'], y: [...'bb'] });
      // a answered (10 bytes) but 150 bytes are unread; then the client reads them
      const progress = hot('--q----r--', { q: p(1, 10, 150), r: p(1, 10, 0) });
      expectObservable(batches.pipe(admitRequests(progress, opts({ maxPendingBytes: 100 })))).toBe('-u-v---w--', {
        u: adm('a', false),
        v: adm('', true),
        w: adm('bb', false),
      });
    });
  });

  it('flow control: unanswered requests count at the recent reply size (large replies: fewer in flight)', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      // maxPendingBytes 800: before any reply, 64 may be in flight (the initial window)
      const batches = cold('-x---y----', { x: [...'aaaaaaaaaaaa'], y: [...'aa'] });
      // 2 replies of 200 bytes, all read: the estimate is 200, so 800 / 200 = 4 in flight at most:
      // with 10 unanswered nothing goes; with 2 unanswered, 2 more
      const progress = hot('---q---r--', { q: p(2, 400, 0), r: p(10, 2000, 0) });
      expectObservable(batches.pipe(admitRequests(progress, opts({ maxPendingBytes: 800 })))).toBe('-u---v-w--', {
        u: adm('aaaaaaaaaaaa', false),
        v: adm('', true),
        w: adm('aa', false),
      });
    });
  });

  it('flow control: a new client pipelining more than the initial window gets 64 in flight until its replies are seen', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x---', { x: Array.from({ length: 70 }, () => 'a') });
      const progress = hot('---q-', { q: p(64, 64 * 10, 0) });
      expectObservable(batches.pipe(admitRequests(progress, opts({ maxPendingBytes: 6400 })))).toBe('-u-v-', {
        u: { items: Array.from({ length: 64 }, () => 'a'), holding: true },
        v: adm('aaaaaa', false),
      });
    });
  });

  it('a single request always goes when nothing is pending, even past the byte bound', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-x---y-', { x: [...'a'], y: [...'a'] });
      const progress = hot('---q---', { q: p(1, 5000, 0) });
      expectObservable(batches.pipe(admitRequests(progress, opts({ maxPendingBytes: 100 })))).toBe('-u---v-', { u: adm('a', false), v: adm('a', false) });
    });
  });

  it('completes only once the requests held at the end of the input have gone', () => {
    testScheduler().run(({ cold, hot, expectObservable }) => {
      const batches = cold('-(x|)', { x: [...'aB'] });
      const progress = hot('----q', { q: p(1) });
      expectObservable(batches.pipe(admitRequests(progress, opts()))).toBe('-u--(v|)', { u: adm('a', true), v: adm('B', false) });
    });
  });

  it('unsubscribing mid-way leaves the input and the progress reports', () => {
    testScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const batches = hot('-x---x', { x: [...'aB'] });
      const progress = hot<Progress>('------');
      expectObservable(batches.pipe(admitRequests(progress, opts())), '^--!').toBe('-u--', { u: adm('a', true) });
      expectSubscriptions(batches.subscriptions).toBe('^--!');
      expectSubscriptions(progress.subscriptions).toBe('^--!');
    });
  });
});
