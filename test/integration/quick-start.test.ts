/**
 * The cluster quick start (`npm start -- --cluster`, that is scripts/start.mjs): from nothing
 * running, one command creates a local Redis Cluster of 3 masters and 3 replicas, runs the
 * proxy in cluster mode in front of it, and says where to connect; a plain client, `redis-cli
 * -c` and an ioredis Cluster client work through it; SIGINT stops exactly what it started.
 * Run on free loopback ports (a copy of cluster.toml with other ports), not on 7000-7005.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Cluster } from 'ioredis';
import { Raw } from '../helpers/raw-client.js';
import { freePort, waitFor } from '../helpers/servers.js';
import { REPO_ROOT } from '../helpers/repo.js';

const ROOT = REPO_ROOT;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const redisCli = (args: string[]): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim())));
  });

describe('cluster quick start: npm start -- --cluster', { timeout: 180_000 }, () => {
  let start: ChildProcess | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'aster-quick-'));
  /** the nodes' ports: their data and logs under .run/ go after the test */
  const seeds: number[] = [];
  after(() => {
    if (start !== undefined && start.exitCode === null) start.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    for (const p of seeds) {
      rmSync(join(ROOT, '.run', `cluster-${p}`), { recursive: true, force: true });
      rmSync(join(ROOT, '.run', `cluster-${p}.log`), { force: true });
    }
  });

  it('creates a 3+3 cluster, runs the proxy in front of it, serves plain and cluster clients, and stops exactly what it started', async () => {
    for (let i = 0; i < 6; i++) seeds.push(await freePort({ clusterBus: true }));
    const listen = await freePort();
    // the shipped example, with this run's ports
    let toml = readFileSync(join(ROOT, 'cluster.toml'), 'utf8').replace('"127.0.0.1:26380"', `"127.0.0.1:${listen}"`);
    for (let i = 0; i < 6; i++) toml = toml.replace(`"127.0.0.1:${7000 + i}"`, `"127.0.0.1:${seeds[i]}"`);
    assert.ok(seeds.every((p) => toml.includes(`127.0.0.1:${p}"`)) && toml.includes(`127.0.0.1:${listen}"`), toml);
    const file = join(dir, 'cluster.toml');
    writeFileSync(file, toml);

    let log = '';
    start = spawn(process.execPath, [join(ROOT, 'scripts', 'start.mjs'), '--cluster', '--config', file, '-m', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    start.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    start.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => start?.once('exit', (code) => resolve(code)));
    await waitFor(() => log.includes(`listens on 127.0.0.1:${listen}`) || start?.exitCode !== null, 120_000, 'the quick start to say where to connect').catch((err: Error) => {
      throw new Error(`${err.message}; its output:\n${log}`);
    });
    assert.ok(log.includes(`listens on 127.0.0.1:${listen}`), log);
    assert.match(log, /creating a local Redis Cluster on 6 nodes \(1 replica per master\)/);
    assert.ok(log.includes(`redis-cli -c -p ${listen}`), 'it tells how to connect as a cluster client');
    const pids = [...log.matchAll(/started redis-server 127\.0\.0\.1:(\d+) \(pid (\d+)/g)].map((m) => ({ port: Number(m[1]), pid: Number(m[2]) }));
    assert.deepEqual(pids.map((p) => p.port).sort(), [...seeds].sort(), 'one node per seed');

    // the cluster: 3 masters, each with a replica
    const nodes = (await redisCli(['-p', String(seeds[0]), 'CLUSTER', 'NODES'])).split('\n');
    assert.equal(nodes.filter((l) => / (myself,)?master /.test(l)).length, 3, nodes.join('\n'));
    assert.equal(nodes.filter((l) => / (myself,)?slave [0-9a-f]{40} /.test(l)).length, 3, nodes.join('\n'));

    // a plain client
    const raw = await Raw.connect(listen);
    try {
      for (let i = 0; i < 50; i++) assert.equal(await raw.call('SET', `qs:${i}`, `v${i}`), 'OK');
      assert.deepEqual(await raw.call('MGET', 'qs:0', 'qs:49'), ['v0', 'v49']);
      // the proxy announces the address it listens on, where cluster clients can reach it
      const slots = (await raw.call('CLUSTER', 'SLOTS')) as unknown[][];
      assert.deepEqual((slots[0][2] as unknown[]).slice(0, 2), ['127.0.0.1', listen]);
    } finally {
      raw.close();
    }
    // redis-cli -c, and an ioredis Cluster client
    assert.equal(await redisCli(['-c', '-p', String(listen), 'SET', 'qs:cli', 'c']), 'OK');
    assert.equal(await redisCli(['-c', '-p', String(listen), 'GET', 'qs:7']), 'v7');
    const c = new Cluster([{ host: '127.0.0.1', port: listen }], { clusterRetryStrategy: () => null, redisOptions: { maxRetriesPerRequest: 0, commandTimeout: 5_000 } });
    c.on('error', () => undefined);
    try {
      assert.equal(await c.get('qs:cli'), 'c');
      assert.equal(await c.set('qs:io', 'io'), 'OK');
      assert.equal(await c.get('qs:io'), 'io');
    } finally {
      c.disconnect();
    }

    // Ctrl-C: the proxy and the six nodes stop, and the script exits 0
    start.kill('SIGINT');
    assert.equal(await exited, 0, log);
    for (const { pid, port } of pids) await waitFor(() => !alive(pid), 10_000, `redis-server ${port} (pid ${pid}) to be stopped`);
  });
});
