import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startRedis, stopAll, type RedisProc } from '../helpers/servers.js';

const logger = createLogger('silent');
const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger };

describe('several clusters in one proxy', () => {
  let a: RedisProc;
  let b: RedisProc;
  let proxy: RunningProxy;
  const clients: Redis[] = [];

  before(async () => {
    [a, b] = await Promise.all([startRedis(), startRedis()]);
    const { config } = parseConfig(
      `[[clusters]]
name = "alpha"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${a.port}:1 a1"]

[[clusters]]
name = "beta"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${b.port}:1 b1"]
`,
      'two.toml',
    );
    proxy = await startProxy(config, opts);
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await proxy?.close();
    await stopAll();
  });

  it('gives each cluster its own listener and its own backends', async () => {
    assert.deepEqual(
      proxy.listeners.map((l) => l.cluster),
      ['alpha', 'beta'],
    );
    assert.notEqual(proxy.listeners[0].port, proxy.listeners[1].port);
    const [pa, pb] = proxy.listeners.map((l) => {
      const c = new Redis({ host: '127.0.0.1', port: l.port, lazyConnect: true });
      clients.push(c);
      return c;
    });
    await pa.set('k', 'from-alpha');
    await pb.set('k', 'from-beta');
    assert.equal(await pa.get('k'), 'from-alpha');
    assert.equal(await pb.get('k'), 'from-beta');
    const da = new Redis({ host: '127.0.0.1', port: a.port, lazyConnect: true });
    const db = new Redis({ host: '127.0.0.1', port: b.port, lazyConnect: true });
    clients.push(da, db);
    assert.equal(await da.get('k'), 'from-alpha');
    assert.equal(await db.get('k'), 'from-beta');
    assert.match(String(await pa.info('proxy')), /cluster:alpha/);
  });
});
