import { describe, it } from 'node:test';
import { map, tap } from 'rxjs';
import { hedgeRequests, type HedgeAction, type HedgeEvent } from '../../src/operators/hedge-requests.js';
import { testScheduler } from './helpers.js';

// events, one request (id 1) unless said: s sent; p/P the master answers ok / fails; r/R the replica answers ok / fails
const ev: Record<string, HedgeEvent<string>> = {
  s: { kind: 'sent', id: 1 },
  p: { kind: 'answered', id: 1, from: 'primary', ok: true, value: 'P' },
  P: { kind: 'answered', id: 1, from: 'primary', ok: false, value: 'Perr' },
  r: { kind: 'answered', id: 1, from: 'backup', ok: true, value: 'R' },
  R: { kind: 'answered', id: 1, from: 'backup', ok: false, value: 'Rerr' },
  t: { kind: 'sent', id: 2 },
  q: { kind: 'answered', id: 2, from: 'primary', ok: true, value: 'Q' },
};
/** actions as marble letters (see `vals`): B/C backup of request 1/2, X request 2's backup exhausted, p/r/e/f/q a delivered answer */
const letter = (a: HedgeAction<string>): string => (a.kind === 'backup' ? `b${a.id}` : a.kind === 'exhausted' ? `x${a.id}` : `${a.from}:${a.value}`);
const vals = { B: 'b1', C: 'b2', X: 'x2', p: 'primary:P', r: 'backup:R', e: 'primary:Perr', f: 'backup:Rerr', q: 'primary:Q' };

const run = (events: string, expected: string, opts: { triggerMs?: number; multiplier?: number; minMs?: number; budgetPercent?: number; burst?: number } = {}, unsub?: string) => {
  const ts = testScheduler();
  ts.run(({ hot, expectObservable }) => {
    const out = hot(events, ev).pipe(
      hedgeRequests<string>({ triggerMs: 2, multiplier: 2, minMs: 1, budgetPercent: 10, ...opts, scheduler: ts }),
      map(letter),
    );
    if (unsub === undefined) expectObservable(out).toBe(expected, vals);
    else expectObservable(out, unsub).toBe(expected, vals);
  });
};

describe('hedgeRequests', () => {
  it('primary first: the master answers within the threshold, no backup', () => run('s-p---|', '--p---|'));

  it('primary wins the race: a backup went out at the threshold, the master still answered first; the late replica answer is dropped', () =>
    run('s---p-r-|', '--B-p---|'));

  it('replica first: the backup answers before the master, which is dropped when it comes', () => run('s--r-p-|', '--Br---|'));

  it('primary error: a failed master answer waits for the replica in flight, whose answer wins', () => run('s--P-r--|', '--B--r--|'));

  it('a failed master answer before any backup is delivered at once', () => run('sP---|', '-e---|'));

  it('replica error: a failed backup waits for the master; both failing gives the first failure', () => {
    run('s--R-p--|', '--B--p--|');
    run('s--R-P--|', '--B--f--|');
  });

  it('budget exhausted: with the bucket empty, a due backup is counted and not sent', () =>
    run('st--pq-|', '--BXpq-|', { burst: 1, budgetPercent: 0 }));

  it('follows recent master latency without trigger_slow_ms: multiplier times the moving average', () =>
    // request 1 answered after 3 frames: threshold 6; request 2 sent at 5 gets its backup at 11
    run('s--p-t------q|', '---p-------Cq|', { triggerMs: undefined, multiplier: 2, minMs: 1 }));

  it('brings the timer forward when the threshold goes down (a reload, or fast answers after a slow spell)', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      let triggerMs = 20;
      const events = hot('s--t----|', ev).pipe(
        tap((e) => {
          if (e.kind === 'sent' && e.id === 2) triggerMs = 2; // lowered before request 2 arrives
        }),
      );
      const out = events.pipe(hedgeRequests<string>(() => ({ triggerMs, multiplier: 2, minMs: 1, budgetPercent: 10, scheduler: ts })), map(letter));
      // request 1's timer was armed for frame 20; at 3 it is due already, request 2 at 5
      expectObservable(out).toBe('---B-C--|', vals);
    });
  });

  it('unsubscribed mid-race: the timer is cancelled, no backup goes out', () => run('s-----', '------', {}, '^-!'));
});
