import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PendingQueue } from '../../src/util/pending.js';

describe('PendingQueue', () => {
  it('gives back target, seq and sentAt oldest first, and the oldest sentAt', () => {
    const q = new PendingQueue<string>();
    assert.equal(q.shift(), false);
    assert.equal(q.oldestSentAt(), undefined);
    q.push('a', 1, 10);
    q.push('b', 2, 11);
    assert.equal(q.length, 2);
    assert.equal(q.oldestSentAt(), 10);
    assert.equal(q.shift(), true);
    assert.deepEqual([q.target, q.seq, q.sentAt], ['a', 1, 10]);
    assert.equal(q.oldestSentAt(), 11);
    assert.equal(q.shift(), true);
    assert.deepEqual([q.target, q.seq, q.sentAt], ['b', 2, 11]);
    assert.equal(q.shift(), false);
    assert.equal(q.length, 0);
  });

  it('property: any mix of pushes and shifts (wrapping and growing past its capacity) behaves as an array queue', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(-1), fc.nat(1000)), { maxLength: 400 }), (ops) => {
        const q = new PendingQueue<number>(16);
        const model: number[] = [];
        for (const op of ops) {
          if (op < 0) {
            const want = model.shift();
            assert.equal(q.shift(), want !== undefined);
            if (want !== undefined) assert.deepEqual([q.target, q.seq, q.sentAt], [want, want + 1, want + 2]);
          } else {
            q.push(op, op + 1, op + 2);
            model.push(op);
          }
          assert.equal(q.length, model.length);
          assert.equal(q.oldestSentAt(), model.length === 0 ? undefined : model[0] + 2);
        }
      }),
      { numRuns: 300 },
    );
  });
});
