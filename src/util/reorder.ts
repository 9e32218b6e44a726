/**
 * The per-client reorder buffer: replies arrive in any order (several backends answer at
 * their own pace) and leave strictly in request order. A reply that arrives early is held, in
 * a ring indexed by its request number, until every reply before it has gone. No Map, no
 * object per reply: the ring grows (doubling) only when a client has more requests in flight
 * than it holds.
 *
 *   put(1, b), put(0, a) -> release a, b;   put(3, d) -> held;   put(2, c) -> release c, d
 */
export class ReorderBuffer {
  private ring: Array<Buffer | undefined> = new Array<Buffer | undefined>(16);
  private mask = 15;
  /** the number of the next reply to release (= replies released so far) */
  next = 0;
  /** replies held, waiting for an earlier one */
  held = 0;
  /** their bytes */
  heldBytes = 0;

  constructor(private readonly release: (value: Buffer) => void) {}

  /** the reply to request `seq` (each number once); releases it and the ones it unblocks */
  put(seq: number, value: Buffer): void {
    if (seq !== this.next) {
      if (seq < this.next) return;
      if (seq - this.next > this.mask) this.grow(seq - this.next + 1);
      if (this.ring[seq & this.mask] !== undefined) return;
      this.ring[seq & this.mask] = value;
      this.held++;
      this.heldBytes += value.length;
      return;
    }
    this.next++;
    this.release(value);
    while (this.held > 0) {
      const i = this.next & this.mask;
      const v = this.ring[i];
      if (v === undefined) break;
      this.ring[i] = undefined;
      this.held--;
      this.heldBytes -= v.length;
      this.next++;
      this.release(v);
    }
  }

  private grow(span: number): void {
    let size = this.ring.length;
    while (size < span) size *= 2;
    const ring = new Array<Buffer | undefined>(size);
    for (let s = this.next; s < this.next + this.ring.length; s++) ring[s & (size - 1)] = this.ring[s & this.mask];
    this.ring = ring;
    this.mask = size - 1;
  }
}
