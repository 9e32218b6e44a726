/**
 * Faults behind the standalone proxy: a backend killed (SIGKILL) while clients pipeline, then
 * restarted; multi-key commands with one backend down; a backend that stalls past read_timeout
 * (DEBUG SLEEP) whose late reply must reach nobody; fake backends that send an extra reply,
 * garbage, or a truncated reply. Clients get errors, never a wrong value, never a hang, and the
 * proxy keeps serving.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { Ketama } from '../../src/routing/ketama.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { RespErr, parseResp, Raw, assertErr, type Resp } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

// ---------------------------------------------------------------------------------------------
// a proxy over given backend ports

interface Setup {
  proxy: RunningProxy;
  port: number;
  owner(key: string): number;
  keysOn(b: number, prefix: string, count?: number): string[];
  client(): Promise<Raw>;
  close(): Promise<void>;
}

async function setup(ports: number[], extra: string[] = []): Promise<Setup> {
  const aliases = ports.map((_, i) => `alias${i}`);
  const toml = [
    '[[clusters]]',
    'name = "faults"',
    'listen_addr = "127.0.0.1:0"',
    'cache_type = "redis"',
    'hash_tag = "{}"',
    'thread = 1',
    `servers = [${ports.map((p, i) => `"127.0.0.1:${p}:1 ${aliases[i]}"`).join(', ')}]`,
    ...extra,
  ].join('\n');
  const { config } = parseConfig(toml, 'test.toml');
  const proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
  const ring = new Ketama(aliases.map((name) => ({ name, weight: 1 })));
  const owner = (key: string): number => ring.serverFor(Buffer.from(key, 'latin1'), '{}');
  const port = proxy.listeners[0].port;
  const clients: Raw[] = [];
  return {
    proxy,
    port,
    owner,
    keysOn(b, prefix, count = 1) {
      const out: string[] = [];
      // the varying part first: see proxy-basic.test.ts
      for (let i = 0; out.length < count; i++) {
        if (i > 100_000) throw new Error(`no key for backend ${b}`);
        const k = `${i}:${prefix}`;
        if (owner(k) === b) out.push(k);
      }
      return out;
    },
    async client() {
      const c = await Raw.connect(port);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await proxy.close();
    },
  };
}

/** how long `p` took, ms */
async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await p;
  return [v, performance.now() - t0];
}

// ---------------------------------------------------------------------------------------------
// a fake backend: a TCP server that parses requests and answers what `answer` says

/** the bytes to answer a request with (null: nothing); `close`: then close the connection */
type Answer = (args: string[], n: number, sock: net.Socket) => string | null | { data: string; close: true };

class FakeBackend {
  connections = 0;
  /** connections that ended (we never end them ourselves: the proxy closed them) */
  closed = 0;
  requests = 0;
  private sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    public answer: Answer,
  ) {}

  static start(answer: Answer): Promise<FakeBackend> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      let fake: FakeBackend;
      server.on('connection', (sock) => {
        fake.connections++;
        fake.sockets.add(sock);
        sock.on('error', () => undefined);
        sock.once('close', () => {
          fake.closed++;
          fake.sockets.delete(sock);
        });
        let buf = Buffer.alloc(0);
        sock.on('data', (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          let p = 0;
          for (;;) {
            const r = parseResp(buf, p);
            if (r === null) break;
            p = r[1];
            const out = fake.answer(r[0] as string[], fake.requests++, sock);
            if (out === null) continue;
            if (typeof out === 'string') {
              sock.write(out);
            } else {
              sock.end(out.data);
              return;
            }
          }
          buf = buf.subarray(p);
        });
      });
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        fake = new FakeBackend(server, (server.address() as net.AddressInfo).port, answer);
        resolve(fake);
      });
    });
  }

  private throttles = new Map<net.Socket, () => void>();

  /** reads its connections slowly: after each chunk it stops for `ms` (0: at full speed again) */
  throttle(ms: number): void {
    for (const s of this.sockets) {
      const old = this.throttles.get(s);
      if (old !== undefined) s.off('data', old);
      this.throttles.delete(s);
      if (ms <= 0) continue;
      const slow = (): void => {
        s.pause();
        setTimeout(() => s.resume(), ms);
      };
      s.on('data', slow);
      this.throttles.set(s, slow);
    }
  }

  /** stops reading its connections (what the proxy writes piles up in the kernel's buffers), or reads again */
  reading(on: boolean): void {
    for (const s of this.sockets) {
      if (on) s.resume();
      else s.pause();
    }
  }

  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const bulk = (s: string): string => `$${Buffer.byteLength(s, 'latin1')}\r\n${s}\r\n`;
/** what the fakes store for a key: its value is always derived from its name */
const fakeValue = (key: string): string => `val:${key}`;

// ---------------------------------------------------------------------------------------------

describe('a backend killed while clients pipeline', { timeout: 120_000 }, () => {
  const running: Array<{ close(): Promise<void> }> = [];
  const ioClients: Redis[] = [];
  after(async () => {
    for (const r of ioClients) r.disconnect();
    for (const r of running) await r.close();
    await stopAll();
  });

  it('its keys get errors quickly (no hang), the others keep working; after restart() its keys work again', async () => {
    const backends = await Promise.all([0, 1, 2].map(() => startRedis()));
    const s = await setup(backends.map((b) => b.port), ['read_timeout = 1000']);
    running.push(s);
    const DEAD = 1;
    const keys = [0, 1, 2].map((b) => s.keysOn(b, `kill${b}`, 10));
    const all = keys.flat();
    const seed = await s.client();
    assert.deepEqual(await seed.pipeline(all.map((k) => ['SET', k, `v:${k}`])), all.map(() => 'OK'));

    // three clients pipeline batches of GET/SET over every backend until told to stop
    let stop = false;
    let killedAt = Infinity;
    const stats = { batches: 0, deadErrorsAfterKill: 0, deadErrorsBeforeKill: 0, liveErrors: [] as string[], wrong: [] as string[], slowest: 0 };
    const loop = async (ci: number): Promise<void> => {
      const c = await s.client();
      let round = 0;
      while (!stop) {
        const batch: Array<{ key: string; cmd: string[]; want: Resp }> = [];
        for (const k of all) {
          if ((round + k.length + ci) % 4 === 0) batch.push({ key: k, cmd: ['SET', k, `v:${k}`], want: 'OK' });
          else batch.push({ key: k, cmd: ['GET', k], want: `v:${k}` });
        }
        const sentAt = performance.now();
        const replies = await c.pipeline(batch.map((b) => b.cmd), 3000); // bounded: a hang fails here
        const took = performance.now() - sentAt;
        stats.slowest = Math.max(stats.slowest, took);
        replies.forEach((r, i) => {
          const { key, want } = batch[i];
          const dead = s.owner(key) === DEAD;
          if (r instanceof RespErr) {
            if (!dead) stats.liveErrors.push(`${key}: ${r.message}`);
            else if (sentAt >= killedAt) stats.deadErrorsAfterKill++;
            else stats.deadErrorsBeforeKill++;
          } else if (dead && r === null && sentAt >= killedAt) {
            // cannot happen before restart; counted as wrong below if it does
            stats.wrong.push(`${key}: null while the backend is dead`);
          } else if (JSON.stringify(r) !== JSON.stringify(want)) {
            stats.wrong.push(`${key}: got ${JSON.stringify(r)} want ${JSON.stringify(want)}`);
          }
        });
        stats.batches++;
        round++;
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const loops = [0, 1, 2].map(loop);
    await new Promise((r) => setTimeout(r, 300));
    killedAt = performance.now();
    backends[DEAD].kill('SIGKILL');
    await backends[DEAD].exited;
    await new Promise((r) => setTimeout(r, 800));
    stop = true;
    await Promise.all(loops);

    assert.deepEqual(stats.wrong, [], 'no wrong value');
    assert.deepEqual(stats.liveErrors, [], 'keys on live backends never fail');
    assert.ok(stats.deadErrorsAfterKill > 0, `the dead backend's keys got errors (${JSON.stringify(stats)})`);
    assert.ok(stats.slowest < 1500, `slowest batch ${stats.slowest.toFixed(0)} ms`);

    // a single request for the dead backend: an error at once; ioredis (default options) too
    const c = await s.client();
    const [r, ms] = await timed(c.call('GET', keys[DEAD][0]));
    assertErr(r, 'ERR', 'GET on the dead backend');
    assert.match((r as RespErr).message, /alias1/, 'the error names the backend');
    assert.ok(ms < 500, `error after ${ms.toFixed(0)} ms`);
    assert.equal(await c.call('GET', keys[0][0]), `v:${keys[0][0]}`);
    const io = new Redis({ host: '127.0.0.1', port: s.port });
    io.on('error', () => undefined);
    ioClients.push(io);
    const [ioErr, ioMs] = await timed(io.get(keys[DEAD][1]).then(() => null, (err: Error) => err));
    assert.ok(ioErr instanceof Error, 'ioredis gets an error for the dead backend');
    assert.ok(ioMs < 1000, `ioredis error after ${ioMs.toFixed(0)} ms`);
    assert.equal(await io.get(keys[2][0]), `v:${keys[2][0]}`);

    // back: the proxy reconnects (backoff up to 2 s) and the keys work again (data is gone: no persistence)
    const restartAt = performance.now();
    await backends[DEAD].restart();
    await waitFor(async () => !((await c.call('GET', keys[DEAD][0])) instanceof RespErr), 8000, 'the restarted backend to serve through the proxy');
    const back = performance.now() - restartAt;
    assert.ok(back < 5000, `reconnected ${back.toFixed(0)} ms after restart`);
    for (const k of keys[DEAD]) {
      assert.equal(await c.call('SET', k, `new:${k}`), 'OK');
      assert.equal(await c.call('GET', k), `new:${k}`);
    }
    const direct = await Raw.connect(backends[DEAD].port);
    assert.equal(await direct.call('GET', keys[DEAD][3]), `new:${keys[DEAD][3]}`);
    direct.close();
    assert.equal(await io.get(keys[DEAD][1]), `new:${keys[DEAD][1]}`);
  });
});

describe('multi-key commands with one backend down', { timeout: 60_000 }, () => {
  const running: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const r of running) await r.close();
    await stopAll();
  });

  it('MGET: values for the others and an error in the dead one\'s positions; MSET, DEL, EXISTS: an error', async () => {
    const backends = await Promise.all([0, 1, 2].map(() => startRedis()));
    const s = await setup(backends.map((b) => b.port), ['read_timeout = 1000']);
    running.push(s);
    const [a0, a1] = s.keysOn(0, 'mk', 2);
    const [b0, b1] = s.keysOn(1, 'mk', 2);
    const [c0] = s.keysOn(2, 'mk', 1);
    const c = await s.client();
    assert.equal(await c.call('MSET', a0, 'A0', a1, 'A1', b0, 'B0', b1, 'B1', c0, 'C0'), 'OK');

    backends[1].kill('SIGKILL');
    await backends[1].exited;
    await waitFor(async () => (await c.call('GET', b0)) instanceof RespErr, 3000, 'the proxy to see backend 1 down');

    const [mget, ms] = await timed(c.call('MGET', a0, b0, c0, b1, a1, 'never-set-{x}'));
    assert.ok(Array.isArray(mget), JSON.stringify(mget));
    const m = mget as Resp[];
    assert.equal(m.length, 6);
    assert.equal(m[0], 'A0');
    assertErr(m[1], 'ERR', 'MGET element of the dead backend');
    assert.equal(m[2], 'C0');
    assertErr(m[3], 'ERR', 'MGET element of the dead backend');
    assert.equal(m[4], 'A1');
    const xOwner = s.owner('never-set-{x}');
    if (xOwner === 1) assertErr(m[5], 'ERR', 'MGET missing key on the dead backend');
    else assert.equal(m[5], null);
    assert.ok(ms < 500, `MGET took ${ms.toFixed(0)} ms`);

    assertErr(await c.call('MSET', a0, 'x', b0, 'y', c0, 'z'), 'ERR', 'MSET with a part on the dead backend');
    assertErr(await c.call('DEL', a1, b1), 'ERR', 'DEL with a part on the dead backend');
    assertErr(await c.call('EXISTS', a0, b0, c0), 'ERR', 'EXISTS with a part on the dead backend');
    assertErr(await c.call('UNLINK', c0, b1), 'ERR', 'UNLINK with a part on the dead backend');
    assertErr(await c.call('TOUCH', a0, b1), 'ERR', 'TOUCH with a part on the dead backend');
    // the parts on live backends were executed (no atomicity across servers): a0 was set by the
    // MSET, a1 deleted by the DEL, c0 unlinked by the UNLINK; commands on live backends alone work
    assert.deepEqual(await c.call('MGET', a0, a1, c0), ['x', null, null]);
    assert.equal(await c.call('EXISTS', a0, a1, c0), 1);
    assert.equal(await c.call('MSET', a1, 'y', c0, 'z'), 'OK');
    assert.deepEqual(await c.call('MGET', a0, a1, c0), ['x', 'y', 'z']);
    assert.equal(c.closed, false);
  });
});

describe('a backend that stalls past read_timeout (DEBUG SLEEP)', { timeout: 60_000 }, () => {
  const running: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const r of running) await r.close();
    await stopAll();
  });

  it('the request gets a timeout error within ~1 s; the late reply reaches nobody', async () => {
    const slow = await startRedis({ args: ['--enable-debug-command', 'yes'] });
    const fast = await startRedis();
    const s = await setup([slow.port, fast.port], ['read_timeout = 300']);
    running.push(s);
    const slowKeys = s.keysOn(0, 'slow', 30);
    const [fastKey] = s.keysOn(1, 'fast', 1);
    const c = await s.client();
    const other = await s.client();
    assert.deepEqual(await c.pipeline(slowKeys.map((k) => ['SET', k, `v:${k}`])), slowKeys.map(() => 'OK'));
    assert.equal(await c.call('SET', fastKey, 'F'), 'OK');

    const direct = await Raw.connect(slow.port);
    try {
      const sleeping = direct.sendNoWait('DEBUG', 'SLEEP', '1'); // not awaited here
      await new Promise((r) => setTimeout(r, 50));
      const t0 = performance.now();
      // two clients ask the sleeping backend, at different moments
      const first = c.call('GET', slowKeys[0]);
      await new Promise((r) => setTimeout(r, 100));
      const second = other.call('GET', slowKeys[1]);
      const [r1, ms1] = await timed(first);
      assertErr(r1, 'ERR', 'GET during DEBUG SLEEP');
      assert.match((r1 as RespErr).message, /timeout/i);
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= 250 && ms1 < 1000, `timeout error after ${elapsed.toFixed(0)} ms`);
      const r2 = await second;
      // the second either timed out too, or (sent on the fresh connection) was answered right
      if (!(r2 instanceof RespErr)) assert.equal(r2, `v:${slowKeys[1]}`);
      // the other backend is not held up meanwhile
      const [rf, msf] = await timed(other.call('GET', fastKey));
      assert.equal(rf, 'F');
      assert.ok(msf < 500, `fast backend answered in ${msf.toFixed(0)} ms`);

      await direct.waitReplies(sleeping + 1, 3000); // the sleep is over
      assert.equal(direct.replies[sleeping], 'OK');

      // every later reply is the right one: distinct keys, distinct values, from both clients
      const wrong: string[] = [];
      for (let i = 2; i < slowKeys.length; i++) {
        const who = i % 2 === 0 ? c : other;
        const k = slowKeys[i];
        const r = await who.call('GET', k);
        if (r !== `v:${k}`) wrong.push(`${k}: ${JSON.stringify(r)}`);
      }
      const piped = await c.pipeline(slowKeys.map((k) => ['GET', k]));
      piped.forEach((r, i) => {
        if (r !== `v:${slowKeys[i]}`) wrong.push(`pipelined ${slowKeys[i]}: ${JSON.stringify(r)}`);
      });
      assert.deepEqual(wrong, []);
      // no stray reply arrived on either client
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(c.replies.length, c.sentCount, 'no extra reply on the first client');
      assert.equal(other.replies.length, other.sentCount, 'no extra reply on the second client');
    } finally {
      direct.close();
    }
  });
});

describe('fake backends that misbehave', { timeout: 60_000 }, () => {
  const running: Array<{ close(): Promise<void> }> = [];
  const fakes: FakeBackend[] = [];
  after(async () => {
    for (const r of running) await r.close();
    for (const f of fakes) await f.stop();
    await stopAll();
  });

  /** a real backend (index 0) and a fake one (index 1) behind one proxy (config lines `extra`) */
  const withFake = async (answer: Answer, extra = ['read_timeout = 1000']): Promise<{ s: Setup; fake: FakeBackend; real: RedisProc }> => {
    const [real, fake] = await Promise.all([startRedis(), FakeBackend.start(answer)]);
    fakes.push(fake);
    const s = await setup([real.port, fake.port], extra);
    running.push(s);
    await waitFor(() => fake.connections > 0, 3000, 'the proxy to connect to the fake backend');
    return { s, fake, real };
  };

  const ordinary = (args: string[]): string => {
    const cmd = String(args[0]).toUpperCase();
    return cmd === 'GET' ? bulk(fakeValue(String(args[1]))) : '+OK\r\n';
  };

  it('an extra, unexpected reply: the proxy closes that connection and no client ever gets a wrong value', async () => {
    // Each request is answered with its right reply followed by an extra one (in one write).
    // Requests go one at a time: with two requests in flight an extra reply is
    // indistinguishable from the next one's, for any proxy.
    const { s, fake } = await withFake((args) => ordinary(args) + '+EXTRA\r\n');
    const fakeKeys = s.keysOn(1, 'fk', 20);
    const [realKey] = s.keysOn(0, 'rk', 1);
    const c = await s.client();
    const watcher = await s.client();
    assert.equal(await watcher.call('SET', realKey, 'R'), 'OK');

    const wrong: string[] = [];
    let errors = 0;
    let right = 0;
    for (const k of fakeKeys) {
      const r = await c.call('GET', k);
      if (r instanceof RespErr) errors++;
      else if (r === fakeValue(k)) right++;
      else wrong.push(`${k}: ${JSON.stringify(r)}`);
      const rr = await watcher.call('GET', realKey);
      if (rr !== 'R') wrong.push(`real ${realKey}: ${JSON.stringify(rr)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(wrong, [], 'never a wrong value');
    assert.equal(errors + right, fakeKeys.length);
    assert.ok(fake.closed >= 1, `the proxy closed the connection that sent an extra reply (closed ${fake.closed}, ${right} right, ${errors} errors)`);
    assert.ok(fake.connections >= 2, `and opened a new one (${fake.connections} connections)`);
    // the proxy keeps running
    assert.equal(await c.call('PING'), 'PONG');
    const fresh = await s.client();
    assert.equal(await fresh.call('GET', realKey), 'R');
    assert.equal(c.sentCount, c.replies.length, 'no stray reply reached the client');
  });

  it('an extra reply arriving late (nothing pending) closes the connection; nothing reaches a client', async () => {
    const { s, fake } = await withFake((args, n, sock) => {
      // after the first request, a late extra reply while nothing is pending
      if (n === 0) setTimeout(() => sock.write('+LATE\r\n'), 50);
      return ordinary(args);
    });
    const c = await s.client();
    const [k1, k2] = s.keysOn(1, 'late', 2);
    assert.equal(await c.call('GET', k1), fakeValue(k1));
    await waitFor(() => fake.closed >= 1, 2000, 'the proxy to close the connection that sent a reply with no request');
    await new Promise((r) => setTimeout(r, 50));
    const r = await c.call('GET', k2);
    if (!(r instanceof RespErr)) assert.equal(r, fakeValue(k2));
    await waitFor(async () => (await c.call('GET', k2)) === fakeValue(k2), 4000, 'the reconnected fake backend to serve');
    assert.equal(c.sentCount, c.replies.length, 'no stray reply reached the client');
  });

  for (const [name, garbage] of [
    ['an unknown type byte', '@garbage\r\n'],
    ['a bad length line', '$abc\r\n'],
    ['a negative length', '$-7\r\n'],
    ['garbage inside an array', '*2\r\n$1\r\na\r\n?what\r\n'],
  ] as const) {
    it(`garbage (${name}): the client gets an error, the connection is closed and reopened, the proxy keeps serving`, async () => {
      let mode: 'garbage' | 'ok' = 'garbage';
      const { s, fake } = await withFake((args) => (mode === 'garbage' ? garbage : ordinary(args)));
      const fakeKeys = s.keysOn(1, 'gk', 5);
      const [realKey] = s.keysOn(0, 'rk', 1);
      const c = await s.client();
      const other = await s.client();
      assert.equal(await other.call('SET', realKey, 'R'), 'OK');
      for (const k of fakeKeys) {
        const [r, ms] = await timed(c.call('GET', k));
        assertErr(r, 'ERR', `GET ${k} answered with garbage`);
        assert.ok(ms < 500, `error after ${ms.toFixed(0)} ms`);
        assert.equal(await other.call('GET', realKey), 'R');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(fake.closed >= 1, `the proxy closed the connection (closed ${fake.closed})`);
      mode = 'ok';
      await waitFor(async () => (await c.call('GET', fakeKeys[0])) === fakeValue(fakeKeys[0]), 4000, 'the fake backend to serve again');
      for (const k of fakeKeys) assert.equal(await c.call('GET', k), fakeValue(k));
      assert.equal(await c.call('PING'), 'PONG');
      assert.equal(c.sentCount, c.replies.length, 'no stray reply reached the client');
    });
  }

  it('write_timeout: a backend that stops reading has its connection closed and its requests failed, long before read_timeout', async (t) => {
    const { s, fake } = await withFake(ordinary, ['read_timeout = 20000', 'write_timeout = 300']);
    const c = await s.client();
    const [k] = s.keysOn(1, 'stall');
    assert.equal(await c.call('GET', k), fakeValue(k));
    fake.reading(false);
    // 32 MiB for it: more than the kernel's buffers between the two hold
    const big = 'x'.repeat(4 << 20);
    const keys = s.keysOn(1, 'stall', 8);
    const [replies, ms] = await timed(c.pipeline(keys.map((key) => ['SET', key, big]), 15_000));
    t.diagnostic(`8 SETs of 4 MiB to a backend that does not read: answered after ${ms.toFixed(0)} ms (write_timeout 300, read_timeout 20000)`);
    for (const r of replies) assertErr(r, 'ERR', 'SET to a backend that does not read');
    assert.match((replies[0] as RespErr).message, /^ERR backend alias1: write timeout \(300 ms\)/);
    // the other backend was never held up, and the stalled one serves again once it reads
    const [other] = s.keysOn(0, 'fine');
    assert.equal(await c.call('SET', other, 'v'), 'OK');
    fake.reading(true);
    await waitFor(async () => (await c.call('GET', k)) === fakeValue(k), 5000, 'the fake backend to serve again');
  });

  it('write_timeout: a backend that reads a large write slowly but steadily is not cut off', async (t) => {
    const { s, fake } = await withFake(ordinary, ['read_timeout = 30000', 'write_timeout = 300']);
    const c = await s.client();
    // one chunk (64 KiB at most) every 3 ms: ~20 MB/s, so 32 MiB takes over a second, several
    // times write_timeout, while bytes keep moving
    fake.throttle(3);
    const big = 'x'.repeat(4 << 20);
    const keys = s.keysOn(1, 'slow', 8);
    const [replies, ms] = await timed(c.pipeline(keys.map((key) => ['SET', key, big]), 25_000));
    t.diagnostic(`8 SETs of 4 MiB to a backend reading ~64 KiB every 3 ms: answered after ${ms.toFixed(0)} ms (write_timeout 300)`);
    fake.throttle(0);
    assert.deepEqual(replies, keys.map(() => 'OK'), 'every SET answered by the backend, none cut off');
    assert.ok(ms > 300, `the write took longer than write_timeout (${ms.toFixed(0)} ms), so the test shows something`);
  });

  it('a reply cut short by the backend closing: the pending requests get errors', async () => {
    let mode: 'cut' | 'ok' = 'cut';
    const { s } = await withFake((args) => (mode === 'ok' ? ordinary(args) : { data: '$100\r\npartial', close: true }));
    const c = await s.client();
    const keys = s.keysOn(1, 'cut', 3);
    const replies = await c.pipeline(keys.map((k) => ['GET', k]), 3000);
    for (const r of replies) assertErr(r, 'ERR', 'GET cut short');
    mode = 'ok';
    await waitFor(async () => (await c.call('GET', keys[0])) === fakeValue(keys[0]), 5000, 'the fake backend to serve again');
  });
});
