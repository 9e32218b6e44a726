import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { freePort, startRedis, stopAll, type RedisProc } from '../helpers/servers.js';

/** sends raw RESP and reads until `count` replies' worth of lines arrive or the socket closes */
function rawExchange(port: number, payload: string, waitFor: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timed out; got ${JSON.stringify(text)}`));
    }, 5000);
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if (waitFor(text)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', reject);
    sock.write(payload);
  });
}

const cmd = (...args: string[]): string => `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
const lines = (n: number) => (t: string) => t.split('\r\n').length > n;

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('client and backend passwords', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  let port: number;

  before(async () => {
    redis = await startRedis({ args: ['--requirepass', 'backend-secret'] });
    const { config } = parseConfig(
      `[[clusters]]
name = "auth"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${redis.port}:1 r1"]
password = "front-secret"
backend_password = "backend-secret"
`,
      'auth.toml',
    );
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    port = proxy.listeners[0].port;
  });
  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  it('answers NOAUTH before AUTH, WRONGPASS for a wrong password, and serves after the right one', async () => {
    const text = await rawExchange(
      port,
      cmd('GET', 'k') + cmd('AUTH', 'nope') + cmd('GET', 'k') + cmd('AUTH', 'front-secret') + cmd('SET', 'k', 'v') + cmd('GET', 'k'),
      (t) => t.endsWith('$1\r\nv\r\n'),
    );
    assert.equal(
      text,
      '-NOAUTH Authentication required.\r\n' +
        '-WRONGPASS invalid username-password pair or user is disabled.\r\n' +
        '-NOAUTH Authentication required.\r\n' +
        '+OK\r\n+OK\r\n$1\r\nv\r\n',
    );
  });

  it('accepts HELLO 3 AUTH default <password> and answers in RESP3', async () => {
    const text = await rawExchange(port, cmd('HELLO', '3', 'AUTH', 'default', 'front-secret') + cmd('GET', 'k'), (t) => t.endsWith('$1\r\nv\r\n'));
    assert.match(text, /^%8\r\n/);
    assert.ok(text.endsWith('$1\r\nv\r\n'));
  });

  it('applies Redis pre-auth limits before AUTH (10 arguments, 16 KiB bulks) and lifts them after', async () => {
    const many = cmd('DEL', ...Array.from({ length: 10 }, (_, i) => `k${i}`)); // 11 arguments
    const tooMany = await rawExchange(port, many, (t) => t.length > 0);
    assert.equal(tooMany, '-ERR Protocol error: unauthenticated multibulk length\r\n');
    const big = await rawExchange(port, `*2\r\n$4\r\nAUTH\r\n$16385\r\n`, (t) => t.length > 0);
    assert.equal(big, '-ERR Protocol error: unauthenticated bulk length\r\n');
    // once authenticated, in the same chunk as AUTH, the same requests are fine
    const value = 'x'.repeat(20_000);
    const ok = await rawExchange(port, cmd('AUTH', 'front-secret') + many + cmd('SET', 'big', value) + cmd('STRLEN', 'big'), (t) => t.endsWith(':20000\r\n'));
    assert.equal(ok, '+OK\r\n:0\r\n+OK\r\n:20000\r\n');
  });

  it('HELLO with a wrong password keeps the connection unauthenticated', async () => {
    const text = await rawExchange(port, cmd('HELLO', '3', 'AUTH', 'default', 'bad') + cmd('GET', 'k'), lines(2));
    assert.equal(text, '-WRONGPASS invalid username-password pair or user is disabled.\r\n-NOAUTH Authentication required.\r\n');
  });
});

describe('metrics endpoint', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  let metricsPort: number;

  before(async () => {
    redis = await startRedis();
    metricsPort = await freePort();
    const { config } = parseConfig(
      `[[clusters]]
name = "m"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${redis.port}:1 r1"]
`,
      'm.toml',
    );
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort, reload: false, logger: createLogger('silent') });
  });
  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  it('exposes the aster names, and the counters move', async () => {
    const before = await get(metricsPort, '/metrics');
    assert.equal(before.status, 200);
    for (const name of ['aster_version{version=', 'aster_front_connection{cluster="m"}', 'aster_thread_count', 'aster_memory_usage', 'aster_cpu_usage', 'aster_backend_health_status{cluster="m",backend="r1"} 1']) {
      assert.ok(before.body.includes(name), `missing ${name}`);
    }
    // the sum of every series of a metric whose labels start with `prefix` (e.g. all commands of one cluster)
    const count = (body: string, prefix: string): number =>
      body
        .split('\n')
        .filter((l) => l.startsWith(prefix))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const cmdsBefore = count(before.body, 'aster_commands_total{cluster="m"');
    const connsBefore = count(before.body, 'aster_front_connection_incr{cluster="m"}');
    await rawExchange(proxy.listeners[0].port, cmd('SET', 'a', '1') + cmd('GET', 'a') + cmd('PING'), (t) => t.endsWith('+PONG\r\n'));
    const afterScrape = await get(metricsPort, '/metrics');
    assert.equal(count(afterScrape.body, 'aster_commands_total{cluster="m"'), cmdsBefore + 3);
    assert.equal(count(afterScrape.body, 'aster_front_connection_incr{cluster="m"}'), connsBefore + 1);
  });

  it('answers /healthz and /ready', async () => {
    assert.equal((await get(metricsPort, '/healthz')).status, 200);
    assert.equal((await get(metricsPort, '/ready')).status, 200);
    assert.equal((await get(metricsPort, '/nope')).status, 404);
  });
});
