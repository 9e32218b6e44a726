/**
 * Stock clients through the proxy in front of a real Redis Cluster (3 masters): ioredis Cluster,
 * node-redis v5 createCluster and createClient, redis-cli -c, and plain ioredis. Cluster-aware
 * clients see one node (the proxy, owning every slot) and never get a MOVED to follow; every
 * value written lands on the master that owns its key's slot, as Redis itself says.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { createClient, createCluster } from 'redis';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster, type RedisProc } from '../helpers/cluster.js';
import { stopAll, waitFor } from '../helpers/servers.js';

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
    }),
  ]);
}

function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-c', '-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

describe('stock clients through the proxy in front of a Redis Cluster', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  let port: number;

  /** the master owning each key, by Redis's CLUSTER KEYSLOT and CLUSTER SLOTS */
  const ownersOf = async (keys: string[]): Promise<RedisProc[]> => {
    const node = cluster.live()[0];
    const [slots, view] = await Promise.all([cluster.pipeline(node, keys.map((k) => ['CLUSTER', 'KEYSLOT', k])), cluster.slots()]);
    return slots.map((slot, i) => {
      const owner = cluster.byAddr(view.find((r) => r.start <= Number(slot) && Number(slot) <= r.end)?.master ?? '');
      assert.ok(owner !== undefined, `no owner for ${keys[i]} (slot ${String(slot)})`);
      return owner;
    });
  };

  /** checks, straight on the masters, that each key holds `value(key)`, and that the keys covered every master */
  const assertOnOwners = async (keys: string[], value: (k: string) => string): Promise<void> => {
    const owners = await ownersOf(keys);
    const by = new Map<RedisProc, string[]>();
    owners.forEach((o, i) => by.set(o, [...(by.get(o) ?? []), keys[i]]));
    assert.deepEqual(new Set(by.keys()), new Set(cluster.masters), 'the keys cover every master');
    for (const [master, mine] of by) {
      assert.deepEqual(await cluster.pipeline(master, mine.map((k) => ['GET', k])), mine.map(value), `keys on ${cluster.label(master)}`);
    }
  };

  before(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
    const toml = `[[clusters]]
name = "cc"
listen_addr = "127.0.0.1:0"
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'x.toml').config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    port = proxy.listeners[0].port;
    const probe = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, lazyConnect: true });
    probe.on('error', () => undefined);
    try {
      await waitFor(async () => String(await probe.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the proxy to have the slot map');
    } finally {
      probe.disconnect();
    }
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  it('ioredis Cluster: one node; set/get/mget across slots, a pipeline, a multi on one slot', async () => {
    const c = new Cluster([{ host: '127.0.0.1', port }], {
      clusterRetryStrategy: () => null,
      slotsRefreshTimeout: 3_000,
      redisOptions: { maxRetriesPerRequest: 0, commandTimeout: 3_000 },
    });
    c.on('error', () => undefined);
    try {
      await withTimeout(new Promise<void>((resolve, reject) => {
        c.once('ready', () => resolve());
        c.once('end', () => reject(new Error('ioredis Cluster ended before ready')));
      }), 10_000, 'ioredis Cluster ready');
      const masters = c.nodes('master');
      assert.equal(masters.length, 1, 'ioredis sees one master');
      assert.equal(masters[0].options.port, port);
      assert.equal(c.nodes('all').length, 1);

      const keys = Array.from({ length: 60 }, (_v, i) => `ioc:${i}`);
      for (const k of keys) assert.equal(await c.set(k, `v-${k}`), 'OK');
      for (const k of keys.slice(0, 10)) assert.equal(await c.get(k), `v-${k}`);
      assert.deepEqual(await c.mget(...keys), keys.map((k) => `v-${k}`), 'MGET over keys of every master');
      await assertOnOwners(keys, (k) => `v-${k}`);

      const p = c.pipeline();
      for (const k of keys.slice(0, 20)) p.incr(`${k}:n`);
      for (const k of keys.slice(0, 20)) p.get(k);
      const results = await withTimeout(p.exec(), 5_000, 'pipeline');
      assert.ok(results !== null);
      assert.deepEqual(results.map(([err]) => err), results.map(() => null), 'no error in the pipeline');
      assert.deepEqual(results.map(([, v]) => v), [...keys.slice(0, 20).map(() => 1), ...keys.slice(0, 20).map((k) => `v-${k}`)]);

      const tx = await withTimeout(c.multi().set('{ioc}:a', '1').incr('{ioc}:n').get('{ioc}:a').exec(), 5_000, 'multi');
      assert.deepEqual(tx, [[null, 'OK'], [null, 1], [null, '1']]);
      const [owner] = await ownersOf(['{ioc}:a']);
      assert.equal(await cluster.call(owner, 'GET', '{ioc}:n'), '1');
    } finally {
      c.disconnect();
    }
  });

  it('node-redis v5: createCluster sees one master; set/get/mGet with a hash tag; createClient too', async () => {
    const c = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${port}` }], defaults: { socket: { connectTimeout: 3_000, reconnectStrategy: false } } });
    c.on('error', () => undefined);
    await withTimeout(c.connect(), 10_000, 'node-redis createCluster connect');
    try {
      assert.equal(c.masters.length, 1, 'node-redis sees one master');
      assert.equal(c.masters[0].port, port);
      assert.equal(c.replicas.length, 0);
      const keys = Array.from({ length: 30 }, (_v, i) => `nrc:${i}`);
      for (const k of keys) assert.equal(await withTimeout(c.set(k, `v-${k}`), 3_000, `SET ${k}`), 'OK');
      for (const k of keys) assert.equal(await withTimeout(c.get(k), 3_000, `GET ${k}`), `v-${k}`);
      await assertOnOwners(keys, (k) => `v-${k}`);
      const tagged = ['{nrc}:a', '{nrc}:b', '{nrc}:c'];
      for (const k of tagged) await c.set(k, `t-${k}`);
      assert.deepEqual(await withTimeout(c.mGet(tagged), 3_000, 'mGet'), tagged.map((k) => `t-${k}`));
    } finally {
      await withTimeout(c.close(), 5_000, 'node-redis cluster close').catch(() => c.destroy());
    }

    const plain = createClient({ url: `redis://127.0.0.1:${port}`, socket: { connectTimeout: 3_000, reconnectStrategy: false } });
    plain.on('error', () => undefined);
    await withTimeout(plain.connect(), 5_000, 'node-redis createClient connect');
    try {
      const keys = Array.from({ length: 30 }, (_v, i) => `nrp:${i}`);
      assert.equal(await plain.mSet(keys.map((k) => [k, `p-${k}`] as [string, string])), 'OK');
      assert.deepEqual(await plain.mGet(keys), keys.map((k) => `p-${k}`), 'mGet across slots');
      assert.equal(await plain.get(keys[0]), `p-${keys[0]}`);
      await assertOnOwners(keys, (k) => `p-${k}`);
    } finally {
      await withTimeout(plain.close(), 5_000, 'node-redis client close').catch(() => plain.destroy());
    }
  });

  it('redis-cli -c: SET and GET work with no redirect to a real node', async () => {
    // redis-cli prints "-> Redirected" only on a terminal; what shows a followed MOVED here is a
    // new connection on a real node (the proxy reuses the connections it has)
    const connections = (): Promise<number[]> =>
      Promise.all(
        cluster.masters.map(async (m) => {
          const match = /^total_connections_received:(\d+)/m.exec(String(await cluster.call(m, 'INFO', 'stats')));
          assert.ok(match !== null);
          return Number(match[1]);
        }),
      );
    const keys = Array.from({ length: 9 }, (_v, i) => `cli:${i}`);
    const before = await connections();
    for (const k of keys) {
      const set = await redisCli(port, 'SET', k, `c-${k}`);
      assert.equal(set.trim(), 'OK', `SET ${k}: ${set}`);
      const got = await redisCli(port, 'GET', k);
      assert.equal(got.trim(), `c-${k}`, `GET ${k}`);
    }
    assert.deepEqual(await connections(), before, 'redis-cli never connected to a real node');
    await assertOnOwners(keys, (k) => `c-${k}`);

    // for comparison: straight to a node, redis-cli -c follows the MOVED to the owner (a new connection there)
    const owners = await ownersOf(keys);
    const i = owners.findIndex((o) => o !== cluster.masters[0]);
    const j = cluster.masters.indexOf(owners[i]);
    const before2 = await connections();
    assert.equal((await redisCli(cluster.masters[0].port, 'GET', keys[i])).trim(), `c-${keys[i]}`);
    const after2 = await connections();
    assert.equal(after2[j] - before2[j], 1, `redis-cli -c connected to ${cluster.label(owners[i])} after the MOVED`);
  });

  it('plain ioredis: GET/SET of keys in every slot range', async () => {
    const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, commandTimeout: 3_000 });
    r.on('error', () => undefined);
    try {
      const keys = Array.from({ length: 200 }, (_v, i) => `plain:${i}`);
      const p = r.pipeline();
      for (const k of keys) p.set(k, `p-${k}`);
      const sets = await withTimeout(p.exec(), 5_000, 'pipelined SETs');
      assert.ok(sets !== null && sets.every(([err, v]) => err === null && v === 'OK'));
      for (const k of keys) assert.equal(await r.get(k), `p-${k}`);
      await assertOnOwners(keys, (k) => `p-${k}`);
      // each of the three start ranges got keys
      const slots = await cluster.pipeline(cluster.masters[0], keys.map((k) => ['CLUSTER', 'KEYSLOT', k]));
      for (const [start, end] of cluster.ranges) {
        assert.ok(slots.some((s) => Number(s) >= start && Number(s) <= end), `no key in ${start}-${end}`);
      }
    } finally {
      r.disconnect();
    }
  });
});
