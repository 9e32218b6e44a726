/**
 * The proxy in front of a real Redis Cluster (3 masters, 3 replicas, test/helpers/cluster.ts):
 * keys land on the master that owns their slot; multi-key commands are split and merged across
 * nodes, or refused with Redis's CROSSSLOT; MOVED after a slot migration updates the map, ASK
 * during one does not; read_from_slave sends reads to replicas (and only then); a killed master's
 * replica takes over without the client ever seeing a MOVED; seeds that are down do not stop the
 * proxy; and the proxy shows itself to clients as a one-node cluster.
 *
 * Every placement is checked against Redis itself: slots come from CLUSTER KEYSLOT on a real
 * node, owners from its CLUSTER SLOTS, and values are read straight off the masters.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster, type RedisProc } from '../helpers/cluster.js';
import { Raw, RespErr, assertErr, sleep, type Resp } from '../helpers/raw-client.js';
import { freePort, startRedis, stopAll, waitFor } from '../helpers/servers.js';

const CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot";

/** "k:v" lines of an INFO-like text */
function fields(reply: Resp, what: string): Map<string, string> {
  assert.equal(typeof reply, 'string', `${what}: ${JSON.stringify(reply)}`);
  const out = new Map<string, string>();
  for (const line of (reply as string).split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

function clusterToml(name: string, seeds: string[], extra = ''): string {
  return `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
servers = [${seeds.map((a) => JSON.stringify(a)).join(', ')}]
${extra}`;
}

function start(toml: string): Promise<RunningProxy> {
  return startProxy(parseConfig(toml, 'x.toml').config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
}

function portOf(proxy: RunningProxy, cluster: string): number {
  const l = proxy.listeners.find((x) => x.cluster === cluster);
  assert.ok(l !== undefined, `no listener for ${cluster}`);
  return l.port;
}

/** waits until the proxy on `port` has a full slot map (CLUSTER INFO says ok) */
async function waitReady(port: number, timeoutMs = 10_000): Promise<void> {
  const raw = await Raw.connect(port);
  try {
    await waitFor(async () => fields(await raw.call('CLUSTER', 'INFO'), 'CLUSTER INFO').get('cluster_state') === 'ok', timeoutMs, `the proxy on ${port} to have the slot map`);
  } finally {
    raw.close();
  }
}

/** the proxy's INFO Proxy section as numbers and strings */
async function proxyInfo(raw: Raw): Promise<Map<string, string>> {
  return fields(await raw.call('INFO', 'proxy'), 'INFO proxy');
}

async function counter(raw: Raw, name: string): Promise<number> {
  const v = (await proxyInfo(raw)).get(name);
  assert.ok(v !== undefined, `INFO proxy has no ${name}`);
  return Number(v);
}

/** slot of each key, as a real node computes it */
async function slotsOf(cluster: RedisCluster, keys: string[]): Promise<number[]> {
  const node = cluster.live()[0];
  const out: number[] = [];
  for (let i = 0; i < keys.length; i += 200) {
    const replies = await cluster.pipeline(node, keys.slice(i, i + 200).map((k) => ['CLUSTER', 'KEYSLOT', k]));
    for (const r of replies) {
      assert.equal(typeof r, 'number', `CLUSTER KEYSLOT: ${JSON.stringify(r)}`);
      out.push(r as number);
    }
  }
  return out;
}

/** the owner of each key by the cluster's current CLUSTER SLOTS */
async function ownersOf(cluster: RedisCluster, keys: string[]): Promise<RedisProc[]> {
  const [slots, view] = await Promise.all([slotsOf(cluster, keys), cluster.slots()]);
  return slots.map((slot, i) => {
    const range = view.find((r) => r.start <= slot && slot <= r.end);
    const owner = range === undefined ? undefined : cluster.byAddr(range.master);
    assert.ok(owner !== undefined, `no owner for ${keys[i]} (slot ${slot})`);
    return owner;
  });
}

/** `count` keys named `<prefix>:<n>` for each master, by the cluster's current layout */
async function keysPerMaster(cluster: RedisCluster, prefix: string, count: number): Promise<Map<RedisProc, string[]>> {
  const out = new Map<RedisProc, string[]>();
  for (let batch = 0; batch < 20; batch++) {
    const keys = Array.from({ length: 100 }, (_v, i) => `${prefix}:${batch * 100 + i}`);
    const owners = await ownersOf(cluster, keys);
    owners.forEach((owner, i) => {
      const list = out.get(owner) ?? [];
      if (list.length < count) list.push(keys[i]);
      out.set(owner, list);
    });
    const masters = cluster.live().filter((n) => out.has(n));
    if (masters.length >= cluster.masters.length && [...out.values()].every((l) => l.length >= count)) return out;
  }
  throw new Error(`could not find ${count} keys per master for ${prefix}`);
}

/** calls of one command on a node, from INFO commandstats */
async function calls(cluster: RedisCluster, node: RedisProc, command: string): Promise<number> {
  const stats = await cluster.call(node, 'INFO', 'commandstats');
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(String(stats));
  return m === null ? 0 : Number(m[1]);
}

async function callsOn(cluster: RedisCluster, nodes: RedisProc[], command: string): Promise<number[]> {
  return Promise.all(nodes.map((n) => calls(cluster, n, command)));
}

const minus = (after: number[], before: number[]): number[] => after.map((v, i) => v - before[i]);
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describe('cluster mode: a proxy in front of a 3-master, 3-replica cluster', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  /** listener of cluster "rc" (default read_from_slave = false) */
  let port: number;
  /** listener of cluster "rcs" (read_from_slave = true), same nodes */
  let slavePort: number;
  let raw: Raw;
  const extra: RunningProxy[] = [];

  before(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
    proxy = await start(clusterToml('rc', cluster.addrs()) + '\n' + clusterToml('rcs', cluster.addrs(), 'read_from_slave = true'));
    port = portOf(proxy, 'rc');
    slavePort = portOf(proxy, 'rcs');
    await Promise.all([waitReady(port), waitReady(slavePort)]);
    raw = await Raw.connect(port);
  });

  after(async () => {
    raw?.close();
    for (const p of extra) await p.close();
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  it('routes each key to the master that owns its slot, hash tags included', async () => {
    const keys = Array.from({ length: 300 }, (_v, i) => `route:${i}`);
    const set = await raw.pipeline(keys.map((k) => ['SET', k, `v-${k}`]));
    assert.ok(set.every((r) => r === 'OK'), JSON.stringify(set.find((r) => r !== 'OK')));

    const owners = await ownersOf(cluster, keys);
    const byMaster = new Map<RedisProc, string[]>();
    owners.forEach((o, i) => byMaster.set(o, [...(byMaster.get(o) ?? []), keys[i]]));
    assert.deepEqual(new Set(byMaster.keys()), new Set(cluster.masters), 'every master owns some of the 300 keys');
    for (const [master, mine] of byMaster) {
      assert.ok(mine.length > 0, `${cluster.label(master)} got no key`);
      // straight from the master: a key it does not own would answer MOVED, not the value
      const got = await cluster.pipeline(master, mine.map((k) => ['GET', k]));
      assert.deepEqual(got, mine.map((k) => `v-${k}`), `keys on ${cluster.label(master)}`);
    }
    const back = await raw.pipeline(keys.map((k) => ['GET', k]));
    assert.deepEqual(back, keys.map((k) => `v-${k}`));

    // {user1} keeps keys together: one slot, one master, all there
    const tagged = ['{user1}:name', '{user1}:mail', '{user1}:age', 'x{user1}y'];
    const tagSlots = await slotsOf(cluster, tagged);
    assert.equal(new Set(tagSlots).size, 1, `slots ${tagSlots.join(',')}`);
    assert.deepEqual(await raw.pipeline(tagged.map((k) => ['SET', k, `t-${k}`])), tagged.map(() => 'OK'));
    const owner = (await cluster.ownerOf(tagSlots[0]))!;
    assert.equal(await cluster.call(owner, 'CLUSTER', 'COUNTKEYSINSLOT', tagSlots[0]), tagged.length);
    assert.deepEqual(await cluster.pipeline(owner, tagged.map((k) => ['GET', k])), tagged.map((k) => `t-${k}`));
    assert.deepEqual(await raw.pipeline(tagged.map((k) => ['GET', k])), tagged.map((k) => `t-${k}`));
  });

  it('splits MGET/MSET/DEL/EXISTS/TOUCH/UNLINK over the masters and merges the answers', async () => {
    const per = await keysPerMaster(cluster, 'mk', 2);
    const [a0, a1] = per.get(cluster.masters[0])!;
    const [b0, b1] = per.get(cluster.masters[1])!;
    const [c0, c1] = per.get(cluster.masters[2])!;
    const keys = [a0, b0, c0, a1, b1, c1];
    const missing = 'mk:missing';
    await raw.call('DEL', missing);

    assert.equal(await raw.call('MSET', ...keys.flatMap((k) => [k, `m-${k}`])), 'OK');
    for (const [master, mine] of per) {
      assert.deepEqual(await cluster.pipeline(master, mine.map((k) => ['GET', k])), mine.map((k) => `m-${k}`), cluster.label(master));
    }
    assert.deepEqual(await raw.call('MGET', c0, missing, a0, b0, a1, c1, b1), [`m-${c0}`, null, `m-${a0}`, `m-${b0}`, `m-${a1}`, `m-${c1}`, `m-${b1}`]);
    assert.equal(await raw.call('EXISTS', a0, b0, c0, missing, a0), 4, 'EXISTS counts a repeated key twice, as Redis does');
    assert.equal(await raw.call('TOUCH', a0, b0, c0, missing), 3);
    assert.equal(await raw.call('DEL', a0, b0, missing), 2);
    assert.equal(await raw.call('UNLINK', c0, a1, b1, c1, a0), 4);
    assert.deepEqual(await raw.call('MGET', ...keys), keys.map(() => null));
    for (const [master, mine] of per) {
      assert.deepEqual(await cluster.pipeline(master, mine.map((k) => ['EXISTS', k])), mine.map(() => 0), `deleted on ${cluster.label(master)}`);
    }
  });

  it('refuses a multi-key command over several slots with CROSSSLOT, as Redis, and runs it in one slot', async () => {
    const per = await keysPerMaster(cluster, 'xs', 2);
    const [a0, a1] = per.get(cluster.masters[0])!;
    const [b0] = per.get(cluster.masters[1])!;
    const [slotA0, slotA1] = await slotsOf(cluster, [a0, a1]);
    assert.notEqual(slotA0, slotA1, 'two keys of one master in two slots');

    // what a real node says, for comparison
    assertErr(await cluster.call(cluster.masters[0], 'RENAME', a0, a1), CROSSSLOT, 'a real node');

    await raw.pipeline([['SADD', a0, 'x'], ['SADD', b0, 'y'], ['SET', a1, '1']]);
    assert.deepEqual(await raw.call('SUNIONSTORE', 'xs:dst', a0, b0), new RespErr(CROSSSLOT));
    assert.deepEqual(await raw.call('RENAME', a0, b0), new RespErr(CROSSSLOT));
    // on one node but in two slots: Redis refuses it too
    assert.deepEqual(await raw.call('RENAME', a1, a0), new RespErr(CROSSSLOT));
    assert.deepEqual(await raw.call('SMEMBERS', a0), ['x'], 'nothing was changed');

    // one slot (a hash tag): it runs
    assert.deepEqual(await raw.pipeline([['SADD', '{xs}:a', 'x', 'y'], ['SADD', '{xs}:b', 'y', 'z']]), [2, 2]);
    assert.equal(await raw.call('SUNIONSTORE', '{xs}:d', '{xs}:a', '{xs}:b'), 3);
    assert.equal(await raw.call('RENAME', '{xs}:d', '{xs}:e'), 'OK');
    const members = await raw.call('SMEMBERS', '{xs}:e');
    assert.deepEqual((members as string[]).sort(), ['x', 'y', 'z']);
    const owner = (await ownersOf(cluster, ['{xs}:e']))[0];
    assert.equal(await cluster.call(owner, 'SCARD', '{xs}:e'), 3);
  });

  it('announces its listen address when listen_addr names one, unless --ip says otherwise', async () => {
    /** the address and port CLUSTER SLOTS and CLUSTER NODES announce through a proxy started with `opts` */
    const announced = async (listen: string, opts: { ip: string; ipGiven: boolean }): Promise<[string, number, string]> => {
      const toml = clusterToml('announce', cluster.addrs()).replace('listen_addr = "127.0.0.1:0"', `listen_addr = "${listen}:0"`);
      const p = await startProxy(parseConfig(toml, 'x.toml').config, { ...opts, metricsPort: 0, reload: false, logger: createLogger('silent') });
      extra.push(p);
      const at = portOf(p, 'announce');
      const c = await Raw.connect(at, listen);
      try {
        await waitFor(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the proxy has the slot map');
        const node = ((await c.call('CLUSTER', 'SLOTS')) as Resp[][])[0][2] as Resp[];
        const line = String(await c.call('CLUSTER', 'NODES')).split('\n')[0];
        assert.equal(node[1], at);
        return [String(node[0]), at, line];
      } finally {
        c.close();
      }
    };
    // 127.0.0.2 is loopback, but neither 127.0.0.1 nor the machine's own address: only the
    // listen address can have put it there
    const [ip, at, line] = await announced('127.0.0.2', { ip: '10.9.9.9', ipGiven: false });
    assert.equal(ip, '127.0.0.2');
    assert.ok(line.includes(` 127.0.0.2:${at}@`), line);
    const [given] = await announced('127.0.0.2', { ip: '10.9.9.9', ipGiven: true });
    assert.equal(given, '10.9.9.9');
  });

  it('shows itself as a one-node cluster owning every slot', async () => {
    const slots = await raw.call('CLUSTER', 'SLOTS');
    assert.ok(Array.isArray(slots) && slots.length === 1, JSON.stringify(slots));
    const [range] = slots as Resp[][];
    assert.equal(range.length, 3, JSON.stringify(range));
    assert.equal(range[0], 0);
    assert.equal(range[1], 16383);
    const node = range[2] as Resp[];
    assert.equal(node[0], '127.0.0.1');
    assert.equal(node[1], port);
    assert.match(String(node[2]), /^[0-9a-f]{40}$/);
    assert.deepEqual(node[3], []);
    const id = node[2] as string;

    assert.equal(await raw.call('CLUSTER', 'MYID'), id);
    const nodes = String(await raw.call('CLUSTER', 'NODES'));
    const lines = nodes.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, nodes);
    const f = lines[0].split(' ');
    assert.equal(f[0], id);
    assert.ok(f[1].startsWith(`127.0.0.1:${port}@`), f[1]);
    assert.equal(f[2], 'myself,master');
    assert.equal(f[3], '-');
    assert.equal(f[7], 'connected');
    assert.deepEqual(f.slice(8), ['0-16383']);

    const info = fields(await raw.call('CLUSTER', 'INFO'), 'CLUSTER INFO');
    assert.equal(info.get('cluster_state'), 'ok');
    assert.equal(info.get('cluster_known_nodes'), '1');
    assert.equal(info.get('cluster_size'), '1');
    assert.equal(info.get('cluster_slots_assigned'), '16384');
    assert.equal(info.get('cluster_slots_ok'), '16384');

    assert.equal(await raw.call('CLUSTER', 'KEYSLOT', 'foo'), 12182);
    for (const key of ['foo', '{user1}:x', 'bar', '', 'a{}b']) {
      assert.equal(await raw.call('CLUSTER', 'KEYSLOT', key), await cluster.call(cluster.masters[0], 'CLUSTER', 'KEYSLOT', key), `KEYSLOT ${key}`);
    }

    // CLUSTER SHARDS: the shape a real node gives (RESP2: maps as flat key/value arrays)
    const shards = await raw.call('CLUSTER', 'SHARDS');
    const real = await cluster.call(cluster.masters[0], 'CLUSTER', 'SHARDS');
    assert.ok(Array.isArray(shards) && shards.length === 1, JSON.stringify(shards));
    assert.ok(Array.isArray(real) && real.length === 3, JSON.stringify(real));
    const asMap = (flat: Resp): Map<string, Resp> => {
      assert.ok(Array.isArray(flat) && flat.length % 2 === 0, JSON.stringify(flat));
      const m = new Map<string, Resp>();
      for (let i = 0; i < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
      return m;
    };
    const shard = asMap(shards[0]);
    const realShard = asMap(real[0]);
    assert.deepEqual([...shard.keys()], [...realShard.keys()]);
    assert.deepEqual(shard.get('slots'), [0, 16383]);
    const shardNodes = shard.get('nodes') as Resp[];
    assert.equal(shardNodes.length, 1);
    const me = asMap(shardNodes[0]);
    const realNode = asMap((realShard.get('nodes') as Resp[])[0]);
    for (const k of me.keys()) assert.ok(realNode.has(k), `a real shard node has no ${k}: ${JSON.stringify([...realNode.keys()])}`);
    for (const k of ['id', 'port', 'ip', 'endpoint', 'role', 'replication-offset', 'health']) assert.ok(me.has(k), `no ${k}`);
    assert.equal(me.get('id'), id);
    assert.equal(me.get('port'), port);
    assert.equal(me.get('ip'), '127.0.0.1');
    assert.equal(me.get('role'), 'master');
    assert.equal(me.get('health'), 'online');

    assert.equal(await raw.call('READONLY'), 'OK');
    assert.equal(await raw.call('SET', 'ro:k', 'v'), 'OK', 'READONLY does not make the proxy refuse writes');
    assert.equal(await raw.call('READWRITE'), 'OK');
  });

  it('answers CLUSTER SLOTS as a standalone redis does when in twemproxy mode', async () => {
    const server = await startRedis();
    const p = await start(`[[clusters]]
name = "sa"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${server.port}:1"]
`);
    extra.push(p);
    const c = await Raw.connect(portOf(p, 'sa'));
    const direct = await Raw.connect(server.port);
    try {
      const mine = await c.call('CLUSTER', 'SLOTS');
      assert.deepEqual(mine, new RespErr('ERR This instance has cluster support disabled'));
      assert.deepEqual(mine, await direct.call('CLUSTER', 'SLOTS'), 'the same as a standalone redis-server');
      assertErr(await c.call('READONLY'), 'ERR This instance has cluster support disabled');
    } finally {
      c.close();
      direct.close();
    }
  });

  it('read_from_slave = true: reads go to the replicas, writes to the masters; off, replicas get no read', async () => {
    const per = await keysPerMaster(cluster, 'rs', 10);
    const keys = [...per.values()].flat();
    const masters = cluster.masters;
    const replicas = cluster.replicas;
    const slave = await Raw.connect(slavePort);
    try {
      // writes through the read_from_slave listener: all on masters, none redirected
      const movedBefore = await counter(slave, 'redirects_moved');
      const setBefore = await callsOn(cluster, masters, 'set');
      const set = await slave.pipeline(keys.map((k) => ['SET', k, `r-${k}`]));
      assert.ok(set.every((r) => r === 'OK'), JSON.stringify(set.find((r) => r !== 'OK')));
      assert.equal(sum(minus(await callsOn(cluster, masters, 'set'), setBefore)), keys.length, 'every SET executed by a master');
      assert.equal(await counter(slave, 'redirects_moved'), movedBefore, 'no SET was sent to a replica (it would have answered MOVED)');
      // the replicas have the values before we read them there
      await waitFor(async () => {
        for (const [i, master] of masters.entries()) {
          const mine = per.get(master)!;
          const got = await cluster.pipeline(replicas[i], [['READONLY'], ...mine.map((k) => ['GET', k])]);
          if (got.slice(1).some((v, j) => v !== `r-${mine[j]}`)) return false;
        }
        return true;
      }, 10_000, 'the replicas to have the values');

      const n = 60;
      const getM = await callsOn(cluster, masters, 'get');
      const getR = await callsOn(cluster, replicas, 'get');
      const mgetM = await callsOn(cluster, masters, 'mget');
      const mgetR = await callsOn(cluster, replicas, 'mget');
      const reads = Array.from({ length: n }, (_v, i) => keys[i % keys.length]);
      assert.deepEqual(await slave.pipeline(reads.map((k) => ['GET', k])), reads.map((k) => `r-${k}`));
      const mgetKeys = [per.get(masters[0])![0], per.get(masters[1])![0], per.get(masters[2])![0]];
      assert.deepEqual(await slave.call('MGET', ...mgetKeys), mgetKeys.map((k) => `r-${k}`));

      const dGetM = minus(await callsOn(cluster, masters, 'get'), getM);
      const dGetR = minus(await callsOn(cluster, replicas, 'get'), getR);
      const dMgetM = minus(await callsOn(cluster, masters, 'mget'), mgetM);
      const dMgetR = minus(await callsOn(cluster, replicas, 'mget'), mgetR);
      assert.deepEqual(dGetM, [0, 0, 0], 'masters served no GET');
      assert.equal(sum(dGetR), n, `replicas served the ${n} GETs (${dGetR.join(', ')})`);
      assert.ok(dGetR.every((d) => d > 0), `every replica served some GETs (${dGetR.join(', ')})`);
      assert.deepEqual(dMgetM, [0, 0, 0], 'masters served no MGET part');
      assert.deepEqual(dMgetR, [1, 1, 1], 'each replica served its MGET part');

      // the default listener: every read on the masters, none on the replicas
      const getM2 = await callsOn(cluster, masters, 'get');
      const getR2 = await callsOn(cluster, replicas, 'get');
      assert.deepEqual(await raw.pipeline(reads.map((k) => ['GET', k])), reads.map((k) => `r-${k}`));
      assert.deepEqual(minus(await callsOn(cluster, replicas, 'get'), getR2), [0, 0, 0], 'without read_from_slave replicas get no GET');
      assert.equal(sum(minus(await callsOn(cluster, masters, 'get'), getM2)), n);
    } finally {
      slave.close();
    }
  });

  it('follows MOVED after a slot migration and updates its map (one redirect, not one per request)', async () => {
    const key = 'moved:key';
    assert.equal(await raw.call('SET', key, 'before-move'), 'OK');
    await raw.pipeline([['SET', '{moved:key}:a', 'a'], ['SET', '{moved:key}:b', 'b']]); // other slots' keys are left alone
    const [slot] = await slotsOf(cluster, [key]);
    const from = (await cluster.ownerOf(slot))!;
    const to = cluster.masters.find((m) => m !== from)!;
    const moved0 = await counter(raw, 'redirects_moved');

    await cluster.moveSlot(slot, from, to);
    assert.equal(await cluster.call(to, 'GET', key), 'before-move', 'the key moved with its slot');

    assert.equal(await raw.call('GET', key), 'before-move');
    const moved1 = await counter(raw, 'redirects_moved');
    assert.ok(moved1 >= moved0 + 1, `redirects_moved ${moved0} -> ${moved1}`);
    assert.equal(await raw.call('GET', key), 'before-move');
    assert.equal(await raw.call('SET', key, 'after-move'), 'OK');
    assert.equal(await counter(raw, 'redirects_moved'), moved1, 'the map was updated: no more MOVED for the slot');
    assert.equal(await cluster.call(to, 'GET', key), 'after-move', 'the write went to the new owner');
    assert.deepEqual(await raw.call('MGET', '{moved:key}:a', '{moved:key}:b'), ['a', 'b']);
  });

  it('follows ASK during a migration without changing its map, and serves the slot after it', async () => {
    const keys = Array.from({ length: 8 }, (_v, i) => `{ask}:${i}`);
    assert.deepEqual(await raw.pipeline(keys.map((k) => ['SET', k, `a-${k}`])), keys.map(() => 'OK'));
    const [slot] = await slotsOf(cluster, [keys[0]]);
    const from = (await cluster.ownerOf(slot))!;
    const to = cluster.masters.find((m) => m !== from)!;
    const ask0 = await counter(raw, 'redirects_ask');
    const moved0 = await counter(raw, 'redirects_moved');

    await cluster.beginMigration(slot, from, to);
    try {
      assert.equal(await cluster.migrateKeys(slot, from, to, keys.slice(0, 4)), 4);
      assertErr(await cluster.call(from, 'GET', keys[0]), `ASK ${slot} `, 'the old owner redirects a migrated key');

      assert.equal(await raw.call('GET', keys[0]), `a-${keys[0]}`, 'a migrated key');
      const ask1 = await counter(raw, 'redirects_ask');
      assert.ok(ask1 >= ask0 + 1, `redirects_ask ${ask0} -> ${ask1}`);
      assert.equal(await raw.call('GET', keys[6]), `a-${keys[6]}`, 'a key not migrated yet');
      assert.equal(await counter(raw, 'redirects_ask'), ask1, 'the old owner still served the key it holds');
      assert.equal(await raw.call('GET', '{ask}:never-set'), null, 'a key nobody has (ASK, then nil from the new owner)');
      const ask2 = await counter(raw, 'redirects_ask');
      assert.ok(ask2 >= ask1 + 1);
      // ASK does not move the slot in the map: the same key is asked for again
      assert.equal(await raw.call('GET', keys[0]), `a-${keys[0]}`);
      assert.ok((await counter(raw, 'redirects_ask')) >= ask2 + 1, 'a second GET of the migrated key is redirected again');
      assert.equal(await counter(raw, 'redirects_moved'), moved0, 'no MOVED during the migration');
      // several keys of the slot: served by the new owner when all are there; split over both
      // owners, Redis answers TRYAGAIN, which the proxy retries (after 25, 50... ms) and then passes on
      assert.deepEqual(await raw.call('MGET', keys[1], keys[2]), [`a-${keys[1]}`, `a-${keys[2]}`]);
      const tryagain0 = await counter(raw, 'redirects_tryagain');
      assertErr(await raw.call('MGET', keys[1], keys[5]), 'TRYAGAIN', 'keys on both sides of a migration');
      assert.ok((await counter(raw, 'redirects_tryagain')) > tryagain0 + 1, 'the proxy retried the TRYAGAIN before passing it on');

      assert.equal(await cluster.migrateKeys(slot, from, to), 4);
    } catch (err) {
      await cluster.abortMigration(slot, from, to).catch(() => undefined);
      throw err;
    }
    await cluster.finishMigration(slot, from, to);
    assert.deepEqual(await raw.pipeline(keys.map((k) => ['GET', k])), keys.map((k) => `a-${k}`));
    assert.deepEqual(await cluster.pipeline(to, keys.map((k) => ['GET', k])), keys.map((k) => `a-${k}`), 'all on the new owner');
  });

  it('starts with every seed down: listens, answers CLUSTERDOWN and cluster_state:fail, never crashes', async () => {
    const dead = [await freePort(), await freePort()].map((p) => `127.0.0.1:${p}`);
    const p = await start(clusterToml('down', dead, 'read_timeout = 500\nwrite_timeout = 300'));
    extra.push(p);
    const c = await Raw.connect(portOf(p, 'down'));
    try {
      const deadline = Date.now() + 2_000;
      for (let round = 0; round < 20 && Date.now() < deadline; round++) {
        const [get, set, del, info, pong] = await c.pipeline([['GET', 'foo'], ['SET', 'foo', 'bar'], ['DEL', 'a'], ['CLUSTER', 'INFO'], ['PING']]);
        assertErr(get, 'CLUSTERDOWN', `GET, round ${round}`);
        assertErr(set, 'CLUSTERDOWN', `SET, round ${round}`);
        assertErr(del, 'CLUSTERDOWN', `DEL, round ${round}`);
        assert.equal(fields(info, 'CLUSTER INFO').get('cluster_state'), 'fail');
        assert.equal(pong, 'PONG');
        await sleep(200);
      }
      const info = await proxyInfo(c);
      assert.equal(info.get('slots_covered'), '0');
      assert.ok(Number(info.get('topology_fetch_failures')) >= 1, `topology_fetch_failures ${info.get('topology_fetch_failures')}`);
      assert.ok(!c.closed);
    } finally {
      c.close();
    }
  });

  it('skips a dead seed and loads the map from a live one', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const p = await start(clusterToml('oneseed', [dead, cluster.addr(cluster.masters[1])]));
    extra.push(p);
    const port2 = portOf(p, 'oneseed');
    await waitReady(port2);
    const c = await Raw.connect(port2);
    try {
      const per = await keysPerMaster(cluster, 'seed', 3);
      const keys = [...per.values()].flat();
      assert.deepEqual(await c.pipeline(keys.map((k) => ['SET', k, `s-${k}`])), keys.map(() => 'OK'));
      assert.deepEqual(await c.pipeline(keys.map((k) => ['GET', k])), keys.map((k) => `s-${k}`));
      for (const [master, mine] of per) assert.deepEqual(await cluster.pipeline(master, mine.map((k) => ['GET', k])), mine.map((k) => `s-${k}`));
      const info = await proxyInfo(c);
      assert.equal(info.get('masters'), '3');
      assert.equal(info.get('slots_covered'), '16384');
    } finally {
      c.close();
    }
  });

  // last in this cluster: it kills a replica
  it('read_from_slave: reads of a slot whose replica died are answered by its master', async () => {
    const slave = await Raw.connect(slavePort);
    try {
      const master = cluster.masters[2]; // still owns most of its start range after the moves above
      const [replica] = cluster.replicasOf(2);
      const per = await keysPerMaster(cluster, 'fb', 5);
      const mine = per.get(master)!;
      assert.deepEqual(await slave.pipeline(mine.map((k) => ['SET', k, `b-${k}`])), mine.map(() => 'OK'));
      await waitFor(async () => {
        const got = await cluster.pipeline(replica, [['READONLY'], ...mine.map((k) => ['GET', k])]);
        return got.slice(1).every((v, j) => v === `b-${mine[j]}`);
      }, 10_000, 'the replica to have the values');
      const onReplica = await calls(cluster, replica, 'get');
      assert.deepEqual(await slave.pipeline(mine.map((k) => ['GET', k])), mine.map((k) => `b-${k}`));
      assert.equal((await calls(cluster, replica, 'get')) - onReplica, mine.length, 'served by the replica while it lives');

      replica.kill('SIGKILL');
      await waitFor(() => !replica.alive, 5_000, 'the replica to exit');
      const onMaster = await calls(cluster, master, 'get');
      // right after the kill (the proxy may not have seen the close yet) and a while later
      for (let round = 0; round < 5; round++) {
        assert.deepEqual(await slave.pipeline(mine.map((k) => ['GET', k])), mine.map((k) => `b-${k}`), `round ${round}`);
        await sleep(100);
      }
      assert.ok((await calls(cluster, master, 'get')) - onMaster >= mine.length, 'the master answered the reads');
    } finally {
      slave.close();
    }
  });
});

describe('cluster mode: a killed master, a seed back from the dead', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  let client: Redis | undefined;
  const extras: RunningProxy[] = [];

  before(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
    proxy = await start(clusterToml('fo', cluster.addrs()));
    await waitReady(portOf(proxy, 'fo'));
  });

  after(async () => {
    client?.disconnect();
    for (const p of extras) await p.close();
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  it('serves every key again soon after the replica is promoted, with no MOVED reaching the client', { timeout: 60_000 }, async (t) => {
    const port = portOf(proxy, 'fo');
    const per = await keysPerMaster(cluster, 'fo', 10);
    const keys = [...per.values()].flat();
    const value = (k: string): string => `f-${k}`;
    const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, commandTimeout: 2_000, enableOfflineQueue: false });
    client = c;
    c.on('error', () => undefined);
    await waitFor(() => c.status === 'ready', 5_000, 'ioredis to connect');
    for (const k of keys) assert.equal(await c.set(k, value(k)), 'OK');

    const errors: string[] = [];
    const wrong: string[] = [];
    let stop = false;
    let done = 0;
    const traffic = (async () => {
      for (let i = 0; i < 50_000 && !stop; i++) {
        const k = keys[i % keys.length];
        try {
          if (i % 2 === 0) await c.set(k, value(k));
          else {
            const v = await c.get(k);
            if (v !== value(k)) wrong.push(`${k}=${String(v)}`);
          }
          done++;
        } catch (err) {
          errors.push((err as Error).message);
          await sleep(20); // a failing node answers at once: do not spin
        }
      }
    })();

    await sleep(300);
    const dead = cluster.masters[0];
    const promoted = await cluster.killMasterAndWaitFailover(0);
    const promotedAt = Date.now();
    assert.equal(promoted, cluster.replicas[0]);

    // every key answers again, through the same proxy, within a few seconds
    await waitFor(
      async () => {
        const got = await Promise.all(keys.map((k) => c.get(k).catch((err: Error) => `error: ${err.message}`)));
        for (const g of got) if (typeof g === 'string' && g.startsWith('error: ')) errors.push(g.slice(7));
        return got.every((g, i) => g === value(keys[i]));
      },
      10_000,
      'every key to answer after the failover',
    );
    t.diagnostic(`all keys answered ${Date.now() - promotedAt} ms after the promotion was seen`);
    stop = true;
    await traffic;
    t.diagnostic(`traffic: ${done} answered, ${errors.length} errors (${[...new Set(errors.map((e) => e.replace(/\d+/g, 'N')))].join('; ')})`);

    assert.ok(done > 0);
    assert.deepEqual(wrong, [], 'no read answered a wrong value');
    const redirects = errors.filter((e) => /^(MOVED|ASK) /.test(e));
    assert.deepEqual(redirects, [], 'no redirect reached the client');

    // writes work on every key, on the new master too
    for (const k of keys) assert.equal(await c.set(k, `after-${k}`), 'OK');
    assert.deepEqual(await c.mget(...keys), keys.map((k) => `after-${k}`));
    const mine = per.get(dead)!;
    assert.deepEqual(await cluster.pipeline(promoted, mine.map((k) => ['GET', k])), mine.map((k) => `after-${k}`), 'the promoted replica holds the old master\'s keys');

    const info = String(await c.info('proxy'));
    assert.match(info, new RegExp(`addr=127\\.0\\.0\\.1:${promoted.port},`), info);
    assert.doesNotMatch(info, new RegExp(`addr=127\\.0\\.0\\.1:${dead.port},`), info);
    assert.match(info, /slots_covered:16384/);
  });

  it('recovers by itself when its only seed, down at start, comes back', { timeout: 30_000 }, async () => {
    const seed = cluster.replicas[1];
    seed.kill('SIGKILL');
    await waitFor(() => !seed.alive, 5_000, 'the seed to exit');
    const p = await start(clusterToml('late', [cluster.addr(seed)], 'write_timeout = 300'));
    extras.push(p);
    const c = await Raw.connect(portOf(p, 'late'));
    try {
      assertErr(await c.call('GET', 'fo:late'), 'CLUSTERDOWN', 'no map yet');
      assert.equal(fields(await c.call('CLUSTER', 'INFO'), 'CLUSTER INFO').get('cluster_state'), 'fail');
      await seed.restart(); // same port, same dir: it comes back with its nodes.conf
      await waitFor(async () => fields(await c.call('CLUSTER', 'INFO'), 'CLUSTER INFO').get('cluster_state') === 'ok', 10_000, 'the proxy to load the map from the seed');
      const per = await keysPerMaster(cluster, 'late', 3);
      const keys = [...per.values()].flat();
      assert.deepEqual(await c.pipeline(keys.map((k) => ['SET', k, `l-${k}`])), keys.map(() => 'OK'));
      assert.deepEqual(await c.pipeline(keys.map((k) => ['GET', k])), keys.map((k) => `l-${k}`));
      for (const [master, mine] of per) assert.deepEqual(await cluster.pipeline(master, mine.map((k) => ['GET', k])), mine.map((k) => `l-${k}`), cluster.label(master));
    } finally {
      c.close();
    }
  });
});
