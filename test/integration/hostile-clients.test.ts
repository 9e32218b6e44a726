/**
 * Hostile clients against the standalone proxy (real redis-servers behind it): huge announced
 * lengths, random garbage (fast-check), deep nesting, a client that pipelines large replies and
 * never reads, connection churn, half-written requests. Meanwhile a well-behaved "witness" client
 * keeps doing SET/GET round trips and must get every answer right; the process (the proxy runs
 * in this one) must survive, and its memory stay under a generous bound and come back.
 *
 * Also: a fast-check property of a whole session (random pipelines of valid commands, cut into
 * random chunks, answered byte for byte as redis-server answers them), and hostile backends (a
 * fake redis-server of ours: deep nesting, huge bulks, pushes, unsolicited replies, garbage
 * mid-pipeline) that must neither crash the proxy nor get a reply to the wrong client.
 * (test/integration/proxy-faults.test.ts covers extra, late, garbage and truncated replies one
 * request at a time.)
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.js';
import { Ketama } from '../../src/routing/ketama.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { encodeCmd, parseResp, Raw, RespErr, sleep, type Resp } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const MB = 1024 * 1024;

// a full collection when the test wants memory to come back (the proxy runs in this process)
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

// ---------------------------------------------------------------------------------------------
// helpers

/** A client that keeps doing SET/GET round trips on keys of its own; every answer must be right. */
class Witness {
  rounds = 0;
  readonly wrong: string[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  private constructor(
    private readonly raw: Raw,
    name: string,
    private readonly keyOf: (i: number) => string,
  ) {
    this.loop = this.run(name);
  }

  /** `keyOf(i)`: the key of round i (default `witness:<name>:<i % 64>`, over every backend) */
  static async start(port: number, name: string, keyOf?: (i: number) => string): Promise<Witness> {
    return new Witness(await Raw.connect(port), name, keyOf ?? ((i) => `witness:${name}:${i % 64}`));
  }

  private async run(name: string): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const key = this.keyOf(i);
      const value = `${name}-${i}-${'x'.repeat(i % 97)}`;
      try {
        const set = await this.raw.call('SET', key, value);
        const got = await this.raw.call('GET', key);
        if (set !== 'OK') this.wrong.push(`SET ${key}: ${show(set)}`);
        if (got !== value) this.wrong.push(`GET ${key}: ${show(got)}, want ${value}`);
      } catch (err) {
        this.wrong.push(`round ${i}: ${(err as Error).message}`);
        return; // a timeout or a closed connection: no point going on
      }
      this.rounds++;
      if (i % 8 === 7) await sleep(1); // leave the machine to the others now and then
    }
  }

  /** stops the loop; asserts every answer was right and that it made progress */
  async stop(atLeast = 5): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.raw.close();
    assert.deepEqual(this.wrong, [], 'the witness got every answer right');
    assert.ok(this.rounds >= atLeast, `the witness made progress (${this.rounds} rounds)`);
  }
}

const show = (r: Resp): string => (r instanceof RespErr ? `-${r.message}` : JSON.stringify(r));

/** A raw socket for hostile bytes: collects what the proxy sends and whether it closed. */
class Hostile {
  data: Buffer[] = [];
  bytes = 0;
  closed = false;
  readonly closedP: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.data.push(chunk);
      this.bytes += chunk.length;
    });
    this.closedP = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        resolve();
      }),
    );
  }

  static connect(port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<Hostile> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: opts.allowHalfOpen ?? false });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timed out'));
      }, 3000);
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        s.setNoDelay(true); // small writes go out as they are: the proxy sees requests cut where the test cut them
        resolve(new Hostile(s));
      });
    });
  }

  get received(): Buffer {
    return Buffer.concat(this.data);
  }

  /** every complete reply received, parsed (throws on bytes that are not RESP) */
  replies(): Resp[] {
    const buf = this.received;
    const out: Resp[] = [];
    let p = 0;
    for (;;) {
      const r = parseResp(buf, p);
      if (r === null) break;
      out.push(r[0]);
      p = r[1];
    }
    assert.equal(p, buf.length, `the proxy sent only whole replies: ${JSON.stringify(buf.toString('latin1', p, p + 60))}`);
    return out;
  }

  /** resolves once the proxy closed the connection; rejects after `ms` */
  async waitClosed(ms = 3000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closedP,
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the proxy did not close the connection within ${ms} ms (received ${JSON.stringify(this.received.toString('latin1', 0, 200))})`)), ms);
      }),
    ]);
    clearTimeout(timer);
  }

  write(data: Buffer | string): boolean {
    return this.socket.write(data);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** a field of the proxy's INFO */
async function infoField(port: number, field: string): Promise<number> {
  const c = await Raw.connect(port);
  try {
    const info = await c.call('INFO');
    assert.equal(typeof info, 'string', show(info));
    const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(info as string);
    assert.ok(m, `INFO has ${field}`);
    return Number(m[1]);
  } finally {
    c.close();
  }
}

/** connections a redis-server has, besides the one asking */
async function backendClients(redis: RedisProc): Promise<number> {
  const c = await Raw.connect(redis.port);
  try {
    const list = await c.call('CLIENT', 'LIST');
    return String(list).split('\n').filter((l) => l.trim() !== '').length - 1;
  } finally {
    c.close();
  }
}

/** samples memory every 20 ms while it runs; `peak` is the largest RSS seen */
class MemoryWatch {
  peakRss = 0;
  peakBuffers = 0;
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.sample();
    this.timer = setInterval(() => this.sample(), 20);
  }

  sample(): NodeJS.MemoryUsage {
    const m = process.memoryUsage();
    this.peakRss = Math.max(this.peakRss, m.rss);
    this.peakBuffers = Math.max(this.peakBuffers, m.arrayBuffers);
    return m;
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }
}

/** memory after a full collection */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage();
}

const mb = (n: number): string => `${(n / MB).toFixed(1)} MB`;

/** how many times the redis-servers have executed `command` (INFO commandstats) */
async function calls(servers: RedisProc[], command: string): Promise<number> {
  let total = 0;
  for (const redis of servers) total += await callsOn(redis, command);
  return total;
}

async function callsOn(redis: RedisProc, command: string): Promise<number> {
  const c = await Raw.connect(redis.port);
  try {
    const info = String(await c.call('INFO', 'commandstats'));
    return Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  } finally {
    c.close();
  }
}

/** asserts `replies` end with exactly one `-ERR Protocol error...` and that it is the last reply */
function assertProtocolErrorLast(replies: Resp[], what: string): void {
  const errs = replies.map((r, i) => [r, i] as const).filter(([r]) => r instanceof RespErr && r.message.startsWith('ERR Protocol error'));
  assert.equal(errs.length, 1, `${what}: one protocol error in ${JSON.stringify(replies).slice(0, 300)}`);
  assert.equal(errs[0][1], replies.length - 1, `${what}: the protocol error is the last reply`);
}

// ---------------------------------------------------------------------------------------------

describe('hostile clients', { timeout: 180_000 }, () => {
  let backends: RedisProc[] = [];
  let reference: RedisProc;
  let proxy: RunningProxy;
  let port = 0;
  /** connected_clients with nobody but the one asking */
  let baseClients = 0;
  /** connections each backend has from the proxy at rest */
  let baseBackendClients: number[] = [];

  before(async () => {
    [backends, reference] = await Promise.all([Promise.all([startRedis(), startRedis()]), startRedis()]);
    const toml = [
      '[[clusters]]',
      'name = "hostile"',
      'listen_addr = "127.0.0.1:0"',
      'cache_type = "redis"',
      'thread = 1',
      'read_timeout = 3000',
      `servers = [${backends.map((b, i) => `"127.0.0.1:${b.port}:1 b${i}"`).join(', ')}]`,
    ].join('\n');
    const { config } = parseConfig(toml, 'hostile.toml');
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    port = proxy.listeners[0].port;
    // both backend connections up before anything is measured
    const c = await Raw.connect(port);
    await waitFor(async () => (await c.pipeline(['a', 'b', 'c', 'd', 'e', 'f'].map((k) => ['SET', `warm:${k}`, '1']))).every((r) => r === 'OK'), 5000, 'the backends to answer');
    c.close();
    await c.closedP;
    await waitFor(async () => (await infoField(port, 'connected_clients')) === 1, 3000, 'the warm-up client to be gone');
    baseClients = 1;
    baseBackendClients = await Promise.all(backends.map(backendClients));
  });

  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  /** every client gone (but the one asking), and the proxy's backend connections as at rest */
  const assertReleased = async (what: string): Promise<void> => {
    await waitFor(async () => (await infoField(port, 'connected_clients')) === baseClients, 5000, `connected_clients back to ${baseClients} after ${what}`);
    const now = await Promise.all(backends.map(backendClients));
    assert.deepEqual(now, baseBackendClients, `the proxy's backend connections after ${what} (at rest: ${baseBackendClients.join(', ')})`);
  };

  it('huge announced lengths: a protocol error, the connection closed, no memory committed', async () => {
    const witness = await Witness.start(port, 'huge');
    const base = await settledMemory();
    const watch = new MemoryWatch();
    const cases: Array<[string, string | Buffer, RegExp]> = [
      ['a multibulk of 2^31-1 arguments', '*2147483647\r\n', /^ERR Protocol error: invalid multibulk length/],
      ['a bulk of 2^31-1 bytes', '*1\r\n$2147483647\r\n', /^ERR Protocol error: invalid bulk length/],
      ['a SET whose value is one byte over 512 MB', '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n', /^ERR Protocol error: invalid bulk length/],
      ['a 40-digit multibulk length', `*${'9'.repeat(40)}\r\n`, /^ERR Protocol error: invalid multibulk length/],
      ['a 70000-digit bulk length', `*1\r\n$${'9'.repeat(70_000)}\r\n`, /^ERR Protocol error: invalid bulk length/],
      ['a negative bulk length', '*1\r\n$-5\r\n', /^ERR Protocol error: invalid bulk length/],
      ['an inline line of 100 KB without a newline', 'GET ' + 'k'.repeat(100_000), /^ERR Protocol error: too big inline request/],
    ];
    for (const [what, bytes, want] of cases) {
      const h = await Hostile.connect(port);
      // an ordinary request first: it is answered before the error
      h.write(Buffer.concat([encodeCmd(['PING']), Buffer.from(bytes as string, 'latin1')]));
      await h.waitClosed(3000);
      const replies = h.replies();
      assert.equal(replies[0], 'PONG', `${what}: the request before it is answered`);
      assert.equal(replies.length, 2, `${what}: ${JSON.stringify(replies)}`);
      assert.ok(replies[1] instanceof RespErr && want.test(replies[1].message), `${what}: ${show(replies[1])}`);
    }
    // `$2147483647` on its own line is an inline command named "$2147483647", as for Redis
    {
      const h = await Hostile.connect(port);
      h.write('$2147483647\r\n');
      await waitFor(() => h.bytes > 0, 3000, 'the reply to an inline "$2147483647"');
      const [r] = h.replies();
      assert.ok(r instanceof RespErr && r.message.startsWith('ERR unknown command'), show(r));
      assert.equal(h.closed, false, 'an unknown command keeps the connection');
      h.destroy();
    }
    // the largest allowed announcement, with a little of it sent: nothing is committed ahead
    const h = await Hostile.connect(port);
    h.write('*3\r\n$3\r\nSET\r\n$7\r\nhuge:ok\r\n$536870912\r\n' + 'v'.repeat(1000));
    await sleep(300);
    assert.equal(h.closed, false, 'a 512 MB bulk is within the limit: the connection waits for it');
    h.destroy();
    watch.stop();
    await witness.stop();
    assert.ok(watch.peakRss - base.rss < 64 * MB, `RSS grew by ${mb(watch.peakRss - base.rss)}`);
    assert.ok(watch.peakBuffers - base.arrayBuffers < 16 * MB, `buffers grew by ${mb(watch.peakBuffers - base.arrayBuffers)}`);
    const c = await Raw.connect(port);
    assert.equal(await c.call('EXISTS', 'k', 'huge:ok'), 0, 'none of the refused or unfinished SETs ran');
    c.close();
    await assertReleased('the huge announcements');
  });

  /**
   * A protocol error, then the client keeps its side of the connection open and goes on writing:
   * resolves true when the server closed the connection for good within `ms` (a write then fails).
   */
  const closedAfterProtocolError = async (p: number, ms: number): Promise<boolean> => {
    const h = await Hostile.connect(p, { allowHalfOpen: true });
    try {
      h.write('*1\r\n$-5\r\n');
      await waitFor(() => h.bytes > 0, 3000, 'the protocol error');
      assertProtocolErrorLast(h.replies(), 'a negative bulk length');
      const deadline = performance.now() + ms;
      while (!h.closed && performance.now() < deadline) {
        h.write('x'.repeat(1000));
        await sleep(20);
      }
      return h.closed;
    } finally {
      h.destroy();
    }
  };

  it('redis-server closes a client for good after a protocol error, even one that keeps its side open', async () => {
    assert.equal(await closedAfterProtocolError(reference.port, 2000), true);
  });

  it('a client that gets a protocol error and keeps its side open is closed all the same', async () => {
    const before = await infoField(port, 'connected_clients');
    const h = await Hostile.connect(port, { allowHalfOpen: true });
    h.write('*1\r\n$-5\r\n');
    await waitFor(() => h.bytes > 0, 3000, 'the protocol error');
    try {
      await waitFor(async () => (await infoField(port, 'connected_clients')) === before, 2000, 'the proxy to drop the session of the client that broke the protocol');
    } finally {
      h.destroy();
    }
    assert.equal(await closedAfterProtocolError(port, 2000), true, 'the proxy closed the connection for good (writes fail)');
  });

  it('random garbage (fast-check): an error or nothing, never a crash; the witness is unaffected', async () => {
    const witness = await Witness.start(port, 'garbage');
    const base = await settledMemory();
    const safe = fc.constantFrom('GET', 'SET', 'INCR', 'DEL', 'MGET', 'PING', 'ECHO', 'EXISTS', 'APPEND');
    const validish = fc.array(fc.tuple(safe, fc.array(fc.stringMatching(/^[a-z0-9]{0,6}$/), { maxLength: 3 })), { minLength: 1, maxLength: 6 }).map((cmds) =>
      Buffer.concat(cmds.map(([name, args]) => encodeCmd([name, ...args.map((a) => `garbage:${a}`)]))),
    );
    // valid requests with some bytes overwritten: reaches the decoder's deeper states
    const mutated = fc.tuple(validish, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })).map(([buf, flips]) => {
      const out = Buffer.from(buf);
      for (const [at, byte] of flips) out[at % out.length] = byte;
      return out;
    });
    const prefixed = fc.tuple(fc.constantFrom('*', '*1\r\n$', '*2\r\n$3\r\nGET\r\n$', '$', '*-', '*0\r\n', '\r\n', '"', "'"), fc.uint8Array({ maxLength: 64 })).map(([p, tail]) =>
      Buffer.concat([Buffer.from(p, 'latin1'), Buffer.from(tail)]),
    );
    const garbage = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 600 }).map((a) => Buffer.from(a)), mutated, prefixed);
    let errored = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(garbage, fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => {
        runs++;
        const h = await Hostile.connect(port);
        const points = [...new Set(cuts.map((c) => c % bytes.length))].sort((a, b) => a - b);
        let prev = 0;
        for (const p of [...points, bytes.length]) {
          if (p > prev) h.write(bytes.subarray(prev, p));
          prev = p;
          await sleep(1);
        }
        // half-close: the proxy answers what it read, then closes
        h.socket.end();
        await h.waitClosed(5000);
        const replies = h.replies(); // whole replies only, valid RESP
        const protocolErrors = replies.filter((r) => r instanceof RespErr && r.message.startsWith('ERR Protocol error'));
        if (protocolErrors.length > 0) {
          errored++;
          assertProtocolErrorLast(replies, `garbage ${bytes.toString('hex').slice(0, 80)}`);
        }
      }),
      { numRuns: 50 },
    );
    await witness.stop();
    const now = await settledMemory();
    assert.ok(now.rss - base.rss < 64 * MB, `RSS grew by ${mb(now.rss - base.rss)} over ${runs} garbage connections`);
    assert.ok(errored > 0, 'some garbage was a protocol error');
    await assertReleased('the garbage');
  });

  it('deep nesting from a client (*1 x 100000): a protocol error, the connection closed, no crash', async () => {
    const witness = await Witness.start(port, 'nesting');
    const base = await settledMemory();
    for (const [what, bytes] of [
      ['*1 x 100000', '*1\r\n'.repeat(100_000)],
      ['*1 x 100000, then a bulk', '*1\r\n'.repeat(100_000) + '$4\r\nPING\r\n'],
      ['*2 x 50000', '*2\r\n'.repeat(50_000)],
    ] as const) {
      const h = await Hostile.connect(port);
      h.write(bytes);
      await h.waitClosed(3000);
      const replies = h.replies();
      assert.equal(replies.length, 1, `${what}: ${JSON.stringify(replies)}`);
      assert.ok(replies[0] instanceof RespErr && /^ERR Protocol error: expected '\$', got '\*'/.test(replies[0].message), `${what}: ${show(replies[0])}`);
    }
    await witness.stop();
    const now = process.memoryUsage();
    assert.ok(now.rss - base.rss < 64 * MB, `RSS grew by ${mb(now.rss - base.rss)}`);
    await assertReleased('deep nesting');
  });

  it('a client that pipelines GETs of a 1 MB value and never reads: the proxy stops reading it; memory stays bounded and comes back', async (t) => {
    const setter = await Raw.connect(port);
    assert.equal(await setter.call('SET', 'big', Buffer.alloc(MB, 0x61)), 'OK');
    setter.close();
    const witness = await Witness.start(port, 'nonreader');
    const callsBefore = await calls(backends, 'getrange');
    const base = await settledMemory();
    const watch = new MemoryWatch();
    const BOUND = 300 * MB;
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.pause(); // never read: the replies fill the kernel's buffers, then the proxy's
    const batch = Buffer.concat(Array.from({ length: 10 }, () => encodeCmd(['GETRANGE', 'big', '0', '-1'])));
    let sent = 0;
    let executed = 0;
    let still = 0; // checks in a row with no GET executed
    // bounded: at most 4000 GETs (4 GB of replies), in batches as a pipelining client sends
    // them; stop once the backends stopped executing them (the proxy no longer reads)
    while (sent < 4000 && still < 3) {
      s.write(batch);
      sent += 10;
      await sleep(5);
      if (sent % 100 === 0) {
        const n = (await calls(backends, 'getrange')) - callsBefore;
        still = n === executed ? still + 1 : 0;
        executed = n;
      }
      if (watch.sample().rss - base.rss > BOUND) break; // fails below; stop feeding it
    }
    await sleep(200);
    watch.stop();
    const executedAtEnd = (await calls(backends, 'getrange')) - callsBefore;
    const grew = watch.peakRss - base.rss;
    s.destroy();
    await witness.stop();
    const back = await settledMemory();
    t.diagnostic(`sent ${sent}, executed ${executedAtEnd}, rss +${mb(grew)}, buffers peak +${mb(watch.peakBuffers - base.arrayBuffers)}, after: rss +${mb(back.rss - base.rss)} buffers +${mb(back.arrayBuffers - base.arrayBuffers)}`);
    assert.ok(executedAtEnd < sent / 2, `the proxy stopped reading the client: ${executedAtEnd} GETs executed of ${sent} sent`);
    assert.ok(grew < BOUND, `RSS grew by ${mb(grew)} (bound ${mb(BOUND)}) with ${executedAtEnd} GETs of 1 MB executed for a client that does not read`);
    assert.ok(back.arrayBuffers - base.arrayBuffers < 32 * MB, `buffers ${mb(back.arrayBuffers - base.arrayBuffers)} above the start once the client is gone (peak ${mb(watch.peakBuffers - base.arrayBuffers)})`);
    assert.ok(back.rss - base.rss < BOUND, `RSS ${mb(back.rss - base.rss)} above the start once the client is gone`);
    await assertReleased('the client that never reads');
  });

  it('a client that never reads and sends its whole pipeline in one write: the witness goes on, and memory comes back when it leaves', async (t) => {
    const setter = await Raw.connect(port);
    assert.equal(await setter.call('SET', 'mid', Buffer.alloc(64 * 1024, 0x62)), 'OK');
    setter.close();
    const witness = await Witness.start(port, 'burst');
    const before = await calls(backends, 'getrange');
    const base = await settledMemory();
    const watch = new MemoryWatch();
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.pause();
    // 2000 requests in one write of 58 KB: 128 MB of replies owed to a client that reads none of them
    const N = 2000;
    s.write(Buffer.concat(Array.from({ length: N }, () => encodeCmd(['GETRANGE', 'mid', '0', '-1']))));
    let executed = 0;
    await waitFor(async () => {
      const n = (await calls(backends, 'getrange')) - before;
      const settled = n === executed;
      executed = n;
      return settled && n > 0;
    }, 10_000, 'the backends to stop executing GETRANGEs');
    await sleep(200);
    watch.stop();
    s.destroy();
    await witness.stop();
    const back = await settledMemory();
    t.diagnostic(`executed ${executed} of ${N}; buffers peak +${mb(watch.peakBuffers - base.arrayBuffers)}, rss peak +${mb(watch.peakRss - base.rss)}; after: buffers +${mb(back.arrayBuffers - base.arrayBuffers)}`);
    assert.ok(back.arrayBuffers - base.arrayBuffers < 32 * MB, `buffers back to ${mb(back.arrayBuffers - base.arrayBuffers)} above the start once the client is gone`);
    // (what was buffered meanwhile is not bounded: every request read before the first reply is
    // sent on, as redis-server runs them all for a client with no output-buffer limit)
    assert.ok(watch.peakRss - base.rss < 600 * MB, `RSS grew by ${mb(watch.peakRss - base.rss)}`);
    await assertReleased('the bursting client that never reads');
  });

  it('connection churn: 2000 connections opened and closed, some mid-request; the proxy keeps serving and releases them all', async (t) => {
    const witness = await Witness.start(port, 'churn');
    const base = await settledMemory();
    const watch = new MemoryWatch();
    let answered = 0;
    const one = async (i: number): Promise<void> => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
      await new Promise<void>((resolve) => {
        s.once('connect', () => resolve());
        s.once('close', () => resolve());
      });
      switch (i % 6) {
        case 0: // connect and leave
          s.destroy();
          break;
        case 1: // a whole request and a half-close at once (the reply is read and dropped)
          s.end(encodeCmd(['SET', `churn:${i}`, 'v']));
          s.resume();
          break;
        case 2: // half a request, then leave
          s.write('*3\r\n$3\r\nSET\r\n$8\r\nchurn:ha\r\n$10\r\nabc');
          s.destroy();
          break;
        case 3: // a request and its reply, then a half-close
          s.write(encodeCmd(['GET', `churn:${i - 2}`]));
          await new Promise<void>((resolve) => {
            s.once('data', () => {
              answered++;
              resolve();
            });
            s.once('close', () => resolve());
          });
          s.end();
          break;
        case 4: // a request on a slow backend path (MGET over both backends), then leave at once
          s.write(encodeCmd(['MGET', 'churn:1', 'churn:7', 'churn:13', 'churn:19']));
          s.destroy();
          break;
        default: // a half-close right away
          s.end();
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, 3000)))]);
      clearTimeout(timer);
      s.destroy();
    };
    const TOTAL = 2000;
    const BATCH = 50;
    for (let b = 0; b < TOTAL; b += BATCH) await Promise.all(Array.from({ length: BATCH }, (_, j) => one(b + j)));
    watch.stop();
    await witness.stop();
    t.diagnostic(`RSS peak +${mb(watch.peakRss - base.rss)}, buffers peak +${mb(watch.peakBuffers - base.arrayBuffers)}`);
    assert.ok(answered > 0, 'clients that waited got their replies');
    assert.ok(watch.peakRss - base.rss < 128 * MB, `RSS grew by ${mb(watch.peakRss - base.rss)} over ${TOTAL} connections`);
    await assertReleased(`${TOTAL} connections`);
    const total = await infoField(port, 'total_connections_received');
    assert.ok(total >= TOTAL, `total_connections_received ${total}`);
  });

  it('200 clients each send half a request and stall: others are unaffected; when they close, everything is released', async () => {
    const witness = await Witness.start(port, 'stall');
    const base = await settledMemory();
    const cuts = ['*3\r\n$3\r\nSET\r\n$9\r\nhalf:NNNN\r\n$10\r\nabc', '*3\r\n$3\r\nSE', '*3\r', '*3\r\n$3\r\nSET\r\n$9\r\nhalf:NNNN\r\n$1', 'SET half:NNNN inline-no-newline', '*3\r\n$3\r\nSET\r\n$9\r\nhalf:NNNN\r\n$10\r\n0123456789\r'];
    const stalled: Hostile[] = [];
    for (let i = 0; i < 200; i++) {
      const h = await Hostile.connect(port);
      h.write(cuts[i % cuts.length].replace('NNNN', String(i).padStart(4, '0')));
      stalled.push(h);
    }
    await waitFor(async () => (await infoField(port, 'connected_clients')) === baseClients + 201, 5000, 'the 200 stalled clients and the witness to be counted');
    await sleep(500);
    assert.ok(stalled.every((h) => !h.closed && h.bytes === 0), 'the stalled clients wait, unanswered');
    // some of them finish their request: its parse state was kept
    const finishers = [0, 6, 12, 18, 24, 30];
    for (const i of finishers) stalled[i].write(`${'x'.repeat(7)}\r\n`);
    await waitFor(() => finishers.every((i) => stalled[i].bytes > 0), 3000, 'the finished requests to be answered');
    for (const i of finishers) assert.deepEqual(stalled[i].replies(), ['OK']);
    const c = await Raw.connect(port);
    assert.deepEqual(await c.call('MGET', 'half:0000', 'half:0006', 'half:0001'), ['abcxxxxxxx', 'abcxxxxxxx', null]);
    c.close();
    for (const h of stalled) h.destroy();
    await witness.stop();
    const now = await settledMemory();
    assert.ok(now.rss - base.rss < 64 * MB, `RSS grew by ${mb(now.rss - base.rss)}`);
    await assertReleased('200 stalled clients');
    const keys = await Raw.connect(port);
    const found = (await keys.call('KEYS', 'half:*')) as string[];
    keys.close();
    assert.deepEqual(found.sort(), finishers.map((i) => `half:${String(i).padStart(4, '0')}`).sort(), 'only the finished requests reached a backend');
  });

  it('session property (fast-check): random pipelines cut anywhere get the same reply bytes from the proxy as from redis-server', { timeout: 150_000 }, async () => {
    const ring = new Ketama([{ name: 'b0', weight: 1 }, { name: 'b1', weight: 1 }]);
    const onBackend = (b: number) => (k: string): boolean => ring.serverFor(Buffer.from(k, 'latin1')) === b;
    /** `n` names `prefix<i>` of which `per` are on each backend */
    const spread = (prefix: string, per: number): string[][] => {
      const out: string[][] = [[], []];
      for (let i = 0; (out[0].length < per || out[1].length < per) && i < 10_000; i++) {
        const k = `${prefix}${i}`;
        const b = ring.serverFor(Buffer.from(k, 'latin1'));
        if (out[b].length < per) out[b].push(k);
      }
      assert.ok(out.every((o) => o.length === per), `${per} ${prefix} keys on each backend`);
      return out;
    };
    // three string keys on each backend: MGET, DEL and EXISTS are split and merged by the proxy
    const KEYS = spread('p:', 3).flat();
    // two list keys on each backend, for the list and blocking commands
    const LISTS = spread('l:', 2);
    // the transaction's keys: one hash tag, and all on one backend (this proxy has no hash_tag
    // configured, so they are picked on b0 by the whole key), as a transaction stays on one server
    const TX: string[] = [];
    for (let i = 0; TX.length < 3 && i < 10_000; i++) if (onBackend(0)(`{tx}${i}`)) TX.push(`{tx}${i}`);
    assert.equal(TX.length, 3);
    const ALL = [...KEYS, ...LISTS.flat(), ...TX];
    /** keys a multi-key list/blocking command may name together: one server's */
    const groups = [LISTS[0], LISTS[1], TX, [LISTS[0][0], TX[0]].filter(onBackend(0))];

    const key = fc.constantFrom(...KEYS, ...TX);
    const anyKey = fc.constantFrom(...ALL);
    const listKey = fc.constantFrom(...LISTS.flat(), ...TX);
    const value = fc.oneof(fc.integer({ min: -5, max: 50 }).map(String), fc.stringMatching(/^[a-z]{0,5}$/), fc.constant(''));
    const timeout = fc.constantFrom('0.01', '0.02', '0.03', '0.05');
    const side = fc.constantFrom('LEFT', 'RIGHT');
    const index = fc.integer({ min: -3, max: 3 });
    /** 1 or 2 keys of one server (from `pool`, restricted to a group) */
    const sameServer = (pool: string[][]) => fc.constantFrom(...pool).chain((g) => fc.uniqueArray(fc.constantFrom(...g), { minLength: 1, maxLength: 2 }));
    /** commands on one key, or keys of one server, drawn by `k` and `ks` */
    const keyed = (k: fc.Arbitrary<string>, lk: fc.Arbitrary<string>, ks: fc.Arbitrary<string[]>, lists: string[][]): Array<fc.Arbitrary<string[]>> => [
      fc.tuple(k, value).map(([a, v]) => ['SET', a, v]),
      k.map((a) => ['GET', a]),
      k.map((a) => ['INCR', a]),
      fc.tuple(k, value).map(([a, v]) => ['APPEND', a, v]),
      fc.tuple(lk, fc.array(value, { minLength: 1, maxLength: 3 })).map(([a, vs]) => ['LPUSH', a, ...vs]),
      fc.tuple(lk, fc.array(value, { minLength: 1, maxLength: 3 })).map(([a, vs]) => ['RPUSH', a, ...vs]),
      lk.map((a) => ['LLEN', a]),
      fc.tuple(lk, index, index).map(([a, from, to]) => ['LRANGE', a, String(from), String(to)]),
      fc.tuple(ks, timeout).map(([as, t]) => ['BLPOP', ...as, t]),
      fc.tuple(ks, timeout).map(([as, t]) => ['BRPOP', ...as, t]),
      fc.tuple(sameServer(lists), side, side, timeout).map(([as, from, to, t]) => ['BLMOVE', as[0], as[as.length - 1], from, to, t]),
    ];
    const plain = fc.oneof(
      ...keyed(key, listKey, sameServer(groups), groups),
      fc.array(anyKey, { minLength: 1, maxLength: 4 }).map((ks) => ['DEL', ...ks]),
      fc.array(anyKey, { minLength: 1, maxLength: 5 }).map((ks) => ['MGET', ...ks]),
      fc.array(anyKey, { minLength: 1, maxLength: 3 }).map((ks) => ['EXISTS', ...ks]),
      fc.uniqueArray(fc.constantFrom(...TX), { minLength: 1, maxLength: 2 }).map((ks) => ['WATCH', ...ks]),
      fc.constant(['UNWATCH']),
    );
    // inside MULTI: commands on the transaction's keys only (blocking ones do not block there)
    const txKey = fc.constantFrom(...TX);
    const queued = fc.oneof(...keyed(txKey, txKey, fc.uniqueArray(txKey, { minLength: 1, maxLength: 2 }), [TX]), fc.constant(['PING']));
    const watch = fc.uniqueArray(fc.constantFrom(...TX), { minLength: 1, maxLength: 2 }).map((ks) => ['WATCH', ...ks]);
    /** maybe WATCH and maybe commands after it, then MULTI, 0 to 5 commands, EXEC or DISCARD */
    const transaction = fc
      .tuple(fc.option(fc.tuple(watch, fc.array(plain, { maxLength: 2 }))), fc.array(queued, { maxLength: 5 }), fc.constantFrom('EXEC', 'EXEC', 'DISCARD'))
      .map(([watched, body, end]) => [...(watched === null ? [] : [watched[0], ...watched[1]]), ['MULTI'], ...body, [end]]);
    const segment = fc.oneof({ weight: 6, arbitrary: plain.map((c) => [c]) }, { weight: 1, arbitrary: transaction });
    const pipeline = fc.array(segment, { minLength: 1, maxLength: 25 }).map((segments) => segments.flat().slice(0, 60));
    /** the reply bytes to `chunks`, read until `count` whole replies arrived */
    const exchange = async (p: number, chunks: Buffer[], count: number): Promise<Buffer> => {
      const h = await Hostile.connect(p);
      try {
        for (const chunk of chunks) {
          h.write(chunk);
          await new Promise((r) => setImmediate(r));
        }
        await waitFor(() => {
          const buf = h.received;
          let at = 0;
          for (let n = 0; n < count; n++) {
            const r = parseResp(buf, at);
            if (r === null) return false;
            at = r[1];
          }
          return true;
        }, 5000, `${count} replies`);
        await sleep(5); // nothing more should come
        return h.received;
      } finally {
        h.destroy();
      }
    };
    const direct = await Promise.all([...backends, reference].map((b) => Raw.connect(b.port)));
    try {
      await fc.assert(
        fc.asyncProperty(pipeline.chain((cmds) => fc.tuple(fc.constant(cmds), fc.array(fc.boolean(), { minLength: cmds.length, maxLength: cmds.length }))), fc.array(fc.nat(), { maxLength: 10 }), async ([cmds, inlines], offsets) => {
          await Promise.all(direct.map((d) => d.call('DEL', ...ALL)));
          // RESP, or an inline line when no argument is empty (an empty one would vanish)
          const bytes = Buffer.concat(cmds.map((args, i) => (inlines[i] && args.every((a) => a !== '') ? Buffer.from(args.join(' ') + '\r\n', 'latin1') : encodeCmd(args))));
          const points = [...new Set(offsets.map((o) => o % bytes.length))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let prev = 0;
          for (const p of [...points, bytes.length]) {
            if (p > prev) chunks.push(bytes.subarray(prev, p));
            prev = p;
          }
          const viaProxy = await exchange(port, chunks, cmds.length);
          const viaRedis = await exchange(reference.port, chunks, cmds.length);
          assert.equal(viaProxy.toString('latin1'), viaRedis.toString('latin1'), `for ${JSON.stringify(cmds)}`);
        }),
        { numRuns: 40 },
      );
    } finally {
      for (const d of direct) d.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// hostile backends: a fake redis-server (a net.Server of ours) behind the proxy, next to a real one

/** what the fake answers a request with (null: nothing) */
type Behaviour = (args: string[], n: number) => string | null;

class FakeRedis {
  connections = 0;
  closed = 0;
  requests = 0;
  /** written to every new connection before anything else (an unsolicited reply) */
  greeting: string | null = null;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    public behaviour: Behaviour,
  ) {}

  static start(behaviour: Behaviour): Promise<FakeRedis> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      let fake: FakeRedis;
      server.on('connection', (sock) => {
        fake.connections++;
        fake.sockets.add(sock);
        sock.on('error', () => undefined);
        sock.once('close', () => {
          fake.closed++;
          fake.sockets.delete(sock);
        });
        if (fake.greeting !== null) sock.write(fake.greeting);
        let buf = Buffer.alloc(0);
        sock.on('data', (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          let p = 0;
          const out: string[] = [];
          for (;;) {
            const r = parseResp(buf, p);
            if (r === null) break;
            p = r[1];
            const answer = fake.behaviour(r[0] as string[], fake.requests++);
            if (answer !== null) out.push(answer);
          }
          buf = buf.subarray(p);
          if (out.length > 0) sock.write(out.join(''));
        });
      });
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        fake = new FakeRedis(server, (server.address() as net.AddressInfo).port, behaviour);
        resolve(fake);
      });
    });
  }

  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const bulk = (s: string): string => `$${Buffer.byteLength(s, 'latin1')}\r\n${s}\r\n`;
/** the fake's value of a key: derived from its name, so a reply for another key shows */
const fakeValue = (key: string): string => `val:${key}`;
const ordinary: Behaviour = (args) => {
  const cmd = String(args[0]).toUpperCase();
  if (cmd === 'GET') return bulk(fakeValue(String(args[1])));
  if (cmd === 'PING') return '+PONG\r\n';
  return '+OK\r\n';
};

describe('hostile backends', { timeout: 120_000 }, () => {
  let real: RedisProc;
  let fake: FakeRedis;
  let proxy: RunningProxy;
  let port = 0;
  const realKeys: string[] = [];
  const fakeKeys: string[] = [];
  const DEPTH = 32;

  before(async () => {
    [real, fake] = await Promise.all([startRedis(), FakeRedis.start(ordinary)]);
    const toml = [
      '[[clusters]]',
      'name = "hostile-backends"',
      'listen_addr = "127.0.0.1:0"',
      'cache_type = "redis"',
      'thread = 1',
      'read_timeout = 1000',
      `servers = ["127.0.0.1:${real.port}:1 real", "127.0.0.1:${fake.port}:1 fake"]`,
      '[clusters.limits]',
      `max_reply_depth = ${DEPTH}`,
    ].join('\n');
    const { config } = parseConfig(toml, 'hostile-backends.toml');
    proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    port = proxy.listeners[0].port;
    const ring = new Ketama([{ name: 'real', weight: 1 }, { name: 'fake', weight: 1 }]);
    for (let i = 0; realKeys.length < 64 || fakeKeys.length < 64; i++) {
      const k = `${i}:hb`;
      (ring.serverFor(Buffer.from(k)) === 0 ? realKeys : fakeKeys).push(k);
    }
    await waitFor(() => fake.connections > 0, 3000, 'the proxy to connect to the fake backend');
  });

  after(async () => {
    await proxy?.close();
    await fake?.stop();
    await stopAll();
  });

  /** the witness, on keys of the real backend only */
  const realWitness = (name: string): Promise<Witness> => Witness.start(port, name, (i) => realKeys[i % realKeys.length]);

  /** a GET on every fake key, one at a time: each reply is its key's value or an error, never another's */
  const sweep = async (c: Raw): Promise<{ right: number; errors: string[]; wrong: string[] }> => {
    const out = { right: 0, errors: [] as string[], wrong: [] as string[] };
    for (const k of fakeKeys.slice(0, 8)) {
      const r = await c.call('GET', k);
      if (r === fakeValue(k)) out.right++;
      else if (r instanceof RespErr) out.errors.push(r.message);
      else out.wrong.push(`${k}: ${show(r)}`);
    }
    return out;
  };

  /** until the fake backend serves again through the proxy */
  const servesAgain = async (c: Raw): Promise<void> => {
    await waitFor(async () => (await c.call('GET', fakeKeys[0])) === fakeValue(fakeKeys[0]), 5000, 'the fake backend to serve again');
    const s = await sweep(c);
    assert.deepEqual([s.wrong, s.errors], [[], []], 'every GET on the fake backend is right again');
  };

  it(`replies nested deeper than max_reply_depth (${DEPTH}), or 100000 deep, or announcing huge bulks: an error for that client, the connection replaced`, async () => {
    const witness = await realWitness('deep');
    const c = await Raw.connect(port);
    const base = await settledMemory();
    const cases: Array<[string, string, RegExp]> = [
      [`nested ${DEPTH + 1} deep`, '*1\r\n'.repeat(DEPTH + 1) + ':1\r\n', new RegExp(`nested deeper than ${DEPTH}`)],
      ['nested 100000 deep', '*1\r\n'.repeat(100_000) + ':1\r\n', new RegExp(`nested deeper than ${DEPTH}`)],
      ['maps nested 100000 deep', '%1\r\n+k\r\n'.repeat(100_000) + ':1\r\n', new RegExp(`nested deeper than ${DEPTH}`)],
      ['attributes nested 100000 deep', '|1\r\n+k\r\n'.repeat(100_000) + ':1\r\n', new RegExp(`nested deeper than ${DEPTH}`)],
      ['a bulk of 2^31-1 bytes', '$2147483647\r\n', /bulk too large/],
      ['a bulk one byte over 512 MB', '$536870913\r\n', /bulk too large/],
    ];
    for (const [what, reply, want] of cases) {
      const closedBefore = fake.closed;
      fake.behaviour = () => reply;
      const s = await sweep(c);
      assert.deepEqual(s.wrong, [], `${what}: never a wrong value`);
      assert.equal(s.errors.length, 8, `${what}: every GET got an error`);
      assert.ok(s.errors.every((m) => m.startsWith('ERR backend fake') && want.test(m)), `${what}: ${s.errors[0]}`);
      assert.ok(fake.closed > closedBefore, `${what}: the proxy closed the connection`);
      fake.behaviour = ordinary;
      await servesAgain(c);
    }
    // at the cap exactly, the reply is passed on byte for byte
    const atCap = '*1\r\n'.repeat(DEPTH) + ':1\r\n';
    fake.behaviour = () => atCap;
    const i = c.sendNoWait('GET', fakeKeys[0]);
    await c.waitReplies(i + 1);
    assert.equal(c.frames[i].toString('latin1'), atCap, `a reply ${DEPTH} deep is forwarded as it is`);
    fake.behaviour = ordinary;
    await witness.stop();
    const now = await settledMemory();
    assert.ok(now.rss - base.rss < 64 * MB, `RSS grew by ${mb(now.rss - base.rss)}`);
    assert.equal(await c.call('PING'), 'PONG');
    assert.equal(c.sentCount, c.replies.length, 'no stray reply reached the client');
    c.close();
  });

  it('push frames from a RESP2 backend answer no request: every client still gets its own reply', async () => {
    fake.behaviour = (args, n) => `>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n${bulk(`push-${n}`)}` + ordinary(args, n);
    try {
      const c = await Raw.connect(port);
      const s = await sweep(c);
      assert.deepEqual([s.wrong, s.errors, s.right], [[], [], 8]);
      const piped = await c.pipeline(fakeKeys.map((k) => ['GET', k]));
      assert.deepEqual(piped, fakeKeys.map(fakeValue));
      c.close();
    } finally {
      fake.behaviour = ordinary;
    }
  });

  /**
   * Makes the proxy open a new connection to the fake (garbage closes the current one), then GETs
   * fake keys for `ms`: returns how many connections the proxy opened meanwhile and any wrong value.
   */
  const whileGreeting = async (c: Raw, greeting: string, ms: number): Promise<{ opened: number; wrong: string[]; gets: number }> => {
    fake.greeting = greeting;
    try {
      fake.behaviour = () => '@garbage\r\n';
      assert.ok((await c.call('GET', fakeKeys[0])) instanceof RespErr);
      fake.behaviour = ordinary;
      const connectionsBefore = fake.connections;
      const t0 = performance.now();
      let gets = 0;
      const wrong: string[] = [];
      while (performance.now() - t0 < ms) {
        const k = fakeKeys[gets++ % fakeKeys.length];
        const r = await c.call('GET', k);
        if (!(r instanceof RespErr) && r !== fakeValue(k)) wrong.push(`${k}: ${show(r)}`);
        await sleep(5);
      }
      return { opened: fake.connections - connectionsBefore, wrong, gets };
    } finally {
      fake.greeting = null;
      fake.behaviour = ordinary;
    }
  };

  it('an unsolicited reply on every new connection, before any request: no client ever gets it; the proxy keeps serving', async () => {
    const witness = await realWitness('early');
    const c = await Raw.connect(port);
    const { wrong, gets } = await whileGreeting(c, '+EARLY\r\n', 500);
    assert.deepEqual(wrong, [], `no client got the unsolicited reply or another key's value (${gets} GETs)`);
    await servesAgain(c);
    await witness.stop();
    assert.equal(c.sentCount, c.replies.length, 'no stray reply reached the client');
    c.close();
  });

  it('a backend that sends an unsolicited reply on every new connection is not reconnected to in a tight loop', async () => {
    const c = await Raw.connect(port);
    try {
      const { opened } = await whileGreeting(c, '+EARLY\r\n', 1000);
      assert.ok(opened <= 25, `the proxy opened ${opened} connections in 1 s to a backend that greets each with an unsolicited reply`);
    } finally {
      await servesAgain(c);
      c.close();
    }
  });

  it('garbage in the middle of several clients\' pipelines: each gets its own values or errors, never another\'s', async () => {
    const witness = await realWitness('midgarbage');
    // every 37th request is answered with garbage: the connection then goes, with what was pending
    fake.behaviour = (args, n) => (n % 37 === 36 ? '?garbage\r\n' : ordinary(args, n));
    const clients = await Promise.all([0, 1, 2, 3].map(() => Raw.connect(port)));
    const tally = { right: 0, errors: 0, wrong: [] as string[] };
    try {
      for (let round = 0; round < 6; round++) {
        await Promise.all(
          clients.map(async (c, ci) => {
            const keys = fakeKeys.slice(ci * 16, ci * 16 + 16);
            const replies = await c.pipeline(keys.map((k) => ['GET', k]), 5000);
            replies.forEach((r, i) => {
              if (r === fakeValue(keys[i])) tally.right++;
              else if (r instanceof RespErr) tally.errors++;
              else tally.wrong.push(`${keys[i]}: ${show(r)}`);
            });
          }),
        );
        await sleep(20);
      }
    } finally {
      fake.behaviour = ordinary;
    }
    assert.deepEqual(tally.wrong, [], 'never another key\'s value');
    assert.ok(tally.errors > 0 && tally.right > 0, `some errors and some right values (${tally.right} right, ${tally.errors} errors)`);
    for (const c of clients) {
      await servesAgain(c);
      assert.equal(c.sentCount, c.replies.length, 'no stray reply reached a client');
      c.close();
    }
    await witness.stop();
  });

  it('a misbehaving fake backend replaced by a real redis-server on its address: requests succeed', async () => {
    // the fake stops; a real redis-server takes its port: the proxy reconnects to it by itself
    const fakePort = fake.port;
    const c = await Raw.connect(port);
    fake.behaviour = () => '*1\r\n'.repeat(100_000);
    assert.ok((await c.call('GET', fakeKeys[0])) instanceof RespErr);
    await fake.stop();
    const replacement = await startRedis({ port: fakePort });
    await waitFor(async () => (await c.call('SET', fakeKeys[0], 'fresh')) === 'OK', 6000, 'the replacement to serve');
    assert.equal(await c.call('GET', fakeKeys[0]), 'fresh');
    const direct = await Raw.connect(replacement.port);
    assert.equal(await direct.call('GET', fakeKeys[0]), 'fresh', 'the key went to the replacement');
    direct.close();
    c.close();
  });
});

describe('a backend at maxclients', { timeout: 60_000 }, () => {
  after(stopAll);

  it('redis-server refusing the proxy (max number of clients reached) is retried with a backoff, not in a tight loop', async () => {
    const full = await startRedis({ args: ['--maxclients', '1'] });
    const occupant = await Raw.connect(full.port);
    assert.equal(await occupant.call('PING'), 'PONG');
    const toml = ['[[clusters]]', 'name = "full"', 'listen_addr = "127.0.0.1:0"', 'cache_type = "redis"', 'thread = 1', `servers = ["127.0.0.1:${full.port}:1 full"]`].join('\n');
    const { config } = parseConfig(toml, 'full.toml');
    const proxy = await startProxy(config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
    try {
      const c = await Raw.connect(proxy.listeners[0].port);
      const r = await c.call('GET', 'k');
      assert.ok(r instanceof RespErr, `an error while the server refuses the proxy: ${show(r)}`);
      const rejected = async (): Promise<number> => Number(/^rejected_connections:(\d+)/m.exec(String(await occupant.call('INFO', 'stats')))?.[1]);
      const before = await rejected();
      await sleep(1000);
      const refused = (await rejected()) - before;
      c.close();
      assert.ok(refused <= 25, `the proxy was refused ${refused} times in 1 s`);
    } finally {
      await proxy.close();
      occupant.close();
    }
  });
});
