import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ShardMap } from '../../src/routing/shard-map.js';
import { Ketama } from '../../src/routing/ketama.js';
import type { ServerSpec } from '../../src/config/types.js';

const server = (port: number, alias: string): ServerSpec => ({ host: '127.0.0.1', port, weight: 1, alias, name: alias, addr: `127.0.0.1:${port}` });
const servers = [server(7001, 'a'), server(7002, 'b'), server(7003, 'c')];
const keys = Array.from({ length: 2000 }, (_, i) => Buffer.from(`${i}:key`));

describe('ShardMap', () => {
  it('places keys exactly as ketama over all servers while every server is live', () => {
    const map = new ShardMap(servers, undefined);
    const ring = new Ketama(servers);
    for (const k of keys) assert.equal(map.backendFor(k), ring.serverFor(k));
  });

  it('remap: an ejected server\'s keys move to the ring of the live ones, and come back on restore', () => {
    const map = new ShardMap(servers, undefined, 'remap');
    const before = keys.map((k) => map.backendFor(k));
    assert.ok(map.eject(1));
    assert.ok(!map.eject(1), 'ejecting twice changes nothing');
    const live = new Ketama([servers[0], servers[2]]);
    for (const k of keys) {
      const i = map.backendFor(k);
      assert.notEqual(i, 1);
      assert.equal(i, [0, 2][live.serverFor(k)]);
    }
    assert.ok(map.restore(1));
    assert.deepEqual(keys.map((k) => map.backendFor(k)), before);
  });

  it('fail_fast: keys of an ejected server get -1, the others stay put', () => {
    const map = new ShardMap(servers, undefined, 'fail_fast');
    const before = keys.map((k) => map.backendFor(k));
    map.eject(2);
    keys.forEach((k, n) => assert.equal(map.backendFor(k), before[n] === 2 ? -1 : before[n]));
  });

  it('with every server ejected, every key gets -1', () => {
    const map = new ShardMap(servers, undefined, 'remap');
    [0, 1, 2].forEach((i) => map.eject(i));
    assert.equal(map.backendFor(keys[0]), -1);
  });
});
