/** The normal clients' output-buffer limit: off by default; when set, a client that does not read its replies is disconnected. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { encodeCmd, Raw } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

describe('output_hard_bytes', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  let unlimited: RunningProxy;
  const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') };

  before(async () => {
    redis = await startRedis();
    const base = (extra: string) => `[[clusters]]\nname = "out"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nservers = ["127.0.0.1:${redis.port}:1"]\n${extra}`;
    proxy = await startProxy(parseConfig(base('[clusters.limits]\noutput_hard_bytes = 4194304\n'), 'out.toml').config, opts);
    unlimited = await startProxy(parseConfig(base(''), 'out.toml').config, opts);
    const c = await Raw.connect(proxy.listeners[0].port);
    assert.equal(await c.call('SET', 'big', 'x'.repeat(1024 * 1024)), 'OK');
    c.close();
  });
  after(async () => {
    await proxy?.close();
    await unlimited?.close();
    await stopAll();
  });

  /** a client that asks for `n` copies of the 1 MiB value and reads nothing (paused: it does not see a close either) */
  const nonReader = (port: number, n: number): Promise<net.Socket> =>
    new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port }, () => {
        sock.pause();
        sock.write(Buffer.concat(Array.from({ length: n }, () => encodeCmd(['GET', 'big']))));
        resolve(sock);
      });
      sock.on('error', () => undefined);
    });
  const clientsOf = async (c: Raw): Promise<number> => Number(/connected_clients:(\d+)/.exec(String(await c.call('INFO', 'clients')))?.[1]);

  it('disconnects a client whose unread replies pass the limit; the others go on', async () => {
    const c = await Raw.connect(proxy.listeners[0].port);
    const sock = await nonReader(proxy.listeners[0].port, 64);
    try {
      await waitFor(async () => (await clientsOf(c)) === 1, 10_000, 'the non-reader disconnected');
      assert.equal(((await c.call('GET', 'big')) as string).length, 1024 * 1024);
    } finally {
      sock.destroy();
      c.close();
    }
  });

  it('has no limit by default (as Redis for normal clients): the same client is kept', async () => {
    const c = await Raw.connect(unlimited.listeners[0].port);
    const sock = await nonReader(unlimited.listeners[0].port, 64);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await clientsOf(c), 2);
    } finally {
      sock.destroy();
      c.close();
    }
  });
});
