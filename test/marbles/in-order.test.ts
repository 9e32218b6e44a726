import { describe, it } from 'node:test';
import { inOrder } from '../../src/operators/in-order.js';
import { testScheduler } from './helpers.js';

describe('inOrder', () => {
  it('releases replies in request order, holding early ones', () => {
    testScheduler().run(({ hot, expectObservable }) => {
      const slots = hot('--b--a--d--c-----e--|', {
        a: { seq: 0, value: 'A' },
        b: { seq: 1, value: 'B' },
        c: { seq: 2, value: 'C' },
        d: { seq: 3, value: 'D' },
        e: { seq: 4, value: 'E' },
      });
      expectObservable(slots.pipe(inOrder())).toBe('-----(ab)--(cd)--e--|', { a: 'A', b: 'B', c: 'C', d: 'D', e: 'E' });
    });
  });

  it('passes replies that arrive in order straight through', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const slots = cold('ab(cd)|', { a: { seq: 0, value: 1 }, b: { seq: 1, value: 2 }, c: { seq: 2, value: 3 }, d: { seq: 3, value: 4 } });
      expectObservable(slots.pipe(inOrder())).toBe('ab(cd)|', { a: 1, b: 2, c: 3, d: 4 });
    });
  });

  it('ignores a duplicate of a reply already released', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const slots = cold('a-a-b|', { a: { seq: 0, value: 'A' }, b: { seq: 1, value: 'B' } });
      expectObservable(slots.pipe(inOrder())).toBe('a---b|', { a: 'A', b: 'B' });
    });
  });

  it('stops at unsubscribe, dropping held replies', () => {
    testScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const slots = hot('-b--a-', { a: { seq: 0, value: 'A' }, b: { seq: 1, value: 'B' } });
      expectObservable(slots.pipe(inOrder()), '^--!').toBe('----');
      expectSubscriptions(slots.subscriptions).toBe('^--!');
    });
  });
});
