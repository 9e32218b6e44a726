import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplyDecoder } from '../../src/protocol/reply-decoder.js';
import { encodeCommand } from '../../src/protocol/request-decoder.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy } from '../../src/streams/proxy.js';
import { startRedis, stopAll, waitFor } from '../helpers/servers.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

/** starts the built proxy on `config`, resolves with the child and the port it listens on */
async function spawnProxy(config: string): Promise<{ child: ChildProcess; port: number; exit: Promise<number | null> }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/aster-proxy.js'), '-c', config, '-m', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let log = '';
  let port = 0;
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
    const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(log);
    if (m) port = Number(m[1]);
  });
  await waitFor(() => port > 0 || child.exitCode !== null, 10_000, 'the proxy to listen');
  if (port === 0) throw new Error(`proxy did not start:\n${log}`);
  return { child, port, exit };
}

describe('SIGTERM under load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aster-lifecycle-'));
  after(async () => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every request it read, in order, closes the connections and exits 0', async () => {
    const redis = await Promise.all([startRedis(), startRedis()]);
    const config = join(dir, 'p.toml');
    writeFileSync(
      config,
      `[[clusters]]
name = "life"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
thread = 1
servers = [${redis.map((r, i) => `"127.0.0.1:${r.port}:1 s${i}"`).join(', ')}]
`,
    );
    const { child, port, exit } = await spawnProxy(config);

    // four clients, each keeps 200 INCRs in flight on its own counter key
    const clients = await Promise.all(
      [0, 1, 2, 3].map(
        (c) =>
          new Promise<{ sent: number; replies: Buffer[]; closed: Promise<void> }>((resolve) => {
            const sock = net.connect({ host: '127.0.0.1', port });
            const state = { sent: 0, replies: [] as Buffer[], closed: new Promise<void>((r) => sock.once('close', () => r())) };
            const decoder = new ReplyDecoder();
            const req = encodeCommand(['INCR', `life:${c}`]);
            const top = (): void => {
              while (!sock.destroyed && state.sent - state.replies.length < 200 && state.sent < 200_000) {
                sock.write(req);
                state.sent++;
              }
            };
            sock.on('data', (d) => {
              decoder.push(d, (f) => state.replies.push(f));
              top();
            });
            sock.on('error', () => undefined);
            sock.once('connect', () => {
              top();
              resolve(state);
            });
          }),
      ),
    );
    await waitFor(() => clients.every((c) => c.replies.length > 2000), 15_000, 'traffic to flow');
    child.kill('SIGTERM');
    const code = await Promise.race([exit, new Promise<string>((r) => setTimeout(() => r('timeout'), 15_000))]);
    assert.equal(code, 0, 'the proxy exits 0 after SIGTERM');
    await Promise.all(clients.map((c) => Promise.race([c.closed, new Promise((r) => setTimeout(r, 5000))])));

    // every reply is the next count, with no error and no gap: nothing read was dropped or
    // answered wrongly; requests the proxy never read simply got no reply
    for (const [n, c] of clients.entries()) {
      assert.ok(c.replies.length > 0);
      c.replies.forEach((f, i) => assert.equal(f.toString(), `:${i + 1}\r\n`, `client ${n} reply ${i}`));
    }
    // and the backends hold exactly the counts the clients were told
    for (const [n, c] of clients.entries()) {
      const values = await Promise.all(redis.map((r) => directGet(r.port, `life:${n}`)));
      assert.equal(values.find((v) => v !== null), String(c.replies.length), `client ${n}: backend count equals replies`);
    }
  });
});

function directGet(port: number, key: string): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const decoder = new ReplyDecoder();
    sock.on('data', (d) =>
      decoder.push(d, (f) => {
        sock.destroy();
        const s = f.toString();
        resolve(s.startsWith('$-1') ? null : s.split('\r\n')[1]);
      }),
    );
    sock.on('error', reject);
    sock.write(encodeCommand(['GET', key]));
  });
}

describe('shutdown deadline', () => {
  it('ends within the deadline even while a request waits on a backend that never answers', async () => {
    // a backend that accepts and never replies, and a read_timeout far beyond the deadline
    const silent = net.createServer((sock) => sock.on('error', () => undefined));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    const { config } = parseConfig(
      `[[clusters]]\nname = "d"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nread_timeout = 60000\nservers = ["127.0.0.1:${port}:1 s"]\n`,
      'd.toml',
    );
    const proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    const client = net.connect({ host: '127.0.0.1', port: proxy.listeners[0].port });
    client.on('error', () => undefined);
    await new Promise((r) => client.once('connect', r));
    client.write(encodeCommand(['GET', 'k']));
    await new Promise((r) => setTimeout(r, 100)); // the GET is now waiting at the silent backend
    const started = Date.now();
    await Promise.race([proxy.shutdown(300), new Promise((r) => setTimeout(r, 5000))]);
    const took = Date.now() - started;
    client.destroy();
    await proxy.close(); // a no-op after a shutdown; ends what a stuck shutdown left
    silent.close();
    assert.ok(took < 5000, `shutdown took ${took} ms with a 300 ms deadline`);
  });
});
