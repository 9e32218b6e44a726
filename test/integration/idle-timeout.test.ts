/** idle_timeout: idle clients are closed (as Redis's `timeout`); busy ones and ones waiting for a reply are not. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { Raw, sleep } from '../helpers/raw-client.js';
import { startRedis, stopAll, type RedisProc } from '../helpers/servers.js';

describe('idle_timeout', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  const open: Raw[] = [];

  before(async () => {
    redis = await startRedis();
    const toml = `[[clusters]]
name = "idle"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
idle_timeout = 1
read_timeout = 5000
servers = ["127.0.0.1:${redis.port}:1"]
`;
    proxy = await startProxy(parseConfig(toml, 'idle.toml').config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
  });
  after(async () => {
    for (const r of open) r.close();
    await proxy?.close();
    await stopAll();
  });

  const connect = async (): Promise<Raw> => {
    const r = await Raw.connect(proxy.listeners[0].port);
    open.push(r);
    return r;
  };

  it('closes a client idle for longer than idle_timeout, keeps one that keeps talking, and counts it in INFO', async () => {
    const idle = await connect();
    const talker = await connect();
    assert.equal(await idle.call('PING'), 'PONG');
    const started = Date.now();
    let talks = 0;
    while (Date.now() - started < 3500 && talks < 50) {
      assert.equal(await talker.call('SET', 'k', String(talks)), 'OK');
      talks++;
      await sleep(300);
    }
    await idle.waitClosed();
    assert.equal(await talker.call('GET', 'k'), String(talks - 1));
    assert.match(String(await talker.call('INFO', 'stats')), /idle_timeout_closed:[1-9]/);
  });

  it('does not close a client that waits for a slow reply', async () => {
    const waiting = await connect();
    // a script that keeps the backend busy for 2.5 s: the client is waiting, not idle
    const script = "local t0 = redis.call('TIME') local s = tonumber(t0[1]) + tonumber(t0[2]) / 1e6 while true do local t = redis.call('TIME') if tonumber(t[1]) + tonumber(t[2]) / 1e6 - s > 2.5 then break end end return 'done'";
    assert.equal(await waiting.call('EVAL', script, '1', 'slow'), 'done');
    assert.equal(await waiting.call('PING'), 'PONG');
    // then idle: closed
    await waiting.waitClosed(5000);
  });
});
