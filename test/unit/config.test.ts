import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, DEFAULTS, parseConfig, type LoadResult } from '../../src/config/load.js';
import { loadConfig } from '../../src/sources/config-file.js';
import { createLogger, REDACTED } from '../../src/sinks/log.js';

const FILE = 'test.toml';
const NO_ENV: NodeJS.ProcessEnv = {};

/** The repository root, from dist/test/unit or test/unit. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'default.toml'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('default.toml not found above the test');
}

const standalone = (extra = '', name = 'alpha', listen = '127.0.0.1:7000'): string => `
[[clusters]]
name = "${name}"
listen_addr = "${listen}"
cache_type = "redis"
servers = ["127.0.0.1:6379"]
${extra}
`;

const clustered = (extra = '', name = 'beta', listen = '127.0.0.1:7001'): string => `
[[clusters]]
name = "${name}"
listen_addr = "${listen}"
servers = ["127.0.0.1:7000", "127.0.0.1:7001"]
${extra}
`;

function parse(text: string, env: NodeJS.ProcessEnv = NO_ENV): LoadResult {
  return parseConfig(text, FILE, env);
}

/** The problems of a config that must fail. */
function problems(text: string, env: NodeJS.ProcessEnv = NO_ENV): string[] {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.message, err.problems.join('\n'));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

/** Asserts exactly one problem, and that it contains every fragment. */
function oneProblem(text: string, ...fragments: string[]): string {
  const ps = problems(text);
  assert.equal(ps.length, 1, `expected one problem, got:\n${ps.join('\n')}`);
  for (const f of fragments) assert.ok(ps[0]!.includes(f), `${JSON.stringify(ps[0])} should contain ${JSON.stringify(f)}`);
  return ps[0]!;
}

describe('parseConfig: values and defaults', () => {
  it('fills every default for a minimal standalone cluster', () => {
    const { config, warnings } = parse(standalone(), { ASTER_DEFAULT_THREAD: '3' });
    assert.deepEqual(warnings, []);
    assert.equal(config.file, FILE);
    assert.equal(config.clusters.length, 1);
    const c = config.clusters[0]!;
    assert.deepEqual(c, {
      name: 'alpha',
      listenAddr: '127.0.0.1:7000',
      listenHost: '127.0.0.1',
      listenPort: 7000,
      cacheType: 'redis',
      servers: [{ host: '127.0.0.1', port: 6379, weight: 1, name: '127.0.0.1:6379', addr: '127.0.0.1:6379' }],
      thread: 3,
      readTimeout: 1000,
      writeTimeout: 1000,
      fetchInterval: 1_800_000,
      readFromSlave: false,
      pingFailLimit: 0,
      pingInterval: 300_000,
      pingSuccInterval: 1000,
      ejectMode: 'remap',
      tcpKeepalive: 0,
      backupRequest: { enabled: false, multiplier: 2, budgetPercent: 10, burst: 10 },
      slowlogLogSlowerThan: 10000,
      slowlogMaxLen: 128,
      maxClients: 10000,
      maxBlockingConnections: 512,
      denyCommands: [...DEFAULTS.denyCommands],
      adminCommands: false,
      idleTimeout: 0,
      users: [],
      limits: {
        maxBulkBytes: 512 * 1024 * 1024,
        maxHeaderBytes: 65536,
        maxArgs: 1048576,
        maxReplyDepth: 512,
        maxQueryBytes: 1024 * 1024 * 1024,
        pubsubOutputHardBytes: 32 * 1024 * 1024,
        pubsubOutputSoftBytes: 8 * 1024 * 1024,
        pubsubOutputSoftSeconds: 60,
        outputHardBytes: 0,
        outputSoftBytes: 0,
        outputSoftSeconds: 0,
        maxPendingRequests: 10000,
        maxPendingBytes: 8388608,
      },
    });
    assert.equal('hashTag' in c, false);
    assert.equal('password' in c, false);
    assert.equal('backendPassword' in c, false);
  });

  it('defaults cache_type to redis_cluster and reads seeds', () => {
    const { config, warnings } = parse(clustered());
    assert.deepEqual(warnings, []);
    const c = config.clusters[0]!;
    assert.equal(c.cacheType, 'redis_cluster');
    assert.deepEqual(
      c.servers.map((s) => [s.addr, s.name, s.weight, s.alias]),
      [
        ['127.0.0.1:7000', '127.0.0.1:7000', 1, undefined],
        ['127.0.0.1:7001', '127.0.0.1:7001', 1, undefined],
      ],
    );
  });

  it('reads every field', () => {
    const text = `
[[clusters]]
name = "full"
listen_addr = "0.0.0.0:26379"
cache_type = "redis"
servers = ["10.0.0.1:6379:2 one", "redis-b.example.com:6380 two", "[::1]:6381:3", "10.0.0.4:6382"]
hash_tag = "$$"
thread = 4
read_timeout = 250
write_timeout = 300
ping_fail_limit = 3
ping_interval = 10000
ping_succ_interval = 500
tcpkeepalive = 60
slowlog_log_slower_than = 2500
slowlog_max_len = 16
password = "front-secret"
backend_password = "back-secret"
[clusters.backup_request]
enabled = true
trigger_slow_ms = 20
multiplier = 1.5
budget_percent = 25
burst = 40
[clusters.limits]
max_bulk_bytes = 1048576
max_header_bytes = 4096
max_args = 1000
max_reply_depth = 64
max_pending_requests = 500
max_pending_bytes = 1000000
`;
    const { config, warnings } = parse(text);
    assert.deepEqual(warnings, []);
    const c = config.clusters[0]!;
    assert.equal(c.listenAddr, '0.0.0.0:26379');
    assert.equal(c.listenHost, '0.0.0.0');
    assert.equal(c.listenPort, 26379);
    assert.deepEqual(c.servers, [
      { host: '10.0.0.1', port: 6379, weight: 2, alias: 'one', name: 'one', addr: '10.0.0.1:6379' },
      { host: 'redis-b.example.com', port: 6380, weight: 1, alias: 'two', name: 'two', addr: 'redis-b.example.com:6380' },
      { host: '::1', port: 6381, weight: 3, name: '[::1]:6381', addr: '[::1]:6381' },
      { host: '10.0.0.4', port: 6382, weight: 1, name: '10.0.0.4:6382', addr: '10.0.0.4:6382' },
    ]);
    assert.equal(c.hashTag, '$$');
    assert.equal(c.thread, 4);
    assert.equal(c.readTimeout, 250);
    assert.equal(c.writeTimeout, 300);
    assert.equal(c.pingFailLimit, 3);
    assert.equal(c.pingInterval, 10000);
    assert.equal(c.pingSuccInterval, 500);
    assert.equal(c.tcpKeepalive, 60);
    assert.equal(c.slowlogLogSlowerThan, 2500);
    assert.equal(c.slowlogMaxLen, 16);
    assert.equal(c.password, 'front-secret');
    assert.equal(c.backendPassword, 'back-secret');
    assert.deepEqual(c.backupRequest, { enabled: true, triggerSlowMs: 20, multiplier: 1.5, budgetPercent: 25, burst: 40 });
    assert.deepEqual(c.limits, {
      maxBulkBytes: 1048576,
      maxHeaderBytes: 4096,
      maxArgs: 1000,
      maxReplyDepth: 64,
      maxQueryBytes: 1024 * 1024 * 1024,
      pubsubOutputHardBytes: 32 * 1024 * 1024,
      pubsubOutputSoftBytes: 8 * 1024 * 1024,
      pubsubOutputSoftSeconds: 60,
      outputHardBytes: 0,
      outputSoftBytes: 0,
      outputSoftSeconds: 0,
      maxPendingRequests: 500,
      maxPendingBytes: 1000000,
    });
  });

  it('reads the cluster-only fields in cluster mode', () => {
    const { config, warnings } = parse(clustered('fetch_interval = 60000\nread_from_slave = true'));
    assert.deepEqual(warnings, []);
    assert.equal(config.clusters[0]!.fetchInterval, 60000);
    assert.equal(config.clusters[0]!.readFromSlave, true);
  });

  it('accepts an IPv6 listener and port 0', () => {
    const { config } = parse(standalone('', 'v6', '[::1]:0'));
    const c = config.clusters[0]!;
    assert.equal(c.listenHost, '::1');
    assert.equal(c.listenPort, 0);
    assert.equal(c.listenAddr, '[::1]:0');
  });

  it('hashes a server on port 11211 by host alone (twemproxy rule) unless aliased', () => {
    const { config } = parse(standalone().replace('"127.0.0.1:6379"', '"10.0.0.1:11211", "10.0.0.2:11211 b"'));
    assert.deepEqual(
      config.clusters[0]!.servers.map((s) => s.name),
      ['10.0.0.1', 'b'],
    );
  });

  it('reads several clusters in order', () => {
    const { config } = parse(standalone() + clustered());
    assert.deepEqual(
      config.clusters.map((c) => [c.name, c.cacheType]),
      [
        ['alpha', 'redis'],
        ['beta', 'redis_cluster'],
      ],
    );
  });

  it('exports the documented defaults', () => {
    assert.equal(DEFAULTS.readTimeout, 1000);
    assert.equal(DEFAULTS.fetchInterval, 1_800_000);
    assert.equal(DEFAULTS.limits.maxBulkBytes, 536870912);
  });
});

describe('parseConfig: thread and ASTER_DEFAULT_THREAD', () => {
  it('uses the env variable when thread is unset', () => {
    assert.equal(parse(standalone(), { ASTER_DEFAULT_THREAD: '7' }).config.clusters[0]!.thread, 7);
    assert.equal(parse(standalone(), { ASTER_DEFAULT_THREAD: ' 2 ' }).config.clusters[0]!.thread, 2);
  });

  it('uses one worker per CPU without the env variable (or with it empty)', () => {
    assert.equal(parse(standalone()).config.clusters[0]!.thread, availableParallelism());
    assert.equal(parse(standalone(), { ASTER_DEFAULT_THREAD: '' }).config.clusters[0]!.thread, availableParallelism());
  });

  it('an explicit thread wins over the env variable', () => {
    assert.equal(parse(standalone('thread = 5'), { ASTER_DEFAULT_THREAD: '7' }).config.clusters[0]!.thread, 5);
  });

  for (const bad of ['abc', '0', '-2', '1.5', '99999']) {
    it(`rejects ASTER_DEFAULT_THREAD=${JSON.stringify(bad)}, naming the variable`, () => {
      const ps = problems(standalone(), { ASTER_DEFAULT_THREAD: bad });
      assert.equal(ps.length, 1);
      assert.match(ps[0]!, /^test\.toml: environment variable ASTER_DEFAULT_THREAD: expected a positive integer/);
      assert.ok(ps[0]!.includes(JSON.stringify(bad)));
    });
  }

  it('reports a bad env variable even when every cluster sets thread', () => {
    const ps = problems(standalone('thread = 2'), { ASTER_DEFAULT_THREAD: 'many' });
    assert.equal(ps.length, 1);
    assert.ok(ps[0]!.includes('ASTER_DEFAULT_THREAD'));
  });
});

describe('parseConfig: each problem names the file, the cluster and the key', () => {
  const cases: Array<[string, string, string, string]> = [
    // [description, extra lines, key, fragment of the message]
    ['read_timeout as a word', 'read_timeout = "fast"', 'read_timeout', 'expected a positive integer (milliseconds) no larger than 2147483647, got "fast"'],
    ['read_timeout zero', 'read_timeout = 0', 'read_timeout', 'got 0'],
    ['read_timeout quoted number', 'read_timeout = "100"', 'read_timeout', 'write numbers without quotes'],
    ['read_timeout fraction', 'read_timeout = 10.5', 'read_timeout', 'got 10.5'],
    ['read_timeout beyond a timer', 'read_timeout = 3000000000', 'read_timeout', 'no larger than 2147483647'],
    ['write_timeout negative', 'write_timeout = -1', 'write_timeout', 'got -1'],
    ['fetch_interval as a table', 'fetch_interval = { a = 1 }', 'fetch_interval', 'got a table'],
    ['ping_interval as an array', 'ping_interval = [1]', 'ping_interval', 'got an array'],
    ['ping_succ_interval as a date', 'ping_succ_interval = 1979-05-27T07:32:00Z', 'ping_succ_interval', 'got a date'],
    ['ping_fail_limit negative', 'ping_fail_limit = -1', 'ping_fail_limit', 'expected a non-negative integer, got -1'],
    ['thread zero', 'thread = 0', 'thread', 'expected a positive integer'],
    ['thread as a string', 'thread = "4"', 'thread', 'got "4"'],
    ['tcpkeepalive as a boolean', 'tcpkeepalive = true', 'tcpkeepalive', 'expected a non-negative integer (seconds)'],
    ['tcpkeepalive too large', 'tcpkeepalive = 100000', 'tcpkeepalive', 'no larger than 32767'],
    ['read_from_slave as a string', 'read_from_slave = "true"', 'read_from_slave', 'expected true or false, got "true"'],
    ['hash_tag of one char', 'hash_tag = "{"', 'hash_tag', 'expected two printable ASCII characters such as "{}", got "{"'],
    ['hash_tag of three chars', 'hash_tag = "{}}"', 'hash_tag', 'got "{}}"'],
    ['hash_tag as a number', 'hash_tag = 12', 'hash_tag', 'got 12'],
    ['password as a number', 'password = 1234', 'password', 'expected a string, got 1234'],
    ['empty password', 'password = ""', 'password', 'non-empty'],
    ['backend_password as a boolean', 'backend_password = false', 'backend_password', 'expected a string, got false'],
    ['backup_request as a boolean', 'backup_request = true', 'backup_request', 'expected a table'],
    ['backup_request.enabled as a string', 'backup_request = { enabled = "yes" }', 'backup_request.enabled', 'got "yes"'],
    ['backup_request.multiplier zero', 'backup_request = { multiplier = 0 }', 'backup_request.multiplier', 'greater than 0, got 0'],
    ['backup_request.multiplier as a string', 'backup_request = { multiplier = "2" }', 'backup_request.multiplier', 'got "2"'],
    ['backup_request.trigger_slow_ms zero', 'backup_request = { trigger_slow_ms = 0 }', 'backup_request.trigger_slow_ms', 'positive integer (milliseconds)'],
    ['slowlog_log_slower_than below -1', 'slowlog_log_slower_than = -2', 'slowlog_log_slower_than', 'expected an integer >= -1 (microseconds), got -2'],
    ['slowlog_log_slower_than as a string', 'slowlog_log_slower_than = "10ms"', 'slowlog_log_slower_than', 'got "10ms"'],
    ['slowlog_max_len negative', 'slowlog_max_len = -1', 'slowlog_max_len', 'expected a non-negative integer no larger than 1000000, got -1'],
    ['slowlog_max_len fraction', 'slowlog_max_len = 1.5', 'slowlog_max_len', 'got 1.5'],
    ['limits as a string', 'limits = "big"', 'limits', 'expected a table'],
    ['limits.max_bulk_bytes zero', 'limits = { max_bulk_bytes = 0 }', 'limits.max_bulk_bytes', 'positive integer (bytes)'],
    ['limits.max_header_bytes as a string', 'limits = { max_header_bytes = "64k" }', 'limits.max_header_bytes', 'got "64k"'],
    ['limits.max_args negative', 'limits = { max_args = -5 }', 'limits.max_args', 'got -5'],
    ['limits.max_reply_depth fraction', 'limits = { max_reply_depth = 1.5 }', 'limits.max_reply_depth', 'got 1.5'],
  ];
  for (const [what, extra, key, fragment] of cases) {
    it(what, () => {
      oneProblem(standalone(extra), `test.toml: cluster "alpha": ${key}: `, fragment);
    });
  }

  it('cache_type: memcache flavours are rejected as unsupported', () => {
    for (const v of ['memcache', 'memcache_binary', 'Memcache', 'memcached']) {
      const p = oneProblem(
        standalone().replace('cache_type = "redis"', `cache_type = "${v}"`),
        'test.toml: cluster "alpha": cache_type: ',
        'Memcached is not supported by aster-proxy',
      );
      assert.ok(p.includes(JSON.stringify(v)));
    }
  });

  it('cache_type: an unknown value, with a hint for a near miss', () => {
    oneProblem(
      standalone().replace('cache_type = "redis"', 'cache_type = "redis-cluster"'),
      'test.toml: cluster "alpha": cache_type: expected "redis" or "redis_cluster", got "redis-cluster"',
      'did you mean "redis_cluster"?',
    );
    oneProblem(standalone().replace('cache_type = "redis"', 'cache_type = 1'), 'cache_type: ', 'got 1');
  });

  it('name: missing, empty or not a string (the cluster is then named by position)', () => {
    oneProblem(standalone().replace('name = "alpha"\n', ''), 'test.toml: cluster #1: name: required');
    oneProblem(standalone().replace('name = "alpha"', 'name = ""'), 'test.toml: cluster #1: name: must not be empty');
    oneProblem(standalone().replace('name = "alpha"', 'name = 7'), 'test.toml: cluster #1: name: expected a string, got 7');
    oneProblem(standalone() + clustered().replace('name = "beta"\n', ''), 'test.toml: cluster #2: name: required');
  });

  it('listen_addr: missing, malformed, bad port, not an IP', () => {
    const without = standalone().replace('listen_addr = "127.0.0.1:7000"\n', '');
    oneProblem(without, 'test.toml: cluster "alpha": listen_addr: required');
    const bad = (v: string) => standalone('', 'alpha', v);
    oneProblem(bad('127.0.0.1'), 'cluster "alpha": listen_addr: ', 'missing ":port"');
    oneProblem(bad('127.0.0.1:65536'), 'cluster "alpha": listen_addr: ', 'port must be a number from 0 to 65535');
    oneProblem(bad('127.0.0.1:http'), 'cluster "alpha": listen_addr: ', 'got "http"');
    oneProblem(bad('localhost:7000'), 'cluster "alpha": listen_addr: ', 'expected an IP address');
    oneProblem(bad('::1:7000'), 'cluster "alpha": listen_addr: ', 'IPv6 address in brackets');
    oneProblem(bad('[::1:7000'), 'cluster "alpha": listen_addr: ', 'unclosed "["');
    oneProblem(standalone().replace('"127.0.0.1:7000"', '7000'), 'cluster "alpha": listen_addr: expected an "ip:port" string, got 7000');
  });

  it('servers: missing, empty, not a list, not strings', () => {
    const set = (v: string) => standalone().replace('servers = ["127.0.0.1:6379"]', v);
    oneProblem(set(''), 'test.toml: cluster "alpha": servers: required');
    oneProblem(set('servers = []'), 'cluster "alpha": servers: at least one server is required');
    oneProblem(set('servers = "127.0.0.1:6379"'), 'cluster "alpha": servers: expected a list', 'got "127.0.0.1:6379"');
    oneProblem(set('servers = ["127.0.0.1:6379", 6380]'), 'cluster "alpha": servers[1]: expected a string, got 6380');
  });

  it('servers: malformed standalone entries', () => {
    const set = (v: string) => standalone().replace('"127.0.0.1:6379"', JSON.stringify(v));
    oneProblem(set('127.0.0.1'), 'cluster "alpha": servers[0]: ', 'missing ":port"');
    oneProblem(set('127.0.0.1:0'), 'cluster "alpha": servers[0]: ', 'port 0');
    oneProblem(set('127.0.0.1:99999'), 'cluster "alpha": servers[0]: ', 'port must be a number');
    oneProblem(set('127.0.0.1:6379:0 a'), 'cluster "alpha": servers[0]: weight must be a positive integer, got "0"');
    oneProblem(set('127.0.0.1:6379:x'), 'cluster "alpha": servers[0]: weight must be a positive integer, got "x"');
    oneProblem(set('127.0.0.1:6379:1 a b'), 'cluster "alpha": servers[0]: ', 'too many words');
    oneProblem(set('bad_host!:6379'), 'cluster "alpha": servers[0]: ', 'not a valid host name');
    oneProblem(set(''), 'cluster "alpha": servers[0]: empty server address');
  });

  it('servers: duplicates of address, alias or ring name', () => {
    const set = (...v: string[]) => standalone().replace('["127.0.0.1:6379"]', JSON.stringify(v));
    oneProblem(set('127.0.0.1:6379', '127.0.0.1:6379:2'), 'cluster "alpha": servers[1]: duplicate server 127.0.0.1:6379 (also servers[0])');
    oneProblem(set('127.0.0.1:6379 a', '127.0.0.1:6380 a'), 'cluster "alpha": servers[1]: duplicate alias "a" (also servers[0])');
    oneProblem(set('127.0.0.1:6379', '127.0.0.1:6380 127.0.0.1:6379'), 'cluster "alpha": servers[1]: ', 'also servers[0]');
  });

  it('servers: a cluster seed with a weight or alias, and duplicate seeds', () => {
    const p = oneProblem(
      clustered().replace('"127.0.0.1:7001"]', '"127.0.0.1:7001:1 x"]'),
      'test.toml: cluster "beta": servers[1]: a redis_cluster seed is "host:port"',
    );
    assert.ok(p.includes('cache_type = "redis"'));
    oneProblem(
      clustered().replace('"127.0.0.1:7001"]', '"127.0.0.1:7000"]'),
      'cluster "beta": servers[1]: duplicate server 127.0.0.1:7000',
    );
  });

  it('clusters: none, empty, a single table, not tables', () => {
    oneProblem('', 'test.toml: clusters: at least one [[clusters]] table is required');
    oneProblem('# nothing here\n', 'test.toml: clusters: at least one');
    oneProblem('clusters = []', 'test.toml: clusters: at least one');
    oneProblem('[clusters]\nname = "x"\n', 'test.toml: clusters: expected an array of tables', 'double brackets');
    oneProblem('clusters = 3', 'test.toml: clusters: expected an array of tables ([[clusters]]), got 3');
    oneProblem('clusters = [1]', 'test.toml: cluster #1: expected a table ([[clusters]]), got 1');
  });
});

describe('parseConfig: across clusters', () => {
  it('rejects a duplicate cluster name', () => {
    const p = oneProblem(standalone() + clustered('', 'alpha'), 'test.toml: cluster #2 ("alpha"): name: duplicate cluster name "alpha"');
    assert.ok(p.includes('cluster #1'));
  });

  it('rejects two clusters on one listen address', () => {
    oneProblem(
      standalone() + clustered('', 'beta', '127.0.0.1:7000'),
      'test.toml: cluster "beta": listen_addr: 127.0.0.1:7000 clashes with listen_addr 127.0.0.1:7000 of cluster "alpha"',
    );
  });

  it('rejects a wildcard listener that overlaps another on the same port', () => {
    oneProblem(standalone('', 'alpha', '0.0.0.0:7000') + clustered('', 'beta', '127.0.0.2:7000'), 'cluster "beta": listen_addr: ', 'clashes');
    oneProblem(standalone('', 'alpha', '[::]:7000') + clustered('', 'beta', '127.0.0.1:7000'), 'cluster "beta": listen_addr: ', 'clashes');
  });

  it('allows the same port on different addresses, and any number of port 0 listeners', () => {
    parse(standalone('', 'alpha', '127.0.0.1:7000') + clustered('', 'beta', '127.0.0.2:7000'));
    parse(standalone('', 'alpha', '0.0.0.0:7000') + clustered('', 'beta', '[::1]:7000'));
    parse(standalone('', 'a', '127.0.0.1:0') + standalone('', 'b', '127.0.0.1:0') + clustered('', 'c', '0.0.0.0:0'));
  });
});

describe('parseConfig: several problems at once', () => {
  it('collects every problem before throwing, one per line', () => {
    const text = `
[[clusters]]
name = "alpha"
listen_addr = "nowhere"
cache_type = "memcache"
servers = []
read_timeout = "fast"
thread = -1
[clusters.limits]
max_args = 0

[[clusters]]
listen_addr = "127.0.0.1:7002"
servers = ["127.0.0.1:7000:1 x"]
ping_interval = false
`;
    let err: unknown;
    try {
      parse(text, { ASTER_DEFAULT_THREAD: 'x' });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError);
    const lines = err.message.split('\n');
    assert.deepEqual(lines, err.problems);
    const expect = [
      'test.toml: cluster "alpha": listen_addr: ',
      'test.toml: cluster "alpha": cache_type: Memcached is not supported',
      'test.toml: cluster "alpha": servers: at least one server',
      'test.toml: cluster "alpha": read_timeout: ',
      'test.toml: cluster "alpha": thread: ',
      'test.toml: cluster "alpha": limits.max_args: ',
      'test.toml: cluster #2: name: required',
      'test.toml: cluster #2: servers[0]: a redis_cluster seed',
      'test.toml: cluster #2: ping_interval: ',
      'test.toml: environment variable ASTER_DEFAULT_THREAD: ',
    ];
    assert.equal(lines.length, expect.length, lines.join('\n'));
    for (const e of expect) assert.ok(lines.some((l) => l.startsWith(e)), `missing ${JSON.stringify(e)} in\n${lines.join('\n')}`);
  });

  it('keeps the warnings found so far on the error', () => {
    try {
      parse(standalone('read_timout = 5\nthread = 0'));
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 1);
      assert.equal(err.warnings.length, 1);
      assert.ok(err.warnings[0]!.includes('read_timout'));
    }
  });
});

describe('parseConfig: warnings', () => {
  it('warns about an unknown cluster key, with a did-you-mean for a near miss', () => {
    const { warnings } = parse(standalone('read_timout = 5\nlisten-addr = "x"\nreadTimeout = 1\nflavour = "vanilla"'));
    assert.deepEqual(warnings, [
      'test.toml: cluster "alpha": read_timout: unknown key, ignored; did you mean "read_timeout"?',
      'test.toml: cluster "alpha": listen-addr: unknown key, ignored; did you mean "listen_addr"?',
      'test.toml: cluster "alpha": readTimeout: unknown key, ignored; did you mean "read_timeout"?',
      'test.toml: cluster "alpha": flavour: unknown key, ignored',
    ]);
  });

  it('warns about unknown top-level keys, and keys that belong in a cluster', () => {
    const { warnings } = parse(`name = "x"\nverbose = true\ncluster = 1\n${standalone()}`);
    assert.deepEqual(warnings, [
      'test.toml: name: unknown key, ignored; this key belongs inside a [[clusters]] table',
      'test.toml: verbose: unknown key, ignored',
      'test.toml: cluster: unknown key, ignored; did you mean "clusters"?',
    ]);
  });

  it('warns about unknown keys in backup_request and limits', () => {
    const { warnings } = parse(standalone('backup_request = { enable = true, trigger = 5 }\nlimits = { max_arg = 5, colour = 1 }'));
    assert.deepEqual(warnings, [
      'test.toml: cluster "alpha": backup_request.enable: unknown key, ignored; did you mean "enabled"?',
      'test.toml: cluster "alpha": backup_request.trigger: unknown key, ignored; did you mean "trigger_slow_ms"?',
      'test.toml: cluster "alpha": limits.max_arg: unknown key, ignored; did you mean "max_args"?',
      'test.toml: cluster "alpha": limits.colour: unknown key, ignored',
    ]);
  });

  it('points twemproxy keys at their aster-proxy names', () => {
    const { warnings } = parse(standalone('redis_auth = "x"\nserver_failure_limit = 2\nhash = "fnv1a_64"'));
    assert.equal(warnings.length, 3);
    assert.ok(warnings[0]!.endsWith('did you mean "backend_password"?'));
    assert.ok(warnings[1]!.endsWith('did you mean "ping_fail_limit"?'));
    assert.ok(warnings[2]!.includes('fnv1a_64'));
  });

  it('points aster HEAD\'s auth key to [[clusters.users]]; reads backend_auth as an ACL user for the backends', () => {
    const { warnings } = parse(standalone('auth = "x"'));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /cluster "alpha": auth: unknown key, ignored; use \[\[clusters\.users\]\] tables/);
    const { config } = parse(standalone('backend_auth = { username = "proxy", password = "pw" }'));
    assert.equal(config.clusters[0]!.backendUsername, 'proxy');
    assert.equal(config.clusters[0]!.backendPassword, 'pw');
    assert.throws(() => parse(standalone('backend_auth = { username = "proxy" }')), /backend_auth\.password: required/);
    assert.throws(() => parse(standalone('backend_password = "a"\nbackend_auth = { username = "u", password = "b" }')), /backend_auth: give the backends' credentials one way only/);
  });

  it('warns that hash_tag is ignored in cluster mode, and drops it', () => {
    const { config, warnings } = parse(clustered('hash_tag = "{}"'));
    assert.deepEqual(warnings, [
      'test.toml: cluster "beta": hash_tag: ignored in redis_cluster mode (Redis Cluster always hashes the {...} part of a key)',
    ]);
    assert.equal(config.clusters[0]!.hashTag, undefined);
  });

  it('warns about cluster-only keys in a standalone cluster', () => {
    const { warnings } = parse(standalone('fetch_interval = 1000\nread_from_slave = true'));
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /cluster "alpha": fetch_interval: ignored when cache_type = "redis"/);
    assert.match(warnings[1]!, /cluster "alpha": read_from_slave: ignored/);
  });
});

describe('parseConfig: TOML syntax errors', () => {
  it('names the file and the line', () => {
    const p = oneProblem('[[clusters]]\nname = "x"\nlisten_addr = \n', 'test.toml: line 3, column 15: invalid TOML: unexpected end of line');
    assert.ok(p.includes('"listen_addr ="'));
  });

  it('reports a redefined key at its line', () => {
    oneProblem('[[clusters]]\nname = "x"\nname = "y"\n', 'test.toml: line 3', 'invalid TOML', "Cannot redefine existing key 'clusters.name'");
  });

  it('reports an unterminated string and a stray character', () => {
    oneProblem('[[clusters]]\nname = "x', 'test.toml: line 2', 'unexpected end of file');
    oneProblem('[[clusters]]\nname = @\n', 'test.toml: line 2, column 8: invalid TOML: unexpected "@"');
  });

  it('accepts a byte order mark', () => {
    parse(`\uFEFF${standalone()}`);
  });
});

describe('loadConfig', () => {
  it('names a missing file', () => {
    const missing = join(tmpdir(), 'aster-proxy-no-such-dir', 'nope.toml');
    assert.throws(
      () => loadConfig(missing, NO_ENV),
      (err: unknown) => err instanceof ConfigError && err.message === `${missing}: cannot read the config file: no such file`,
    );
  });

  it('names a directory given as the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'aster-proxy-cfg-'));
    try {
      assert.throws(() => loadConfig(dir, NO_ENV), (err: unknown) => err instanceof ConfigError && err.message.startsWith(`${dir}: cannot read`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a file and names it in messages', () => {
    const dir = mkdtempSync(join(tmpdir(), 'aster-proxy-cfg-'));
    try {
      const file = join(dir, 'x.toml');
      writeFileSync(file, standalone('thread = "2"'));
      assert.throws(() => loadConfig(file, NO_ENV), (err: unknown) => err instanceof ConfigError && err.message.startsWith(`${file}: cluster "alpha": thread: `));
      writeFileSync(file, standalone());
      assert.equal(loadConfig(file, NO_ENV).config.file, file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the shipped default.toml is valid, warning-free, and as documented', () => {
    const root = repoRoot();
    const { config, warnings } = loadConfig(join(root, 'default.toml'), NO_ENV);
    assert.deepEqual(warnings, []);
    assert.equal(config.clusters.length, 1);
    const c = config.clusters[0]!;
    assert.equal(c.name, 'default');
    assert.equal(c.listenAddr, '127.0.0.1:26379');
    assert.equal(c.cacheType, 'redis');
    assert.deepEqual(
      c.servers.map((s) => `${s.addr}:${s.weight} ${s.alias}`),
      ['127.0.0.1:6381:1 redis1', '127.0.0.1:6382:1 redis2', '127.0.0.1:6383:1 redis3'],
    );
    assert.equal(c.hashTag, '{}');
    assert.equal(c.readTimeout, 1000);
    assert.equal(c.thread, 1);
  });
});

describe('logging never shows passwords', () => {
  it('redacts passwords in a logged config and in logged objects', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (s: string) => void lines.push(s) });
    const { config } = parse(standalone('password = "front-secret"\nbackend_password = "back-secret"'));
    logger.info({ config }, 'loaded');
    logger.info({ cluster: config.clusters[0] }, 'cluster');
    logger.info({ password: 'p1', backend_password: 'p2', user: { password: 'p3' } }, 'raw');
    const all = lines.join('');
    for (const secret of ['front-secret', 'back-secret', 'p1', 'p2', 'p3']) {
      assert.equal(all.includes(`"${secret}"`), false, `${secret} leaked: ${all}`);
    }
    assert.ok(all.includes(REDACTED));
    const first = JSON.parse(lines[0]!) as { name: string; config: { clusters: Array<{ password: string; name: string }> } };
    assert.equal(first.name, 'aster-proxy');
    assert.equal(first.config.clusters[0]!.password, REDACTED);
    assert.equal(first.config.clusters[0]!.name, 'alpha');
  });

  it('rejects an unknown level and honours silent', () => {
    assert.throws(() => createLogger('loud'), /unknown log level "loud"/);
    const lines: string[] = [];
    createLogger('silent', { write: (s: string) => void lines.push(s) }).fatal('x');
    assert.deepEqual(lines, []);
  });
});

describe('parseConfig: slowlog', () => {
  it('-1 turns the slow log off, 0 logs every request, and a length of 0 keeps nothing', () => {
    assert.equal(parse(standalone('slowlog_log_slower_than = -1')).config.clusters[0]!.slowlogLogSlowerThan, -1);
    assert.equal(parse(standalone('slowlog_log_slower_than = 0')).config.clusters[0]!.slowlogLogSlowerThan, 0);
    assert.equal(parse(standalone('slowlog_max_len = 0')).config.clusters[0]!.slowlogMaxLen, 0);
  });
  it('a misspelt slowlog key is a warning with a did-you-mean', () => {
    const { warnings } = parse(standalone('slowlog_slower_than = 5'));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /slowlog_slower_than: unknown key, ignored; did you mean "slowlog_log_slower_than"\?/);
  });
});

describe('parseConfig: eject_mode', () => {
  const base = (extra: string): string =>
    `[[clusters]]\nname = "a"\nlisten_addr = "127.0.0.1:7000"\ncache_type = "redis"\nservers = ["127.0.0.1:6379"]\n${extra}`;
  it('accepts remap and fail_fast, defaulting to remap', () => {
    assert.equal(parseConfig(base(''), 'e.toml').config.clusters[0].ejectMode, 'remap');
    assert.equal(parseConfig(base('eject_mode = "fail_fast"'), 'e.toml').config.clusters[0].ejectMode, 'fail_fast');
  });
  it('names the file, cluster and key of a bad value', () => {
    assert.throws(() => parseConfig(base('eject_mode = "drop"'), 'e.toml'), /e\.toml: cluster "a": eject_mode: expected "remap"/);
  });
});

describe('parseConfig: maxclients and deny_commands', () => {
  const base = (extra: string): string =>
    `[[clusters]]\nname = "a"\nlisten_addr = "127.0.0.1:7000"\ncache_type = "redis"\nservers = ["127.0.0.1:6379"]\n${extra}`;
  it('reads them, lower-casing command names, and replaces the default list', () => {
    const c = parseConfig(base('maxclients = 5\ndeny_commands = ["FLUSHALL", "config|set"]'), 'p.toml').config.clusters[0];
    assert.equal(c.maxClients, 5);
    assert.deepEqual(c.denyCommands, ['flushall', 'config|set']);
    assert.ok(parseConfig(base(''), 'p.toml').config.clusters[0].denyCommands.includes('shutdown'));
    assert.deepEqual(parseConfig(base('deny_commands = []'), 'p.toml').config.clusters[0].denyCommands, []);
  });
  it('names the file, cluster and key of bad values', () => {
    assert.throws(() => parseConfig(base('maxclients = 0'), 'p.toml'), /p\.toml: cluster "a": maxclients:/);
    assert.throws(() => parseConfig(base('deny_commands = ["rm -rf"]'), 'p.toml'), /p\.toml: cluster "a": deny_commands: expected a list of command names/);
  });
});
