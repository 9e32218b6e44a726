/** Repeated wrong passwords: slowed by client address, and a connection closed at the 10th. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { Raw, RespErr } from '../helpers/raw-client.js';
import { startRedis, stopAll, type RedisProc } from '../helpers/servers.js';

describe('wrong passwords', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  const open: Raw[] = [];

  before(async () => {
    redis = await startRedis();
    const toml = `[[clusters]]
name = "guard"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
password = "s3cret"
servers = ["127.0.0.1:${redis.port}:1"]
`;
    proxy = await startProxy(parseConfig(toml, 'guard.toml').config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
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

  const timed = async (r: Raw, ...args: string[]): Promise<[unknown, number]> => {
    const t = Date.now();
    const reply = await r.call(...args);
    return [reply, Date.now() - t];
  };

  it('answers the first failures at once, then ever later (also on a new connection from the same address); the right password still works', async () => {
    const a = await connect();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const [reply, ms] = await timed(a, 'AUTH', 'wrong');
      assert.ok(reply instanceof RespErr && reply.message.startsWith('WRONGPASS'), JSON.stringify(reply));
      times.push(ms);
    }
    assert.ok(times[3] >= 90 && times[4] >= 190, `waits ${times.join(', ')} ms`);
    const b = await connect();
    const [, ms] = await timed(b, 'HELLO', '3', 'AUTH', 'default', 'nope');
    assert.ok(ms >= 390, `the same address on a new connection waits ${ms} ms`);
    assert.equal(await b.call('AUTH', 's3cret'), 'OK');
    // a success forgets the address
    const [, fast] = await timed(a, 'AUTH', 'wrong');
    assert.ok(fast < 90, `after a success ${fast} ms`);
    assert.equal(await a.call('AUTH', 's3cret'), 'OK');
    assert.equal(await a.call('SET', 'k', 'v'), 'OK');
  });

  it('closes a connection after its 10th wrong password', { timeout: 30_000 }, async () => {
    const c = await connect();
    // a right password between every three wrong ones keeps the address's waits at 0; the
    // connection's own count goes on
    for (let i = 1; i <= 10; i++) {
      const reply = await c.call('AUTH', 'wrong');
      assert.ok(reply instanceof RespErr && reply.message.startsWith('WRONGPASS'), `failure ${i}: ${JSON.stringify(reply)}`);
      if (i % 3 === 0) assert.equal(await c.call('AUTH', 's3cret'), 'OK');
    }
    await c.waitClosed(5000);
  });
});
