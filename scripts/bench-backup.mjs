#!/usr/bin/env node
// bench-backup.mjs - `npm run bench:backup`: read latency with and without backup requests
// while one master of a Redis Cluster keeps stalling.
//
// Usage: node scripts/bench-backup.mjs [--seconds N] [--loops N] [--interval-ms N] [--budget-percent N]
//        (after `npm run build`: it uses the compiled harness and proxy under dist/)
//
//   1. starts a 3-master, 3-replica cluster (dist/test/helpers/cluster.js: redis-server
//      children on free loopback ports, stopped by PID), DEBUG enabled, node timeout 5 s;
//   2. writes KEYS keys through a proxy and waits until the replicas have them;
//   3. for each proxy in turn, (a) backup requests on (trigger_slow_ms = 20, budget_percent
//      = 10 or --budget-percent) then (b) off, both in this process, with read_timeout = 3000:
//        - masters[0] is made slow over and over: DEBUG SLEEP 0.2, then 0.8 s awake, until
//          the phase ends (so it stalls 20% of the time);
//        - LOOPS client connections each have a GET of a random key due every INTERVAL ms,
//          for N seconds (one GET at a time per connection: a GET due while the previous
//          one is still out leaves when that one is answered);
//   4. prints p50/p90/p99/max for both proxies of (i) every read, timed from when it was due
//      to its reply (so a client held up by the sleeping master counts every GET it could
//      not send, not just one), and (ii) the reads of masters[0]'s keys, timed from send to
//      reply; and the backup counters of INFO proxy. Stops everything it started (also on
//      Ctrl-C).
//
// Defaults: --seconds 10, --loops 20, --interval-ms 20 (about 1000 GET/s per phase).
import { performance } from 'node:perf_hooks';

const SLEEP_S = 0.2;
const AWAKE_MS = 800;
const KEYS = 1000;
const TRIGGER_MS = 20;

// --- arguments ---------------------------------------------------------------
const opts = { seconds: 10, loops: 20, intervalMs: 20, budgetPercent: 10 };
const argv = process.argv.slice(2);
const usage = 'usage: node scripts/bench-backup.mjs [--seconds N] [--loops N] [--interval-ms N] [--budget-percent N]';
for (let i = 0; i < argv.length; i++) {
  const name = { '--seconds': 'seconds', '--loops': 'loops', '--interval-ms': 'intervalMs', '--budget-percent': 'budgetPercent' }[argv[i]];
  if (argv[i] === '-h' || argv[i] === '--help') {
    console.log(usage);
    process.exit(0);
  }
  const value = Number(argv[i + 1]);
  const [min, max] = name === 'budgetPercent' ? [0, 100] : [1, 3600];
  if (name === undefined || !Number.isInteger(value) || value < min || value > max) {
    console.error(`bench-backup: bad argument ${JSON.stringify(argv[i])} ${argv[i + 1] ?? ''}\n${usage}`);
    process.exit(2);
  }
  opts[name] = value;
  i++;
}

// --- the compiled harness and proxy ------------------------------------------
const dist = new URL('../dist/', import.meta.url);
const load = async (path) => {
  try {
    return await import(new URL(path, dist).href);
  } catch (err) {
    console.error(`bench-backup: cannot load dist/${path} (run \`npm run build\` first): ${err.message}`);
    process.exit(1);
  }
};
const { startCluster } = await load('test/helpers/cluster.js');
const { Raw, sleep } = await load('test/helpers/raw-client.js');
const { stopAll } = await load('test/helpers/servers.js');
const { parseConfig } = await load('src/config/load.js');
const { startProxy } = await load('src/streams/proxy.js');
const { createLogger } = await load('src/sinks/log.js');

const say = (msg) => process.stderr.write(`bench-backup: ${msg}\n`);

/** the `q` quantile (0..1) of sorted numbers, nearest rank */
const quantile = (sorted, q) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]);

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), max: s.length === 0 ? NaN : s[s.length - 1] };
}

/** "k:v" lines of INFO */
function fields(text) {
  const out = new Map();
  for (const line of String(text).split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

// --- everything started, stopped in reverse order ---------------------------
const cleanups = [];
let stopping = false;
async function cleanup() {
  if (stopping) return;
  stopping = true;
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (err) {
      say(`cleanup: ${err.message}`);
    }
  }
  await stopAll();
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    say(`${signal}: stopping`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function startBenchProxy(cluster, name, backup) {
  const toml = `[[clusters]]
name = "${name}"
listen_addr = "127.0.0.1:0"
read_timeout = 3000
servers = [${cluster.addrs().map((a) => JSON.stringify(a)).join(', ')}]
${backup ? `[clusters.backup_request]\nenabled = true\ntrigger_slow_ms = ${TRIGGER_MS}\nbudget_percent = ${opts.budgetPercent}\n` : ''}`;
  const proxy = await startProxy(parseConfig(toml, `${name}.toml`).config, { ip: '127.0.0.1', metricsPort: 0, reload: false, logger: createLogger('silent') });
  cleanups.push(() => proxy.close());
  const port = proxy.listeners[0].port;
  const raw = await Raw.connect(port);
  cleanups.push(() => raw.close());
  const deadline = Date.now() + 10_000;
  while (fields(await raw.call('CLUSTER', 'INFO')).get('cluster_state') !== 'ok') {
    if (Date.now() > deadline) throw new Error(`proxy ${name} has no slot map after 10 s`);
    await sleep(50);
  }
  return { port, raw };
}

/** DEBUG SLEEP on `node`, then AWAKE_MS awake, until `until` (performance.now()); resolves the stalls made */
async function stallLoop(node, until) {
  const raw = await Raw.connect(node.port);
  let stalls = 0;
  try {
    while (performance.now() + SLEEP_S * 1000 < until) {
      const reply = await raw.call('DEBUG', 'SLEEP', String(SLEEP_S));
      if (reply !== 'OK') throw new Error(`DEBUG SLEEP replied ${JSON.stringify(reply)}`);
      stalls++;
      await sleep(Math.min(AWAKE_MS, Math.max(0, until - performance.now())));
    }
  } finally {
    raw.close();
  }
  return stalls;
}

/**
 * one client loop: a GET of a random key every intervalMs (a fixed schedule) until `until`;
 * pushes [ms from the scheduled time to the reply, ms from send to reply, key on masters[0]]
 */
async function clientLoop(port, keys, slowKeys, start, until, out) {
  const raw = await Raw.connect(port);
  try {
    for (let due = start; due < until; due += opts.intervalMs) {
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const key = keys[Math.floor(Math.random() * keys.length)];
      const sent = performance.now();
      const reply = await raw.call('GET', key);
      const done = performance.now();
      if (reply !== `v:${key}`) throw new Error(`GET ${key} replied ${JSON.stringify(reply)}`);
      out.push([done - Math.min(due, sent), done - sent, slowKeys.has(key)]);
    }
  } finally {
    raw.close();
  }
}

async function phase(cluster, name, backup, keys, slowKeys) {
  const { port, raw } = await startBenchProxy(cluster, name, backup);
  // connections to every master open before the clock starts
  await raw.pipeline(keys.slice(0, 30).map((k) => ['GET', k]));
  const samples = [];
  const start = performance.now();
  const until = start + opts.seconds * 1000;
  const [stalls] = await Promise.all([
    stallLoop(cluster.masters[0], until),
    // the loops' schedules spread over one interval
    ...Array.from({ length: opts.loops }, (_v, i) => clientLoop(port, keys, slowKeys, start + (i * opts.intervalMs) / opts.loops, until, samples)),
  ]);
  const info = fields(await raw.call('INFO', 'proxy'));
  const counters = ['planned', 'dispatched', 'exhausted', 'primary_wins', 'replica_wins'].map((c) => `${c}=${info.get(`backup_${c}`)}`).join(' ');
  return {
    name,
    stalls,
    scheduled: summary(samples.map(([ms]) => ms)),
    service: summary(samples.filter(([, , slow]) => slow).map(([, ms]) => ms)),
    counters,
  };
}

// --- run ---------------------------------------------------------------------
let failed = false;
try {
  say('starting a 3-master, 3-replica cluster');
  const cluster = await startCluster({ nodeTimeoutMs: 5_000, args: ['--enable-debug-command', 'yes'] });
  cleanups.push(() => cluster.stop());
  const keys = Array.from({ length: KEYS }, (_v, i) => `bk:${i}`);
  const [first, last] = cluster.ranges[0];
  const slotOf = await cluster.pipeline(cluster.masters[0], keys.map((k) => ['CLUSTER', 'KEYSLOT', k]));
  const slowKeys = new Set(keys.filter((_k, i) => slotOf[i] >= first && slotOf[i] <= last));
  {
    const { raw } = await startBenchProxy(cluster, 'bench_setup', false);
    const replies = await raw.pipeline(keys.map((k) => ['SET', k, `v:${k}`]), 10_000);
    if (replies.some((r) => r !== 'OK')) throw new Error('SET of the keys failed');
    for (const m of cluster.masters) {
      if ((await cluster.call(m, 'WAIT', 1, 5_000)) !== 1) throw new Error(`${cluster.label(m)}: its replica did not acknowledge the keys`);
    }
  }
  say(`${KEYS} keys, ${slowKeys.size} on masters[0]; ${opts.loops} loops x 1 GET every ${opts.intervalMs} ms, ${opts.seconds} s per proxy`);
  say(`masters[0] sleeps ${SLEEP_S * 1000} ms (DEBUG SLEEP ${SLEEP_S}) then stays awake ${AWAKE_MS} ms, over and over`);
  const results = [];
  say(`(a) backup requests on (trigger_slow_ms = ${TRIGGER_MS}, budget_percent = ${opts.budgetPercent})`);
  results.push(await phase(cluster, 'bench_backup_on', true, keys, slowKeys));
  say('(b) backup requests off');
  results.push(await phase(cluster, 'bench_backup_off', false, keys, slowKeys));

  const f = (x) => (Number.isNaN(x) ? '-' : x.toFixed(1));
  const row = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(22) : String(c).padStart(8))).join('');
  console.log(`backup requests: masters[0] of 3 sleeps ${SLEEP_S * 1000} ms every ${SLEEP_S * 1000 + AWAKE_MS} ms; ${opts.loops} loops x 1 GET / ${opts.intervalMs} ms, ${opts.seconds} s per proxy`);
  console.log('GET latency in ms; "all": every read, from its scheduled time to its reply; "masters[0]": reads of its keys, from send to reply');
  console.log(row(['backup / reads', 'n', 'p50', 'p90', 'p99', 'max']));
  for (const r of results) {
    const label = r.name.replace('bench_backup_', '');
    for (const [what, x] of [['all', r.scheduled], ['masters[0]', r.service]]) console.log(row([`${label} ${what}`, x.n, f(x.p50), f(x.p90), f(x.p99), f(x.max)]));
  }
  for (const r of results) console.log(`${r.name.replace('bench_', '')}: ${r.stalls} stalls; INFO proxy backup counters: ${r.counters}`);
} catch (err) {
  failed = true;
  say(`failed: ${err.stack ?? err.message}`);
} finally {
  await cleanup();
}
process.exit(failed ? 1 : 0);
