import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { Raw, RespErr } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const toml = (port: number, extra: string): string => `[[clusters]]
name = "pol"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${port}:1 r1"]
${extra}
`;

describe('maxclients and deny_commands', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  const open: Raw[] = [];

  before(async () => {
    redis = await startRedis();
    const { config } = parseConfig(toml(redis.port, 'maxclients = 2'), 'pol.toml');
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
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

  it('answers a connection over maxclients with the Redis error and closes it; a freed slot is usable again', async () => {
    const a = await connect();
    const b = await connect();
    assert.equal(await a.call('PING'), 'PONG');
    assert.equal(await b.call('PING'), 'PONG');
    const c = await connect();
    await c.waitClosed();
    assert.deepEqual(c.replies, [new RespErr('ERR max number of clients reached')]);
    a.close();
    const d = await waitForSlot(connect);
    assert.equal(await d.call('PING'), 'PONG');
    d.close();
    b.close();
  });

  it('denies the default dangerous commands with an error naming the policy, keeping the connection', async () => {
    await waitFor(() => proxy.listeners.length > 0, 1000);
    const r = await waitForSlot(connect);
    await r.call('SET', 'k', 'v');
    const debug = await r.call('DEBUG', 'OBJECT', 'k'); // has a key: without the policy it would reach the backend
    assert.ok(debug instanceof RespErr && /denied by this proxy's policy \(deny_commands\)/.test(debug.message), JSON.stringify(debug));
    const rewrite = await r.call('CONFIG', 'REWRITE');
    assert.ok(rewrite instanceof RespErr && /'config\|rewrite' is denied/.test(rewrite.message), JSON.stringify(rewrite));
    // CONFIG GET/SET are admin commands: off by default, with an error naming the setting
    const config = await r.call('CONFIG', 'GET', 'maxmemory');
    assert.ok(config instanceof RespErr && /'config\|get' runs on every server and needs admin_commands = true/.test(config.message), JSON.stringify(config));
    assert.equal(await r.call('GET', 'k'), 'v');
    r.close();
  });
});

describe('deny_commands set in the config', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;

  before(async () => {
    redis = await startRedis();
    const { config } = parseConfig(toml(redis.port, 'deny_commands = ["object|freq", "GETDEL"]'), 'pol.toml');
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
  });
  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  it('denies exactly the listed commands and subcommands, and only them', async () => {
    const r = await Raw.connect(proxy.listeners[0].port);
    await r.call('SET', 'k', 'v');
    assert.ok((await r.call('OBJECT', 'FREQ', 'k')) instanceof RespErr);
    assert.equal(await r.call('OBJECT', 'ENCODING', 'k'), 'embstr');
    assert.ok((await r.call('GETDEL', 'k')) instanceof RespErr);
    // the default list is replaced, not extended: DEBUG OBJECT reaches the backend now
    const dbg = await r.call('DEBUG', 'OBJECT', 'nokey');
    assert.ok(dbg instanceof RespErr && !/denied/.test(dbg.message), JSON.stringify(dbg)); // the backend's own "no such key"
    r.close();
  });
});

/** connects until the proxy has seen an earlier client leave (the close is asynchronous) */
async function waitForSlot(connect: () => Promise<Raw>): Promise<Raw> {
  for (let i = 0; i < 50; i++) {
    const r = await connect();
    const pong = await r.call('PING').catch(() => null);
    if (pong === 'PONG') return r;
    r.close();
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('no free client slot');
}
