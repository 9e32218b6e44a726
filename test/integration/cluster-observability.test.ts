/**
 * Cluster mode seen from outside: the Prometheus metrics of the slot map and the redirects,
 * the INFO Proxy section, and the proxy with workers (thread = 2) in front of a real cluster.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { freePort, stopAll, waitFor } from '../helpers/servers.js';
import { missingFromScrape } from '../helpers/deploy-names.js';

const BIN = join(new URL('../../../', import.meta.url).pathname, 'bin/aster-proxy.js');

const get = (port: number, path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });

/** the value of one sample line, e.g. metric('aster_redirect_total{cluster="oc",kind="moved"}') */
const sample = (text: string, line: string): number | undefined => {
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
};

describe('cluster mode: metrics and INFO', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  let metricsPort: number;
  let r: Redis;

  before(async () => {
    cluster = await startCluster({ replicasPerMaster: 0 });
    metricsPort = await freePort();
    const toml = `[[clusters]]
name = "oc"
listen_addr = "127.0.0.1:0"
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'oc.toml').config, { ip: '127.0.0.1', metricsPort, reload: false, logger: createLogger('silent') });
    r = new Redis({ port: proxy.listeners[0].port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    await waitFor(async () => String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the proxy has the slot map');
  });
  after(async () => {
    r?.disconnect();
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  it('declares every metric the shipped dashboard and alert rules use (deploy/)', async () => {
    assert.deepEqual(missingFromScrape(await get(metricsPort, '/metrics'), false), [], 'metrics of deploy/ missing from a cluster-mode scrape');
  });

  it('shows the slot map and its fetches, and counts a MOVED once the slot moved', async () => {
    let text = await get(metricsPort, '/metrics');
    assert.equal(sample(text, 'aster_cluster_slots_covered{cluster="oc"}'), 16384);
    assert.ok((sample(text, 'aster_cluster_topology_fetches_total{cluster="oc",result="ok"}') ?? 0) >= 1, text);
    assert.ok((sample(text, 'aster_cluster_topology_changes_total{cluster="oc"}') ?? 0) >= 1);
    assert.equal(sample(text, 'aster_redirect_total{cluster="oc",kind="moved"}'), 0);
    assert.equal(sample(text, 'aster_backend_health_status{cluster="oc",backend="' + cluster.addr(cluster.masters[0]) + '"}'), 1);

    await r.set('foo', 'bar');
    const slot = await cluster.keySlot('foo');
    const from = await cluster.ownerOf(slot);
    assert.ok(from !== undefined);
    const to = cluster.masters.find((m) => m !== from);
    assert.ok(to !== undefined);
    await cluster.moveSlot(slot, from, to);
    assert.equal(await r.get('foo'), 'bar');
    text = await get(metricsPort, '/metrics');
    assert.equal(sample(text, 'aster_redirect_total{cluster="oc",kind="moved"}'), 1);
    const info = String(await r.info('proxy'));
    assert.match(info, /slots_covered:16384/);
    assert.match(info, /redirects_moved:1/);
    assert.match(info, new RegExp(`master\\d:id=[0-9a-f]{40},addr=${cluster.addr(to).replace(/\./g, '\\.')}`));
    assert.match(String(await r.info('cluster')), /cluster_enabled:1/);
  });
});

describe('cluster mode with workers', () => {
  let cluster: RedisCluster;
  let child: ChildProcess | undefined;
  let dir: string | undefined;

  after(async () => {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 12_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    await cluster?.stop();
    await stopAll();
  });

  it('serves the cluster from thread = 2 workers on one port (the CLI, as deployed)', { timeout: 120_000 }, async () => {
    cluster = await startCluster({ replicasPerMaster: 0 });
    const port = await freePort();
    const metricsPort = await freePort();
    dir = fs.mkdtempSync(join(os.tmpdir(), 'aster-wc-'));
    const file = join(dir, 'wc.toml');
    fs.writeFileSync(
      file,
      `[[clusters]]
name = "wc"
listen_addr = "127.0.0.1:${port}"
thread = 2
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`,
    );
    const env = { ...process.env };
    delete env['ASTER_DEFAULT_THREAD'];
    let log = '';
    child = spawn(process.execPath, [BIN, '-c', file, '--ip', '127.0.0.1', '-m', String(metricsPort)], { stdio: ['ignore', 'ignore', 'pipe'], env });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (log += d));
    const clients = Array.from({ length: 4 }, () => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => 100, commandTimeout: 3000 }));
    for (const c of clients) c.on('error', () => undefined); // refused until the workers listen
    try {
      await waitFor(
        async () => {
          const infos = await Promise.all(clients.map(async (c) => String(await c.call('CLUSTER', 'INFO').catch(() => ''))));
          return infos.every((i) => i.includes('cluster_state:ok'));
        },
        60_000,
        'every client sees a ready proxy',
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\nproxy log:\n${log.slice(-2000)}`);
      });
      for (const [i, c] of clients.entries()) await c.mset(...Array.from({ length: 30 }, (_, k) => [`w${i}:${k}`, String(k)]).flat());
      for (const [i, c] of clients.entries()) assert.deepEqual(await c.mget(...Array.from({ length: 30 }, (_, k) => `w${i}:${k}`)), Array.from({ length: 30 }, (_, k) => String(k)));
      // the primary's scrape (the workers' metrics summed) declares what deploy/ queries
      assert.deepEqual(missingFromScrape(await get(metricsPort, '/metrics'), true), [], 'metrics of deploy/ missing from the primary\'s scrape');
    } finally {
      for (const c of clients) c.disconnect();
    }
  });
});
