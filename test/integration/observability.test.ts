/**
 * Observability against real redis-servers: INFO (every section, the keyspace summed over the
 * backends), SLOWLOG (threshold 0, a backend slowed down with DEBUG SLEEP, threshold changes on
 * reconfigure), the per-request metrics moving, and redis-cli's INFO and --stat through the proxy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startStandalone } from '../../src/streams/standalone.js';
import { framesOf } from '../../src/protocol/reply-decoder.js';
import { ShardMap } from '../../src/routing/shard-map.js';
import { freePort, startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const cmd = (...args: Array<string | Buffer>): Buffer => {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
};

type Value = string | number | null | Error | Value[];

/** decodes one RESP2/RESP3 frame into a plain value (enough for these tests) */
function decode(frame: Buffer): Value {
  let pos = 0;
  const line = (): string => {
    const eol = frame.indexOf('\r\n', pos);
    const s = frame.toString('utf8', pos, eol);
    pos = eol + 2;
    return s;
  };
  const value = (): Value => {
    const type = String.fromCharCode(frame[pos++]);
    const head = line();
    switch (type) {
      case '+':
        return head;
      case '-':
      case '!':
        return new Error(type === '!' ? frame.toString('utf8', pos, (pos += Number(head)) + 2).slice(0, -2) : head);
      case ':':
        return Number(head);
      case '_':
        return null;
      case '$':
      case '=': {
        const n = Number(head);
        if (n < 0) return null;
        const s = frame.toString('utf8', pos, pos + n);
        pos += n + 2;
        return type === '=' ? s.slice(4) : s;
      }
      case '*':
      case '~':
      case '%': {
        const n = Number(head) * (type === '%' ? 2 : 1);
        if (n < 0) return null;
        const out: Value[] = [];
        for (let i = 0; i < n; i++) out.push(value());
        return out;
      }
      default:
        throw new Error(`cannot decode ${JSON.stringify(frame.toString('latin1'))}`);
    }
  };
  return value();
}

/** a raw RESP connection: `call` sends one request and resolves with its decoded reply */
class Conn {
  private buf = Buffer.alloc(0);
  private waiting: Array<(frame: Buffer) => void> = [];
  readonly sock: net.Socket;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const frames = framesOf(this.buf);
        if (frames.length === 0) break;
        const f = frames[0];
        this.buf = this.buf.subarray(f.length);
        this.waiting.shift()?.(f);
      }
    });
    sock.on('error', () => undefined);
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port }, () => resolve(new Conn(sock)));
      sock.once('error', reject);
    });
  }

  /** sends every request in one write; resolves with every reply in order */
  pipeline(reqs: Buffer[], timeoutMs = 5000): Promise<Value[]> {
    const replies = reqs.map(
      () =>
        new Promise<Value>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no reply in time')), timeoutMs);
          this.waiting.push((f) => {
            clearTimeout(timer);
            resolve(decode(f));
          });
        }),
    );
    this.sock.write(Buffer.concat(reqs));
    return Promise.all(replies);
  }

  async call(...args: Array<string | Buffer>): Promise<Value> {
    return (await this.pipeline([cmd(...args)]))[0];
  }

  get localAddr(): string {
    return `${this.sock.localAddress}:${this.sock.localPort}`;
  }

  close(): void {
    this.sock.destroy();
  }
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** the value of one series in a Prometheus text page (0 when absent) */
function series(page: string, name: string): number {
  const line = page.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/** INFO text as { section: { field: value } } */
function parseInfo(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let cur: Map<string, string> | undefined;
  for (const line of text.split('\r\n')) {
    if (line.startsWith('# ')) out.set(line.slice(2).toLowerCase(), (cur = new Map()));
    else if (line.includes(':')) cur?.set(line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1));
  }
  return out;
}

function run(file: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 5000 }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, code: err ? ((err as { code?: number }).code ?? 1) : 0 });
    });
  });
}

const silent = createLogger('silent');

describe('observability: INFO, SLOWLOG, per-request metrics', () => {
  let servers: RedisProc[];
  let proxy: RunningProxy;
  let metricsPort: number;
  const port: Record<string, number> = {};
  const direct: Conn[] = [];

  before(async () => {
    servers = await Promise.all([0, 1, 2].map(() => startRedis({ args: ['--enable-debug-command', 'yes'] })));
    const dead = await freePort(); // nothing listens there
    metricsPort = await freePort();
    const list = servers.map((s, i) => `"127.0.0.1:${s.port}:1 r${i + 1}"`).join(', ');
    const { config } = parseConfig(
      `
[[clusters]]
name = "obs"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = [${list}]
slowlog_log_slower_than = 0
slowlog_max_len = 1000

[[clusters]]
name = "slow"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = [${list}]
slowlog_log_slower_than = 100000

[[clusters]]
name = "partial"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${servers[0].port}:1 up", "127.0.0.1:${dead}:1 down"]
read_timeout = 200
write_timeout = 200
`,
      'obs.toml',
    );
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort, reload: false, logger: silent });
    for (const l of proxy.listeners) port[l.cluster] = l.port;
    for (const s of servers) direct.push(await Conn.open(s.port));
  });

  after(async () => {
    for (const c of direct) c.close();
    await proxy?.close();
    await stopAll();
  });

  /** keys and keys with a TTL in db0 of every backend, asked directly */
  const backendTotals = async (conns: Conn[]): Promise<{ keys: number; expires: number }> => {
    let keys = 0;
    let expires = 0;
    for (const c of conns) {
      const info = parseInfo((await c.call('INFO', 'keyspace')) as string).get('keyspace')?.get('db0');
      const m = /keys=(\d+),expires=(\d+)/.exec(info ?? '');
      if (m) {
        keys += Number(m[1]);
        expires += Number(m[2]);
      }
    }
    return { keys, expires };
  };

  it('INFO has the server, clients, memory, stats, cpu, keyspace and proxy sections, in Redis order', async () => {
    const c = await Conn.open(port.obs);
    const text = (await c.call('INFO')) as string;
    const titles = text.split('\r\n').filter((l) => l.startsWith('# '));
    assert.deepEqual(titles, ['# Server', '# Clients', '# Memory', '# Stats', '# Replication', '# CPU', '# Cluster', '# Keyspace', '# Proxy']);
    const info = parseInfo(text);
    assert.equal(info.get('server')?.get('redis_version'), '7.0.15');
    assert.equal(info.get('server')?.get('tcp_port'), String(port.obs));
    assert.equal(info.get('server')?.get('arch_bits'), '64');
    assert.ok(Number(info.get('clients')?.get('connected_clients')) >= 1);
    assert.equal(info.get('clients')?.get('blocked_clients'), '0');
    assert.ok(Number(info.get('memory')?.get('used_memory')) > 0);
    assert.match(info.get('memory')?.get('used_memory_human') ?? '', /^\d+(\.\d\d[KMG])?B?$/);
    assert.ok(Number(info.get('memory')?.get('used_memory_rss')) > 0);
    assert.ok(Number(info.get('stats')?.get('total_commands_processed')) >= 1);
    assert.ok(info.get('stats')?.has('instantaneous_ops_per_sec'));
    assert.match(info.get('cpu')?.get('used_cpu_user') ?? '', /^\d+\.\d{6}$/);
    assert.match(info.get('cpu')?.get('used_cpu_sys') ?? '', /^\d+\.\d{6}$/);
    assert.equal(info.get('proxy')?.get('cluster'), 'obs');
    assert.equal(info.get('proxy')?.get('slowlog_log_slower_than'), '0');
    assert.equal(info.get('proxy')?.get('keyspace_backends'), '3');
    assert.equal(info.get('proxy')?.get('keyspace_backends_failed'), '0');

    // chosen sections only, several at once, case-insensitive
    const some = (await c.call('INFO', 'CPU', 'memory')) as string;
    assert.deepEqual(
      some.split('\r\n').filter((l) => l.startsWith('# ')),
      ['# Memory', '# CPU'],
    );
    const server = (await c.call('INFO', 'server')) as string;
    assert.doesNotMatch(server, /# Keyspace/);
    c.close();
  });

  it('INFO keyspace sums keys and expires over every backend', async () => {
    const c = await Conn.open(port.obs);
    for (const d of direct) await d.call('FLUSHALL');
    const reqs: Buffer[] = [];
    for (let i = 0; i < 60; i++) reqs.push(i % 3 === 0 ? cmd('SET', `ks:${i}`, 'v', 'EX', '1000') : cmd('SET', `ks:${i}`, 'v'));
    assert.ok((await c.pipeline(reqs)).every((r) => r === 'OK'));
    const perBackend = await Promise.all(direct.map((d) => d.call('DBSIZE')));
    assert.ok(perBackend.filter((n) => (n as number) > 0).length >= 2, `keys spread over backends: ${JSON.stringify(perBackend)}`);
    const want = await backendTotals(direct);
    assert.deepEqual(want, { keys: 60, expires: 20 });

    const ks = parseInfo((await c.call('INFO', 'keyspace')) as string).get('keyspace');
    const m = /^keys=(\d+),expires=(\d+),avg_ttl=(\d+)$/.exec(ks?.get('db0') ?? '');
    assert.ok(m, `db0 line: ${ks?.get('db0')}`);
    assert.equal(Number(m[1]), want.keys);
    assert.equal(Number(m[2]), want.expires);
    // avg_ttl: Redis estimates it by sampling in the background, so only its form is checked
    assert.deepEqual([...(ks?.keys() ?? [])], ['db0']);

    // asynchronous local answer: pipelined around other commands, every reply in order
    const [a, info, b, pong] = await c.pipeline([cmd('GET', 'ks:1'), cmd('INFO', 'keyspace'), cmd('SET', 'ks:extra', 'x'), cmd('PING')]);
    assert.equal(a, 'v');
    assert.match(info as string, /^# Keyspace\r\ndb0:keys=60,/);
    assert.equal(b, 'OK');
    assert.equal(pong, 'PONG');

    // RESP3: a verbatim string
    await c.call('HELLO', '3');
    const v3 = await c.pipeline([cmd('INFO', 'keyspace')]);
    assert.match(v3[0] as string, /db0:keys=61,expires=20,/);
    c.close();
  });

  it('INFO keyspace with a backend down: the others are summed, the failure is reported', async () => {
    const c = await Conn.open(port.partial);
    const info = parseInfo((await c.call('INFO')) as string);
    const upKeys = Number(((await direct[0].call('DBSIZE')) as number) ?? 0);
    assert.ok(upKeys > 0);
    assert.match(info.get('keyspace')?.get('db0') ?? '', new RegExp(`^keys=${upKeys},`));
    assert.equal(info.get('proxy')?.get('keyspace_backends'), '2');
    assert.equal(info.get('proxy')?.get('keyspace_backends_failed'), '1');
    c.close();
  });

  it('SLOWLOG with a threshold of 0 logs every request, shaped like Redis entries', async () => {
    const c = await Conn.open(port.obs);
    assert.equal(await c.call('CLIENT', 'SETNAME', 'probe'), 'OK');
    assert.equal(await c.call('SLOWLOG', 'RESET'), 'OK');
    // as in Redis, the RESET itself is logged once its reply is out
    assert.equal(await c.call('SLOWLOG', 'LEN'), 1);
    await c.call('SET', 'sl:k', 'hello');
    await c.call('GET', 'sl:k');
    const many = Array.from({ length: 40 }, (_, i) => `m${i}`);
    await c.call('MGET', ...many);
    await c.call('SET', 'sl:big', 'x'.repeat(300));
    await c.call('AUTH', 'secret-pw');
    const entries = (await c.call('SLOWLOG', 'GET', '-1')) as Value[][];
    assert.ok(Array.isArray(entries));
    const now = Math.floor(Date.now() / 1000);
    for (const e of entries) {
      assert.equal(e.length, 6);
      const [id, time, us, args, addr, name] = e;
      assert.equal(typeof id, 'number');
      assert.ok(Math.abs((time as number) - now) <= 5, `timestamp ${time}`);
      assert.ok(Number.isInteger(us) && (us as number) >= 0 && (us as number) < 10_000_000, `duration in whole microseconds: ${String(us)}`);
      assert.ok(Array.isArray(args));
      assert.equal(addr, c.localAddr);
      assert.equal(name, 'probe');
    }
    const argsOf = entries.map((e) => (e[3] as string[]).join(' '));
    // newest first; ids decrease
    assert.deepEqual(argsOf.slice(0, 7), [
      'AUTH (redacted)',
      'SET sl:big ' + 'x'.repeat(128) + '... (172 more bytes)',
      'MGET ' + many.slice(0, 30).join(' ') + ' ... (10 more arguments)',
      'GET sl:k',
      'SET sl:k hello',
      'SLOWLOG LEN',
      'SLOWLOG RESET',
    ]);
    const ids = entries.map((e) => e[0] as number);
    assert.deepEqual(ids, [...ids].sort((x, y) => y - x));
    assert.equal(((await c.call('SLOWLOG', 'GET')) as Value[]).length, 8, 'GET without a count: 10 at most; 8 so far');
    assert.equal(((await c.call('SLOWLOG', 'GET', '2')) as Value[]).length, 2);
    assert.match(String(await c.call('SLOWLOG', 'GET', '-2')), /count should be greater than or equal to -1/);
    assert.match(String(await c.call('SLOWLOG', 'GET', 'x')), /value is not an integer or out of range/);
    assert.match(String(await c.call('SLOWLOG', 'NOPE')), /unknown subcommand/i);
    assert.ok(((await c.call('SLOWLOG', 'HELP')) as string[]).some((l) => l.startsWith('GET')));
    // one log per cluster: the other cluster's log did not see these
    const other = await Conn.open(port.slow);
    const theirs = (await other.call('SLOWLOG', 'GET', '-1')) as Value[][];
    assert.ok(theirs.every((e) => !(e[3] as string[]).includes('sl:k')));
    other.close();
    c.close();
  });

  it('SLOWLOG at 100 ms logs a request held up by DEBUG SLEEP on its backend, not the fast ones', async () => {
    const c = await Conn.open(port.slow);
    const key = 'slow:k';
    const owner = ownerOf(key, servers.length);
    assert.equal(await c.call('SET', key, 'v'), 'OK');
    assert.equal(await c.call('SLOWLOG', 'RESET'), 'OK');
    for (let i = 0; i < 5; i++) await c.call('GET', key);
    assert.equal(await c.call('SLOWLOG', 'LEN'), 0, 'fast requests are not logged');

    const before = await get(metricsPort, '/metrics');
    // the backend sleeps 300 ms; a GET sent while it sleeps waits for it. Whether the GET
    // really arrived during the sleep is checked on the client's clock; if not, try again.
    const sleeper = await Conn.open(servers[owner].port);
    let tookMs = 0;
    for (let attempt = 0; attempt < 5 && tookMs < 150; attempt++) {
      const sleeping = sleeper.call('DEBUG', 'SLEEP', '0.3');
      await new Promise((r) => setTimeout(r, 50));
      const t0 = performance.now();
      assert.equal(await c.call('GET', key), 'v');
      tookMs = performance.now() - t0;
      assert.equal(await sleeping, 'OK');
    }
    sleeper.close();
    assert.ok(tookMs >= 150, `a GET was held up by the sleeping backend (${tookMs} ms)`);
    const entries = (await c.call('SLOWLOG', 'GET')) as Value[][];
    const slow = entries.filter((e) => (e[3] as string[]).join(' ') === `GET ${key}`);
    assert.ok(slow.length >= 1, JSON.stringify(entries));
    assert.ok((slow[0][2] as number) >= 100_000, `duration ${slow[0][2]} µs`);
    assert.ok(entries.every((e) => (e[2] as number) >= 100_000), 'only requests over the threshold');

    // the same wait shows in the histograms: total and time at the backend
    const after = await get(metricsPort, '/metrics');
    const moved = (name: string): number => series(after, name) - series(before, name);
    assert.ok(moved('aster_total_timer_count{cluster="slow"}') >= 1);
    const slowOnes = moved('aster_total_timer_count{cluster="slow"}') - moved('aster_total_timer_bucket{cluster="slow",le="100000"}');
    assert.ok(slowOnes >= 1, 'a request over 100 ms in aster_total_timer');
    const slowAtBackend = moved('aster_remote_timer_count{cluster="slow"}') - moved('aster_remote_timer_bucket{cluster="slow",le="100000"}');
    assert.ok(slowAtBackend >= 1, 'a request over 100 ms in aster_remote_timer');
    assert.ok(moved('aster_request_duration_seconds_count{cluster="slow"}') - moved('aster_request_duration_seconds_bucket{cluster="slow",le="0.1"}') >= 1);
    assert.ok(series(after, 'aster_request_duration_seconds_sum{cluster="slow"}') - series(before, 'aster_request_duration_seconds_sum{cluster="slow"}') >= 0.1);
    c.close();
  });

  it('metrics: every name is there, and the counters move with the traffic', async () => {
    const before = await get(metricsPort, '/metrics');
    for (const name of [
      'aster_total_timer_bucket{cluster="obs",le="1000"}',
      'aster_total_timer_bucket{cluster="obs",le="200000"}',
      'aster_remote_timer_bucket{cluster="obs",le="100000"}',
      'aster_request_duration_seconds_bucket{cluster="obs",le="0.001"}',
      'aster_backend_request_duration_seconds_count{cluster="obs"}',
      'aster_front_command_total{cluster="obs",kind="write",result="ok"}',
      'aster_errors_total{cluster="obs",kind="crossslot"}',
      'aster_front_error_total{cluster="obs",kind="protocol"}',
      'aster_backend_request_total{cluster="obs",backend="r1",result="ok"}',
      'aster_backend_error_total{cluster="obs",backend="r1",kind="timeout"}',
    ]) {
      assert.ok(before.includes(name + ' '), `missing ${name}`);
    }
    const c = await Conn.open(port.obs);
    const N = 25;
    const reqs: Buffer[] = [];
    for (let i = 0; i < N; i++) reqs.push(cmd('SET', `mv:${i}`, 'v'), cmd('GET', `mv:${i}`));
    await c.pipeline(reqs);
    await c.call('NOSUCHCMD');
    await c.call('RENAME', 'mv:1', 'mv:2'); // different servers (or not): either a reply or CROSSSLOT
    await c.call('INCR', 'mv:5'); // a Redis error reply (not an integer)
    c.close();
    const after = await get(metricsPort, '/metrics');
    const moved = (name: string): number => series(after, name) - series(before, name);
    assert.equal(moved('aster_commands_total{cluster="obs",command="set",result="ok"}'), N);
    assert.equal(moved('aster_commands_total{cluster="obs",command="get",result="ok"}'), N);
    assert.equal(moved('aster_commands_total{cluster="obs",command="other",result="error"}'), 1);
    assert.equal(moved('aster_commands_total{cluster="obs",command="incr",result="error"}'), 1);
    assert.equal(moved('aster_front_command_total{cluster="obs",kind="invalid",result="fail"}'), 1);
    assert.ok(moved('aster_front_command_total{cluster="obs",kind="write",result="ok"}') >= N);
    assert.equal(moved('aster_errors_total{cluster="obs",kind="unknown_command"}'), 1);
    assert.ok(moved('aster_total_timer_count{cluster="obs"}') >= 2 * N + 3);
    assert.ok(moved('aster_remote_timer_count{cluster="obs"}') >= 2 * N);
    const backendOk = ['r1', 'r2', 'r3'].reduce((sum, b) => sum + moved(`aster_backend_request_total{cluster="obs",backend="${b}",result="ok"}`), 0);
    assert.ok(backendOk >= 2 * N, `backend ok ${backendOk}`);
    assert.ok(['r1', 'r2', 'r3'].some((b) => moved(`aster_backend_request_total{cluster="obs",backend="${b}",result="resp_error"}`) === 1));
  });

  it('metrics: a backend down counts connect errors and fast failures; a timeout counts as one', async () => {
    const c = await Conn.open(port.partial);
    // keys that land on the server that is down
    const downKeys = Array.from({ length: 200 }, (_, i) => `pk:${i}`).filter((k) => ownerOfPartial(k) === 1).slice(0, 5);
    for (const k of downKeys) assert.ok((await c.call('GET', k)) instanceof Error);
    await waitFor(async () => series(await get(metricsPort, '/metrics'), 'aster_backend_error_total{cluster="partial",backend="down",kind="connect"}') >= 1, 5000, 'connect errors counted');
    const page = await get(metricsPort, '/metrics');
    const downFailures =
      series(page, 'aster_backend_request_total{cluster="partial",backend="down",result="unavailable"}') +
      series(page, 'aster_backend_request_total{cluster="partial",backend="down",result="closed"}');
    assert.ok(downFailures >= downKeys.length, `failures ${downFailures}`);
    assert.ok(series(page, 'aster_errors_total{cluster="partial",kind="backend"}') >= downKeys.length);

    // read_timeout 200 ms against a backend sleeping 500 ms
    const upKey = Array.from({ length: 200 }, (_, i) => `pk:${i}`).find((k) => ownerOfPartial(k) === 0) as string;
    const sleeper = await Conn.open(servers[0].port);
    let timedOut = false;
    for (let attempt = 0; attempt < 5 && !timedOut; attempt++) {
      const sleeping = sleeper.call('DEBUG', 'SLEEP', '0.5');
      await new Promise((r) => setTimeout(r, 50));
      const r = await c.call('GET', upKey);
      timedOut = r instanceof Error && /read timeout/.test(r.message);
      await sleeping;
    }
    sleeper.close();
    assert.ok(timedOut, 'a GET timed out while its backend slept');
    const after = await get(metricsPort, '/metrics');
    assert.ok(series(after, 'aster_backend_request_total{cluster="partial",backend="up",result="timeout"}') >= 1);
    assert.ok(series(after, 'aster_backend_error_total{cluster="partial",backend="up",kind="timeout"}') >= 1);
    c.close();
  });

  it('redis-cli: INFO, and --stat for a second, through the proxy', async () => {
    const info = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port.obs), 'info']);
    assert.equal(info.code, 0, info.stderr);
    for (const title of ['# Server', '# Clients', '# Memory', '# Stats', '# CPU', '# Keyspace', '# Proxy']) assert.ok(info.stdout.includes(title), `missing ${title}`);
    const { keys } = await backendTotals(direct);
    // redis-cli --stat prints a line per interval; stdout is a pipe, so ask for line buffering
    const child = spawn('stdbuf', ['-oL', 'redis-cli', '-h', '127.0.0.1', '-p', String(port.obs), '--stat', '-i', '0.25'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.split('\n').filter((l) => /^\d/.test(l)).length >= 3, 5000, 'three --stat lines');
    } finally {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
    }
    const lines = out.split('\n');
    assert.ok(lines.some((l) => /keys\s+mem\s+clients\s+blocked\s+requests\s+connections/.test(l)), out);
    const rows = lines.filter((l) => /^\d/.test(l)).map((l) => l.trim().split(/\s+/));
    for (const row of rows) {
      assert.equal(Number(row[0]), keys, `keys column: ${row.join(' ')}`);
      assert.match(row[1], /^\d+(\.\d+)?[BKMG]$/);
      assert.ok(Number(row[2]) >= 1, 'clients');
      assert.equal(row[3], '0', 'blocked');
    }
    // the request count moves from one line to the next (redis-cli's own INFO calls)
    assert.ok(Number(rows[rows.length - 1][4]) > Number(rows[0][4]), out);
  });
});

describe('observability: slow log threshold and length follow a reconfigure', () => {
  it('applies a new slowlog_log_slower_than and slowlog_max_len without a restart', async () => {
    const redis = await startRedis();
    const text = (threshold: number, len: number): string => `
[[clusters]]
name = "re"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:${redis.port}:1 r1"]
slowlog_log_slower_than = ${threshold}
slowlog_max_len = ${len}
`;
    const cluster = await startStandalone(parseConfig(text(-1, 128), 're.toml').config.clusters[0], 'test', silent);
    try {
      const c = await Conn.open(cluster.listener.port);
      await c.call('SET', 'a', '1');
      await c.call('GET', 'a');
      assert.equal(await c.call('SLOWLOG', 'LEN'), 0, '-1: nothing logged');
      cluster.reconfigure(parseConfig(text(0, 3), 're.toml').config.clusters[0]);
      for (let i = 0; i < 5; i++) await c.call('GET', 'a');
      assert.equal(await c.call('SLOWLOG', 'LEN'), 3, 'threshold 0 and length 3 apply');
      const info = parseInfo((await c.call('INFO', 'proxy')) as string).get('proxy');
      assert.equal(info?.get('slowlog_log_slower_than'), '0');
      assert.equal(info?.get('slowlog_max_len'), '3');
      cluster.reconfigure(parseConfig(text(10_000_000, 3), 're.toml').config.clusters[0]);
      await c.call('SLOWLOG', 'RESET');
      for (let i = 0; i < 3; i++) await c.call('GET', 'a');
      assert.equal(await c.call('SLOWLOG', 'LEN'), 0, 'a 10 s threshold logs none of these');
      c.close();
    } finally {
      await cluster.close();
      await stopAll();
    }
  });
});

/** which of `n` equally weighted servers r1..rn (aliases) owns `key`: asked of the ketama ring */
function ownerOf(key: string, n: number): number {
  return ring(Array.from({ length: n }, (_, i) => `r${i + 1}`)).owner(key);
}
function ownerOfPartial(key: string): number {
  return ring(['up', 'down']).owner(key);
}

function ring(aliases: string[]): { owner(key: string): number } {
  const map = new ShardMap(
    aliases.map((a, i) => ({ host: '127.0.0.1', port: 1000 + i, weight: 1, alias: a, name: a, addr: `127.0.0.1:${1000 + i}` })),
    undefined,
    'remap',
  );
  return { owner: (key: string) => map.backendFor(Buffer.from(key)) };
}
