/** failures from one address that are answered at once; later ones wait */
const FREE_FAILURES = 3;
/** the longest an answer to a wrong password waits, ms */
const MAX_DELAY_MS = 5000;
/** an address is forgotten this long after its last failure, ms */
const FORGET_MS = 60_000;
/** addresses remembered at most (the oldest go first): memory stays bounded under a flood */
const MAX_ADDRESSES = 10_000;

/**
 * Failed AUTH attempts by client address, for one cluster: after a few, the answer to each
 * wrong password waits longer (100 ms, doubling, up to 5 s), so guessing passwords is slow even
 * over many connections. A success, or a minute without failures, forgets the address.
 */
export class AuthFailures {
  private readonly byAddress = new Map<string, { count: number; last: number }>();

  /** a failed AUTH from `address` at `now` (ms): how long its answer waits, ms */
  failed(address: string, now: number): number {
    let entry = this.byAddress.get(address);
    if (entry !== undefined && now - entry.last > FORGET_MS) entry = undefined;
    const count = (entry?.count ?? 0) + 1;
    this.byAddress.delete(address); // re-inserted last: the map stays in order of last failure
    this.byAddress.set(address, { count, last: now });
    if (this.byAddress.size > MAX_ADDRESSES) {
      const oldest = this.byAddress.keys().next().value;
      if (oldest !== undefined) this.byAddress.delete(oldest);
    }
    return count <= FREE_FAILURES ? 0 : Math.min(MAX_DELAY_MS, 100 * 2 ** (count - FREE_FAILURES - 1));
  }

  /** `address` authenticated: its failures are forgotten */
  succeeded(address: string): void {
    this.byAddress.delete(address);
  }

  /** addresses remembered now */
  get size(): number {
    return this.byAddress.size;
  }
}
