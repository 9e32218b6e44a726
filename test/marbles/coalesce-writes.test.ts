import { describe, it } from 'node:test';
import { map } from 'rxjs';
import { coalesceWrites } from '../../src/operators/coalesce-writes.js';
import { b, testScheduler } from './helpers.js';

describe('coalesceWrites', () => {
  it('joins everything emitted in one turn into one write', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable }) => {
      const bufs = hot('--a--(bcd)--e--|', { a: b('1'), b: b('2'), c: b('3'), d: b('4'), e: b('5') });
      expectObservable(bufs.pipe(coalesceWrites(ts), map(String))).toBe('--a--x------e--|', { a: '1', x: '234', e: '5' });
    });
  });

  it('flushes what is pending when the source completes', () => {
    const ts = testScheduler();
    ts.run(({ cold, expectObservable }) => {
      const bufs = cold('(ab|)', { a: b('x'), b: b('y') });
      expectObservable(bufs.pipe(coalesceWrites(ts), map(String))).toBe('(z|)', { z: 'xy' });
    });
  });

  it('drops pending writes and cancels the flush on unsubscribe', () => {
    const ts = testScheduler();
    ts.run(({ hot, expectObservable, expectSubscriptions }) => {
      const bufs = hot('--a--b-', { a: b('x'), b: b('y') });
      expectObservable(bufs.pipe(coalesceWrites(ts), map(String)), '^----!').toBe('--a---', { a: 'x' });
      expectSubscriptions(bufs.subscriptions).toBe('^----!');
    });
  });
});
