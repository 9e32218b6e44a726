/**
 * A Redis Cluster that speaks TLS only (`port 0`, `tls-port`, `tls-cluster yes`: clients, the
 * cluster bus, and the ports the nodes announce in CLUSTER NODES are all TLS, client
 * certificates required) behind the proxy with `[clusters.backend_tls]`: the proxy learns the
 * slot map over TLS, reaches every master at the TLS ports the nodes announce, follows a MOVED
 * there, and serves plain clients.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/sources/config-file.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { Raw, RespErr } from '../helpers/raw-client.js';
import { freePort, waitFor } from '../helpers/servers.js';

describe('a TLS-only Redis Cluster behind the proxy (tls-cluster yes)', { timeout: 120_000 }, () => {
  let certs: TestCerts;
  let dir: string;
  const nodes: Array<{ port: number; proc: ChildProcess }> = [];
  let proxy: RunningProxy | undefined;

  /** redis-cli over TLS with the client certificate */
  const cli = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile('redis-cli', ['--tls', '--cacert', certs.caCert, '--cert', certs.clientCert, '--key', certs.clientKey, ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`redis-cli ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`)) : resolve(stdout.trim()),
      );
    });

  before(async () => {
    certs = makeCerts();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aster-tls-cluster-'));
    for (let i = 0; i < 3; i++) {
      const port = await freePort({ clusterBus: true });
      const nodeDir = path.join(dir, String(port));
      fs.mkdirSync(nodeDir);
      // prettier-ignore
      const proc = spawn('redis-server', [
        '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1',
        '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey, '--tls-ca-cert-file', certs.caCert,
        '--tls-client-cert-file', certs.clientCert, '--tls-client-key-file', certs.clientKey,
        '--tls-auth-clients', 'yes', '--tls-cluster', 'yes', '--tls-replication', 'yes',
        '--cluster-enabled', 'yes', '--cluster-config-file', path.join(nodeDir, 'nodes.conf'), '--cluster-node-timeout', '2000',
        '--save', '', '--appendonly', 'no', '--dir', nodeDir, '--logfile', path.join(nodeDir, 'redis.log'), '--daemonize', 'no',
      ], { stdio: 'ignore' });
      nodes.push({ port, proc });
    }
    for (const n of nodes) await waitFor(async () => (await cli(['-p', String(n.port), 'PING']).catch(() => '')) === 'PONG', 10_000, `TLS node ${n.port} to answer`);
    await cli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    await waitFor(
      async () => (await Promise.all(nodes.map((n) => cli(['-p', String(n.port), 'CLUSTER', 'INFO']).catch(() => '')))).every((r) => r.includes('cluster_state:ok')),
      20_000,
      'the TLS cluster to be ok',
    );
  });
  after(async () => {
    await proxy?.close();
    for (const n of nodes) {
      if (n.proc.exitCode !== null) continue;
      const exited = new Promise((resolve) => n.proc.once('exit', resolve));
      n.proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (n.proc.exitCode === null) n.proc.kill('SIGKILL');
    }
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    certs?.remove();
  });

  it('learns the map, reaches every master at its announced TLS port, follows a MOVED, serves plain clients', async () => {
    // the nodes announce their TLS ports: the only ones they have
    const view = await cli(['-p', String(nodes[0].port), 'CLUSTER', 'NODES']);
    for (const n of nodes) assert.ok(view.includes(`127.0.0.1:${n.port}@`), view);

    const file = path.join(certs.dir, 'tls-cluster.toml');
    fs.writeFileSync(
      file,
      `[[clusters]]
name = "tc"
listen_addr = "127.0.0.1:0"
cache_type = "redis_cluster"
servers = ["127.0.0.1:${nodes[0].port}"]
[clusters.backend_tls]
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "client.key"
`,
    );
    proxy = await startProxy(loadConfig(file).config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    const c = await Raw.connect(proxy.listeners[0].port);
    try {
      await waitFor(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 15_000, 'the proxy to have the slot map');
      assert.match(String(await c.call('INFO', 'proxy')), /^masters:3/m);
      // keys on every master
      const keys = Array.from({ length: 60 }, (_, i) => `tc:${i}`);
      const set = await c.pipeline(keys.map((k) => ['SET', k, `v-${k}`]));
      assert.ok(set.every((r) => r === 'OK'), JSON.stringify(set.filter((r) => r !== 'OK').slice(0, 3)));
      assert.deepEqual(await c.pipeline(keys.map((k) => ['GET', k])), keys.map((k) => `v-${k}`));
      for (const n of nodes) assert.ok(Number((await cli(['-p', String(n.port), 'DBSIZE'])).trim()) > 0, `master ${n.port} holds some of the keys`);

      // move the slot of one key to another master: the proxy follows the MOVED over TLS
      const key = 'tc:moved';
      assert.equal(await c.call('SET', key, 'before'), 'OK');
      const slot = (await cli(['-p', String(nodes[0].port), 'CLUSTER', 'KEYSLOT', key])).trim();
      const idOf = async (port: number): Promise<string> => (await cli(['-p', String(port), 'CLUSTER', 'MYID'])).trim();
      const ownerLine = (await cli(['-p', String(nodes[0].port), 'CLUSTER', 'NODES'])).split('\n').find((l) => l.split(' ').slice(8).some((r) => {
        const [a, b] = r.split('-').map(Number);
        return Number(slot) >= a && Number(slot) <= (b ?? a);
      }));
      assert.ok(ownerLine !== undefined);
      const from = nodes.find((n) => ownerLine.includes(`127.0.0.1:${n.port}@`));
      const to = nodes.find((n) => n !== from);
      assert.ok(from !== undefined && to !== undefined);
      await cli(['-p', String(to.port), 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', await idOf(from.port)]);
      await cli(['-p', String(from.port), 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', await idOf(to.port)]);
      await cli(['-p', String(from.port), 'MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', key]);
      for (const n of [to, from]) await cli(['-p', String(n.port), 'CLUSTER', 'SETSLOT', slot, 'NODE', await idOf(to.port)]);
      assert.equal(await c.call('GET', key), 'before');
      assert.equal(await c.call('SET', key, 'after'), 'OK');
      assert.equal((await cli(['-p', String(to.port), 'GET', key])).trim(), 'after');
      const redirects = /redirects_moved:(\d+)/.exec(String(await c.call('INFO', 'proxy')));
      assert.ok(redirects !== null && Number(redirects[1]) >= 1, 'the proxy followed a MOVED');
      assert.ok(!(await c.call('PING') instanceof RespErr));
    } finally {
      c.close();
    }
  });
});
