import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type net from 'node:net';
import { pino } from 'pino';
import { DEFAULTS } from '../../src/config/load.js';
import type { PoolServer } from '../../src/sources/backend-pool.js';
import type { SubscriberConnection } from '../../src/sources/subscriber.js';
import { ClientOutput } from '../../src/sinks/client-output.js';
import type { TurnFlush } from '../../src/sinks/turn-flush.js';
import { immediateScheduler } from '../../src/sources/scheduler.js';
import { PubSub, type PubSubUpstream } from '../../src/streams/pubsub.js';
import { InFlight, RequestStats } from '../../src/util/request-stats.js';

// Where a pub/sub message goes among the replies of a pipelined client: after the reply its
// subscriber connection confirmed before it, before every reply released after it. Replies and
// messages come from different connections, so the order in which they reach the proxy is
// chosen here, one step at a time, and the client's bytes are checked after each flush.

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const bulk = (s: string): string => `$${s.length}\r\n${s}\r\n`;
const push3 = (...parts: string[]): string => `*3\r\n${parts.join('')}`;
const confirm = (kind: string, ch: string, n: number): string => push3(bulk(kind), bulk(ch), `:${n}\r\n`);
const message = (ch: string, body: string): string => push3(bulk('message'), bulk(ch), bulk(body));

/** a client session's output and pub/sub with one fake node; `node.frame` plays what the node sends */
function harness() {
  const written: string[] = [];
  const socket = { writableLength: 0, write: (buf: Buffer) => written.push(buf.toString('latin1')), destroy: () => undefined };
  const inFlight = new InFlight();
  const flush = { mark: () => undefined } as unknown as TurnFlush;
  const output = new ClientOutput(socket as unknown as net.Socket, {
    limits: () => DEFAULTS.limits,
    logger: pino({ level: 'silent' }),
    stats: new RequestStats(),
    inFlight,
    slowlog: { thresholdUs: -1, record: () => undefined },
    client: { id: 1, addr: '127.0.0.1:1', name: null },
    subscribed: () => true,
    scheduler: immediateScheduler,
    flush,
    afterFlush: () => undefined,
  });
  const sent: string[] = [];
  let onFrame: (frame: Buffer) => void = () => undefined;
  const node = { addr: '127.0.0.1:2' } as PoolServer;
  const up = {
    placeSubscription: () => [node],
    subscriber: (_n: PoolServer, _p: number, events: { onFrame(f: Buffer): void }) => {
      onFrame = events.onFrame;
      return { send: (raw: Buffer) => sent.push(raw.toString('latin1')), close: () => undefined } as unknown as SubscriberConnection;
    },
    logger: pino({ level: 'silent' }),
  } as unknown as PubSubUpstream;
  const pubsub = new PubSub(up, () => 2, output.target, (frame, after) => output.push(frame, after));
  let seq = 0;
  return {
    /** a request arrives; its number */
    request(): number {
      inFlight.add(0, undefined);
      return seq++;
    },
    subscribe(name: 'subscribe' | 'unsubscribe', ch: string): number {
      const s = this.request();
      const now = pubsub.handle(name, [b(name), b(ch)], s);
      assert.equal(now, null, 'answered once the node confirmed');
      return s;
    },
    reply: (s: number, frame: string) => output.target.deliver(s, b(frame)),
    node: (frame: string) => onFrame(b(frame)),
    /** what the client has been written so far, as one string */
    flush(): string {
      output.flushTurn();
      return written.join('');
    },
    sent,
  };
}

describe('pub/sub messages among pipelined replies', () => {
  it('SUBSCRIBE, PUBLISH, GET, UNSUBSCRIBE, GET in one write: the message comes between the confirmations even when the UNSUBSCRIBE was read before it came', () => {
    const h = harness();
    const sub = h.subscribe('subscribe', 'ch');
    const pub = h.request();
    const get1 = h.request();
    const unsub = h.subscribe('unsubscribe', 'ch'); // read (and sent to the node) before the message arrives
    const get2 = h.request();
    assert.deepEqual(h.sent, ['*2\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n', '*2\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n']);
    h.node(confirm('subscribe', 'ch', 1));
    h.node(message('ch', 'x')); // PUBLISH ran on the node after the subscription, before the unsubscription
    h.node(confirm('unsubscribe', 'ch', 0));
    h.reply(pub, ':1\r\n');
    h.reply(get1, '$1\r\nv\r\n');
    h.reply(get2, '$1\r\nv\r\n');
    assert.equal(
      h.flush(),
      [confirm('subscribe', 'ch', 1), message('ch', 'x'), ':1\r\n', '$1\r\nv\r\n', confirm('unsubscribe', 'ch', 0), '$1\r\nv\r\n'].join(''),
    );
    assert.deepEqual([sub, unsub], [0, 3]);
  });

  it('a message confirmed behind a reply not yet given waits for it, and goes right after its confirmation', () => {
    const h = harness();
    const get = h.request(); // its reply comes late
    h.subscribe('subscribe', 'ch');
    const ping = h.request();
    h.node(confirm('subscribe', 'ch', 1));
    h.node(message('ch', 'early'));
    assert.equal(h.flush(), '', 'nothing can leave before the GET is answered');
    h.reply(get, '$1\r\nv\r\n');
    assert.equal(h.flush(), ['$1\r\nv\r\n', confirm('subscribe', 'ch', 1), message('ch', 'early')].join(''));
    h.node(message('ch', 'late'));
    h.reply(ping, '+PONG\r\n');
    assert.equal(h.flush(), ['$1\r\nv\r\n', confirm('subscribe', 'ch', 1), message('ch', 'early'), message('ch', 'late'), '+PONG\r\n'].join(''));
  });

  it('messages keep their order while some wait: one confirmed later never passes one held', () => {
    const h = harness();
    const get = h.request();
    h.subscribe('subscribe', 'a');
    const between = h.request();
    h.subscribe('subscribe', 'b');
    h.node(confirm('subscribe', 'a', 1));
    h.node(message('a', '1'));
    h.node(confirm('subscribe', 'b', 2));
    h.node(message('b', '2'));
    h.reply(get, '$1\r\nv\r\n');
    // the GET and a's confirmation may leave; a's message goes right after it; b's waits for b's confirmation
    assert.equal(h.flush(), ['$1\r\nv\r\n', confirm('subscribe', 'a', 1), message('a', '1')].join(''));
    h.reply(between, '+OK\r\n');
    assert.equal(h.flush(), ['$1\r\nv\r\n', confirm('subscribe', 'a', 1), message('a', '1'), '+OK\r\n', confirm('subscribe', 'b', 2), message('b', '2')].join(''));
  });
});
