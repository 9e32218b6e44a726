import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClusterNodeInfo } from '../../src/routing/cluster-nodes.js';
import { SlotMap } from '../../src/routing/slot-map.js';

function node(id: string, port: number, over: Partial<ClusterNodeInfo> = {}): ClusterNodeInfo {
  return {
    id,
    host: '127.0.0.1',
    port,
    addr: `127.0.0.1:${port}`,
    master: true,
    replicaOf: null,
    myself: false,
    failing: false,
    suspect: false,
    handshake: false,
    noaddr: false,
    configEpoch: 1,
    connected: true,
    slots: [],
    migrating: [],
    importing: [],
    ...over,
  };
}

const replica = (id: string, port: number, of: string, over: Partial<ClusterNodeInfo> = {}): ClusterNodeInfo => node(id, port, { master: false, replicaOf: of, configEpoch: 0, ...over });

/** three masters with a replica each, as a healthy cluster shows itself */
const healthy = (): ClusterNodeInfo[] => [
  node('a', 7000, { configEpoch: 1, slots: [[0, 5460]] }),
  node('b', 7001, { configEpoch: 2, slots: [[5461, 10922]] }),
  node('c', 7002, { configEpoch: 3, slots: [[10923, 16383]] }),
  replica('a2', 7003, 'a'),
  replica('b2', 7004, 'b'),
  replica('c2', 7005, 'c'),
];

describe('SlotMap', () => {
  it('learns owners and replicas from a view', () => {
    const m = new SlotMap();
    assert.equal(m.ownerOf(0), undefined);
    assert.deepEqual(m.apply(healthy()), { changed: 16384, stale: 0 });
    assert.equal(m.coveredSlots, 16384);
    assert.equal(m.ownerOf(0)?.addr, '127.0.0.1:7000');
    assert.equal(m.ownerOf(5461)?.addr, '127.0.0.1:7001');
    assert.equal(m.ownerOf(16383)?.id, 'c');
    assert.deepEqual(m.ownerOf(16383)?.replicas.map((r) => r.addr), ['127.0.0.1:7005']);
    assert.deepEqual(m.masters().map((n) => n.id), ['a', 'b', 'c']);
    assert.deepEqual(m.ranges().map((r) => [r.start, r.end, r.node.id]), [[0, 5460, 'a'], [5461, 10922, 'b'], [10923, 16383, 'c']]);
    assert.deepEqual(m.apply(healthy()), { changed: 0, stale: 0 }, 'the same view again changes nothing');
  });

  it('takes a failover (the promoted replica has a higher epoch) and refuses a stale view that still shows the old master', () => {
    const m = new SlotMap();
    m.apply(healthy());
    const after = [
      node('a', 7000, { failing: true, configEpoch: 1, slots: [] }),
      node('a2', 7003, { configEpoch: 4, slots: [[0, 5460]] }),
      ...healthy().slice(1, 3),
    ];
    assert.deepEqual(m.apply(after), { changed: 5461, stale: 0 });
    assert.equal(m.ownerOf(100)?.addr, '127.0.0.1:7003');
    const version = m.version;
    // a node that has not heard of the failover yet
    assert.deepEqual(m.apply(healthy()), { changed: 0, stale: 5461 });
    assert.equal(m.ownerOf(100)?.addr, '127.0.0.1:7003');
    assert.equal(m.version, version);
    assert.deepEqual(m.masters().map((n) => n.id), ['a2', 'b', 'c']);
  });

  it('keeps slots a partial view does not mention, and leaves unclaimed slots without an owner', () => {
    const m = new SlotMap();
    m.apply([node('a', 7000, { slots: [[0, 99]] })]);
    assert.equal(m.coveredSlots, 100);
    assert.equal(m.ownerOf(100), undefined);
    m.apply([node('b', 7001, { configEpoch: 2, slots: [[100, 199]] })]);
    assert.equal(m.ownerOf(50)?.id, 'a');
    assert.equal(m.ownerOf(150)?.id, 'b');
  });

  it('moves a slot on MOVED at once; a view with the old owner at its old epoch cannot undo it, the new owner confirms it', () => {
    const m = new SlotMap();
    m.apply(healthy());
    assert.equal(m.moved(42, '127.0.0.1', 7001), true);
    assert.equal(m.moved(42, '127.0.0.1', 7001), false, 'the same MOVED twice changes nothing the second time');
    assert.equal(m.ownerOf(42)?.addr, '127.0.0.1:7001');
    assert.equal(m.ownerOf(43)?.addr, '127.0.0.1:7000');
    m.apply(healthy()); // still shows slot 42 on a (epoch 1)
    assert.equal(m.ownerOf(42)?.addr, '127.0.0.1:7001');
    // the migration bumped b's epoch
    const migrated = healthy();
    migrated[0] = node('a', 7000, { configEpoch: 1, slots: [[0, 41], [43, 5460]] });
    migrated[1] = node('b', 7001, { configEpoch: 5, slots: [[42, 42], [5461, 10922]] });
    m.apply(migrated);
    assert.equal(m.ownerOf(42)?.id, 'b');
    // a MOVED back to a (a second migration) still wins over the views that show b at epoch 5
    assert.equal(m.moved(42, '127.0.0.1', 7000), true);
    m.apply(migrated);
    assert.equal(m.ownerOf(42)?.id, 'a');
  });

  it('a MOVED to an unknown node adds it; a later view names it', () => {
    const m = new SlotMap();
    m.apply(healthy());
    m.moved(7, '127.0.0.1', 7009);
    const n = m.ownerOf(7);
    assert.equal(n?.addr, '127.0.0.1:7009');
    assert.equal(n?.id, '');
    assert.equal(m.masters().length, 4);
    const view = healthy();
    view[0] = node('a', 7000, { slots: [[0, 6], [8, 5460]] });
    view.push(node('d', 7009, { configEpoch: 9, slots: [[7, 7]] }));
    m.apply(view);
    assert.equal(m.ownerOf(7)?.id, 'd');
  });

  it('lists only replicas that are not failing; skips masters without an address or in handshake', () => {
    const m = new SlotMap();
    m.apply([
      node('a', 7000, { slots: [[0, 16383]] }),
      replica('r1', 7003, 'a'),
      replica('r2', 7004, 'a', { failing: true }),
      replica('r3', 7005, 'a', { suspect: true }),
      replica('r4', 7006, 'a'),
      node('x', 0, { host: '', addr: ':0', noaddr: true, configEpoch: 99, slots: [[0, 10]] }),
      node('y', 7010, { handshake: true, configEpoch: 99, slots: [[0, 10]] }),
    ]);
    assert.equal(m.ownerOf(0)?.id, 'a');
    assert.deepEqual(m.ownerOf(0)?.replicas.map((r) => r.addr), ['127.0.0.1:7003', '127.0.0.1:7006']);
  });

  it('forgets a master that owns nothing any more', () => {
    const m = new SlotMap();
    m.apply([node('a', 7000, { slots: [[0, 16383]] })]);
    m.apply([node('b', 7001, { configEpoch: 2, slots: [[0, 16383]] })]);
    assert.deepEqual(m.masters().map((n) => n.id), ['b']);
    // a stale a coming back at its old epoch gets nothing, and is not listed
    m.apply([node('a', 7000, { slots: [[0, 16383]] })]);
    assert.deepEqual(m.masters().map((n) => n.id), ['b']);
  });
});
