import { describe, it } from 'node:test';
import { defer, map, NEVER, of } from 'rxjs';
import { refreshTopology } from '../../src/operators/refresh-topology.js';
import type { ClusterNodeInfo } from '../../src/routing/cluster-nodes.js';
import { SlotMap } from '../../src/routing/slot-map.js';
import { testScheduler } from './helpers.js';

const master = (id: string, port: number, epoch: number, slots: Array<[number, number]>): ClusterNodeInfo => ({
  id,
  host: '127.0.0.1',
  port,
  addr: `127.0.0.1:${port}`,
  master: true,
  replicaOf: null,
  myself: false,
  failing: false,
  suspect: false,
  handshake: false,
  noaddr: false,
  configEpoch: epoch,
  connected: true,
  slots,
  migrating: [],
  importing: [],
});

describe('refreshTopology', () => {
  it('fetches at the start and every periodMs', () => {
    const ts = testScheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const fetch = cold('-(v|)');
      const out = NEVER.pipe(refreshTopology({ fetch: () => fetch, minGapMs: 1, periodMs: 5, degradedEveryMs: 1000, degraded: () => false, scheduler: ts }));
      expectObservable(out, '^-----------!').toBe('-v----v----v');
      expectSubscriptions(fetch.subscriptions).toBe(['^!', '-----^!', '----------^!']);
    });
  });

  it('unsubscribed during a fetch: the fetch is unsubscribed too, and nothing more is fetched', () => {
    const ts = testScheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const fetch = cold('----(v|)');
      const out = NEVER.pipe(refreshTopology({ fetch: () => fetch, minGapMs: 1, periodMs: 5, degradedEveryMs: 1000, degraded: () => false, scheduler: ts }));
      expectObservable(out, '^-!').toBe('---');
      expectSubscriptions(fetch.subscriptions).toBe('^-!');
    });
  });

  it('folds the events (MOVED, a node down) that come during a fetch into one more fetch', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const events = hot('-mmm------');
      const fetch = cold('---(v|)');
      const out = events.pipe(refreshTopology({ fetch: () => fetch, minGapMs: 1, periodMs: 1000, degradedEveryMs: 1000, degraded: () => false, scheduler: ts }));
      expectObservable(out, '^---------!').toBe('---v--v---');
      expectSubscriptions(fetch.subscriptions).toBe(['^--!', '---^--!']);
    });
  });

  it('keeps an event from a fetch at least minGapMs after the one before', () => {
    const ts = testScheduler();
    ts.run(({ hot, cold, expectObservable }) => {
      const events = hot('--m-----m---');
      const fetch = cold('(v|)');
      const out = events.pipe(refreshTopology({ fetch: () => fetch, minGapMs: 4, periodMs: 1000, degradedEveryMs: 1000, degraded: () => false, scheduler: ts }));
      expectObservable(out, '^-----------!').toBe('v---v---v---');
    });
  });

  it('asks again every degradedEveryMs while degraded, and stops once the map is whole', () => {
    const ts = testScheduler();
    ts.run(({ cold, expectObservable }) => {
      let degraded = true;
      let n = 0;
      const fetch = () =>
        defer(() => {
          if (++n >= 3) degraded = false; // the third view shows the promoted replica
          return cold('-(v|)');
        });
      const out = NEVER.pipe(refreshTopology({ fetch, minGapMs: 1, periodMs: 1000, degradedEveryMs: 2, degraded: () => degraded, scheduler: ts }));
      expectObservable(out, '^---------!').toBe('-v-v-v----');
    });
  });

  it('with the slot map behind it: a stale view (older config epoch) changes nothing, a fresher one does', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const views = [
        [master('a', 7000, 1, [[0, 16383]])], // the start
        [master('b', 7001, 2, [[0, 99]])], // a migration (b's epoch was bumped)
        [master('a', 7000, 1, [[0, 16383]])], // a node that has not heard of it yet
        [master('c', 7002, 3, [[0, 99]])], // a failover of b
      ];
      let n = 0;
      const slots = new SlotMap();
      const events = hot('--m--m--m--');
      const out = events.pipe(
        refreshTopology({ fetch: () => of(views[n++]), minGapMs: 1, periodMs: 1000, degradedEveryMs: 1000, degraded: () => false, scheduler: ts }),
        map((view) => {
          const r = slots.apply(view);
          return `${r.changed}/${r.stale}`;
        }),
      );
      expectObservable(out, '^----------!').toBe('a-b--c--d--', { a: '16384/0', b: '100/0', c: '0/100', d: '100/0' });
    });
  });
});
