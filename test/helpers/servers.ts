/**
 * Real servers for integration tests: redis-server and nutcracker as child processes on loopback.
 *
 * - Every child runs in its own temp dir (under os.tmpdir()), with its output in `<dir>/output.log`;
 *   a start that fails throws with the tail of that log.
 * - Children are stopped by PID only: `stop()` sends SIGTERM, then SIGKILL after a few seconds.
 * - Nothing is left behind: `stopAll()` in `after()` hooks; a process 'exit' handler SIGKILLs any
 *   child still running and removes the temp dirs; and a small detached watchdog (one per test
 *   process) does the same if this process dies without running its exit handlers (SIGKILL, a
 *   test-runner timeout).
 * - Children are unref'd while idle, so a test file that forgets `stopAll()` still ends (and the
 *   exit handler cleans up). They are ref'd while someone waits for them to exit.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const HOST = '127.0.0.1' as const;
const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? 'redis-server';
const NUTCRACKER = process.env.NUTCRACKER_BIN ?? 'nutcracker';
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
/** attempts for a start on a port we picked ourselves (someone may take it between pick and bind) */
const START_ATTEMPTS = 4;

export interface Proc {
  readonly pid: number;
  readonly port: number;
  readonly host: '127.0.0.1';
  /** SIGTERM by PID, SIGKILL after a few seconds; resolves when the process has exited */
  stop(): Promise<void>;
  /** send a signal by PID (default SIGKILL); does nothing once the process has exited */
  kill(signal?: NodeJS.Signals): void;
  /** resolves with the exit code (null when ended by a signal) */
  readonly exited: Promise<number | null>;
}

export interface RedisProc extends Proc {
  /** the temp dir redis runs in (its `dir`) */
  readonly dir: string;
  /** false once the process has exited (killed, stopped, crashed); true again after restart() */
  readonly alive: boolean;
  /** stop it if running, then start it again on the same port with the same arguments */
  restart(): Promise<void>;
}

export interface NutcrackerProc extends Proc {
  readonly dir: string;
  readonly statsPort: number;
  readonly configPath: string;
  /** the yml written for it */
  readonly config: string;
}

// ---------------------------------------------------------------------------------------------
// Ports

const recentPorts = new Map<number, number>(); // port -> when handed out
const RECENT_PORT_MS = 10 * 60_000;

function bindProbe(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(null));
    server.listen({ host: HOST, port, exclusive: true }, () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

/**
 * A port free on 127.0.0.1 right now (bind to port 0, read it, close), never one this process
 * handed out in the last few minutes. With `clusterBus`, port + 10000 (Redis Cluster's bus port)
 * is free too.
 */
export async function freePort(opts: { clusterBus?: boolean } = {}): Promise<number> {
  const now = Date.now();
  for (const [port, at] of recentPorts) if (now - at > RECENT_PORT_MS) recentPorts.delete(port);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await bindProbe(0);
    if (port === null || recentPorts.has(port)) continue;
    if (opts.clusterBus) {
      if (port + 10000 > 65535 || recentPorts.has(port + 10000)) continue;
      if ((await bindProbe(port + 10000)) === null) continue;
      recentPorts.set(port + 10000, now);
    }
    recentPorts.set(port, now);
    return port;
  }
  throw new Error('freePort: no fresh free port found');
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping: running children and temp dirs, with a watchdog in case we die abruptly

const running = new Set<Child>();
/** started servers not yet stopped (their stop() also removes their dir) */
const registry = new Set<{ stop(): Promise<void> }>();
const tempDirs = new Set<string>();
let watchdog: ChildProcess | undefined;
let exitHandlerInstalled = false;

const WATCHDOG_SOURCE = `
const pids = new Set(), dirs = new Set(); let buf = '';
const fs = require('node:fs');
function reap() {
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  for (const dir of dirs) { try { fs.rmSync(dir, { recursive: true, force: true }); } catch {} }
  process.exit(0);
}
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk; let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const m = JSON.parse(buf.slice(0, nl)); buf = buf.slice(nl + 1);
    if (m.pid !== undefined) (m.add ? pids.add(m.pid) : pids.delete(m.pid));
    if (m.dir !== undefined) (m.add ? dirs.add(m.dir) : dirs.delete(m.dir));
  }
});
process.stdin.on('end', reap); process.stdin.on('error', reap);
`;

function tellWatchdog(message: { add: boolean; pid?: number; dir?: string }): void {
  if (watchdog === undefined) {
    watchdog = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    watchdog.on('error', () => undefined);
    watchdog.stdin!.on('error', () => undefined);
    watchdog.unref();
    (watchdog.stdin as unknown as net.Socket).unref();
  }
  if (watchdog.stdin!.writable) watchdog.stdin!.write(JSON.stringify(message) + '\n');
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.signal('SIGKILL');
    for (const dir of tempDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort at exit
      }
    }
  });
}

function makeTempDir(prefix: string): string {
  installExitHandler();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `aster-test-${prefix}-`));
  tempDirs.add(dir);
  tellWatchdog({ add: true, dir });
  return dir;
}

function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
  tellWatchdog({ add: false, dir });
}

function logTail(file: string, bytes = 2000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.length > bytes ? '...' + text.slice(-bytes) : text;
  } catch {
    return '(no output)';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One spawned OS process. */
class Child {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  private done = false;

  constructor(
    readonly proc: ChildProcess,
    readonly what: string,
  ) {
    if (proc.pid === undefined) throw new Error(`${what}: spawn failed`);
    this.pid = proc.pid;
    running.add(this);
    tellWatchdog({ add: true, pid: this.pid });
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code) => {
        this.done = true;
        running.delete(this);
        tellWatchdog({ add: false, pid: this.pid });
        resolve(code);
      });
    });
    proc.unref();
  }

  get alive(): boolean {
    return !this.done;
  }

  /** signal by PID; keeps the event loop alive until exit when the signal is meant to end it */
  signal(sig: NodeJS.Signals): void {
    if (this.done) return;
    if (sig === 'SIGKILL' || sig === 'SIGTERM' || sig === 'SIGINT' || sig === 'SIGQUIT' || sig === 'SIGABRT') {
      this.proc.ref();
    }
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  async stop(): Promise<void> {
    if (this.done) return;
    this.signal('SIGTERM');
    this.signal('SIGCONT'); // a SIGSTOPped child must run to act on SIGTERM
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.signal('SIGKILL');
        resolve();
      }, STOP_GRACE_MS);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    await this.exited;
  }

  /** `exited`, keeping the event loop alive until then (children are unref'd while idle) */
  awaitExit(): Promise<number | null> {
    this.proc.ref();
    return this.exited;
  }
}

function spawnLogged(bin: string, args: string[], dir: string, what: string): Child {
  const logFile = path.join(dir, 'output.log');
  const fd = fs.openSync(logFile, 'a');
  try {
    const proc = spawn(bin, args, { cwd: dir, stdio: ['ignore', fd, fd] });
    proc.on('error', (err) => fs.appendFileSync(logFile, `\nspawn error: ${err.message}\n`));
    return new Child(proc, what);
  } finally {
    fs.closeSync(fd);
  }
}

/** One request/reply on a fresh connection; resolves the first line of the reply, or null. */
function probe(port: number, payload: string | undefined, timeoutMs = 500): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    let reply = '';
    const finish = (value: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.on('error', () => finish(null));
    socket.on('connect', () => {
      if (payload === undefined) finish('');
      else socket.write(payload);
    });
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      const nl = reply.indexOf('\r\n');
      if (nl >= 0) finish(reply.slice(0, nl));
    });
    socket.on('close', () => finish(null));
  });
}

/** Spawn, then wait until `ready()` or the child dies or the start times out. */
async function launch(
  bin: string,
  args: string[],
  dir: string,
  what: string,
  ready: () => Promise<boolean>,
): Promise<Child> {
  const child = spawnLogged(bin, args, dir, what);
  const deadline = Date.now() + START_TIMEOUT_MS;
  let delay = 5;
  for (;;) {
    if (!child.alive) {
      throw new Error(`${what} exited during start (code ${await child.exited}):\n${logTail(path.join(dir, 'output.log'))}`);
    }
    if (await ready()) return child;
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`${what} not ready after ${START_TIMEOUT_MS} ms:\n${logTail(path.join(dir, 'output.log'))}`);
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
  }
}

// ---------------------------------------------------------------------------------------------
// redis-server

/** the "live" pong test: any reply except -LOADING means the server answers commands */
async function redisAnswers(port: number): Promise<boolean> {
  const line = await probe(port, 'PING\r\n');
  return line !== null && !line.startsWith('-LOADING');
}

class RedisServer implements RedisProc {
  readonly host = HOST;
  private child!: Child;
  private dirPath: string | undefined;

  constructor(
    readonly port: number,
    private readonly args: string[],
  ) {}

  get pid(): number {
    return this.child.pid;
  }

  get exited(): Promise<number | null> {
    return this.child.awaitExit();
  }

  get dir(): string {
    return this.dirPath ?? '';
  }

  get alive(): boolean {
    return this.child.alive;
  }

  async start(): Promise<void> {
    this.dirPath ??= makeTempDir(`redis-${this.port}`);
    const dir = this.dirPath;
    const args = [
      '--port', String(this.port),
      '--bind', HOST,
      '--daemonize', 'no',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--logfile', '',
      ...this.args,
    ];
    this.child = await launch(REDIS_SERVER, args, dir, `redis-server :${this.port}`, () => redisAnswers(this.port));
    registry.add(this);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.signal(signal);
  }

  async stop(): Promise<void> {
    await this.child.stop();
    registry.delete(this);
    if (this.dirPath !== undefined) {
      removeTempDir(this.dirPath);
      this.dirPath = undefined;
    }
  }

  async restart(): Promise<void> {
    await this.child.stop(); // keeps the dir, so files redis wrote (if told to save) survive
    await this.start();
  }
}

function wantsClusterBus(args: readonly string[]): boolean {
  const i = args.indexOf('--cluster-enabled');
  return i >= 0 && args[i + 1] === 'yes';
}

/**
 * redis-server as a child (not daemonized) on 127.0.0.1, with `--save "" --appendonly no` and its
 * dir in a fresh temp dir, resolved once PING answers. `args` come last, so they can override.
 * Without `port`, a free one is picked (with a free cluster bus port when `--cluster-enabled yes`).
 */
export async function startRedis(opts: { port?: number; args?: string[] } = {}): Promise<RedisProc> {
  const args = opts.args ?? [];
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort({ clusterBus: wantsClusterBus(args) }));
    const server = new RedisServer(port, args);
    try {
      await server.start();
      return server;
    } catch (err) {
      if (server.dir !== '') removeTempDir(server.dir);
      if (opts.port !== undefined || attempt >= START_ATTEMPTS) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// nutcracker (twemproxy 0.5.0)

export interface NutcrackerOptions {
  /** "127.0.0.1:port:weight alias" (alias optional) */
  servers: string[];
  /** e.g. "{}" */
  hashTag?: string;
  /** more pool keys, written as `key: value` (raw YAML values); they override the defaults */
  extra?: Record<string, string>;
  /** listen port; free one when unset */
  port?: number;
  /** pool name (default "aster_test") */
  pool?: string;
  /** more command-line arguments (e.g. ["-v", "7"]) */
  args?: string[];
}

class Nutcracker implements NutcrackerProc {
  readonly host = HOST;

  constructor(
    readonly port: number,
    readonly statsPort: number,
    readonly dir: string,
    readonly configPath: string,
    readonly config: string,
    private readonly child: Child,
  ) {}

  get pid(): number {
    return this.child.pid;
  }

  get exited(): Promise<number | null> {
    return this.child.awaitExit();
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.signal(signal);
  }

  async stop(): Promise<void> {
    await this.child.stop();
    registry.delete(this);
    if (tempDirs.has(this.dir)) removeTempDir(this.dir);
  }
}

function nutcrackerConfig(port: number, opts: NutcrackerOptions): string {
  const keys = new Map<string, string>([
    ['listen', `${HOST}:${port}`],
    ['hash', 'fnv1a_64'],
    ['distribution', 'ketama'],
    ['redis', 'true'],
    ['auto_eject_hosts', 'false'],
  ]);
  if (opts.hashTag !== undefined) keys.set('hash_tag', JSON.stringify(opts.hashTag));
  for (const [key, value] of Object.entries(opts.extra ?? {})) keys.set(key, value);
  const lines = [`${opts.pool ?? 'aster_test'}:`];
  for (const [key, value] of keys) lines.push(`  ${key}: ${value}`);
  lines.push('  servers:');
  for (const server of opts.servers) lines.push(`    - ${JSON.stringify(server)}`);
  return lines.join('\n') + '\n';
}

/**
 * nutcracker as a child over the given servers: one pool with `hash: fnv1a_64`,
 * `distribution: ketama`, `redis: true`, `auto_eject_hosts: false`, its stats port on loopback
 * too; resolved once it accepts connections. (nutcracker connects to backends lazily, so they
 * need not be up yet.)
 */
export async function startNutcracker(opts: NutcrackerOptions): Promise<NutcrackerProc> {
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const statsPort = await freePort();
    const dir = makeTempDir(`nutcracker-${port}`);
    const config = nutcrackerConfig(port, opts);
    const configPath = path.join(dir, 'nutcracker.yml');
    fs.writeFileSync(configPath, config);
    const args = [
      '-c', configPath,
      '-s', String(statsPort),
      '-a', HOST,
      '-o', path.join(dir, 'output.log'),
      '-p', path.join(dir, 'nutcracker.pid'),
      ...(opts.args ?? []),
    ];
    try {
      const child = await launch(NUTCRACKER, args, dir, `nutcracker :${port}`, async () => (await probe(port, undefined)) !== null);
      const proc = new Nutcracker(port, statsPort, dir, configPath, config, child);
      registry.add(proc);
      return proc;
    } catch (err) {
      removeTempDir(dir);
      if (opts.port !== undefined || attempt >= START_ATTEMPTS) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** Poll `cond` until it holds; throws after `timeoutMs` (a throwing `cond` counts as false). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  let lastError: unknown;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
    delay = Math.min(delay * 2, 100);
  }
}

/** Stops everything this process started that is still running, and removes their temp dirs. */
export async function stopAll(): Promise<void> {
  await Promise.all([...registry].map((proc) => proc.stop()));
  // children whose start failed half-way, if any
  await Promise.all([...running].map((child) => child.stop()));
  for (const dir of [...tempDirs]) removeTempDir(dir);
}
