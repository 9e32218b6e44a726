/**
 * TLS on both sides, with certificates made at test time: clients to the proxy ([clusters.tls],
 * with and without client certificates), the proxy to a redis-server that only speaks TLS on
 * the port it uses ([clusters.backend_tls], with a client certificate), certificate checks that
 * fail, and new certificates taken by a reload.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/sinks/log.js';
import { loadConfig } from '../../src/sources/config-file.js';
import { startStandalone, type StandaloneCluster } from '../../src/streams/standalone.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { freePort, startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const logger = createLogger('silent');

describe('TLS', () => {
  let certs: TestCerts;
  let redis: RedisProc;
  let tlsPort: number;
  const clusters: StandaloneCluster[] = [];
  const clients: Redis[] = [];

  before(async () => {
    certs = makeCerts();
    tlsPort = await freePort();
    // the plain port is for the harness's readiness check; the proxy uses the TLS one, which wants a client certificate
    redis = await startRedis({
      args: ['--tls-port', String(tlsPort), '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey, '--tls-ca-cert-file', certs.caCert, '--tls-auth-clients', 'yes'],
    });
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(clusters.map((c) => c.close()));
    await stopAll();
    certs?.remove();
  });

  /** a cluster from a config file in the certs dir (file paths relative to it) */
  const start = async (name: string, extra: string, backendPort = redis.port): Promise<StandaloneCluster> => {
    const file = path.join(certs.dir, `${name}.toml`);
    fs.writeFileSync(file, `[[clusters]]\nname = "${name}"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nservers = ["127.0.0.1:${backendPort}:1"]\n${extra}`);
    const c = await startStandalone(loadConfig(file).config.clusters[0], 'test', logger);
    clusters.push(c);
    return c;
  };
  const reconfigure = (c: StandaloneCluster, name: string, extra: string, backendPort = redis.port): void => {
    const file = path.join(certs.dir, `${name}-2.toml`);
    fs.writeFileSync(file, `[[clusters]]\nname = "${name}"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nservers = ["127.0.0.1:${backendPort}:1"]\n${extra}`);
    c.reconfigure(loadConfig(file).config.clusters[0]);
  };
  const client = (port: number, t: tls.ConnectionOptions | undefined): Redis => {
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(t !== undefined ? { tls: t } : {}) });
    r.on('error', () => undefined);
    clients.push(r);
    return r;
  };
  /** the certificate the proxy's listener shows, by its fingerprint */
  const peerFingerprint = (port: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on('error', reject);
    });

  it('serves TLS clients (ioredis with the CA) and refuses plain-text ones on the TLS listener', async () => {
    const c = await start('srv', '[clusters.tls]\ncert_file = "server.crt"\nkey_file = "server.key"\n');
    const r = client(c.listener.port, { ca: fs.readFileSync(certs.caCert), servername: 'localhost' });
    await r.connect();
    assert.equal(await r.set('tls:k', 'v'), 'OK');
    assert.equal(await r.get('tls:k'), 'v');
    const plain = client(c.listener.port, undefined);
    await assert.rejects(async () => {
      await plain.connect();
      await plain.ping();
    });
    // a client that does not trust the proxy's CA fails its handshake
    const wrongCa = client(c.listener.port, { ca: fs.readFileSync(certs.otherCaCert), servername: 'localhost' });
    await assert.rejects(wrongCa.connect());
  });

  it('with client_auth, only clients with a certificate of the CA get in', async () => {
    const c = await start('mtls', '[clusters.tls]\ncert_file = "server.crt"\nkey_file = "server.key"\nca_file = "ca.crt"\nclient_auth = true\n');
    const without = client(c.listener.port, { ca: fs.readFileSync(certs.caCert), servername: 'localhost' });
    await assert.rejects(async () => {
      await without.connect();
      await without.ping();
    });
    const withCert = client(c.listener.port, { ca: fs.readFileSync(certs.caCert), servername: 'localhost', cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) });
    await withCert.connect();
    assert.equal(await withCert.ping(), 'PONG');
    assert.equal(await withCert.set('tls:m', '1'), 'OK');
  });

  it('talks TLS to a backend that wants a client certificate; a backend not signed by the trusted CA is refused', async () => {
    const c = await start('btls', '[clusters.backend_tls]\nca_file = "ca.crt"\ncert_file = "client.crt"\nkey_file = "client.key"\n', tlsPort);
    const r = client(c.listener.port, undefined);
    await r.connect();
    assert.equal(await r.set('tls:b', 'x'), 'OK');
    assert.equal(await r.get('tls:b'), 'x');
    assert.deepEqual(await r.mget('tls:b', 'tls:k'), ['x', 'v']);

    const distrust = await start('btls-bad', '[clusters.backend_tls]\nca_file = "other-ca.crt"\ncert_file = "client.crt"\nkey_file = "client.key"\n', tlsPort);
    const r2 = client(distrust.listener.port, undefined);
    await r2.connect();
    await assert.rejects(r2.get('tls:b'), /backend/);
    // a reload with the right CA brings it back
    reconfigure(distrust, 'btls-bad', '[clusters.backend_tls]\nca_file = "ca.crt"\ncert_file = "client.crt"\nkey_file = "client.key"\n', tlsPort);
    await waitFor(async () => (await r2.get('tls:b').catch(() => null)) === 'x', 10_000, 'GET over TLS after the reload');
  });

  it('blocking, transaction, subscriber and health-check connections go over backend TLS too', async () => {
    const backendTls = '[clusters.backend_tls]\nca_file = "ca.crt"\ncert_file = "client.crt"\nkey_file = "client.key"\n';
    const c = await start('btls-all', `ping_fail_limit = 2\nping_succ_interval = 100\n${backendTls}`, tlsPort);
    const r = client(c.listener.port, undefined);
    const pusher = client(c.listener.port, undefined);
    const sub = client(c.listener.port, undefined);
    await Promise.all([r.connect(), pusher.connect(), sub.connect()]);
    // a blocking command, on a connection of its own
    await r.del('tls:q');
    const popped = r.blpop('tls:q', 5);
    await waitFor(async () => /blocked_clients:1/.test(await pusher.info('clients')), 5000, 'BLPOP to block');
    assert.equal(await pusher.rpush('tls:q', 'a'), 1);
    assert.deepEqual(await popped, ['tls:q', 'a']);
    // a transaction, on a dedicated connection
    assert.deepEqual(await r.multi().set('tls:tx', '1').incr('tls:tx').exec(), [[null, 'OK'], [null, 2]]);
    // a subscription, on a subscriber connection
    const message = new Promise<[string, string]>((resolve) => sub.on('message', (ch: string, msg: string) => resolve([ch, msg])));
    assert.equal(await sub.subscribe('tls:ch'), 1);
    assert.equal(await pusher.publish('tls:ch', 'hi'), 1);
    assert.deepEqual(await message, ['tls:ch', 'hi']);
    // health checks: ten PINGs over TLS later, the backend is in service
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(c.health().map((h) => [h.live, h.ejections]), [[true, 0]]);
    // (the same checks in plain text against the TLS port fail: they do go over the network)
    const plain = await start('btls-plain-checks', 'ping_fail_limit = 2\nping_succ_interval = 100\nping_interval = 100\n', tlsPort);
    await waitFor(() => plain.health()[0].ejections >= 1, 10_000, 'plain-text health checks against a TLS port to eject it');
  });

  it('a reload with a new certificate: new connections get it, the ones open go on', async () => {
    const c = await start('rot', '[clusters.tls]\ncert_file = "server.crt"\nkey_file = "server.key"\n');
    const open = client(c.listener.port, { ca: fs.readFileSync(certs.caCert), servername: 'localhost' });
    await open.connect();
    const before = await peerFingerprint(c.listener.port);
    // a new certificate for the same key: another serial, so another fingerprint
    fs.copyFileSync(path.join(certs.dir, 'server.crt'), path.join(certs.dir, 'server-old.crt'));
    const { execFileSync } = await import('node:child_process');
    execFileSync('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server-new.crt', '-days', '2', '-extfile', 'server.ext'], { cwd: certs.dir, stdio: 'ignore' });
    reconfigure(c, 'rot', '[clusters.tls]\ncert_file = "server-new.crt"\nkey_file = "server.key"\n');
    const after = await peerFingerprint(c.listener.port);
    assert.notEqual(after, before);
    assert.equal(await open.ping(), 'PONG');
  });

  it('a reload turns TLS on the listener on and off: new connections follow, the open ones go on', async () => {
    const c = await start('onoff', '');
    const ca = { ca: fs.readFileSync(certs.caCert), servername: 'localhost' };
    const plainOpen = client(c.listener.port, undefined);
    await plainOpen.connect();
    assert.equal(await plainOpen.set('tls:onoff', '1'), 'OK');
    // on
    reconfigure(c, 'onoff', '[clusters.tls]\ncert_file = "server.crt"\nkey_file = "server.key"\n');
    const viaTls = client(c.listener.port, ca);
    await viaTls.connect();
    assert.equal(await viaTls.get('tls:onoff'), '1');
    const plainNew = client(c.listener.port, undefined);
    await assert.rejects(async () => {
      await plainNew.connect();
      await plainNew.ping();
    });
    assert.equal(await plainOpen.get('tls:onoff'), '1', 'a plain-text connection opened before goes on');
    // off
    reconfigure(c, 'onoff', '');
    const plainAgain = client(c.listener.port, undefined);
    await plainAgain.connect();
    assert.equal(await plainAgain.get('tls:onoff'), '1');
    const tlsNew = client(c.listener.port, ca);
    await assert.rejects(async () => {
      await tlsNew.connect();
      await tlsNew.ping();
    });
    assert.equal(await viaTls.get('tls:onoff'), '1', 'a TLS connection opened before goes on');
  });

  it('names the file, the cluster and the key for a missing or non-PEM file', () => {
    const file = path.join(certs.dir, 'bad.toml');
    fs.writeFileSync(file, `[[clusters]]\nname = "bad"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nservers = ["127.0.0.1:1:1"]\n[clusters.tls]\ncert_file = "nope.crt"\nkey_file = "bad.toml"\n`);
    assert.throws(() => loadConfig(file), (err: Error) => /bad\.toml: cluster "bad": tls\.cert_file: cannot read "nope\.crt"/.test(err.message) && /tls\.key_file: "bad\.toml" is not a PEM file/.test(err.message));
  });
});
