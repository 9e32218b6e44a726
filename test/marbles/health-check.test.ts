import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EMPTY, NEVER, map, throwError, timer, type Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { healthCheck, type HealthCheckOptions, type HealthEvent, type PingOutcome } from '../../src/operators/health-check.js';
import { testScheduler } from './helpers.js';

const OK: PingOutcome = { ok: true };
const DOWN: PingOutcome = { ok: false, detail: 'connect ECONNREFUSED' };

/**
 * A scripted server: the n-th probe answers script[n] ('t' ok, 'f' failed; the last letter
 * repeats) after `latency` frames. `calls` records the frame of each probe.
 */
function scripted(ts: TestScheduler, script: string, latency = 1): { ping: () => Observable<PingOutcome>; calls: number[] } {
  const calls: number[] = [];
  let n = 0;
  const ping = (): Observable<PingOutcome> => {
    calls.push(ts.now());
    const answer = script[Math.min(n++, script.length - 1)] === 't' ? OK : DOWN;
    return timer(latency, ts).pipe(map(() => answer));
  };
  return { ping, calls };
}

const opts = (ts: TestScheduler, over: Partial<HealthCheckOptions> = {}): HealthCheckOptions => ({
  failLimit: 2,
  healthyIntervalMs: 3,
  ejectedIntervalMs: 10,
  timeoutMs: 5,
  scheduler: ts,
  ...over,
});

const eject = (failures: number, reason = 'connect ECONNREFUSED'): HealthEvent => ({ type: 'eject', failures, reason });
const restore = (failures: number): HealthEvent => ({ type: 'restore', failures });

describe('healthCheck', () => {
  it('ejects at exactly failLimit consecutive failures, then probes at the ejected interval', () => {
    const ts = testScheduler();
    const server = scripted(ts, 'f');
    ts.run(({ expectObservable }) => {
      //                 probes at 3, 7 (answers at 4, 8: the 2nd failure ejects), then 18 (ejected: 10 ms pause)
      expectObservable(NEVER.pipe(healthCheck(opts(ts), server.ping)), '^ 25ms !').toBe('8ms e', { e: eject(2) });
    });
    assert.deepEqual(server.calls, [3, 7, 18]);
  });

  it('restores after ONE successful probe when the failures stopped at exactly the limit', () => {
    // aster v1 restored a server only when its failure count had gone above the limit
    const ts = testScheduler();
    const server = scripted(ts, 'fft');
    ts.run(({ expectObservable }) => {
      expectObservable(NEVER.pipe(healthCheck(opts(ts), server.ping)), '^ 24ms !').toBe('8ms e 10ms r', { e: eject(2), r: restore(2) });
    });
    assert.deepEqual(server.calls, [3, 7, 18, 22]);
  });

  it('switches intervals: healthy pause while in service, ejected pause while out, and back', () => {
    const ts = testScheduler();
    const server = scripted(ts, 'ffftttff');
    ts.run(({ expectObservable }) => {
      // f@3 f@7 -> eject@8; f@18; t@29 -> restore@30; t@33 t@37; f@41 f@45 -> eject@46; next probe @56
      expectObservable(NEVER.pipe(healthCheck(opts(ts), server.ping)), '^ 59ms !').toBe('8ms e 21ms r 15ms e', {
        e: eject(2),
        r: restore(3),
      });
    });
    assert.deepEqual(server.calls, [3, 7, 18, 29, 33, 37, 41, 45, 56]);
  });

  it('a success in between resets the count: alternating failures never eject', () => {
    const ts = testScheduler();
    const calls: number[] = [];
    let n = 0;
    const ping = (): Observable<PingOutcome> => {
      calls.push(ts.now());
      return timer(1, ts).pipe(map(() => (n++ % 2 === 0 ? DOWN : OK)));
    };
    ts.run(({ expectObservable }) => {
      expectObservable(NEVER.pipe(healthCheck(opts(ts), ping)), '^ 29ms !').toBe('');
    });
    assert.deepEqual(calls, [3, 7, 11, 15, 19, 23, 27]);
  });

  it('a probe that outlasts timeoutMs fails, and is unsubscribed at the timeout', () => {
    const ts = testScheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const slow = cold<PingOutcome>('----------(a|)', { a: OK });
      // probe at 3 times out at 5; probe at 8 times out at 10: ejected
      expectObservable(NEVER.pipe(healthCheck(opts(ts, { timeoutMs: 2 }), () => slow)), '^ 15ms !').toBe('10ms e', {
        e: eject(2, 'no answer in 2 ms'),
      });
      expectSubscriptions(slow.subscriptions).toBe(['---^-!', '--------^-!']);
    });
  });

  it('a probe that errors or completes without an answer fails (synchronous probes too)', () => {
    const ts = testScheduler();
    let n = 0;
    const ping = (): Observable<PingOutcome> => (n++ === 0 ? throwError(() => new Error('read ECONNRESET')) : EMPTY);
    ts.run(({ expectObservable }) => {
      // sync failures at 3 and 6
      expectObservable(NEVER.pipe(healthCheck(opts(ts), ping)), '^ 10ms !').toBe('6ms e', { e: eject(2, 'closed without an answer') });
    });
    assert.equal(n, 2);
  });

  it('failures reported by the source (a -LOADING reply) count; ejection starts the ejected pause', () => {
    const ts = testScheduler();
    const server = scripted(ts, 't');
    ts.run(({ hot, expectObservable }) => {
      const reports = hot('--x-x-----------------', { x: '-LOADING reply' });
      // healthy pause 20: no probe before the reports eject at 4; probe at 4 + 6 = 10 succeeds at 11
      const out = reports.pipe(healthCheck(opts(ts, { healthyIntervalMs: 20, ejectedIntervalMs: 6 }), server.ping));
      expectObservable(out, '^ 25ms !').toBe('----e------r', { e: eject(2, '-LOADING reply'), r: restore(2) });
    });
    assert.deepEqual(server.calls, [10]);
  });

  it('reports while ejected change nothing', () => {
    const ts = testScheduler();
    const server = scripted(ts, 'f');
    ts.run(({ hot, expectObservable }) => {
      const reports = hot('--xxxx-x-', { x: '-BUSY reply' });
      // ejected at 3; the next probe is due at 13, after the end of this run
      const out = reports.pipe(healthCheck(opts(ts, { healthyIntervalMs: 20 }), server.ping));
      expectObservable(out, '^ 11ms !').toBe('---e', { e: eject(2, '-BUSY reply') });
    });
    assert.deepEqual(server.calls, []);
  });

  it('startEjected: the first probe comes after the ejected pause and restores on success', () => {
    const ts = testScheduler();
    const server = scripted(ts, 't');
    ts.run(({ expectObservable }) => {
      expectObservable(NEVER.pipe(healthCheck(opts(ts, { startEjected: true }), server.ping)), '^ 15ms !').toBe('11ms r', { r: restore(0) });
    });
    assert.deepEqual(server.calls, [10, 14]);
  });

  it('failLimit 0: checks off, nothing probed, source completion passes through', () => {
    const ts = testScheduler();
    const server = scripted(ts, 'f');
    ts.run(({ hot, expectObservable }) => {
      const reports = hot('--x-x--|', { x: '-LOADING reply' });
      expectObservable(reports.pipe(healthCheck(opts(ts, { failLimit: 0 }), server.ping))).toBe('-------|');
    });
    assert.deepEqual(server.calls, []);
  });

  it('completes with its source and stops probing', () => {
    const ts = testScheduler();
    const server = scripted(ts, 'f');
    ts.run(({ hot, expectObservable }) => {
      const reports = hot('-----|');
      expectObservable(reports.pipe(healthCheck(opts(ts), server.ping))).toBe('-----|');
    });
    assert.deepEqual(server.calls, [3]);
  });

  it('unsubscribing tears down the probe in flight and the source', () => {
    const ts = testScheduler();
    ts.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const slow = cold<PingOutcome>('----(a|)', { a: OK });
      const reports = hot<string>('--------');
      expectObservable(reports.pipe(healthCheck(opts(ts), () => slow)), '^----!').toBe('');
      expectSubscriptions(slow.subscriptions).toBe('---^-!');
      expectSubscriptions(reports.subscriptions).toBe('^----!');
    });
  });
});
