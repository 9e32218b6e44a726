/**
 * Reading and validating the TOML config file.
 *
 * Every problem found is collected (not just the first) and reported together in one
 * `ConfigError`, each on its own line, naming the file, the cluster and the key. Keys the proxy
 * does not know are not errors but warnings (the CLI turns them into errors under `--check`).
 */
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import toml from 'toml';
import type {
  BackupRequestConfig,
  CacheType,
  ClusterConfig,
  Config,
  LimitsConfig,
  ServerSpec,
  TlsClientConfig,
  TlsServerConfig,
  UserConfig,
} from './types.js';

/** A config that cannot be used. `message` lists every problem, one per line. */
export class ConfigError extends Error {
  readonly problems: string[];
  /** warnings found before giving up (unknown keys and the like), for `--check` */
  readonly warnings: string[];

  constructor(problems: string[], warnings: string[] = []) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
    this.warnings = warnings;
  }
}

export interface LoadResult {
  config: Config;
  /** one line each, naming the file, the cluster and the key */
  warnings: string[];
}

/** The environment variable that sets the default `thread` of every cluster. */
export const THREAD_ENV = 'ASTER_DEFAULT_THREAD';

/** Largest delay a Node timer accepts; anything larger fires at once. */
const MAX_TIMER_MS = 2_147_483_647;
/** Linux rejects a TCP keepalive idle time above this many seconds. */
const MAX_KEEPALIVE_S = 32_767;
/** A bound on `slowlog_max_len`: every entry is kept in memory. */
const MAX_SLOWLOG_LEN = 1_000_000;
/** A sanity bound on `thread`: each worker is an event loop of its own. */
const MAX_THREADS = 1024;

export const DEFAULTS = {
  cacheType: 'redis_cluster' as CacheType,
  readTimeout: 1000,
  writeTimeout: 1000,
  fetchInterval: 1_800_000,
  readFromSlave: false,
  pingFailLimit: 0,
  pingInterval: 300_000,
  pingSuccInterval: 1000,
  ejectMode: 'remap' as 'remap' | 'fail_fast',
  tcpKeepalive: 0,
  /** seconds a client may stay idle (no request, nothing in flight) before it is closed; 0 = never (Redis's `timeout`) */
  idleTimeout: 0,
  backupRequest: { enabled: false, multiplier: 2.0, budgetPercent: 10, burst: 10 },
  slowlogLogSlowerThan: 10_000,
  slowlogMaxLen: 128,
  maxClients: 10000,
  /** connections for blocking commands (BLPOP, XREAD BLOCK, WAIT...) per backend server and worker */
  maxBlockingConnections: 512,
  /** commands that change or stop a whole server, or hold a connection for ever: denied unless the config says otherwise */
  denyCommands: ['acl', 'bgrewriteaof', 'bgsave', 'config|rewrite', 'debug', 'failover', 'module', 'monitor', 'psync', 'replicaof', 'save', 'shutdown', 'slaveof', 'sync'],
  /** FLUSHALL, FLUSHDB, SCRIPT FLUSH, FUNCTION LOAD/DELETE/FLUSH, CONFIG GET/SET/RESETSTAT over every node */
  adminCommands: false,
  limits: {
    maxBulkBytes: 512 * 1024 * 1024,
    maxHeaderBytes: 64 * 1024,
    maxArgs: 1024 * 1024,
    maxReplyDepth: 512,
    maxQueryBytes: 1024 * 1024 * 1024,
    pubsubOutputHardBytes: 32 * 1024 * 1024,
    pubsubOutputSoftBytes: 8 * 1024 * 1024,
    pubsubOutputSoftSeconds: 60,
    outputHardBytes: 0,
    outputSoftBytes: 0,
    outputSoftSeconds: 0,
    maxPendingRequests: 10_000,
    maxPendingBytes: 8 * 1024 * 1024,
  } satisfies LimitsConfig,
} as const;

const TOP_KEYS = ['clusters'] as const;
const CLUSTER_KEYS = [
  'name',
  'listen_addr',
  'cache_type',
  'servers',
  'hash_tag',
  'thread',
  'read_timeout',
  'write_timeout',
  'fetch_interval',
  'read_from_slave',
  'ping_fail_limit',
  'ping_interval',
  'ping_succ_interval',
  'eject_mode',
  'tcpkeepalive',
  'idle_timeout',
  'slowlog_log_slower_than',
  'slowlog_max_len',
  'maxclients',
  'max_blocking_connections',
  'deny_commands',
  'admin_commands',
  'backup_request',
  'users',
  'tls',
  'backend_tls',
  'password',
  'password_env',
  'password_file',
  'backend_password',
  'backend_password_env',
  'backend_password_file',
  'backend_auth',
  'limits',
] as const;
const BACKUP_KEYS = ['enabled', 'trigger_slow_ms', 'multiplier', 'budget_percent', 'burst'] as const;
const LIMIT_KEYS = ['max_bulk_bytes', 'max_header_bytes', 'max_args', 'max_query_bytes', 'max_reply_depth', 'pubsub_output_hard_bytes', 'pubsub_output_soft_bytes', 'pubsub_output_soft_seconds', 'output_hard_bytes', 'output_soft_bytes', 'output_soft_seconds', 'max_pending_requests', 'max_pending_bytes'] as const;

/** Keys from twemproxy (nutcracker.yml) that users bring along, and what to write instead. */
const TWEMPROXY_HINTS: Record<string, string> = {
  listen: 'did you mean "listen_addr"?',
  redis: 'did you mean cache_type = "redis"?',
  redis_auth: 'did you mean "backend_password"?',
  timeout: 'did you mean "read_timeout"?',
  server_failure_limit: 'did you mean "ping_fail_limit"?',
  server_retry_timeout: 'did you mean "ping_interval"?',
  auto_eject_hosts: 'ejection is on when "ping_fail_limit" > 0',
  hash: 'aster-proxy always hashes with fnv1a_64 (twemproxy compatible)',
  distribution: 'aster-proxy always distributes with ketama (twemproxy compatible)',
  servers_weight: 'write the weight in each server: "host:port:weight alias"',
};

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** How a value is shown in a message: strings quoted, containers by kind. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Date) return 'a date';
  if (Array.isArray(v)) return 'an array';
  if (isTable(v)) return 'a table';
  return String(v);
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The known word nearest to `word`, if it is near enough to be a likely typo. */
export function nearest(word: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  const w = squash(word);
  const same = known.find((k) => squash(k) === w);
  if (same !== undefined) return same;
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(w, squash(k));
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  const allowed = Math.max(1, Math.min(3, Math.floor(w.length / 3)));
  if (bestD <= allowed) return best;
  // a cut-short key: "trigger" for "trigger_slow_ms"
  return w.length >= 4 ? known.find((k) => squash(k).startsWith(w)) : undefined;
}

/** Collects problems and warnings, each prefixed with the file and where in it. */
class Report {
  readonly problems: string[] = [];
  readonly warnings: string[] = [];
  constructor(readonly file: string) {}
  error(where: string, msg: string): void {
    this.problems.push(`${this.file}: ${where}: ${msg}`);
  }
  warn(where: string, msg: string): void {
    this.warnings.push(`${this.file}: ${where}: ${msg}`);
  }
}

/** One place in the file: the cluster (or none, for top-level keys) plus a key prefix. */
class Scope {
  constructor(
    private readonly report: Report,
    /** e.g. `cluster "alpha"`; empty for the top level */
    readonly label: string,
    /** e.g. `backup_request.` for keys of a sub-table */
    readonly prefix = '',
  ) {}
  private at(key: string): string {
    const k = this.prefix + key;
    return this.label ? `${this.label}: ${k}` : k;
  }
  error(key: string, msg: string): void {
    this.report.error(this.at(key), msg);
  }
  warn(key: string, msg: string): void {
    this.report.warn(this.at(key), msg);
  }
  sub(name: string): Scope {
    return new Scope(this.report, this.label, `${this.prefix}${name}.`);
  }
}

function warnUnknownKeys(
  scope: Scope,
  table: Table,
  known: readonly string[],
  extraHint?: (key: string) => string | undefined,
): void {
  for (const key of Object.keys(table)) {
    if ((known as readonly string[]).includes(key)) continue;
    const near = nearest(key, known);
    const hint = extraHint?.(key) ?? (near !== undefined ? `did you mean "${near}"?` : undefined);
    scope.warn(key, `unknown key, ignored${hint ? `; ${hint}` : ''}`);
  }
}

interface IntRule {
  min: number;
  max?: number;
  unit?: 'milliseconds' | 'seconds' | 'bytes' | 'microseconds';
}

function intExpectation(rule: IntRule): string {
  const kind = rule.min === 1 ? 'a positive integer' : rule.min === 0 ? 'a non-negative integer' : `an integer >= ${rule.min}`;
  const unit = rule.unit ? ` (${rule.unit})` : '';
  const max = rule.max !== undefined ? ` no larger than ${rule.max}` : '';
  return `expected ${kind}${unit}${max}`;
}

function checkInt(v: unknown, rule: IntRule): string | undefined {
  const ok =
    typeof v === 'number' &&
    Number.isSafeInteger(v) &&
    v >= rule.min &&
    (rule.max === undefined || v <= rule.max);
  if (ok) return undefined;
  const quoted = typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? ' (write numbers without quotes)' : '';
  return `${intExpectation(rule)}, got ${describeValue(v)}${quoted}`;
}

function readInt(scope: Scope, t: Table, key: string, rule: IntRule, dflt: number): number {
  const v = t[key];
  if (v === undefined) return dflt;
  const err = checkInt(v, rule);
  if (err) {
    scope.error(key, err);
    return dflt;
  }
  return v as number;
}

function readOptInt(scope: Scope, t: Table, key: string, rule: IntRule): number | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  const err = checkInt(v, rule);
  if (err) {
    scope.error(key, err);
    return undefined;
  }
  return v as number;
}

function readBool(scope: Scope, t: Table, key: string, dflt: boolean): boolean {
  const v = t[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') {
    const hint = v === 'true' || v === 'false' ? ' (write true or false without quotes)' : '';
    scope.error(key, `expected true or false, got ${describeValue(v)}${hint}`);
    return dflt;
  }
  return v;
}

function readOptString(scope: Scope, t: Table, key: string, what: string): string | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') {
    scope.error(key, `expected ${what}, got ${describeValue(v)}`);
    return undefined;
  }
  return v;
}

const TIMER_MS: IntRule = { min: 1, max: MAX_TIMER_MS, unit: 'milliseconds' };

// ---------------------------------------------------------------------------------------------
// addresses

interface HostPort {
  host: string;
  port: number;
  /** what follows the port, after a ':' (the weight of a standalone server) */
  rest?: string;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

/** Splits `host:port[:rest]` or `[v6]:port[:rest]`; returns an error text on failure. */
function splitHostPort(text: string, allowRest: boolean): HostPort | string {
  let host: string;
  let tail: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'unclosed "[" in an IPv6 address';
    host = text.slice(1, close);
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
    if (text[close + 1] !== ':') return 'missing ":port" after the address';
    tail = text.slice(close + 2);
  } else {
    const parts = text.split(':');
    if (parts.length > (allowRest ? 3 : 2)) {
      return isIP(text) === 6 || isIP(parts.slice(0, -1).join(':')) === 6
        ? 'write an IPv6 address in brackets, e.g. [::1]:6379'
        : 'too many ":"';
    }
    if (parts.length < 2) return 'missing ":port"';
    host = parts[0]!;
    tail = parts.slice(1).join(':');
  }
  const colon = tail.indexOf(':');
  const portText = colon < 0 ? tail : tail.slice(0, colon);
  const rest = colon < 0 ? undefined : tail.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    return `port must be a number from 0 to 65535, got ${JSON.stringify(portText)}`;
  }
  return { host, port: Number(portText), ...(rest !== undefined ? { rest } : {}) };
}

/** `host:port` as written for connecting and naming: IPv6 in brackets. */
function joinHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function parseListen(scope: Scope, v: unknown): { addr: string; host: string; port: number } | undefined {
  if (v === undefined) {
    scope.error('listen_addr', 'required: the "ip:port" this cluster listens on, e.g. "127.0.0.1:26379"');
    return undefined;
  }
  if (typeof v !== 'string') {
    scope.error('listen_addr', `expected an "ip:port" string, got ${describeValue(v)}`);
    return undefined;
  }
  const text = v.trim();
  const hp = splitHostPort(text, false);
  if (typeof hp === 'string') {
    scope.error('listen_addr', `expected "ip:port" (e.g. "127.0.0.1:26379" or "[::1]:26379"), got ${describeValue(v)}: ${hp}`);
    return undefined;
  }
  if (isIP(hp.host) === 0) {
    scope.error('listen_addr', `expected an IP address before the port (e.g. "127.0.0.1:26379", "0.0.0.0:26379"), got ${describeValue(v)}`);
    return undefined;
  }
  return { addr: joinHostPort(hp.host, hp.port), host: hp.host, port: hp.port };
}

/**
 * One `servers` entry. Standalone: `"host:port[:weight] [alias]"`. Cluster: `"host:port"`.
 * Returns the spec or an error text.
 */
function parseServer(raw: string, cacheType: CacheType | undefined): ServerSpec | string {
  const tokens = raw.trim().split(/\s+/).filter((s) => s.length > 0);
  const standaloneForm = '"host:port:weight alias" (weight and alias optional)';
  if (tokens.length === 0) return 'empty server address';
  if (tokens.length > 2) return `expected ${standaloneForm}, got ${JSON.stringify(raw)}: too many words`;
  const hp = splitHostPort(tokens[0]!, true);
  if (typeof hp === 'string') {
    const form = cacheType === 'redis_cluster' ? '"host:port"' : standaloneForm;
    return `expected ${form}, got ${JSON.stringify(raw)}: ${hp}`;
  }
  if (isIP(hp.host) === 0 && !HOSTNAME.test(hp.host)) {
    return `${JSON.stringify(hp.host)} is not a valid host name or IP address (in ${JSON.stringify(raw)})`;
  }
  if (hp.port === 0) return `port 0 is not a valid server port (in ${JSON.stringify(raw)})`;
  const alias = tokens[1];
  if (cacheType === 'redis_cluster' && (hp.rest !== undefined || alias !== undefined)) {
    return (
      `a redis_cluster seed is "host:port", got ${JSON.stringify(raw)} ` +
      '(weights and aliases are for cache_type = "redis"; cache_type defaults to "redis_cluster")'
    );
  }
  let weight = 1;
  if (hp.rest !== undefined) {
    if (!/^\d+$/.test(hp.rest) || !Number.isSafeInteger(Number(hp.rest)) || Number(hp.rest) < 1) {
      return `weight must be a positive integer, got ${JSON.stringify(hp.rest)} (in ${JSON.stringify(raw)})`;
    }
    weight = Number(hp.rest);
  }
  const addr = joinHostPort(hp.host, hp.port);
  // twemproxy hashes the alias if there is one, else "host:port" (just "host" for port 11211)
  const name = alias ?? (cacheType !== 'redis_cluster' && hp.port === 11211 ? hp.host : addr);
  return { host: hp.host, port: hp.port, weight, ...(alias !== undefined ? { alias } : {}), name, addr };
}

function parseServers(scope: Scope, v: unknown, cacheType: CacheType | undefined): ServerSpec[] {
  const form =
    cacheType === 'redis_cluster'
      ? 'a list of seed "host:port" strings'
      : 'a list of "host:port:weight alias" strings';
  if (v === undefined) {
    scope.error('servers', `required: ${form}`);
    return [];
  }
  if (!Array.isArray(v)) {
    scope.error('servers', `expected ${form}, got ${describeValue(v)}`);
    return [];
  }
  if (v.length === 0) {
    scope.error('servers', `at least one server is required (${form})`);
    return [];
  }
  const out: ServerSpec[] = [];
  const byAddr = new Map<string, number>();
  const byName = new Map<string, number>();
  v.forEach((item, i) => {
    const key = `servers[${i}]`;
    if (typeof item !== 'string') {
      scope.error(key, `expected a string, got ${describeValue(item)}`);
      return;
    }
    const spec = parseServer(item, cacheType);
    if (typeof spec === 'string') {
      scope.error(key, spec);
      return;
    }
    const sameAddr = byAddr.get(spec.addr);
    if (sameAddr !== undefined) {
      scope.error(key, `duplicate server ${spec.addr} (also servers[${sameAddr}])`);
      return;
    }
    const sameName = byName.get(spec.name);
    if (sameName !== undefined) {
      const what = spec.alias !== undefined ? `duplicate alias "${spec.name}"` : `name "${spec.name}" is already used`;
      scope.error(key, `${what} (also servers[${sameName}]); every server needs its own name in the hash ring`);
      return;
    }
    byAddr.set(spec.addr, i);
    byName.set(spec.name, i);
    out.push(spec);
  });
  return out;
}

function parseCacheType(scope: Scope, v: unknown): CacheType | undefined {
  if (v === undefined) return DEFAULTS.cacheType;
  if (typeof v !== 'string') {
    scope.error('cache_type', `expected "redis" or "redis_cluster", got ${describeValue(v)}`);
    return undefined;
  }
  if (v === 'redis' || v === 'redis_cluster') return v;
  if (/^memcache/i.test(v.trim())) {
    scope.error(
      'cache_type',
      `Memcached is not supported by aster-proxy (got ${describeValue(v)}); use "redis" or "redis_cluster"`,
    );
    return undefined;
  }
  const near = nearest(v, ['redis', 'redis_cluster']);
  scope.error(
    'cache_type',
    `expected "redis" or "redis_cluster", got ${describeValue(v)}${near ? `; did you mean "${near}"?` : ''}`,
  );
  return undefined;
}

function parseHashTag(scope: Scope, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const ok = typeof v === 'string' && v.length === 2 && /^[\x21-\x7e]{2}$/.test(v);
  if (!ok) {
    scope.error('hash_tag', `expected two printable ASCII characters such as "{}", got ${describeValue(v)}`);
    return undefined;
  }
  return v;
}

function parseDenyCommands(scope: Scope, v: unknown): string[] {
  if (v === undefined) return [...DEFAULTS.denyCommands];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || !/^[A-Za-z][A-Za-z0-9_-]*(\|[A-Za-z0-9_-]+)?$/.test(x))) {
    scope.error('deny_commands', `expected a list of command names like ["debug", "config|set"], got ${describeValue(v)}`);
    return [...DEFAULTS.denyCommands];
  }
  return (v as string[]).map((x) => x.toLowerCase());
}

const TLS_KEYS = ['cert_file', 'key_file', 'ca_file', 'client_auth'] as const;
const BACKEND_TLS_KEYS = ['enabled', 'ca_file', 'cert_file', 'key_file', 'server_name', 'verify'] as const;

/** the content of a PEM file named by `key` (relative to the config file), or undefined (with an error) */
function readPem(scope: Scope, t: Table, key: string, secrets: SecretSources, required: boolean): string | undefined {
  const path = readOptString(scope, t, key, 'a file path');
  if (path === undefined) {
    if (required && t[key] === undefined) scope.error(key, 'required');
    return undefined;
  }
  if (secrets.readFile === undefined) {
    scope.error(key, 'files cannot be read here (the config was not loaded from a file)');
    return undefined;
  }
  try {
    const text = secrets.readFile(path);
    if (!text.includes('-----BEGIN ')) {
      scope.error(key, `${JSON.stringify(path)} is not a PEM file`);
      return undefined;
    }
    return text;
  } catch (err) {
    scope.error(key, `cannot read ${JSON.stringify(path)}: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}

/** [clusters.tls]: cert_file, key_file (required), ca_file, client_auth */
function parseTls(scope: Scope, v: unknown, secrets: SecretSources): TlsServerConfig | undefined {
  if (v === undefined) return undefined;
  if (!isTable(v)) {
    scope.error('tls', `expected a table ([clusters.tls]), got ${describeValue(v)}`);
    return undefined;
  }
  const s = scope.sub('tls');
  warnUnknownKeys(s, v, TLS_KEYS);
  const cert = readPem(s, v, 'cert_file', secrets, true);
  const key = readPem(s, v, 'key_file', secrets, true);
  const ca = readPem(s, v, 'ca_file', secrets, false);
  const clientAuth = readBool(s, v, 'client_auth', false);
  if (clientAuth && ca === undefined && v['ca_file'] === undefined) s.error('client_auth', 'needs ca_file: the CAs client certificates are checked against');
  if (cert === undefined || key === undefined) return undefined;
  return { cert, key, ...(ca !== undefined ? { ca } : {}), clientAuth };
}

/** [clusters.backend_tls]: enabled (default true), ca_file, cert_file + key_file, server_name, verify (default true) */
function parseBackendTls(scope: Scope, v: unknown, secrets: SecretSources): TlsClientConfig | undefined {
  if (v === undefined) return undefined;
  if (!isTable(v)) {
    scope.error('backend_tls', `expected a table ([clusters.backend_tls]), got ${describeValue(v)}`);
    return undefined;
  }
  const s = scope.sub('backend_tls');
  warnUnknownKeys(s, v, BACKEND_TLS_KEYS);
  if (!readBool(s, v, 'enabled', true)) return undefined;
  const ca = readPem(s, v, 'ca_file', secrets, false);
  const cert = readPem(s, v, 'cert_file', secrets, false);
  const key = readPem(s, v, 'key_file', secrets, false);
  if ((v['cert_file'] === undefined) !== (v['key_file'] === undefined)) s.error(v['cert_file'] === undefined ? 'cert_file' : 'key_file', 'cert_file and key_file go together');
  const serverName = readOptString(s, v, 'server_name', 'a host name');
  const verify = readBool(s, v, 'verify', true);
  return { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}), ...(serverName !== undefined ? { serverName } : {}), verify };
}

const USER_KEYS = ['name', 'password', 'password_env', 'password_file', 'commands', 'deny_commands'] as const;

/** [[clusters.users]]: name, password (or password_env / password_file), commands = "all" | "read-only", deny_commands */
function parseUsers(scope: Scope, v: unknown, secrets: SecretSources): UserConfig[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    scope.error('users', `expected an array of tables ([[clusters.users]]), got ${describeValue(v)}`);
    return [];
  }
  const users: UserConfig[] = [];
  v.forEach((raw, i) => {
    const s = scope.sub(`users[${i}]`);
    if (!isTable(raw)) {
      s.error('', `expected a table, got ${describeValue(raw)}`);
      return;
    }
    warnUnknownKeys(s, raw, USER_KEYS);
    const name = readOptString(s, raw, 'name', 'a user name');
    if (name === undefined || !/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) {
      s.error('name', 'required: 1 to 64 letters, digits, or _ . @ -');
      return;
    }
    if (name === 'default') {
      s.error('name', '"default" is the user of "password" (AUTH <password>); give this user another name');
      return;
    }
    if (users.some((u) => u.name === name)) {
      s.error('name', `the user ${JSON.stringify(name)} is defined twice`);
      return;
    }
    const password = parsePassword(s, raw, 'password', secrets);
    if (password === undefined) {
      if (raw['password'] === undefined && raw['password_env'] === undefined && raw['password_file'] === undefined) s.error('password', 'required (or password_env / password_file)');
      return;
    }
    const commands = raw['commands'] ?? 'all';
    if (commands !== 'all' && commands !== 'read-only') {
      s.error('commands', `expected "all" or "read-only", got ${describeValue(commands)}`);
      return;
    }
    const denied = raw['deny_commands'] === undefined ? [] : parseDenyCommands(s, raw['deny_commands']);
    users.push({ name, password, readOnly: commands === 'read-only', denyCommands: denied });
  });
  return users;
}

function parseEjectMode(scope: Scope, v: unknown): 'remap' | 'fail_fast' {
  if (v === undefined) return DEFAULTS.ejectMode;
  if (v === 'remap' || v === 'fail_fast') return v;
  scope.error('eject_mode', `expected "remap" (move an ejected server's keys to the others, as twemproxy) or "fail_fast" (answer them with an error), got ${describeValue(v)}`);
  return DEFAULTS.ejectMode;
}

/** Where secrets that are not written in the file come from. */
export interface SecretSources {
  env: NodeJS.ProcessEnv;
  /** reads a file named by a `*_file` key (relative to the config file); throws with the reason */
  readFile?: (path: string) => string;
}

/**
 * A password from `key` (written in the file), `key_env` (an environment variable) or
 * `key_file` (a file's content, one trailing newline dropped): at most one of them.
 */
function parsePassword(scope: Scope, t: Table, key: string, secrets: SecretSources): string | undefined {
  const given = [key, `${key}_env`, `${key}_file`].filter((k) => t[k] !== undefined);
  if (given.length > 1) {
    scope.error(given[1], `give the password one way only: ${given.join(' and ')} are both set`);
    return undefined;
  }
  let v: string | undefined;
  const from = given[0];
  if (from === key) {
    v = readOptString(scope, t, key, 'a string');
  } else if (from === `${key}_env`) {
    const name = readOptString(scope, t, from, 'the name of an environment variable');
    if (name === undefined) return undefined;
    v = secrets.env[name];
    if (v === undefined) {
      scope.error(from, `the environment variable ${JSON.stringify(name)} is not set`);
      return undefined;
    }
  } else if (from === `${key}_file`) {
    const path = readOptString(scope, t, from, 'a file path');
    if (path === undefined) return undefined;
    if (secrets.readFile === undefined) {
      scope.error(from, 'files cannot be read here (the config was not loaded from a file)');
      return undefined;
    }
    try {
      v = secrets.readFile(path).replace(/\r?\n$/, '');
    } catch (err) {
      scope.error(from, `cannot read ${JSON.stringify(path)}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }
  if (v === '') {
    scope.error(from ?? key, from === key ? 'expected a non-empty string (leave the key out for no password)' : 'the password is empty');
    return undefined;
  }
  return v;
}

function parseBackup(scope: Scope, v: unknown): BackupRequestConfig {
  const dflt: BackupRequestConfig = { ...DEFAULTS.backupRequest };
  if (v === undefined) return dflt;
  if (!isTable(v)) {
    scope.error('backup_request', `expected a table ([clusters.backup_request] or { enabled = true, ... }), got ${describeValue(v)}`);
    return dflt;
  }
  const s = scope.sub('backup_request');
  warnUnknownKeys(s, v, BACKUP_KEYS);
  const enabled = readBool(s, v, 'enabled', dflt.enabled);
  const trigger = readOptInt(s, v, 'trigger_slow_ms', TIMER_MS);
  let multiplier = dflt.multiplier;
  const m = v['multiplier'];
  if (m !== undefined) {
    if (typeof m !== 'number' || !Number.isFinite(m) || m <= 0) {
      s.error('multiplier', `expected a number greater than 0, got ${describeValue(m)}`);
    } else {
      multiplier = m;
    }
  }
  const budgetPercent = readInt(s, v, 'budget_percent', { min: 0, max: 100 }, dflt.budgetPercent);
  const burst = readInt(s, v, 'burst', { min: 1, max: 1_000_000 }, dflt.burst);
  return { enabled, ...(trigger !== undefined ? { triggerSlowMs: trigger } : {}), multiplier, budgetPercent, burst };
}

function parseLimits(scope: Scope, v: unknown): LimitsConfig {
  const d = DEFAULTS.limits;
  if (v === undefined) return { ...d };
  if (!isTable(v)) {
    scope.error('limits', `expected a table ([clusters.limits]), got ${describeValue(v)}`);
    return { ...d };
  }
  const s = scope.sub('limits');
  warnUnknownKeys(s, v, LIMIT_KEYS);
  return {
    maxBulkBytes: readInt(s, v, 'max_bulk_bytes', { min: 1, unit: 'bytes' }, d.maxBulkBytes),
    maxHeaderBytes: readInt(s, v, 'max_header_bytes', { min: 1, unit: 'bytes' }, d.maxHeaderBytes),
    maxArgs: readInt(s, v, 'max_args', { min: 1 }, d.maxArgs),
    maxQueryBytes: readInt(s, v, 'max_query_bytes', { min: 1, unit: 'bytes' }, d.maxQueryBytes),
    maxReplyDepth: readInt(s, v, 'max_reply_depth', { min: 1 }, d.maxReplyDepth),
    pubsubOutputHardBytes: readInt(s, v, 'pubsub_output_hard_bytes', { min: 1, unit: 'bytes' }, d.pubsubOutputHardBytes),
    pubsubOutputSoftBytes: readInt(s, v, 'pubsub_output_soft_bytes', { min: 1, unit: 'bytes' }, d.pubsubOutputSoftBytes),
    pubsubOutputSoftSeconds: readInt(s, v, 'pubsub_output_soft_seconds', { min: 0, unit: 'seconds' }, d.pubsubOutputSoftSeconds),
    outputHardBytes: readInt(s, v, 'output_hard_bytes', { min: 0, unit: 'bytes' }, d.outputHardBytes),
    outputSoftBytes: readInt(s, v, 'output_soft_bytes', { min: 0, unit: 'bytes' }, d.outputSoftBytes),
    outputSoftSeconds: readInt(s, v, 'output_soft_seconds', { min: 0, unit: 'seconds' }, d.outputSoftSeconds),
    maxPendingRequests: readInt(s, v, 'max_pending_requests', { min: 1 }, d.maxPendingRequests),
    maxPendingBytes: readInt(s, v, 'max_pending_bytes', { min: 1, unit: 'bytes' }, d.maxPendingBytes),
  };
}

/** The default `thread`: env ASTER_DEFAULT_THREAD if set, else one per CPU. */
function defaultThread(report: Report, env: NodeJS.ProcessEnv): number {
  const raw = env[THREAD_ENV];
  if (raw === undefined || raw.trim() === '') return availableParallelism();
  const t = raw.trim();
  const n = Number(t);
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(n) || n < 1 || n > MAX_THREADS) {
    report.error(
      `environment variable ${THREAD_ENV}`,
      `expected a positive integer no larger than ${MAX_THREADS} (the default thread count), got ${JSON.stringify(raw)}`,
    );
    return availableParallelism();
  }
  return n;
}

/** How messages name a cluster: by name, or by position when it has no usable or unique name. */
function clusterLabel(t: unknown, index: number, duplicated = false): string {
  const name = isTable(t) ? t['name'] : undefined;
  if (typeof name !== 'string' || name.trim() === '') return `cluster #${index + 1}`;
  return duplicated ? `cluster #${index + 1} (${JSON.stringify(name)})` : `cluster ${JSON.stringify(name)}`;
}

function parseCluster(
  report: Report,
  raw: unknown,
  index: number,
  label: string,
  defThread: () => number,
  secrets: SecretSources,
): ClusterConfig | undefined {
  const scope = new Scope(report, label);
  if (!isTable(raw)) {
    report.error(label, `expected a table ([[clusters]]), got ${describeValue(raw)}`);
    return undefined;
  }
  const t = raw;
  warnUnknownKeys(scope, t, CLUSTER_KEYS, (key) => {
    if (key === 'auth' || key === 'backend_auth') {
      return 'use [[clusters.users]] tables (name, password, commands, deny_commands) and "password" for the default user';
    }
    return TWEMPROXY_HINTS[key];
  });

  let name = '';
  const n = t['name'];
  if (n === undefined) scope.error('name', 'required: a unique name for this cluster');
  else if (typeof n !== 'string') scope.error('name', `expected a string, got ${describeValue(n)}`);
  else if (n.trim() === '') scope.error('name', 'must not be empty');
  else name = n;

  const listen = parseListen(scope, t['listen_addr']);
  const cacheType = parseCacheType(scope, t['cache_type']);
  const servers = parseServers(scope, t['servers'], cacheType);
  let hashTag = parseHashTag(scope, t['hash_tag']);
  if (hashTag !== undefined && cacheType === 'redis_cluster') {
    scope.warn('hash_tag', 'ignored in redis_cluster mode (Redis Cluster always hashes the {...} part of a key)');
    hashTag = undefined;
  }
  if (cacheType === 'redis') {
    for (const key of ['fetch_interval', 'read_from_slave']) {
      if (t[key] !== undefined) scope.warn(key, 'ignored when cache_type = "redis" (it applies to redis_cluster only)');
    }
  }

  const thread = t['thread'] === undefined ? defThread() : readInt(scope, t, 'thread', { min: 1, max: MAX_THREADS }, 1);
  const cluster: ClusterConfig = {
    name,
    users: [],
    listenAddr: listen?.addr ?? '',
    listenHost: listen?.host ?? '',
    listenPort: listen?.port ?? 0,
    cacheType: cacheType ?? DEFAULTS.cacheType,
    servers,
    ...(hashTag !== undefined ? { hashTag } : {}),
    thread,
    readTimeout: readInt(scope, t, 'read_timeout', TIMER_MS, DEFAULTS.readTimeout),
    writeTimeout: readInt(scope, t, 'write_timeout', TIMER_MS, DEFAULTS.writeTimeout),
    fetchInterval: readInt(scope, t, 'fetch_interval', TIMER_MS, DEFAULTS.fetchInterval),
    readFromSlave: readBool(scope, t, 'read_from_slave', DEFAULTS.readFromSlave),
    adminCommands: readBool(scope, t, 'admin_commands', DEFAULTS.adminCommands),
    pingFailLimit: readInt(scope, t, 'ping_fail_limit', { min: 0 }, DEFAULTS.pingFailLimit),
    pingInterval: readInt(scope, t, 'ping_interval', TIMER_MS, DEFAULTS.pingInterval),
    pingSuccInterval: readInt(scope, t, 'ping_succ_interval', TIMER_MS, DEFAULTS.pingSuccInterval),
    ejectMode: parseEjectMode(scope, t['eject_mode']),
    tcpKeepalive: readInt(
      scope,
      t,
      'tcpkeepalive',
      { min: 0, max: MAX_KEEPALIVE_S, unit: 'seconds' },
      DEFAULTS.tcpKeepalive,
    ),
    idleTimeout: readInt(scope, t, 'idle_timeout', { min: 0, max: 365 * 24 * 3600, unit: 'seconds' }, DEFAULTS.idleTimeout),
    backupRequest: parseBackup(scope, t['backup_request']),
    slowlogLogSlowerThan: readInt(scope, t, 'slowlog_log_slower_than', { min: -1, unit: 'microseconds' }, DEFAULTS.slowlogLogSlowerThan),
    slowlogMaxLen: readInt(scope, t, 'slowlog_max_len', { min: 0, max: MAX_SLOWLOG_LEN }, DEFAULTS.slowlogMaxLen),
    maxClients: readInt(scope, t, 'maxclients', { min: 1, max: 1_000_000 }, DEFAULTS.maxClients),
    maxBlockingConnections: readInt(scope, t, 'max_blocking_connections', { min: 1, max: 1_000_000 }, DEFAULTS.maxBlockingConnections),
    denyCommands: parseDenyCommands(scope, t['deny_commands']),
    limits: parseLimits(scope, t['limits']),
  };
  const password = parsePassword(scope, t, 'password', secrets);
  const backendPassword = parsePassword(scope, t, 'backend_password', secrets);
  if (password !== undefined) cluster.password = password;
  cluster.users = parseUsers(scope, t['users'], secrets);
  const tls = parseTls(scope, t['tls'], secrets);
  if (tls !== undefined) cluster.tls = tls;
  const backendTls = parseBackendTls(scope, t['backend_tls'], secrets);
  if (backendTls !== undefined) cluster.backendTls = backendTls;
  if (backendPassword !== undefined) cluster.backendPassword = backendPassword;
  const backendAuth = t['backend_auth'];
  if (backendAuth !== undefined) {
    const s = scope.sub('backend_auth');
    if (!isTable(backendAuth)) {
      scope.error('backend_auth', `expected a table like { username = "proxy", password = "..." }, got ${describeValue(backendAuth)}`);
    } else if (backendPassword !== undefined) {
      scope.error('backend_auth', 'give the backends\' credentials one way only: backend_password (the default user) or backend_auth (an ACL user)');
    } else {
      warnUnknownKeys(s, backendAuth, ['username', 'password', 'password_env', 'password_file']);
      const username = readOptString(s, backendAuth, 'username', 'an ACL user name');
      const pw = parsePassword(s, backendAuth, 'password', secrets);
      if (username === undefined || username === '') s.error('username', 'required');
      if (pw === undefined && backendAuth['password'] === undefined && backendAuth['password_env'] === undefined && backendAuth['password_file'] === undefined) s.error('password', 'required (or password_env / password_file)');
      if (username !== undefined && username !== '' && pw !== undefined) {
        cluster.backendUsername = username;
        cluster.backendPassword = pw;
      }
    }
  }
  return cluster;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** Whether two listeners would fight over the same port (port 0 picks a free one: never). */
function listenersClash(a: ClusterConfig, b: ClusterConfig): boolean {
  if (a.listenPort === 0 || a.listenPort !== b.listenPort) return false;
  const ha = a.listenHost.toLowerCase();
  const hb = b.listenHost.toLowerCase();
  if (ha === hb) return true;
  if (ha === '::' || hb === '::') return true; // dual-stack wildcard takes both families
  const fa = isIP(ha);
  const fb = isIP(hb);
  return fa === fb && (isWildcard(ha) || isWildcard(hb));
}

function syntaxProblem(file: string, text: string, err: unknown): string {
  const e = err as { message?: string; line?: number; column?: number; location?: { start?: { line?: number; column?: number } } };
  const line = e.location?.start?.line ?? e.line;
  const column = e.location?.start?.column ?? e.column;
  let msg = String(e.message ?? err).replace(/\s+/g, ' ').trim();
  const found = /^Expected .* but (.*) found\.$/.exec(msg)?.[1];
  if (found !== undefined) {
    msg =
      found === 'end of input'
        ? 'unexpected end of file'
        : found === '"\\n"' || found === '"\\r"'
          ? 'unexpected end of line'
          : `unexpected ${found}`;
  }
  if (line === undefined) return `${file}: invalid TOML: ${msg}`;
  const src = text.split(/\r?\n/)[line - 1];
  const near = src !== undefined && src.trim() !== '' ? ` (line ${line}: ${JSON.stringify(src.trim().slice(0, 80))})` : '';
  return `${file}: line ${line}${column !== undefined ? `, column ${column}` : ''}: invalid TOML: ${msg}${near}`;
}

/**
 * Parses and validates config text. `file` names the source in messages. Throws `ConfigError`
 * listing every problem; returns the config and the warnings otherwise.
 */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env, readFile?: (path: string) => string): LoadResult {
  const report = new Report(file);
  let doc: unknown;
  try {
    doc = toml.parse(text.startsWith('\uFEFF') ? text.slice(1) : text);
  } catch (err) {
    throw new ConfigError([syntaxProblem(file, text, err)]);
  }
  if (!isTable(doc)) throw new ConfigError([`${file}: invalid TOML: not a table`]);

  const top = new Scope(report, '');
  warnUnknownKeys(top, doc, TOP_KEYS, (key) =>
    (CLUSTER_KEYS as readonly string[]).includes(key) ? 'this key belongs inside a [[clusters]] table' : undefined,
  );

  let thread: number | undefined;
  const defThread = (): number => (thread ??= defaultThread(report, env));

  const clusters: ClusterConfig[] = [];
  const labels = new Map<ClusterConfig, string>();
  const raw = doc['clusters'];
  if (raw === undefined) {
    report.error('clusters', 'at least one [[clusters]] table is required');
  } else if (!Array.isArray(raw)) {
    const hint = isTable(raw) ? ' (write [[clusters]], with double brackets)' : '';
    report.error('clusters', `expected an array of tables ([[clusters]]), got ${describeValue(raw)}${hint}`);
  } else if (raw.length === 0) {
    report.error('clusters', 'at least one [[clusters]] table is required');
  } else {
    const nameCount = new Map<unknown, number>();
    for (const c of raw) {
      const n = isTable(c) ? c['name'] : undefined;
      nameCount.set(n, (nameCount.get(n) ?? 0) + 1);
    }
    raw.forEach((c, i) => {
      const dup = isTable(c) && (nameCount.get(c['name']) ?? 0) > 1;
      const cluster = parseCluster(report, c, i, clusterLabel(c, i, dup), defThread, { env, readFile });
      if (cluster) labels.set(cluster, clusterLabel(c, i, dup));
      if (cluster) clusters.push(cluster);
    });
  }
  // the env variable is checked even when every cluster sets `thread`: a bad value is a mistake
  defThread();

  // cross-cluster checks: unique names, listeners that do not clash
  clusters.forEach((c, i) => {
    for (let j = 0; j < i; j++) {
      const o = clusters[j]!;
      if (c.name !== '' && c.name === o.name) {
        report.error(`${labels.get(c)}: name`, `duplicate cluster name ${JSON.stringify(c.name)} (also ${labels.get(o)})`);
        break;
      }
    }
    for (let j = 0; j < i; j++) {
      const o = clusters[j]!;
      if (c.listenAddr !== '' && o.listenAddr !== '' && listenersClash(c, o)) {
        report.error(
          `${labels.get(c)}: listen_addr`,
          `${c.listenAddr} clashes with listen_addr ${o.listenAddr} of ${labels.get(o)}`,
        );
        break;
      }
    }
  });

  if (report.problems.length > 0) throw new ConfigError(report.problems, report.warnings);
  return { config: { file, clusters }, warnings: report.warnings };
}
