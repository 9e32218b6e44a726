/**
 * The slow log of one cluster, as Redis keeps it: the last `maxLen` requests whose time in the
 * proxy (arrival to reply written) was at least `thresholdUs`. Read with SLOWLOG GET/LEN/RESET.
 * Only requests over the threshold reach `record`; the check itself is one comparison per
 * request in the session.
 */
import type { SlowlogEntry, SlowlogView } from '../commands/local.js';

/** Redis's limits on what an entry keeps of a request (SLOWLOG_ENTRY_MAX_ARGC / _STRING) */
export const SLOWLOG_MAX_ARGS = 32;
export const SLOWLOG_MAX_ARG_BYTES = 128;

const REDACTED = Buffer.from('(redacted)');

export class Slowlog implements SlowlogView {
  private ring: Array<SlowlogEntry | undefined> = [];
  /** index in `ring` of the newest entry */
  private newest = -1;
  private count = 0;
  private nextId = 0;
  /** requests at least this slow are logged, µs; negative turns the log off (Redis: -1) */
  thresholdUs: number;
  maxLen: number;

  constructor(thresholdUs: number, maxLen: number) {
    this.thresholdUs = thresholdUs;
    this.maxLen = maxLen;
  }

  /** New settings (a config reload); a shorter log keeps its newest entries. */
  configure(thresholdUs: number, maxLen: number): void {
    this.thresholdUs = thresholdUs;
    if (maxLen !== this.maxLen) {
      const keep = this.entries(maxLen);
      this.maxLen = maxLen;
      this.ring = [];
      this.newest = -1;
      this.count = 0;
      for (let i = keep.length - 1; i >= 0; i--) this.push(keep[i]);
    }
  }

  /** true if a request that took `us` goes in the log */
  isSlow(us: number): boolean {
    return this.thresholdUs >= 0 && us >= this.thresholdUs;
  }

  /**
   * Logs one request. `args` are copied and cut as Redis cuts them (at most 32 arguments, each
   * at most 128 bytes) and passwords are redacted, so an entry never holds a socket buffer.
   */
  record(durationUs: number, args: readonly Buffer[], addr: string, name: string, unixTime: number): void {
    if (this.maxLen <= 0) return;
    this.push({ id: this.nextId++, time: unixTime, durationUs: Math.round(durationUs), args: sanitize(args), addr, name });
  }

  get length(): number {
    return this.count;
  }

  /** up to `n` entries, newest first (`n` < 0: all) */
  entries(n: number): SlowlogEntry[] {
    const take = n < 0 ? this.count : Math.min(n, this.count);
    const out: SlowlogEntry[] = [];
    for (let k = 0; k < take; k++) {
      const i = (this.newest - k + this.ring.length) % this.ring.length;
      out.push(this.ring[i] as SlowlogEntry);
    }
    return out;
  }

  reset(): void {
    this.ring = [];
    this.newest = -1;
    this.count = 0;
  }

  private push(e: SlowlogEntry): void {
    if (this.ring.length < this.maxLen) {
      this.ring.push(e);
      this.newest = this.ring.length - 1;
    } else {
      this.newest = (this.newest + 1) % this.ring.length;
      this.ring[this.newest] = e;
    }
    this.count = Math.min(this.count + 1, this.maxLen);
  }
}

/** The arguments an entry keeps: copied, cut like Redis's, with passwords replaced. */
export function sanitize(args: readonly Buffer[]): Buffer[] {
  const argc = args.length;
  const keep = Math.min(argc, SLOWLOG_MAX_ARGS);
  const secret = secretPositions(args);
  const out: Buffer[] = [];
  for (let j = 0; j < keep; j++) {
    if (keep !== argc && j === keep - 1) {
      out.push(Buffer.from(`... (${argc - keep + 1} more arguments)`));
    } else if (secret.has(j)) {
      out.push(REDACTED);
    } else if (args[j].length > SLOWLOG_MAX_ARG_BYTES) {
      out.push(Buffer.concat([args[j].subarray(0, SLOWLOG_MAX_ARG_BYTES), Buffer.from(`... (${args[j].length - SLOWLOG_MAX_ARG_BYTES} more bytes)`)]));
    } else {
      out.push(Buffer.from(args[j]));
    }
  }
  return out;
}

const word = (b: Buffer | undefined): string => (b === undefined || b.length > 8 ? '' : b.toString('latin1').toLowerCase());

/** positions of passwords: AUTH's arguments, HELLO ... AUTH user pass, MIGRATE ... AUTH pass / AUTH2 user pass */
function secretPositions(args: readonly Buffer[]): Set<number> {
  const at = new Set<number>();
  const cmd = word(args[0]);
  if (cmd === 'auth') {
    for (let j = 1; j < args.length; j++) at.add(j);
  } else if (cmd === 'hello' || cmd === 'migrate') {
    for (let j = 1; j < args.length; j++) {
      const w = word(args[j]);
      if (w === 'auth') {
        const n = cmd === 'hello' ? 2 : 1;
        for (let k = 1; k <= n; k++) at.add(j + k);
        j += n;
      } else if (w === 'auth2' && cmd === 'migrate') {
        at.add(j + 1);
        at.add(j + 2);
        j += 2;
      }
    }
  }
  return at;
}
