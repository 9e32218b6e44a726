import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { changedKeys, diffConfig, isEmptyDiff, type ConfigDiff } from '../../src/config/diff.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

interface Spec {
  name: string;
  listen?: string;
  cacheType?: string;
  servers?: string[];
  extra?: string;
}

/** A config from cluster sketches, parsed and validated like a real file. */
function config(...clusters: Spec[]): Config {
  const text = clusters
    .map(
      (c) => `
[[clusters]]
name = "${c.name}"
listen_addr = "${c.listen ?? '127.0.0.1:0'}"
cache_type = "${c.cacheType ?? 'redis'}"
servers = ${JSON.stringify(c.servers ?? ['127.0.0.1:6379:1 a', '127.0.0.1:6380:1 b'])}
thread = 1
${c.extra ?? ''}
`,
    )
    .join('\n');
  return parseConfig(text, 'diff.toml', {}).config;
}

/** The diff as names and keys, easy to compare. */
function summary(d: ConfigDiff) {
  return {
    added: d.added.map((c) => c.name),
    removed: d.removed.map((c) => c.name),
    reconfigured: d.reconfigured.map((c) => `${c.next.name}: ${c.keys.join(',')}`),
    unchanged: d.unchanged.map((c) => c.name),
  };
}

describe('diffConfig', () => {
  it('finds nothing to do when the file says the same thing, even spelled differently', () => {
    const old = config({ name: 'a' }, { name: 'b', listen: '127.0.0.1:7001' });
    const same = config({ name: 'b', listen: '127.0.0.1:7001', extra: 'read_timeout = 1000\n[clusters.limits]\nmax_args = 1048576' }, { name: 'a' });
    const d = diffConfig(old, same);
    assert.deepEqual(summary(d), { added: [], removed: [], reconfigured: [], unchanged: ['b', 'a'] });
    assert.equal(isEmptyDiff(d), true);
  });

  it('adds clusters with new names and removes clusters whose names are gone', () => {
    const d = diffConfig(config({ name: 'a' }, { name: 'b' }), config({ name: 'b' }, { name: 'c' }));
    assert.deepEqual(summary(d), { added: ['c'], removed: ['a'], reconfigured: [], unchanged: ['b'] });
    assert.equal(isEmptyDiff(d), false);
  });

  it('reconfigures in place a cluster whose servers are added, removed or reweighted', () => {
    const old = config({ name: 'a' });
    for (const servers of [
      ['127.0.0.1:6379:1 a', '127.0.0.1:6380:1 b', '127.0.0.1:6381:1 c'],
      ['127.0.0.1:6379:1 a'],
      ['127.0.0.1:6379:1 a', '127.0.0.1:6380:3 b'],
    ]) {
      const d = diffConfig(old, config({ name: 'a', servers }));
      assert.deepEqual(summary(d), { added: [], removed: [], reconfigured: ['a: servers'], unchanged: [] }, servers.join(' '));
      assert.deepEqual(d.reconfigured[0].next.servers.map((s) => s.addr), servers.map((s) => s.split(':').slice(0, 2).join(':')));
    }
  });

  it('names every changed key as the file spells it, and leaves values (passwords) out', () => {
    const old = config({ name: 'a', extra: 'password = "old-secret"' });
    const next = config({
      name: 'a',
      extra: 'password = "new-secret"\nread_timeout = 250\ntcpkeepalive = 30\nhash_tag = "{}"\n[clusters.limits]\nmax_bulk_bytes = 1024',
    });
    const d = diffConfig(old, next);
    assert.equal(d.reconfigured.length, 1);
    assert.deepEqual([...d.reconfigured[0].keys].sort(), ['hash_tag', 'limits', 'password', 'read_timeout', 'tcpkeepalive']);
    assert.doesNotMatch(JSON.stringify(d.reconfigured[0].keys), /secret/);
    assert.equal(d.reconfigured[0].old.readTimeout, 1000);
    assert.equal(d.reconfigured[0].next.readTimeout, 250);
  });

  it('sees a password removed as a change', () => {
    const d = diffConfig(config({ name: 'a', extra: 'backend_password = "x"' }), config({ name: 'a' }));
    assert.deepEqual(summary(d).reconfigured, ['a: backend_password']);
  });

  it('replaces (removes, then adds) a cluster whose listen_addr or cache_type changes', () => {
    const old = config({ name: 'a', listen: '127.0.0.1:7000' });
    const moved = diffConfig(old, config({ name: 'a', listen: '127.0.0.1:7001' }));
    assert.deepEqual(summary(moved), { added: ['a'], removed: ['a'], reconfigured: [], unchanged: [] });
    assert.equal(moved.removed[0].listenPort, 7000);
    assert.equal(moved.added[0].listenPort, 7001);
    const kind = diffConfig(old, config({ name: 'a', listen: '127.0.0.1:7000', cacheType: 'redis_cluster', servers: ['127.0.0.1:7100'] }));
    assert.deepEqual(summary(kind), { added: ['a'], removed: ['a'], reconfigured: [], unchanged: [] });
  });

  it('treats a renamed cluster as one removed and one added', () => {
    const d = diffConfig(config({ name: 'a', listen: '127.0.0.1:7000' }), config({ name: 'z', listen: '127.0.0.1:7000' }));
    assert.deepEqual(summary(d), { added: ['z'], removed: ['a'], reconfigured: [], unchanged: [] });
  });
});

describe('changedKeys', () => {
  it('is empty for the same cluster and names the listener once for a new port', () => {
    const [a] = config({ name: 'a', listen: '127.0.0.1:7000' }).clusters;
    const [b] = config({ name: 'a', listen: '127.0.0.1:7001' }).clusters;
    assert.deepEqual(changedKeys(a, a), []);
    assert.deepEqual(changedKeys(a, b), ['listen_addr']);
  });
});
