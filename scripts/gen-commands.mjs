#!/usr/bin/env node
/**
 * Generates src/commands/table.json from a real redis-server.
 *
 * Starts a throwaway redis-server on a free loopback port, asks it for COMMAND INFO and
 * COMMAND DOCS over a plain socket (RESP3 via HELLO 3, so maps and sets keep their types),
 * and writes one sorted, stable JSON table: every command with its subcommands nested under
 * it, both ordered by name. Regenerating against the same Redis gives an identical file.
 *
 *   node scripts/gen-commands.mjs [--server /path/to/redis-server] [--out file]
 *
 * No dependencies beyond node built-ins.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
function option(name, fallback) {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
}
const SERVER = option('--server', process.env.REDIS_SERVER ?? 'redis-server');
const OUT = path.resolve(option('--out', path.join(here, '..', 'src', 'commands', 'table.json')));

// ---------------------------------------------------------------------------------------------
// A small RESP2/RESP3 reader. Values come back tagged where plain JS would lose the type:
//   bulk/verbatim -> string, simple -> { simple }, integer -> number, null -> null,
//   array -> Array, set -> { set: [...] }, map -> { map: [[k, v], ...] }, error -> { error }.

class Incomplete extends Error {}

function parseOne(buf, pos) {
  const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
  if (lineEnd < 0) throw new Incomplete();
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, lineEnd);
  let next = lineEnd + 2;
  const aggregate = (n, each) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const r = parseOne(buf, next);
      next = r.next;
      each(out, r.value);
    }
    return out;
  };
  switch (type) {
    case '+':
      return { value: { simple: line }, next };
    case '-':
      return { value: { error: line }, next };
    case ':':
      return { value: Number(line), next };
    case '_':
      return { value: null, next };
    case '#':
      return { value: line === 't', next };
    case ',':
      return { value: Number(line), next };
    case '$':
    case '=':
    case '!': {
      const len = Number(line);
      if (len < 0) return { value: null, next };
      if (buf.length < next + len + 2) throw new Incomplete();
      let s = buf.toString('utf8', next, next + len);
      if (type === '=') s = s.slice(4);
      if (type === '!') return { value: { error: s }, next: next + len + 2 };
      return { value: s, next: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      const value = aggregate(n, (out, v) => out.push(v));
      return { value, next };
    }
    case '~':
    case '>': {
      const value = aggregate(Number(line), (out, v) => out.push(v));
      return { value: { set: value }, next };
    }
    case '%': {
      const flat = aggregate(Number(line) * 2, (out, v) => out.push(v));
      const map = [];
      for (let i = 0; i < flat.length; i += 2) map.push([flat[i], flat[i + 1]]);
      return { value: { map }, next };
    }
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)} at ${pos}`);
  }
}

function encodeCommand(args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return s;
}

/** One connection; `call(...args)` resolves with the next reply, in order. */
function connect(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const waiting = [];
    sock.once('error', reject);
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let pos = 0;
      while (waiting.length && pos < buf.length) {
        let r;
        try {
          r = parseOne(buf, pos);
        } catch (e) {
          if (e instanceof Incomplete) break;
          waiting.shift().reject(e);
          sock.destroy();
          return;
        }
        pos = r.next;
        waiting.shift().resolve(r.value);
      }
      buf = buf.subarray(pos);
    });
    sock.once('connect', () => {
      sock.off('error', reject);
      sock.on('error', (e) => {
        for (const w of waiting.splice(0)) w.reject(e);
      });
      resolve({
        call(...args) {
          return new Promise((res, rej) => {
            waiting.push({ resolve: res, reject: rej });
            sock.write(encodeCommand(args));
          });
        },
        close() {
          sock.destroy();
        },
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Server lifecycle.

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer() {
  const port = await freePort();
  const child = spawn(
    SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let exited = false;
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.once('exit', () => (exited = true));
  child.once('error', (e) => {
    exited = true;
    stderr += String(e);
  });
  for (let i = 0; i < 100; i++) {
    if (exited) throw new Error(`redis-server exited early: ${stderr.trim()}`);
    try {
      const conn = await connect(port);
      return { child, conn };
    } catch {
      await sleep(50);
    }
  }
  stop(child);
  throw new Error(`redis-server did not accept connections on port ${port}`);
}

function stop(child) {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Converting replies into the table's plain JSON.

function fail(msg) {
  throw new Error(`unexpected reply shape: ${msg}`);
}
const isMap = (v) => v !== null && typeof v === 'object' && Array.isArray(v.map);
const isSet = (v) => v !== null && typeof v === 'object' && Array.isArray(v.set);
const isSimple = (v) => v !== null && typeof v === 'object' && typeof v.simple === 'string';

function simpleSet(v, what) {
  if (!isSet(v)) fail(`${what} is not a set`);
  return v.set.map((x) => (isSimple(x) ? x.simple : fail(`${what} holds a non-status item`)));
}
function bulkSet(v, what) {
  if (!isSet(v)) fail(`${what} is not a set`);
  return v.set.map((x) => (typeof x === 'string' ? x : fail(`${what} holds a non-bulk item`)));
}

/** Key spec maps: notes (bulk), flags (set of status), begin_search and find_keys (maps). */
function keySpecJson(v) {
  if (!isMap(v)) fail('key spec is not a map');
  const out = {};
  for (const [k, val] of v.map) {
    if (k === 'notes') out.notes = typeof val === 'string' ? val : fail('notes');
    else if (k === 'flags') out.flags = simpleSet(val, 'key spec flags');
    else if (k === 'begin_search' || k === 'find_keys') out[k] = searchJson(val, k);
    else fail(`key spec field ${k}`);
  }
  return out;
}
function searchJson(v, what) {
  if (!isMap(v)) fail(`${what} is not a map`);
  const out = {};
  for (const [k, val] of v.map) {
    if (k === 'type') out.type = typeof val === 'string' ? val : fail(`${what}.type`);
    else if (k === 'spec') {
      if (!isMap(val)) fail(`${what}.spec is not a map`);
      const spec = {};
      for (const [sk, sv] of val.map) {
        if (typeof sv !== 'number' && typeof sv !== 'string') fail(`${what}.spec.${sk}`);
        spec[sk] = sv;
      }
      out.spec = spec;
    } else fail(`${what} field ${k}`);
  }
  return out;
}

/**
 * COMMAND DOCS maps, kept as Redis gives them (field names and order). The encoding convention
 * that src/commands/index.ts relies on is checked here: maps become objects, bulk strings
 * strings, integers numbers, arrays arrays; the only sets are `flags` and `doc_flags` (of status
 * strings) and `history` (of [version, text] arrays).
 */
function docsJson(v, where) {
  if (!isMap(v)) fail(`${where} is not a map`);
  const out = {};
  v.map.forEach(([k, val], i) => {
    if (typeof k !== 'string') fail(`${where} has a non-bulk key`);
    if (k in out) fail(`${where} repeats ${k}`);
    if (k === 'subcommands') {
      // stored on the subcommand entries themselves; index.ts puts it back last
      if (i !== v.map.length - 1) fail(`${where}.subcommands is not the last field`);
      return;
    }
    out[k] = docsValue(val, `${where}.${k}`, k);
  });
  return out;
}
function docsValue(v, where, key) {
  if (key === 'flags' || key === 'doc_flags') return simpleSet(v, where);
  if (key === 'history') {
    if (!isSet(v)) fail(`${where} is not a set`);
    return v.set.map((h) =>
      Array.isArray(h) && h.every((x) => typeof x === 'string') ? h : fail(`${where} entry`),
    );
  }
  if (typeof v === 'string' || typeof v === 'number') return v;
  if (Array.isArray(v)) return v.map((x, i) => (isMap(x) ? docsJson(x, `${where}[${i}]`) : docsValue(x, `${where}[${i}]`, '')));
  if (isMap(v)) return docsJson(v, where);
  return fail(`${where} has an unexpected value ${JSON.stringify(v)}`);
}

function infoJson(v) {
  if (!Array.isArray(v) || v.length !== 10) fail('COMMAND INFO entry is not a 10-array');
  const [name, arity, flags, firstKey, lastKey, step, acl, tips, keySpecs, subs] = v;
  if (typeof name !== 'string') fail('name');
  for (const n of [arity, firstKey, lastKey, step]) if (typeof n !== 'number') fail(`${name} numbers`);
  if (!isSet(keySpecs)) fail(`${name} key specs are not a set`);
  if (!isSet(subs) && !Array.isArray(subs)) fail(`${name} subcommands`);
  return {
    name,
    arity,
    flags: simpleSet(flags, `${name} flags`),
    firstKey,
    lastKey,
    step,
    aclCategories: simpleSet(acl, `${name} acl categories`),
    tips: bulkSet(tips, `${name} tips`),
    keySpecs: keySpecs.set.map(keySpecJson),
    subcommands: (isSet(subs) ? subs.set : subs).map(infoJson),
  };
}

const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function attachDocs(entry, docsByName) {
  const d = docsByName.get(entry.name);
  if (!d) fail(`no COMMAND DOCS for ${entry.name}`);
  // sub-docs live inside the parent's docs map under `subcommands`
  const subDocs = new Map();
  for (const [k, v] of d.map) if (k === 'subcommands') for (const [sk, sv] of v.map) subDocs.set(sk, sv);
  const subs = entry.subcommands.sort(byName);
  for (const s of subs) attachDocs(s, subDocs);
  if (subDocs.size !== subs.length) fail(`${entry.name}: DOCS and INFO disagree on subcommands`);
  delete entry.subcommands; // re-added after docs, to keep the field order readable
  entry.docs = docsJson(d, entry.name);
  if (subs.length > 0) entry.subcommands = subs;
}

// ---------------------------------------------------------------------------------------------
// Stable, diff-friendly JSON: a value goes on one line when that line is short, else it opens
// up one item per line.

function format(value, indent = '') {
  const flat = JSON.stringify(value);
  if (flat.length + indent.length <= 100 || value === null || typeof value !== 'object') return flat;
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    return `[\n${value.map((v) => inner + format(v, inner)).join(',\n')}\n${indent}]`;
  }
  const items = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${format(v, inner)}`);
  return `{\n${items.join(',\n')}\n${indent}}`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { child, conn } = await startServer();
  try {
    const hello = await conn.call('HELLO', '3');
    if (!isMap(hello)) fail('HELLO 3 did not answer a map');
    const version = new Map(hello.map).get('version');
    const info = await conn.call('COMMAND', 'INFO');
    const docs = await conn.call('COMMAND', 'DOCS');
    const count = await conn.call('COMMAND', 'COUNT');
    if (!Array.isArray(info)) fail('COMMAND INFO is not an array');
    if (!isMap(docs)) fail('COMMAND DOCS is not a map');

    const docsByName = new Map(docs.map);
    const commands = info.map(infoJson).sort(byName);
    for (const c of commands) attachDocs(c, docsByName);
    if (commands.length !== count) fail(`COMMAND COUNT ${count} but ${commands.length} entries`);

    const table = {
      generatedBy: 'scripts/gen-commands.mjs (npm run gen:commands)',
      redisVersion: String(version),
      commandCount: commands.length,
      commands,
    };
    writeFileSync(OUT, format(table) + '\n');
    const subs = commands.reduce((n, c) => n + (c.subcommands?.length ?? 0), 0);
    console.log(`wrote ${path.relative(process.cwd(), OUT)}: redis ${version}, ${commands.length} commands, ${subs} subcommands`);
  } finally {
    conn.close();
    stop(child);
  }
}

main().catch((e) => {
  console.error(`gen-commands: ${e instanceof Error ? e.stack : e}`);
  process.exitCode = 1;
});
