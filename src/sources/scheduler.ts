import { Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs';
import { performance } from 'node:perf_hooks';

/**
 * A macrotask scheduler: work scheduled with no delay runs in `setImmediate`, after the
 * event loop has read every socket that was readable in this turn. Coalesced writes flush
 * here, so one write carries everything gathered during the turn. `now()` is monotonic
 * milliseconds (performance.now), also used to stamp request deadlines.
 */
class ImmediateAction<T> extends Subscription implements SchedulerAction<T> {
  private handle: ReturnType<typeof setImmediate> | ReturnType<typeof setTimeout> | null = null;
  private delayed = false;

  constructor(private readonly work: (this: SchedulerAction<T>, state?: T) => void) {
    super(() => this.clear());
  }

  schedule(state?: T, delay = 0): Subscription {
    if (this.closed) return this;
    this.clear();
    this.delayed = delay > 0;
    this.handle = this.delayed ? setTimeout(() => this.run(state), delay) : setImmediate(() => this.run(state));
    return this;
  }

  private run(state?: T): void {
    this.handle = null;
    if (!this.closed) this.work.call(this, state);
  }

  private clear(): void {
    if (this.handle === null) return;
    if (this.delayed) clearTimeout(this.handle as ReturnType<typeof setTimeout>);
    else clearImmediate(this.handle as ReturnType<typeof setImmediate>);
    this.handle = null;
  }
}

export const immediateScheduler: SchedulerLike = {
  now: () => performance.now(),
  schedule<T>(work: (this: SchedulerAction<T>, state?: T) => void, delay = 0, state?: T): Subscription {
    return new ImmediateAction<T>(work).schedule(state, delay);
  },
};
