/** Named users ([[clusters.users]]): AUTH user pass, read-only users, per-user denied commands, the default user. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/sinks/log.js';
import { startProxy, type RunningProxy } from '../../src/streams/proxy.js';
import { assertErr, Raw } from '../helpers/raw-client.js';
import { startRedis, stopAll, type RedisProc } from '../helpers/servers.js';

const opts = { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') };

describe('named users', () => {
  let redis: RedisProc;
  let proxy: RunningProxy;
  let usersOnly: RunningProxy;
  const open: Raw[] = [];

  before(async () => {
    redis = await startRedis();
    const users = `
[[clusters.users]]
name = "reader"
password = "read-pw"
commands = "read-only"

[[clusters.users]]
name = "writer"
password_env = "ACL_TEST_WRITER_PW"
deny_commands = ["keys", "flushall"]
`;
    const env = { ACL_TEST_WRITER_PW: 'write-pw' };
    const base = (extra: string) => `[[clusters]]
name = "acl"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
admin_commands = true
servers = ["127.0.0.1:${redis.port}:1"]
${extra}
${users}`;
    proxy = await startProxy(parseConfig(base('password = "admin-pw"'), 'acl.toml', env).config, opts);
    usersOnly = await startProxy(parseConfig(base(''), 'acl2.toml', env).config, opts);
  });
  after(async () => {
    for (const r of open) r.close();
    await proxy?.close();
    await usersOnly?.close();
    await stopAll();
  });

  const connect = async (p: RunningProxy = proxy): Promise<Raw> => {
    const r = await Raw.connect(p.listeners[0].port);
    open.push(r);
    return r;
  };

  it('a read-only user reads, and gets NOPERM for writes (in a transaction too, which then aborts)', async () => {
    const admin = await connect();
    assert.equal(await admin.call('AUTH', 'admin-pw'), 'OK');
    assert.equal(await admin.call('SET', 'acl:k', 'v'), 'OK');
    const r = await connect();
    assertErr(await r.call('GET', 'acl:k'), 'NOAUTH');
    assert.equal(await r.call('AUTH', 'reader', 'read-pw'), 'OK');
    assert.equal(await r.call('GET', 'acl:k'), 'v');
    assert.deepEqual(await r.call('MGET', 'acl:k', 'acl:none'), ['v', null]);
    assert.equal(typeof (await r.call('DBSIZE')), 'number');
    assert.equal(await r.call('PING'), 'PONG');
    assertErr(await r.call('SET', 'acl:k', 'x'), 'NOPERM', 'SET');
    assertErr(await r.call('DEL', 'acl:k'), 'NOPERM', 'DEL');
    assertErr(await r.call('FLUSHALL'), 'NOPERM', 'FLUSHALL');
    assertErr(await r.call('EVAL', 'return 1', '0'), 'NOPERM', 'EVAL');
    assert.equal(await r.call('MULTI'), 'OK');
    assert.equal(await r.call('GET', 'acl:k'), 'QUEUED');
    assertErr(await r.call('INCR', 'acl:n'), 'NOPERM', 'INCR in MULTI');
    assertErr(await r.call('EXEC'), 'EXECABORT');
    assert.equal(await admin.call('GET', 'acl:k'), 'v');
    assert.equal(await admin.call('EXISTS', 'acl:n'), 0);
  });

  it('a user with its own denied commands; its password from the environment; HELLO AUTH', async () => {
    const w = await connect();
    const hello = await w.call('HELLO', '3', 'AUTH', 'writer', 'write-pw');
    assert.ok(hello !== null && typeof hello === 'object' && !Array.isArray(hello), JSON.stringify(hello));
    assert.equal(await w.call('SET', 'acl:w', '1'), 'OK');
    assertErr(await w.call('KEYS', '*'), 'NOPERM', 'KEYS');
    assertErr(await w.call('FLUSHALL'), 'NOPERM', 'FLUSHALL');
    assert.equal(await w.call('INCR', 'acl:w'), 2);
  });

  it('refuses unknown users and wrong passwords alike; the default user is the password of "password"', async () => {
    const c = await connect();
    assertErr(await c.call('AUTH', 'nobody', 'read-pw'), 'WRONGPASS');
    assertErr(await c.call('AUTH', 'reader', 'write-pw'), 'WRONGPASS');
    assertErr(await c.call('AUTH', 'default', 'read-pw'), 'WRONGPASS');
    assert.equal(await c.call('AUTH', 'default', 'admin-pw'), 'OK');
    assert.equal(await c.call('KEYS', 'acl:nothing*').then((v) => Array.isArray(v)), true);
    // a named user after the default one: its rights from then on
    assert.equal(await c.call('AUTH', 'reader', 'read-pw'), 'OK');
    assertErr(await c.call('SET', 'acl:k', 'y'), 'NOPERM');
  });

  it('with users and no password, the default user is off: clients must AUTH as a user', async () => {
    const c = await connect(usersOnly);
    assertErr(await c.call('GET', 'acl:k'), 'NOAUTH');
    assertErr(await c.call('AUTH', 'anything'), 'ERR');
    assertErr(await c.call('AUTH', 'default', 'anything'), 'WRONGPASS');
    assert.equal(await c.call('AUTH', 'reader', 'read-pw'), 'OK');
    assert.equal(await c.call('GET', 'acl:k'), 'v');
  });

  it('refuses a bad users table with the file, the cluster and the key', () => {
    const bad = (users: string): string => {
      try {
        parseConfig(`[[clusters]]\nname = "b"\nlisten_addr = "127.0.0.1:0"\ncache_type = "redis"\nservers = ["127.0.0.1:6379"]\n${users}`, 'b.toml', {});
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.join('\n');
        throw err;
      }
      return 'accepted';
    };
    assert.match(bad('[[clusters.users]]\nname = "default"\npassword = "x"\n'), /b\.toml: cluster "b": users\[0\]\.name: "default" is the user of "password"/);
    assert.match(bad('[[clusters.users]]\nname = "u"\n'), /users\[0\]\.password: required/);
    assert.match(bad('[[clusters.users]]\nname = "u"\npassword = "x"\ncommands = "some"\n'), /users\[0\]\.commands: expected "all" or "read-only"/);
    assert.match(bad('[[clusters.users]]\nname = "u"\npassword = "x"\n[[clusters.users]]\nname = "u"\npassword = "y"\n'), /users\[1\]\.name: the user "u" is defined twice/);
  });
});
