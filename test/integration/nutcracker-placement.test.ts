/**
 * The oracle for ketama placement: keys are written through a real nutcracker (twemproxy 0.5.0),
 * then each backend is asked which keys it holds, and `Ketama.serverFor` must name the same
 * backend for every key. Each discriminating detail (float point counts, the 11211 name rule,
 * signed-char FNV, hash tags) is also shown to matter: the naive variant disagrees with
 * nutcracker on some keys of the same set.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { hashTagRange } from '../../src/routing/hashtag.js';
import { Ketama, ketamaPointsPerServer, twemproxyServerName, type KetamaServer } from '../../src/routing/ketama.js';
import {
  freePort,
  startNutcracker,
  startRedis,
  stopAll,
  waitFor,
  type NutcrackerProc,
  type RedisProc,
} from '../helpers/servers.js';

const BACKENDS = 5;

// ---------------------------------------------------------------------------------------------
// keys

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

/** ~3000 distinct keys: ASCII, random bytes (half of them >= 0x80), UTF-8, hash tags, tag edge cases, "" */
function makeKeys(seed: number): Buffer[] {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const keys: Buffer[] = [];
  const text = (s: string): void => void keys.push(Buffer.from(s, 'utf8'));
  for (let i = 0; i < 1000; i++) text(`key:${i}`);
  for (let i = 0; i < 500; i++) {
    let s = '';
    for (let j = 1 + int(30); j > 0; j--) s += String.fromCharCode(0x21 + int(94));
    text(s);
  }
  for (let i = 0; i < 600; i++) {
    const b = Buffer.alloc(1 + int(24));
    for (let j = 0; j < b.length; j++) b[j] = int(256);
    keys.push(b);
  }
  for (let i = 0; i < 80; i++) {
    text(`ключ:${i}`);
    text(`キー${i}`);
    text(`😀${i}`);
    text(`é${i}ß`);
  }
  for (let i = 0; i < 100; i++) {
    text(`{user:${i % 37}}:field${i}`);
    text(`{ключ${i % 11}}:${i}`);
    text(`pre{${i % 13}}post${i}`);
    const tagged = Buffer.from(`{..}:${i}`);
    tagged[1] = 0x80 + (i % 5);
    tagged[2] = 0xff - (i % 3);
    keys.push(tagged);
  }
  for (let i = 0; i < 40; i++) {
    for (const s of [`a{}b${i}`, `{}x${i}`, `x{${i}`, `}{${i}}`, `{{${i % 7}}}${i}`, `{a}{b}${i}`, `${i}}{`]) text(s);
  }
  text('');
  text('{}');
  const seen = new Set<string>();
  return keys.filter((k) => {
    const hex = k.toString('hex');
    if (seen.has(hex)) return false;
    seen.add(hex);
    return true;
  });
}

const KEYS = makeKeys(20240517);

// ---------------------------------------------------------------------------------------------
// talking to the servers

const clientOptions = {
  host: '127.0.0.1',
  enableReadyCheck: false, // nutcracker does not know INFO
  disableClientInfo: true, // nor CLIENT SETINFO: it closes the connection on unknown commands
  retryStrategy: () => null,
  maxRetriesPerRequest: 0,
  lazyConnect: true,
};

function connect(port: number): Redis {
  const client = new Redis({ ...clientOptions, port });
  client.on('error', () => undefined); // failures surface through the commands
  return client;
}

let backends: RedisProc[] = [];
let direct: Redis[] = [];

interface PoolServer {
  backend: number; // index into `backends`
  weight: number;
  alias?: string;
}

function specOf(s: PoolServer): string {
  const base = `127.0.0.1:${backends[s.backend]!.port}:${s.weight}`;
  return s.alias === undefined ? base : `${base} ${s.alias}`;
}

function ringOf(pool: PoolServer[], naming = twemproxyServerName, options = {}): Ketama {
  const servers: KetamaServer[] = pool.map((s) => ({
    name: naming('127.0.0.1', backends[s.backend]!.port, s.alias),
    weight: s.weight,
  }));
  return new Ketama(servers, options);
}

/**
 * Writes every key through a nutcracker over `pool`, then returns, for each key, the index (into
 * `pool`) of the one backend that holds it.
 */
async function placeThroughNutcracker(
  pool: PoolServer[],
  keys: Buffer[],
  opts: { hashTag?: string; servers?: string[] } = {},
): Promise<number[]> {
  await Promise.all(direct.map((c) => c.flushall()));
  const nc = await startNutcracker({ servers: opts.servers ?? pool.map(specOf), hashTag: opts.hashTag });
  try {
    const client = connect(nc.port);
    try {
      await client.connect();
      const pipeline = client.pipeline();
      for (const key of keys) pipeline.set(key, '1');
      const results = (await pipeline.exec())!;
      results.forEach(([err, reply], i) => {
        assert.equal(err, null, `SET ${keys[i]!.toString('hex')} through nutcracker: ${String(err)}`);
        assert.equal(reply, 'OK');
      });
    } finally {
      client.disconnect();
    }
  } finally {
    await nc.stop();
  }
  const holders = keys.map((): number[] => []);
  await Promise.all(
    pool.map(async (s, poolIndex) => {
      const pipeline = direct[s.backend]!.pipeline();
      for (const key of keys) pipeline.exists(key);
      const results = (await pipeline.exec())!;
      results.forEach(([err, n], i) => {
        assert.equal(err, null);
        if (n === 1) holders[i]!.push(poolIndex);
      });
    }),
  );
  return holders.map((h, i) => {
    assert.equal(h.length, 1, `key ${keys[i]!.toString('hex')} is on pool servers [${h.join(',')}]`);
    return h[0]!;
  });
}

/** keys on which `placeOf` disagrees with nutcracker's placement */
function disagreements(keys: Buffer[], actual: number[], placeOf: (key: Buffer) => number): Buffer[] {
  return keys.filter((key, i) => placeOf(key) !== actual[i]);
}

function assertSamePlacement(keys: Buffer[], actual: number[], ring: Ketama, hashTag?: string): void {
  const wrong = disagreements(keys, actual, (k) => ring.serverFor(k, hashTag));
  assert.equal(
    wrong.length,
    0,
    `${wrong.length}/${keys.length} keys placed differently from nutcracker, e.g. ${wrong
      .slice(0, 5)
      .map((k) => k.toString('hex'))
      .join(' ')}`,
  );
}

/** FNV as it would be with `unsigned char`: the mistake the signed-char rule guards against */
function fnvUnsignedChar(key: Uint8Array, start: number, end: number): number {
  let h = 0x84222325;
  for (let i = start; i < end; i++) h = Math.imul(h ^ key[i]!, 0x1b3);
  return h >>> 0;
}

const hasHighByte = (key: Buffer): boolean => key.some((b) => b >= 0x80);

// ---------------------------------------------------------------------------------------------

describe('ketama placement matches nutcracker 0.5.0', { timeout: 120_000 }, () => {
  before(async () => {
    backends = await Promise.all(Array.from({ length: BACKENDS }, () => startRedis()));
    direct = backends.map((b) => connect(b.port));
    await Promise.all(direct.map((c) => c.connect()));
  });

  after(async () => {
    for (const c of direct) c.disconnect();
    const pids = backends.map((b) => b.pid);
    await stopAll();
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `pid ${pid} still running`);
  });

  const weighted: PoolServer[] = [
    { backend: 0, weight: 1, alias: 'alpha' },
    { backend: 1, weight: 2 },
    { backend: 2, weight: 3, alias: 'gamma' },
    { backend: 3, weight: 1 },
  ];
  let weightedPlacement: number[] = [];

  it('weights 1,2,3,1 with aliases on some servers', async () => {
    const actual = await placeThroughNutcracker(weighted, KEYS);
    const ring = ringOf(weighted);
    assert.deepEqual(ring.pointsPerServer, [88, 180, 272, 88]);
    assertSamePlacement(KEYS, actual, ring);
    // every backend got keys
    for (let s = 0; s < weighted.length; s++) assert.ok(actual.includes(s), `no key on server ${s}`);
    weightedPlacement = actual.map((p) => weighted[p]!.backend);

    // signed char matters: reading bytes as unsigned misplaces keys with bytes >= 0x80 (only them)
    const unsignedWrong = disagreements(KEYS, actual, (k) => (k.length === 0 ? ring.lookup(0) : ring.lookup(fnvUnsignedChar(k, 0, k.length))));
    assert.ok(unsignedWrong.length > 50, `unsigned-char FNV disagrees on only ${unsignedWrong.length} keys`);
    assert.ok(unsignedWrong.every(hasHighByte));
  });

  it('the same servers listed in another order place every key on the same backend', async () => {
    const reordered = [weighted[3]!, weighted[2]!, weighted[0]!, weighted[1]!];
    const actual = await placeThroughNutcracker(reordered, KEYS);
    assertSamePlacement(KEYS, actual, ringOf(reordered));
    assert.deepEqual(
      actual.map((p) => reordered[p]!.backend),
      weightedPlacement,
    );
  });

  it('hash tag "{}" on a pool without aliases', async () => {
    const pool: PoolServer[] = [0, 1, 2, 3].map((backend) => ({ backend, weight: 1 }));
    const actual = await placeThroughNutcracker(pool, KEYS, { hashTag: '{}' });
    const ring = ringOf(pool);
    assertSamePlacement(KEYS, actual, ring, '{}');
    // the tag matters: ignoring it misplaces tagged keys
    const untagged = disagreements(KEYS, actual, (k) => ring.serverFor(k));
    assert.ok(untagged.length > 50, `ignoring the tag disagrees on only ${untagged.length} keys`);
    // keys with the same tag share a server
    const byTag = new Map<string, Set<number>>();
    KEYS.forEach((k, i) => {
      const [s, e] = hashTagRange(k, '{}');
      if (e - s === k.length) return;
      const tag = k.subarray(s, e).toString('hex');
      if (!byTag.has(tag)) byTag.set(tag, new Set());
      byTag.get(tag)!.add(actual[i]!);
    });
    assert.ok(byTag.size > 50);
    for (const [tag, servers] of byTag) assert.equal(servers.size, 1, `tag ${tag} spread over ${[...servers]}`);
  });

  it('weights 1,2,3,4,15: point counts need twemproxy float arithmetic', async () => {
    const pool: PoolServer[] = [
      { backend: 0, weight: 1 },
      { backend: 1, weight: 2 },
      { backend: 2, weight: 3 },
      { backend: 3, weight: 4 },
      { backend: 4, weight: 15, alias: 'big' },
    ];
    const exact = (w: number, total: number, live: number): number => Math.floor((w / total) * 40 * live + 1e-10) * 4;
    assert.deepEqual(
      pool.map((s) => ketamaPointsPerServer(s.weight, 25, 5)),
      [28, 60, 92, 124, 480],
    );
    assert.deepEqual(
      pool.map((s) => exact(s.weight, 25, 5)),
      [32, 64, 96, 128, 480],
    );
    const actual = await placeThroughNutcracker(pool, KEYS);
    assertSamePlacement(KEYS, actual, ringOf(pool));
    const doubleRing = ringOf(pool, twemproxyServerName, { pointsPerServer: exact });
    const wrong = disagreements(KEYS, actual, (k) => doubleRing.serverFor(k));
    assert.ok(wrong.length > 0, 'double-precision point counts would place every key the same: the case does not discriminate');
  });

  it('a one-server pool', async () => {
    const pool: PoolServer[] = [{ backend: 2, weight: 5 }];
    const actual = await placeThroughNutcracker(pool, KEYS.slice(0, 500));
    assert.ok(actual.every((p) => p === 0));
    const ring = ringOf(pool);
    assert.ok(KEYS.every((k) => ring.serverFor(k) === 0));
  });

  it('all servers aliased: placement independent of ports (recorded for the unit test)', async () => {
    const pool: PoolServer[] = [
      { backend: 0, weight: 1, alias: 'alpha' },
      { backend: 1, weight: 2, alias: 'beta' },
      { backend: 2, weight: 3, alias: 'gamma' },
      { backend: 3, weight: 1, alias: 'delta' },
    ];
    const actual = await placeThroughNutcracker(pool, KEYS);
    const ring = ringOf(pool);
    assertSamePlacement(KEYS, actual, ring);
    // An empty key hashes to 0 in twemproxy, not to the FNV offset basis; this pool tells the two apart.
    assert.notEqual(ring.lookup(0), ring.lookup(0x84222325));
    const empty = KEYS.findIndex((k) => k.length === 0);
    assert.equal(actual[empty], ring.lookup(0));
    // the vectors hard-coded in test/unit/ketama.test.ts ("recorded from nutcracker")
    const recorded = ['foo', 'bar', 'key:1', 'key:2', 'key:3', 'ключ:1', 'キー1', '😀1', ''];
    const recordedActual = await placeThroughNutcracker(
      pool,
      recorded.map((s) => Buffer.from(s)),
    );
    assert.deepEqual(recordedActual, RECORDED_ALIAS_POOL);
  });

  it('port 11211 is left out of the server name', async (t) => {
    let r11211: RedisProc;
    try {
      r11211 = await startRedis({ port: 11211 });
    } catch (err) {
      t.skip(`port 11211 unavailable: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    try {
      const d = connect(11211);
      await d.connect();
      try {
        await d.flushall();
        backends.push(r11211);
        direct.push(d);
        const pool: PoolServer[] = [
          { backend: BACKENDS, weight: 1 },
          { backend: 0, weight: 1 },
          { backend: 1, weight: 1 },
        ];
        const actual = await placeThroughNutcracker(pool, KEYS);
        assert.equal(twemproxyServerName('127.0.0.1', 11211), '127.0.0.1');
        assertSamePlacement(KEYS, actual, ringOf(pool));
        const withPort = ringOf(pool, (host, port, alias) => alias ?? `${host}:${port}`);
        assert.ok(disagreements(KEYS, actual, (k) => withPort.serverFor(k)).length > 50);
      } finally {
        backends.pop();
        direct.pop();
        d.disconnect();
      }
    } finally {
      await r11211.stop();
    }
  });
});

/** nutcracker's placement of ['foo','bar','key:1','key:2','key:3','ключ:1','キー1','😀1',''] on alpha:1 beta:2 gamma:3 delta:1 */
const RECORDED_ALIAS_POOL = [2, 3, 2, 2, 2, 1, 1, 2, 3];

describe('test harness (servers.ts)', { timeout: 60_000 }, () => {
  after(stopAll);

  it('freePort does not hand out the same port twice', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    assert.equal(new Set(ports).size, ports.length);
    const bus = await freePort({ clusterBus: true });
    assert.ok(bus + 10000 <= 65535);
  });

  it('redis: kill, exited, restart on the same port, stop removes the dir', async () => {
    const r = await startRedis();
    const c = connect(r.port);
    await c.connect();
    assert.equal(await c.ping(), 'PONG');
    const firstPid = r.pid;
    const dir = r.dir;
    assert.ok(fs.existsSync(dir));
    r.kill('SIGKILL');
    assert.equal(await r.exited, null);
    await r.restart();
    assert.notEqual(r.pid, firstPid);
    const c2 = connect(r.port);
    await c2.connect();
    assert.equal(await c2.ping(), 'PONG');
    c.disconnect();
    c2.disconnect();
    const pid = r.pid;
    await r.stop();
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    assert.ok(!fs.existsSync(dir));
    await r.stop(); // idempotent
  });

  it('nutcracker: bad config fails with its log; waitFor times out with a message', async () => {
    await assert.rejects(startNutcracker({ servers: ['not a server'], port: await freePort() }), /nutcracker/);
    await assert.rejects(waitFor(() => false, 50, 'nothing'), /timed out after 50 ms waiting for nothing/);
    let n = 0;
    await waitFor(() => ++n > 3, 1000);
    const nc: NutcrackerProc = await startNutcracker({ servers: ['127.0.0.1:1:1'], extra: { timeout: '100' } });
    assert.match(fs.readFileSync(nc.configPath, 'utf8'), /timeout: 100/);
    await nc.stop();
    assert.ok(!fs.existsSync(nc.dir));
  });
});
