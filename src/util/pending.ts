/**
 * The requests a backend connection has written and not yet had answered, oldest first: who
 * gets each reply (`target`, `seq`) and when it was sent. Three parallel rings instead of an
 * object per request; they double when a connection has more in flight than they hold.
 *
 *   push(t, 1, 10); push(t, 2, 11); oldestSentAt() -> 10; shift() -> slot of 1; shift() -> slot of 2
 */
export class PendingQueue<T> {
  private targets: Array<T | undefined>;
  private seqs: number[];
  private sentAts: number[];
  private mask: number;
  private head = 0;
  private count = 0;
  /** what the last `shift` took out */
  target: T | undefined = undefined;
  seq = 0;
  sentAt = 0;

  constructor(capacity = 16) {
    let cap = 16;
    while (cap < capacity) cap *= 2;
    this.targets = new Array<T | undefined>(cap).fill(undefined);
    this.seqs = new Array<number>(cap).fill(0);
    this.sentAts = new Array<number>(cap).fill(0);
    this.mask = cap - 1;
  }

  get length(): number {
    return this.count;
  }

  push(target: T, seq: number, sentAt: number): void {
    if (this.count > this.mask) this.grow();
    const i = (this.head + this.count) & this.mask;
    this.targets[i] = target;
    this.seqs[i] = seq;
    this.sentAts[i] = sentAt;
    this.count++;
  }

  /** takes the oldest out into `target`, `seq` and `sentAt`; false when there is none */
  shift(): boolean {
    if (this.count === 0) return false;
    const i = this.head;
    this.target = this.targets[i];
    this.seq = this.seqs[i];
    this.sentAt = this.sentAts[i];
    this.targets[i] = undefined;
    this.head = (i + 1) & this.mask;
    this.count--;
    return true;
  }

  /** when the oldest was sent; undefined when there is none */
  oldestSentAt(): number | undefined {
    return this.count === 0 ? undefined : this.sentAts[this.head];
  }

  private grow(): void {
    const cap = (this.mask + 1) * 2;
    const targets = new Array<T | undefined>(cap).fill(undefined);
    const seqs = new Array<number>(cap).fill(0);
    const sentAts = new Array<number>(cap).fill(0);
    for (let k = 0; k < this.count; k++) {
      const from = (this.head + k) & this.mask;
      targets[k] = this.targets[from];
      seqs[k] = this.seqs[from];
      sentAts[k] = this.sentAts[from];
    }
    this.targets = targets;
    this.seqs = seqs;
    this.sentAts = sentAts;
    this.head = 0;
    this.mask = cap - 1;
  }
}
