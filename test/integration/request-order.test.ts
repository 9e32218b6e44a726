/**
 * The order a client's requests run in, when one socket write carries several of them that the
 * proxy sends over different backend connections (a blocking command on a connection of its own,
 * the RESP3 shared connections after HELLO 3, a transaction's connection, a subscriber
 * connection): each request must run after every earlier one of the same client, so the replies
 * are exactly what redis-server gives for the same bytes.
 *
 * Every check writes the same bytes, in one write, to the proxy and to a plain redis-server (the
 * reference), and compares the replies frame by frame (byte for byte). Both modes: standalone
 * over 3 shards (hash_tag "{}") and cluster mode over a real 3 masters + 3 replicas cluster.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { encodeCmd, Raw, sleep } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') };
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

type Arg = string | number;
type Proto = 2 | 3;

interface Mode {
  readonly name: 'standalone' | 'cluster';
  /** the proxy */
  port(): number;
  /** a plain redis-server (not behind the proxy, not in a cluster): what the replies must be */
  referencePort(): number;
}

/** a frame as text, for messages and comparisons */
const text = (frame: Buffer): string => frame.toString('latin1');
const show = (frames: Buffer[]): string => JSON.stringify(frames.map(text));

/** the RESP3 push of a pub/sub message (`>3 message ...`), not a confirmation */
const isMessagePush = (frame: Buffer): boolean => text(frame).startsWith('>3\r\n$7\r\nmessage\r\n');

function sharedChecks(mode: Mode): void {
  const opened: Raw[] = [];
  const connect = async (port: number, proto: Proto): Promise<Raw> => {
    const c = await Raw.connect(port);
    opened.push(c);
    if (proto === 3) {
      const hello = await c.call('HELLO', 3);
      assert.ok(typeof hello === 'object' && hello !== null && 'map' in hello, `HELLO 3 answered a map: ${JSON.stringify(hello)}`);
    }
    return c;
  };

  /**
   * `cmds` in one socket write on a fresh connection (after HELLO 3 when `proto` is 3, in a write
   * of its own); the frames received until `frames` of them arrived (default: one per command),
   * or what came within 5 s (the comparisons that follow then say what is missing).
   */
  const oneWrite = async (port: number, cmds: Arg[][], proto: Proto = 2, frames = cmds.length): Promise<Buffer[]> => {
    const c = await connect(port, proto);
    const first = c.frames.length;
    c.write(Buffer.concat(cmds.map(encodeCmd)));
    c.expectMore(cmds.length);
    await c.waitReplies(first + frames, 5_000).catch(() => undefined);
    await sleep(20); // nothing more should come
    assert.equal(c.parseError, null, 'replies that parse as RESP');
    return c.frames.slice(first);
  };

  /** the same bytes to the reference and to the proxy: [redis's frames, the proxy's] */
  const both = async (cmds: Arg[][], proto: Proto = 2): Promise<[Buffer[], Buffer[]]> => {
    const viaRedis = await oneWrite(mode.referencePort(), cmds, proto);
    const viaProxy = await oneWrite(mode.port(), cmds, proto);
    return [viaRedis, viaProxy];
  };

  /** deletes `keys` on the reference and through the proxy (each command in a round trip of its own) */
  const clean = async (...keys: string[]): Promise<void> => {
    for (const port of [mode.referencePort(), mode.port()]) {
      const c = await connect(port, 2);
      for (const k of keys) await c.call('DEL', k);
    }
  };

  describe(`${mode.name}: the requests of one write run in the order they were sent`, () => {
    afterEach(() => {
      for (const c of opened.splice(0)) c.close();
    });

    for (const proto of [2, 3] as const) {
      it(`RESP${proto}: DEL q, RPUSH q a b, BLPOP q 0, LLEN q in one write: :0, :2, [q, a], :1 as from redis-server`, async () => {
        const q = `{ro:${mode.name}:${proto}}q`;
        await clean(q);
        const cmds: Arg[][] = [['DEL', q], ['RPUSH', q, 'a', 'b'], ['BLPOP', q, 0], ['LLEN', q]];
        const [viaRedis, viaProxy] = await both(cmds, proto);
        assert.deepEqual(
          viaRedis.map(text),
          [':0\r\n', ':2\r\n', `*2\r\n$${q.length}\r\n${q}\r\n$1\r\na\r\n`, ':1\r\n'],
          'control: what redis-server answers',
        );
        assert.equal(text(viaProxy[3]), ':1\r\n', `LLEN after the BLPOP that popped one of two elements (all replies: ${show(viaProxy)})`);
        assert.deepEqual(viaProxy.map(text), viaRedis.map(text), 'the proxy answers as redis-server');
      });

      it(`RESP${proto}: BLPOP e 0.1 on an empty list, then RPUSH e x, LLEN e in one write: BLPOP times out first, LLEN is 1`, async () => {
        const e = `{ro:${mode.name}:${proto}}e`;
        await clean(e);
        const cmds: Arg[][] = [['BLPOP', e, '0.1'], ['RPUSH', e, 'x'], ['LLEN', e]];
        const [viaRedis, viaProxy] = await both(cmds, proto);
        assert.deepEqual(viaRedis.map(text), [proto === 3 ? '_\r\n' : '*-1\r\n', ':1\r\n', ':1\r\n'], 'control: what redis-server answers');
        assert.equal(text(viaProxy[2]), ':1\r\n', `LLEN once the RPUSH after the timed-out BLPOP ran (all replies: ${show(viaProxy)})`);
        assert.deepEqual(viaProxy.map(text), viaRedis.map(text), 'the proxy answers as redis-server');
      });
    }

    it('SET k 1, HELLO 3, GET k, INCR k, GET k in one write: the commands after HELLO (on RESP3 connections) see the ones before', async () => {
      const k = `{ro:${mode.name}}hello`;
      await clean(k);
      const cmds: Arg[][] = [['SET', k, 1], ['HELLO', 3], ['GET', k], ['INCR', k], ['GET', k]];
      const [viaRedis, viaProxy] = await both(cmds);
      for (const [who, frames] of [['redis-server', viaRedis], ['the proxy', viaProxy]] as const) {
        assert.equal(frames[1][0], 0x25 /* % */, `${who}: HELLO 3 answers a map: ${text(frames[1]).slice(0, 60)}`);
      }
      const withoutHello = (frames: Buffer[]): string[] => frames.filter((_f, i) => i !== 1).map(text);
      assert.deepEqual(withoutHello(viaRedis), ['+OK\r\n', '$1\r\n1\r\n', ':2\r\n', '$1\r\n2\r\n'], 'control: what redis-server answers');
      assert.deepEqual(withoutHello(viaProxy), withoutHello(viaRedis), `the proxy answers as redis-server (all replies: ${show(viaProxy)})`);
    });

    it('SET k 1, MULTI, INCR k, EXEC, GET k in one write: the transaction sees the SET, the GET sees the transaction', async () => {
      const k = `{ro:${mode.name}}tx`;
      await clean(k);
      const cmds: Arg[][] = [['SET', k, 1], ['MULTI'], ['INCR', k], ['EXEC'], ['GET', k]];
      const [viaRedis, viaProxy] = await both(cmds);
      assert.deepEqual(viaRedis.map(text), ['+OK\r\n', '+OK\r\n', '+QUEUED\r\n', '*1\r\n:2\r\n', '$1\r\n2\r\n'], 'control: what redis-server answers');
      assert.deepEqual(viaProxy.map(text), viaRedis.map(text), 'the proxy answers as redis-server');
    });

    it('RESP3: SUBSCRIBE ch, PUBLISH ch x and more commands in one write: the confirmation, :1, the message; the rest as from redis-server', async () => {
      const ch = `ro:${mode.name}:ch`;
      const k = `{ro:${mode.name}}sub`;
      await clean(k);
      const cmds: Arg[][] = [['SUBSCRIBE', ch], ['PUBLISH', ch, 'x'], ['PING'], ['SET', k, 'v'], ['GET', k], ['UNSUBSCRIBE', ch], ['GET', k]];
      // one frame per command and one for the message
      const viaRedis = await oneWrite(mode.referencePort(), cmds, 3, cmds.length + 1);
      const viaProxy = await oneWrite(mode.port(), cmds, 3, cmds.length + 1);
      const message = `>3\r\n$7\r\nmessage\r\n$${ch.length}\r\n${ch}\r\n$1\r\nx\r\n`;
      const confirmation = (kind: string, n: number): string => `>3\r\n$${kind.length}\r\n${kind}\r\n$${ch.length}\r\n${ch}\r\n:${n}\r\n`;
      assert.deepEqual(
        viaRedis.filter((f) => !isMessagePush(f)).map(text),
        [confirmation('subscribe', 1), ':1\r\n', '+PONG\r\n', '+OK\r\n', '$1\r\nv\r\n', confirmation('unsubscribe', 0), '$1\r\nv\r\n'],
        `control: what redis-server answers (${show(viaRedis)})`,
      );
      assert.deepEqual(viaRedis.filter(isMessagePush).map(text), [message], 'control: redis-server sends the message once');

      // the replies, without the message: byte for byte as redis-server's, in the same order
      assert.deepEqual(viaProxy.filter((f) => !isMessagePush(f)).map(text), viaRedis.filter((f) => !isMessagePush(f)).map(text), `the proxy's replies (all frames: ${show(viaProxy)})`);
      // the message: exactly once, after the confirmation of the subscription and before that of
      // the UNSUBSCRIBE (Redis puts it right before PUBLISH's :1; through the proxy it comes from
      // another connection, so it may come a little later among the replies)
      assert.deepEqual(viaProxy.filter(isMessagePush).map(text), [message], `the message, once (all frames: ${show(viaProxy)})`);
      const at = viaProxy.findIndex(isMessagePush);
      const subAt = viaProxy.findIndex((f) => text(f) === confirmation('subscribe', 1));
      const unsubAt = viaProxy.findIndex((f) => text(f) === confirmation('unsubscribe', 0));
      assert.ok(subAt < at && at < unsubAt, `the message between the two confirmations (all frames: ${show(viaProxy)})`);
    });
  });
}

describe('request order, standalone mode (3 shards)', { timeout: 120_000 }, () => {
  let servers: RedisProc[] = [];
  let reference: RedisProc;
  let proxy: RunningProxy;

  before(async () => {
    [servers, reference] = await Promise.all([Promise.all(range(3).map(() => startRedis())), startRedis()]);
    const toml = `[[clusters]]
name = "order"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
hash_tag = "{}"
servers = [${servers.map((s, i) => `"127.0.0.1:${s.port}:1 o${i}"`).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'order.toml').config, opts);
  });
  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  sharedChecks({ name: 'standalone', port: () => proxy.listeners[0].port, referencePort: () => reference.port });
});

describe('request order, cluster mode (3 masters + 3 replicas)', { timeout: 120_000 }, () => {
  let cluster: RedisCluster;
  let reference: RedisProc;
  let proxy: RunningProxy;

  before(async () => {
    [cluster, reference] = await Promise.all([startCluster(), startRedis()]);
    const toml = `[[clusters]]
name = "orderc"
listen_addr = "127.0.0.1:0"
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'orderc.toml').config, opts);
    const c = await Raw.connect(proxy.listeners[0].port);
    try {
      await waitFor(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the proxy has the slot map');
    } finally {
      c.close();
    }
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  sharedChecks({ name: 'cluster', port: () => proxy.listeners[0].port, referencePort: () => reference.port });
});
