import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const logger = createLogger('silent');
const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger };
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** SCAN through the proxy until the cursor comes back to 0 (bounded), every key seen */
async function scanAll(r: Redis, ...extra: string[]): Promise<string[]> {
  const seen: string[] = [];
  let cursor = '0';
  for (let i = 0; i < 1000; i++) {
    const [next, keys] = (await r.call('SCAN', cursor, ...extra)) as [string, string[]];
    seen.push(...keys);
    cursor = next;
    if (cursor === '0') return seen;
  }
  throw new Error('SCAN did not finish in 1000 calls');
}

/** what every data node of the proxy must show: the checks shared by both modes */
function sharedChecks(name: string, proxyPort: () => number, dataNodes: () => Array<{ call: (...args: string[]) => Promise<unknown> }>) {
  describe(`${name}: keyless commands over every node`, () => {
    let r: Redis;
    before(async () => {
      r = new Redis({ port: proxyPort(), host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      await r.connect();
    });
    after(() => r?.disconnect());

    it('FLUSHALL empties every node; DBSIZE sums, KEYS merges, SCAN walks them all, RANDOMKEY finds one', async () => {
      assert.equal(await r.call('FLUSHALL'), 'OK');
      assert.equal(await r.call('DBSIZE'), 0);
      assert.equal(await r.call('RANDOMKEY'), null);
      assert.deepEqual(await scanAll(r), []);
      const keys = range(60).map((i) => `adm:${i}`);
      await r.mset(...keys.flatMap((k) => [k, 'v']));
      const perNode = await Promise.all(dataNodes().map((n) => n.call('DBSIZE')));
      assert.ok(perNode.filter((n) => Number(n) > 0).length >= 2, `keys on several nodes: ${JSON.stringify(perNode)}`);
      assert.equal(await r.call('DBSIZE'), 60);
      assert.deepEqual(((await r.call('KEYS', 'adm:*')) as string[]).sort(), [...keys].sort());
      const scanned = await scanAll(r, 'COUNT', '7');
      assert.deepEqual([...new Set(scanned)].sort(), [...keys].sort());
      assert.deepEqual(new Set(await scanAll(r, 'MATCH', 'adm:1*')), new Set(keys.filter((k) => k.startsWith('adm:1'))));
      assert.ok(keys.includes(String(await r.call('RANDOMKEY'))));
      await assert.rejects(r.call('SCAN', '999999999999'), /invalid cursor/);
      await assert.rejects(r.call('SCAN', 'abc'), /invalid cursor/);
      assert.equal(await r.call('FLUSHDB'), 'OK');
      assert.equal(await r.call('DBSIZE'), 0);
    });

    it('SCRIPT KILL reaches the node a runaway script blocks, over a connection of its own; -NOTBUSY when none runs', async () => {
      await assert.rejects(r.call('SCRIPT', 'KILL'), /NOTBUSY/);
      const runaway = new Redis({ port: proxyPort(), host: '127.0.0.1', maxRetriesPerRequest: 0 });
      try {
        const running = runaway.call('EVAL', 'while true do end', '0').then(
          () => 'returned',
          (e: Error) => e.message,
        );
        // (-NOTBUSY until the script runs; a node reads other connections once the script ran
        // past busy-reply-threshold, 100 ms here, and not the one it runs for: a shared one)
        await waitFor(async () => r.call('SCRIPT', 'KILL').then((ok) => ok === 'OK', (e: Error) => (/^NOTBUSY/.test(e.message) ? false : Promise.reject(e))), 5000, 'SCRIPT KILL to kill the script');
        assert.match(await running, /killed by user/i);
        assert.equal(await r.call('EVAL', 'return 1', '0'), 1);
      } finally {
        runaway.disconnect();
      }
    });

    it('FUNCTION KILL stops a runaway function the same way', async () => {
      const lib = "#!lua name=spinlib\nredis.register_function{function_name='spin', callback=function() while true do end end, flags={'no-writes'}}";
      assert.equal(await r.call('FUNCTION', 'LOAD', 'REPLACE', lib), 'spinlib');
      await assert.rejects(r.call('FUNCTION', 'KILL'), /NOTBUSY/);
      const runaway = new Redis({ port: proxyPort(), host: '127.0.0.1', maxRetriesPerRequest: 0 });
      try {
        const running = runaway.call('FCALL', 'spin', '0').then(
          () => 'returned',
          (e: Error) => e.message,
        );
        await waitFor(async () => r.call('FUNCTION', 'KILL').then((ok) => ok === 'OK', (e: Error) => (/^NOTBUSY/.test(e.message) ? false : Promise.reject(e))), 5000, 'FUNCTION KILL to kill the function');
        assert.match(await running, /killed by user/i);
      } finally {
        runaway.disconnect();
      }
      assert.equal(await r.call('FUNCTION', 'DELETE', 'spinlib'), 'OK');
    });

    it('SCRIPT LOAD reaches every node, so EVALSHA works on whichever node owns the key; SCRIPT EXISTS and FLUSH', async () => {
      const body = "return redis.call('SET', KEYS[1], ARGV[1])";
      const sha = String(await r.call('SCRIPT', 'LOAD', body));
      assert.match(sha, /^[0-9a-f]{40}$/);
      for (const i of range(20)) assert.equal(await r.call('EVALSHA', sha, '1', `ev:${i}`, String(i)), 'OK');
      for (const i of range(20)) assert.equal(await r.get(`ev:${i}`), String(i));
      for (const n of dataNodes()) assert.deepEqual(await n.call('SCRIPT', 'EXISTS', sha), [1]);
      assert.deepEqual(await r.call('SCRIPT', 'EXISTS', sha, 'f'.repeat(40)), [1, 0]);
      assert.equal(await r.call('EVAL', "return redis.call('GET', KEYS[1])", '1', 'ev:3'), '3');
      // a script that declares no key runs on one node
      assert.equal(await r.call('EVAL', 'return ARGV[1]', '0', 'hello'), 'hello');
      const noKeys = String(await r.call('SCRIPT', 'LOAD', 'return 42'));
      assert.equal(await r.call('EVALSHA', noKeys, '0'), 42);
      assert.equal(await r.call('SCRIPT', 'FLUSH'), 'OK');
      assert.deepEqual(await r.call('SCRIPT', 'EXISTS', sha), [0]);
      await assert.rejects(r.call('EVALSHA', sha, '1', 'ev:1', 'x'), /NOSCRIPT/);
    });

    it('FUNCTION LOAD reaches every node, so FCALL works for any key; FUNCTION LIST answers from one; FUNCTION DELETE', async () => {
      await r.call('FUNCTION', 'FLUSH');
      const lib = "#!lua name=adminlib\nredis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)";
      assert.equal(await r.call('FUNCTION', 'LOAD', lib), 'adminlib');
      for (const i of range(20)) assert.equal(await r.call('FCALL', 'setit', '1', `fn:${i}`, String(i)), 'OK');
      assert.equal(await r.get('fn:7'), '7');
      const list = JSON.stringify(await r.call('FUNCTION', 'LIST'));
      assert.match(list, /adminlib/);
      await assert.rejects(r.call('FUNCTION', 'LOAD', lib), /already exists/);
      assert.equal(await r.call('FUNCTION', 'DELETE', 'adminlib'), 'OK');
      await assert.rejects(r.call('FCALL', 'setit', '1', 'fn:1', 'x'), /Function not found/);
    });

    it('CONFIG SET goes to every node, CONFIG GET answers from one, CONFIG RESETSTAT everywhere', async () => {
      assert.equal(await r.call('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru'), 'OK');
      for (const n of dataNodes()) assert.deepEqual(await n.call('CONFIG', 'GET', 'maxmemory-policy'), ['maxmemory-policy', 'allkeys-lru']);
      assert.deepEqual(await r.call('CONFIG', 'GET', 'maxmemory-policy'), ['maxmemory-policy', 'allkeys-lru']);
      await assert.rejects(r.call('CONFIG', 'SET', 'no-such-option', '1'), /Unknown option|unknown/i);
      assert.equal(await r.call('CONFIG', 'SET', 'maxmemory-policy', 'noeviction'), 'OK');
      assert.equal(await r.call('CONFIG', 'RESETSTAT'), 'OK');
    });
  });
}

describe('admin commands, standalone mode', () => {
  let servers: RedisProc[] = [];
  let proxy: RunningProxy;
  let plain: RunningProxy;
  const toml = (admin: boolean) => `[[clusters]]
name = "adm"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
admin_commands = ${admin}
servers = [${servers.map((s, i) => `"127.0.0.1:${s.port}:1 r${i}"`).join(', ')}]
`;

  before(async () => {
    servers = await Promise.all(range(3).map(() => startRedis({ args: ['--busy-reply-threshold', '100'] })));
    proxy = await startProxy(parseConfig(toml(true), 'adm.toml').config, opts);
    plain = await startProxy(parseConfig(toml(false), 'adm.toml').config, opts);
  });
  after(async () => {
    await proxy?.close();
    await plain?.close();
    await stopAll();
  });

  const node = (s: RedisProc) => {
    const c = new Redis({ port: s.port, host: '127.0.0.1', lazyConnect: true });
    return { call: async (...args: string[]) => { await c.connect().catch(() => undefined); try { return await c.call(args[0], ...args.slice(1)); } finally { c.disconnect(); } } };
  };
  sharedChecks('standalone', () => proxy.listeners[0].port, () => servers.map(node));

  it('without admin_commands the admin ones are refused, naming the setting; DBSIZE, KEYS, SCAN still answer', async () => {
    const r = new Redis({ port: plain.listeners[0].port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    try {
      for (const cmd of [['FLUSHALL'], ['FLUSHDB'], ['SCRIPT', 'FLUSH'], ['FUNCTION', 'FLUSH'], ['CONFIG', 'SET', 'maxmemory', '0'], ['CONFIG', 'GET', 'maxmemory']]) {
        await assert.rejects(r.call(cmd[0], ...cmd.slice(1)), /needs admin_commands = true/, cmd.join(' '));
      }
      assert.equal(typeof (await r.call('DBSIZE')), 'number');
      assert.ok(Array.isArray(await r.call('KEYS', 'nothing:*')));
      assert.match(String(await r.call('SCRIPT', 'LOAD', 'return 1')), /^[0-9a-f]{40}$/);
    } finally {
      r.disconnect();
    }
  });

  it('FLUSHALL with one server down answers its error, not OK', async () => {
    await servers[1].stop();
    const r = new Redis({ port: proxy.listeners[0].port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    try {
      await waitFor(async () => (await r.call('DBSIZE').then(() => false, () => true)), 5000, 'DBSIZE fails with a server down');
      await assert.rejects(r.call('FLUSHALL'), /backend r1/);
    } finally {
      r.disconnect();
    }
  });
});

describe('admin commands, cluster mode', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;

  before(async () => {
    cluster = await startCluster({ replicasPerMaster: 0, args: ['--busy-reply-threshold', '100'] });
    const toml = `[[clusters]]
name = "admc"
listen_addr = "127.0.0.1:0"
admin_commands = true
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'admc.toml').config, opts);
    const r = new Redis({ port: proxy.listeners[0].port, host: '127.0.0.1' });
    await waitFor(async () => (await r.call('CLUSTER', 'INFO').then(String)).includes('cluster_state:ok'), 10_000, 'proxy has the slot map');
    r.disconnect();
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  sharedChecks(
    'cluster',
    () => proxy.listeners[0].port,
    () => cluster.masters.map((m) => ({ call: (...args: string[]) => cluster.call(m, ...args) })),
  );
});
