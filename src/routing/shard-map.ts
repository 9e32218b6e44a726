import type { ServerSpec } from '../config/types.js';
import { fnv1a64Twemproxy } from './fnv1a.js';
import { hashTagRange } from './hashtag.js';
import { Ketama } from './ketama.js';

/**
 * What happens to the keys of a server that health checks took out of service:
 * - `remap`: the ring is rebuilt over the live servers (twemproxy's auto_eject_hosts), so its
 *   keys move to other servers; they may read stale data there when it returns.
 * - `fail_fast`: the ring keeps every server; keys of an ejected one get an immediate error.
 */
export type EjectMode = 'remap' | 'fail_fast';

/**
 * The standalone cluster's key placement: the servers, which of them are in service, and the
 * ketama ring built for them. Immutable servers; `eject` and `restore` rebuild the ring in
 * `remap` mode. A reload builds a new ShardMap.
 */
export class ShardMap {
  private live: boolean[];
  private ring: Ketama;
  /** ring index -> server index (the ring may hold only the live servers) */
  private ringToServer: number[];
  /** the hash tag's two bytes, or -1 without one */
  private readonly tagOpen: number;
  private readonly tagClose: number;

  constructor(
    readonly servers: readonly ServerSpec[],
    readonly hashTag: string | undefined,
    readonly mode: EjectMode = 'remap',
  ) {
    hashTagRange(Buffer.alloc(0), hashTag); // a bad tag throws here, not on the request path
    const tagged = hashTag !== undefined && hashTag.length === 2;
    this.tagOpen = tagged ? hashTag.charCodeAt(0) : -1;
    this.tagClose = tagged ? hashTag.charCodeAt(1) : -1;
    this.live = servers.map(() => true);
    [this.ring, this.ringToServer] = this.build();
  }

  /** The server index that owns `key` (its bytes `[start, end)`), or -1 when that server is ejected (fail_fast) or none is live. */
  backendFor(key: Buffer, start = 0, end = key.length): number {
    const map = this.ringToServer;
    if (map.length === 0) return -1;
    const i = map.length === 1 ? map[0] : map[this.ring.lookup(end === start ? 0 : this.hash(key, start, end))];
    return this.live[i] ? i : -1;
  }

  /** `Ketama.serverFor`'s hash, with the tag's bytes found by a loop (keys are short: a native indexOf costs more) */
  private hash(key: Buffer, start: number, end: number): number {
    const open = this.tagOpen;
    if (open >= 0) {
      let o = start;
      while (o < end && key[o] !== open) o++;
      if (o < end) {
        const close = this.tagClose;
        let c = o + 1;
        while (c < end && key[c] !== close) c++;
        if (c < end && c > o + 1) return fnv1a64Twemproxy(key, o + 1, c);
      }
    }
    return fnv1a64Twemproxy(key, start, end);
  }

  isLive(i: number): boolean {
    return this.live[i] === true;
  }

  /** Takes server `i` out of service; false if it already was. */
  eject(i: number): boolean {
    return this.setLive(i, false);
  }

  /** Puts server `i` back in service; false if it already was. */
  restore(i: number): boolean {
    return this.setLive(i, true);
  }

  indexOf(addr: string): number {
    return this.servers.findIndex((s) => s.addr === addr);
  }

  private setLive(i: number, live: boolean): boolean {
    if (i < 0 || i >= this.servers.length || this.live[i] === live) return false;
    this.live[i] = live;
    if (this.mode === 'remap') [this.ring, this.ringToServer] = this.build();
    return true;
  }

  private build(): [Ketama, number[]] {
    const members = this.servers.map((_, i) => i).filter((i) => this.mode === 'fail_fast' || this.live[i]);
    if (members.length === 0) return [new Ketama([{ name: 'none', weight: 1 }]), []];
    const ring = new Ketama(members.map((i) => ({ name: this.servers[i].name, weight: this.servers[i].weight })));
    return [ring, members];
  }
}
