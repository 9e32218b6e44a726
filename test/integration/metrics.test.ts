/**
 * The metrics endpoint: every name the proxy exposes (outside the per-request metrics, which
 * observability.test.ts covers) is there and moves with real traffic against real redis-servers;
 * and the sums the primary makes over workers (workers.test.ts runs the real processes).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Histogram } from 'prom-client';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { deployMetricNames, missingFromScrape } from '../helpers/deploy-names.js';
import { buildRegistry, RetiredCounters, snapshotOf, sumRegistries, type ClusterView, type MetricsView } from '../../src/sinks/metrics.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import type { SessionStats } from '../../src/streams/session.js';
import { RequestStats } from '../../src/util/request-stats.js';
import { freePort, startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)));
    req.on('error', reject);
  });
}

/** the sum of the samples of `name` whose labels include `labels`; undefined when there is none */
function find(body: string, name: string, labels = ''): number | undefined {
  let sum: number | undefined;
  for (const line of body.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '').includes(labels)) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

function value(body: string, name: string, labels = ''): number {
  const v = find(body, name, labels);
  assert.ok(v !== undefined, `no sample ${name}{${labels}}`);
  return v;
}

const cmd = (...args: string[]): string => `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');

/** opens a connection, writes `payload`, resolves what came back once `done(text)` or the peer closed */
function exchange(port: number, payload: string, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timed out; got ${JSON.stringify(text)}`));
    }, 5000);
    const finish = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(text);
    };
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if (done(text)) finish();
    });
    sock.on('close', finish);
    sock.on('error', reject);
    sock.write(payload);
  });
}

/** every name with a sample in a single proxy process (process metrics included) */
const SINGLE_PROCESS_NAMES = [
  // aster's names
  'aster_front_connection',
  'aster_front_connection_incr',
  'aster_version',
  'aster_thread_count',
  'aster_global_error',
  'aster_memory_usage',
  'aster_cpu_usage',
  'aster_backend_health_status',
  'aster_front_error_total',
  // Prometheus-style names beside them
  'aster_build_info',
  'aster_client_connections',
  'aster_client_connections_total',
  'aster_commands_total',
  'aster_commands_received_total',
  'aster_protocol_errors_total',
  'aster_internal_errors_total',
  'aster_backend_up',
  'aster_backend_ejected',
  'aster_backend_ejections_total',
  'aster_backend_returns_total',
  'aster_reloads_total',
  // Node's process metrics
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_heap_size_used_bytes',
];

describe('metrics endpoint: one proxy process', () => {
  let redis: RedisProc[];
  let proxy: RunningProxy;
  let port: number;
  let metricsPort: number;
  const scrape = async (): Promise<string> => (await get(metricsPort, '/metrics')).body;

  before(async () => {
    redis = await Promise.all([startRedis(), startRedis()]);
    metricsPort = await freePort();
    const { config } = parseConfig(
      `[[clusters]]
name = "m"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
thread = 1
servers = ["127.0.0.1:${redis[0]!.port}:1 r1", "127.0.0.1:${redis[1]!.port}:1 r2"]
`,
      'm.toml',
    );
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort, reload: false, logger: createLogger('silent') });
    port = proxy.listeners[0]!.port;
  });
  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  it('exposes every name, with its type declared', async () => {
    await exchange(port, cmd('PING'), (t) => t === '+PONG\r\n');
    // PING is answered by the proxy: a GET shows the backend connection up
    await exchange(port, cmd('GET', 'metrics:nothing'), (t) => t === '$-1\r\n');
    const body = await scrape();
    for (const name of SINGLE_PROCESS_NAMES) {
      assert.ok(find(body, name) !== undefined, `no sample of ${name}`);
      assert.match(body, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'), `no TYPE line for ${name}`);
    }
    assert.match(body, /^aster_build_info\{version="[^"]+",node="v\d+\.\d+\.\d+"\} 1$/m);
    assert.equal(value(body, 'aster_thread_count'), 1);
    assert.equal(value(body, 'aster_backend_up', 'backend="r1"'), 1);
    assert.equal(value(body, 'aster_backend_ejected', 'backend="r1"'), 0);
    assert.equal(value(body, 'aster_reloads_total', 'result="ok"'), 0);
    // one process: no worker label
    assert.doesNotMatch(body, /worker="/);
  });

  it('declares every metric the shipped dashboard and alert rules use (deploy/)', async () => {
    assert.ok(deployMetricNames().length >= 10, `names found in deploy/: ${deployMetricNames().join(', ')}`);
    assert.deepEqual(missingFromScrape(await scrape(), false), [], 'metrics of deploy/ missing from a standalone scrape');
  });

  it('counts commands and connections', async () => {
    const before = await scrape();
    const n = 7;
    const payload = Array.from({ length: n - 1 }, (_, i) => cmd('SET', `mk${i}`, 'v')).join('') + cmd('PING');
    await exchange(port, payload, (t) => t.endsWith('+PONG\r\n'));
    const after = await scrape();
    const delta = (name: string, labels = 'cluster="m"'): number => value(after, name, labels) - (find(before, name, labels) ?? 0);
    assert.equal(delta('aster_commands_total'), n);
    assert.equal(delta('aster_commands_received_total'), n);
    assert.equal(delta('aster_client_connections_total'), 1);
    assert.equal(delta('aster_front_connection_incr'), 1);
    assert.ok(value(after, 'process_cpu_seconds_total') > 0);
    assert.ok(value(after, 'aster_memory_usage') > 0);
  });

  it('times each command in its own series (aster_command_duration_seconds), the total unchanged', async () => {
    const before = await scrape();
    // 5 SETs, 3 GETs and a command the table does not know ("other")
    const payload = [...Array.from({ length: 5 }, (_, i) => cmd('SET', `ct${i}`, 'v')), ...Array.from({ length: 3 }, (_, i) => cmd('GET', `ct${i}`)), cmd('NOSUCHCMD')].join('');
    await exchange(port, payload, (t) => t.includes('-ERR unknown command'));
    const after = await scrape();
    const delta = (command: string): number =>
      value(after, 'aster_command_duration_seconds_count', `cluster="m",command="${command}"`) - (find(before, 'aster_command_duration_seconds_count', `cluster="m",command="${command}"`) ?? 0);
    assert.equal(delta('set'), 5);
    assert.equal(delta('get'), 3);
    assert.equal(delta('other'), 1);
    // every le bucket up to +Inf, and the series of all commands add up to the total
    assert.equal(value(after, 'aster_command_duration_seconds_bucket', 'cluster="m",command="get",le="+Inf"'), value(after, 'aster_command_duration_seconds_count', 'cluster="m",command="get"'));
    assert.equal(value(after, 'aster_command_duration_seconds_count', 'cluster="m"'), value(after, 'aster_request_duration_seconds_count', 'cluster="m"'));
    assert.match(after, /^# TYPE aster_command_duration_seconds histogram$/m);
  });

  it('counts a protocol error by kind, in the global error count too', async () => {
    const before = await scrape();
    const text = await exchange(port, '*1\r\n$abc\r\n', () => false);
    assert.match(text, /^-ERR Protocol error/);
    await waitFor(async () => value(await scrape(), 'aster_protocol_errors_total', 'cluster="m"') > value(before, 'aster_protocol_errors_total', 'cluster="m"'), 5000, 'the protocol error to be counted');
    const after = await scrape();
    assert.equal(value(after, 'aster_protocol_errors_total', 'cluster="m"') - value(before, 'aster_protocol_errors_total', 'cluster="m"'), 1);
    assert.equal(value(after, 'aster_front_error_total', 'kind="protocol"') - value(before, 'aster_front_error_total', 'kind="protocol"'), 1);
    assert.equal(value(after, 'aster_global_error') - value(before, 'aster_global_error'), 1);
  });

  it('follows the open client connections', async () => {
    const socks = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
            s.on('error', reject);
          }),
      ),
    );
    await waitFor(async () => value(await scrape(), 'aster_client_connections', 'cluster="m"') === 3, 5000, 'three open connections');
    assert.equal(value(await scrape(), 'aster_front_connection', 'cluster="m"'), 3);
    for (const s of socks) s.destroy();
    await waitFor(async () => value(await scrape(), 'aster_client_connections', 'cluster="m"') === 0, 5000, 'no open connection');
  });

  it('shows a backend going down', async () => {
    redis[1]!.kill('SIGKILL');
    await waitFor(async () => value(await scrape(), 'aster_backend_up', 'backend="r2"') === 0, 10_000, 'r2 to be down');
    const body = await scrape();
    assert.equal(value(body, 'aster_backend_health_status', 'backend="r2"'), 0);
    assert.equal(value(body, 'aster_backend_up', 'backend="r1"'), 1);
  });

  it('answers /healthz, /ready and 404', async () => {
    assert.deepEqual(await get(metricsPort, '/healthz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get(metricsPort, '/ready'), { status: 200, body: 'ready\n' });
    assert.equal((await get(metricsPort, '/nope')).status, 404);
  });
});

describe('metrics: sums over workers', () => {
  const stats = (commands: number, open: number): SessionStats => ({
    connectedClients: open,
    totalConnections: open + 1,
    totalCommands: commands,
    protocolErrors: 1,
    internalErrors: 0,
    requests: new RequestStats(),
  });
  const view = (worker: number, s: SessionStats, r2: string, ejected: boolean, reloadsOk: number): MetricsView => ({
    version: '9.9.9',
    threads: 1,
    worker,
    ready: () => true,
    reloads: () => ({ ok: reloadsOk, failed: 0 }),
    clusters: (): ClusterView[] => [
      {
        name: 'c',
        stats: s,
        backends: [
          { label: 'r1', state: 'up' },
          { label: 'r2', state: r2 },
        ],
        health: [
          { backend: 'r1', live: true, ejections: 0, returns: 0 },
          { backend: 'r2', live: !ejected, ejections: ejected ? 1 : 0, returns: 0 },
        ],
      },
    ],
  });

  it('adds counters and connections, takes the minimum of backend health, labels process metrics by worker', async () => {
    const w0 = await snapshotOf(buildRegistry(view(0, stats(10, 2), 'up', false, 1)));
    const w1 = await snapshotOf(buildRegistry(view(1, stats(32, 3), 'connecting', true, 1)));
    // the process-wide names are the primary's, not a worker's
    assert.ok(!w0.some((m) => m.name === 'aster_build_info' || m.name === 'aster_thread_count' || m.name === 'aster_version'));
    const { body } = await sumRegistries([w0, w1]);
    assert.equal(value(body, 'aster_commands_received_total', 'cluster="c"'), 42);
    assert.equal(value(body, 'aster_client_connections', 'cluster="c"'), 5);
    assert.equal(value(body, 'aster_client_connections_total', 'cluster="c"'), 7);
    assert.equal(value(body, 'aster_global_error'), 2);
    assert.equal(value(body, 'aster_backend_up', 'backend="r1"'), 1);
    assert.equal(value(body, 'aster_backend_up', 'backend="r2"'), 0, 'down in one worker: 0');
    assert.equal(value(body, 'aster_backend_health_status', 'backend="r2"'), 0);
    assert.equal(value(body, 'aster_backend_ejected', 'backend="r2"'), 1, 'ejected in one worker: 1');
    assert.equal(value(body, 'aster_backend_ejections_total', 'backend="r2"'), 1);
    assert.equal(value(body, 'aster_reloads_total', 'result="ok"'), 1, 'one reload, done by each worker, counts once');
    assert.ok(find(body, 'process_resident_memory_bytes', 'worker="0"')! > 0);
    assert.ok(find(body, 'process_resident_memory_bytes', 'worker="1"')! > 0);
  });

  it('keeps the counters and histograms of an exited worker, not its gauges', async () => {
    const w0 = await snapshotOf(buildRegistry(view(0, stats(10, 2), 'up', false, 0)));
    const gone = buildRegistry(view(1, stats(32, 3), 'up', false, 0));
    const latency = new Histogram({ name: 'test_latency_seconds', help: 'x', buckets: [0.1, 1], registers: [gone] });
    latency.observe(0.05);
    latency.observe(0.5);
    const retired = new RetiredCounters();
    retired.add(await snapshotOf(gone));
    retired.add(await snapshotOf(gone)); // a second worker with the same figures
    const { body } = await sumRegistries([w0, retired.snapshot()]);
    assert.equal(value(body, 'aster_commands_received_total', 'cluster="c"'), 10 + 32 + 32);
    assert.equal(value(body, 'aster_client_connections', 'cluster="c"'), 2, 'open connections of exited workers are gone');
    assert.equal(value(body, 'test_latency_seconds_bucket', 'le="0.1"'), 2);
    assert.equal(value(body, 'test_latency_seconds_bucket', 'le="1"'), 4);
    assert.equal(value(body, 'test_latency_seconds_bucket', 'le="+Inf"'), 4);
    assert.equal(value(body, 'test_latency_seconds_count'), 4);
    assert.ok(Math.abs(value(body, 'test_latency_seconds_sum') - 1.1) < 1e-9);
  });
});
