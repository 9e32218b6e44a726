import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthFailures } from '../../src/streams/auth-failures.js';

describe('AuthFailures', () => {
  it('answers the first three failures at once, then waits 100 ms doubling up to 5 s', () => {
    const f = new AuthFailures();
    const delays = Array.from({ length: 12 }, (_, i) => f.failed('10.0.0.1', 1000 + i));
    assert.deepEqual(delays, [0, 0, 0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it('counts each address on its own, forgets one on success or after a minute without failures', () => {
    const f = new AuthFailures();
    for (let i = 0; i < 5; i++) f.failed('a', i);
    assert.equal(f.failed('b', 10), 0);
    assert.equal(f.failed('a', 10), 400);
    f.succeeded('a');
    assert.equal(f.failed('a', 20), 0);
    for (let i = 0; i < 5; i++) f.failed('c', 100);
    assert.equal(f.failed('c', 100 + 61_000), 0, 'forgotten after a quiet minute');
  });

  it('remembers at most 10000 addresses', () => {
    const f = new AuthFailures();
    for (let i = 0; i < 10_050; i++) f.failed(`ip${i}`, 0);
    assert.equal(f.size, 10_000);
  });
});
