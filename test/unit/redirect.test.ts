import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRedirect } from '../../src/routing/redirect.js';

const f = (s: string): Buffer => Buffer.from(s + '\r\n', 'latin1');

describe('parseRedirect', () => {
  it('reads MOVED and ASK with slot, host and port', () => {
    assert.deepEqual(parseRedirect(f('-MOVED 3999 127.0.0.1:6381')), { kind: 'moved', slot: 3999, host: '127.0.0.1', port: 6381 });
    assert.deepEqual(parseRedirect(f('-ASK 0 10.0.0.2:7000')), { kind: 'ask', slot: 0, host: '10.0.0.2', port: 7000 });
    assert.deepEqual(parseRedirect(f('-MOVED 16383 redis-1.example:6379')), { kind: 'moved', slot: 16383, host: 'redis-1.example', port: 6379 });
  });

  it('keeps an IPv6 host (no brackets: the port is after the last colon) and the empty "unknown endpoint" host', () => {
    assert.deepEqual(parseRedirect(f('-MOVED 12 ::1:7001')), { kind: 'moved', slot: 12, host: '::1', port: 7001 });
    assert.deepEqual(parseRedirect(f('-MOVED 12 :7001')), { kind: 'moved', slot: 12, host: '', port: 7001 });
  });

  it('knows TRYAGAIN and CLUSTERDOWN', () => {
    assert.equal(parseRedirect(f('-TRYAGAIN Multiple keys request during rehashing of slot'))?.kind, 'tryagain');
    assert.equal(parseRedirect(f('-CLUSTERDOWN Hash slot not served'))?.kind, 'clusterdown');
    assert.equal(parseRedirect(f('-CLUSTERDOWN The cluster is down'))?.kind, 'clusterdown');
  });

  it('is null for other replies and for redirects it cannot read (they go to the client as they are)', () => {
    for (const s of ['+OK', ':1', '$3\r\nfoo', '-ERR MOVED 1 a:1', '-MOVEDX 1 a:1', '-MOVED abc 127.0.0.1:1', '-MOVED 16384 a:1', '-MOVED 1 a:0', '-MOVED 1 a:99999', '-MOVED 1 a', '-ASK 1', '-MOVED 1 a:1 extra', '-']) {
      assert.equal(parseRedirect(f(s)), null, s);
    }
  });
});
