/**
 * Workers: `thread = 2` runs a primary and two worker processes sharing one listen port, with
 * the metrics summed over workers on the primary's port. The proxy runs as `node
 * bin/aster-proxy.js`, since the processes are what is under test.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplyDecoder } from '../../src/protocol/reply-decoder.js';
import { encodeCommand } from '../../src/protocol/request-decoder.js';
import { freePort, startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';
import { missingFromScrape } from '../helpers/deploy-names.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/aster-proxy.js');
const TEST_TIMEOUT = { timeout: 60_000 };

// ---------------------------------------------------------------------------------------------
// helpers

interface Proxy {
  child: ChildProcess;
  /** resolves with the exit code (null when ended by a signal) */
  exit: Promise<number | null>;
  /** every JSON log line of the primary and its workers so far */
  events(): Array<Record<string, unknown>>;
  log(): string;
}

/** runs the proxy; `detached`: in a process group of its own (the group can be signalled like a terminal does) */
function spawnProxy(configFile: string, metricsPort: number, detached = false): Proxy {
  const env = { ...process.env };
  delete env['ASTER_DEFAULT_THREAD'];
  const child = spawn(process.execPath, [BIN, '-c', configFile, '-m', String(metricsPort)], { stdio: ['ignore', 'ignore', 'pipe'], env, detached });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let text = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (text += d));
  return {
    child,
    exit,
    log: () => text,
    events: () =>
      text
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function httpGet(port: number, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)));
    req.on('error', reject);
  });
}

/** the sum of every sample of `name` whose labels include `labels` (e.g. `cluster="w"`) */
function sample(body: string, name: string, labels = ''): number {
  let sum = 0;
  let found = false;
  for (const line of body.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name || !(m[2] ?? '').includes(labels)) continue;
    sum += Number(m[3]);
    found = true;
  }
  assert.ok(found, `no sample ${name}{${labels}} in the metrics`);
  return sum;
}

/** A RESP client on one connection: commands out, reply frames in. */
class Client {
  readonly replies: string[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new ReplyDecoder();
  private waiter: (() => void) | undefined;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d) =>
      this.decoder.push(d, (frame) => {
        this.replies.push(frame.toString('latin1'));
        this.waiter?.();
      }),
    );
    sock.on('error', () => undefined);
    this.closed = new Promise((resolve) => sock.once('close', () => resolve()));
    void this.closed.then(() => this.waiter?.());
  }

  static open(port: number, timeoutMs = 2000): Promise<Client> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error('connect timed out'));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(new Client(sock));
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  send(...commands: string[][]): void {
    this.sock.write(Buffer.concat(commands.map((c) => encodeCommand(c))));
  }

  /** waits until `count` replies have arrived in all (rejects at the timeout or on close before) */
  async until(count: number, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < count) {
      if (this.sock.destroyed) throw new Error(`connection closed after ${this.replies.length} of ${count} replies`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.replies.length} of ${count} replies`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.replies.slice(0, count);
  }

  /** sends one command and resolves its reply */
  async call(args: string[], timeoutMs = 5000): Promise<string> {
    const n = this.replies.length;
    this.send(args);
    return (await this.until(n + 1, timeoutMs))[n]!;
  }

  /** the process id in this connection's `INFO server` (which worker serves it) */
  async pid(timeoutMs = 5000): Promise<number> {
    const info = await this.call(['INFO', 'server'], timeoutMs);
    const m = /process_id:(\d+)/.exec(info);
    assert.ok(m, `no process_id in ${info}`);
    return Number(m[1]);
  }

  close(): void {
    this.sock.destroy();
  }
}

/** the pid of the worker serving a fresh connection, or undefined (no answer within the timeout) */
async function servingPid(port: number, timeoutMs = 1500): Promise<number | undefined> {
  let c: Client | undefined;
  try {
    c = await Client.open(port, timeoutMs);
    return await c.pid(timeoutMs);
  } catch {
    return undefined;
  } finally {
    c?.close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function writeConfig(dir: string, name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, body);
  return file;
}

// ---------------------------------------------------------------------------------------------

describe('workers: thread = 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aster-workers-'));
  let redis: RedisProc[];
  let proxy: Proxy;
  let port: number;
  let metricsPort: number;
  let workerPids: number[] = [];
  const clients: Client[] = [];

  before(async () => {
    redis = await Promise.all([startRedis(), startRedis()]);
    port = await freePort();
    metricsPort = await freePort();
    const config = writeConfig(
      dir,
      'w.toml',
      `[[clusters]]
name = "w"
listen_addr = "127.0.0.1:${port}"
cache_type = "redis"
thread = 2
read_timeout = 8000
servers = [${redis.map((r, i) => `"127.0.0.1:${r.port}:1 s${i}"`).join(', ')}]
`,
    );
    proxy = spawnProxy(config, metricsPort);
    await waitFor(
      async () => {
        if (proxy.child.exitCode !== null) throw new Error(`the proxy exited:\n${proxy.log()}`);
        return (await httpGet(metricsPort, '/ready', 1000)).status === 200 && proxy.events().some((e) => e['msg'] === 'all workers ready');
      },
      20_000,
      'both workers to be ready',
    );
  });

  after(async () => {
    for (const c of clients) c.close();
    if (proxy?.child.exitCode === null) proxy.child.kill('SIGKILL');
    for (const pid of workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves one listen port from two worker processes', TEST_TIMEOUT, async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 10 && pids.size < 2; i++) {
      const c = await Client.open(port);
      clients.push(c);
      pids.add(await c.pid());
    }
    assert.equal(pids.size, 2, 'connections are served by two processes');
    assert.ok(!pids.has(proxy.child.pid!), 'the primary serves no client');
    workerPids = [...pids];
    const { body } = await httpGet(metricsPort, '/metrics');
    assert.equal(sample(body, 'aster_thread_count'), 2);
    assert.deepEqual(missingFromScrape(body, true), [], 'metrics of deploy/ (dashboard, alert rules) missing from the primary\'s scrape');
  });

  it('sums the metrics over the workers', TEST_TIMEOUT, async () => {
    const before = (await httpGet(metricsPort, '/metrics')).body;
    const commandsBefore = sample(before, 'aster_commands_total', 'cluster="w"');
    const connectionsBefore = sample(before, 'aster_client_connections_total', 'cluster="w"');

    // four connections (round-robin: two per worker), each with its own number of commands
    const sent: number[] = [];
    const pids = new Set<number>();
    for (const [i, n] of [10, 20, 30, 40].entries()) {
      const c = await Client.open(port);
      clients.push(c);
      pids.add(await c.pid());
      const sets = Array.from({ length: n }, (_, k) => ['SET', `sum:${i}:${k}`, String(k)]);
      c.send(...sets);
      const replies = await c.until(1 + n);
      assert.deepEqual(replies.slice(1), sets.map(() => '+OK\r\n'));
      sent.push(1 + n); // INFO and the SETs
    }
    assert.equal(pids.size, 2, 'the four connections went to both workers');

    const after = (await httpGet(metricsPort, '/metrics')).body;
    const total = sent.reduce((a, b) => a + b, 0);
    assert.equal(sample(after, 'aster_commands_total', 'cluster="w"') - commandsBefore, total, 'aster_commands_total counts the commands of both workers');
    assert.equal(sample(after, 'aster_client_connections_total', 'cluster="w"') - connectionsBefore, 4);
    assert.equal(sample(after, 'aster_front_connection_incr', 'cluster="w"') - sample(before, 'aster_front_connection_incr', 'cluster="w"'), 4);
    // connection gauges add up too: every client of this test is still open
    assert.equal(sample(after, 'aster_client_connections', 'cluster="w"'), clients.length);
    // backend health is 1 only when up in every worker
    assert.equal(sample(after, 'aster_backend_up', 'backend="s0"'), 1);
    // identity from the primary, process metrics per process
    assert.equal(sample(after, 'aster_build_info', `node="${process.version}"`), 1);
    for (const worker of ['primary', '0', '1']) {
      assert.ok(sample(after, 'process_resident_memory_bytes', `worker="${worker}"`) > 0, `memory of ${worker}`);
      sample(after, 'nodejs_eventloop_lag_p99_seconds', `worker="${worker}"`);
      sample(after, 'process_cpu_seconds_total', `worker="${worker}"`);
    }
  });

  it('replaces a worker killed with SIGKILL (with a growing backoff) and keeps serving; sums never go down', TEST_TIMEOUT, async () => {
    const before = (await httpGet(metricsPort, '/metrics')).body;
    const commandsBefore = sample(before, 'aster_commands_total', 'cluster="w"');
    assert.equal(sample(before, 'aster_worker_restarts_total'), 0);
    assert.equal(workerPids.length, 2, 'the worker pids (from the first test)');
    const [victim, survivor] = workerPids as [number, number];

    process.kill(victim, 'SIGKILL');
    let answered = 0;
    // the other worker goes on serving new connections
    await waitFor(
      async () => {
        const pid = await servingPid(port);
        if (pid !== undefined) answered++;
        return pid === survivor;
      },
      10_000,
      'the surviving worker to serve',
    );
    // and a new worker takes the dead one's place
    let replacement: number | undefined;
    await waitFor(
      async () => {
        const pid = await servingPid(port);
        if (pid !== undefined) answered++;
        if (pid !== undefined && pid !== survivor && pid !== victim) replacement = pid;
        return replacement !== undefined;
      },
      15_000,
      'a replacement worker to serve',
    );
    workerPids.push(replacement!);

    const after = (await httpGet(metricsPort, '/metrics')).body;
    assert.equal(sample(after, 'aster_worker_restarts_total'), 1);
    // the dead worker's counts stay in the sum (a replacement starts from zero)
    assert.ok(
      sample(after, 'aster_commands_total', 'cluster="w"') >= commandsBefore + answered,
      `aster_commands_total went from ${commandsBefore} to ${sample(after, 'aster_commands_total', 'cluster="w"')} with ${answered} more answered`,
    );

    // a replacement that dies young is replaced after a longer delay
    process.kill(replacement!, 'SIGKILL');
    await waitFor(
      async () => {
        const pid = await servingPid(port);
        if (pid !== undefined && !workerPids.includes(pid)) workerPids.push(pid);
        return workerPids.length >= 4;
      },
      20_000,
      'a second replacement to serve',
    );
    const delays = proxy
      .events()
      .filter((e) => e['msg'] === 'worker exited: replacing it')
      .map((e) => e['restartInMs'] as number);
    assert.equal(delays.length, 2, proxy.log());
    assert.ok(delays[1]! > delays[0]!, `backoff grows: ${delays.join(', ')} ms`);
    assert.equal(sample((await httpGet(metricsPort, '/metrics')).body, 'aster_worker_restarts_total'), 2);
    await waitFor(async () => (await httpGet(metricsPort, '/ready', 1000)).status === 200, 10_000, 'ready again');
  });

  it('SIGHUP is passed to every worker, each reloads the config, and no process exits', TEST_TIMEOUT, async () => {
    const live = workerPids.filter(alive);
    assert.equal(live.length, 2);
    const reloaded = (): Array<Record<string, unknown>> => proxy.events().filter((e) => String(e['msg']).startsWith('config reloaded'));
    const before = reloaded().length;
    proxy.child.kill('SIGHUP');
    await waitFor(() => reloaded().length >= before + 2, 10_000, 'both workers to reload');
    assert.deepEqual(
      reloaded()
        .slice(before)
        .map((e) => e['worker'])
        .sort(),
      [0, 1],
    );
    assert.equal(proxy.child.exitCode, null, 'the primary runs on');
    assert.ok(live.every(alive), 'the workers run on');
    const { body } = await httpGet(metricsPort, '/metrics');
    assert.equal(sample(body, 'aster_reloads_total', 'result="ok"'), 1, 'one reload, done by each worker, counts once');
    assert.equal(sample(body, 'aster_worker_restarts_total'), 2);
  });

  it('SIGTERM: every request already read is answered, then every process exits 0', TEST_TIMEOUT, async () => {
    for (const c of clients) c.close();
    // hold the backends' writes, so that the requests are still in flight when SIGTERM comes
    const admin = await Promise.all(redis.map((r) => Client.open(r.port)));
    for (const a of admin) assert.equal(await a.call(['CLIENT', 'PAUSE', '2000', 'WRITE']), '+OK\r\n');

    const before = (await httpGet(metricsPort, '/metrics')).body;
    const readBefore = sample(before, 'aster_commands_received_total', 'cluster="w"');
    const conns: Client[] = [];
    const pids = new Set<number>();
    for (let i = 0; i < 10 && pids.size < 2; i++) {
      const c = await Client.open(port);
      pids.add(await c.pid());
      conns.push(c);
    }
    assert.equal(pids.size, 2);
    const N = 100;
    conns.forEach((c, i) => c.send(...Array.from({ length: N }, () => ['INCR', `term:${i}`])));
    // every INCR has been read by a worker (counted on arrival), none answered yet
    await waitFor(
      async () => sample((await httpGet(metricsPort, '/metrics')).body, 'aster_commands_received_total', 'cluster="w"') - readBefore >= conns.length * (N + 1),
      10_000,
      'the workers to read every request',
    );

    proxy.child.kill('SIGTERM');
    const code = await Promise.race([proxy.exit, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
    assert.equal(code, 0, `exit status after SIGTERM\n${proxy.log()}`);
    for (const [i, c] of conns.entries()) {
      await Promise.race([c.closed, new Promise((r) => setTimeout(r, 5000))]);
      assert.deepEqual(
        c.replies.slice(1),
        Array.from({ length: N }, (_, k) => `:${k + 1}\r\n`),
        `connection ${i}: every INCR answered, in order`,
      );
    }
    // and the backends hold what the clients were told
    for (const i of conns.keys()) {
      const values = await Promise.all(admin.map((a) => a.call(['GET', `term:${i}`])));
      assert.ok(values.includes(`$${String(N).length}\r\n${N}\r\n`), `term:${i} = ${N} on its backend: ${values.join(' ')}`);
    }
    for (const a of admin) a.close();
    for (const pid of workerPids) await waitFor(() => !alive(pid), 5000, `worker ${pid} to be gone`);
    const stopped = proxy.events().filter((e) => e['msg'] === 'worker stopped');
    assert.equal(stopped.length, 2);
    assert.ok(stopped.every((e) => e['code'] === 0));
  });
});

describe('workers: process model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aster-workers-model-'));
  after(async () => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('with every thread = 1 the proxy is one process (no fork)', TEST_TIMEOUT, async () => {
    const redis = await startRedis();
    const port = await freePort();
    const metricsPort = await freePort();
    const config = writeConfig(
      dir,
      'one.toml',
      `[[clusters]]
name = "one"
listen_addr = "127.0.0.1:${port}"
cache_type = "redis"
thread = 1
servers = ["127.0.0.1:${redis.port}:1"]
`,
    );
    const proxy = spawnProxy(config, metricsPort);
    try {
      await waitFor(async () => (await servingPid(port)) !== undefined, 15_000, 'the proxy to serve');
      for (let i = 0; i < 3; i++) assert.equal(await servingPid(port), proxy.child.pid);
      const { body } = await httpGet(metricsPort, '/metrics');
      assert.equal(sample(body, 'aster_thread_count'), 1);
      proxy.child.kill('SIGTERM');
      assert.equal(await proxy.exit, 0);
    } finally {
      if (proxy.child.exitCode === null) proxy.child.kill('SIGKILL');
    }
  });

  /** a thread = 2 proxy over one redis, ready, with a client whose INCRs the paused redis holds */
  async function busyProxy(name: string, pauseMs: number, detached: boolean) {
    const redis = await startRedis();
    const port = await freePort();
    const metricsPort = await freePort();
    const config = writeConfig(
      dir,
      `${name}.toml`,
      `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:${port}"
cache_type = "redis"
thread = 2
read_timeout = 8000
servers = ["127.0.0.1:${redis.port}:1"]
`,
    );
    const proxy = spawnProxy(config, metricsPort, detached);
    await waitFor(() => proxy.events().some((e) => e['msg'] === 'all workers ready') || proxy.child.exitCode !== null, 20_000, 'both workers to be ready');
    assert.equal(proxy.child.exitCode, null, proxy.log());
    const admin = await Client.open(redis.port);
    assert.equal(await admin.call(['CLIENT', 'PAUSE', String(pauseMs), 'WRITE']), '+OK\r\n');
    const client = await Client.open(port);
    const N = 50;
    client.send(...Array.from({ length: N }, () => ['INCR', 'held']));
    await waitFor(
      async () => sample((await httpGet(metricsPort, '/metrics')).body, 'aster_commands_received_total', `cluster="${name}"`) >= N,
      10_000,
      'the INCRs to be read',
    );
    const workers = proxy
      .events()
      .filter((e) => e['msg'] === 'worker ready')
      .map((e) => e['workerPid'] as number);
    assert.equal(workers.length, 2);
    return { proxy, admin, client, N, workers };
  }

  it('Ctrl-C (SIGINT to the whole process group) stops each worker once: requests in flight answered, exit 0', TEST_TIMEOUT, async () => {
    const { proxy, admin, client, N } = await busyProxy('ctrlc', 1500, true);
    try {
      process.kill(-proxy.child.pid!, 'SIGINT');
      const code = await Promise.race([proxy.exit, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
      assert.equal(code, 0, proxy.log());
      await Promise.race([client.closed, new Promise((r) => setTimeout(r, 5000))]);
      assert.deepEqual(client.replies, Array.from({ length: N }, (_, k) => `:${k + 1}\r\n`));
      assert.ok(!proxy.log().includes('second signal'), 'one Ctrl-C is one stop');
    } finally {
      admin.close();
      client.close();
      if (proxy.child.exitCode === null) process.kill(-proxy.child.pid!, 'SIGKILL');
    }
  });

  it('a second SIGTERM to the primary ends every process at once', TEST_TIMEOUT, async () => {
    const { proxy, admin, client, workers } = await busyProxy('twice', 10_000, false);
    try {
      proxy.child.kill('SIGTERM');
      await waitFor(() => proxy.events().some((e) => e['msg'] === 'shutting down' && e['worker'] === undefined), 5000, 'the primary to start shutting down');
      const at = Date.now();
      proxy.child.kill('SIGTERM');
      const code = await Promise.race([proxy.exit, new Promise<string>((r) => setTimeout(() => r('timeout'), 5000))]);
      assert.equal(code, 128 + 15, proxy.log());
      assert.ok(Date.now() - at < 5000);
      for (const pid of workers) await waitFor(() => !alive(pid), 5000, `worker ${pid} to be gone`);
      assert.ok(client.replies.length < 50, 'the held requests were not waited for');
    } finally {
      await admin.call(['CLIENT', 'UNPAUSE']).catch(() => undefined);
      admin.close();
      client.close();
      if (proxy.child.exitCode === null) proxy.child.kill('SIGKILL');
    }
  });

  it('a worker that cannot listen fails the start: exit status 1', TEST_TIMEOUT, async () => {
    const taken = net.createServer();
    const port = await new Promise<number>((resolve) => taken.listen({ host: '127.0.0.1', port: 0 }, () => resolve((taken.address() as net.AddressInfo).port)));
    try {
      const config = writeConfig(
        dir,
        'busy.toml',
        `[[clusters]]
name = "busy"
listen_addr = "127.0.0.1:${port}"
cache_type = "redis"
thread = 2
servers = ["127.0.0.1:1:1"]
`,
      );
      const proxy = spawnProxy(config, await freePort());
      const code = await Promise.race([proxy.exit, new Promise<string>((r) => setTimeout(() => r('timeout'), 20_000))]);
      if (code === 'timeout') proxy.child.kill('SIGKILL');
      assert.equal(code, 1, proxy.log());
      assert.match(proxy.log(), /a worker failed to start/);
    } finally {
      taken.close();
    }
  });
});
