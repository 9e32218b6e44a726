/**
 * Stock clients as black-box probes of the standalone proxy: ioredis (default options),
 * node-redis with RESP3 and RESP2 (HELLO, CLIENT SETINFO at connect), redis-cli, and many
 * concurrent clients pipelining mixed commands with values from 0 B to 70 kB, each of which
 * must get exactly its own replies.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { parseConfig } from '../../src/config/load.js';
import { Ketama } from '../../src/routing/ketama.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startRedis, stopAll, type RedisProc } from '../helpers/servers.js';

type NodeRedis = ReturnType<typeof createClient>;

interface Setup {
  backends: RedisProc[];
  proxy: RunningProxy;
  port: number;
  owner(key: string): number;
  /** ioredis connections straight to each backend */
  direct: Redis[];
  close(): Promise<void>;
}

async function setup(n: number): Promise<Setup> {
  const backends = await Promise.all(Array.from({ length: n }, () => startRedis()));
  const aliases = backends.map((_, i) => `alias${i}`);
  const toml = [
    '[[clusters]]',
    'name = "clients"',
    'listen_addr = "127.0.0.1:0"',
    'cache_type = "redis"',
    'hash_tag = "{}"',
    'thread = 1',
    'read_timeout = 5000',
    `servers = [${backends.map((b, i) => `"127.0.0.1:${b.port}:1 ${aliases[i]}"`).join(', ')}]`,
  ].join('\n');
  const { config } = parseConfig(toml, 'test.toml');
  const proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
  const ring = new Ketama(aliases.map((name) => ({ name, weight: 1 })));
  const direct = backends.map((b) => {
    const r = new Redis({ host: '127.0.0.1', port: b.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    r.on('error', () => undefined);
    return r;
  });
  return {
    backends,
    proxy,
    port: proxy.listeners[0].port,
    owner: (key) => ring.serverFor(Buffer.from(key, 'utf8'), '{}'),
    direct,
    async close() {
      for (const d of direct) d.disconnect();
      await proxy.close();
      await Promise.all(backends.map((b) => b.stop()));
    },
  };
}

/** `count` keys owned by backend `b` (the varying part first: see proxy-basic.test.ts) */
function keysOn(s: Setup, b: number, prefix: string, count = 1): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    if (i > 100_000) throw new Error(`no key for backend ${b}`);
    const k = `${i}:${prefix}`;
    if (s.owner(k) === b) out.push(k);
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]);
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function redisCli(port: number, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ stdout, stderr, code });
    });
  });
}

const plain = (o: object): Record<string, unknown> => ({ ...o });

// ---------------------------------------------------------------------------------------------

describe('stock clients through the proxy (3 backends)', { timeout: 120_000 }, () => {
  let s: Setup;
  const ioClients: Redis[] = [];
  const nodeClients: NodeRedis[] = [];

  const io = async (): Promise<Redis> => {
    const r = new Redis({ host: '127.0.0.1', port: s.port }); // default options
    r.on('error', () => undefined);
    ioClients.push(r);
    await withTimeout(new Promise<void>((resolve, reject) => {
      r.once('ready', resolve);
      r.once('end', () => reject(new Error('ioredis connection ended before ready')));
    }), 5000, 'ioredis ready');
    return r;
  };

  const nodeRedis = async (RESP: 2 | 3 | undefined, name?: string): Promise<NodeRedis> => {
    const c = createClient({
      socket: { host: '127.0.0.1', port: s.port, connectTimeout: 3000, reconnectStrategy: false },
      ...(RESP === undefined ? {} : { RESP }),
      ...(name === undefined ? {} : { name }),
    });
    c.on('error', () => undefined);
    nodeClients.push(c as NodeRedis);
    await withTimeout(c.connect(), 5000, `node-redis RESP${RESP ?? 'default'} connect`);
    return c as NodeRedis;
  };

  before(async () => {
    s = await setup(3);
  });
  after(async () => {
    for (const c of ioClients) c.disconnect();
    for (const c of nodeClients) if (c.isOpen) c.destroy();
    await s?.close();
    await stopAll();
  });

  it('ioredis (default options): connect (INFO ready check), SET/GET/MGET/HSET/HGETALL, pipelines', async () => {
    const r = await io();
    const [a, b, c] = [0, 1, 2].map((i) => keysOn(s, i, 'io')[0]);
    assert.equal(await r.set(a, 'A'), 'OK');
    assert.equal(await r.set(b, 'B'), 'OK');
    assert.equal(await r.get(a), 'A');
    assert.equal(await r.get(c), null);
    assert.deepEqual(await r.mget(a, c, b), ['A', null, 'B']);
    assert.equal(await r.hset('{io}:h', { f1: 'v1', f2: 'v2' }), 2);
    assert.deepEqual(plain(await r.hgetall('{io}:h')), { f1: 'v1', f2: 'v2' });
    assert.equal(await r.exists(a, b, c), 2);

    const res = await r
      .pipeline()
      .mset({ [a]: '1', [b]: '2', [c]: '3' })
      .mget(a, b, c)
      .incr(a)
      .del(a, b)
      .exists(a, b, c)
      .get(c)
      .exec();
    assert.ok(res !== null);
    assert.deepEqual(
      res.map(([err, v]) => (err ? `error: ${err.message}` : v)),
      ['OK', ['1', '2', '3'], 2, 2, 1, '3'],
    );

    // its placement is ketama's
    assert.equal(await s.direct[s.owner(c)].get(c), '3');

    // an error reply does not break ioredis
    await assert.rejects(r.call('NOSUCHCOMMAND'), /unknown command/);
    assert.equal(await r.ping(), 'PONG');
  });

  for (const RESP of [3, 2] as const) {
    it(`node-redis RESP${RESP}: HELLO ${RESP} + CLIENT SETINFO at connect, SET/GET/MGET/HSET/HGETALL, pipelines`, async () => {
      const c = await nodeRedis(RESP, `nr${RESP}`);
      const keys = [0, 1, 2].map((i) => keysOn(s, i, `nr${RESP}`)[0]);
      assert.equal(await c.set(keys[0], 'x'), 'OK');
      assert.equal(await c.get(keys[0]), 'x');
      assert.equal(await c.get(keys[1]), null);
      assert.equal(await c.mSet([[keys[1], 'y'], [keys[2], 'z']]), 'OK');
      assert.deepEqual(await c.mGet([...keys, `${keys[0]}:missing`]), ['x', 'y', 'z', null]);
      assert.equal(await c.hSet(`{nr${RESP}}:h`, { a: '1', b: '2', c: '3' }), 3);
      const h = await c.hGetAll(`{nr${RESP}}:h`);
      assert.deepEqual(plain(h), { a: '1', b: '2', c: '3' });

      // RESP3 replies on the wire: HGETALL is a map (`%`), checked with a raw command
      const rawHello = (await c.sendCommand(['HELLO'])) as unknown;
      if (RESP === 3) {
        // node-redis decodes a RESP3 map into an object (a RESP2 flat array would be an array)
        assert.ok(rawHello !== null && typeof rawHello === 'object' && !Array.isArray(rawHello), `HELLO reply ${JSON.stringify(rawHello)}`);
        assert.equal((rawHello as Record<string, unknown>)['proto'], 3);
        const rawH = (await c.sendCommand(['HGETALL', `{nr${RESP}}:h`])) as unknown;
        assert.ok(rawH !== null && typeof rawH === 'object' && !Array.isArray(rawH), `HGETALL reply ${JSON.stringify(rawH)}`);
      } else {
        assert.ok(Array.isArray(rawHello), `HELLO reply ${JSON.stringify(rawHello)}`);
        const rawH = (await c.sendCommand(['HGETALL', `{nr${RESP}}:h`])) as unknown;
        assert.deepEqual(rawH, ['a', '1', 'b', '2', 'c', '3']);
      }

      // pipelined (auto-pipelining in one tick, and execAsPipeline: no MULTI)
      const many = await Promise.all(keys.flatMap((k, i) => [c.set(k, `p${i}`), c.get(k), c.exists(keys)]));
      assert.deepEqual(many, ['OK', 'p0', 3, 'OK', 'p1', 3, 'OK', 'p2', 3]);
      const piped = await c.multi().mGet(keys).del(keys).exists(keys).incr(keys[0]).execAsPipeline();
      assert.deepEqual(piped, [['p0', 'p1', 'p2'], 3, 0, 1]);

      // connect-time state: the name from HELLO SETNAME
      assert.equal(await c.sendCommand(['CLIENT', 'GETNAME']), `nr${RESP}`);
      assert.match(String(await c.sendCommand(['CLIENT', 'INFO'])), new RegExp(`resp=${RESP}`));
      assert.equal(await c.ping(), 'PONG');
      await withTimeout(c.close(), 3000, 'node-redis close');
    });
  }

  it('CLIENT SETINFO: the lib-name/lib-ver sent at connect are taken (ioredis, node-redis RESP3/RESP2), a raw one answers OK', async () => {
    // BUG: src/commands/table.json is Redis 7.0.15's table, which has no CLIENT|SETINFO (added in
    // Redis 7.2), so session.route() (src/streams/session.ts) answers "ERR unknown command
    // 'CLIENT'..." before the local handler in src/commands/local.ts is ever reached. Clients
    // ignore that error at connect, so they work, but CLIENT SETINFO is never taken.
    const r = await io();
    const n3 = await nodeRedis(3);
    const n2 = await nodeRedis(2);
    const infos = {
      ioredis: String(await r.call('CLIENT', 'INFO')),
      nodeRedis3: String(await n3.sendCommand(['CLIENT', 'INFO'])),
      nodeRedis2: String(await n2.sendCommand(['CLIENT', 'INFO'])),
    };
    const raw = await r.call('CLIENT', 'SETINFO', 'LIB-NAME', 'probe').catch((err: Error) => `error: ${err.message}`);
    assert.deepEqual(
      {
        ioredis: /lib-name=ioredis lib-ver=\d/.test(infos.ioredis),
        nodeRedis3: /lib-name=node-redis lib-ver=\d/.test(infos.nodeRedis3),
        nodeRedis2: /lib-name=node-redis lib-ver=\d/.test(infos.nodeRedis2),
        raw,
      },
      { ioredis: true, nodeRedis3: true, nodeRedis2: true, raw: 'OK' },
      JSON.stringify(infos),
    );
    assert.match(String(await r.call('CLIENT', 'INFO')), /lib-name=probe/);
  });

  it('node-redis with default options (RESP2, no HELLO) works', async () => {
    const c = await nodeRedis(undefined);
    assert.equal(await c.set('{dflt}:a', '1'), 'OK');
    assert.equal(await c.incr('{dflt}:a'), 2);
    assert.equal(await c.get('{dflt}:a'), '2');
    await withTimeout(c.close(), 3000, 'node-redis close');
  });

  it('RESP3 and RESP2 clients side by side each get their own protocol', async () => {
    const [c3, c2] = await Promise.all([nodeRedis(3), nodeRedis(2)]);
    await c3.hSet('{side}:h', { k: 'v' });
    const rounds = await Promise.all(
      Array.from({ length: 50 }, async () => [await c3.sendCommand(['HGETALL', '{side}:h']), await c2.sendCommand(['HGETALL', '{side}:h'])]),
    );
    for (const [r3, r2] of rounds) {
      assert.deepEqual(plain(r3 as object), { k: 'v' });
      assert.deepEqual(r2, ['k', 'v']);
    }
  });

  it('redis-cli: set, get, --no-raw, ping, info', async () => {
    assert.deepEqual(await redisCli(s.port, ['set', 'cli:k', 'hello world']), { stdout: 'OK\n', stderr: '', code: 0 });
    assert.equal((await redisCli(s.port, ['get', 'cli:k'])).stdout, 'hello world\n');
    assert.equal((await redisCli(s.port, ['--no-raw', 'get', 'cli:k'])).stdout, '"hello world"\n');
    assert.equal((await redisCli(s.port, ['--no-raw', 'get', 'cli:missing'])).stdout, '(nil)\n');
    assert.equal((await redisCli(s.port, ['ping'])).stdout, 'PONG\n');
    assert.equal((await redisCli(s.port, ['--no-raw', 'mget', 'cli:k', 'cli:missing'])).stdout, '1) "hello world"\n2) (nil)\n');
    const info = await redisCli(s.port, ['info', 'proxy']);
    assert.match(info.stdout, /# Proxy/);
    const unknown = await redisCli(s.port, ['--no-raw', 'nosuchcmd']);
    assert.match(unknown.stdout + unknown.stderr, /ERR unknown command/);
    // RESP3 redis-cli (-3 sends HELLO 3)
    const r3 = await redisCli(s.port, ['-3', '--no-raw', 'hgetall', 'cli:missing-hash']);
    assert.equal(r3.code, 0, r3.stderr);
    assert.equal(await s.direct[s.owner('cli:k')].get('cli:k'), 'hello world');
  });

  it('20 clients × 500 pipelined INCR/SET/GET/MGET/DEL (values 0 B – 70 kB) each get exactly their own replies', async () => {
    const CLIENTS = 20;
    const OPS = 500;
    const t0 = Date.now();
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => (i % 4 === 1 ? nodeRedis(3) : i % 4 === 3 ? nodeRedis(2) : io())),
    );

    const run = async (ci: number): Promise<void> => {
      const rnd = mulberry32(1000 + ci);
      const int = (n: number): number => Math.floor(rnd() * n);
      const model = new Map<string, string>();
      let counter = 0;
      const keyOf = (j: number): string => `${j}:c${ci}:k`; // varying part first: keys spread over the backends
      const counterKey = `${ci}:c:counter`;
      type Op = { args: string[]; want: unknown };
      const ops: Op[] = [];
      const value = (): string => {
        const big = rnd() < 0.06;
        const len = ops.length === 0 ? 70_000 : big ? int(70_001) : int(100);
        let v = `${ci}/${ops.length}/`;
        while (v.length < len) v += String.fromCharCode(0x21 + int(94)).repeat(1 + int(50));
        return v.slice(0, Math.max(len, 0));
      };
      for (let j = 0; j < OPS; j++) {
        const r = j === 0 ? 0 : int(10);
        const k = keyOf(int(40));
        if (r <= 2) {
          const v = value();
          model.set(k, v);
          ops.push({ args: ['SET', k, v], want: 'OK' });
        } else if (r <= 5) {
          ops.push({ args: ['GET', k], want: model.get(k) ?? null });
        } else if (r <= 7) {
          ops.push({ args: ['INCR', counterKey], want: ++counter });
        } else if (r === 8) {
          const ks = Array.from({ length: 2 + int(5) }, () => keyOf(int(40)));
          ops.push({ args: ['MGET', ...ks], want: ks.map((x) => model.get(x) ?? null) });
        } else {
          const ks = [k, keyOf(int(40))];
          const uniq = [...new Set(ks)];
          const n = uniq.filter((x) => model.has(x)).length;
          for (const x of uniq) model.delete(x);
          ops.push({ args: ['DEL', ...uniq], want: n });
        }
      }
      const c = clients[ci];
      let got: unknown[];
      if (c instanceof Redis) {
        const p = c.pipeline();
        for (const op of ops) p.call(op.args[0], ...op.args.slice(1));
        const res = (await p.exec()) ?? [];
        got = res.map(([err, v]) => (err ? `error: ${err.message}` : v));
      } else {
        const nr = c as NodeRedis;
        got = await Promise.all(ops.map((op) => nr.sendCommand(op.args).catch((err: Error) => `error: ${err.message}`)));
      }
      assert.equal(got.length, ops.length);
      for (let j = 0; j < ops.length; j++) {
        if (JSON.stringify(got[j]) !== JSON.stringify(ops[j].want)) {
          const show = (x: unknown): string => JSON.stringify(x)?.slice(0, 120) ?? String(x);
          assert.fail(`client ${ci} op ${j} ${ops[j].args[0]} ${ops[j].args[1] ?? ''}: got ${show(got[j])}, want ${show(ops[j].want)}`);
        }
      }
    };
    await withTimeout(Promise.all(clients.map((_, ci) => run(ci))), 60_000, 'many clients');
    const ms = Date.now() - t0;
    assert.ok(ms < 60_000, `${ms} ms`);
    // every client's counter is exactly its own INCR count
    const check = await io();
    for (let ci = 0; ci < CLIENTS; ci++) {
      const v = await check.get(`${ci}:c:counter`);
      assert.ok(v !== null && Number(v) > 0, `counter of client ${ci}: ${v}`);
    }
  });
});
