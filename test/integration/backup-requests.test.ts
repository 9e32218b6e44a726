/**
 * Backup requests against a real Redis Cluster (3 masters, 3 replicas, test/helpers/cluster.ts):
 * a master slowed by `DEBUG SLEEP` has its reads answered by its replica long before it wakes,
 * while writes, GETDEL and GETEX wait for it and never reach the replica; a healthy cluster gets
 * no backups; the budget stops them after the burst; the threshold may come from the master's
 * recent latency (no trigger_slow_ms); nothing changes when the feature is off; and a replica that
 * dies during or before a race leaves the master's answer to the client.
 *
 * What reached a replica is read off the replica itself: a write sent to a replica over a
 * READONLY connection is answered with MOVED, which Redis counts as a `rejected_calls` of that
 * command in INFO commandstats. Sleeps are 1 s; a read "answered by the replica" must come back
 * within 600 ms (the threshold is 50 ms), a read or write "waiting for the master" takes at least
 * 500 ms. The cluster's node timeout is 5 s, so a 1 s sleep never makes a node look failed.
 */

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster, type RedisProc } from '../helpers/cluster.js';
import { Raw, RespErr, sleep, type Resp } from '../helpers/raw-client.js';
import { freePort, stopAll, waitFor } from '../helpers/servers.js';

/** how long a master (or replica) is put to sleep */
const SLEEP_S = 1;
/** a read answered by the replica: well before the sleep ends */
const FAST_MS = 600;
/** a request that waited for the sleeping master */
const WAITED_MS = 500;
/** time for DEBUG SLEEP to reach the server and start before the requests that should meet it */
const SLEEP_START_MS = 100;

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

interface Backups {
  enabled: number;
  planned: number;
  dispatched: number;
  exhausted: number;
  primaryWins: number;
  replicaWins: number;
}

/** the backup counters of INFO proxy */
async function backups(raw: Raw): Promise<Backups> {
  const f = fields(await raw.call('INFO', 'proxy'), 'INFO proxy');
  const n = (name: string): number => {
    const v = f.get(name);
    assert.ok(v !== undefined, `INFO proxy has no ${name}`);
    return Number(v);
  };
  return {
    enabled: n('backup_requests'),
    planned: n('backup_planned'),
    dispatched: n('backup_dispatched'),
    exhausted: n('backup_exhausted'),
    primaryWins: n('backup_primary_wins'),
    replicaWins: n('backup_replica_wins'),
  };
}

const delta = (later: Backups, earlier: Backups): Backups => ({
  enabled: later.enabled,
  planned: later.planned - earlier.planned,
  dispatched: later.dispatched - earlier.dispatched,
  exhausted: later.exhausted - earlier.exhausted,
  primaryWins: later.primaryWins - earlier.primaryWins,
  replicaWins: later.replicaWins - earlier.replicaWins,
});

/** one sample of a Prometheus text, e.g. sample(text, 'aster_backup_request_total{cluster="x",event="planned"}') */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(res.status, 200);
  return res.text();
}

/** one command's calls, rejected and failed calls on a node, from INFO commandstats (zeros if never seen) */
async function cmdstat(cluster: RedisCluster, node: RedisProc, command: string): Promise<{ calls: number; rejected: number; failed: number }> {
  const text = String(await cluster.call(node, 'INFO', 'commandstats'));
  const line = new RegExp(`^cmdstat_${command}:(.*)$`, 'm').exec(text)?.[1] ?? '';
  const get = (name: string): number => Number(new RegExp(`(?:^|,)${name}=(\\d+)`).exec(line)?.[1] ?? 0);
  return { calls: get('calls'), rejected: get('rejected_calls'), failed: get('failed_calls') };
}

/** `count` keys named `<prefix>:<n>` whose slots belong to masters[i] (as a real node computes the slots) */
async function keysOn(cluster: RedisCluster, i: number, prefix: string, count: number): Promise<string[]> {
  const [first, last] = cluster.ranges[i];
  const out: string[] = [];
  for (let batch = 0; batch < 20 && out.length < count; batch++) {
    const keys = Array.from({ length: 50 }, (_v, j) => `${prefix}:${batch * 50 + j}`);
    const slots = await cluster.pipeline(cluster.live()[0], keys.map((k) => ['CLUSTER', 'KEYSLOT', k]));
    slots.forEach((slot, j) => {
      if (typeof slot === 'number' && slot >= first && slot <= last && out.length < count) out.push(keys[j]);
    });
  }
  assert.equal(out.length, count, `keys of masters[${i}] for ${prefix}`);
  return out;
}

/** waits until masters[i]'s write stream reached its replica (WAIT 1) */
async function replicated(cluster: RedisCluster, i: number): Promise<void> {
  assert.equal(await cluster.call(cluster.masters[i], 'WAIT', 1, 3_000), 1, `masters[${i}]'s replica acknowledged the writes`);
}

/**
 * `DEBUG SLEEP` on `node` over a connection of its own; resolves once the sleep has had time to
 * start. `ended` resolves when the node has answered (null) or with the error seen.
 */
async function slowDown(node: RedisProc, seconds = SLEEP_S): Promise<{ ended: Promise<Error | null> }> {
  const raw = await Raw.connect(node.port);
  const i = raw.sendNoWait('DEBUG', 'SLEEP', String(seconds));
  const ended = raw
    .waitReplies(i + 1, seconds * 1000 + 5_000)
    .then(() => (raw.replies[i] === 'OK' ? null : new Error(`DEBUG SLEEP replied ${JSON.stringify(raw.replies[i])}`)))
    .catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))
    .finally(() => raw.close());
  await sleep(SLEEP_START_MS);
  return { ended };
}

/** one command on its own connection, timed from send to reply */
async function timed(port: number, ...args: Array<string | number>): Promise<{ reply: Resp; ms: number }> {
  const raw = await Raw.connect(port);
  try {
    const t0 = performance.now();
    const reply = await raw.call(...args);
    return { reply, ms: performance.now() - t0 };
  } finally {
    raw.close();
  }
}

describe('backup requests: reads of a slow master answered by its replica', { timeout: 90_000 }, () => {
  let cluster: RedisCluster;
  const proxies: RunningProxy[] = [];
  const raws: Raw[] = [];

  interface Started {
    port: number;
    /** a client connection for INFO and setup */
    raw: Raw;
    metricsPort: number;
  }

  /** a proxy in front of the cluster as cluster `name`, with `backup` as its [clusters.backup_request] table (none: off) */
  async function proxyWith(name: string, backup: string | null): Promise<Started> {
    const metricsPort = await freePort();
    const toml = `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
read_timeout = 3000
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
${backup === null ? '' : `[clusters.backup_request]\n${backup}\n`}`;
    const proxy = await startProxy(parseConfig(toml, `${name}.toml`).config, { ip: '127.0.0.1', metricsPort, reload: false, logger: createLogger('silent') });
    proxies.push(proxy);
    const port = proxy.listeners[0].port;
    const raw = await Raw.connect(port);
    raws.push(raw);
    await waitFor(async () => fields(await raw.call('CLUSTER', 'INFO'), 'CLUSTER INFO').get('cluster_state') === 'ok', 10_000, `proxy ${name} to have the slot map`);
    return { port, raw, metricsPort: proxy.metricsPort ?? metricsPort };
  }

  /** SETs each key to `<key>=v` through the proxy and waits for the replica of masters[i] */
  async function seed(p: Started, i: number, keys: string[]): Promise<void> {
    const replies = await p.raw.pipeline(keys.map((k) => ['SET', k, `${k}=v`]));
    assert.deepEqual(replies, keys.map(() => 'OK'));
    await replicated(cluster, i);
  }

  before(async () => {
    cluster = await startCluster({ nodeTimeoutMs: 5_000, args: ['--enable-debug-command', 'yes'] });
  });
  after(async () => {
    for (const r of raws) r.close();
    await Promise.all(proxies.map((p) => p.close()));
    await cluster?.stop();
    await stopAll();
  });

  it('a slowed master: reads (GET, HGET, an MGET part) come from the replica at once, a SET waits for the master and never reaches the replica', async () => {
    const p = await proxyWith('bk_slow', 'enabled = true\ntrigger_slow_ms = 50\nbudget_percent = 10');
    const m = cluster.masters[0];
    const replica = cluster.replicasOf(0)[0];
    const keys = await keysOn(cluster, 0, 'slow', 5);
    const [other] = await keysOn(cluster, 1, 'slow-other', 1);
    const gets = keys.slice(0, 3);
    const [hash, written] = keys.slice(3);
    await seed(p, 0, [...gets, written]);
    assert.equal(await p.raw.call('HSET', hash, 'f', 'hv'), 1);
    assert.equal(await p.raw.call('SET', other, 'ov'), 'OK');
    await replicated(cluster, 0);
    // the shared connection to every master is open, and the latency is fast
    for (const k of gets) assert.equal(await p.raw.call('GET', k), `${k}=v`);
    const before0 = await backups(p.raw);
    const replicaSetBefore = await cmdstat(cluster, replica, 'set');

    const { ended } = await slowDown(m);
    const reads: Array<Array<string | number>> = [...gets.map((k) => ['GET', k]), ['HGET', hash, 'f'], ['MGET', gets[0], other, gets[1]]];
    const [readResults, write] = await Promise.all([
      Promise.all(reads.map((cmd) => timed(p.port, ...cmd))),
      timed(p.port, 'SET', written, 'new'),
    ]);
    assert.equal(await ended, null);

    const expected: Resp[] = [...gets.map((k) => `${k}=v`), 'hv', [`${gets[0]}=v`, 'ov', `${gets[1]}=v`]];
    readResults.forEach((r, j) => {
      assert.deepEqual(r.reply, expected[j], `${reads[j].join(' ')}`);
      assert.ok(r.ms < FAST_MS, `${reads[j].join(' ')} took ${r.ms.toFixed(0)} ms while the master slept ${SLEEP_S} s: not answered by the replica`);
    });
    assert.equal(write.reply, 'OK', `SET during the sleep: ${JSON.stringify(write.reply)}`);
    assert.ok(write.ms >= WAITED_MS, `SET took ${write.ms.toFixed(0)} ms: it cannot have been answered by the sleeping master`);
    assert.equal(await cluster.call(m, 'GET', written), 'new');

    // 3 GET + HGET + the MGET's part on masters[0]: 5 races the replica won
    const d = delta(await backups(p.raw), before0);
    assert.ok(d.replicaWins >= 5, `replica wins ${JSON.stringify(d)}`);
    assert.ok(d.dispatched >= d.replicaWins && d.planned >= d.dispatched, JSON.stringify(d));
    assert.equal(d.exhausted, 0, JSON.stringify(d));

    // the SET reached the replica only by replication: a SET sent to it would be rejected (MOVED)
    const replicaSet = await cmdstat(cluster, replica, 'set');
    assert.equal(replicaSet.rejected, replicaSetBefore.rejected, 'a SET was sent to the replica');
    assert.equal(replicaSet.failed, replicaSetBefore.failed, 'a SET failed on the replica');

    const after0 = await backups(p.raw);
    const text = await scrape(p.metricsPort);
    const series = (event: string): number | undefined => sample(text, `aster_backup_request_total{cluster="bk_slow",event="${event}"}`);
    assert.equal(series('replica_win'), after0.replicaWins, text);
    assert.ok((series('replica_win') ?? 0) >= 5);
    assert.equal(series('dispatched'), after0.dispatched);
    assert.equal(series('planned'), after0.planned);
    assert.equal(series('exhausted'), after0.exhausted);
    assert.equal(series('primary_win'), after0.primaryWins);
  });

  it('a healthy cluster: reads are answered by the masters, no backup goes out for fast answers', async () => {
    const p = await proxyWith('bk_healthy', 'enabled = true\ntrigger_slow_ms = 50');
    const keys = (await Promise.all([0, 1, 2].map((i) => keysOn(cluster, i, 'healthy', 4)))).flat();
    const replies = await p.raw.pipeline(keys.map((k) => ['SET', k, `${k}=v`]));
    assert.deepEqual(replies, keys.map(() => 'OK'));
    const b0 = await backups(p.raw);
    const mastersBefore = await Promise.all(cluster.masters.map((n) => cmdstat(cluster, n, 'get')));
    const replicasBefore = await Promise.all(cluster.replicas.map((n) => cmdstat(cluster, n, 'get')));

    const rounds = 20;
    for (let round = 0; round < rounds; round++) {
      const got = await p.raw.pipeline(keys.map((k) => ['GET', k]));
      assert.deepEqual(got, keys.map((k) => `${k}=v`));
    }
    const reads = rounds * keys.length;
    const d = delta(await backups(p.raw), b0);
    const mastersAfter = await Promise.all(cluster.masters.map((n) => cmdstat(cluster, n, 'get')));
    const replicasAfter = await Promise.all(cluster.replicas.map((n) => cmdstat(cluster, n, 'get')));
    const onMasters = mastersAfter.reduce((s, x, i) => s + x.calls - mastersBefore[i].calls, 0);
    const onReplicas = replicasAfter.reduce((s, x, i) => s + x.calls - replicasBefore[i].calls, 0);
    // a stall of the shared 2-core machine may push a read past 50 ms now and then: "tiny", not 0
    const tiny = Math.ceil(reads * 0.02);
    assert.ok(d.planned <= tiny, `${reads} fast reads planned ${d.planned} backups (${JSON.stringify(d)})`);
    assert.equal(onMasters, reads, 'every read went to its master');
    assert.equal(onReplicas, d.dispatched, 'a replica got exactly the backups dispatched');
    assert.equal(d.exhausted, 0);
  });

  it('GETDEL and GETEX are not backed up: they wait for the slowed master, and the value is deleted once', async () => {
    const p = await proxyWith('bk_nonread', 'enabled = true\ntrigger_slow_ms = 50');
    const m = cluster.masters[0];
    const replica = cluster.replicasOf(0)[0];
    const [delKey, exKey, readKey] = await keysOn(cluster, 0, 'nonread', 3);
    await seed(p, 0, [delKey, exKey, readKey]);
    const statsBefore = await Promise.all(['getdel', 'getex'].map((c) => cmdstat(cluster, replica, c)));
    const b0 = await backups(p.raw);

    const { ended } = await slowDown(m);
    const [getdel, getex, get] = await Promise.all([timed(p.port, 'GETDEL', delKey), timed(p.port, 'GETEX', exKey, 'EX', 100), timed(p.port, 'GET', readKey)]);
    assert.equal(await ended, null);

    // the GET shows that backups were on and working during the sleep
    assert.equal(get.reply, `${readKey}=v`);
    assert.ok(get.ms < FAST_MS, `GET took ${get.ms.toFixed(0)} ms`);
    assert.equal(getdel.reply, `${delKey}=v`);
    assert.ok(getdel.ms >= WAITED_MS, `GETDEL took ${getdel.ms.toFixed(0)} ms: not answered by the sleeping master`);
    assert.equal(getex.reply, `${exKey}=v`);
    assert.ok(getex.ms >= WAITED_MS, `GETEX took ${getex.ms.toFixed(0)} ms: not answered by the sleeping master`);

    // deleted exactly once, on the master; the TTL set there
    assert.equal(await p.raw.call('GETDEL', delKey), null);
    assert.equal(await cluster.call(m, 'EXISTS', delKey), 0);
    const ttl = await cluster.call(m, 'TTL', exKey);
    assert.ok(typeof ttl === 'number' && ttl > 90 && ttl <= 100, `TTL ${JSON.stringify(ttl)}`);
    // neither command was sent to the replica (it would have rejected it with MOVED)
    const statsAfter = await Promise.all(['getdel', 'getex'].map((c) => cmdstat(cluster, replica, c)));
    assert.deepEqual(statsAfter, statsBefore, 'GETDEL/GETEX reached the replica');
    const d = delta(await backups(p.raw), b0);
    assert.ok(d.replicaWins >= 1, JSON.stringify(d));
  });

  it('budget_percent = 0, burst = 4: the burst of 4 backups goes out, later due backups are exhausted and wait for the master', async () => {
    const p = await proxyWith('bk_budget', 'enabled = true\ntrigger_slow_ms = 50\nbudget_percent = 0\nburst = 4');
    const m = cluster.masters[0];
    const keys = await keysOn(cluster, 0, 'budget', 15);
    await seed(p, 0, keys);
    // opens the connection to the master (a slow first connect could spend a token: counted below)
    assert.equal(await p.raw.call('GET', keys[0]), `${keys[0]}=v`);
    const b0 = await backups(p.raw);
    // every backup action took a token (dispatched, or found no replica)
    const tokens = 4 - (b0.planned - b0.exhausted);
    assert.ok(tokens > 0, JSON.stringify(b0));

    const { ended } = await slowDown(m);
    const reader = await Raw.connect(p.port);
    raws.push(reader);
    const t0 = performance.now();
    reader.write(Buffer.concat(keys.map((k) => Buffer.from(`*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(k)}\r\n${k}\r\n`))));
    reader.expectMore(keys.length);
    // replies come in request order: the first `tokens` races had a backup
    await reader.waitReplies(tokens, 5_000);
    const fastMs = performance.now() - t0;
    await reader.waitReplies(keys.length, 5_000);
    const allMs = performance.now() - t0;
    assert.equal(await ended, null);

    assert.deepEqual(reader.replies, keys.map((k) => `${k}=v`));
    assert.ok(fastMs < FAST_MS, `the ${tokens} reads with a backup took ${fastMs.toFixed(0)} ms`);
    assert.ok(allMs >= WAITED_MS, `the reads past the budget took ${allMs.toFixed(0)} ms: they did not wait for the master`);
    const d = delta(await backups(p.raw), b0);
    assert.equal(d.dispatched, tokens, JSON.stringify(d));
    assert.equal(d.replicaWins, tokens, JSON.stringify(d));
    assert.equal(d.exhausted, keys.length - tokens, JSON.stringify(d));
    assert.equal(d.planned, keys.length, JSON.stringify(d));
  });

  it('without trigger_slow_ms the threshold follows the master latency: after fast reads, a slowed master is backed up', async () => {
    const p = await proxyWith('bk_ewma', 'enabled = true\nmultiplier = 2.0\nbudget_percent = 100');
    const m = cluster.masters[1];
    const keys = await keysOn(cluster, 1, 'ewma', 5);
    await seed(p, 1, keys);
    // warm-up: fast answers make the moving average (and so the threshold) a few ms at most
    for (let round = 0; round < 10; round++) {
      assert.deepEqual(await p.raw.pipeline(keys.map((k) => ['GET', k])), keys.map((k) => `${k}=v`));
    }
    const b0 = await backups(p.raw);

    const { ended } = await slowDown(m);
    const results = await Promise.all(keys.map((k) => timed(p.port, 'GET', k)));
    assert.equal(await ended, null);
    results.forEach((r, j) => {
      assert.equal(r.reply, `${keys[j]}=v`);
      assert.ok(r.ms < FAST_MS, `GET ${keys[j]} took ${r.ms.toFixed(0)} ms`);
    });
    const d = delta(await backups(p.raw), b0);
    assert.ok(d.replicaWins >= keys.length, JSON.stringify(d));
  });

  it(
    'without trigger_slow_ms, once fast answers have brought the moving average down again after a slow spell, a slowed master is backed up at once',
    async () => {
      const p = await proxyWith('bk_rearm', 'enabled = true\nmultiplier = 2.0\nbudget_percent = 100');
      const m = cluster.masters[1];
      const keys = await keysOn(cluster, 1, 'rearm', 10);
      await seed(p, 1, keys);
      for (let round = 0; round < 10; round++) assert.deepEqual(await p.raw.pipeline(keys.map((k) => ['GET', k])), keys.map((k) => `${k}=v`));

      // a slow spell: 10 reads answered by the replica; the master's answers, ~1.9 s late, feed the average
      let { ended } = await slowDown(m, 2);
      const spell = await Promise.all(keys.map((k) => timed(p.port, 'GET', k)));
      assert.equal(await ended, null);
      spell.forEach((r, j) => assert.ok(r.reply === `${keys[j]}=v` && r.ms < FAST_MS, `slow spell: GET ${keys[j]}: ${JSON.stringify(r)}`));
      await sleep(50);
      // 100 fast answers: the average is back under a millisecond
      for (let i = 0; i < 100; i++) assert.equal(await p.raw.call('GET', keys[i % keys.length]), `${keys[i % keys.length]}=v`);
      const b0 = await backups(p.raw);

      ({ ended } = await slowDown(m));
      const again = await Promise.all(keys.slice(0, 5).map((k) => timed(p.port, 'GET', k)));
      assert.equal(await ended, null);
      const d = delta(await backups(p.raw), b0);
      again.forEach((r, j) => {
        assert.equal(r.reply, `${keys[j]}=v`);
        assert.ok(r.ms < FAST_MS, `GET ${keys[j]} took ${r.ms.toFixed(0)} ms after the average came down (${JSON.stringify(d)})`);
      });
      assert.ok(d.replicaWins >= 5, JSON.stringify(d));
    },
  );

  it('backup_request off (the default): a read waits for the slowed master, nothing goes to a replica', async () => {
    const p = await proxyWith('bk_off', null);
    const m = cluster.masters[1];
    const replica = cluster.replicasOf(1)[0];
    const [key] = await keysOn(cluster, 1, 'off', 1);
    await seed(p, 1, [key]);
    assert.equal(await p.raw.call('GET', key), `${key}=v`);
    const replicaBefore = await cmdstat(cluster, replica, 'get');

    const { ended } = await slowDown(m);
    const r = await timed(p.port, 'GET', key);
    assert.equal(await ended, null);
    assert.equal(r.reply, `${key}=v`);
    assert.ok(r.ms >= WAITED_MS, `GET took ${r.ms.toFixed(0)} ms with backups off`);
    assert.deepEqual(await backups(p.raw), { enabled: 0, planned: 0, dispatched: 0, exhausted: 0, primaryWins: 0, replicaWins: 0 });
    assert.deepEqual(await cmdstat(cluster, replica, 'get'), replicaBefore);
  });

  // last: it kills a replica
  it('a replica that dies during the race, or is dead before it, leaves the read to the master', async () => {
    const p = await proxyWith('bk_dead', 'enabled = true\ntrigger_slow_ms = 50');
    const m = cluster.masters[2];
    const replica = cluster.replicasOf(2)[0];
    const [k1, k2, k3] = await keysOn(cluster, 2, 'dead', 3);
    await seed(p, 2, [k1, k2, k3]);

    // 1. the proxy gets a live connection to the replica (a race it wins)
    let { ended } = await slowDown(m);
    const first = await timed(p.port, 'GET', k1);
    assert.equal(await ended, null);
    assert.equal(first.reply, `${k1}=v`);
    assert.ok(first.ms < FAST_MS, `GET took ${first.ms.toFixed(0)} ms`);
    const b1 = await backups(p.raw);
    assert.ok(b1.replicaWins >= 1, JSON.stringify(b1));

    // 2. master and replica both asleep; the backup goes to the replica, which is killed mid-race
    const replicaSleep = await slowDown(replica, 2);
    ({ ended } = await slowDown(m));
    const pending = timed(p.port, 'GET', k2);
    await sleep(200);
    replica.kill('SIGKILL');
    await waitFor(() => !replica.alive, 5_000, 'the replica to exit');
    const second = await pending;
    assert.equal(await ended, null);
    assert.ok((await replicaSleep.ended) instanceof Error, 'the killed replica answered its DEBUG SLEEP');
    assert.ok(!(second.reply instanceof RespErr), `GET answered ${JSON.stringify(second.reply)}`);
    assert.equal(second.reply, `${k2}=v`);
    assert.ok(second.ms >= WAITED_MS, `GET took ${second.ms.toFixed(0)} ms: the master slept`);
    const b2 = await backups(p.raw);
    const d2 = delta(b2, b1);
    assert.equal(d2.dispatched, 1, JSON.stringify(d2));
    assert.equal(d2.replicaWins, 0, JSON.stringify(d2));
    assert.equal(d2.primaryWins, 1, JSON.stringify(d2));

    // 3. the replica is dead before the race: the master's answer still comes
    ({ ended } = await slowDown(m));
    const third = await timed(p.port, 'GET', k3);
    assert.equal(await ended, null);
    assert.equal(third.reply, `${k3}=v`);
    assert.ok(third.ms >= WAITED_MS, `GET took ${third.ms.toFixed(0)} ms`);
    const d3 = delta(await backups(p.raw), b2);
    assert.equal(d3.replicaWins, 0, JSON.stringify(d3));
    assert.ok(d3.planned >= 1, JSON.stringify(d3));
  });
});
