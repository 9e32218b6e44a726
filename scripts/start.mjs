#!/usr/bin/env node
// start.mjs - `npm start`: run aster-proxy on this machine, with the local Redis
// backends its config names, in one command.
//
// Usage: npm start [-- [--cluster] [--config FILE] [other aster-proxy options]]
//
//   --cluster: the cluster-mode example, cluster.toml (unless --config names
//   another file): a local Redis Cluster of 3 masters and 3 replicas on
//   127.0.0.1:7000-7005 and the proxy on 127.0.0.1:26380 in front of it.
//
//   1. sh scripts/ensure-deps.sh (npm packages; redis-server etc. when root);
//   2. `npm run build` when dist/ is missing or older than src/;
//   3. reads the config (default default.toml) and, for every server of a
//      `cache_type = "redis"` cluster that is on a loopback address and does not
//      answer PING, starts a redis-server on that port (a child process, no
//      persistence; data and log in .run/redis-PORT/ and .run/redis-PORT.log);
//      a port held by something that is not Redis is an error;
//   4. runs `node bin/aster-proxy.js --config FILE ...` and says where to connect;
//   5. on Ctrl-C / SIGTERM / SIGHUP: stops the proxy, then exactly the
//      redis-servers it started (by PID), and exits. When the proxy exits by
//      itself, those redis-servers are stopped too.
//   For a `cache_type = "redis_cluster"` cluster whose seeds are all on loopback
//   and none answers PING, a Redis Cluster is created on them: one
//   `redis-server --cluster-enabled yes` per seed (.run/cluster-PORT/, wiped
//   first: no persistence, a fresh nodes.conf), joined by `redis-cli --cluster
//   create` (one replica per master with 6 or more seeds, else masters only; at
//   least 3 masters), and waited for until every node says cluster_state:ok.
// Servers already answering PING are used as they are and never stopped; a
// cluster some of whose seeds answer is used as it is.
// With -h/--help, -V/--version or --check, no backend is started.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runDir = join(root, '.run');
const say = (msg) => process.stderr.write(`start: ${msg}\n`);
const fail = (msg, code = 1) => {
  say(msg);
  process.exit(code);
};

// --- arguments ---------------------------------------------------------------
const argv = process.argv.slice(2);
let configArg = null;
let clusterExample = false;
const passThrough = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--cluster') {
    clusterExample = true;
  } else if (a === '-c' || a === '--config') {
    if (i + 1 >= argv.length) fail(`${a} needs a file name`, 2);
    configArg = argv[++i];
  } else if (a.startsWith('--config=')) {
    configArg = a.slice('--config='.length);
  } else {
    passThrough.push(a);
  }
}
const noServer = passThrough.some((a) => ['-h', '--help', '-V', '--version', '--check'].includes(a));
// npm runs scripts from the package root: a --config path is relative to the
// directory npm was started in (INIT_CWD); the default is the repo's default.toml
const configFile =
  configArg === null
    ? join(root, clusterExample ? 'cluster.toml' : 'default.toml')
    : resolve(process.env.INIT_CWD ?? process.cwd(), configArg);

// --- 1. dependencies, 2. build -----------------------------------------------
const deps = spawnSync('sh', [join(root, 'scripts', 'ensure-deps.sh')], { stdio: 'inherit' });
if (deps.status !== 0) fail('scripts/ensure-deps.sh failed (see above)', deps.status || 1);

function newestMtime(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, name)));
  return newest;
}
const built = newestMtime(join(root, 'dist', 'src'));
const sources = Math.max(newestMtime(join(root, 'src')), newestMtime(join(root, 'tsconfig.json')));
if (!existsSync(join(root, 'dist', 'src', 'main.js')) || built < sources) {
  say('dist/ is missing or older than src/: npm run build');
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) fail('the build failed (see above)');
}
const proxyBin = join(root, 'bin', 'aster-proxy.js');
if (!existsSync(proxyBin)) fail(`${relative(root, proxyBin)} not found`);

// --- 3. config and backends --------------------------------------------------
const children = []; // { name, proc, port? } started by this script, stopped by it
const alive = (proc) => proc.exitCode === null && proc.signalCode === null;

const main = async () => {
  const { default: toml } = await import('toml');
  let config = { clusters: [] };
  if (!noServer) {
    if (!existsSync(configFile)) fail(`config file ${configFile} not found`);
    try {
      config = toml.parse(readFileSync(configFile, 'utf8'));
    } catch (e) {
      const where = e.line ? `:${e.line}:${e.column}` : '';
      fail(`${configFile}${where}: ${e.message}`);
    }
  }
  const clusters = Array.isArray(config.clusters) ? config.clusters : [];

  // every listen address must be free, or the proxy cannot start
  const listens = [];
  for (const c of clusters) {
    const addr = parseAddr(String(c.listen_addr ?? ''));
    if (!addr) continue; // the proxy reports bad config itself
    listens.push({ ...addr, cluster: c.cache_type === 'redis_cluster' });
    const probeHost = isWildcard(addr.host) ? '127.0.0.1' : addr.host;
    if ((await probe(probeHost, addr.port)) !== 'free') {
      fail(`cluster "${c.name}": listen address ${c.listen_addr} is already in use`);
    }
  }

  // the backends: loopback servers of standalone clusters, each address once; Redis
  // Clusters to create where none of their seeds answers
  const wanted = new Map();
  const toCreate = [];
  for (const c of clusters) {
    const servers = Array.isArray(c.servers) ? c.servers : [];
    const addrs = servers.map((spec) => parseAddr(String(spec).trim().split(/\s+/)[0])).filter((a) => a !== null);
    if (c.cache_type === 'redis_cluster') {
      const states = await Promise.all(addrs.map((a) => (isLoopback(a.host) ? probe(a.host, a.port) : Promise.resolve('remote'))));
      if (states.some((st) => st === 'redis') || addrs.length === 0) continue;
      if (states.some((st) => st !== 'free')) {
        say(`cluster "${c.name}": its seeds are not all free loopback ports; start that Redis Cluster yourself`);
      } else if (addrs.length < 3) {
        say(`cluster "${c.name}": a local Redis Cluster needs at least 3 seeds (masters), it has ${addrs.length}; start it yourself`);
      } else {
        toCreate.push({ name: c.name, addrs });
      }
      continue;
    }
    for (const addr of addrs) {
      if (!isLoopback(addr.host)) continue;
      wanted.set(`${addr.host}:${addr.port}`, addr);
    }
  }
  for (const [key, addr] of wanted) {
    const state = await probe(addr.host, addr.port);
    if (state === 'redis') say(`redis ${key} already running: using it as it is`);
    else if (state === 'other') {
      await stopAll();
      fail(`port ${addr.port} (${key}) is held by something that does not answer PING; free it or change the config`);
    } else {
      try {
        await startRedis(addr);
      } catch (e) {
        await stopAll();
        fail(e.message);
      }
    }
  }

  for (const c of toCreate) {
    try {
      await createCluster(c);
    } catch (e) {
      await stopAll();
      fail(e.message);
    }
  }

  // --- 4. the proxy ----------------------------------------------------------
  const args = [proxyBin, '--config', configFile, ...passThrough];
  say(`node ${relative(root, proxyBin)} ${args.slice(1).join(' ')}`);
  const proxy = spawn(process.execPath, args, {
    cwd: root,
    detached: true, // signals reach it only through us, once
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.unshift({ name: 'aster-proxy', proc: proxy }); // stopped first
  proxy.on('error', async (e) => {
    say(`cannot start the proxy: ${e.message}`);
    await stopAll();
    process.exit(1);
  });
  proxy.on('exit', async (code, signal) => {
    if (stopping) return;
    say(`aster-proxy exited (${signal ?? `code ${code}`}); stopping the servers started for it`);
    await stopAll();
    process.exit(code ?? 1);
  });
  if (noServer) return;

  // say where to connect once the proxy listens
  for (const addr of listens) {
    const host = isWildcard(addr.host) ? '127.0.0.1' : addr.host;
    if (await waitFor(() => probe(host, addr.port).then((s) => s !== 'free'), 15_000, () => !alive(proxy))) {
      const h = host === '127.0.0.1' ? '' : `-h ${addr.host} `;
      const also = addr.cluster ? `, or as a cluster client:  redis-cli -c ${h}-p ${addr.port}` : '';
      say(`aster-proxy (pid ${proxy.pid}) listens on ${addr.host}:${addr.port}: connect with  redis-cli ${h}-p ${addr.port}${also}`);
    } else if (alive(proxy)) {
      say(`aster-proxy (pid ${proxy.pid}) is not listening on ${addr.host}:${addr.port} yet`);
    }
  }
  if (alive(proxy)) say('Ctrl-C stops the proxy and the servers started for it');
};

// --- helpers -----------------------------------------------------------------

// "host:port[:weight]" or "[v6]:port[:weight]" -> { host, port } or null
function parseAddr(text) {
  const m = /^\[([^\]]+)\]:(\d+)(?::\d+)?$/.exec(text) ?? /^([^:\s]+):(\d+)(?::\d+)?$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : null;
}
function isLoopback(host) {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
function isWildcard(host) {
  return host === '0.0.0.0' || host === '::' || host === '';
}

// What is on host:port? 'free' (connection refused), 'redis' (answers PING, or
// answers it with a Redis error such as NOAUTH or LOADING), 'other' otherwise.
function probe(host, port, timeoutMs = 1000) {
  return new Promise((done) => {
    const sock = net.connect({ host, port });
    let reply = '';
    let settled = false;
    const finish = (state) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      done(state);
    };
    const timer = setTimeout(() => finish('other'), timeoutMs);
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (!reply.includes('\r\n')) return;
      const ok = reply.startsWith('+PONG\r\n') || /^-(NOAUTH|LOADING|MASTERDOWN|BUSY)\b/.test(reply);
      finish(ok ? 'redis' : 'other');
    });
    sock.on('error', (e) => finish(e.code === 'ECONNREFUSED' ? 'free' : 'other'));
    sock.on('close', () => finish('other'));
  });
}

// poll check() until it is true (-> true), ms pass or giveUp() (-> false)
async function waitFor(check, ms, giveUp = () => false) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (giveUp()) return false;
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

// a redis-server on host:port (`cluster`: a Redis Cluster node, in a fresh directory)
async function startRedis({ host, port }, cluster = false) {
  const dir = join(runDir, cluster ? `cluster-${port}` : `redis-${port}`);
  const log = join(runDir, cluster ? `cluster-${port}.log` : `redis-${port}.log`);
  // a node's nodes.conf from an earlier run would bring back a cluster without its data
  if (cluster) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const bind = host === 'localhost' ? ['127.0.0.1', '-::1'] : [host];
  const clusterArgs = cluster
    ? ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '5000']
    : [];
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', ...bind, '--save', '', '--appendonly', 'no',
      '--dir', dir, '--logfile', log, '--daemonize', 'no', ...clusterArgs],
    { cwd: root, detached: true, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  children.push({ name: `redis-server ${host}:${port}`, proc, port });
  proc.on('error', (e) => say(`redis-server: ${e.message}`));
  const up = await waitFor(async () => (await probe(host, port)) === 'redis', 10_000, () => !alive(proc));
  if (!up) {
    let tail = '';
    try {
      tail = readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n');
    } catch {
      // no log to show
    }
    throw new Error(`redis-server on ${host}:${port} did not start (log ${relative(root, log)}):\n${tail}`);
  }
  say(`started redis-server ${host}:${port} (pid ${proc.pid}, log ${relative(root, log)})`);
  proc.on('exit', (code, signal) => {
    if (!stopping) say(`redis-server ${host}:${port} (pid ${proc.pid}) exited (${signal ?? `code ${code}`})`);
  });
}

// A Redis Cluster on the seeds of `c` (all free loopback ports): a node on each,
// joined by redis-cli --cluster create, ready when every node says cluster_state:ok.
async function createCluster({ name, addrs }) {
  const replicas = addrs.length >= 6 ? 1 : 0;
  if (Math.floor(addrs.length / (1 + replicas)) < 3) throw new Error(`cluster "${name}": too few seeds for 3 masters`);
  say(`cluster "${name}": no seed answers; creating a local Redis Cluster on ${addrs.length} nodes (${replicas} replica per master)`);
  await Promise.all(addrs.map((a) => startRedis(a, true)));
  const create = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...addrs.map((a) => `${a.host === 'localhost' ? '127.0.0.1' : a.host}:${a.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
    { cwd: root, encoding: 'utf8', timeout: 60_000 },
  );
  if (create.status !== 0) {
    throw new Error(`redis-cli --cluster create failed (exit ${create.status ?? create.signal}):\n${(create.stdout ?? '') + (create.stderr ?? '')}`.trim());
  }
  // every node says ok, and every node sees every replica attached to its master (else the
  // proxy's first slot map could lack replicas until its next refresh)
  const masters = Math.floor(addrs.length / (1 + replicas));
  const attached = (nodes) => nodes.split('\n').filter((l) => / (myself,)?slave [0-9a-f]{40} /.test(l)).length;
  const ok = await waitFor(async () => {
    const info = await Promise.all(addrs.map((a) => ask(a.host, a.port, ['CLUSTER', 'INFO'])));
    if (!info.every((r) => r.includes('cluster_state:ok'))) return false;
    const views = await Promise.all(addrs.map((a) => ask(a.host, a.port, ['CLUSTER', 'NODES'])));
    return views.every((v) => attached(v) >= masters * replicas);
  }, 30_000);
  if (!ok) throw new Error(`cluster "${name}": the nodes did not all reach cluster_state:ok with every replica attached within 30 s (logs in ${relative(root, runDir)}/cluster-PORT.log)`);
  say(`cluster "${name}": Redis Cluster ready on ${addrs.map((a) => a.port).join(', ')}`);
}

// one command's reply as text ('' when it cannot be had)
function ask(host, port, args, timeoutMs = 2000) {
  return new Promise((done) => {
    const sock = net.connect({ host, port });
    let reply = '';
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      done(reply);
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    sock.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      // a bulk string: its length line, then that many bytes and CRLF
      const m = /^\$(-?\d+)\r\n/.exec(reply);
      if (reply.startsWith('-') || reply.startsWith('+') || (m && (Number(m[1]) < 0 || reply.length >= m[0].length + Number(m[1]) + 2))) finish();
    });
    sock.on('error', finish);
    sock.on('close', finish);
  });
}

// Stop what we started, proxy first (SIGTERM, then SIGKILL after a grace period).
let stopping = false;
async function stopAll() {
  stopping = true;
  for (const { name, proc } of children) {
    if (!alive(proc)) continue;
    const exited = new Promise((r) => proc.once('exit', r));
    say(`stopping ${name} (pid ${proc.pid})`);
    proc.kill('SIGTERM');
    const grace = name === 'aster-proxy' ? 10_000 : 5_000;
    const timer = new Promise((r) => setTimeout(r, grace).unref());
    await Promise.race([exited, timer]);
    if (alive(proc)) {
      say(`${name} (pid ${proc.pid}) ignored SIGTERM: SIGKILL`);
      proc.kill('SIGKILL');
      await exited;
    }
  }
}

// Exit status as the proxy's own: 0 after a clean stop on a signal; 128 + the
// signal number when a second signal cuts the stop short.
let signalled = false;
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.on(sig, async () => {
    if (signalled) {
      for (const { proc } of children) if (alive(proc)) proc.kill('SIGKILL');
      process.exit(code);
    }
    signalled = true;
    await stopAll();
    process.exit(0);
  });
}
// last resort if this script dies of an error: leave nothing running
process.on('exit', () => {
  for (const { proc } of children) if (alive(proc)) proc.kill('SIGKILL');
});

main().catch(async (e) => {
  say(`error: ${e.stack ?? e}`);
  await stopAll();
  process.exit(1);
});
