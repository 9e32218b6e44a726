import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { map } from 'rxjs';
import { followRedirects, type Redirected, type RedirectStep } from '../../src/operators/follow-redirects.js';
import { parseRedirect } from '../../src/routing/redirect.js';
import { errorFrame } from '../../src/protocol/encode.js';
import { testScheduler } from './helpers.js';

const frames = {
  m: errorFrame('MOVED 3999 127.0.0.1:7002'),
  a: errorFrame('ASK 3999 127.0.0.1:7003'),
  t: errorFrame('TRYAGAIN Multiple keys request during rehashing of slot'),
  c: errorFrame('CLUSTERDOWN The cluster is down'),
};
const TOO_MANY = errorFrame('ERR too many redirects');

/** marble letter -> redirect: lower case is a request's first redirect, upper case its third */
function redirected(letter: string): Redirected<string> {
  const key = letter.toLowerCase() as keyof typeof frames;
  const frame = frames[key];
  const redirect = parseRedirect(frame);
  assert.ok(redirect !== null);
  return { attempt: letter, redirect, frame, count: letter === key ? 1 : 3 };
}

/** a step as a marble letter: the attempt for a retry, X for a too-many error, the original frame's letter for a passed-on one */
function letter(step: RedirectStep<string>): string {
  if (step.kind === 'retry') return step.attempt;
  if (step.frame.equals(TOO_MANY)) return 'X';
  const passed = Object.entries(frames).find(([, f]) => f.equals(step.frame));
  return passed === undefined ? '?' : `${passed[0]}!`;
}

const options = (ts: ReturnType<typeof testScheduler>) => ({ maxRedirects: 2, tryAgainDelayMs: 2, clusterDownDelayMs: 3, tooMany: () => TOO_MANY, scheduler: ts });

describe('followRedirects', () => {
  it('retries MOVED and ASK at once, TRYAGAIN and CLUSTERDOWN after their waits, side by side', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('-m-a-t-c-------|').pipe(map(redirected));
      expectObservable(input.pipe(followRedirects(options(ts)), map(letter))).toBe('-m-a---t--c----|');
    });
  });

  it('doubles the wait with each redirect of the same request', () => {
    const ts = testScheduler();
    ts.run(({ cold, expectObservable }) => {
      const mk = (count: number): Redirected<string> => ({ ...redirected('t'), attempt: String(count), count });
      const input = cold('(ab)--|', { a: mk(1), b: mk(2) });
      expectObservable(input.pipe(followRedirects({ ...options(ts), tryAgainDelayMs: 1 }), map(letter))).toBe('-12---|', { 1: '1', 2: '2' });
    });
  });

  it('ends a request after maxRedirects: a MOVED or ASK loop with the too-many error, TRYAGAIN and CLUSTERDOWN as the node said', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('-M-A-T-C-|').pipe(map(redirected));
      expectObservable(input.pipe(followRedirects(options(ts)), map(letter))).toBe('-X-X-s-d-|', { X: 'X', s: 't!', d: 'c!' });
    });
  });

  it('cancels waiting retries on unsubscribe', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const input = hot('-c-m---').pipe(map(redirected));
      expectObservable(input.pipe(followRedirects(options(ts)), map(letter)), '^---!').toBe('---m');
    });
  });
});
