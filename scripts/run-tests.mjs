#!/usr/bin/env node
// run-tests.mjs - what `npm test` runs once `pretest` has installed the
// dependencies and built dist/: every compiled test file, dist/test/**/*.test.js,
// under node:test, within a global time limit. Exits 0 only if nothing failed.
//
// Usage: npm test [-- FILTER...]
//   FILTER   run only the files whose path contains one of these strings,
//            e.g. `npm test -- marbles` or `npm test -- unit/ketama integration/cluster`
//
// Two passes, reported as one run:
//   1. unit tests, marble specs and everything else outside test/integration/,
//      TEST_CONCURRENCY files at a time (default 2, one per core);
//   2. test/integration/ (real redis-server and nutcracker processes, cluster
//      creation, fault injection), TEST_INTEGRATION_CONCURRENCY files at a time
//      (default 1: these tests start many processes and wait on real timeouts;
//      run alone they neither starve each other nor flake on a 2-core machine).
// Both passes go through one node:test reporter, so the closing summary
// (`# tests`, `# pass`, `# fail`, ... in TAP) counts the whole run and comes last.
// This is `node --test --test-concurrency=N FILES` (Node 20 does not expand test
// globs itself), done through node:test's run() so that the passes can share
// one report.
//
// Environment:
//   TEST_TIMEOUT_MINUTES  global time limit (default 40): when reached the run is
//                         cancelled (cancelled tests count as failures) and every
//                         process it started is stopped
//   TEST_CONCURRENCY, TEST_INTEGRATION_CONCURRENCY   see above
//   TEST_REPORTER         tap | spec | dot (default: spec on a terminal, tap otherwise
//                         or when CI is set)
//
// Compiled tests whose source under test/ no longer exists (left in dist/ by an
// earlier build) are skipped, with a note. Processes that tests leave running
// are stopped at the end: the run has its own process group.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const note = (msg) => process.stderr.write(`run-tests: ${msg}\n`);

function intFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    note(`${name}=${raw} is not a positive integer`);
    process.exit(2);
  }
  return n;
}

if (process.env.RUN_TESTS_INNER === '1') {
  await runPasses(process.argv.slice(2));
} else {
  supervise(process.argv.slice(2));
}

// --- outer process: time limit, signals, leftover processes ------------------
// The tests run in a child that leads its own process group, so that every
// process a test starts (redis-server, nutcracker, the proxy) can be stopped
// with one signal to the group, whatever happens to the test that started it.
function supervise(args) {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(
      'usage: npm test [-- FILTER...]   (see the header of scripts/run-tests.mjs)\n',
    );
    return;
  }
  const minutes = Number(process.env.TEST_TIMEOUT_MINUTES || 40);
  if (!(minutes > 0)) {
    note(`TEST_TIMEOUT_MINUTES=${process.env.TEST_TIMEOUT_MINUTES} is not a positive number`);
    process.exit(2);
  }
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    cwd: root,
    detached: true,
    stdio: 'inherit',
    env: { ...process.env, RUN_TESTS_INNER: '1' },
  });
  const signalGroup = (sig) => {
    try {
      process.kill(-child.pid, sig);
      return true;
    } catch {
      return false; // nobody left in the group
    }
  };
  let stopping = null;
  // Ask the runner to cancel (it prints its summary, cancelled tests included),
  // then stop whatever is left in the group.
  const stop = (why, exitCode) => {
    if (stopping) {
      signalGroup('SIGKILL');
      return;
    }
    stopping = exitCode;
    note(why);
    try {
      child.kill('SIGTERM');
    } catch {
      // already gone
    }
    setTimeout(() => signalGroup('SIGTERM'), 15_000).unref();
    setTimeout(() => signalGroup('SIGKILL'), 25_000).unref();
  };
  const timer = setTimeout(
    () => stop(`time limit of ${minutes} min reached: cancelling the run`, 1),
    minutes * 60_000,
  );
  timer.unref();
  process.on('SIGINT', () => stop('interrupted: cancelling the run', 130));
  process.on('SIGTERM', () => stop('terminated: cancelling the run', 143));
  process.on('SIGHUP', () => stop('hangup: cancelling the run', 129));
  child.on('error', (err) => {
    note(`cannot start the test runner: ${err.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    clearTimeout(timer);
    if (signalGroup('SIGTERM')) {
      note('stopping processes the tests left running (a test did not clean up after itself)');
      setTimeout(() => signalGroup('SIGKILL'), 2_000).unref();
    }
    if (stopping !== null) process.exitCode = stopping;
    else process.exitCode = code ?? (signal ? 1 : 0);
  });
}

// --- inner process: find the files, run the passes, one report ---------------
async function runPasses(filters) {
  const { run } = await import('node:test');
  const reporters = await import('node:test/reporters');
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');

  const distTest = join(root, 'dist', 'test');
  if (!existsSync(distTest)) {
    note('dist/test/ does not exist: run `npm run build` first (`npm test` does it in pretest)');
    process.exit(1);
  }
  const all = findTestFiles(distTest).sort();
  const files = [];
  for (const file of all) {
    const rel = relative(root, file);
    if (!hasSource(file)) {
      note(`skipping ${rel}: its source under test/ is gone (stale build output)`);
      continue;
    }
    if (filters.length === 0 || filters.some((f) => rel.split(sep).join('/').includes(f))) {
      files.push(file);
    }
  }
  if (files.length === 0) {
    note(
      filters.length
        ? `no test file under dist/test/ matches ${filters.map((f) => `"${f}"`).join(' or ')}`
        : 'no *.test.js files under dist/test/: nothing to run',
    );
    process.exit(1);
  }

  const isIntegration = (f) => relative(distTest, f).split(sep)[0] === 'integration';
  const passes = [
    {
      name: 'unit',
      files: files.filter((f) => !isIntegration(f)),
      concurrency: intFromEnv('TEST_CONCURRENCY', 2),
    },
    {
      name: 'integration',
      files: files.filter(isIntegration),
      concurrency: intFromEnv('TEST_INTEGRATION_CONCURRENCY', 1),
    },
  ].filter((p) => p.files.length > 0);
  for (const p of passes) {
    note(`${p.name}: ${p.files.length} file(s), ${p.concurrency} at a time`);
  }

  const abort = new AbortController();
  const cancel = () => abort.abort();
  process.on('SIGTERM', cancel);
  process.on('SIGINT', cancel);

  const totals = new Map(); // summary counter -> sum over passes
  const started = performance.now();

  // All passes as one event stream. Per pass, node:test ends with a plan for its
  // top-level tests and the summary diagnostics ("tests 12", "pass 11", ...);
  // those are held back and emitted once, summed, at the very end. Top-level test
  // numbers of later passes are shifted so the TAP numbering runs on.
  async function* events() {
    let offset = 0;
    let lastSummary = null;
    for (const pass of passes) {
      if (abort.signal.aborted) break;
      let topLevel = 0;
      let ended = false; // the pass's top-level plan was seen: the summary follows
      const stream = run({
        files: pass.files,
        concurrency: pass.concurrency,
        signal: abort.signal,
      });
      for await (const event of stream) {
        const { type, data } = event;
        const top = data && data.nesting === 0 && data.file === undefined;
        if (type === 'test:plan' && top) {
          topLevel = data.count;
          ended = true;
          continue;
        }
        if (type === 'test:diagnostic' && top && ended) {
          const m = /^(\w+) (\d+(?:\.\d+)?)$/.exec(data.message);
          if (m) {
            totals.set(m[1], (totals.get(m[1]) ?? 0) + Number(m[2]));
            continue;
          }
        }
        if (type === 'test:summary' && data && data.file === undefined) {
          lastSummary = event; // newer Node versions: keep only the last one
          continue;
        }
        if (
          offset > 0 &&
          data &&
          data.nesting === 0 &&
          typeof data.testNumber === 'number' &&
          (type === 'test:pass' || type === 'test:fail' || type === 'test:complete')
        ) {
          data.testNumber += offset;
        }
        yield event;
      }
      offset += topLevel;
    }
    yield { type: 'test:plan', data: { nesting: 0, count: offset } };
    totals.set('duration_ms', Number((performance.now() - started).toFixed(6)));
    for (const [name, value] of totals) {
      yield { type: 'test:diagnostic', data: { nesting: 0, message: `${name} ${value}` } };
    }
    if (lastSummary) yield lastSummary;
  }

  const choice =
    process.env.TEST_REPORTER ||
    (process.stdout.isTTY && !process.env.CI ? 'spec' : 'tap');
  let reporter;
  if (choice === 'tap') reporter = reporters.tap;
  else if (choice === 'dot') reporter = reporters.dot;
  else if (choice === 'spec') reporter = new reporters.spec();
  else {
    note(`TEST_REPORTER=${choice}: use tap, spec or dot`);
    process.exit(2);
  }

  await pipeline(Readable.from(events()).compose(reporter), process.stdout);

  const failed = (totals.get('fail') ?? 0) + (totals.get('cancelled') ?? 0);
  if (abort.signal.aborted) note('run cancelled before the end');
  process.exitCode = failed > 0 || abort.signal.aborted ? 1 : 0;
}

function findTestFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTestFiles(path));
    else if (entry.isFile() && entry.name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

// dist/test/a/b.test.js comes from test/a/b.test.ts (or .tsx / .js).
function hasSource(distFile) {
  const rel = relative(join(root, 'dist'), distFile).slice(0, -'.js'.length);
  return ['.ts', '.tsx', '.js'].some((ext) => existsSync(join(root, rel + ext)));
}
