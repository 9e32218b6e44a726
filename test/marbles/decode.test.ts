import { describe, it } from 'node:test';
import { map } from 'rxjs';
import { decodeRequests } from '../../src/operators/decode-requests.js';
import { decodeReplies, isPush } from '../../src/operators/decode-replies.js';
import { ProtocolError } from '../../src/protocol/request-decoder.js';
import { ReplyProtocolError } from '../../src/protocol/reply-decoder.js';
import { b, testScheduler } from './helpers.js';

const args = map((r: { args: Buffer[] }) => r.args.map(String).join(' '));

describe('decodeRequests', () => {
  it('emits each request when its last byte arrives, across chunks', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a--b----c-|', {
        a: b('*1\r\n$4\r\nPI'),
        b: b('NG\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n'),
        c: b('$4\r\nQUIT\r\n'),
      });
      expectObservable(chunks.pipe(decodeRequests(), args)).toBe('----(xy)-z-|', { x: 'PING', y: 'GET k', z: 'QUIT' });
    });
  });

  it('errors with a ProtocolError after the requests before the violation', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a-', { a: b('*1\r\n$4\r\nPING\r\n*1\r\n*1\r\n') });
      expectObservable(chunks.pipe(decodeRequests(), args)).toBe('-(x#)', { x: 'PING' }, new ProtocolError("expected '$', got '*'"));
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

  it('errors on a malformed reply', () => {
    testScheduler().run(({ cold, expectObservable }) => {
      const chunks = cold('-a-', { a: b('+OK\r\n%x') });
      const out = chunks.pipe(decodeReplies(), map((f) => f.length));
      expectObservable(out).toBe('-(x#)', { x: 5 }, new ReplyProtocolError('bad length line'));
    });
  });
});
