import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { loadConfig } from '../../src/sources/config-file.js';

const base = `[[clusters]]
name = "s"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:6379:1"]
`;

const problems = (f: () => unknown): string[] => {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected a ConfigError');
};

describe('passwords from the environment or a file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aster-secrets-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads password_env and backend_password_env from the environment', () => {
    const { config } = parseConfig(base + 'password_env = "FRONT_PW"\nbackend_password_env = "BACK_PW"\n', 's.toml', { FRONT_PW: 'f-secret', BACK_PW: 'b-secret' });
    assert.equal(config.clusters[0].password, 'f-secret');
    assert.equal(config.clusters[0].backendPassword, 'b-secret');
  });

  it('names the file, the cluster, the key and the variable when the variable is not set', () => {
    const p = problems(() => parseConfig(base + 'password_env = "NOPE_PW"\n', 's.toml', {}));
    assert.deepEqual(p, ['s.toml: cluster "s": password_env: the environment variable "NOPE_PW" is not set']);
  });

  it('reads password_file relative to the config file, dropping one trailing newline', () => {
    fs.mkdirSync(path.join(dir, 'secrets'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'secrets', 'front'), 'from-a-file\n');
    fs.writeFileSync(path.join(dir, 'back'), 'back end pw');
    const file = path.join(dir, 'p.toml');
    fs.writeFileSync(file, base + 'password_file = "secrets/front"\nbackend_password_file = "' + path.join(dir, 'back') + '"\n');
    const { config } = loadConfig(file, {});
    assert.equal(config.clusters[0].password, 'from-a-file');
    assert.equal(config.clusters[0].backendPassword, 'back end pw');
  });

  it('refuses a missing or empty file, naming it', () => {
    const file = path.join(dir, 'm.toml');
    fs.writeFileSync(file, base + 'password_file = "missing"\n');
    const p = problems(() => loadConfig(file, {}));
    assert.equal(p.length, 1);
    assert.match(p[0], /m\.toml: cluster "s": password_file: cannot read "missing": ENOENT/);
    fs.writeFileSync(path.join(dir, 'empty'), '\n');
    fs.writeFileSync(file, base + 'backend_password_file = "empty"\n');
    assert.deepEqual(problems(() => loadConfig(file, {})), [`${file}: cluster "s": backend_password_file: the password is empty`]);
  });

  it('refuses a password given two ways', () => {
    const p = problems(() => parseConfig(base + 'password = "a"\npassword_env = "X"\n', 's.toml', { X: 'b' }));
    assert.deepEqual(p, ['s.toml: cluster "s": password_env: give the password one way only: password and password_env are both set']);
  });

  it('cannot read a file when the config text did not come from a file', () => {
    const p = problems(() => parseConfig(base + 'password_file = "x"\n', 's.toml', {}));
    assert.match(p[0], /password_file: files cannot be read here/);
  });
});
