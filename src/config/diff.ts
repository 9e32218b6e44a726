/**
 * What a reload changes: the clusters of the running config against those of the new one,
 * matched by name. Pure: no I/O.
 */
import type { ClusterConfig, Config } from './types.js';

export interface ClusterChange {
  old: ClusterConfig;
  next: ClusterConfig;
  /** the config keys that differ, as the TOML file spells them (`servers`, `read_timeout`...) */
  keys: string[];
}

export interface ConfigDiff {
  /** new names, and names whose listener or cache type changed (their old cluster is in `removed`) */
  added: ClusterConfig[];
  /** names gone, and the old side of the listener / cache type changes */
  removed: ClusterConfig[];
  /** same name, listener and cache type; other keys changed: applied in place */
  reconfigured: ClusterChange[];
  unchanged: ClusterConfig[];
}

/** Each field of ClusterConfig and the key it comes from in the file (a field not listed: its snake_case). */
const KEY_OF: Partial<Record<keyof ClusterConfig, string>> = {
  name: 'name',
  listenAddr: 'listen_addr',
  listenHost: 'listen_addr',
  listenPort: 'listen_addr',
  cacheType: 'cache_type',
  servers: 'servers',
  hashTag: 'hash_tag',
  thread: 'thread',
  readTimeout: 'read_timeout',
  writeTimeout: 'write_timeout',
  fetchInterval: 'fetch_interval',
  readFromSlave: 'read_from_slave',
  pingFailLimit: 'ping_fail_limit',
  pingInterval: 'ping_interval',
  pingSuccInterval: 'ping_succ_interval',
  ejectMode: 'eject_mode',
  tcpKeepalive: 'tcpkeepalive',
  backupRequest: 'backup_request',
  password: 'password',
  backendPassword: 'backend_password',
  backendUsername: 'backend_auth',
  limits: 'limits',
};

/** Keys that a running cluster cannot change in place: its listener and its kind. */
const REPLACING = new Set(['listen_addr', 'cache_type']);

/** The keys whose values differ between two configs of one cluster. */
export function changedKeys(a: ClusterConfig, b: ClusterConfig): string[] {
  const keys = new Set<string>();
  const fields = new Set([...Object.keys(KEY_OF), ...Object.keys(a), ...Object.keys(b)]) as Set<keyof ClusterConfig>;
  for (const field of fields) {
    if (!sameValue(a[field], b[field])) keys.add(KEY_OF[field] ?? field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
  }
  return [...keys];
}

export function diffConfig(old: Config, next: Config): ConfigDiff {
  const diff: ConfigDiff = { added: [], removed: [], reconfigured: [], unchanged: [] };
  const before = new Map(old.clusters.map((c) => [c.name, c]));
  const after = new Set(next.clusters.map((c) => c.name));
  for (const c of old.clusters) if (!after.has(c.name)) diff.removed.push(c);
  for (const c of next.clusters) {
    const prev = before.get(c.name);
    if (prev === undefined) {
      diff.added.push(c);
      continue;
    }
    const keys = changedKeys(prev, c);
    if (keys.length === 0) diff.unchanged.push(c);
    // (TLS on the listener turned on or off is decided per new connection: no new listener)
    else if (keys.some((k) => REPLACING.has(k))) {
      diff.removed.push(prev);
      diff.added.push(c);
    } else diff.reconfigured.push({ old: prev, next: c, keys });
  }
  return diff;
}

/** Whether a reload changes nothing. */
export function isEmptyDiff(d: ConfigDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.reconfigured.length === 0;
}

/** Structural equality of config values (plain data: primitives, arrays, plain objects). */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => sameValue(v, bb[i]));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const ka = Object.keys(ra).filter((k) => ra[k] !== undefined);
  const kb = Object.keys(rb).filter((k) => rb[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => sameValue(ra[k], rb[k]));
}
