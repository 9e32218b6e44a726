/**
 * Hot reload of a cluster-mode proxy (cache_type "redis_cluster") in front of a real Redis
 * Cluster of 3 masters and 3 replicas, under client load: each change is written to the config
 * file, applied by the watcher, and shown to take effect, while three clients pipeline SET/GET
 * pairs the whole time. At the end not one request failed, not one value was wrong, and no
 * client connection was dropped.
 *
 * Changes: the seeds, read_from_slave (reads then reach the replicas), fetch_interval (the slot
 * map is then fetched that often), [clusters.backup_request], a password (new connections must
 * AUTH; the connected ones stay authenticated, as in Redis), [clusters.limits], and TLS on the
 * listener turned on (new clients must speak TLS; the connected plain-text ones go on), a new
 * certificate, and a read-only user.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/sources/config-file.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { makeCerts } from '../helpers/certs.js';
import { Raw, RespErr, type Resp } from '../helpers/raw-client.js';
import { stopAll, waitFor } from '../helpers/servers.js';


/** `field` of an INFO-style reply, as a number */
function infoField(reply: Resp, field: string): number {
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(String(reply));
  assert.ok(m !== null, `no ${field} in ${String(reply)}`);
  return Number(m[1]);
}

describe('hot reload in cluster mode, under client load', { timeout: 240_000 }, () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aster-cluster-reload-'));
  const file = path.join(dir, 'proxy.toml');

  before(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('applies seeds, read_from_slave, fetch_interval, backup_request, a password, a user, limits, TLS and a new certificate without failing a request or dropping a client', async (t) => {
    const m = cluster.masters.map((n) => cluster.addr(n));
    const r = cluster.replicas.map((n) => cluster.addr(n));
    const write = (seeds: string[], extra: string[] = []): void =>
      fs.writeFileSync(
        file,
        [
          '[[clusters]]',
          'name = "cr"',
          'listen_addr = "127.0.0.1:0"',
          'cache_type = "redis_cluster"',
          `servers = [${seeds.map((s) => JSON.stringify(s)).join(', ')}]`,
          'thread = 1',
          'read_timeout = 3000',
          ...extra,
          '',
        ].join('\n'),
      );
    write([m[0]]);
    proxy = await startProxy(loadConfig(file).config, { ip: '127.0.0.1', metricsPort: 0, reload: true, configFile: file, logger: createLogger('silent') });
    assert.ok(proxy.reloads !== undefined);
    const reloads = proxy.reloads;
    await waitFor(() => reloads().watching, 10_000, 'the config watcher to be ready');
    const port = proxy.listeners[0].port;
    const admin = await Raw.connect(port);
    await waitFor(async () => String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 15_000, 'the proxy to have the slot map');
    let applied = 0;
    const apply = async (seeds: string[], extra: string[]): Promise<void> => {
      write(seeds, extra);
      applied++;
      await waitFor(() => reloads().ok + reloads().failed >= applied, 10_000, `reload ${applied} to be applied`);
      assert.equal(reloads().failed, 0, `a reload failed: ${reloads().lastError}`);
      assert.equal(reloads().ok, applied);
    };

    // the load: three clients, each pipelining 10 SET/GET pairs of its own keys, over and over
    let stop = false;
    // with read_from_slave a GET may reach a replica before the SET's value has: it may read
    // an older value of the key (written 50 rounds earlier, the same k) or none, never another's
    let fromReplicas = false;
    const stats = { rounds: 0, errors: [] as string[], wrong: 0, stale: 0 };
    const clients = await Promise.all([0, 1, 2].map(() => Raw.connect(port)));
    const loops = clients.map(async (c, id) => {
      for (let round = 0; !stop && round < 100_000; round++) {
        const cmds: string[][] = [];
        for (let k = 0; k < 10; k++) {
          const key = `cr:${id}:${(round * 10 + k) % 500}`;
          cmds.push(['SET', key, `${round}:${k}`], ['GET', key]);
        }
        const replies = await c.pipeline(cmds, 10_000);
        for (let k = 0; k < 10; k++) {
          const [set, get] = [replies[2 * k], replies[2 * k + 1]];
          if (set instanceof RespErr) stats.errors.push(`SET: ${set.message}`);
          if (get instanceof RespErr) stats.errors.push(`GET: ${get.message}`);
          else if (get !== `${round}:${k}`) {
            const older = typeof get === 'string' ? /^(\d+):(\d+)$/.exec(get) : null;
            const plausible = get === null || (older !== null && Number(older[2]) === k && Number(older[1]) < round && (round - Number(older[1])) % 50 === 0);
            if (fromReplicas && plausible) stats.stale++;
            else stats.wrong++;
          }
        }
        stats.rounds++;
      }
    });
    /** the load made progress since the last call */
    let seen = 0;
    const progressed = async (): Promise<void> => {
      await waitFor(() => stats.rounds >= seen + 30, 10_000, 'the load to go on');
      seen = stats.rounds;
    };
    await progressed();

    // 1. seeds: another master and a replica instead of the first master
    await apply([m[1], r[0]], []);
    await progressed();
    assert.equal(infoField(await admin.call('INFO', 'proxy'), 'slots_covered'), 16384);

    // 2. read_from_slave: the replicas start serving the reads
    const replicaGets = async (): Promise<number> => {
      let n = 0;
      for (const node of cluster.replicas) {
        const m2 = /^cmdstat_get:calls=(\d+)/m.exec(String(await cluster.call(node, 'INFO', 'commandstats')));
        n += m2 === null ? 0 : Number(m2[1]);
      }
      return n;
    };
    const readsBefore = await replicaGets();
    fromReplicas = true;
    await apply([m[1], r[0]], ['read_from_slave = true']);
    await progressed();
    await waitFor(async () => (await replicaGets()) > readsBefore + 100, 10_000, 'reads to reach the replicas');

    // 3. fetch_interval: the slot map is fetched every second now
    const fetched = infoField(await admin.call('INFO', 'proxy'), 'topology_fetches');
    await apply([m[1], r[0]], ['read_from_slave = true', 'fetch_interval = 1000']);
    await waitFor(async () => infoField(await admin.call('INFO', 'proxy'), 'topology_fetches') >= fetched + 2, 10_000, 'two periodic fetches');
    await progressed();

    // 4. read_from_slave off again (reads back on the masters: every value exact from here on),
    // and backup requests on (slow reads of a master race a replica)
    await apply([m[1], r[0]], ['fetch_interval = 1000', '[clusters.backup_request]', 'enabled = true', 'trigger_slow_ms = 50']);
    assert.equal(infoField(await admin.call('INFO', 'proxy'), 'backup_requests'), 1);
    // (a pipeline under way may still have read from a replica: wait for the next ones)
    await progressed();
    await progressed();
    fromReplicas = false;
    await progressed();

    // 5. a password: new connections must AUTH; the connected clients stay authenticated
    const withPassword = ['fetch_interval = 1000', 'password = "s3cret-reload"', '[clusters.backup_request]', 'enabled = true', 'trigger_slow_ms = 50'];
    await apply([m[1], r[0]], withPassword);
    const fresh = await Raw.connect(port);
    try {
      const refused = await fresh.call('GET', 'cr:0:1');
      assert.ok(refused instanceof RespErr && refused.message.startsWith('NOAUTH'), JSON.stringify(refused));
      assert.equal(await fresh.call('AUTH', 's3cret-reload'), 'OK');
      assert.equal(await fresh.call('SET', 'cr:fresh', 'x'), 'OK');
    } finally {
      fresh.close();
    }
    await progressed();

    // 6. limits: tight flow-control bounds hold the pipelines back without failing them
    await apply([m[1], r[0]], [...withPassword.slice(0, 2), '[clusters.limits]', 'max_pending_requests = 4', '[clusters.backup_request]', 'enabled = true', 'trigger_slow_ms = 50']);
    await progressed();

    // 7. TLS on the listener, turned on: new clients must speak TLS, the connected ones go on
    const certs = makeCerts();
    try {
      const tlsLines = ['[clusters.tls]', `cert_file = ${JSON.stringify(certs.serverCert)}`, `key_file = ${JSON.stringify(certs.serverKey)}`];
      await apply([m[1], r[0]], [...withPassword.slice(0, 2), ...tlsLines]);
      const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(certs.caCert), servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
      try {
        const reply = await new Promise<string>((resolve) => {
          let got = '';
          secure.on('data', (d: Buffer) => {
            got += d.toString('latin1');
            if (got.endsWith('\r\n') && got.includes('+OK') && got.includes('$1\r\ny')) resolve(got);
          });
          secure.write('*2\r\n$4\r\nAUTH\r\n$13\r\ns3cret-reload\r\n*3\r\n$3\r\nSET\r\n$6\r\ncr:tls\r\n$1\r\ny\r\n*2\r\n$3\r\nGET\r\n$6\r\ncr:tls\r\n');
        });
        assert.equal(reply, '+OK\r\n+OK\r\n$1\r\ny\r\n');
      } finally {
        secure.destroy();
      }
      await progressed();

      // 8. a new certificate (TLS stays on): new handshakes get it; and a read-only user added
      const fingerprint = (): Promise<string> =>
        new Promise((resolve, reject) => {
          const s2 = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
            resolve(s2.getPeerCertificate().fingerprint256);
            s2.destroy();
          });
          s2.once('error', reject);
        });
      const before = await fingerprint();
      execFileSync('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server-new.crt', '-days', '2', '-extfile', 'server.ext'], { cwd: certs.dir, stdio: 'ignore' });
      const rotated = ['[clusters.tls]', `cert_file = ${JSON.stringify(path.join(certs.dir, 'server-new.crt'))}`, `key_file = ${JSON.stringify(certs.serverKey)}`];
      await apply([m[1], r[0]], [...withPassword.slice(0, 2), '[[clusters.users]]', 'name = "reader"', 'password = "read-pw"', 'commands = "read-only"', ...rotated]);
      assert.notEqual(await fingerprint(), before, 'new handshakes get the new certificate');
      const reader = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s3 = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(certs.caCert), servername: 'localhost' }, () => resolve(s3));
        s3.once('error', reject);
      });
      try {
        const got = await new Promise<string>((resolve) => {
          let text = '';
          reader.on('data', (d: Buffer) => {
            text += d.toString('latin1');
            if ((text.match(/\r\n/g) ?? []).length >= 3) resolve(text);
          });
          reader.write('*3\r\n$4\r\nAUTH\r\n$6\r\nreader\r\n$7\r\nread-pw\r\n*2\r\n$3\r\nGET\r\n$6\r\ncr:tls\r\n*3\r\n$3\r\nSET\r\n$6\r\ncr:tls\r\n$1\r\nz\r\n');
        });
        assert.match(got, /^\+OK\r\n\$1\r\ny\r\n-NOPERM /, 'the new user reads and may not write');
      } finally {
        reader.destroy();
      }
      await progressed();
    } finally {
      certs.remove();
    }

    stop = true;
    await Promise.all(loops);
    t.diagnostic(`${stats.rounds} rounds of 10 SET/GET pairs; ${stats.stale} GETs read an older value from a replica while read_from_slave was on`);
    assert.deepEqual(stats.errors.slice(0, 5), [], `${stats.errors.length} requests failed`);
    assert.equal(stats.wrong, 0, `values read back wrong (besides ${stats.stale} older values read from replicas)`);
    for (const [i, c] of clients.entries()) assert.equal(c.closed, false, `client ${i} was disconnected`);
    assert.ok(stats.rounds > 200, `${stats.rounds} rounds of 10 SET/GET pairs`);
    for (const c of clients) c.close();
    admin.close();
  });
});
