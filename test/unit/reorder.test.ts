import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ReorderBuffer } from '../../src/util/reorder.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('ReorderBuffer', () => {
  it('releases in request order whatever the arrival order, and counts what it holds', () => {
    const out: string[] = [];
    const r = new ReorderBuffer((v) => out.push(v.toString()));
    r.put(1, b('bb'));
    assert.deepEqual(out, []);
    assert.equal(r.held, 1);
    assert.equal(r.heldBytes, 2);
    r.put(0, b('a'));
    assert.deepEqual(out, ['a', 'bb']);
    r.put(3, b('d'));
    r.put(2, b('c'));
    assert.deepEqual(out, ['a', 'bb', 'c', 'd']);
    assert.equal(r.next, 4);
    assert.equal(r.held, 0);
    assert.equal(r.heldBytes, 0);
  });

  it('ignores a second reply to a number already released or held', () => {
    const out: string[] = [];
    const r = new ReorderBuffer((v) => out.push(v.toString()));
    r.put(0, b('a'));
    r.put(0, b('x'));
    r.put(2, b('c'));
    r.put(2, b('y'));
    r.put(1, b('b'));
    assert.deepEqual(out, ['a', 'b', 'c']);
  });

  it('any permutation of up to 2000 replies (far beyond the ring it starts with) comes out in order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2000 }).chain((n) => fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n })), (perm) => {
        const out: number[] = [];
        const r = new ReorderBuffer((v) => out.push(v.readUInt32LE(0)));
        for (const s of perm) {
          const v = Buffer.alloc(4);
          v.writeUInt32LE(s);
          r.put(s, v);
        }
        assert.deepEqual(out, [...perm.keys()]);
        assert.equal(r.heldBytes, 0);
      }),
      { numRuns: 60 },
    );
  });
});
