/**
 * Flow control per client, against real servers in both modes (standalone over 3 shards, and
 * cluster mode over a real 3 masters + 3 replicas cluster):
 *
 * - a slow reader (client A pipelines 500 GETs of 1 MiB values in one write, then does not read)
 *   is held back by the proxy, not the shared backend connections: another client B doing
 *   SET/GET round trips on the same backends meanwhile gets every answer, well within
 *   read_timeout; what the proxy keeps for A (INFO clients: client_recent_max_output_buffer)
 *   stays near `[clusters.limits] max_pending_bytes` (and this process's buffers, the proxy
 *   running in it, far from the 500 MiB asked for); and once A reads, it gets all 500 replies,
 *   complete and in order. In RESP2 and in RESP3 (HELLO 3 first).
 * - the bounds never lose or reorder anything: 20 000 small GETs in one write, read normally,
 *   are all answered in order (through the proxy with the default-like bounds, and through one
 *   with tiny bounds).
 *
 * Timing is never asserted finely: B's largest latency must be below read_timeout (3000 ms
 * here) and is printed as a diagnostic.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { keySlot } from '../../src/routing/crc16.js';
import { Ketama } from '../../src/routing/ketama.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { encodeCmd, parseResp, Raw, RespErr, sleep, type Resp } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

import { INITIAL_WINDOW } from '../../src/operators/admit-requests.js';
const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') };
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const MiB = 1024 * 1024;
const NODES = 3;

const READ_TIMEOUT_MS = 3000;
const MAX_PENDING_BYTES = 8 * MiB;
const MAX_PENDING_REQUESTS = 10_000;
/**
 * what the proxy may keep for a client that does not read: the bound, plus what its first
 * pipeline had in flight before any reply said how large replies are (INITIAL_WINDOW requests
 * of 1 MiB here), plus slack. Without flow control it would be all 500 MiB.
 */
const OUTPUT_BOUND = MAX_PENDING_BYTES + INITIAL_WINDOW * MiB + 2 * MiB;
/** a generous bound on this process's buffers (the proxy runs in it) while the slow reader does not read */
const MAX_PROCESS_BUFFERS = 256 * MiB;

const BIG_KEYS = 20;
const BIG_GETS = 500;
const B_ROUNDS = 300;
const SMALL_KEYS = 200;
const SMALL_GETS = 20_000;

/** the limits section of the proxies under test */
const LIMITS = `[clusters.limits]
max_pending_bytes = ${MAX_PENDING_BYTES}
max_pending_requests = ${MAX_PENDING_REQUESTS}
`;
/** a proxy with tiny bounds: almost every request of a big pipeline waits for a while */
const TIGHT_LIMITS = `[clusters.limits]
max_pending_bytes = 65536
max_pending_requests = 16
`;

type Proto = 2 | 3;

interface Mode {
  readonly name: 'standalone' | 'cluster';
  /** the proxy with read_timeout = 3000 and the limits above */
  port(): number;
  /** the same backends behind a proxy with tiny bounds */
  tightPort(): number;
  /** the node (0..NODES-1) that holds `key` */
  nodeOf(key: string): number;
}

const show = (r: Resp): string => (r instanceof RespErr ? `-${r.message}` : JSON.stringify(r)?.slice(0, 200) ?? String(r));

/** "k:v" lines of INFO */
function fields(reply: Resp): Map<string, string> {
  assert.equal(typeof reply, 'string', `INFO answered ${show(reply)}`);
  const out = new Map<string, string>();
  for (const line of (reply as string).split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

/** `count` key names (`prefix` + a number), spread round-robin over the nodes: key i on node i % NODES */
function spreadKeys(mode: Mode, prefix: string, count: number): string[] {
  const out: string[] = [];
  const free = range(NODES).map(() => [] as string[]);
  for (let n = 0; out.length < count && n < 1_000_000; n++) {
    const key = `${prefix}${n}`;
    free[mode.nodeOf(key)].push(key);
    const want = out.length % NODES;
    if (free[want].length > 0) out.push(free[want].shift()!);
  }
  assert.equal(out.length, count, `${count} keys spread over the nodes`);
  return out;
}

/** the 1 MiB value of big key i: one fill character per key, so that no two are alike */
const bigValue = (i: number): Buffer => Buffer.alloc(MiB, 0x41 + i); // 'A', 'B', ...

/**
 * A client that does not read: a raw socket, paused once it is connected (after HELLO 3 for
 * RESP3). `resume()` then checks the stream it receives against the reply frames expected, byte
 * for byte, without keeping it.
 */
class SlowReader {
  private expected: Buffer[] = [];
  private at = 0; // index of the frame being compared
  private offset = 0; // bytes of it already compared
  received = 0;
  mismatch: string | null = null;
  closed = false;
  private poke: () => void = () => undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.closed = true;
      this.poke();
    });
  }

  static async open(port: number, proto: Proto): Promise<SlowReader> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    if (proto === 3) {
      // HELLO 3, its reply read whole; then not another byte until resume()
      await new Promise<void>((resolve, reject) => {
        let buf = Buffer.alloc(0);
        const onData = (chunk: Buffer): void => {
          buf = Buffer.concat([buf, chunk]);
          const r = parseResp(buf, 0);
          if (r === null) return;
          socket.off('data', onData);
          socket.pause();
          if (buf[0] !== 0x25 /* % */ || r[1] !== buf.length) reject(new Error(`HELLO 3 answered ${JSON.stringify(buf.toString('latin1', 0, 80))}`));
          else resolve();
        };
        socket.on('data', onData);
        socket.write(encodeCmd(['HELLO', 3]));
      });
    }
    socket.pause();
    return new SlowReader(socket);
  }

  /** the frames it must receive, in order */
  expect(frames: Buffer[]): void {
    this.expected = frames;
  }

  /** how many expected frames arrived whole and right */
  get complete(): number {
    return this.at;
  }

  resume(): void {
    this.socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      this.check(chunk);
      this.poke();
    });
    this.socket.resume();
  }

  private check(chunk: Buffer): void {
    let p = 0;
    while (p < chunk.length && this.mismatch === null) {
      const frame = this.expected[this.at];
      if (frame === undefined) {
        this.mismatch = `${chunk.length - p} bytes more than the ${this.expected.length} replies expected: ${JSON.stringify(chunk.toString('latin1', p, p + 60))}`;
        return;
      }
      const n = Math.min(frame.length - this.offset, chunk.length - p);
      if (!chunk.subarray(p, p + n).equals(frame.subarray(this.offset, this.offset + n))) {
        let d = 0;
        while (d < n && chunk[p + d] === frame[this.offset + d]) d++;
        this.mismatch =
          `reply ${this.at} differs at its byte ${this.offset + d}: got ${JSON.stringify(chunk.toString('latin1', p + d, p + d + 40))}, ` +
          `want ${JSON.stringify(frame.toString('latin1', this.offset + d, this.offset + d + 40))}`;
        return;
      }
      p += n;
      this.offset += n;
      if (this.offset === frame.length) {
        this.at++;
        this.offset = 0;
      }
    }
  }

  /** resolves once every expected frame arrived, or a mismatch or a close ends it, or after `ms` */
  async done(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.at < this.expected.length && this.mismatch === null && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, Math.min(500, deadline - Date.now())));
        this.poke = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.poke = () => undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }

  close(): void {
    this.socket.destroy();
  }
}

function sharedChecks(mode: Mode): void {
  const opened: Array<{ close(): void }> = [];
  const open = async (port = mode.port()): Promise<Raw> => {
    const c = await Raw.connect(port);
    opened.push(c);
    return c;
  };
  let bigKeys: string[] = [];
  let bigFrames: Buffer[] = [];
  let smallKeys: string[] = [];
  let bKeys: string[] = [];
  const smallValue = (j: number): string => `small-${j}-${'s'.repeat(j % 13)}`;

  /** connected_clients of the proxy on `port` (the one asking included) */
  const connected = async (port = mode.port()): Promise<number> => {
    const c = await Raw.connect(port);
    try {
      return Number(fields(await c.call('INFO', 'clients')).get('connected_clients'));
    } finally {
      c.close();
    }
  };

  describe(`${mode.name}: flow control`, () => {
    before(async () => {
      bigKeys = spreadKeys(mode, `fc:big:${mode.name}:`, BIG_KEYS);
      smallKeys = spreadKeys(mode, `fc:small:${mode.name}:`, SMALL_KEYS);
      bKeys = spreadKeys(mode, `fc:b:${mode.name}:`, 30);
      bigFrames = bigKeys.map((_k, i) => Buffer.concat([Buffer.from(`$${MiB}\r\n`), bigValue(i), Buffer.from('\r\n')]));
      const c = await open();
      for (let i = 0; i < BIG_KEYS; i++) assert.equal(await c.call('SET', bigKeys[i], bigValue(i)), 'OK', `SET ${bigKeys[i]}`);
      const sets = await c.pipeline(smallKeys.map((k, j) => ['SET', k, smallValue(j)]), 10_000);
      assert.ok(sets.every((r) => r === 'OK'), `SET of the small keys: ${sets.filter((r) => r !== 'OK').map(show).join(', ')}`);
      for (const k of bKeys) await c.call('DEL', k);
      c.close();
    });
    afterEach(() => {
      for (const c of opened.splice(0)) c.close();
    });

    for (const proto of [2, 3] as const) {
      it(`RESP${proto}: a client that pipelines ${BIG_GETS} GETs of 1 MiB values and does not read is held back; another client is served meanwhile; the slow one then gets every reply in order`, { timeout: 180_000 }, async (t: TestContext) => {
        // nobody else on the proxy: the one asking is the only client
        await waitFor(async () => (await connected()) === 1, 10_000, 'no other client on the proxy');
        const monitor = await open();
        const b = await open();
        const a = await SlowReader.open(mode.port(), proto);
        opened.push(a);
        const order = range(BIG_GETS).map((i) => (i * 7) % BIG_KEYS); // every key, not in key order
        a.expect(order.map((k) => bigFrames[k]));
        a.socket.write(Buffer.concat(order.map((k) => encodeCmd(['GET', bigKeys[k]]))));
        await sleep(300); // the proxy takes A's requests in and fills what A does not read

        // INFO clients, sampled while A does not read
        const samples: number[] = [];
        let missing: string | null = null;
        let sampling = true;
        let peakBuffers = 0;
        const sample = async (): Promise<void> => {
          const info = fields(await monitor.call('INFO', 'clients'));
          const v = info.get('client_recent_max_output_buffer');
          if (v === undefined) missing = `INFO clients has no client_recent_max_output_buffer: ${JSON.stringify([...info])}`;
          else samples.push(Number(v));
          peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers);
        };
        const sampler = (async () => {
          while (sampling) {
            await sample();
            await sleep(100);
          }
        })();

        // B: one request at a time on other keys of the same backends
        const wrong: string[] = [];
        let maxMs = 0;
        let slowest = '';
        const timed = async (what: string, args: Array<string | number>, want: Resp): Promise<void> => {
          const t0 = performance.now();
          let got: Resp;
          try {
            got = await b.call(...args);
          } catch (err) {
            wrong.push(`${what}: ${(err as Error).message}`);
            return;
          }
          const ms = performance.now() - t0;
          if (ms > maxMs) [maxMs, slowest] = [ms, what];
          if (got instanceof RespErr || JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`${what}: ${show(got)}, want ${show(want)}`);
        };
        for (let i = 0; i < B_ROUNDS && wrong.length < 5; i++) {
          const key = bKeys[i % bKeys.length];
          const value = `b-${proto}-${i}`;
          await timed(`round ${i} SET ${key}`, ['SET', key, value], 'OK');
          await timed(`round ${i} GET ${key}`, ['GET', key], value);
        }
        // a few more samples once B is done, A still not reading
        for (let i = 0; i < 5; i++) await sleep(100);
        sampling = false;
        await sampler;
        await sample();
        const unreadByA = a.received;

        t.diagnostic(`${mode.name} RESP${proto}: B's largest latency ${maxMs.toFixed(1)} ms (${slowest}) over ${B_ROUNDS} SET/GET rounds; read_timeout ${READ_TIMEOUT_MS} ms`);
        t.diagnostic(`${mode.name} RESP${proto}: client_recent_max_output_buffer samples (bytes): ${samples.length > 0 ? samples.join(' ') : '(none)'}; bound ${OUTPUT_BOUND}`);
        t.diagnostic(`${mode.name} RESP${proto}: this process's arrayBuffers peaked at ${(peakBuffers / MiB).toFixed(1)} MiB while A did not read`);

        assert.deepEqual(wrong, [], `every request of B answered right while A does not read`);
        assert.ok(maxMs < READ_TIMEOUT_MS, `B's largest latency ${maxMs.toFixed(0)} ms (${slowest}) is below read_timeout (${READ_TIMEOUT_MS} ms)`);
        assert.equal(unreadByA, 0, 'A did not read anything until now');

        // A reads: all 500 replies, whole, each its key's value, in order
        const t0 = performance.now();
        a.resume();
        await a.done(120_000);
        t.diagnostic(`${mode.name} RESP${proto}: A read ${(a.received / MiB).toFixed(0)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s once it resumed`);
        assert.equal(a.mismatch, null, `A's replies are the values of its GETs, in order (${a.complete} right before that)`);
        assert.equal(a.complete, BIG_GETS, `A got all ${BIG_GETS} replies (closed: ${a.closed}, ${a.received} bytes)`);

        // what the proxy kept for A while it did not read: the proxy runs in this process, whose
        // buffers (20 MiB of expected replies included) stay far from the 500 MiB A asked for
        assert.ok(peakBuffers < MAX_PROCESS_BUFFERS, `this process's arrayBuffers peaked at ${(peakBuffers / MiB).toFixed(0)} MiB while A did not read (bound ${MAX_PROCESS_BUFFERS / MiB} MiB)`);
        // and what it reports
        assert.equal(missing, null, 'INFO clients reports client_recent_max_output_buffer');
        assert.ok(samples.length >= 5, `sampled ${samples.length} times`);
        const peak = Math.max(...samples);
        assert.ok(peak < OUTPUT_BOUND, `client_recent_max_output_buffer stayed below max_pending_bytes + INITIAL_WINDOW MiB + 2 MiB (${OUTPUT_BOUND}): samples ${samples.join(' ')}`);
        assert.ok(peak > 0, `client_recent_max_output_buffer shows what waits for A (${BIG_GETS} MiB asked, not read): samples ${samples.join(' ')}`);

        a.destroy();
        monitor.close();
        b.close();
        let now = -1;
        await waitFor(async () => (now = await connected()) === 1, 10_000, 'the slow reader gone from the proxy').catch((err: Error) => {
          throw new Error(`${err.message}: connected_clients ${now} (the one asking included)`);
        });
      });
    }

    for (const tight of [false, true]) {
      it(`${SMALL_GETS} small GETs in one write, read normally: every reply, in order${tight ? ' (a proxy with tiny bounds: max_pending_requests 16, max_pending_bytes 64 KiB)' : ''}`, { timeout: 120_000 }, async () => {
        const c = await open(tight ? mode.tightPort() : mode.port());
        const pick = (i: number): number => (i * 37 + (i >> 5)) % SMALL_KEYS;
        const replies = await c.pipeline(range(SMALL_GETS).map((i) => ['GET', smallKeys[pick(i)]]), 60_000);
        assert.equal(replies.length, SMALL_GETS);
        const wrong = replies.flatMap((r, i) => (r === smallValue(pick(i)) ? [] : [`reply ${i}: ${show(r)}, want ${smallValue(pick(i))}`]));
        assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} replies wrong or out of order`);
        // nothing more than one reply per request
        await sleep(50);
        assert.equal(c.replies.length, SMALL_GETS, 'no extra replies');
      });
    }
  });
}

describe('flow control, standalone mode (3 shards)', { timeout: 600_000 }, () => {
  let servers: RedisProc[] = [];
  let proxy: RunningProxy;
  let tight: RunningProxy;
  let ring: Ketama;
  const toml = (name: string, limits: string): string => `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
hash_tag = "{}"
thread = 1
read_timeout = ${READ_TIMEOUT_MS}
servers = [${servers.map((s, i) => `"127.0.0.1:${s.port}:1 f${i}"`).join(', ')}]
${limits}`;

  before(async () => {
    servers = await Promise.all(range(NODES).map(() => startRedis()));
    ring = new Ketama(range(NODES).map((i) => ({ name: `f${i}`, weight: 1 })));
    proxy = await startProxy(parseConfig(toml('flow', LIMITS), 'flow.toml').config, opts);
    tight = await startProxy(parseConfig(toml('flowtight', TIGHT_LIMITS), 'flowtight.toml').config, opts);
  });
  after(async () => {
    await proxy?.close();
    await tight?.close();
    await stopAll();
  });

  sharedChecks({
    name: 'standalone',
    port: () => proxy.listeners[0].port,
    tightPort: () => tight.listeners[0].port,
    nodeOf: (key) => ring.serverFor(Buffer.from(key, 'latin1'), '{}'),
  });
});

describe('flow control, cluster mode (3 masters + 3 replicas)', { timeout: 600_000 }, () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  let tight: RunningProxy;
  const toml = (name: string, limits: string): string => `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
thread = 1
read_timeout = ${READ_TIMEOUT_MS}
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
${limits}`;

  before(async () => {
    cluster = await startCluster();
    proxy = await startProxy(parseConfig(toml('flowc', LIMITS), 'flowc.toml').config, opts);
    tight = await startProxy(parseConfig(toml('flowctight', TIGHT_LIMITS), 'flowctight.toml').config, opts);
    for (const p of [proxy, tight]) {
      const c = await Raw.connect(p.listeners[0].port);
      try {
        await waitFor(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the proxy has the slot map');
      } finally {
        c.close();
      }
    }
  });
  after(async () => {
    await proxy?.close();
    await tight?.close();
    await cluster?.stop();
    await stopAll();
  });

  sharedChecks({
    name: 'cluster',
    port: () => proxy.listeners[0].port,
    tightPort: () => tight.listeners[0].port,
    nodeOf: (key) => {
      const slot = keySlot(Buffer.from(key, 'latin1'));
      return cluster.ranges.findIndex(([lo, hi]) => slot >= lo && slot <= hi);
    },
  });
});
