/**
 * Transactions through the proxy against real servers, in both modes: MULTI/EXEC/DISCARD/WATCH/
 * UNWATCH run on a backend connection of the client's own, opened on the node of the first key.
 * The same checks run over 3 standalone redis-servers (ketama, hash_tag "{}") and over a 3-master
 * Redis Cluster: results and real writes, keyless commands held until the node is known, keys on
 * another node (CROSSSLOT, then EXECABORT and nothing applied), commands the proxy refuses inside
 * MULTI, DISCARD, WATCH, a client leaving mid-transaction (its dedicated connection closes on the
 * server), many transactions at once, stock clients, and the order of pipelined commands around
 * a transaction.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createClient, WatchError } from 'redis';
import { parseConfig } from '../../src/config/load.js';
import { keySlot } from '../../src/routing/crc16.js';
import { Ketama } from '../../src/routing/ketama.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { assertErr, encodeCmd, Raw, RespErr, type Resp } from '../helpers/raw-client.js';
import { startRedis, stopAll, waitFor, type RedisProc } from '../helpers/servers.js';

const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') };
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const NODES = 3;

type Arg = string | number;

/** what the shared checks need from a mode */
interface Mode {
  name: string;
  port(): number;
  /** index (0..NODES-1) of the server or master that holds `key` */
  ownerOf(key: string): number;
  /** one command straight on node i, not through the proxy */
  direct(i: number, ...args: Arg[]): Promise<Resp>;
}

/** commands that only a transaction's dedicated connection ever runs */
const TX_COMMANDS = new Set(['multi', 'exec', 'discard', 'watch', 'unwatch']);

function sharedChecks(mode: Mode): void {
  const clients: Raw[] = [];
  const client = async (): Promise<Raw> => {
    const c = await Raw.connect(mode.port());
    clients.push(c);
    return c;
  };

  /**
   * A hash tag whose keys (`{tag}field`) live on node i. The varying part comes first: twemproxy's
   * fnv1a_64 spreads a difference at the end of a key poorly.
   */
  const tagOn = (i: number, name: string): string => {
    for (let n = 0; n < 100_000; n++) {
      const tag = `${n}:${name}`;
      if (mode.ownerOf(`{${tag}}`) === i) return tag;
    }
    throw new Error(`no tag on node ${i} for ${name}`);
  };
  const keyOn = (i: number, name: string, field: string): string => `{${tagOn(i, name)}}${field}`;

  const connectedClients = async (i: number): Promise<number> => {
    const info = String(await mode.direct(i, 'INFO', 'clients'));
    const m = /connected_clients:(\d+)/.exec(info);
    if (m === null) throw new Error(`no connected_clients in ${info}`);
    return Number(m[1]);
  };
  /** connections on node i that belong to a transaction: in MULTI, or last ran a transaction command */
  const txConnections = async (i: number): Promise<number> => {
    const list = String(await mode.direct(i, 'CLIENT', 'LIST'));
    return list.split('\n').filter((line) => {
      const flags = /\bflags=(\S*)/.exec(line)?.[1] ?? '';
      const cmd = /\bcmd=(\S*)/.exec(line)?.[1] ?? '';
      return flags.includes('x') || TX_COMMANDS.has(cmd);
    }).length;
  };
  /** connected_clients of every node once no transaction connection is left from earlier checks */
  const baselines = async (): Promise<number[]> => {
    for (const i of range(NODES)) await waitFor(async () => (await txConnections(i)) === 0, 5000, `no transaction connection left on node ${i}`);
    return Promise.all(range(NODES).map(connectedClients));
  };
  const backToBaseline = async (base: number[], what: string): Promise<void> => {
    for (const i of range(NODES)) {
      await waitFor(async () => (await connectedClients(i)) === base[i] && (await txConnections(i)) === 0, 5000, `${what}: node ${i} back to ${base[i]} clients`);
    }
  };

  describe(`${mode.name}: transactions`, () => {
    before(async () => {
      // every pooled connection of the proxy open (INFO keyspace asks every node), so that
      // connection counts taken later move only with dedicated connections
      const c = await client();
      assert.match(String(await c.call('INFO', 'keyspace')), /# Keyspace/);
    });
    after(() => {
      for (const c of clients) c.close();
    });

    it('MULTI, commands on one node, EXEC: the array of results, written for real', async () => {
      const c = await client();
      const t = tagOn(1, 'one');
      const [a, n] = [`{${t}}a`, `{${t}}n`];
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, 'v1'], ['INCR', n], ['INCR', n], ['GET', a], ['EXEC']]), [
        'OK', 'QUEUED', 'QUEUED', 'QUEUED', 'QUEUED', ['OK', 1, 2, 'v1'],
      ]);
      assert.equal(await c.call('GET', a), 'v1');
      assert.equal(await mode.direct(1, 'GET', a), 'v1');
      assert.equal(await mode.direct(1, 'GET', n), '2');
      for (const other of [0, 2]) assert.deepEqual(await mode.direct(other, 'KEYS', `{${t}}*`), [], `nothing on node ${other}`);

      // one request at a time: MULTI is answered before any key is known
      assert.equal(await c.call('MULTI'), 'OK');
      assert.equal(await c.call('INCRBY', n, 10), 'QUEUED');
      assert.equal(await c.call('APPEND', a, 'x'), 'QUEUED');
      assert.deepEqual(await c.call('EXEC'), [12, 3]);
      assert.equal(await mode.direct(1, 'GET', a), 'v1x');

      // an error while running (not while queuing) is one element of EXEC's array; the rest runs
      const r = await c.pipeline([['MULTI'], ['INCR', a], ['SET', a, 'v2'], ['EXEC']]);
      assert.deepEqual(r.slice(0, 3), ['OK', 'QUEUED', 'QUEUED']);
      const exec = r[3] as Resp[];
      assert.equal(exec.length, 2);
      assertErr(exec[0], 'ERR value is not an integer', 'INCR of a string inside EXEC');
      assert.equal(exec[1], 'OK');
      assert.equal(await mode.direct(1, 'GET', a), 'v2');
    });

    it('keyless commands before the first key are held; keyless only; empty MULTI/EXEC', async () => {
      const c = await client();
      const a = keyOn(2, 'keyless', 'a');
      assert.deepEqual(await c.pipeline([['MULTI'], ['PING'], ['SET', a, 'x'], ['ECHO', 'hi'], ['EXEC']]), [
        'OK', 'QUEUED', 'QUEUED', 'QUEUED', ['PONG', 'OK', 'hi'],
      ]);
      assert.equal(await mode.direct(2, 'GET', a), 'x');
      assert.deepEqual(await c.pipeline([['MULTI'], ['PING'], ['ECHO', 'x'], ['EXEC']]), ['OK', 'QUEUED', 'QUEUED', ['PONG', 'x']]);
      assert.deepEqual(await c.pipeline([['MULTI'], ['EXEC']]), ['OK', []]);
      // one at a time, held commands then a key
      assert.equal(await c.call('MULTI'), 'OK');
      assert.equal(await c.call('ECHO', 'first'), 'QUEUED');
      assert.equal(await c.call('PING', 'second'), 'QUEUED');
      assert.equal(await c.call('GET', a), 'QUEUED');
      assert.deepEqual(await c.call('EXEC'), ['first', 'second', 'x']);
    });

    it('keys on two nodes: CROSSSLOT for the offending command, EXECABORT, nothing applied', async () => {
      const c = await client();
      const a = keyOn(0, 'cross', 'a');
      const b = keyOn(1, 'cross', 'b');
      const a2 = keyOn(0, 'cross', 'a2');
      const r = await c.pipeline([['MULTI'], ['SET', a, '1'], ['SET', a2, '1'], ['SET', b, '2'], ['EXEC']]);
      assert.deepEqual(r.slice(0, 3), ['OK', 'QUEUED', 'QUEUED']);
      assertErr(r[3], 'CROSSSLOT', 'SET on another node');
      assertErr(r[4], 'EXECABORT', 'EXEC after CROSSSLOT');
      assert.equal(await mode.direct(0, 'EXISTS', a, a2), 0);
      assert.equal(await mode.direct(1, 'EXISTS', b), 0);
      assert.equal(await c.call('EXISTS', a), 0);
      assert.equal(await c.call('EXISTS', b), 0);

      // the first keyed command already spans two nodes
      const r2 = await c.pipeline([['MULTI'], ['PING'], ['MSET', a, '1', b, '2'], ['SET', a, '3'], ['EXEC']]);
      assert.deepEqual(r2.slice(0, 2), ['OK', 'QUEUED']);
      assertErr(r2[2], 'CROSSSLOT', 'MSET over two nodes');
      assert.equal(r2[3], 'QUEUED');
      assertErr(r2[4], 'EXECABORT', 'EXEC after a CROSSSLOT first command');
      assert.equal(await mode.direct(0, 'EXISTS', a), 0);
      assert.equal(await mode.direct(1, 'EXISTS', b), 0);

      // the client goes on with a fresh transaction
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', b, 'ok'], ['EXEC']]), ['OK', 'QUEUED', ['OK']]);
      assert.equal(await mode.direct(1, 'GET', b), 'ok');
    });

    it('unknown command, wrong arity, denied, SELECT and CLIENT inside MULTI: refused, and EXEC aborts', async () => {
      const c = await client();
      const t = tagOn(0, 'refused');
      const a = `{${t}}a`;
      const cases: Array<[Arg[], string]> = [
        [['NOSUCHCOMMAND', 'x'], 'ERR unknown command'],
        [['GET'], 'ERR wrong number of arguments'],
        [['DEBUG', 'SLEEP', '0'], "ERR command 'debug"], // in the default deny list
        [['SELECT', '0'], 'ERR Command not allowed inside a transaction'],
        [['CLIENT', 'SETNAME', 'x'], 'ERR Command not allowed inside a transaction'],
        [['HELLO', '2'], 'ERR Command not allowed inside a transaction'],
      ];
      for (const [cmd, err] of cases) {
        const what = cmd.join(' ');
        const r = await c.pipeline([['MULTI'], ['SET', a, what], cmd, ['INCR', `{${t}}n`], ['EXEC']]);
        assert.deepEqual(r.slice(0, 2), ['OK', 'QUEUED'], what);
        assertErr(r[2], err, what);
        assert.equal(r[3], 'QUEUED', what);
        assertErr(r[4], 'EXECABORT', `EXEC after ${what}`);
        // before any key: the same
        const r2 = await c.pipeline([['MULTI'], cmd, ['SET', a, what], ['EXEC']]);
        assertErr(r2[1], err, `${what} first`);
        assertErr(r2[3], 'EXECABORT', `EXEC after ${what} first`);
        assert.equal(await mode.direct(0, 'EXISTS', a, `{${t}}n`), 0, what);
      }
      assert.equal(await c.call('CLIENT', 'GETNAME'), null);
      // the connection is usable as before
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, 'fine'], ['EXEC']]), ['OK', 'QUEUED', ['OK']]);
      assert.equal(await mode.direct(0, 'GET', a), 'fine');
    });

    it('DISCARD drops the queue; EXEC/DISCARD without MULTI, nested MULTI and WATCH inside MULTI answer as Redis does', async () => {
      const c = await client();
      const t = tagOn(2, 'discard');
      const [a, n] = [`{${t}}a`, `{${t}}n`];
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, '1'], ['INCR', n], ['DISCARD']]), ['OK', 'QUEUED', 'QUEUED', 'OK']);
      assert.equal(await mode.direct(2, 'EXISTS', a, n), 0);
      assert.deepEqual(await c.pipeline([['MULTI'], ['PING'], ['DISCARD']]), ['OK', 'QUEUED', 'OK']);
      assert.deepEqual(await c.pipeline([['MULTI'], ['DISCARD']]), ['OK', 'OK']);

      // the same sequences straight on the server, to compare with Redis's own answers
      const sequences: Arg[][][] = [
        [['EXEC']],
        [['DISCARD']],
        [['MULTI'], ['SET', a, '2'], ['MULTI'], ['INCR', n], ['EXEC']],
        [['MULTI'], ['SET', a, '3'], ['WATCH', a], ['EXEC']],
        [['MULTI'], ['DISCARD'], ['DISCARD']],
      ];
      const expected: Resp[][] = [];
      // the proxy's answers first (they write the keys), then Redis's on a fresh key space
      for (const seq of sequences) expected.push(await c.pipeline(seq));
      assertErr(expected[0][0], 'ERR EXEC without MULTI');
      assertErr(expected[1][0], 'ERR DISCARD without MULTI');
      assertErr(expected[2][2], 'ERR MULTI calls can not be nested');
      assert.deepEqual(expected[2][4], ['OK', 1], 'a nested MULTI does not abort the transaction');
      assertErr(expected[3][2], 'ERR WATCH inside MULTI is not allowed');
      assert.deepEqual(expected[3][3], ['OK']);
      assertErr(expected[4][2], 'ERR DISCARD without MULTI');
      assert.equal(await mode.direct(2, 'GET', a), '3');

      await mode.direct(2, 'DEL', a, n);
      const raw = await directRaw(mode, 2);
      try {
        for (let i = 0; i < sequences.length; i++) {
          const redis = await raw.pipeline(sequences[i]);
          assert.deepEqual(shape(expected[i]), shape(redis), `proxy and Redis agree on ${JSON.stringify(sequences[i])}`);
        }
      } finally {
        raw.close();
      }
    });

    it('WATCH: a change by another client makes EXEC answer nil; unchanged, or after UNWATCH, it applies', async () => {
      const c = await client();
      const other = await client();
      const t = tagOn(2, 'watch');
      const [a, b] = [`{${t}}a`, `{${t}}b`];

      assert.equal(await c.call('WATCH', a, b), 'OK');
      assert.equal(await other.call('SET', a, 'changed'), 'OK');
      const r = await c.pipeline([['MULTI'], ['SET', a, 'mine'], ['SET', b, 'mine'], ['EXEC']]);
      assert.deepEqual(r, ['OK', 'QUEUED', 'QUEUED', null]);
      assert.equal(c.frames[c.frames.length - 1].toString('latin1'), '*-1\r\n', 'a null array');
      assert.equal(await mode.direct(2, 'GET', a), 'changed');
      assert.equal(await mode.direct(2, 'EXISTS', b), 0);

      // unchanged: applied
      assert.equal(await c.call('WATCH', a), 'OK');
      assert.equal(await other.call('GET', a), 'changed');
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, 'mine'], ['EXEC']]), ['OK', 'QUEUED', ['OK']]);
      assert.equal(await mode.direct(2, 'GET', a), 'mine');

      // EXEC ends the watch: a later change does not matter to the next transaction
      assert.equal(await other.call('SET', a, 'later'), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['INCR', b], ['EXEC']]), ['OK', 'QUEUED', [1]]);

      // UNWATCH, then a change: applied
      assert.equal(await c.call('WATCH', a), 'OK');
      assert.equal(await c.call('UNWATCH'), 'OK');
      assert.equal(await other.call('SET', a, 'again'), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, 'mine2'], ['EXEC']]), ['OK', 'QUEUED', ['OK']]);
      assert.equal(await mode.direct(2, 'GET', a), 'mine2');

      // the client's own write after WATCH counts too, as in Redis
      assert.equal(await c.call('WATCH', a), 'OK');
      assert.equal(await c.call('SET', a, 'self'), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, 'mine3'], ['EXEC']]), ['OK', 'QUEUED', null]);
      assert.equal(await mode.direct(2, 'GET', a), 'self');

      // DISCARD ends the watch too
      assert.equal(await c.call('WATCH', a), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, 'x'], ['DISCARD']]), ['OK', 'QUEUED', 'OK']);
      assert.equal(await other.call('SET', a, 'after-discard'), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['GET', a], ['EXEC']]), ['OK', 'QUEUED', ['after-discard']]);
    });

    it('WATCH of a key on one node, then keys on another: CROSSSLOT and EXECABORT', async () => {
      const c = await client();
      const a = keyOn(2, 'wcross', 'a');
      const b = keyOn(0, 'wcross', 'b');
      assert.equal(await c.call('WATCH', a), 'OK');
      const r = await c.pipeline([['MULTI'], ['SET', b, 'x'], ['EXEC']]);
      assert.equal(r[0], 'OK');
      assertErr(r[1], 'CROSSSLOT', 'SET elsewhere after WATCH');
      assertErr(r[2], 'EXECABORT', 'EXEC');
      assert.equal(await mode.direct(0, 'EXISTS', b), 0);
      // WATCH of keys on two nodes, at once or one after the other
      assertErr(await c.call('WATCH', a, b), 'CROSSSLOT', 'WATCH over two nodes');
      assert.equal(await c.call('WATCH', a), 'OK');
      assertErr(await c.call('WATCH', b), 'CROSSSLOT', 'second WATCH on another node');
      assert.equal(await c.call('UNWATCH'), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', b, 'y'], ['EXEC']]), ['OK', 'QUEUED', ['OK']]);
      assert.equal(await mode.direct(0, 'GET', b), 'y');
    });

    it('RESP3 client: EXEC answers in RESP3, and a broken WATCH gives a RESP3 null', async () => {
      const c = await client();
      const other = await client();
      const t = tagOn(1, 'resp3');
      const [a, h] = [`{${t}}a`, `{${t}}h`];
      const hello = await c.call('HELLO', '3');
      assert.ok(hello !== null && typeof hello === 'object' && 'map' in hello, 'HELLO 3 answers a map');
      const r = await c.pipeline([['MULTI'], ['HSET', h, 'f', 'v'], ['HGETALL', h], ['SET', a, '1'], ['EXEC']]);
      assert.deepEqual(r, ['OK', 'QUEUED', 'QUEUED', 'QUEUED', [1, { map: [['f', 'v']] }, 'OK']]);
      assert.equal(await c.call('WATCH', a), 'OK');
      assert.equal(await other.call('SET', a, '2'), 'OK');
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', a, '3'], ['EXEC']]), ['OK', 'QUEUED', null]);
      assert.equal(c.frames[c.frames.length - 1].toString('latin1'), '_\r\n', 'a RESP3 null');
      assert.equal(await mode.direct(1, 'GET', a), '2');
    });

    it('a client that leaves mid-transaction: nothing applied, and its dedicated connection closes', async () => {
      const t = tagOn(0, 'leave');
      const k = `{${t}}k`;
      const base = await baselines();

      const c = await Raw.connect(mode.port());
      assert.deepEqual(await c.pipeline([['MULTI'], ['SET', k, 'v'], ['INCR', `{${t}}n`]]), ['OK', 'QUEUED', 'QUEUED']);
      assert.equal(await connectedClients(0), base[0] + 1, 'the dedicated connection is open on the node of the key');
      assert.equal(await txConnections(0), 1);
      for (const i of [1, 2]) assert.equal(await connectedClients(i), base[i]);
      c.close();
      await backToBaseline(base, 'after a client left in MULTI');
      assert.equal(await mode.direct(0, 'EXISTS', k, `{${t}}n`), 0);

      // leaving while WATCHing (no MULTI yet)
      const w = await Raw.connect(mode.port());
      assert.equal(await w.call('WATCH', k), 'OK');
      assert.equal(await connectedClients(0), base[0] + 1, 'WATCH opened the dedicated connection');
      w.close();
      await backToBaseline(base, 'after a client left while WATCHing');

      // leaving with held keyless commands only: no connection was ever opened
      const h = await Raw.connect(mode.port());
      assert.deepEqual(await h.pipeline([['MULTI'], ['PING']]), ['OK', 'QUEUED']);
      for (const i of range(NODES)) assert.equal(await txConnections(i), 0);
      h.close();
      await h.waitClosed();
      await backToBaseline(base, 'after a client left with held commands');
      assert.equal(await mode.direct(0, 'EXISTS', k), 0);
    });

    it('many transactions at once: every counter exact, no dedicated connection left over', async () => {
      const CLIENTS = 20;
      const ROUNDS = 10;
      const base = await baselines();
      const shared = keyOn(1, 'many-shared', 'c');
      const tags = range(CLIENTS).map((i) => tagOn(i % NODES, `many${i}`));
      const many = await Promise.all(range(CLIENTS).map(() => client()));
      const sharedSeen: number[] = [];
      await Promise.all(
        many.map(async (c, i) => {
          const [a, b] = [`{${tags[i]}}a`, `{${tags[i]}}b`];
          for (let j = 1; j <= ROUNDS; j++) {
            // two transactions in one write
            const r = await c.pipeline([
              ['MULTI'], ['INCR', a], ['INCRBY', b, 2], ['GET', a], ['EXEC'],
              ['MULTI'], ['INCR', shared], ['EXEC'],
            ]);
            assert.deepEqual(r.slice(0, 5), ['OK', 'QUEUED', 'QUEUED', 'QUEUED', [j, 2 * j, String(j)]], `client ${i} round ${j}`);
            assert.deepEqual(r.slice(5, 7), ['OK', 'QUEUED']);
            const exec = r[7] as number[];
            assert.equal(exec.length, 1);
            sharedSeen.push(exec[0]);
          }
        }),
      );
      for (const i of range(CLIENTS)) {
        const owner = i % NODES;
        assert.equal(await mode.direct(owner, 'GET', `{${tags[i]}}a`), String(ROUNDS));
        assert.equal(await mode.direct(owner, 'GET', `{${tags[i]}}b`), String(2 * ROUNDS));
      }
      assert.equal(await mode.direct(1, 'GET', shared), String(CLIENTS * ROUNDS));
      assert.deepEqual(sharedSeen.sort((x, y) => x - y), range(CLIENTS * ROUNDS).map((x) => x + 1));
      // the clients are still connected: EXEC gave their dedicated connections back
      await backToBaseline(base, 'after many transactions');
    });

    it('stock clients: ioredis multi/exec and watch, node-redis (RESP2 and RESP3) multi/exec and watch', async () => {
      const t = tagOn(1, 'stock');
      const [a, n] = [`{${t}}a`, `{${t}}n`];
      const elsewhere = keyOn(2, 'stock', 'e');
      const io = new Redis({ port: mode.port(), host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      const io2 = new Redis({ port: mode.port(), host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      const nodeClients = [2, 3].map((RESP) => {
        const nc = createClient({ socket: { host: '127.0.0.1', port: mode.port(), connectTimeout: 3000, reconnectStrategy: false }, RESP: RESP as 2 | 3 });
        nc.on('error', () => undefined);
        return nc;
      });
      try {
        await io.connect();
        await io2.connect();
        assert.deepEqual(await io.multi().set(a, '1').incr(n).get(a).exec(), [[null, 'OK'], [null, 1], [null, '1']]);
        assert.equal(await mode.direct(1, 'GET', n), '1');
        await io.watch(a);
        await io2.set(a, 'changed');
        assert.equal(await io.multi().set(a, 'mine').exec(), null);
        assert.equal(await mode.direct(1, 'GET', a), 'changed');
        await io.watch(a);
        assert.deepEqual(await io.multi().set(a, 'mine').exec(), [[null, 'OK']]);
        assert.equal(await io2.get(a), 'mine');
        await assert.rejects(io.multi().set(a, 'x').set(elsewhere, 'y').exec(), /EXECABORT/);
        assert.equal(await io2.get(a), 'mine');
        assert.equal(await io2.exists(elsewhere), 0);

        for (const nc of nodeClients) {
          await nc.connect();
          assert.deepEqual(await nc.multi().set(a, 'nr').incr(n).get(a).exec(), ['OK', 2 + nodeClients.indexOf(nc), 'nr']);
          await nc.watch(a);
          await io2.set(a, 'changed-again');
          await assert.rejects(nc.multi().set(a, 'nr-mine').exec(), WatchError);
          assert.equal(await io2.get(a), 'changed-again');
          await nc.watch(a);
          assert.deepEqual(await nc.multi().set(a, 'nr-mine').exec(), ['OK']);
          assert.equal(await io2.get(a), 'nr-mine');
        }
      } finally {
        io.disconnect();
        io2.disconnect();
        for (const nc of nodeClients) if (nc.isOpen) nc.destroy();
      }
    });

    it('pipelined plain commands around a transaction keep their order (replies and effects)', async () => {
      const c = await client();
      const t = tagOn(0, 'order');
      const [a, x] = [`{${t}}a`, `{${t}}x`];
      const o = keyOn(1, 'order', 'o');
      const cmds: Arg[][] = [
        ['SET', o, 'o1'], ['SET', a, '1'],
        ['MULTI'], ['INCR', x], ['GET', a], ['EXEC'],
        ['GET', a], ['GET', o],
      ];
      const first = c.expectMore(cmds.length);
      c.write(Buffer.concat(cmds.map(encodeCmd)));
      await c.waitReplies(first + cmds.length);
      assert.deepEqual(c.replies.slice(first), ['OK', 'OK', 'OK', 'QUEUED', 'QUEUED', [1, '1'], '1', 'o1']);
    });

    it('a write and a read pipelined right after EXEC run after the transaction', async () => {
      const c = await client();
      const t = tagOn(0, 'order2');
      const [a, x] = [`{${t}}a`, `{${t}}x`];
      const cmds: Arg[][] = [
        ['SET', a, 'old'],
        ['MULTI'], ['SET', a, 'new'], ['INCR', x], ['EXEC'],
        ['GET', a], ['INCR', x],
      ];
      const first = c.expectMore(cmds.length);
      c.write(Buffer.concat(cmds.map(encodeCmd)));
      await c.waitReplies(first + cmds.length);
      assert.deepEqual(c.replies.slice(first), ['OK', 'OK', 'QUEUED', 'QUEUED', ['OK', 1], 'new', 2]);
    });

    it('a write pipelined between WATCH and MULTI breaks the watch, as in Redis', async () => {
      const c = await client();
      const w = keyOn(1, 'order3', 'w');
      const cmds: Arg[][] = [['SET', w, '0'], ['WATCH', w], ['SET', w, '1'], ['MULTI'], ['SET', w, '2'], ['EXEC'], ['GET', w]];
      const first = c.expectMore(cmds.length);
      c.write(Buffer.concat(cmds.map(encodeCmd)));
      await c.waitReplies(first + cmds.length);
      assert.deepEqual(c.replies.slice(first), ['OK', 'OK', 'OK', 'OK', 'QUEUED', null, '1']);
    });
  });
}

/** a raw connection straight to node i of a mode (its port from INFO server) */
async function directRaw(mode: Mode, i: number): Promise<Raw> {
  const info = String(await mode.direct(i, 'INFO', 'server'));
  const m = /tcp_port:(\d+)/.exec(info);
  if (m === null) throw new Error('no tcp_port in INFO server');
  return Raw.connect(Number(m[1]));
}

/** replies with error messages cut to their first word: what must agree between proxy and Redis */
function shape(replies: Resp[]): unknown[] {
  return replies.map((r) => (r instanceof RespErr ? `-${r.message.split(' ')[0]}` : Array.isArray(r) ? shape(r) : r));
}

describe('transactions, standalone mode', { timeout: 60_000 }, () => {
  let servers: RedisProc[] = [];
  let proxy: RunningProxy;
  let ring: Ketama;
  const direct: Raw[] = [];

  before(async () => {
    servers = await Promise.all(range(NODES).map(() => startRedis()));
    const aliases = servers.map((_, i) => `tx${i}`);
    const toml = `[[clusters]]
name = "tx"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
hash_tag = "{}"
thread = 1
servers = [${servers.map((s, i) => `"127.0.0.1:${s.port}:1 ${aliases[i]}"`).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'tx.toml').config, opts);
    ring = new Ketama(aliases.map((name) => ({ name, weight: 1 })));
    direct.push(...(await Promise.all(servers.map((s) => Raw.connect(s.port)))));
  });
  after(async () => {
    for (const d of direct) d.close();
    await proxy?.close();
    await stopAll();
  });

  sharedChecks({
    name: 'standalone',
    port: () => proxy.listeners[0].port,
    ownerOf: (key) => ring.serverFor(Buffer.from(key, 'latin1'), '{}'),
    direct: (i, ...args) => direct[i].call(...args),
  });
});

describe('transactions, cluster mode', { timeout: 60_000 }, () => {
  let cluster: RedisCluster;
  let proxy: RunningProxy;
  const port = (): number => proxy.listeners[0].port;
  const ownerOf = (key: string): number => {
    const slot = keySlot(Buffer.from(key, 'latin1'));
    return cluster.ranges.findIndex(([lo, hi]) => slot >= lo && slot <= hi);
  };

  before(async () => {
    cluster = await startCluster({ replicasPerMaster: 0 });
    const toml = `[[clusters]]
name = "txc"
listen_addr = "127.0.0.1:0"
thread = 1
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
`;
    proxy = await startProxy(parseConfig(toml, 'txc.toml').config, opts);
    const c = await Raw.connect(port());
    try {
      await waitFor(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the proxy has the slot map');
    } finally {
      c.close();
    }
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await stopAll();
  });

  sharedChecks({
    name: 'cluster',
    port,
    ownerOf,
    direct: (i, ...args) => cluster.call(cluster.masters[i], ...args),
  });

  it('keys of two slots on the same master: CROSSSLOT (a transaction stays on one slot), EXECABORT', async () => {
    const c = await Raw.connect(port());
    try {
      const tags: string[] = [];
      for (let n = 0; tags.length < 2 && n < 100_000; n++) {
        const tag = `${n}:sameNode`;
        if (ownerOf(`{${tag}}`) === 0 && (tags.length === 0 || keySlot(Buffer.from(tags[0])) !== keySlot(Buffer.from(tag)))) tags.push(tag);
      }
      const [a, b] = tags.map((t) => `{${t}}k`);
      const r = await c.pipeline([['MULTI'], ['SET', a, '1'], ['SET', b, '2'], ['EXEC']]);
      assert.deepEqual(r.slice(0, 2), ['OK', 'QUEUED']);
      assertErr(r[2], 'CROSSSLOT', 'another slot of the same master');
      assertErr(r[3], 'EXECABORT', 'EXEC');
      assert.equal(await cluster.call(cluster.masters[0], 'EXISTS', a), 0);
      assert.equal(await cluster.call(cluster.masters[0], 'EXISTS', b), 0);
    } finally {
      c.close();
    }
  });

  it('the slot moves under a WATCH: the queued command gets TRYAGAIN, EXEC aborts, and a retry runs on the new owner', async () => {
    const c = await Raw.connect(port());
    try {
      let tag = '';
      for (let n = 0; tag === '' && n < 100_000; n++) if (ownerOf(`{${n}:moving}`) === 0) tag = `${n}:moving`;
      const k = `{${tag}}k`;
      const slot = keySlot(Buffer.from(k));
      assert.equal(await c.call('WATCH', k), 'OK');
      await cluster.moveSlot(slot, cluster.masters[0], cluster.masters[1]);
      const r = await c.pipeline([['MULTI'], ['SET', k, 'v'], ['EXEC']]);
      assert.equal(r[0], 'OK');
      assertErr(r[1], 'TRYAGAIN', 'SET on a slot that moved');
      assertErr(r[2], 'EXECABORT', 'EXEC');
      assert.equal(await cluster.call(cluster.masters[1], 'EXISTS', k), 0);
      // the proxy refreshed its map: the transaction runs again on the new owner
      await waitFor(async () => {
        const again = await c.pipeline([['MULTI'], ['SET', k, 'v'], ['EXEC']]);
        return Array.isArray(again[2]) && again[2][0] === 'OK';
      }, 10_000, 'the transaction runs on the new owner');
      assert.equal(await cluster.call(cluster.masters[1], 'GET', k), 'v');
    } finally {
      c.close();
    }
  });
});
