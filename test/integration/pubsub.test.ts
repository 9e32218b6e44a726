/**
 * Pub/sub through the proxy against real redis-servers, in both modes: subscriber connections of
 * the client's own (SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE and the UN- forms), confirmations with the
 * client's counts, RESP2's subscribed mode and RESP3 pushes, order and no loss, many subscribers,
 * PUBSUB's merged answers, a client leaving, the output-buffer limit, stock clients, and the
 * subscriptions surviving a backend restart, a failover and a slot move without the client
 * reconnecting.
 */

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { parseConfig } from '../../src/config/load.js';
import { Ketama } from '../../src/routing/ketama.js';
import { keySlot } from '../../src/routing/crc16.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { encodeCmd, Raw, RespErr, sleep, type Resp } from '../helpers/raw-client.js';
import { freePort, startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const logger = createLogger('silent');
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
type Proto = 2 | 3;

// ---------------------------------------------------------------------------------------------
// helpers

/** the confirmation frame Redis (and so the proxy) sends: `*3 kind name count` (RESP3: `>3`, nil `_`) */
function conf(proto: Proto, kind: string, name: string | null, count: number): string {
  const head = proto === 3 ? '>3' : '*3';
  const nm = name === null ? (proto === 3 ? '_\r\n' : '$-1\r\n') : `$${Buffer.byteLength(name)}\r\n${name}\r\n`;
  return `${head}\r\n$${kind.length}\r\n${kind}\r\n${nm}:${count}\r\n`;
}

const MESSAGE_KINDS = new Set(['message', 'pmessage', 'smessage']);

interface Frame {
  value: Resp;
  frame: Buffer;
}

/**
 * A raw client connection that keeps pub/sub messages apart from the other frames (replies and
 * confirmations), so both can be awaited while they interleave.
 */
class Sub {
  private taken = 0;

  private constructor(
    readonly raw: Raw,
    readonly proto: Proto,
  ) {}

  static async open(port: number, proto: Proto = 2): Promise<Sub> {
    const sub = new Sub(await Raw.connect(port), proto);
    if (proto === 3) {
      sub.send('HELLO', '3');
      const [hello] = await sub.next(1);
      assert.equal(hello.frame[0], 0x25 /* % */, `HELLO 3 answers a map, got ${hello.frame.toString('latin1', 0, 40)}`);
    }
    return sub;
  }

  send(...args: Array<string | number>): void {
    this.raw.write(encodeCmd(args));
  }

  private isMessage(i: number): boolean {
    const v = this.raw.replies[i];
    if (!Array.isArray(v) || typeof v[0] !== 'string' || !MESSAGE_KINDS.has(v[0])) return false;
    return this.proto === 2 || this.raw.frames[i][0] === 0x3e; /* > */
  }

  /** frames that are not messages (replies, confirmations), in order */
  others(): Frame[] {
    const out: Frame[] = [];
    for (let i = 0; i < this.raw.replies.length; i++) if (!this.isMessage(i)) out.push({ value: this.raw.replies[i], frame: this.raw.frames[i] });
    return out;
  }

  /** the next `n` non-message frames */
  async next(n: number, ms = 5000): Promise<Frame[]> {
    const want = this.taken + n;
    await waitFor(() => this.others().length >= want || this.raw.closed, ms, `${n} more replies (have ${this.others().length - this.taken})`);
    const all = this.others();
    assert.ok(all.length >= want, `connection closed before ${n} more replies came`);
    const out = all.slice(this.taken, want);
    this.taken = want;
    return out;
  }

  /** the next non-message frame as text */
  async nextText(): Promise<string> {
    return (await this.next(1))[0].frame.toString('latin1');
  }

  /** every message so far, as "message ch payload" / "pmessage pat ch payload" / "smessage ch payload" */
  messages(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.raw.replies.length; i++) if (this.isMessage(i)) out.push((this.raw.replies[i] as string[]).join(' '));
    return out;
  }

  async waitMessages(pred: (msgs: string[]) => boolean, ms: number, what: string): Promise<string[]> {
    await waitFor(() => pred(this.messages()), ms, what);
    return this.messages();
  }

  /** waits until every message in `wanted` arrived */
  async waitFor(wanted: string[], ms = 5000): Promise<string[]> {
    return this.waitMessages(
      (m) => {
        const have = new Set(m);
        return wanted.every((w) => have.has(w));
      },
      ms,
      `messages ${JSON.stringify(wanted).slice(0, 200)}`,
    );
  }

  close(): void {
    this.raw.close();
  }
}

const sorted = (xs: string[]): string[] => [...xs].sort();

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('metrics request timed out')));
    req.on('error', reject);
  });
}

/** the value of one labelled series on a /metrics page (0 when absent) */
function series(page: string, name: string, labels: Record<string, string>): number {
  for (const line of page.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const close = line.indexOf('}');
    const body = line.slice(name.length + 1, close);
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(close + 2));
  }
  return 0;
}

/** subscriber connections on a node: CLIENT LIST entries with the pub/sub flag */
function pubsubClients(list: Resp): number {
  assert.equal(typeof list, 'string', `CLIENT LIST: ${JSON.stringify(list)}`);
  return (list as string).split('\n').filter((l) => /(^| )flags=\S*P/.test(l)).length;
}

/** What the shared cases need to know about the mode under test. */
interface Env {
  mode: 'standalone' | 'cluster';
  /** the proxy's port (default limits) */
  port(): number;
  /** a listener of the same proxy over the same nodes, with a 1 MiB pub/sub hard limit */
  slowPort(): number;
  slowCluster: string;
  metricsPort(): number;
  /** data nodes (masters) */
  nodeCount(): number;
  /** the data node a channel (or sharded channel) lives on, by the layout at start */
  nodeOf(name: string): number;
  /** the data nodes a pattern lives on */
  patternNodes(pattern: string): number[];
  /** one command on data node i, directly */
  direct(i: number, ...args: Array<string | number>): Promise<Resp>;
  /** the port of data node i */
  nodePort(i: number): number;
}

/** `n` names `prefix<i>` on distinct nodes (as many nodes as there are, at most) */
function distinct(env: Env, prefix: string, n: number): string[] {
  const seen = new Set<number>();
  const out: string[] = [];
  for (let i = 0; i < 10_000 && out.length < Math.min(n, env.nodeCount()); i++) {
    const name = `${prefix}${i}`;
    const node = env.nodeOf(name);
    if (seen.has(node)) continue;
    seen.add(node);
    out.push(name);
  }
  return out;
}

/** PUBLISH answers the receivers on the node it ran on: the channel's subscribers there and the patterns living there */
const patternCounted = (env: Env, pattern: string, channel: string): boolean => env.patternNodes(pattern).includes(env.nodeOf(channel));

/** connects a node-redis client (errors swallowed: the test asserts on results) */
async function nodeRedis(port: number, RESP: 2 | 3) {
  const c = createClient({ socket: { host: '127.0.0.1', port, connectTimeout: 3000, reconnectStrategy: false }, RESP });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

// ---------------------------------------------------------------------------------------------
// the cases of both modes

function sharedCases(env: Env): void {
  /** how much the output-limit counter moved for the one subscriber disconnected below */
  let outputLimitCounted = -1;
  for (const proto of [2, 3] as const) {
    it(`RESP${proto}: SUBSCRIBE on several nodes + PSUBSCRIBE: exact confirmations, every PUBLISH delivered once with its receiver count, UNSUBSCRIBE one then all`, { timeout: 20_000 }, async () => {
      const p = `t1r${proto}:`;
      const chans = distinct(env, `${p}ch`, 3);
      assert.ok(chans.length >= 2, 'channels on at least two nodes');
      const pattern = `${p}ch*`;
      const onlyPattern = `${p}chOnlyPattern`; // matches the pattern, no channel subscription
      const nobody = `${p}nobody`;
      const sub = await Sub.open(env.port(), proto);
      const pub = await Raw.connect(env.port());
      try {
        sub.send('SUBSCRIBE', ...chans);
        assert.deepEqual(
          (await sub.next(chans.length)).map((f) => f.frame.toString('latin1')),
          chans.map((c, i) => conf(proto, 'subscribe', c, i + 1)),
        );
        sub.send('PSUBSCRIBE', pattern);
        assert.equal(await sub.nextText(), conf(proto, 'psubscribe', pattern, chans.length + 1));
        // subscribing again to the same channel changes no count, as Redis
        sub.send('SUBSCRIBE', chans[0]);
        assert.equal(await sub.nextText(), conf(proto, 'subscribe', chans[0], chans.length + 1));

        // each channel lives on its node (where PUBLISH goes); the pattern where the mode puts it
        for (const c of chans) assert.deepEqual(await env.direct(env.nodeOf(c), 'PUBSUB', 'CHANNELS', c), [c], `${c} on node ${env.nodeOf(c)}`);
        for (const i of range(env.nodeCount())) {
          const n = await env.direct(i, 'PUBSUB', 'NUMPAT');
          assert.equal(n, env.patternNodes(pattern).includes(i) ? 1 : 0, `NUMPAT on node ${i}`);
        }

        const expected: string[] = [];
        for (const c of chans) {
          for (const k of range(3)) {
            const payload = `${c}#${k}`;
            assert.equal(await pub.call('PUBLISH', c, payload), 1 + (patternCounted(env, pattern, c) ? 1 : 0), `PUBLISH ${c}`);
            expected.push(`message ${c} ${payload}`, `pmessage ${pattern} ${c} ${payload}`);
          }
        }
        assert.equal(await pub.call('PUBLISH', onlyPattern, 'p-only'), patternCounted(env, pattern, onlyPattern) ? 1 : 0);
        expected.push(`pmessage ${pattern} ${onlyPattern} p-only`);
        assert.equal(await pub.call('PUBLISH', nobody, 'lost'), 0);
        // a last message on every channel published to: once those are in, everything sent before
        // them on the same paths is in too, so the count below is exact
        const ends: string[] = [];
        for (const c of chans) {
          await pub.call('PUBLISH', c, 'end');
          ends.push(`message ${c} end`, `pmessage ${pattern} ${c} end`);
        }
        await pub.call('PUBLISH', onlyPattern, 'end');
        ends.push(`pmessage ${pattern} ${onlyPattern} end`);
        const got = await sub.waitFor(ends);
        assert.deepEqual(sorted(got), sorted([...expected, ...ends]), 'every message exactly once, nothing for a channel nobody wants');

        // UNSUBSCRIBE one: its channel goes, the pattern still matches it
        sub.send('UNSUBSCRIBE', chans[1]);
        assert.equal(await sub.nextText(), conf(proto, 'unsubscribe', chans[1], chans.length));
        assert.deepEqual(await env.direct(env.nodeOf(chans[1]), 'PUBSUB', 'CHANNELS', chans[1]), []);
        assert.equal(await pub.call('PUBLISH', chans[1], 'after'), patternCounted(env, pattern, chans[1]) ? 1 : 0);
        await sub.waitFor([`pmessage ${pattern} ${chans[1]} after`]);
        assert.ok(!sub.messages().includes(`message ${chans[1]} after`), 'no message for an unsubscribed channel');

        // UNSUBSCRIBE with no argument: every channel left, counts going down (the pattern stays)
        sub.send('UNSUBSCRIBE');
        const rest = chans.filter((_c, i) => i !== 1);
        const frames = await sub.next(rest.length);
        const names = frames.map((f) => (f.value as Resp[])[1] as string);
        assert.deepEqual(sorted(names), sorted(rest));
        assert.deepEqual(
          frames.map((f) => f.frame.toString('latin1')),
          names.map((n, i) => conf(proto, 'unsubscribe', n, rest.length - i)),
        );
        sub.send('PUNSUBSCRIBE');
        assert.equal(await sub.nextText(), conf(proto, 'punsubscribe', pattern, 0));
        // nothing left: a nil name and 0
        sub.send('UNSUBSCRIBE');
        assert.equal(await sub.nextText(), conf(proto, 'unsubscribe', null, 0));
        sub.send('PUNSUBSCRIBE');
        assert.equal(await sub.nextText(), conf(proto, 'punsubscribe', null, 0));
        for (const c of chans) assert.deepEqual(await env.direct(env.nodeOf(c), 'PUBSUB', 'CHANNELS', `${p}*`), []);
        for (const i of range(env.nodeCount())) assert.equal(await env.direct(i, 'PUBSUB', 'NUMPAT'), 0, `NUMPAT on node ${i} after PUNSUBSCRIBE`);
        assert.equal(await pub.call('PUBLISH', chans[0], 'gone'), 0);

        // back to normal mode: commands answer again
        sub.send('SET', `${p}k`, 'v');
        sub.send('GET', `${p}k`);
        const [set, getReply] = await sub.next(2);
        assert.equal(set.value, 'OK');
        assert.equal(getReply.value, 'v');
        assert.ok(!sub.raw.closed);
      } finally {
        sub.close();
        pub.close();
      }
    });
  }

  it('RESP2 subscribed mode: other commands refused with Redis\'s message, PING answers *2 pong, QUIT closes', { timeout: 15_000 }, async () => {
    const ch = 't2:ch';
    const sub = await Sub.open(env.port(), 2);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SUBSCRIBE', ch);
      assert.equal(await sub.nextText(), conf(2, 'subscribe', ch, 1));
      sub.send('GET', 't2:k');
      assert.equal(await sub.nextText(), "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
      sub.send('SET', 't2:k', 'v');
      assert.equal(await sub.nextText(), "-ERR Can't execute 'set': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
      sub.send('PING');
      assert.equal(await sub.nextText(), '*2\r\n$4\r\npong\r\n$0\r\n\r\n');
      sub.send('PING', 'x');
      assert.equal(await sub.nextText(), '*2\r\n$4\r\npong\r\n$1\r\nx\r\n');
      // still subscribed after the refusals
      assert.equal(await pub.call('PUBLISH', ch, 'still'), 1);
      await sub.waitFor([`message ${ch} still`]);
      // a sharded subscription alone puts a RESP2 client in subscribed mode too (as Redis 7)
      sub.send('UNSUBSCRIBE');
      assert.equal(await sub.nextText(), conf(2, 'unsubscribe', ch, 0));
      sub.send('SSUBSCRIBE', 't2:sh');
      assert.equal(await sub.nextText(), conf(2, 'ssubscribe', 't2:sh', 1));
      sub.send('GET', 't2:k');
      assert.match(await sub.nextText(), /^-ERR Can't execute 'get'/);
      sub.send('QUIT');
      assert.equal(await sub.nextText(), '+OK\r\n');
      await sub.raw.waitClosed(5000);
    } finally {
      sub.close();
      pub.close();
    }
  });

  it(
    'RESP2 subscribed mode: RESET leaves it (answers +RESET, subscriptions dropped, GET answers)',
    {
      timeout: 15_000,
    },
    async () => {
      const ch = 't2r:ch';
      const sub = await Sub.open(env.port(), 2);
      const pub = await Raw.connect(env.port());
      try {
        sub.send('SUBSCRIBE', ch);
        assert.equal(await sub.nextText(), conf(2, 'subscribe', ch, 1));
        sub.send('RESET');
        assert.equal(await sub.nextText(), '+RESET\r\n');
        assert.equal(await pub.call('PUBLISH', ch, 'x'), 0);
        sub.send('GET', 't2r:k');
        assert.equal((await sub.next(1))[0].value, null);
      } finally {
        sub.close();
        pub.close();
      }
    },
  );

  it('RESP3: commands answered while messages arrive as > pushes; PING is +PONG', { timeout: 15_000 }, async () => {
    const ch = 't2b:ch';
    const sub = await Sub.open(env.port(), 3);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SUBSCRIBE', ch);
      assert.equal(await sub.nextText(), conf(3, 'subscribe', ch, 1));
      const want: string[] = [];
      for (const i of range(20)) {
        sub.send('SET', `t2b:k${i}`, `v${i}`);
        assert.equal(await pub.call('PUBLISH', ch, `m${i}`), 1);
        sub.send('GET', `t2b:k${i}`);
        want.push(`message ${ch} m${i}`);
      }
      sub.send('PING');
      const replies = await sub.next(41);
      assert.deepEqual(
        replies.map((r) => r.value),
        [...range(20).flatMap((i) => ['OK', `v${i}`]), 'PONG'],
      );
      const got = await sub.waitFor(want);
      assert.deepEqual(got, want, 'messages in order, each once');
      const pushes = sub.raw.frames.filter((f) => f[0] === 0x3e);
      assert.equal(pushes.length, 21, 'the confirmation and 20 messages are pushes');
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('order and no loss: 2000 numbered messages on one channel arrive all, in order', { timeout: 30_000 }, async () => {
    const ch = 't3:ch';
    const sub = await Sub.open(env.port(), 2);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SUBSCRIBE', ch);
      assert.equal(await sub.nextText(), conf(2, 'subscribe', ch, 1));
      const N = 2000;
      const counts: Resp[] = [];
      for (let i = 0; i < N; i += 250) counts.push(...(await pub.pipeline(range(250).map((k) => ['PUBLISH', ch, String(i + k)]), 15_000)));
      assert.deepEqual(counts, range(N).map(() => 1), 'every PUBLISH reached the one subscriber');
      const got = await sub.waitMessages((m) => m.length >= N, 15_000, `${N} messages`);
      assert.deepEqual(got, range(N).map((i) => `message ${ch} ${i}`));
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('20 subscribers on the same channels (two nodes): each message reaches each exactly once', { timeout: 30_000 }, async () => {
    const chans = distinct(env, 't4:ch', 2);
    const subs = await Promise.all(range(20).map(() => Sub.open(env.port(), 2)));
    const pub = await Raw.connect(env.port());
    try {
      for (const s of subs) s.send('SUBSCRIBE', ...chans);
      for (const s of subs) assert.deepEqual((await s.next(chans.length)).map((f) => f.frame.toString('latin1')), chans.map((c, i) => conf(2, 'subscribe', c, i + 1)));
      const want: string[] = [];
      const cmds: string[][] = [];
      for (const i of range(25)) {
        for (const c of chans) {
          cmds.push(['PUBLISH', c, `m${i}`]);
          want.push(`message ${c} m${i}`);
        }
      }
      assert.deepEqual(await pub.pipeline(cmds, 10_000), cmds.map(() => 20));
      for (const [i, s] of subs.entries()) {
        const got = await s.waitMessages((m) => m.length >= want.length, 10_000, `subscriber ${i}: ${want.length} messages`);
        assert.deepEqual(sorted(got), sorted(want), `subscriber ${i}`);
        for (const c of chans) assert.deepEqual(got.filter((m) => m.startsWith(`message ${c} `)), want.filter((m) => m.startsWith(`message ${c} `)), `subscriber ${i}: ${c} in order`);
      }
      // nothing more came (a late duplicate would show after one more message per channel)
      for (const c of chans) assert.equal(await pub.call('PUBLISH', c, 'last'), 20);
      for (const s of subs) assert.equal((await s.waitFor(chans.map((c) => `message ${c} last`))).length, want.length + chans.length);
    } finally {
      for (const s of subs) s.close();
      pub.close();
    }
  });

  it('SSUBSCRIBE / SPUBLISH: confirmations with the shard count, smessage delivered, SUNSUBSCRIBE', { timeout: 15_000 }, async () => {
    for (const proto of [2, 3] as const) {
      const shards = distinct(env, `t7r${proto}:sh`, 2);
      const sub = await Sub.open(env.port(), proto);
      const pub = await Raw.connect(env.port());
      try {
        sub.send('SSUBSCRIBE', shards[0]);
        assert.equal(await sub.nextText(), conf(proto, 'ssubscribe', shards[0], 1));
        // a classic subscription does not change the shard count, nor the other way round
        sub.send('SUBSCRIBE', `t7r${proto}:classic`);
        assert.equal(await sub.nextText(), conf(proto, 'subscribe', `t7r${proto}:classic`, 1));
        assert.deepEqual(await env.direct(env.nodeOf(shards[0]), 'PUBSUB', 'SHARDCHANNELS', shards[0]), [shards[0]]);
        assert.equal(await pub.call('SPUBLISH', shards[0], 'hello'), 1);
        assert.equal(await pub.call('SPUBLISH', `${shards[0]}x`, 'nobody'), 0);
        await sub.waitFor([`smessage ${shards[0]} hello`]);
        sub.send('SUNSUBSCRIBE', shards[0]);
        assert.equal(await sub.nextText(), conf(proto, 'sunsubscribe', shards[0], 0));
        assert.equal(await pub.call('SPUBLISH', shards[0], 'gone'), 0);
        sub.send('SUNSUBSCRIBE');
        assert.equal(await sub.nextText(), conf(proto, 'sunsubscribe', null, 0));
        sub.send('UNSUBSCRIBE');
        assert.equal(await sub.nextText(), conf(proto, 'unsubscribe', `t7r${proto}:classic`, 0));
        assert.deepEqual(sub.messages(), [`smessage ${shards[0]} hello`]);
      } finally {
        sub.close();
        pub.close();
      }
    }
  });

  it('SSUBSCRIBE of channels in two slots: each placed on its own node (Redis Cluster would answer CROSSSLOT)', { timeout: 15_000 }, async () => {
    const shards = distinct(env, 't7x:sh', 2);
    const sub = await Sub.open(env.port(), 2);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SSUBSCRIBE', ...shards);
      assert.deepEqual((await sub.next(2)).map((f) => f.frame.toString('latin1')), shards.map((s, i) => conf(2, 'ssubscribe', s, i + 1)));
      for (const s of shards) {
        assert.deepEqual(await env.direct(env.nodeOf(s), 'PUBSUB', 'SHARDCHANNELS', s), [s], `${s} on node ${env.nodeOf(s)}`);
        assert.equal(await pub.call('SPUBLISH', s, `to-${s}`), 1);
      }
      await sub.waitFor(shards.map((s) => `smessage ${s} to-${s}`));
      // what the nodes themselves do with the same command: a cluster node refuses it, a plain
      // server takes it (the proxy, a one-node cluster to its clients, is more lenient than Redis)
      const direct = await Raw.connect(env.nodePort(env.nodeOf(shards[0])));
      try {
        const reply = await direct.call('SSUBSCRIBE', ...shards);
        if (env.mode === 'cluster') assert.ok(reply instanceof RespErr && reply.message.startsWith('CROSSSLOT'), `a cluster node: ${JSON.stringify(reply)}`);
        else assert.deepEqual(reply, ['ssubscribe', shards[0], 1]);
      } finally {
        direct.close();
      }
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('PUBSUB CHANNELS [pattern], NUMSUB, NUMPAT, SHARDCHANNELS, SHARDNUMSUB: merged over the nodes, matching what the subscribers did', { timeout: 20_000 }, async () => {
    const pub = await Raw.connect(env.port());
    const subs: Sub[] = [];
    try {
      // nothing left by the cases before
      await waitFor(async () => (await pub.call('PUBSUB', 'NUMPAT')) === 0, 5000, 'NUMPAT 0 before the case');
      const chans = distinct(env, 't8:ch', 3);
      const shards = distinct(env, 't8:sh', 2);
      const [a, b, c, d] = await Promise.all(range(4).map(() => Sub.open(env.port(), 2)));
      subs.push(a, b, c, d);
      a.send('SUBSCRIBE', ...chans);
      a.send('PSUBSCRIBE', 't8:p1*', 't8:p2*');
      await a.next(chans.length + 2);
      b.send('SUBSCRIBE', chans[0]);
      b.send('PSUBSCRIBE', 't8:p1*');
      await b.next(2);
      c.send('SSUBSCRIBE', ...shards);
      await c.next(shards.length);
      d.send('SSUBSCRIBE', shards[0]);
      await d.next(1);

      assert.deepEqual(sorted((await pub.call('PUBSUB', 'CHANNELS', 't8:*')) as string[]), sorted(chans));
      assert.deepEqual(sorted((await pub.call('PUBSUB', 'CHANNELS', 't8:ch0')) as string[]), chans.includes('t8:ch0') ? ['t8:ch0'] : []);
      const all = (await pub.call('PUBSUB', 'CHANNELS')) as string[];
      for (const ch of chans) assert.ok(all.includes(ch), `PUBSUB CHANNELS lists ${ch}`);
      assert.equal(new Set(all).size, all.length, 'no channel twice');
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB', ...chans, 't8:none'), [chans[0], 2, ...chans.slice(1).flatMap((ch) => [ch, 1]), 't8:none', 0]);
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB'), []);
      assert.equal(await pub.call('PUBSUB', 'NUMPAT'), 2, 'two distinct patterns');
      assert.deepEqual(sorted((await pub.call('PUBSUB', 'SHARDCHANNELS', 't8:*')) as string[]), sorted(shards));
      assert.deepEqual(await pub.call('PUBSUB', 'SHARDNUMSUB', ...shards, 't8:none'), [shards[0], 2, shards[1], 1, 't8:none', 0]);
      // classic and sharded channels are kept apart
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB', shards[0]), [shards[0], 0]);
      assert.deepEqual(await pub.call('PUBSUB', 'SHARDNUMSUB', chans[0]), [chans[0], 0]);

      // after a client unsubscribes, the answers follow
      a.send('PUNSUBSCRIBE', 't8:p2*');
      await a.next(1);
      a.send('UNSUBSCRIBE', chans[0]);
      await a.next(1);
      assert.equal(await pub.call('PUBSUB', 'NUMPAT'), 1);
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB', chans[0]), [chans[0], 1]);
    } finally {
      for (const s of subs) s.close();
      pub.close();
    }
  });

  it('a client that leaves: its subscriber connections close on the nodes, NUMSUB and NUMPAT back to 0', { timeout: 20_000 }, async () => {
    const pub = await Raw.connect(env.port());
    const countAll = async (): Promise<number[]> => Promise.all(range(env.nodeCount()).map(async (i) => pubsubClients(await env.direct(i, 'CLIENT', 'LIST'))));
    try {
      await waitFor(async () => (await countAll()).every((n) => n === 0), 5000, 'no subscriber connection left on the nodes by earlier cases');
      const chans = distinct(env, 't10:ch', 3);
      const shard = distinct(env, 't10:sh', 1)[0];
      const sub = await Sub.open(env.port(), 2);
      sub.send('SUBSCRIBE', ...chans);
      sub.send('PSUBSCRIBE', 't10:p*');
      sub.send('SSUBSCRIBE', shard);
      await sub.next(chans.length + 2);
      const during = await countAll();
      // one subscriber connection per node that holds one of its subscriptions
      const expectNodes = new Set([...chans.map((c) => env.nodeOf(c)), ...env.patternNodes('t10:p*'), env.nodeOf(shard)]);
      assert.deepEqual(during, range(env.nodeCount()).map((i) => (expectNodes.has(i) ? 1 : 0)), 'subscriber connections per node');
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB', ...chans), chans.flatMap((c) => [c, 1]));
      sub.close();
      await waitFor(async () => (await countAll()).every((n) => n === 0), 5000, 'the subscriber connections closed');
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB', ...chans), chans.flatMap((c) => [c, 0]));
      assert.equal(await pub.call('PUBSUB', 'NUMPAT'), 0);
      assert.deepEqual(await pub.call('PUBSUB', 'SHARDNUMSUB', shard), [shard, 0]);
    } finally {
      pub.close();
    }
  });

  it('stock clients: ioredis subscribe/psubscribe, node-redis v5 subscribe over RESP2 and RESP3', { timeout: 20_000 }, async () => {
    const port = env.port();
    const chans = distinct(env, 't11:ch', 2);
    const io = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
    const ioPub = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
    io.on('error', () => undefined);
    ioPub.on('error', () => undefined);
    const nr2 = await nodeRedis(port, 2);
    const nr2sub = nr2.duplicate();
    nr2sub.on('error', () => undefined);
    const nr3 = await nodeRedis(port, 3);
    try {
      await io.connect();
      await ioPub.connect();
      await nr2sub.connect();
      const ioGot: string[] = [];
      io.on('message', (ch: string, m: string) => ioGot.push(`message ${ch} ${m}`));
      io.on('pmessage', (p: string, ch: string, m: string) => ioGot.push(`pmessage ${p} ${ch} ${m}`));
      assert.equal(await io.subscribe(...chans), chans.length);
      assert.equal(await io.psubscribe('t11:ch*'), chans.length + 1);

      const nr2Got: string[] = [];
      await nr2sub.subscribe(chans, (m, ch) => nr2Got.push(`message ${ch} ${m}`));
      await nr2sub.pSubscribe('t11:ch*', (m, ch) => nr2Got.push(`pmessage ${ch} ${m}`));

      const nr3Got: string[] = [];
      await nr3.subscribe(chans[0], (m, ch) => nr3Got.push(`message ${ch} ${m}`));
      // RESP3: the same client keeps answering commands
      assert.equal(await nr3.set('t11:k', 'v'), 'OK');
      assert.equal(await nr3.get('t11:k'), 'v');

      for (const c of chans) await ioPub.publish(c, `hi-${c}`);
      const ioWant = chans.flatMap((c) => [`message ${c} hi-${c}`, `pmessage t11:ch* ${c} hi-${c}`]);
      await waitFor(() => ioWant.every((w) => ioGot.includes(w)), 5000, 'ioredis messages');
      const nr2Want = chans.flatMap((c) => [`message ${c} hi-${c}`, `pmessage ${c} hi-${c}`]);
      await waitFor(() => nr2Want.every((w) => nr2Got.includes(w)), 5000, 'node-redis RESP2 messages');
      await waitFor(() => nr3Got.includes(`message ${chans[0]} hi-${chans[0]}`), 5000, 'node-redis RESP3 message');
      await sleep(50);
      assert.deepEqual(sorted(ioGot), sorted(ioWant));
      assert.deepEqual(sorted(nr2Got), sorted(nr2Want));
      assert.deepEqual(nr3Got, [`message ${chans[0]} hi-${chans[0]}`]);

      // unsubscribe through the stock clients (their UN- commands without arguments resolve only
      // on a count of 0, with Redis as with the proxy, so the names are given while a pattern is left)
      assert.equal(await io.unsubscribe(...chans), 1);
      await nr2sub.pUnsubscribe('t11:ch*');
      await nr2sub.unsubscribe(chans);
      await nr3.unsubscribe();
      // (node-redis answers a Buffer here after pub/sub, with Redis too)
      assert.equal(String(await nr2sub.get('t11:k')), 'v', 'node-redis RESP2 client back to normal mode');
      assert.equal(await ioPub.publish(chans[0], 'x'), patternCounted(env, 't11:ch*', chans[0]) ? 1 : 0, 'only the ioredis pattern is left');
      await waitFor(() => ioGot.includes(`pmessage t11:ch* ${chans[0]} x`), 5000, 'the pattern still delivers');
      assert.equal(await io.punsubscribe(), 0);
    } finally {
      io.disconnect();
      ioPub.disconnect();
      nr2sub.destroy();
      nr2.destroy();
      nr3.destroy();
    }
  });

  it('a subscriber that stops reading is disconnected at the output-buffer limit; others keep receiving; memory stays bounded; counted in /metrics', { timeout: 40_000 }, async () => {
    const port = env.slowPort();
    const ch = 't9:ch';
    const payload = 'x'.repeat(10_000);
    const metricsBefore = series(await get(env.metricsPort(), '/metrics'), 'aster_front_error_total', { cluster: env.slowCluster, kind: 'output_limit' });
    // the slow one: subscribes, then stops reading
    const slow = net.connect({ host: '127.0.0.1', port });
    const slowUp = new Promise<void>((resolve) => slow.once('connect', resolve));
    slow.on('error', () => undefined);
    let slowClosed = false;
    slow.once('close', () => (slowClosed = true));
    let confirmed = '';
    slow.on('data', (d: Buffer) => {
      if (confirmed.length < 200) confirmed += d.toString('latin1');
    });
    // the good one: ioredis counts what it gets (keeps nothing)
    const good = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
    good.on('error', () => undefined);
    let goodGot = 0;
    good.on('messageBuffer', () => goodGot++);
    const pub = await Raw.connect(port);
    try {
      await slowUp;
      slow.write(encodeCmd(['SUBSCRIBE', ch]));
      await waitFor(() => confirmed.includes(':1\r\n'), 5000, 'the slow subscriber confirmed');
      slow.pause();
      await good.connect();
      await good.subscribe(ch);
      const rssBefore = process.memoryUsage().rss;
      let published = 0;
      let receivers = 2;
      // bounded: at most 4000 messages of 10 KB (40 MB), far beyond the 1 MiB limit plus socket buffers
      for (let batch = 0; batch < 200 && receivers === 2; batch++) {
        const counts = await pub.pipeline(range(20).map(() => ['PUBLISH', ch, payload]), 10_000);
        published += 20;
        receivers = Math.min(...counts.map(Number));
      }
      const rssAfter = process.memoryUsage().rss;
      assert.equal(receivers, 1, `the slow subscriber was dropped (published ${published} messages of 10 KB)`);
      assert.ok(published * payload.length > 1024 * 1024, 'it took more than the limit');
      assert.ok(rssAfter - rssBefore < 150 * 1024 * 1024, `rss grew by ${Math.round((rssAfter - rssBefore) / 1048576)} MB`);
      // the good one got every message
      await waitFor(() => goodGot >= published, 10_000, `the good subscriber's ${published} messages (has ${goodGot})`);
      assert.equal(goodGot, published);
      assert.equal(await pub.call('PUBLISH', ch, 'after'), 1);
      await waitFor(() => goodGot === published + 1, 5000, 'one more message to the good subscriber');
      // the slow one's connection was closed by the proxy: it sees the end once it reads again
      slow.on('data', () => undefined);
      slow.resume();
      await waitFor(() => slowClosed, 10_000, 'the slow subscriber sees its connection closed');
      const metricsAfter = series(await get(env.metricsPort(), '/metrics'), 'aster_front_error_total', { cluster: env.slowCluster, kind: 'output_limit' });
      assert.ok(metricsAfter - metricsBefore >= 1, 'aster_front_error_total{kind="output_limit"} counted it');
      outputLimitCounted = metricsAfter - metricsBefore;
      // the limit is per client: the good subscriber is still connected and subscribed
      assert.deepEqual(await pub.call('PUBSUB', 'NUMSUB', ch), [ch, 1]);
    } finally {
      slow.destroy();
      good.disconnect();
      pub.close();
    }
  });

  it(
    'the output-limit disconnection is counted once per client, not once per message that arrived before the socket closed',
    () => {
      assert.ok(outputLimitCounted >= 1, 'the case above ran');
      assert.equal(outputLimitCounted, 1);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// standalone

describe('pub/sub, standalone mode', () => {
  let servers: RedisProc[] = [];
  let proxy: RunningProxy;
  let metricsPort = 0;
  const aliases = ['r0', 'r1', 'r2'];
  const ring = new Ketama(aliases.map((name) => ({ name, weight: 1 })));
  const portOf = (cluster: string): number => proxy.listeners.find((l) => l.cluster === cluster)!.port;

  before(async () => {
    servers = await Promise.all(range(3).map(() => startRedis()));
    metricsPort = await freePort();
    const list = servers.map((s, i) => `"127.0.0.1:${s.port}:1 ${aliases[i]}"`).join(', ');
    const toml = `
[[clusters]]
name = "ps"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = [${list}]

[[clusters]]
name = "ps_slow"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = [${list}]
[clusters.limits]
pubsub_output_hard_bytes = 1048576

[[clusters]]
name = "ps_soft"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = [${list}]
[clusters.limits]
pubsub_output_soft_bytes = 262144
pubsub_output_soft_seconds = 1
`;
    proxy = await startProxy(parseConfig(toml, 'pubsub.toml').config, { ip: '127.0.0.1', metricsPort, reload: false, logger });
  });
  after(async () => {
    await proxy?.close();
    await stopAll();
  });

  const env: Env = {
    mode: 'standalone',
    port: () => portOf('ps'),
    slowPort: () => portOf('ps_slow'),
    slowCluster: 'ps_slow',
    metricsPort: () => metricsPort,
    nodeCount: () => servers.length,
    nodeOf: (name) => ring.serverFor(Buffer.from(name, 'latin1')),
    patternNodes: () => range(servers.length),
    nodePort: (i) => servers[i].port,
    async direct(i, ...args) {
      const r = await Raw.connect(servers[i].port);
      try {
        return await r.call(...args);
      } finally {
        r.close();
      }
    },
  };
  sharedCases(env);

  it('the soft limit: a subscriber above pubsub_output_soft_bytes for longer than pubsub_output_soft_seconds is disconnected', { timeout: 30_000 }, async () => {
    const port = portOf('ps_soft');
    const ch = 't9s:ch';
    const slow = net.connect({ host: '127.0.0.1', port });
    const slowUp = new Promise<void>((resolve) => slow.once('connect', resolve));
    slow.on('error', () => undefined);
    let confirmed = '';
    slow.on('data', (d: Buffer) => {
      if (confirmed.length < 200) confirmed += d.toString('latin1');
    });
    const pub = await Raw.connect(port);
    const payload = 'y'.repeat(10_000);
    try {
      await slowUp;
      slow.write(encodeCmd(['SUBSCRIBE', ch]));
      await waitFor(() => confirmed.includes(':1\r\n'), 5000, 'subscribed');
      slow.pause();
      const start = Date.now();
      let receivers = 1;
      let published = 0;
      // 200 KB every 100 ms, for at most ~10 s (20 MB: under the 32 MiB hard limit)
      for (let i = 0; i < 100 && receivers === 1; i++) {
        const counts = await pub.pipeline(range(20).map(() => ['PUBLISH', ch, payload]), 10_000);
        published += counts.length;
        receivers = Math.min(...counts.map(Number));
        if (receivers === 1) await sleep(100);
      }
      const elapsed = Date.now() - start;
      assert.equal(receivers, 0, `disconnected (published ${published} messages of 10 KB)`);
      assert.ok(elapsed >= 1000, `not before it was above the soft limit for 1 s (${elapsed} ms)`);
      assert.ok(published * payload.length < 32 * 1024 * 1024, 'below the hard limit: the soft one did it');
    } finally {
      slow.destroy();
      pub.close();
    }
  });

  it('a backend restart: the subscriber keeps receiving on the same connection (channel and pattern placed again)', { timeout: 30_000 }, async () => {
    const ch = distinct(env, 't5:ch', 1)[0];
    const node = env.nodeOf(ch);
    const sub = await Sub.open(env.port(), 2);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SUBSCRIBE', ch);
      sub.send('PSUBSCRIBE', 't5:*');
      await sub.next(2);
      assert.equal(await pub.call('PUBLISH', ch, 'before'), 2);
      await sub.waitFor([`message ${ch} before`, `pmessage t5:* ${ch} before`]);
      await servers[node].restart();
      // publish until both arrive again (bounded); errors while the proxy reconnects are fine
      let got = false;
      for (let i = 0; i < 100 && !got; i++) {
        await pub.call('PUBLISH', ch, `after${i}`);
        await sleep(100);
        const m = sub.messages();
        got = m.some((x) => x.startsWith(`message ${ch} after`)) && m.some((x) => x.startsWith(`pmessage t5:* ${ch} after`));
      }
      assert.ok(got, `messages after the restart: ${JSON.stringify(sub.messages().slice(-4))}`);
      assert.ok(!sub.raw.closed, 'the client connection stayed open');
      // and the counts are still the client's own
      sub.send('PING');
      assert.equal(await sub.nextText(), '*2\r\n$4\r\npong\r\n$0\r\n\r\n');
      sub.send('UNSUBSCRIBE', ch);
      assert.equal(await sub.nextText(), conf(2, 'unsubscribe', ch, 1));
      assert.deepEqual(await env.direct(node, 'PUBSUB', 'NUMPAT'), 1, 'the pattern is back on the restarted server');
    } finally {
      sub.close();
      pub.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// cluster

describe('pub/sub, cluster mode', () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  let metricsPort = 0;
  const portOf = (name: string): number => proxy.listeners.find((l) => l.cluster === name)!.port;
  const nodeOfSlot = (slot: number): number => cluster.ranges.findIndex(([a, b]) => a <= slot && slot <= b);

  before(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
    metricsPort = await freePort();
    const seeds = cluster.addrs().map((a) => JSON.stringify(a)).join(', ');
    const toml = `
[[clusters]]
name = "psc"
listen_addr = "127.0.0.1:0"
servers = [${seeds}]

[[clusters]]
name = "psc_slow"
listen_addr = "127.0.0.1:0"
servers = [${seeds}]
[clusters.limits]
pubsub_output_hard_bytes = 1048576
`;
    proxy = await startProxy(parseConfig(toml, 'pubsubc.toml').config, { ip: '127.0.0.1', metricsPort, reload: false, logger });
    for (const name of ['psc', 'psc_slow']) {
      const r = await Raw.connect(portOf(name));
      try {
        await waitFor(async () => String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, `${name} has the slot map`);
      } finally {
        r.close();
      }
    }
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  const env: Env = {
    mode: 'cluster',
    port: () => portOf('psc'),
    slowPort: () => portOf('psc_slow'),
    slowCluster: 'psc_slow',
    metricsPort: () => metricsPort,
    nodeCount: () => cluster.masters.length,
    nodeOf: (name) => nodeOfSlot(keySlot(Buffer.from(name, 'latin1'))),
    patternNodes: (pattern) => [nodeOfSlot(keySlot(Buffer.from(pattern, 'latin1')))],
    direct: (i, ...args) => cluster.call(cluster.masters[i], ...args),
    nodePort: (i) => cluster.masters[i].port,
  };
  sharedCases(env);

  it('sharded pub/sub after a slot move: the node drops the channel, the proxy places it again on the new owner', { timeout: 30_000 }, async () => {
    const shard = distinct(env, 't7m:sh', 1)[0];
    const from = env.nodeOf(shard);
    const to = (from + 1) % cluster.masters.length;
    const slot = keySlot(Buffer.from(shard, 'latin1'));
    const sub = await Sub.open(env.port(), 2);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SSUBSCRIBE', shard);
      assert.equal(await sub.nextText(), conf(2, 'ssubscribe', shard, 1));
      assert.equal(await pub.call('SPUBLISH', shard, 'before'), 1);
      await sub.waitFor([`smessage ${shard} before`]);
      await cluster.moveSlot(slot, cluster.masters[from], cluster.masters[to]);
      let got = false;
      for (let i = 0; i < 100 && !got; i++) {
        await pub.call('SPUBLISH', shard, `after${i}`);
        await sleep(100);
        got = sub.messages().some((m) => m.startsWith(`smessage ${shard} after`));
      }
      assert.ok(got, 'smessage after the slot moved');
      assert.ok(!sub.raw.closed, 'the client connection stayed open');
      assert.deepEqual(await cluster.call(cluster.masters[to], 'PUBSUB', 'SHARDCHANNELS', shard), [shard], 'the channel lives on the new owner');
      assert.deepEqual(await cluster.call(cluster.masters[from], 'PUBSUB', 'SHARDCHANNELS', shard), []);
      // the client saw nothing of it: no unasked sunsubscribe
      assert.ok(!sub.others().some((f) => Array.isArray(f.value) && f.value[0] === 'sunsubscribe'), 'no sunsubscribe reached the client');
      sub.send('SUNSUBSCRIBE', shard);
      assert.equal(await sub.nextText(), conf(2, 'sunsubscribe', shard, 0));
    } finally {
      sub.close();
      pub.close();
    }
  });

  it('failover of the master holding the subscriptions: the subscriber keeps receiving on the same connection', { timeout: 45_000 }, async () => {
    // a channel and a pattern on masters[0]
    const ch = distinct(env, 't6:ch', 3).find((c) => env.nodeOf(c) === 0)!;
    let pattern = '';
    for (let i = 0; i < 10_000 && pattern === ''; i++) if (env.patternNodes(`t6:${i}:*`)[0] === 0) pattern = `t6:${i}:*`;
    const matching = pattern.replace('*', 'x');
    const sub = await Sub.open(env.port(), 3);
    const pub = await Raw.connect(env.port());
    try {
      sub.send('SUBSCRIBE', ch);
      sub.send('PSUBSCRIBE', pattern);
      assert.deepEqual((await sub.next(2)).map((f) => f.frame.toString('latin1')), [conf(3, 'subscribe', ch, 1), conf(3, 'psubscribe', pattern, 2)]);
      await pub.call('PUBLISH', ch, 'before');
      await pub.call('PUBLISH', matching, 'before');
      await sub.waitFor([`message ${ch} before`, `pmessage ${pattern} ${matching} before`]);
      await cluster.killMasterAndWaitFailover(0);
      let got = false;
      for (let i = 0; i < 150 && !got; i++) {
        await pub.call('PUBLISH', ch, `after${i}`);
        await pub.call('PUBLISH', matching, `after${i}`);
        await sleep(100);
        const m = sub.messages();
        got = m.some((x) => x.startsWith(`message ${ch} after`)) && m.some((x) => x.startsWith(`pmessage ${pattern} ${matching} after`));
      }
      assert.ok(got, `messages after the failover: ${JSON.stringify(sub.messages().slice(-4))}`);
      assert.ok(!sub.raw.closed, 'the client connection stayed open');
      // RESP3: the same connection still answers commands
      sub.send('SET', 't6:k', 'v');
      assert.equal((await sub.next(1))[0].value, 'OK');
      sub.send('UNSUBSCRIBE', ch);
      assert.equal(await sub.nextText(), conf(3, 'unsubscribe', ch, 1));
    } finally {
      sub.close();
      pub.close();
    }
  });
});

