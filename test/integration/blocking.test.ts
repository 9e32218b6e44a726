/**
 * Blocking commands through the proxy against real servers, in both modes: BLPOP & co, the
 * sorted-set and stream ones, WAIT. They run on backend connections of their own, from a pool
 * bounded per server (max_blocking_connections), without read_timeout; a client that leaves
 * while blocked has its blocking connection closed, so an element pushed later stays in the list.
 *
 * What the backends see is read straight off them: INFO clients (blocked_clients,
 * connected_clients) and the lists themselves.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { Raw, RespErr, assertErr, sleep, type Resp } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const logger = createLogger('silent');
const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger };
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
/** the proxy's read_timeout in these tests: blocking commands must outlive it */
const READ_TIMEOUT_MS = 500;
/** idle blocking connections the proxy keeps per server (blocking-pool.ts) */
const KEEP_IDLE = 4;
/** a prompt answer: well under this */
const PROMPT_MS = 1000;

/** one direct command on a data node (a master in cluster mode), parsed */
type NodeCall = (...args: Array<string | number>) => Promise<Resp>;

interface Mode {
  readonly name: 'standalone' | 'cluster';
  /** the proxy under test (read_timeout = 500) */
  port(): number;
  /** the same backends behind a proxy with max_blocking_connections = 2 */
  limitedPort(): number;
  /** every data node */
  nodes(): NodeCall[];
}

/** "k:v" lines of INFO */
function fields(reply: Resp): Map<string, string> {
  assert.equal(typeof reply, 'string', `INFO answered ${JSON.stringify(reply)}`);
  const out = new Map<string, string>();
  for (const line of (reply as string).split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

/** the checks both modes share */
function sharedChecks(mode: Mode): void {
  const opened = new Set<Raw>();
  /** a client of the proxy, closed after the test */
  const open = async (port = mode.port()): Promise<Raw> => {
    const c = await Raw.connect(port);
    opened.add(c);
    return c;
  };
  const clientsInfo = async (): Promise<Array<Map<string, string>>> => Promise.all(mode.nodes().map(async (n) => fields(await n('INFO', 'clients'))));
  const blockedPerNode = async (): Promise<number[]> => (await clientsInfo()).map((f) => Number(f.get('blocked_clients')));
  const blockedTotal = async (): Promise<number> => (await blockedPerNode()).reduce((a, b) => a + b, 0);
  const waitBlocked = async (n: number, ms = 5000): Promise<void> => {
    let last = -1;
    await waitFor(async () => (last = await blockedTotal()) === n, ms, `${n} blocked clients on the backends`).catch((err: Error) => {
      throw new Error(`${err.message}; last seen ${last}`);
    });
  };
  /** every node's LRANGE of `key`, concatenated: what is left of the list wherever it lives */
  const listOnNodes = async (key: string): Promise<Resp[]> => {
    const parts = await Promise.all(mode.nodes().map((n) => n('LRANGE', key, 0, -1)));
    return parts.flatMap((p) => (Array.isArray(p) ? p : []));
  };
  /** index of the node that holds `key` (created through the proxy, found on the nodes, deleted) */
  const ownerOf = async (key: string): Promise<number> => {
    const p = await open();
    assert.equal(await p.call('SET', key, 'probe'), 'OK');
    const found = await Promise.all(mode.nodes().map((n) => n('EXISTS', key)));
    assert.equal(await p.call('DEL', key), 1);
    const i = found.indexOf(1);
    assert.ok(i >= 0 && found.lastIndexOf(1) === i, `${key} on exactly one node: ${JSON.stringify(found)}`);
    return i;
  };
  /** a key named `${i}:${suffix}` held by a node other than `notOn` */
  const keyAwayFrom = async (notOn: number, suffix: string): Promise<string> => {
    for (let i = 0; i < 64; i++) {
      const key = `${i}:${suffix}`;
      if ((await ownerOf(key)) !== notOn) return key;
    }
    throw new Error(`no key off node ${notOn} in 64 tries`);
  };
  /** `cmd` blocks on one client until `push` from another; then its reply */
  const blockThenPush = async (cmd: Array<string | number>, push: Array<string | number>): Promise<Resp> => {
    const b = await open();
    const p = await open();
    const i = b.sendNoWait(...cmd);
    await waitBlocked(1);
    assert.equal(b.replies.length, 0, `${cmd.join(' ')} answered before the push: ${JSON.stringify(b.replies)}`);
    await p.call(...push);
    await b.waitReplies(i + 1, 5000);
    return b.replies[i];
  };

  let baseline: number[] = [];

  describe(`${mode.name}: blocking commands`, () => {
    before(async () => {
      // the proxy's shared connections to every node are up (a command that reaches each)
      const p = await open();
      for (const i of range(40)) await p.call('GET', `${i}:warm`);
      await sleep(300);
      baseline = (await clientsInfo()).map((f) => Number(f.get('connected_clients')));
      p.close();
    });
    afterEach(async () => {
      for (const c of opened) c.close();
      opened.clear();
      // nothing a test left blocked stays blocked on the backends
      await waitBlocked(0);
    });

    it('BLPOP with a timeout answers nil after its own timeout, not after read_timeout; BLPOP 0 waits for a later push', async () => {
      const c = await open();
      const t0 = Date.now();
      assert.equal(await c.call('BLPOP', '1:empty', 2), null);
      const took = Date.now() - t0;
      assert.ok(took >= 1500, `answered after ${took} ms, before its own 2 s timeout`);

      const i = c.sendNoWait('BLPOP', '2:later', 0);
      await waitBlocked(1);
      await sleep(READ_TIMEOUT_MS + 300);
      assert.equal(c.replies.length, i, `nothing answered while blocked past read_timeout: ${JSON.stringify(c.replies.slice(i))}`);
      const p = await open();
      assert.equal(await p.call('RPUSH', '2:later', 'x'), 1);
      await c.waitReplies(i + 1);
      assert.deepEqual(c.replies[i], ['2:later', 'x']);
      assert.equal(await c.call('PING'), 'PONG');
      assert.deepEqual(await listOnNodes('2:later'), []);
    });

    it('a client that leaves while blocked (socket destroyed) frees its backend connection: a later push stays in the list', async () => {
      const key = '3:gone';
      const c = await open();
      c.sendNoWait('BLPOP', key, 0);
      await waitBlocked(1);
      c.close();
      await waitBlocked(0);
      const p = await open();
      assert.equal(await p.call('RPUSH', key, 'kept'), 1);
      assert.deepEqual(await listOnNodes(key), ['kept']);
      // and a new blocked client gets it next time
      assert.deepEqual(await p.call('BLPOP', key, 0), [key, 'kept']);
    });

    it('a client that half-closes while blocked (ioredis disconnect) frees its backend connection: a later push stays in the list', async () => {
      const key = '4:halfclosed';
      const r = new Redis({ port: mode.port(), host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => undefined);
      await r.connect();
      const pending = r.blpop(key, 0).then(
        (v) => ({ ok: v }),
        (err: Error) => ({ err }),
      );
      await waitBlocked(1);
      r.disconnect();
      const outcome = await pending;
      assert.ok('err' in outcome, `the blocked call ended without an element: ${JSON.stringify(outcome)}`);
      await waitBlocked(0);
      const p = await open();
      assert.equal(await p.call('RPUSH', key, 'kept'), 1);
      assert.deepEqual(await listOnNodes(key), ['kept']);
      assert.equal(await p.call('DEL', key), 1);
    });

    it('a raw client that half-closes while blocked is unblocked at once and its connection closes', async () => {
      const key = '5:halfraw';
      const c = await open();
      c.sendNoWait('BLPOP', key, 0);
      await waitBlocked(1);
      c.socket.end();
      await waitBlocked(0);
      await c.waitClosed(5000);
      const p = await open();
      assert.equal(await p.call('RPUSH', key, 'kept'), 1);
      assert.deepEqual(await listOnNodes(key), ['kept']);
      assert.equal(await p.call('DEL', key), 1);
    });

    it('30 clients blocked on different lists each get exactly their element; then the idle blocking connections shrink back', async () => {
      const n = 30;
      const key = (i: number): string => `${i}:many`;
      const cs = await Promise.all(range(n).map(() => open()));
      cs.forEach((c, i) => c.sendNoWait('BLPOP', key(i), 0));
      await waitBlocked(n, 10_000);
      const perNode = await blockedPerNode();
      assert.ok(perNode.filter((b) => b > 0).length >= 2, `blocked on several nodes: ${JSON.stringify(perNode)}`);
      const p = await open();
      const pushed = await p.pipeline(range(n).map((i) => ['RPUSH', key(i), `e${i}`]));
      assert.deepEqual(pushed, range(n).map(() => 1));
      await Promise.all(cs.map((c) => c.waitReplies(1, 5000)));
      await sleep(200);
      cs.forEach((c, i) => assert.deepEqual(c.replies, [[key(i), `e${i}`]], `client ${i}`));
      for (const i of range(n)) assert.deepEqual(await listOnNodes(key(i)), [], `list ${key(i)} emptied`);
      // the connections those blocked on went back to the idle list (at most 4 kept per server) or closed
      let seen: number[] = [];
      await waitFor(
        async () => {
          seen = (await clientsInfo()).map((f) => Number(f.get('connected_clients')));
          // + 1: the health pinger's connection may have opened after the baseline was taken
          return seen.every((c, i) => c <= baseline[i] + KEEP_IDLE + 1);
        },
        5000,
        'connected_clients back to the shared ones + the idle list',
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(seen)}, baseline ${JSON.stringify(baseline)}`);
      });
      // those connections are still good for the next blocked clients
      assert.deepEqual(await blockThenPush(['BLPOP', key(0), 0], ['RPUSH', key(0), 'again']), [key(0), 'again']);
    });

    it('BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP block until a push and answer like Redis', async () => {
      assert.deepEqual(await blockThenPush(['BRPOP', '{6a}l', '{6a}m', 0], ['RPUSH', '{6a}m', 'a', 'b']), ['{6a}m', 'b']);
      const p = await open();
      assert.deepEqual(await p.call('LRANGE', '{6a}m', 0, -1), ['a']);

      assert.equal(await blockThenPush(['BRPOPLPUSH', '{6b}src', '{6b}dst', 0], ['RPUSH', '{6b}src', 'x']), 'x');
      assert.deepEqual(await p.call('LRANGE', '{6b}dst', 0, -1), ['x']);

      assert.equal(await blockThenPush(['BLMOVE', '{6c}src', '{6c}dst', 'LEFT', 'RIGHT', 0], ['RPUSH', '{6c}src', 'y', 'z']), 'y');
      assert.deepEqual(await p.call('LRANGE', '{6c}dst', 0, -1), ['y']);
      assert.deepEqual(await p.call('LRANGE', '{6c}src', 0, -1), ['z']);

      assert.deepEqual(await blockThenPush(['BLMPOP', 0, 2, '{6d}x', '{6d}y', 'RIGHT', 'COUNT', 2], ['RPUSH', '{6d}y', '1', '2', '3']), ['{6d}y', ['3', '2']]);
      assert.deepEqual(await p.call('LRANGE', '{6d}y', 0, -1), ['1']);
      assert.equal(await p.call('DEL', '{6a}m', '{6b}dst', '{6c}dst', '{6c}src', '{6d}y'), 5);
    });

    it('BZPOPMIN, BZPOPMAX, BZMPOP block until a ZADD', async () => {
      const p = await open();
      assert.deepEqual(await blockThenPush(['BZPOPMIN', '{7a}z', 0], ['ZADD', '{7a}z', 1, 'a', 2, 'b']), ['{7a}z', 'a', '1']);
      assert.deepEqual(await blockThenPush(['BZPOPMAX', '{7b}z', 0], ['ZADD', '{7b}z', 1, 'a', 2, 'b']), ['{7b}z', 'b', '2']);
      assert.deepEqual(await blockThenPush(['BZMPOP', 0, 1, '{7c}z', 'MAX', 'COUNT', 2], ['ZADD', '{7c}z', 1, 'a', 2, 'b', 3, 'c']), [
        '{7c}z',
        [
          ['c', '3'],
          ['b', '2'],
        ],
      ]);
      assert.deepEqual(await p.call('ZRANGE', '{7a}z', 0, -1), ['b']);
      assert.deepEqual(await p.call('ZRANGE', '{7b}z', 0, -1), ['a']);
      assert.deepEqual(await p.call('ZRANGE', '{7c}z', 0, -1), ['a']);
      assert.equal(await p.call('DEL', '{7a}z', '{7b}z', '{7c}z'), 3);
    });

    it('XREAD BLOCK and XREADGROUP BLOCK are answered by an XADD from another client', async () => {
      const b = await open();
      const p = await open();
      const s = '{8a}s';
      let i = b.sendNoWait('XREAD', 'BLOCK', 0, 'STREAMS', s, '$');
      await waitBlocked(1);
      const id = await p.call('XADD', s, '*', 'f', 'v');
      await b.waitReplies(i + 1);
      assert.deepEqual(b.replies[i], [[s, [[id, ['f', 'v']]]]]);

      const g = '{8b}s';
      assert.equal(await p.call('XGROUP', 'CREATE', g, 'grp', '$', 'MKSTREAM'), 'OK');
      i = b.sendNoWait('XREADGROUP', 'GROUP', 'grp', 'c1', 'COUNT', 10, 'BLOCK', 0, 'STREAMS', g, '>');
      await waitBlocked(1);
      const gid = await p.call('XADD', g, '*', 'k', 'w');
      await b.waitReplies(i + 1);
      assert.deepEqual(b.replies[i], [[g, [[gid, ['k', 'w']]]]]);
      // the entry is pending for c1: the group saw the read
      const pending = (await p.call('XPENDING', g, 'grp')) as Resp[];
      assert.equal(pending[0], 1);
      // BLOCK with a timeout and nothing new: nil after it
      const t0 = Date.now();
      assert.equal(await b.call('XREAD', 'BLOCK', 300, 'STREAMS', s, '$'), null);
      assert.ok(Date.now() - t0 >= 250);
      assert.equal(await p.call('DEL', s, g), 2);
    });

    it('blocking commands whose keys are on two servers/slots are refused with CROSSSLOT at once; the connection stays usable', async () => {
      const k1 = '0:cross';
      const k2 = await keyAwayFrom(await ownerOf(k1), 'cross');
      const c = await open();
      const cmds: Array<Array<string | number>> = [
        ['BLPOP', k1, k2, 0],
        ['BRPOP', k1, k2, 0],
        ['BRPOPLPUSH', k1, k2, 0],
        ['BLMOVE', k1, k2, 'LEFT', 'LEFT', 0],
        ['BLMPOP', 0, 2, k1, k2, 'LEFT'],
        ['BZPOPMIN', k1, k2, 0],
        ['BZPOPMAX', k1, k2, 0],
        ['BZMPOP', 0, 2, k1, k2, 'MIN'],
        ['XREAD', 'BLOCK', 0, 'STREAMS', k1, k2, '$', '$'],
      ];
      for (const cmd of cmds) {
        const t0 = Date.now();
        const reply = await c.call(...cmd);
        assertErr(reply, 'CROSSSLOT', cmd.join(' '));
        assert.ok(Date.now() - t0 < PROMPT_MS, `${cmd[0]} answered at once`);
      }
      assert.equal(await blockedTotal(), 0);
      assert.equal(await c.call('PING'), 'PONG');
      assert.equal(await c.call('BLPOP', k1, 0.1), null);
      const p = await open();
      assert.equal(await p.call('RPUSH', k2, 'v'), 1);
      assert.deepEqual(await c.call('BLPOP', k2, 0), [k2, 'v']);
    });

    it('other clients are not held up while 10 clients are blocked', async () => {
      const n = 10;
      const key = (i: number): string => `${i}:held`;
      const cs = await Promise.all(range(n).map(() => open()));
      cs.forEach((c, i) => c.sendNoWait('BLPOP', key(i), 0));
      await waitBlocked(n);
      const p = await open();
      let t0 = Date.now();
      assert.equal(await p.call('SET', '0:free', 'v'), 'OK');
      assert.equal(await p.call('GET', '0:free'), 'v');
      assert.ok(Date.now() - t0 < PROMPT_MS, `SET + GET took ${Date.now() - t0} ms`);
      t0 = Date.now();
      const cmds = range(50).flatMap((i) => [
        ['SET', `${i}:free`, `v${i}`],
        ['GET', `${i}:free`],
      ]);
      const replies = await p.pipeline(cmds);
      assert.ok(Date.now() - t0 < PROMPT_MS, `100 pipelined commands took ${Date.now() - t0} ms`);
      assert.deepEqual(
        replies,
        range(50).flatMap((i) => ['OK', `v${i}`]),
      );
      assert.equal(await p.call('DEL', ...range(50).map((i) => `${i}:free`)), 50);
      // still blocked, then released each with its own element
      assert.equal(await blockedTotal(), n);
      await p.pipeline(range(n).map((i) => ['RPUSH', key(i), `h${i}`]));
      await Promise.all(cs.map((c) => c.waitReplies(1)));
      cs.forEach((c, i) => assert.deepEqual(c.replies, [[key(i), `h${i}`]]));
    });

    it('max_blocking_connections = 2: a third blocked client on the same server gets the error at once; after a release one can block again', async () => {
      const port = mode.limitedPort();
      const [a, b, c] = await Promise.all([open(port), open(port), open(port)]);
      a.sendNoWait('BLPOP', '{9}a', 0);
      b.sendNoWait('BLPOP', '{9}b', 0);
      await waitBlocked(2);
      const t0 = Date.now();
      const refused = await c.call('BLPOP', '{9}c', 0);
      assert.ok(Date.now() - t0 < PROMPT_MS, 'refused at once');
      assertErr(refused, 'ERR too many blocked clients on backend ', 'third blocked client');
      assert.match((refused as RespErr).message, /\(max_blocking_connections = 2\)$/);
      // the bound is per server: a key on another server still blocks
      const other = await keyAwayFrom(await ownerOf('{9}a'), 'limother');
      const d = await open(port);
      d.sendNoWait('BLPOP', other, 0);
      await waitBlocked(3);
      const p = await open();
      assert.equal(await p.call('RPUSH', '{9}a', 'x'), 1);
      await a.waitReplies(1);
      assert.deepEqual(a.replies[0], ['{9}a', 'x']);
      // one slot is free again: c blocks now
      const i = c.sendNoWait('BLPOP', '{9}c', 0);
      await waitBlocked(3);
      await p.pipeline([
        ['RPUSH', '{9}b', 'y'],
        ['RPUSH', '{9}c', 'z'],
        ['RPUSH', other, 'w'],
      ]);
      await Promise.all([b.waitReplies(1), c.waitReplies(i + 1), d.waitReplies(1)]);
      assert.deepEqual(b.replies[0], ['{9}b', 'y']);
      assert.deepEqual(c.replies[i], ['{9}c', 'z']);
      assert.deepEqual(d.replies[0], [other, 'w']);
    });

    it('WAIT 0 0 asks every node and answers an integer (no replicas: 0)', async () => {
      const c = await open();
      assert.equal(await c.call('SET', '0:waited', 'v'), 'OK');
      const t0 = Date.now();
      assert.equal(await c.call('WAIT', 0, 0), 0);
      assert.ok(Date.now() - t0 < PROMPT_MS);
      assert.equal(await c.call('WAIT', 1, 300), 0, 'no replica to acknowledge: 0 after the timeout');
      assert.equal(await c.call('DEL', '0:waited'), 1);
    });

    it('a blocking command inside MULTI does not block: BLPOP on an empty list answers nil in EXEC at once', async () => {
      const c = await open();
      const t0 = Date.now();
      const replies = await c.pipeline([['MULTI'], ['BLPOP', '0:intx', 0], ['EXEC']]);
      assert.deepEqual(replies, ['OK', 'QUEUED', [null]]);
      assert.ok(Date.now() - t0 < PROMPT_MS, `EXEC answered after ${Date.now() - t0} ms`);
      assert.equal(await blockedTotal(), 0);
      // with an element there, the transaction pops it
      const p = await open();
      assert.equal(await p.call('RPUSH', '0:intx', 'e'), 1);
      assert.deepEqual(await c.pipeline([['MULTI'], ['BLPOP', '0:intx', 0], ['EXEC']]), ['OK', 'QUEUED', [['0:intx', 'e']]]);
    });
  });
}

describe('blocking commands, standalone mode', () => {
  let servers: RedisProc[] = [];
  let proxy: RunningProxy;
  let limited: RunningProxy;
  let direct: Raw[] = [];
  const toml = (name: string, extra: string): string => `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
hash_tag = "{}"
read_timeout = ${READ_TIMEOUT_MS}
${extra}servers = [${servers.map((s, i) => `"127.0.0.1:${s.port}:1 r${i}"`).join(', ')}]
`;

  before(async () => {
    servers = await Promise.all(range(3).map(() => startRedis()));
    direct = await Promise.all(servers.map((s) => Raw.connect(s.port)));
    proxy = await startProxy(parseConfig(toml('blk', ''), 'blk.toml').config, opts);
    limited = await startProxy(parseConfig(toml('blklim', 'max_blocking_connections = 2\n'), 'blklim.toml').config, opts);
  });
  after(async () => {
    await proxy?.close();
    await limited?.close();
    for (const d of direct) d.close();
    await stopAll();
  });

  sharedChecks({
    name: 'standalone',
    port: () => proxy.listeners[0].port,
    limitedPort: () => limited.listeners[0].port,
    nodes: () => direct.map((d) => (...args: Array<string | number>) => d.call(...args)),
  });
});

describe('blocking commands, cluster mode', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  let limited: RunningProxy;
  const toml = (name: string, extra: string): string => `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
read_timeout = ${READ_TIMEOUT_MS}
${extra}servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
  const port = (): number => proxy.listeners[0].port;

  before(async () => {
    cluster = await startCluster({ replicasPerMaster: 0 });
    proxy = await startProxy(parseConfig(toml('blkc', ''), 'blkc.toml').config, opts);
    limited = await startProxy(parseConfig(toml('blkclim', 'max_blocking_connections = 2\n'), 'blkclim.toml').config, opts);
    for (const p of [proxy, limited]) {
      const r = await Raw.connect(p.listeners[0].port);
      try {
        await waitFor(async () => String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'proxy has the slot map');
      } finally {
        r.close();
      }
    }
  });
  after(async () => {
    await proxy?.close();
    await limited?.close();
    await cluster?.stop();
    await stopAll();
  });

  sharedChecks({
    name: 'cluster',
    port,
    limitedPort: () => limited.listeners[0].port,
    nodes: () => cluster.masters.map((m) => (...args: Array<string | number>) => cluster.call(m, ...args)),
  });

  describe('cluster: redirects of blocking commands', () => {
    const opened: Raw[] = [];
    const open = async (): Promise<Raw> => {
      const c = await Raw.connect(port());
      opened.push(c);
      return c;
    };
    afterEach(() => {
      for (const c of opened.splice(0)) c.close();
    });
    const blockedOn = async (node: RedisProc): Promise<number> => Number(fields(await cluster.call(node, 'INFO', 'clients')).get('blocked_clients'));

    /** the slot of `key`, its owner now, and another master */
    const placesOf = async (key: string): Promise<{ slot: number; from: RedisProc; to: RedisProc }> => {
      const slot = await cluster.keySlot(key);
      const from = await cluster.ownerOf(slot);
      assert.ok(from !== undefined, `slot ${slot} has an owner`);
      const to = cluster.masters.find((m) => m !== from)!;
      return { slot, from, to };
    };

    it('BLPOP on a key whose slot moved before the command follows MOVED; an RPUSH after the move reaches it', async () => {
      const key = 'moved:before';
      const { slot, from, to } = await placesOf(key);
      const c = await open();
      // the proxy has the old map: a command on the key went to `from`
      assert.equal(await c.call('DEL', key), 0);
      await cluster.moveSlot(slot, from, to);
      const i = c.sendNoWait('BLPOP', key, 0);
      await waitFor(async () => (await blockedOn(to)) === 1, 5000, 'BLPOP blocked on the new owner');
      assert.equal(await blockedOn(from), 0);
      const p = await open();
      assert.equal(await p.call('RPUSH', key, 'after-move'), 1);
      await c.waitReplies(i + 1);
      assert.deepEqual(c.replies[i], [key, 'after-move']);
      assert.equal(await cluster.call(to, 'LLEN', key), 0);
      // the old owner no longer serves the slot
      assertErr(await cluster.call(from, 'LLEN', key), 'MOVED', 'old owner');
    });

    it('BLPOP blocked while its slot moves away is redirected by Redis (MOVED) and blocks on the new owner; a later RPUSH reaches it', async () => {
      const key = 'moved:during';
      const { slot, from, to } = await placesOf(key);
      const c = await open();
      const i = c.sendNoWait('BLPOP', key, 0);
      await waitFor(async () => (await blockedOn(from)) === 1, 5000, 'BLPOP blocked on the owner');
      await cluster.moveSlot(slot, from, to);
      await waitFor(async () => (await blockedOn(to)) === 1 && (await blockedOn(from)) === 0, 5000, 'BLPOP blocked on the new owner');
      assert.equal(c.replies.length, i, `no answer yet: ${JSON.stringify(c.replies.slice(i))}`);
      const p = await open();
      assert.equal(await p.call('RPUSH', key, 'moved'), 1);
      await c.waitReplies(i + 1);
      assert.deepEqual(c.replies[i], [key, 'moved']);
      assert.equal(await cluster.call(to, 'LLEN', key), 0);
    });
  });
});

describe('WAIT with a replica (cluster, 1 master + 1 replica)', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  const opened: Raw[] = [];
  const open = async (port: number): Promise<Raw> => {
    const c = await Raw.connect(port);
    opened.push(c);
    return c;
  };

  before(async () => {
    cluster = await startCluster({ masters: 1, replicasPerMaster: 1 });
    const toml = `[[clusters]]
name = "blkw"
listen_addr = "127.0.0.1:0"
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'blkw.toml').config, opts);
    const r = await open(proxy.listeners[0].port);
    await waitFor(async () => String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'proxy has the slot map');
  });
  afterEach(() => {
    for (const c of opened.splice(0)) c.close();
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  it('WAIT 1 1000 after a write answers at least 1', async () => {
    const c = await open(proxy.listeners[0].port);
    assert.equal(await c.call('SET', 'w:1', 'v'), 'OK');
    const n = await c.call('WAIT', 1, 1000);
    assert.equal(typeof n, 'number', `WAIT answered ${JSON.stringify(n)}`);
    assert.ok((n as number) >= 1, `WAIT answered ${n}`);
    const onReplica = await open(cluster.replicas[0].port);
    assert.equal(await onReplica.call('READONLY'), 'OK');
    await waitFor(async () => (await onReplica.call('GET', 'w:1')) === 'v', 5000, 'the write on the replica');
  });

  it(
    "WAIT counts only the replicas that have the client's own earlier writes (replica stopped: 0 after the timeout)",
    async () => {
      const replica = cluster.replicas[0];
      const master = cluster.masters[0];
      const direct = await open(master.port);
      const c = await open(proxy.listeners[0].port);
      replica.kill('SIGSTOP');
      try {
        // Redis itself: the write is not acknowledged by the stopped replica, so WAIT times out with 0
        assert.equal(await direct.call('SET', 'w:2', 'direct'), 'OK');
        assert.equal(await direct.call('WAIT', 1, 300), 0, 'control: WAIT straight on the master');
        // through the proxy the same sequence must answer the same
        assert.equal(await c.call('SET', 'w:2', 'proxied'), 'OK');
        const t0 = Date.now();
        assert.equal(await c.call('WAIT', 1, 300), 0, 'WAIT through the proxy');
        assert.ok(Date.now() - t0 >= 250, 'answered after its timeout');
      } finally {
        replica.kill('SIGCONT');
      }
    },
  );
});
