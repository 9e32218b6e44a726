import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../../src/config/types.js';
import {
  defaultIp,
  EXIT_CONFIG,
  EXIT_OK,
  EXIT_USAGE,
  readVersion,
  runCli,
  serveProxy,
  type ServeDeps,
  type ServeRequest,
} from '../../src/cli.js';
import { createLogger } from '../../src/sinks/log.js';
import type { ProxyOptions, RunningProxy } from '../../src/streams/proxy.js';
import { REPO_ROOT } from '../helpers/repo.js';

/** Every spawned process is killed after this long, so a hang fails the test instead of the run. */
const PROCESS_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT = { timeout: 30_000 };

const ROOT = REPO_ROOT;
const BIN = join(ROOT, 'bin', 'aster-proxy.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of a spawned proxy: ours, without settings that would change its output. */
function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!('ASTER_DEFAULT_THREAD' in extra)) delete env['ASTER_DEFAULT_THREAD'];
  return env;
}

function run(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; bin?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [opts.bin ?? BIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: childEnv(opts.env),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: PROCESS_TIMEOUT_MS,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const GOOD = `
[[clusters]]
name = "shards"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:1:1 one", "127.0.0.1:2:1 two"]
hash_tag = "{}"
thread = 1
password = "hunter2-secret"
`;

const BAD = `
[[clusters]]
name = "alpha"
listen_addr = "127.0.0.1:0"
cache_type = "memcache"
servers = ["127.0.0.1:1"]
read_timeout = "fast"

[[clusters]]
listen_addr = "127.0.0.1:0"
servers = []
`;

const WARNING_ONLY = `
[[clusters]]
name = "alpha"
listen_addr = "127.0.0.1:0"
cache_type = "redis"
servers = ["127.0.0.1:1"]
thread = 1
read_timout = 5
`;

let dir = '';
const file = (name: string) => join(dir, name);

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'aster-proxy-cli-'));
  writeFileSync(file('good.toml'), GOOD);
  writeFileSync(file('bad.toml'), BAD);
  writeFileSync(file('warn.toml'), WARNING_ONLY);
  writeFileSync(file('syntax.toml'), '[[clusters]]\nname = "x"\nlisten_addr = \n');
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('aster-proxy (spawned)', () => {
  it('--version and -V print the package version', TEST_TIMEOUT, async () => {
    for (const flag of ['--version', '-V']) {
      const r = await run([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${VERSION}\n`);
      assert.equal(r.stderr, '');
    }
  });

  it('--help lists the flags, examples, exit codes and environment', TEST_TIMEOUT, async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const s of ['--config', '--ip', '--metrics', '--reload', '--version', '--check', '--log-level', 'Examples:', 'Exit status:', 'ASTER_DEFAULT_THREAD', 'default.toml', '2110']) {
      assert.ok(r.stdout.includes(s), `help should mention ${s}:\n${r.stdout}`);
    }
    assert.equal((await run(['-h'])).stdout, r.stdout);
  });

  it('--check passes the shipped default.toml (the default config)', TEST_TIMEOUT, async () => {
    const r = await run(['--check']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^default\.toml: ok: 1 cluster: default \(redis on 127\.0\.0\.1:26379\)\n$/);
    assert.equal(r.stderr, '');
  });

  it('--check passes a good config', TEST_TIMEOUT, async () => {
    const r = await run(['--check', '-c', file('good.toml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith(`${file('good.toml')}: ok: 1 cluster: shards`));
  });

  it('takes the config file as the one argument too (aster-proxy FILE)', TEST_TIMEOUT, async () => {
    const r = await run(['--check', file('good.toml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith(`${file('good.toml')}: ok: 1 cluster: shards`), r.stdout);
    const bad = await run([file('bad.toml'), '-m', '0']);
    assert.equal(bad.code, 1, 'the file given as the argument is the one read');
    assert.ok(bad.stderr.includes('Memcached is not supported'), bad.stderr);
  });

  it('--check prints every problem of a bad config and exits 1', TEST_TIMEOUT, async () => {
    const f = file('bad.toml');
    const r = await run(['--check', '--config', f]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    for (const want of [
      `error: ${f}: cluster "alpha": cache_type: Memcached is not supported by aster-proxy`,
      `error: ${f}: cluster "alpha": read_timeout: expected a positive integer (milliseconds)`,
      `error: ${f}: cluster #2: name: required`,
      `error: ${f}: cluster #2: servers: at least one server is required`,
    ]) {
      assert.ok(lines.some((l) => l.startsWith(want)), `missing ${want}:\n${r.stderr}`);
    }
    assert.equal(lines.at(-1), `${f}: invalid: 4 errors, 0 warnings`);
  });

  it('--check fails on warnings alone, and says why', TEST_TIMEOUT, async () => {
    const f = file('warn.toml');
    const r = await run(['--check', '-c', f]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`warning: ${f}: cluster "alpha": read_timout: unknown key, ignored; did you mean "read_timeout"?`), r.stderr);
    assert.ok(r.stderr.includes('--check treats warnings as errors'));
  });

  it('--check names the line of a TOML syntax error', TEST_TIMEOUT, async () => {
    const f = file('syntax.toml');
    const r = await run(['--check', '-c', f]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`error: ${f}: line 3, column 15: invalid TOML`), r.stderr);
  });

  it('--check names a bad ASTER_DEFAULT_THREAD', TEST_TIMEOUT, async () => {
    const r = await run(['--check'], { env: { ASTER_DEFAULT_THREAD: 'lots' } });
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes('environment variable ASTER_DEFAULT_THREAD: expected a positive integer'), r.stderr);
  });

  it('a missing config file is named, with or without --check', TEST_TIMEOUT, async () => {
    const f = file('missing.toml');
    for (const args of [['--check', '-c', f], ['-c', f, '-m', '0']]) {
      const r = await run(args);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(`${f}: cannot read the config file: no such file`), r.stderr);
    }
  });

  it('a bad config stops the start with exit 1', TEST_TIMEOUT, async () => {
    const r = await run(['-c', file('bad.toml'), '-m', '0']);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes('Memcached is not supported'), r.stderr);
    assert.ok(r.stderr.includes('not starting'), r.stderr);
  });

  it('an unknown flag is a usage error (exit 2) with a hint', TEST_TIMEOUT, async () => {
    const r = await run(['--chek', '-c', file('missing.toml')]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.includes('unknown argument: chek (did you mean --check?)'), r.stderr);
    assert.ok(r.stderr.includes('--help'));
  });

  it('bad flag values are usage errors (exit 2)', TEST_TIMEOUT, async () => {
    const cases: Array<[string[], string]> = [
      [['-m', '70000'], '--metrics: expected a port number from 0 to 65535, got "70000"'],
      [['--metrics', 'abc'], '--metrics: expected a port number'],
      [['-m'], '--metrics needs a value'],
      [['-c'], '--config needs a value'],
      [['-l', 'loud'], 'Invalid values'],
      [['-i', 'not an ip!'], '--ip: expected an IP address or host name'],
      // FILE and --config both: which one was meant is unclear
      [['stray'], 'the config file was given twice: "stray" and --config'],
      [['-m', '0', 'a.toml', 'b.toml'], 'unexpected argument: b.toml'],
    ];
    for (const [args, message] of cases) {
      // should a bad flag ever slip through, the missing config stops the run (exit 1, not 2)
      // instead of starting a proxy on the default port
      const r = await run(args[0] === '-c' ? args : [...args, '-c', file('missing.toml')]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stderr.includes(message), `${args.join(' ')}: ${r.stderr}`);
    }
  });

  it('runs a good config: logs warnings, then either serves until SIGTERM or reports a failed start', TEST_TIMEOUT, async () => {
    // startProxy is being written elsewhere: accept both outcomes, check each one fully
    const f = file('run.toml');
    writeFileSync(f, `${GOOD}\nread_timout = 5\n`);
    const child = spawn(process.execPath, [BIN, '-c', f, '-m', '0', '-i', '10.1.2.3'], {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: PROCESS_TIMEOUT_MS,
    });
    let stderr = '';
    let sawListening = false;
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve) => {
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (!sawListening && stderr.includes('"msg":"listening"')) {
          sawListening = true;
          resolve();
        }
      });
      void exited.then(() => resolve());
    });
    if (sawListening) child.kill('SIGTERM');
    const code = await exited;
    const logs = stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; name: string; [k: string]: unknown });
    assert.ok(logs.every((l) => l.name === 'aster-proxy'));
    const warn = logs.find((l) => l.level === 40);
    assert.ok(warn && warn.msg.includes('read_timout'), stderr);
    const starting = logs.find((l) => l.msg === 'starting');
    assert.ok(starting, stderr);
    assert.equal(starting['ip'], '10.1.2.3');
    assert.equal(starting['metricsPort'], 0);
    assert.equal(stderr.includes('hunter2-secret'), false, 'a password reached the log');
    if (sawListening) {
      assert.equal(code, 0, stderr);
      const listening = logs.find((l) => l.msg === 'listening');
      assert.equal(listening?.['cluster'], 'shards');
      assert.match(String(listening?.['address']), /^127\.0\.0\.1:\d+$/);
      assert.ok(logs.some((l) => l.msg === 'stopped'), stderr);
    } else {
      assert.equal(code, 1, stderr);
      assert.ok(logs.some((l) => l.level === 60 && l.msg === 'failed to start'), stderr);
    }
  });

  it('bin/aster-proxy.js without dist/ says to build first', TEST_TIMEOUT, async () => {
    const fake = join(dir, 'nobuild');
    mkdirSync(join(fake, 'bin'), { recursive: true });
    writeFileSync(join(fake, 'package.json'), '{"type":"module"}');
    copyFileSync(BIN, join(fake, 'bin', 'aster-proxy.js'));
    const r = await run(['--version'], { bin: join(fake, 'bin', 'aster-proxy.js'), cwd: fake });
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes('run npm run build first'), r.stderr);
  });
});

/** An in-memory stdout/stderr. */
function sink(): { write(s: string): boolean; text: string } {
  return {
    text: '',
    write(s: string) {
      this.text += s;
      return true;
    },
  };
}

describe('runCli (in process)', () => {
  it('reads the version from package.json', () => {
    assert.equal(readVersion(), VERSION);
  });

  it('--version, --check and usage errors resolve to exit codes', async () => {
    const out = sink();
    const err = sink();
    assert.equal(await runCli(['-V'], { stdout: out, stderr: err, env: {} }), EXIT_OK);
    assert.equal(out.text, `${VERSION}\n`);
    assert.equal(await runCli(['--check', '-c', file('good.toml')], { stdout: out, stderr: err, env: {} }), EXIT_OK);
    assert.equal(await runCli(['--check', '-c', file('bad.toml')], { stdout: out, stderr: err, env: {} }), EXIT_CONFIG);
    assert.equal(await runCli(['--nope'], { stdout: out, stderr: err, env: {} }), EXIT_USAGE);
    assert.equal(await runCli(['-c', 'a.toml', '-c', 'b.toml'], { stdout: out, stderr: err, env: {} }), EXIT_USAGE);
    assert.ok(err.text.includes('--config was given more than once'));
  });

  it('hands the loaded config and flags to serve', async () => {
    const seen: ServeRequest[] = [];
    const io = { stdout: sink(), stderr: sink(), env: { ASTER_DEFAULT_THREAD: '2' }, serve: async (req: ServeRequest) => (seen.push(req), 0) };
    assert.equal(await runCli(['-c', file('warn.toml'), '-i', '10.0.0.9', '-m', '9100', '-r', '-l', 'debug'], io), 0);
    assert.equal(seen.length, 1);
    const req = seen[0]!;
    assert.equal(req.ip, '10.0.0.9');
    assert.equal(req.metricsPort, 9100);
    assert.equal(req.reload, true);
    assert.equal(req.logLevel, 'debug');
    assert.equal(req.version, VERSION);
    assert.equal(req.config.clusters[0]!.name, 'alpha');
    assert.equal(req.warnings.length, 1);

    assert.equal(await runCli(['-c', file('good.toml')], io), 0);
    const dflt = seen[1]!;
    assert.equal(dflt.metricsPort, 2110);
    assert.equal(dflt.reload, false);
    assert.equal(dflt.logLevel, 'info');
    assert.equal(dflt.ip, defaultIp(io.env));
    assert.equal(dflt.config.clusters[0]!.thread, 1);
  });

  it('defaultIp: first non-loopback IPv4, else HOST, else 127.0.0.1', () => {
    const lo = { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' } as const;
    const v6 = { address: 'fe80::1', netmask: 'ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 } as const;
    const eth = { address: '192.0.2.7', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '192.0.2.7/24' } as const;
    assert.equal(defaultIp({ HOST: '10.9.9.9' }, { lo: [lo], eth0: [v6, eth] }), '192.0.2.7');
    assert.equal(defaultIp({ HOST: '10.9.9.9' }, { lo: [lo], eth0: [v6] }), '10.9.9.9');
    assert.equal(defaultIp({ HOST: 'proxy-1.example.com' }, { lo: [lo] }), 'proxy-1.example.com');
    assert.equal(defaultIp({ HOST: 'not valid!' }, { lo: [lo] }), '127.0.0.1');
    assert.equal(defaultIp({}, {}), '127.0.0.1');
  });
});

describe('serveProxy (in process, fake proxy and signals)', () => {
  const config: Config = {
    file: 'x.toml',
    clusters: [],
  };

  function harness(opts: { start?: () => Promise<unknown>; close?: () => Promise<void> } = {}) {
    const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
    const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) });
    let handler: ((s: NodeJS.Signals) => void) | undefined;
    const exits: number[] = [];
    let closed = 0;
    let startedWith: ProxyOptions | undefined;
    const proxy: RunningProxy = {
      listeners: [
        { cluster: 'a', host: '127.0.0.1', port: 4000 },
        { cluster: 'b', host: '::1', port: 4001 },
      ],
      close: async () => {
        closed++;
        await (opts.close?.() ?? Promise.resolve());
      },
      shutdown: async () => {
        closed++;
        await (opts.close?.() ?? Promise.resolve());
      },
    };
    const deps: ServeDeps = {
      logger,
      startProxy: async (_c, o) => {
        startedWith = o;
        if (opts.start) await opts.start();
        return proxy;
      },
      onStopSignal: (h) => {
        handler = h;
        return () => {
          handler = undefined;
        };
      },
      exitNow: (code) => void exits.push(code),
    };
    const req: ServeRequest = { config, warnings: ['x.toml: w1'], ip: '10.0.0.1', ipGiven: true, metricsPort: 0, reload: true, logLevel: 'info', version: '9.9.9' };
    return {
      lines,
      deps,
      req,
      exits,
      signal: (s: NodeJS.Signals) => handler?.(s),
      subscribed: () => handler !== undefined,
      closed: () => closed,
      startedWith: () => startedWith,
    };
  }

  const tick = () => new Promise<void>((r) => setImmediate(r));

  it('logs warnings and listeners, closes on the first signal, exits 0', async () => {
    const h = harness();
    const done = serveProxy(h.req, h.deps);
    await tick();
    assert.deepEqual(h.startedWith(), { ip: '10.0.0.1', ipGiven: true, metricsPort: 0, reload: true, configFile: config.file, logger: h.deps.logger });
    assert.ok(h.subscribed());
    h.signal('SIGTERM');
    assert.equal(await done, 0);
    assert.equal(h.closed(), 1);
    assert.equal(h.subscribed(), false);
    assert.deepEqual(h.exits, []);
    assert.deepEqual(
      h.lines.map((l) => [l.level, l.msg]),
      [
        [40, 'x.toml: w1'],
        [30, 'starting'],
        [30, 'listening'],
        [30, 'listening'],
        [30, 'shutting down'],
        [30, 'stopped'],
      ],
    );
    assert.deepEqual(
      h.lines.filter((l) => l.msg === 'listening').map((l) => [l['cluster'], l['address']]),
      [
        ['a', '127.0.0.1:4000'],
        ['b', '[::1]:4001'],
      ],
    );
  });

  it('a second signal while closing exits at once with 128 + signal number', async () => {
    let finishClose!: () => void;
    const h = harness({ close: () => new Promise<void>((r) => (finishClose = r)) });
    const done = serveProxy(h.req, h.deps);
    await tick();
    h.signal('SIGINT');
    await tick();
    h.signal('SIGINT');
    assert.deepEqual(h.exits, [130]);
    h.signal('SIGTERM');
    assert.deepEqual(h.exits, [130, 143]);
    finishClose();
    assert.equal(await done, 0);
  });

  it('a signal during start closes the proxy as soon as it is up', async () => {
    let finishStart!: () => void;
    const h = harness({ start: () => new Promise<void>((r) => (finishStart = r)) });
    const done = serveProxy(h.req, h.deps);
    await tick();
    h.signal('SIGTERM');
    assert.equal(h.closed(), 0);
    finishStart();
    assert.equal(await done, 0);
    assert.equal(h.closed(), 1);
  });

  it('a failed start is logged as fatal and exits 1', async () => {
    const h = harness({ start: () => Promise.reject(new Error('EADDRINUSE 127.0.0.1:4000')) });
    assert.equal(await serveProxy(h.req, h.deps), 1);
    const fatal = h.lines.find((l) => l.level === 60);
    assert.equal(fatal?.msg, 'failed to start');
    assert.ok(JSON.stringify(fatal).includes('EADDRINUSE'));
    assert.equal(h.subscribed(), false);
  });

  it('a failed close is logged and exits 1', async () => {
    const h = harness({ close: () => Promise.reject(new Error('stuck')) });
    const done = serveProxy(h.req, h.deps);
    await tick();
    h.signal('SIGTERM');
    assert.equal(await done, 1);
    assert.ok(h.lines.some((l) => l.level === 50 && l.msg === 'error while closing'));
  });
});
