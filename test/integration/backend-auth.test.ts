/**
 * backend_password against a redis-server with requirepass: a wrong password is a clear error
 * for the clients (not the backend's NOAUTH), the proxy retries with a backoff (no reconnect
 * storm), and a reload with the right password brings the backend back.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startStandalone, type StandaloneCluster } from '../../src/streams/standalone.js';
import { Raw, RespErr, sleep } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const toml = (port: number, pw: string): string => `[[clusters]]
name = "ba"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
backend_password = "${pw}"
servers = ["127.0.0.1:${port}:1 guarded"]
`;

describe('backend_password', () => {
  let redis: RedisProc;
  let cluster: StandaloneCluster;
  let admin: Raw;

  before(async () => {
    redis = await startRedis({ args: ['--requirepass', 'right-pw'] });
    admin = await Raw.connect(redis.port);
    assert.equal(await admin.call('AUTH', 'right-pw'), 'OK');
    cluster = await startStandalone(parseConfig(toml(redis.port, 'wrong-pw'), 'ba.toml').config.clusters[0], 'test', createLogger('silent'));
  });
  after(async () => {
    admin?.close();
    await cluster?.close();
    await stopAll();
  });

  const connections = async (): Promise<number> => {
    const info = String(await admin.call('INFO', 'stats'));
    return Number(/total_connections_received:(\d+)/.exec(info)?.[1]);
  };

  it('answers clients with an error naming backend_password, and retries with a backoff, not a storm', async () => {
    const c = await Raw.connect(cluster.listener.port);
    try {
      const reply = await c.call('GET', 'k');
      assert.ok(reply instanceof RespErr, JSON.stringify(reply));
      assert.match(reply.message, /^ERR backend guarded.*rejected the proxy's AUTH \(check backend_password \/ backend_auth\): WRONGPASS/);
      const before = await connections();
      await sleep(2000);
      const made = (await connections()) - before;
      // the backoff doubles from 50 ms to 2 s: a handful of attempts in 2 s, where reconnecting at once would make hundreds
      assert.ok(made <= 8, `${made} connections in 2 s`);
      const again = await c.call('GET', 'k');
      assert.ok(again instanceof RespErr && /check backend_password/.test(again.message), JSON.stringify(again));
    } finally {
      c.close();
    }
  });

  it('serves again once a reload gives the right password', async () => {
    cluster.reconfigure(parseConfig(toml(redis.port, 'right-pw'), 'ba.toml').config.clusters[0]);
    const c = await Raw.connect(cluster.listener.port);
    try {
      await waitFor(async () => (await c.call('SET', 'k', 'v')) === 'OK', 5000, 'SET through the proxy with the right password');
      assert.equal(await c.call('GET', 'k'), 'v');
    } finally {
      c.close();
    }
  });
});

describe('backend_auth (an ACL user for the backends)', () => {
  let redis: RedisProc;
  const started: StandaloneCluster[] = [];

  before(async () => {
    // the default user is locked; the proxy's own user may run everything
    redis = await startRedis({ args: ['--requirepass', 'not-for-the-proxy', '--user', 'proxy', 'on', '>proxy-pw', '~*', '&*', '+@all'] });
  });
  after(async () => {
    await Promise.all(started.map((c) => c.close()));
    await stopAll();
  });

  const start = async (auth: string): Promise<StandaloneCluster> => {
    const toml = `[[clusters]]\nname = "acl"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nservers = ["127.0.0.1:${redis.port}:1 acl"]\nbackend_auth = ${auth}\n`;
    const c = await startStandalone(parseConfig(toml, 'acl.toml').config.clusters[0], 'test', createLogger('silent'));
    started.push(c);
    return c;
  };

  it('AUTHs as that user on every backend connection: shared, blocking and subscriber ones', async () => {
    const c = await start('{ username = "proxy", password = "proxy-pw" }');
    const r = await Raw.connect(c.listener.port);
    try {
      assert.equal(await r.call('SET', 'acl:k', 'v'), 'OK');
      assert.equal(await r.call('GET', 'acl:k'), 'v');
      assert.deepEqual(await r.call('BLPOP', 'acl:none', '0.1'), null);
      const sub = await r.call('SUBSCRIBE', 'acl:ch');
      assert.deepEqual(sub, ['subscribe', 'acl:ch', 1]);
    } finally {
      r.close();
    }
  });

  it('a wrong one is a clear error naming the setting', async () => {
    const c = await start('{ username = "proxy", password = "wrong" }');
    const r = await Raw.connect(c.listener.port);
    try {
      const reply = await r.call('GET', 'acl:k');
      assert.ok(reply instanceof RespErr && /check backend_password \/ backend_auth\): WRONGPASS/.test(reply.message), JSON.stringify(reply));
    } finally {
      r.close();
    }
  });
});
