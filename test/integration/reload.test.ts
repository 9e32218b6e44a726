/**
 * Hot reload against real redis-servers: the proxy runs in-process on a temp config file, the
 * file is rewritten (or swapped the Kubernetes way, or the process gets SIGHUP), and the tests
 * check what clients and backends see.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ServerSpec } from '../../src/config/types.js';
import { ShardMap } from '../../src/routing/shard-map.js';
import { loadConfig } from '../../src/sources/config-file.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { freePort, startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

type Reply = string | number | null | { err: string };

/** A raw RESP client: pipelines commands and parses simple, error, integer and bulk replies. */
class Conn {
  private buf = '';
  private readonly replies: Reply[] = [];
  private waiting: Array<{ n: number; resolve: () => void }> = [];
  private sent = 0;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      for (;;) {
        const r = this.parseOne();
        if (r === undefined) break;
        this.replies.push(r);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => (s.destroy(), reject(new Error(`connect to ${port} timed out`))), 3000);
      s.once('error', (err) => (clearTimeout(timer), reject(err)));
      s.once('connect', () => (clearTimeout(timer), resolve(new Conn(s))));
    });
  }

  private parseOne(): Reply | undefined {
    const nl = this.buf.indexOf('\r\n');
    if (nl < 0) return undefined;
    const line = this.buf.slice(1, nl);
    switch (this.buf[0]) {
      case '+':
        this.buf = this.buf.slice(nl + 2);
        return line;
      case '-':
        this.buf = this.buf.slice(nl + 2);
        return { err: line };
      case ':':
        this.buf = this.buf.slice(nl + 2);
        return Number(line);
      case '$': {
        const len = Number(line);
        if (len < 0) {
          this.buf = this.buf.slice(nl + 2);
          return null;
        }
        if (this.buf.length < nl + 2 + len + 2) return undefined;
        const v = this.buf.slice(nl + 2, nl + 2 + len);
        this.buf = this.buf.slice(nl + 2 + len + 2);
        return v;
      }
      default:
        throw new Error(`unexpected reply ${JSON.stringify(this.buf.slice(0, 40))}`);
    }
  }

  private wake(): void {
    for (const w of [...this.waiting]) if (this.replies.length >= w.n || this.closed) w.resolve();
  }

  /** sends the commands in one write; resolves their replies (rejects if the connection closes first) */
  async send(cmds: string[][], ms = 5000): Promise<Reply[]> {
    const first = this.sent;
    this.sent += cmds.length;
    this.socket.write(cmds.map((c) => `*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`).join(''));
    const n = first + cmds.length;
    if (this.replies.length < n && !this.closed) {
      await new Promise<void>((resolve, reject) => {
        const w = { n, resolve: () => (clearTimeout(timer), this.waiting.splice(this.waiting.indexOf(w), 1), resolve()) };
        const timer = setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(w), 1);
          reject(new Error(`timed out: ${this.replies.length - first} of ${cmds.length} replies`));
        }, ms);
        this.waiting.push(w);
      });
    }
    if (this.replies.length < n) throw new Error(`connection closed after ${this.replies.length - first} of ${cmds.length} replies`);
    return this.replies.slice(first, n);
  }

  async call(...args: string[]): Promise<Reply> {
    return (await this.send([args]))[0];
  }

  waitClosed(ms = 5000): Promise<void> {
    return waitFor(() => this.closed, ms, 'the connection to close');
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Whether a new connection to `port` is refused (the listener is closed). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

interface ClusterSketch {
  name: string;
  listen?: string;
  servers: string[];
  extra?: string;
}

function toml(...clusters: ClusterSketch[]): string {
  return clusters
    .map(
      (c) => `[[clusters]]
name = "${c.name}"
listen_addr = "${c.listen ?? '127.0.0.1:0'}"
cache_type = "redis"
servers = ${JSON.stringify(c.servers)}
thread = 1
${c.extra ?? ''}
`,
    )
    .join('\n');
}

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aster-reload-'));
  dirs.push(dir);
  return dir;
}

interface Started {
  proxy: RunningProxy;
  lines: LogLine[];
  port(cluster?: string): number;
}

const proxies: RunningProxy[] = [];
const conns: Conn[] = [];

async function connect(port: number): Promise<Conn> {
  const c = await Conn.connect(port);
  conns.push(c);
  return c;
}

/** Starts the proxy on `file` as the CLI would; with `watch`, waits until the watcher is in place. */
async function start(file: string, watch = true): Promise<Started> {
  const lines: LogLine[] = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const proxy = await startProxy(loadConfig(file).config, { ip: '127.0.0.1', metricsPort: 0, reload: watch, configFile: file, logger });
  proxies.push(proxy);
  if (watch) await waitFor(() => reloads(proxy).watching, 10_000, 'the config watcher to be ready');
  const port = (cluster = 'main'): number => {
    const l = proxy.listeners.find((x) => x.cluster === cluster);
    if (l === undefined) throw new Error(`no listener for cluster ${cluster}`);
    return l.port;
  };
  return { proxy, lines, port };
}

function reloads(proxy: RunningProxy) {
  assert.ok(proxy.reloads, 'the proxy exposes reload counters');
  return proxy.reloads();
}

async function reloaded(proxy: RunningProxy, ok: number, failed = 0): Promise<void> {
  await waitFor(() => reloads(proxy).ok + reloads(proxy).failed >= ok + failed, 10_000, `${ok} applied and ${failed} failed reloads`);
  const r = reloads(proxy);
  assert.equal(r.failed, failed, `failed reloads (last error: ${r.lastError})`);
  assert.equal(r.ok, ok, 'applied reloads');
}

const servers = (file: string, cluster = 'main'): ServerSpec[] => loadConfig(file).config.clusters.find((c) => c.name === cluster)!.servers;

describe('hot reload', { timeout: 120_000 }, () => {
  let a: RedisProc;
  let b: RedisProc;
  let c: RedisProc;
  const direct = new Map<number, Conn>();
  /** a direct connection to the backend at `port` */
  const backend = async (port: number): Promise<Conn> => {
    let conn = direct.get(port);
    if (conn === undefined || conn.closed) {
      conn = await Conn.connect(port);
      direct.set(port, conn);
    }
    return conn;
  };
  const backendByAddr = (addr: string): Promise<Conn> => backend(Number(addr.split(':')[1]));

  before(async () => {
    [a, b, c] = await Promise.all([startRedis({ args: ['--enable-debug-command', 'yes'] }), startRedis(), startRedis()]);
  });
  afterEach(async () => {
    for (const conn of conns.splice(0)) conn.close();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    for (const r of [a, b, c]) await (await backend(r.port)).call('FLUSHALL');
  });
  after(async () => {
    for (const conn of direct.values()) conn.close();
    await stopAll();
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('adds a server while a client pipelines: no dropped connection, no error, new keys placed by the new ring', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b')] }));
    const { proxy, lines, port } = await start(file);
    const before = new ShardMap(servers(file), undefined);
    const client = await connect(port());

    // phase: 0 before the new file is written, 1 written, 2 the reload is reported done
    let phase = 0;
    let stop = false;
    let seq = 0;
    const batches: Array<{ from: number; to: number; startPhase: number; endPhase: number }> = [];
    const errors: string[] = [];
    const pipelining = (async () => {
      while (!stop && batches.length < 5000) {
        const startPhase = phase;
        const from = seq;
        const cmds: string[][] = [];
        for (let i = 0; i < 50; i++, seq++) cmds.push(['SET', `add:${seq}`, String(seq)]);
        const replies = await client.send(cmds);
        replies.forEach((r, i) => {
          if (r !== 'OK') errors.push(`SET add:${from + i}: ${JSON.stringify(r)}`);
        });
        batches.push({ from, to: seq, startPhase, endPhase: phase });
      }
    })();

    await waitFor(() => batches.length >= 10, 10_000, 'ten batches before the reload');
    phase = 1;
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b'), srv(c, 1, 'c')] }));
    await reloaded(proxy, 1);
    phase = 2;
    const mark = batches.length;
    await waitFor(() => batches.length >= mark + 10 || errors.length > 0, 10_000, 'ten batches after the reload');
    stop = true;
    await pipelining;

    assert.deepEqual(errors, []);
    assert.equal(client.closed, false, 'the client connection stayed open');
    const next = new ShardMap(servers(file), undefined);
    const oldKeys = batches.filter((x) => x.endPhase === 0).flatMap((x) => range(x.from, x.to));
    const newKeys = batches.filter((x) => x.startPhase === 2).flatMap((x) => range(x.from, x.to));
    assert.ok(oldKeys.length >= 500 && newKeys.length >= 500);
    await assertPlaced(before, oldKeys.map((i) => `add:${i}`));
    const onC = newKeys.map((i) => `add:${i}`).filter((k) => next.servers[next.backendFor(Buffer.from(k))].addr === `127.0.0.1:${c.port}`);
    assert.ok(onC.length > 0, `the new server owns some of the new keys (${onC.length} of ${newKeys.length})`);
    await assertPlaced(next, newKeys.map((i) => `add:${i}`));

    const done = lines.find((l) => l.msg === 'config reloaded');
    assert.deepEqual(done?.['reconfigured'], [{ cluster: 'main', keys: ['servers'] }]);
  });

  /** every key is on the server `map` assigns it to, with the value it was set to */
  async function assertPlaced(map: ShardMap, keys: string[]): Promise<void> {
    const byServer = new Map<string, string[]>();
    for (const k of keys) {
      const addr = map.servers[map.backendFor(Buffer.from(k))].addr;
      byServer.set(addr, [...(byServer.get(addr) ?? []), k]);
    }
    for (const [addr, ks] of byServer) {
      const replies = await (await backendByAddr(addr)).send(ks.map((k) => ['GET', k]));
      const missing = ks.filter((k, i) => replies[i] !== k.split(':')[1]);
      assert.deepEqual(missing.slice(0, 5), [], `keys missing on ${addr} (${missing.length} of ${ks.length})`);
    }
  }

  it('removes a server: its keys go to the others and its backend connection closes', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b'), srv(c, 1, 'c')] }));
    const { proxy, port } = await start(file);
    const client = await connect(port());
    assert.equal(await client.call('SET', 'warm', '1'), 'OK');
    const onC = await backend(c.port);
    // the proxy holds a connection to c (besides ours)
    await waitFor(async () => clientCount(await onC.call('CLIENT', 'LIST')) >= 2, 5000, 'the proxy to connect to c');

    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b')] }));
    await reloaded(proxy, 1);
    const keys = range(0, 300).map((i) => `rm:${i}`);
    const replies = await client.send(keys.map((k) => ['SET', k, k.split(':')[1]]));
    assert.ok(replies.every((r) => r === 'OK'), JSON.stringify(replies.find((r) => r !== 'OK')));
    await assertPlaced(new ShardMap(servers(file), undefined), keys);
    assert.equal(await onC.call('DBSIZE'), 0, 'nothing written to the removed server');
    await waitFor(async () => clientCount(await onC.call('CLIENT', 'LIST')) === 1, 5000, 'the proxy to close its connection to c');
    assert.equal(client.closed, false);
  });

  it('reweights servers (file replaced by a rename): new keys follow the new weights on the same connection', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b')] }));
    const { proxy, port } = await start(file);
    const client = await connect(port());
    const before = new ShardMap(servers(file), undefined);
    // saved the way editors do: a new file renamed over the old one
    fs.writeFileSync(`${file}.tmp`, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 5, 'b')] }));
    fs.renameSync(`${file}.tmp`, file);
    await reloaded(proxy, 1);
    const next = new ShardMap(servers(file), undefined);
    const keys = range(0, 400).map((i) => `w:${i}`);
    const moved = keys.filter((k) => before.backendFor(Buffer.from(k)) !== next.backendFor(Buffer.from(k)));
    assert.ok(moved.length > 20, 'the weights change moves some keys');
    const replies = await client.send(keys.map((k) => ['SET', k, k.split(':')[1]]));
    assert.ok(replies.every((r) => r === 'OK'));
    await assertPlaced(next, keys);
  });

  it('a changed thread is not applied by a reload, and the log says a restart is needed', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a')] }));
    const { proxy, port, lines } = await start(file);
    const client = await connect(port());
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a')] }).replace('thread = 1', 'thread = 2'));
    await reloaded(proxy, 1);
    const warned = lines.find((l) => l.msg.startsWith('thread changed'));
    assert.ok(warned !== undefined, JSON.stringify(lines.map((l) => l.msg)));
    assert.equal(warned['thread'], 1);
    assert.equal(warned['wanted'], 2);
    assert.match(warned.msg, /restarted/);
    assert.equal(await client.call('SET', 'thread:k', 'v'), 'OK');
  });

  it('applies a new read_timeout to a running cluster without dropping the client', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a')], extra: 'read_timeout = 5000' }));
    const { proxy, port } = await start(file);
    const client = await connect(port());
    assert.equal(await client.call('SET', 'slow', 'v'), 'OK');
    const sleeper = await Conn.connect(a.port);
    conns.push(sleeper);

    // a 1 s stall is within 5000 ms: the reply arrives
    const stall1 = sleeper.call('DEBUG', 'SLEEP', '1');
    await sleep(50);
    assert.equal(await client.call('GET', 'slow'), 'v');
    assert.equal(await stall1, 'OK');

    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a')], extra: 'read_timeout = 100' }));
    await reloaded(proxy, 1);
    // the same stall is now past read_timeout: the request gets an error, the client stays
    const stall2 = sleeper.call('DEBUG', 'SLEEP', '1');
    await sleep(50);
    const r = await client.call('GET', 'slow');
    assert.ok(typeof r === 'object' && r !== null && /^ERR backend a:/.test(r.err), `expected a timeout error, got ${JSON.stringify(r)}`);
    assert.equal(await stall2, 'OK');
    await waitFor(async () => (await client.call('GET', 'slow')) === 'v', 5000, 'the backend to answer again');
    assert.equal(client.closed, false);
  });

  it('applies new request limits to the clients already connected, from their next request', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    const withLimit = (bytes: number): string => toml({ name: 'main', servers: [srv(a, 1, 'a')], extra: `[clusters.limits]\nmax_bulk_bytes = ${bytes}` });
    fs.writeFileSync(file, withLimit(1 << 20));
    const { proxy, port } = await start(file);
    const client = await connect(port());
    const big = 'x'.repeat(4096);
    assert.equal(await client.call('SET', 'limited', big), 'OK');
    fs.writeFileSync(file, withLimit(1024));
    await reloaded(proxy, 1);
    // the same connection: a 4096-byte argument is now over the limit (a protocol error, then closed)
    const r = await client.call('SET', 'limited', big);
    assert.ok(typeof r === 'object' && r !== null && /^ERR Protocol error: invalid bulk length \(more than 1024 bytes\)/.test(r.err), `expected the new limit, got ${JSON.stringify(r)}`);
    await waitFor(() => client.closed, 5000, 'the proxy to close the connection after the protocol error');
    // small requests pass, on a new connection as well
    const other = await connect(port());
    assert.equal(await other.call('SET', 'limited', 'small'), 'OK');
    assert.equal(await other.call('GET', 'limited'), 'small');
  });

  it('refuses an invalid config: the old one keeps serving, the error names file, cluster and key, and is counted', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    const good = toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b')] });
    fs.writeFileSync(file, good);
    const { proxy, lines, port } = await start(file);
    const client = await connect(port());
    const map = new ShardMap(servers(file), undefined);

    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b'), srv(c, 1, 'c')], extra: 'read_timeout = -5' }));
    await reloaded(proxy, 0, 1);
    const failure = lines.find((l) => l.msg.startsWith('config reload failed'));
    assert.ok(failure, 'a log line says the reload failed');
    assert.match(String(failure['error']), new RegExp(`${escape(file)}: cluster "main": read_timeout: `));
    assert.equal(failure['file'], file);
    assert.match(String(reloads(proxy).lastError), /read_timeout/);

    // still the old servers and placement
    const keys = range(0, 200).map((i) => `bad:${i}`);
    const replies = await client.send(keys.map((k) => ['SET', k, k.split(':')[1]]));
    assert.ok(replies.every((r) => r === 'OK'));
    await assertPlaced(map, keys);
    assert.equal(await (await backend(c.port)).call('DBSIZE'), 0);

    // and a good file after the bad one is applied
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a'), srv(b, 1, 'b'), srv(c, 1, 'c')] }));
    await reloaded(proxy, 1, 1);
    assert.equal(client.closed, false);
  });

  it('picks up a Kubernetes ConfigMap update (the ..data symlink swapped by a rename)', async () => {
    const dir = tempDir();
    const version = (name: string, text: string): void => {
      fs.mkdirSync(path.join(dir, name));
      fs.writeFileSync(path.join(dir, name, 'proxy.toml'), text);
    };
    version('..2026_01_01_00_00_00.000000001', toml({ name: 'main', servers: [srv(a, 1, 'a')] }));
    fs.symlinkSync('..2026_01_01_00_00_00.000000001', path.join(dir, '..data'));
    fs.symlinkSync('..data/proxy.toml', path.join(dir, 'proxy.toml'));
    const file = path.join(dir, 'proxy.toml');
    const { proxy, port } = await start(file);
    const client = await connect(port());

    // what the kubelet does: a new directory, a new symlink to it, renamed over ..data, the old
    // one deleted. The pause lets the watcher see the new directory first: then only the rename
    // of the symlink, which chokidar reports no event of its own for, tells the file changed.
    const swap = async (name: string, text: string, done: number): Promise<void> => {
      version(name, text);
      await sleep(400);
      assert.equal(reloads(proxy).ok, done, 'a new directory alone changes nothing');
      fs.symlinkSync(name, path.join(dir, '..data_tmp'));
      fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    };
    await swap('..2026_01_01_00_01_00.000000002', toml({ name: 'main', servers: [srv(b, 1, 'b')] }), 0);
    await reloaded(proxy, 1);
    assert.equal(await client.call('SET', 'k8s', '1'), 'OK');
    assert.equal(await (await backend(b.port)).call('GET', 'k8s'), '1');
    fs.rmSync(path.join(dir, '..2026_01_01_00_00_00.000000001'), { recursive: true });

    // and again, now that the file's first target is gone
    await swap('..2026_01_01_00_02_00.000000003', toml({ name: 'main', servers: [srv(c, 1, 'c')] }), 1);
    await reloaded(proxy, 2);
    assert.equal(await client.call('SET', 'k8s', '2'), 'OK');
    assert.equal(await (await backend(c.port)).call('GET', 'k8s'), '2');
    assert.equal(client.closed, false);
  });

  it('reloads on SIGHUP, without --reload', async () => {
    const file = path.join(tempDir(), 'proxy.toml');
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(a, 1, 'a')] }));
    const { proxy, port } = await start(file, false);
    const client = await connect(port());
    fs.writeFileSync(file, toml({ name: 'main', servers: [srv(b, 1, 'b')] }));
    assert.equal(reloads(proxy).watching, false);
    // Node's default for SIGHUP ends the process: send it only with the proxy's listener in place
    assert.ok(process.listenerCount('SIGHUP') > 0, 'the proxy listens for SIGHUP');
    process.kill(process.pid, 'SIGHUP');
    await reloaded(proxy, 1);
    assert.equal(await client.call('SET', 'hup', 'x'), 'OK');
    assert.equal(await (await backend(b.port)).call('GET', 'hup'), 'x');
    assert.equal(await (await backend(a.port)).call('GET', 'hup'), null);
    assert.equal(client.closed, false);
  });

  it('adds a cluster (its listener answers), replaces one whose listen_addr changed, removes one after its in-flight replies', async () => {
    // a backend that answers only when told, so that a request is surely in flight
    const held: net.Socket[] = [];
    let received = '';
    const fake = net.createServer((s) => {
      held.push(s);
      s.on('data', (d) => (received += d.toString('latin1')));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const fakePort = (fake.address() as net.AddressInfo).port;
    try {
      const [p1, p2] = [await freePort(), await freePort()];
      const file = path.join(tempDir(), 'proxy.toml');
      fs.writeFileSync(
        file,
        toml(
          { name: 'main', listen: `127.0.0.1:${p1}`, servers: [srv(a, 1, 'a')] },
          { name: 'going', servers: [`127.0.0.1:${fakePort}:1 fake`], extra: 'read_timeout = 60000' },
        ),
      );
      const { proxy, lines, port } = await start(file);
      const mainClient = await connect(p1);
      assert.equal(await mainClient.call('SET', 'm', '1'), 'OK');
      const goingPort = port('going');
      const goingClient = await connect(goingPort);
      const inFlight = goingClient.send([['GET', 'held']], 30_000);
      await waitFor(() => received.includes('held'), 5000, 'the request to reach the held backend');

      fs.writeFileSync(
        file,
        toml({ name: 'main', listen: `127.0.0.1:${p2}`, servers: [srv(a, 1, 'a')] }, { name: 'extra', servers: [srv(b, 1, 'b')] }),
      );
      // the removed cluster stops accepting at once; its client waits for its reply
      await waitFor(() => refused(goingPort), 10_000, 'the removed cluster to stop listening');
      await waitFor(() => proxy.listeners.some((l) => l.cluster === 'extra'), 10_000, 'the new cluster');
      assert.equal(goingClient.closed, false, 'a client with a request in flight is not cut off');
      assert.equal(reloads(proxy).ok, 0, 'the reload waits for the removed cluster');

      // the new cluster answers, on its own backend
      const extraClient = await connect(port('extra'));
      assert.equal(await extraClient.call('SET', 'x', 'on-b'), 'OK');
      assert.equal(await (await backend(b.port)).call('GET', 'x'), 'on-b');
      // main moved: the old address is closed, the new one serves, the old client was closed
      assert.equal(await refused(p1), true);
      const moved = await connect(p2);
      assert.equal(await moved.call('GET', 'm'), '1');
      await mainClient.waitClosed();

      // the held reply is delivered, then the client of the removed cluster is closed
      for (const s of held) s.write('$4\r\nlate\r\n');
      assert.deepEqual(await inFlight, ['late']);
      await goingClient.waitClosed();
      await reloaded(proxy, 1);
      assert.deepEqual(proxy.listeners.map((l) => l.cluster).sort(), ['extra', 'main']);
      const done = lines.find((l) => l.msg === 'config reloaded');
      assert.deepEqual(done?.['added'], ['main', 'extra']);
      assert.deepEqual((done?.['removed'] as string[]).sort(), ['going', 'main']);
    } finally {
      // the proxy first, or it would reconnect to the fake backend and keep it from closing
      // (and its clients before it: closing a listener waits for its connections)
      for (const conn of conns.splice(0)) conn.close();
      await Promise.all(proxies.splice(0).map((p) => p.close()));
      fake.close();
      for (const s of held) s.destroy();
    }
  });
});

const BIN = new URL('../../../bin/aster-proxy.js', import.meta.url).pathname;

describe('hot reload through the command line (spawned bin/aster-proxy.js)', { timeout: 60_000 }, () => {
  after(async () => {
    await stopAll();
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** runs the proxy on `file`; `log` collects its stderr; killed by PID at the end of `body` */
  async function withProxy(file: string, args: string[], body: (log: () => string, pid: number) => Promise<void>): Promise<void> {
    const child = spawn(process.execPath, [BIN, '-c', file, '-m', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      await waitFor(() => log.includes('"msg":"listening"') || child.exitCode !== null, 10_000, 'the proxy to listen');
      assert.equal(child.exitCode, null, `the proxy exited:\n${log}`);
      await body(() => log, child.pid!);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    }
  }

  const answers = async (port: number): Promise<boolean> => {
    const c = await Conn.connect(port);
    try {
      return (await c.call('PING')) === 'PONG';
    } finally {
      c.close();
    }
  };

  it('with --reload, applies a changed file: a cluster added to it starts listening', async () => {
    const r = await startRedis();
    const file = path.join(tempDir(), 'proxy.toml');
    const [p1, p2] = [await freePort(), await freePort()];
    fs.writeFileSync(file, toml({ name: 'main', listen: `127.0.0.1:${p1}`, servers: [srv(r)] }));
    await withProxy(file, ['-r'], async (log) => {
      await waitFor(() => log().includes('watching the config file'), 10_000, 'the watcher');
      assert.doesNotMatch(log(), /not implemented/);
      fs.writeFileSync(file, toml({ name: 'main', listen: `127.0.0.1:${p1}`, servers: [srv(r)] }, { name: 'second', listen: `127.0.0.1:${p2}`, servers: [srv(r)] }));
      await waitFor(() => answers(p2), 10_000, 'the added cluster to answer');
      assert.match(log(), /"msg":"config reloaded"/);
      assert.equal(await answers(p1), true);
    });
  });

  it('without --reload, a changed file waits for SIGHUP', async () => {
    const r = await startRedis();
    const file = path.join(tempDir(), 'proxy.toml');
    const [p1, p2] = [await freePort(), await freePort()];
    fs.writeFileSync(file, toml({ name: 'main', listen: `127.0.0.1:${p1}`, servers: [srv(r)] }));
    await withProxy(file, [], async (log, pid) => {
      fs.writeFileSync(file, toml({ name: 'main', listen: `127.0.0.1:${p1}`, servers: [srv(r)] }, { name: 'second', listen: `127.0.0.1:${p2}`, servers: [srv(r)] }));
      assert.equal(await refused(p2), true, 'not applied before the signal');
      process.kill(pid, 'SIGHUP');
      await waitFor(() => answers(p2), 10_000, 'the added cluster to answer');
      assert.match(log(), /"trigger":"SIGHUP"/);
      assert.doesNotMatch(log(), /watching the config file/);
    });
  });
});

const srv = (r: RedisProc, weight = 1, alias?: string): string => `127.0.0.1:${r.port}:${weight}${alias ? ` ${alias}` : ''}`;

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function clientCount(list: Reply): number {
  return String(list).split('\n').filter((l) => l.trim() !== '').length;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
