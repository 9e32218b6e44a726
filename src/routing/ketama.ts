/**
 * The ketama continuum of twemproxy 0.5.0 (`distribution: ketama`, nc_ketama.c), bit for bit, so
 * that every key lands on the server nutcracker would pick.
 *
 * - Each live server gets `floorf(pct * 160 / 4 * live + 1e-10) * 4` points, computed in single
 *   precision as twemproxy does (`pct = (float)weight / (float)total_weight`): see
 *   `ketamaPointsPerServer`. Double arithmetic gives a different count for some weight sets (for
 *   example weights 1,2,3,4,15: 28 points instead of 32 for the first server).
 * - Point group `i` of a server is `md5("<name>-<i>")`, read as four little-endian uint32 values.
 * - Points are sorted by value. twemproxy sorts with glibc `qsort`, which is a merge sort (stable)
 *   whenever it can allocate its buffer, so equal values keep insertion order: config order of
 *   the servers, then point order. Its lookup is a lower-bound binary search, so on a tie the
 *   server earliest in the config wins. We reproduce exactly that (stable sort, lower bound).
 * - Lookup: the first point whose value is >= the hash, wrapping to the first point.
 */

import { createHash } from 'node:crypto';
import { fnv1a64Twemproxy } from './fnv1a.js';
import { withHashTag } from './hashtag.js';

export interface KetamaServer {
  /** the name hashed into the ring: see `twemproxyServerName` */
  name: string;
  /** positive integer, as in `host:port:weight` */
  weight: number;
}

export interface KetamaOptions {
  /**
   * Points for one server; defaults to twemproxy's single-precision formula. Tests swap it to show
   * that another formula would place keys differently.
   */
  pointsPerServer?: (weight: number, totalWeight: number, liveServers: number) => number;
}

/** KETAMA_POINTS_PER_SERVER in nc_ketama.c */
export const KETAMA_POINTS_PER_SERVER = 160;
/** KETAMA_MAX_HOSTLEN in nc_ketama.c: "<name>-<i>" is formatted into a buffer this big */
const KETAMA_MAX_HOSTLEN = 273;

const f32 = Math.fround;

/**
 * Points a server gets on the continuum, with twemproxy's float arithmetic:
 * `(uint32_t)(floorf((float)(pct * 160 / 4 * (float)live + 0.0000000001)) * 4)` where `pct` and
 * every intermediate product is a `float` (x86-64 SSE: no excess precision), and only the
 * `+ 1e-10` is done in double before the cast back to float (which, for any count that matters,
 * rounds straight back to the float it started from).
 */
export function ketamaPointsPerServer(weight: number, totalWeight: number, liveServers: number): number {
  const pct = f32(f32(weight) / f32(totalWeight));
  const perHashes = f32(f32(f32(pct * KETAMA_POINTS_PER_SERVER) / 4) * f32(liveServers));
  return Math.floor(f32(perHashes + 1e-10)) * 4;
}

/**
 * The name twemproxy hashes for a server: the alias if given, else "host:port", except that the
 * port is left out when it is 11211 (libmemcached compatibility, conf_add_server in nc_conf.c).
 */
export function twemproxyServerName(host: string, port: number, alias?: string): string {
  if (alias !== undefined && alias !== '') return alias;
  return port === 11211 ? host : `${host}:${port}`;
}

export class Ketama {
  /** number of servers (the constructor's array length) */
  readonly size: number;
  /** points each server got, by server index */
  readonly pointsPerServer: readonly number[];
  /** sorted point values */
  private readonly values: Uint32Array;
  /** owner server index of each sorted point */
  private readonly owners: Uint32Array;

  /** `servers`: the live servers, in config order. At least one; weights positive integers. */
  constructor(servers: readonly KetamaServer[], options: KetamaOptions = {}) {
    if (servers.length === 0) throw new RangeError('Ketama needs at least one server');
    const pointsFor = options.pointsPerServer ?? ketamaPointsPerServer;
    let totalWeight = 0;
    for (const s of servers) {
      if (!Number.isInteger(s.weight) || s.weight <= 0 || s.weight > 0xffffffff) {
        throw new RangeError(`ketama server ${JSON.stringify(s.name)}: weight must be a positive integer, got ${s.weight}`);
      }
      totalWeight += s.weight;
    }
    // twemproxy sums weights in a uint32_t
    totalWeight %= 2 ** 32;

    const counts = servers.map((s) => pointsFor(s.weight, totalWeight, servers.length));
    const total = counts.reduce((a, b) => a + b, 0);
    const raw = new Uint32Array(total);
    const rawOwner = new Uint32Array(total);
    let at = 0;
    servers.forEach((s, index) => {
      const groups = counts[index]! / 4;
      for (let i = 0; i < groups; i++) {
        const label = Buffer.from(`${s.name}-${i}`, 'utf8');
        if (label.length >= KETAMA_MAX_HOSTLEN) {
          // twemproxy truncates the string but still hashes the untruncated length (reading past
          // its buffer): no placement to be compatible with.
          throw new RangeError(`ketama server name too long for twemproxy (${label.length} bytes): ${s.name}`);
        }
        const d = createHash('md5').update(label).digest();
        for (let k = 0; k < 16; k += 4) {
          raw[at] = d.readUInt32LE(k);
          rawOwner[at++] = index;
        }
      }
    });

    // Stable sort by value (see the file comment about glibc qsort).
    const order = new Uint32Array(total);
    for (let i = 0; i < total; i++) order[i] = i;
    order.sort((a, b) => raw[a]! - raw[b]! || a - b);
    this.values = new Uint32Array(total);
    this.owners = new Uint32Array(total);
    for (let i = 0; i < total; i++) {
      this.values[i] = raw[order[i]!]!;
      this.owners[i] = rawOwner[order[i]!]!;
    }
    this.size = servers.length;
    this.pointsPerServer = Object.freeze(counts);
  }

  /** total points on the continuum */
  get pointCount(): number {
    return this.values.length;
  }

  /** the continuum in order, for inspection and tests (allocates; not for the request path) */
  points(): { value: number; server: number }[] {
    return Array.from(this.values, (value, i) => ({ value, server: this.owners[i]! }));
  }

  /** index (into the constructor's array) of the server for this hash (taken as uint32) */
  lookup(hash: number): number {
    const h = hash >>> 0;
    const values = this.values;
    let left = 0;
    let right = values.length;
    while (left < right) {
      const middle = (left + right) >>> 1;
      if (values[middle]! < h) left = middle + 1;
      else right = middle;
    }
    return this.owners[right === values.length ? 0 : right]!;
  }

  /** hash the key (with the hash tag, e.g. "{}") and look it up */
  serverFor(key: Uint8Array, hashTag?: string): number {
    // server_pool_hash in nc_server.c: one server needs no hash, and an empty key hashes to 0
    // (not to the FNV offset basis).
    if (this.size === 1) return 0;
    if (key.length === 0) return this.lookup(0);
    return this.lookup(withHashTag(key, hashTag, fnv1a64Twemproxy));
  }
}
