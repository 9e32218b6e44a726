/**
 * Health checks against real redis-servers: a backend killed or stopped is ejected after
 * ping_fail_limit failed PINGs (its keys remapped to the other servers, or failed fast), and
 * comes back after one successful PING; -LOADING (a fake backend), -BUSY (a real script that
 * loops) and -OOM (a real maxmemory) replies count as failures and reach the client unchanged;
 * the PING connection AUTHs with backend_password; a reconfigure keeps the checks following the
 * server list.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import type { ClusterConfig } from '../../src/config/types.js';
import { ShardMap } from '../../src/routing/shard-map.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy } from '../../src/streams/proxy.js';
import { startStandalone, type StandaloneCluster } from '../../src/streams/standalone.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

// ---------------------------------------------------------------------------------------------
// a small RESP client: one command at a time, the reply kept raw and decoded

type Value = string | number | null | { err: string } | Value[];

function encode(args: readonly string[]): Buffer {
  return Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((a) => [Buffer.from(`$${Buffer.byteLength(a)}\r\n`), Buffer.from(a), Buffer.from('\r\n')]),
  ]);
}

/** one value at `p` and where it ends; null when incomplete */
function decode(b: Buffer, p: number): [Value, number] | null {
  const nl = b.indexOf('\r\n', p);
  if (nl < 0) return null;
  const line = b.toString('utf8', p + 1, nl);
  const q = nl + 2;
  switch (String.fromCharCode(b[p])) {
    case '+':
      return [line, q];
    case '-':
      return [{ err: line }, q];
    case ':':
      return [Number(line), q];
    case '$': {
      const n = Number(line);
      if (n < 0) return [null, q];
      return b.length < q + n + 2 ? null : [b.toString('utf8', q, q + n), q + n + 2];
    }
    case '*': {
      const n = Number(line);
      const out: Value[] = [];
      let r = q;
      for (let i = 0; i < n; i++) {
        const v = decode(b, r);
        if (v === null) return null;
        out.push(v[0]);
        r = v[1];
      }
      return [out, r];
    }
    default:
      throw new Error(`unexpected reply ${JSON.stringify(b.toString('latin1', p, p + 40))}`);
  }
}

class Conn {
  private buf = Buffer.alloc(0);
  private waiting: Array<(r: { raw: Buffer; value: Value }) => void> = [];

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (let r = decode(this.buf, 0); r !== null; r = decode(this.buf, 0)) {
        const raw = this.buf.subarray(0, r[1]);
        this.buf = this.buf.subarray(r[1]);
        this.waiting.shift()?.({ raw: Buffer.from(raw), value: r[0] });
      }
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new Conn(s));
      });
    });
  }

  /** sends a command; its reply, raw and decoded (rejects after `ms`) */
  send(args: string[], ms = 5000): Promise<{ raw: Buffer; value: Value }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${args[0]} in ${ms} ms`)), ms);
      this.waiting.push((r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.socket.write(encode(args));
    });
  }

  async call(...args: string[]): Promise<Value> {
    return (await this.send(args)).value;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** one command on a fresh connection */
async function once(port: number, ...args: string[]): Promise<Value> {
  const c = await Conn.open(port);
  try {
    return await c.call(...args);
  } finally {
    c.close();
  }
}

const errOf = (v: Value): string => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v.err : `not an error: ${JSON.stringify(v)}`);

// ---------------------------------------------------------------------------------------------
// a cluster over given ports, with its log lines kept

interface LogLine {
  level: number;
  msg: string;
  backend?: string;
  reason?: string;
  failures?: number;
}

const WARN = 40;
const INFO = 30;

interface Setup {
  cluster: StandaloneCluster;
  cfg: ClusterConfig;
  logs: LogLine[];
  port: number;
  /** a key the ring puts on server `i` (with the servers in `ejected` out of service) */
  keyOn(i: number, ejected?: number[]): string;
  client(): Promise<Conn>;
}

const clusters: StandaloneCluster[] = [];
const conns: Conn[] = [];

function clusterToml(ports: number[], extra: string): string {
  return `[[clusters]]
name = "health"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = [${ports.map((p, i) => `"127.0.0.1:${p}:1 r${i}"`).join(', ')}]
${extra.includes('read_timeout') ? '' : 'read_timeout = 300'}
${extra}
`;
}

const parse = (toml: string): ClusterConfig => parseConfig(toml, 'health.toml').config.clusters[0];

async function setup(ports: number[], extra: string): Promise<Setup> {
  const logs: LogLine[] = [];
  const logger = createLogger('info', { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const cfg = parse(clusterToml(ports, extra));
  const cluster = await startStandalone(cfg, 'test', logger);
  clusters.push(cluster);
  return {
    cluster,
    cfg,
    logs,
    port: cluster.listener.port,
    keyOn(i, ejected = []) {
      const map = new ShardMap(cfg.servers, cfg.hashTag, 'remap');
      for (const e of ejected) map.eject(e);
      for (let n = 0; n < 10_000; n++) if (map.backendFor(Buffer.from(`key:${n}`)) === i) return `key:${n}`;
      throw new Error(`no key on server ${i}`);
    },
    async client() {
      const c = await Conn.open(cluster.listener.port);
      conns.push(c);
      return c;
    },
  };
}

const ejectedLine = (logs: LogLine[], backend: string): LogLine | undefined =>
  logs.find((l) => l.backend === backend && l.msg.startsWith('backend ejected by health checks'));
const returnedLine = (logs: LogLine[], backend: string): LogLine | undefined =>
  logs.find((l) => l.backend === backend && l.msg.startsWith('backend back in service'));

after(async () => {
  for (const c of conns) c.close();
  await Promise.all(clusters.map((c) => c.close()));
  await stopAll();
});

// ---------------------------------------------------------------------------------------------

describe('health checks: a backend that goes down', () => {
  it('remap: a killed backend is ejected at ping_fail_limit, its keys served by the others, and back after one PING', async () => {
    const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
    const s = await setup(
      servers.map((r) => r.port),
      'ping_fail_limit = 2\nping_succ_interval = 50\nping_interval = 100\neject_mode = "remap"',
    );
    const key = s.keyOn(1);
    const c = await s.client();
    assert.equal(await c.call('SET', key, 'before'), 'OK');
    assert.equal(await once(servers[1].port, 'GET', key), 'before');

    servers[1].kill('SIGKILL');
    await servers[1].exited;
    await waitFor(() => ejectedLine(s.logs, 'r1') !== undefined, 5000, 'r1 ejected');
    const line = ejectedLine(s.logs, 'r1')!;
    assert.equal(line.level, WARN);
    assert.equal(line.failures, 2, 'ejected at exactly ping_fail_limit');
    assert.match(line.reason ?? '', /ECONNREFUSED|ECONNRESET|closed|no answer/);
    assert.deepEqual(
      s.cluster.health().map((h) => [h.backend, h.live, h.ejections, h.returns]),
      [
        ['r0', true, 0, 0],
        ['r1', false, 1, 0],
        ['r2', true, 0, 0],
      ],
    );

    // the key now lives on the server the ring of the live ones gives it
    const map = new ShardMap(s.cfg.servers, undefined, 'remap');
    map.eject(1);
    const target = map.backendFor(Buffer.from(key));
    assert.notEqual(target, 1);
    assert.equal(await c.call('SET', key, 'during'), 'OK');
    assert.equal(await c.call('GET', key), 'during');
    assert.equal(await once(servers[target].port, 'GET', key), 'during');
    const info = await c.call('INFO', 'proxy');
    assert.match(String(info), /backend1:name=r1,.*live=0/);

    await servers[1].restart();
    await waitFor(() => returnedLine(s.logs, 'r1') !== undefined, 5000, 'r1 back in service');
    assert.equal(returnedLine(s.logs, 'r1')!.level, INFO);
    assert.deepEqual(s.cluster.health()[1], { backend: 'r1', live: true, ejections: 1, returns: 1 });
    // keys back on it (the data connection reconnects as the server returns)
    await waitFor(async () => (await c.call('SET', key, 'after')) === 'OK', 5000, 'SET on the restored server');
    assert.equal(await once(servers[1].port, 'GET', key), 'after');
    assert.equal(await once(servers[target].port, 'GET', key), 'during', 'the remapped copy stays where it was written');
  });

  it('fail_fast: a stopped backend is ejected and its keys get an immediate error; the others are served; back after restart', async () => {
    const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
    const s = await setup(
      servers.map((r) => r.port),
      'ping_fail_limit = 2\nping_succ_interval = 50\nping_interval = 100\neject_mode = "fail_fast"',
    );
    const down = s.keyOn(2);
    const up = s.keyOn(0);
    const c = await s.client();
    await servers[2].stop();
    await waitFor(() => ejectedLine(s.logs, 'r2') !== undefined, 5000, 'r2 ejected');
    assert.match(ejectedLine(s.logs, 'r2')!.msg, /its keys get an error/);

    // the proxy's own answer, not a connection error of the backend
    assert.match(errOf(await c.call('GET', down)), /^ERR .*ejected/);
    assert.match(errOf(await c.call('SET', down, 'x')), /^ERR .*ejected/);
    assert.equal(await c.call('SET', up, 'fine'), 'OK');
    const mget = await c.call('MGET', up, down);
    assert.ok(Array.isArray(mget));
    assert.equal(mget[0], 'fine');
    assert.match(errOf(mget[1]), /ejected/);

    await servers[2].restart();
    await waitFor(() => returnedLine(s.logs, 'r2') !== undefined, 5000, 'r2 back in service');
    await waitFor(async () => (await c.call('SET', down, 'back')) === 'OK', 5000, 'SET on the restored server');
    assert.equal(await once(servers[2].port, 'GET', down), 'back');
    assert.deepEqual(s.cluster.health()[2], { backend: 'r2', live: true, ejections: 1, returns: 1 });
  });
});

// ---------------------------------------------------------------------------------------------

/** A fake backend: `loading` answers every command with -LOADING; otherwise a tiny GET/SET/PING server. */
class FakeBackend {
  loading = false;
  pings = 0;
  private data = new Map<string, string>();
  readonly sockets = new Set<net.Socket>();
  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static start(): Promise<FakeBackend> {
    return new Promise((resolve) => {
      const server = net.createServer();
      let fake: FakeBackend;
      server.on('connection', (sock) => {
        fake.sockets.add(sock);
        sock.on('close', () => fake.sockets.delete(sock));
        sock.on('error', () => undefined);
        let buf = Buffer.alloc(0);
        sock.on('data', (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          for (let r = decode(buf, 0); r !== null; r = decode(buf, 0)) {
            buf = buf.subarray(r[1]);
            sock.write(fake.answer(r[0] as string[]));
          }
        });
      });
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        fake = new FakeBackend(server, (server.address() as net.AddressInfo).port);
        resolve(fake);
      });
    });
  }

  static readonly LOADING = '-LOADING Redis is loading the dataset in memory\r\n';

  private answer(args: string[]): string {
    const name = args[0].toUpperCase();
    if (name === 'PING') this.pings++;
    if (this.loading) return FakeBackend.LOADING;
    if (name === 'PING') return '+PONG\r\n';
    if (name === 'SET') {
      this.data.set(args[1], args[2]);
      return '+OK\r\n';
    }
    if (name === 'GET') {
      const v = this.data.get(args[1]);
      return v === undefined ? '$-1\r\n' : `$${Buffer.byteLength(v)}\r\n${v}\r\n`;
    }
    return `-ERR fake backend: unknown command '${args[0]}'\r\n`;
  }

  /** stops listening and drops every connection (the proxy's included) */
  close(): Promise<void> {
    for (const sock of this.sockets) sock.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('health checks: a backend that answers but is in trouble', () => {
  it('-LOADING replies count as failures (no PING needed), reach the client unchanged, and a PING restores it', async () => {
    const real = await Promise.all([startRedis(), startRedis()]);
    const fake = await FakeBackend.start();
    after(() => fake.close());
    // no PING while healthy during the test: the replies alone must eject it
    const s = await setup([real[0].port, real[1].port, fake.port], 'ping_fail_limit = 2\nping_succ_interval = 600000\nping_interval = 100');
    const key = s.keyOn(2);
    const c = await s.client();
    assert.equal(await c.call('SET', key, 'on-fake'), 'OK');

    fake.loading = true;
    for (let n = 0; n < 2; n++) {
      const { raw } = await c.send(['GET', key]);
      assert.equal(raw.toString(), FakeBackend.LOADING, 'the backend error reaches the client as it is');
    }
    await waitFor(() => ejectedLine(s.logs, 'r2') !== undefined, 2000, 'r2 ejected');
    assert.equal(ejectedLine(s.logs, 'r2')!.reason, '-LOADING reply');
    assert.equal(fake.pings, 0, 'ejected by the -LOADING replies alone');
    // remapped: the key is served by a real server now
    assert.equal(await c.call('GET', key), null);
    assert.equal(await c.call('SET', key, 'elsewhere'), 'OK');

    // while it keeps answering PING with -LOADING it stays out
    await waitFor(() => fake.pings >= 2, 5000, 'two PINGs while ejected');
    assert.equal(s.cluster.health()[2].live, false);
    assert.equal(returnedLine(s.logs, 'r2'), undefined);

    fake.loading = false;
    await waitFor(() => returnedLine(s.logs, 'r2') !== undefined, 5000, 'r2 back in service');
    assert.equal(await c.call('GET', key), 'on-fake');
    assert.deepEqual(s.cluster.health()[2], { backend: 'r2', live: true, ejections: 1, returns: 1 });
  });

  it('-BUSY (a script that loops) counts as failing and reaches the client unchanged; back after SCRIPT KILL', async () => {
    const servers = await Promise.all([startRedis(), startRedis({ args: ['--lua-time-limit', '50'] })]);
    const s = await setup(
      servers.map((r) => r.port),
      'ping_fail_limit = 2\nping_succ_interval = 600000\nping_interval = 100\neject_mode = "fail_fast"',
    );
    const key = s.keyOn(1);
    const c = await s.client();
    assert.equal(await c.call('SET', key, 'v'), 'OK');

    const looping = await Conn.open(servers[1].port);
    conns.push(looping);
    void looping.send(['EVAL', 'while true do end', '0'], 60_000).catch(() => undefined);
    // a direct client sees -BUSY once the script is past lua-time-limit: the proxy's client must see the same bytes
    let direct: Buffer = Buffer.alloc(0);
    await waitFor(
      async () => {
        const probe = await Conn.open(servers[1].port);
        try {
          direct = (await probe.send(['GET', key])).raw;
        } finally {
          probe.close();
        }
        return direct.toString().startsWith('-BUSY ');
      },
      5000,
      'the server busy',
    );
    for (let n = 0; n < 2; n++) assert.deepEqual((await c.send(['GET', key])).raw, direct, 'the -BUSY reply reaches the client as it is');
    await waitFor(() => ejectedLine(s.logs, 'r1') !== undefined, 2000, 'r1 ejected');
    assert.equal(ejectedLine(s.logs, 'r1')!.reason, '-BUSY reply');
    assert.match(errOf(await c.call('GET', key)), /^ERR .*ejected/);

    assert.equal(await once(servers[1].port, 'SCRIPT', 'KILL'), 'OK');
    await waitFor(() => returnedLine(s.logs, 'r1') !== undefined, 5000, 'r1 back in service');
    assert.equal(await c.call('GET', key), 'v');
  });

  it('-OOM replies to writes count as failures: the server is ejected and writes go elsewhere (remap)', async () => {
    const servers = await Promise.all([startRedis(), startRedis()]);
    // no PING at all during the test: a PING would succeed on a full server and restore it
    const s = await setup(servers.map((r) => r.port), 'ping_fail_limit = 2\nping_succ_interval = 600000\nping_interval = 600000');
    const key = s.keyOn(0);
    const c = await s.client();
    assert.equal(await once(servers[0].port, 'CONFIG', 'SET', 'maxmemory', '1'), 'OK');
    for (let n = 0; n < 2; n++) assert.match(errOf(await c.call('SET', key, 'v')), /^OOM /);
    await waitFor(() => ejectedLine(s.logs, 'r0') !== undefined, 2000, 'r0 ejected');
    assert.equal(ejectedLine(s.logs, 'r0')!.reason, '-OOM reply');
    assert.equal(await c.call('SET', key, 'v'), 'OK');
    assert.equal(await once(servers[1].port, 'GET', key), 'v');
  });
});

// ---------------------------------------------------------------------------------------------

describe('health checks: settings', () => {
  it('the PING connection AUTHs with backend_password; a wrong password ejects with the reason', async () => {
    const server = await startRedis({ args: ['--requirepass', 'secret'] });
    const good = await setup([server.port], 'ping_fail_limit = 2\nping_succ_interval = 30\nping_interval = 30\nbackend_password = "secret"');
    const bad = await setup([server.port], 'ping_fail_limit = 2\nping_succ_interval = 30\nping_interval = 30\nbackend_password = "wrong"');
    // PINGs refused for want of AUTH are not counted in calls=
    const pings = async (): Promise<number> => pingCalls(await infoStats(server, 'AUTH', 'secret'));
    await waitFor(() => ejectedLine(bad.logs, 'r0') !== undefined, 5000, 'ejected with a wrong password');
    assert.match(ejectedLine(bad.logs, 'r0')!.reason ?? '', /AUTH refused: WRONGPASS/);
    await waitFor(async () => (await pings()) >= 6, 5000, 'PINGs answered');
    assert.equal(good.cluster.health()[0].live, true);
    assert.equal(ejectedLine(good.logs, 'r0'), undefined);
  });

  it('ping_fail_limit = 0: no PING is sent and a dead server is never ejected', async () => {
    const servers = await Promise.all([startRedis(), startRedis()]);
    const pingsBefore = pingCalls(await infoStats(servers[1])); // the harness PINGs a server it starts
    const s = await setup(servers.map((r) => r.port), 'ping_fail_limit = 0\nping_succ_interval = 20\nping_interval = 20');
    const key = s.keyOn(1);
    const c = await s.client();
    assert.equal(await c.call('SET', key, 'v'), 'OK');
    await new Promise((r) => setTimeout(r, 200)); // ten ping intervals
    const stats = await infoStats(servers[1]);
    assert.match(stats, /cmdstat_set:calls=1\b/);
    assert.equal(pingCalls(stats), pingsBefore, 'no PING from the proxy');
    await servers[1].stop();
    // its keys get the connection error, never a remap
    await waitFor(async () => /unavailable|connection/.test(errOf(await c.call('GET', key))), 3000, 'fast errors');
    assert.equal(s.cluster.health()[1].live, true);
    assert.equal(s.logs.filter((l) => l.msg.startsWith('backend ejected')).length, 0);
  });

  it('reconfigure: checks follow the new server list, keep an ejected server out, and stop with ping_fail_limit = 0', async () => {
    const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
    const checks = 'ping_succ_interval = 50\nping_interval = 100';
    const s = await setup([servers[0].port, servers[1].port], `ping_fail_limit = 2\n${checks}`);
    servers[1].kill('SIGKILL');
    await waitFor(() => ejectedLine(s.logs, 'r1') !== undefined, 5000, 'r1 ejected');

    // r2 joins; r1 stays out in the new placement, and its checks go on
    s.cluster.reconfigure(parse(clusterToml(servers.map((r) => r.port), `ping_fail_limit = 2\n${checks}`)));
    assert.deepEqual(s.cluster.health().map((h) => [h.backend, h.live]), [
      ['r0', true],
      ['r1', false],
      ['r2', true],
    ]);
    servers[2].kill('SIGKILL');
    await waitFor(() => ejectedLine(s.logs, 'r2') !== undefined, 5000, 'the new server r2 ejected');
    await servers[1].restart();
    await waitFor(() => s.cluster.health()[1].live, 5000, 'r1 back in the new placement');
    assert.deepEqual(s.cluster.health()[1], { backend: 'r1', live: true, ejections: 1, returns: 1 });

    // health checks off: nothing would bring r2 back, so it serves again (and gets fast errors)
    s.cluster.reconfigure(parse(clusterToml(servers.map((r) => r.port), `ping_fail_limit = 0\n${checks}`)));
    assert.deepEqual(s.cluster.health().map((h) => h.live), [true, true, true]);
    const c = await s.client();
    const onR2 = Array.from({ length: 10_000 }, (_, n) => `key:${n}`).find((k) => s.cluster.shards().backendFor(Buffer.from(k)) === 2)!;
    assert.match(errOf(await c.call('GET', onR2)), /unavailable|connection/);
  });

  it('through startProxy: no "not implemented" warning, and an ejection shows in INFO', async () => {
    const servers = await Promise.all([startRedis(), startRedis()]);
    const logs: LogLine[] = [];
    const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
    const { config } = parseConfig(clusterToml(servers.map((r) => r.port), 'ping_fail_limit = 1\nping_succ_interval = 50\nping_interval = 100'), 'p.toml');
    const proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger });
    try {
      assert.equal(logs.filter((l) => /ping_fail_limit/.test(l.msg)).length, 0);
      await servers[0].stop();
      await waitFor(() => ejectedLine(logs, 'r0') !== undefined, 5000, 'r0 ejected');
      assert.equal(ejectedLine(logs, 'r0')!.failures, 1);
      assert.match(String(await once(proxy.listeners[0].port, 'INFO', 'proxy')), /backend0:name=r0,.*live=0/);
    } finally {
      await proxy.close();
    }
  });
});

const pingCalls = (commandstats: string): number => Number(/cmdstat_ping:calls=(\d+)/.exec(commandstats)?.[1] ?? 0);

/** INFO commandstats of a server (after one optional command on the same connection) */
async function infoStats(server: RedisProc, ...first: string[]): Promise<string> {
  const c = await Conn.open(server.port);
  try {
    if (first.length > 0) await c.call(...first);
    return String(await c.call('INFO', 'commandstats'));
  } finally {
    c.close();
  }
}
