import { describe, it } from 'node:test';
import { map } from 'rxjs';
import { decodeRequests } from '../../src/operators/decode-requests.js';
import { decodeReplies, isPush } from '../../src/operators/decode-replies.js';
import { ProtocolError } from '../../src/protocol/request-decoder.js';
import { ReplyProtocolError } from '../../src/protocol/reply-decoder.js';
import { b, testScheduler } from './helpers.js';

import type { RequestBatch } from '../../src/operators/decode-requests.js';

/** a batch as text: its requests' arguments, `|` between requests, `!message` for a protocol error */
const args = map((batch: RequestBatch) => batch.map((r) => (r instanceof ProtocolError ? '!' + r.message : r.args.map(String).join(' '))).join('|'));

describe('decodeRequests', () => {
  it('emits the requests each chunk completes, as one batch, across chunks', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a--b----c-|', {
        a: b('*1\r\n$4\r\nPI'),
        b: b('NG\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n'),
        c: b('$4\r\nQUIT\r\n'),
      });
      expectObservable(chunks.pipe(decodeRequests(), args)).toBe('----x----z-|', { x: 'PING|GET k', z: 'QUIT' });
    });
  });

  it('ends a batch with the ProtocolError after the requests before the violation, then completes', () => {
    testScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const chunks = cold('-a-a-', { a: b('*1\r\n$4\r\nPING\r\n*1\r\n*1\r\n') });
      expectObservable(chunks.pipe(decodeRequests(), args)).toBe('-(x|)', { x: "PING|!Protocol error: expected '$', got '*'" });
      expectSubscriptions(chunks.subscriptions).toBe('^!');
    });
  });

  it('stamps each request with the arrival of the chunk that completed it, one clock reading per chunk', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a--b---c-|', {
        a: b('*1\r\n$4\r\nPI'),
        b: b('NG\r\n*1\r\n$4\r\nPING\r\n'),
        c: b('*1\r\n$4\r\nQUIT\r\n'),
      });
      let readings = 0;
      const clock = (): number => ++readings * 100;
      const at = map((batch: RequestBatch) => batch.map((r) => (r instanceof ProtocolError ? '!' : String(r.at))).join('|'));
      // chunk a (reading 100) completes nothing; b (200) completes two; c (300) one
      expectObservable(chunks.pipe(decodeRequests(undefined, clock), at)).toBe('----x---y-|', { x: '200|200', y: '300' });
    });
  });

  it('emits nothing for a chunk that completes no request', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a-b-|', { a: b('*2\r\n$3\r\nGET'), b: b('\r\n$1\r\nk\r\n') });
      expectObservable(chunks.pipe(decodeRequests(), args)).toBe('---x-|', { x: 'GET k' });
    });
  });

  it('unsubscribes from the source when unsubscribed', () => {
    testScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const chunks = hot('-a--a--a-', { a: b('PING\r\n') });
      expectObservable(chunks.pipe(decodeRequests(), args), '^----!').toBe('-x--x', { x: 'PING' });
      expectSubscriptions(chunks.subscriptions).toBe('^----!');
    });
  });
});

describe('decodeReplies', () => {
  it('emits whole replies and flags RESP3 pushes', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a-b----|', { a: b('+OK\r\n*2\r\n:1'), b: b('\r\n:2\r\n>1\r\n+x\r\n') });
      expectObservable(chunks.pipe(decodeReplies(), map((f) => `${isPush(f) ? 'push ' : ''}${f.length}`))).toBe('-x-(yz)-|', {
        x: '5',
        y: '12',
        z: 'push 8',
      });
    });
  });

  it('unsubscribes from the source when unsubscribed', () => {
    testScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
      const chunks = hot('-a--a--a-', { a: b('+OK\r\n') });
      expectObservable(chunks.pipe(decodeReplies(), map((f) => f.length)), '^----!').toBe('-x--x', { x: 5 });
      expectSubscriptions(chunks.subscriptions).toBe('^----!');
    });
  });

  it('errors on a malformed reply', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a-', { a: b('+OK\r\n%x') });
      const out = chunks.pipe(decodeReplies(), map((f) => f.length));
      expectObservable(out).toBe('-(x#)', { x: 5 }, new ReplyProtocolError('bad length line'));
    });
  });
});
