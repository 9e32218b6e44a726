/**
 * The Redis Cluster test harness (test/helpers/cluster.ts) against real redis-servers: it starts
 * healthy with the deterministic layout; keySlot is Redis's; moveSlot moves a slot with its keys
 * (the old owner answers MOVED); a migration half done gives ASK on the old owner and the key on
 * the new one only after ASKING; killing a master promotes its replica; stop() and a start that
 * fails half-way leave no process behind.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startCluster, type RedisCluster } from '../helpers/cluster.js';
import { Raw, RespErr, assertErr } from '../helpers/raw-client.js';
import { stopAll } from '../helpers/servers.js';

/** PIDs of the redis-server processes that are children of this test process (Linux /proc) */
function redisChildren(): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    if (ppid === process.pid && comm.startsWith('redis-server')) out.push(Number(entry));
  }
  return out.sort((a, b) => a - b);
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function infoField(reply: unknown, key: string): string | undefined {
  assert.equal(typeof reply, 'string', `INFO reply ${JSON.stringify(reply)}`);
  const line = (reply as string).split('\r\n').find((l) => l.startsWith(`${key}:`));
  return line?.slice(key.length + 1);
}

describe('cluster harness', () => {
  let c: RedisCluster;
  let startMs = 0;

  before(async () => {
    const t0 = Date.now();
    c = await startCluster();
    startMs = Date.now() - t0;
  });

  after(async () => {
    await c?.stop();
    await stopAll();
  });

  it('starts healthy with the deterministic layout', async (t) => {
    t.diagnostic(`startCluster took ${startMs} ms`);
    assert.equal(c.masters.length, 3);
    assert.equal(c.replicas.length, 3);
    assert.deepEqual(c.nodes, [...c.masters, ...c.replicas]);
    assert.deepEqual(c.addrs(), c.nodes.map((n) => `127.0.0.1:${n.port}`));
    assert.equal(new Set(c.addrs()).size, 6);
    assert.deepEqual(c.ranges, [[0, 5460], [5461, 10922], [10923, 16383]]);

    const expected = [
      { start: 0, end: 5460, master: c.addr(c.masters[0]), replicas: [c.addr(c.replicas[0])] },
      { start: 5461, end: 10922, master: c.addr(c.masters[1]), replicas: [c.addr(c.replicas[1])] },
      { start: 10923, end: 16383, master: c.addr(c.masters[2]), replicas: [c.addr(c.replicas[2])] },
    ];
    for (const node of c.nodes) {
      // the raw reply too, not only the harness's parse of it
      const raw = await c.call(node, 'CLUSTER', 'SLOTS');
      assert.ok(Array.isArray(raw) && raw.length === 3, `${c.label(node)}: CLUSTER SLOTS ${JSON.stringify(raw)}`);
      assert.deepEqual(await c.slots(node), expected, `CLUSTER SLOTS seen from ${c.label(node)}`);
      const info = await c.call(node, 'CLUSTER', 'INFO');
      assert.equal(infoField(info, 'cluster_state'), 'ok', c.label(node));
      assert.equal(infoField(info, 'cluster_known_nodes'), '6', c.label(node));
      assert.equal(infoField(info, 'cluster_size'), '3', c.label(node));
    }
    for (let i = 0; i < 3; i++) {
      const master = c.masters[i];
      const replica = c.replicas[i];
      assert.deepEqual(c.replicasOf(i), [replica]);
      assert.equal(await c.ownerOf(c.ranges[i][0]), master);
      assert.equal(await c.ownerOf(c.ranges[i][1], replica), master);
      const masterId = await c.nodeId(master);
      assert.equal(await c.call(master, 'CLUSTER', 'MYID'), masterId);
      const listed = await c.call(master, 'CLUSTER', 'REPLICAS', masterId);
      assert.ok(Array.isArray(listed) && listed.length === 1, `CLUSTER REPLICAS of ${c.label(master)}: ${JSON.stringify(listed)}`);
      assert.ok(String(listed[0]).startsWith(`${await c.nodeId(replica)} 127.0.0.1:${replica.port}@`), String(listed[0]));
      assert.match(String(listed[0]), / slave /);
      const replication = await c.call(replica, 'INFO', 'replication');
      assert.equal(infoField(replication, 'role'), 'slave', c.label(replica));
      assert.equal(infoField(replication, 'master_port'), String(master.port), c.label(replica));
      assert.equal(infoField(replication, 'master_link_status'), 'up', c.label(replica));
    }
    // distinct config epochs, as set at start
    const epochs = await Promise.all(c.nodes.map(async (n) => infoField(await c.call(n, 'CLUSTER', 'INFO'), 'cluster_my_epoch')));
    assert.deepEqual(epochs.slice(0, 3), ['1', '2', '3']);
  });

  it('keySlot is the slot Redis computes', async () => {
    assert.equal(await c.keySlot('foo'), 12182);
    assert.equal(await c.keySlot('bar'), 5061);
    assert.equal(await c.keySlot(''), 0);
    assert.equal(await c.keySlot('{user1}:a'), await c.keySlot('{user1}:b'));
    assert.equal(await c.keySlot('{user1}:a'), await c.keySlot('user1'));
    assert.notEqual(await c.keySlot('user1:a'), await c.keySlot('user1:b'));
  });

  it('moveSlot moves a slot with its keys; the old owner answers MOVED', async () => {
    const [m0, m1, m2] = c.masters;
    const slot = 12182; // {foo}, owned by masters[2]
    const keys = Array.from({ length: 150 }, (_v, i) => `{foo}:${i}`); // more than one MIGRATE batch
    assert.equal(await c.ownerOf(slot), m2);
    const set = await c.pipeline(m2, keys.map((k) => ['SET', k, `v-${k}`]));
    assert.ok(set.every((r) => r === 'OK'), JSON.stringify(set.find((r) => r !== 'OK')));

    await c.moveSlot(slot, m2, m0);

    for (const node of c.live()) assert.equal(await c.ownerOf(slot, node), m0, `owner of ${slot} seen from ${c.label(node)}`);
    assert.equal(await c.call(m0, 'CLUSTER', 'COUNTKEYSINSLOT', slot), keys.length);
    assert.equal(await c.call(m2, 'CLUSTER', 'COUNTKEYSINSLOT', slot), 0);
    assert.equal(await c.call(m0, 'GET', '{foo}:0'), 'v-{foo}:0');
    assert.equal(await c.call(m0, 'GET', '{foo}:149'), 'v-{foo}:149');
    assert.equal(await c.call(m0, 'GET', 'foo'), null); // same slot, served (not redirected) by the new owner
    assertErr(await c.call(m2, 'GET', '{foo}:0'), `MOVED ${slot} 127.0.0.1:${m0.port}`, 'old owner');
    assertErr(await c.call(m1, 'GET', '{foo}:0'), `MOVED ${slot} 127.0.0.1:${m0.port}`, 'bystander');
    // the neighbours stay where they were
    assert.equal(await c.ownerOf(slot - 1), m2);
    assert.equal(await c.ownerOf(slot + 1), m2);
    await c.waitHealthy();
  });

  it('a migration half done: ASK from the old owner, the key from the new one only after ASKING', async () => {
    const [m0, m1] = c.masters;
    const slot = 5061; // {bar}, owned by masters[0]
    const keys = Array.from({ length: 10 }, (_v, i) => `{bar}:${i}`);
    assert.equal(await c.ownerOf(slot), m0);
    await c.pipeline(m0, keys.map((k) => ['SET', k, `v-${k}`]));

    await c.beginMigration(slot, m0, m1);
    // a key m0 never held is not counted
    assert.equal(await c.migrateKeys(slot, m0, m1, [...keys.slice(0, 5), '{bar}:missing']), 5);

    assertErr(await c.call(m0, 'GET', '{bar}:0'), `ASK ${slot} 127.0.0.1:${m1.port}`, 'migrated key on the old owner');
    assertErr(await c.call(m0, 'GET', '{bar}:missing'), `ASK ${slot} 127.0.0.1:${m1.port}`, 'absent key on the old owner');
    assert.equal(await c.call(m0, 'GET', '{bar}:7'), 'v-{bar}:7'); // not migrated yet: still served
    assertErr(await c.call(m1, 'GET', '{bar}:0'), `MOVED ${slot} 127.0.0.1:${m0.port}`, 'new owner without ASKING');
    const raw = await Raw.connect(m1.port);
    try {
      const [asking, got, again] = await raw.pipeline([['ASKING'], ['GET', '{bar}:0'], ['GET', '{bar}:0']]);
      assert.equal(asking, 'OK');
      assert.equal(got, 'v-{bar}:0');
      assertErr(again, `MOVED ${slot}`, 'ASKING holds for one command only');
    } finally {
      raw.close();
    }
    // every node still says m0 owns the slot mid-migration
    for (const node of c.live()) assert.equal(await c.ownerOf(slot, node), m0, c.label(node));

    assert.equal(await c.migrateKeys(slot, m0, m1), 5); // the rest
    await c.finishMigration(slot, m0, m1);
    for (const node of c.live()) assert.equal(await c.ownerOf(slot, node), m1, c.label(node));
    assert.equal(await c.call(m1, 'GET', '{bar}:0'), 'v-{bar}:0');
    assert.equal(await c.call(m1, 'GET', '{bar}:9'), 'v-{bar}:9');
    assertErr(await c.call(m0, 'GET', '{bar}:9'), `MOVED ${slot} 127.0.0.1:${m1.port}`, 'old owner after finishing');
    await c.waitHealthy();
  });

  it('finishMigration refuses while the old owner still holds keys of the slot', async () => {
    const [m0, m1] = c.masters;
    const slot = await c.keySlot('{qux}');
    assert.equal(await c.ownerOf(slot), m1); // slot 5461-10922
    assert.equal(await c.call(m1, 'SET', '{qux}', 'v'), 'OK');
    await c.beginMigration(slot, m1, m0);
    await assert.rejects(c.finishMigration(slot, m1, m0), /masters\[1\] :\d+ still holds 1 key/);
    // nothing changed: the slot is still m1's, mid-migration, and the key is still there
    for (const node of c.live()) assert.equal(await c.ownerOf(slot, node), m1, c.label(node));
    assertErr(await c.call(m1, 'GET', '{qux}:absent'), `ASK ${slot}`, 'still migrating');
    await c.abortMigration(slot, m1, m0);
    assert.equal(await c.call(m1, 'GET', '{qux}:absent'), null);
    assert.equal(await c.call(m1, 'GET', '{qux}'), 'v');
    await c.waitHealthy();
  });

  it('killMasterAndWaitFailover promotes the replica and the cluster is healthy again', async (t) => {
    const [m0, m1] = c.masters;
    const r1 = c.replicas[1];
    const key = '{qux}:failover';
    assert.equal(await c.ownerOf(await c.keySlot(key)), m1);
    assert.equal(await c.call(m1, 'SET', key, 'kept'), 'OK');
    assert.equal(await c.call(m1, 'WAIT', 1, 2000), 1, 'the replica got the write');
    const oldPid = m1.pid;

    const t0 = Date.now();
    const promoted = await c.killMasterAndWaitFailover(1);
    const took = Date.now() - t0;

    assert.equal(promoted, r1);
    assert.equal(m1.alive, false);
    assert.equal(processExists(oldPid), false);
    assert.deepEqual(c.live(), c.nodes.filter((n) => n !== m1));
    const role = await c.call(r1, 'ROLE');
    assert.ok(Array.isArray(role) && role[0] === 'master', JSON.stringify(role));
    for (const node of c.live()) {
      assert.equal(await c.ownerOf(5461, node), r1, `owner of 5461 seen from ${c.label(node)}`);
      assert.equal(await c.ownerOf(10922, node), r1);
      assert.equal(infoField(await c.call(node, 'CLUSTER', 'INFO'), 'cluster_state'), 'ok', c.label(node));
    }
    assert.equal(await c.call(r1, 'GET', key), 'kept');
    assertErr(await c.call(m0, 'GET', key), `MOVED ${await c.keySlot(key)} 127.0.0.1:${r1.port}`, 'redirect to the promoted replica');
    await c.waitHealthy(5_000);
    t.diagnostic(`failover took ${took} ms`);
  });

  it('the killed master, restarted, rejoins as a replica of the promoted one', async () => {
    const m1 = c.masters[1];
    const r1 = c.replicas[1];
    const id = await c.nodeId(m1);
    await m1.restart(); // same port, same dir: its nodes.conf keeps its id
    await c.waitHealthy();
    assert.equal(await c.call(m1, 'CLUSTER', 'MYID'), id);
    const role = await c.call(m1, 'ROLE');
    assert.ok(Array.isArray(role) && role[0] === 'slave' && role[2] === r1.port, JSON.stringify(role));
    for (const node of c.live()) {
      const range = (await c.slots(node)).find((r) => r.start === 5461);
      assert.deepEqual(range, { start: 5461, end: 10922, master: c.addr(r1), replicas: [c.addr(m1)] }, c.label(node));
    }
    assert.equal(await c.call(m1, 'READONLY'), 'OK');
    assert.equal(await c.call(m1, 'GET', '{qux}:failover'), 'kept');
  });

  it('stop() stops every node by PID', async () => {
    const pids = c.nodes.map((n) => n.pid);
    assert.ok(c.nodes.every((n) => n.alive));
    for (const pid of pids) assert.ok(redisChildren().includes(pid));
    await c.stop();
    for (const pid of pids) assert.equal(processExists(pid), false, `pid ${pid} still exists`);
    assert.ok(c.nodes.every((n) => !n.alive));
    await c.stop(); // twice is harmless
  });
});

describe('cluster harness: a start that fails half-way', () => {
  after(() => stopAll());

  it('stops the processes it started and rethrows', async () => {
    const before = redisChildren();
    // the servers start, but the first CLUSTER command fails
    await assert.rejects(
      startCluster({ masters: 1, replicasPerMaster: 1, args: ['--rename-command', 'CLUSTER', ''] }),
      (err: Error) => {
        assert.match(err.message, /CLUSTER SET-CONFIG-EPOCH .* replied -ERR unknown command/);
        return true;
      },
    );
    assert.deepEqual(redisChildren(), before);
  });

  it('rejects a bad layout before starting anything', async () => {
    const before = redisChildren();
    await assert.rejects(startCluster({ masters: 0 }), /masters must be 1\.\.64/);
    assert.deepEqual(redisChildren(), before);
  });
});

it('a one-master cluster without replicas starts too; call() gives error replies as RespErr', async () => {
  const c = await startCluster({ masters: 1, replicasPerMaster: 0 });
  try {
    const [m0] = c.masters;
    assert.deepEqual(c.replicas, []);
    assert.deepEqual(await c.slots(), [{ start: 0, end: 16383, master: c.addr(m0), replicas: [] }]);
    const reply = await c.call(m0, 'NOSUCHCOMMAND');
    assert.ok(reply instanceof RespErr, JSON.stringify(reply));
    assert.match(reply.message, /^ERR unknown command/);
    assert.equal(await c.call(m0, 'SET', 'k', 'v'), 'OK');
  } finally {
    await c.stop();
  }
});
