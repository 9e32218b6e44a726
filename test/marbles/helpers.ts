import assert from 'node:assert/strict';
import { TestScheduler } from 'rxjs/testing';

/** A TestScheduler whose failures are node:assert failures. */
export function testScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
}

export const b = (s: string): Buffer => Buffer.from(s, 'latin1');
