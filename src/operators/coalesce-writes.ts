import { Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/**
 * Gathers every buffer emitted before the scheduler's next turn and emits them joined, so a
 * socket gets one write per event-loop turn instead of one per reply or request (at `-P 1`
 * the cost of a proxy is its syscalls). Pass a macrotask scheduler (`setImmediate`): RxJS's
 * `asapScheduler` is a microtask and would flush before other sockets' data is read.
 *
 *   buffers: --a--(bc)-d--|
 *   writes:  --a--x----d--|     x = b + c joined
 */
export function coalesceWrites(scheduler: SchedulerLike): OperatorFunction<Buffer, Buffer> {
  return (source) =>
    new Observable<Buffer>((subscriber) => {
      let pending: Buffer[] = [];
      let size = 0;
      let flushTask: Subscription | null = null;
      const flush = (): void => {
        flushTask = null;
        if (pending.length === 0) return;
        const out = pending.length === 1 ? pending[0] : Buffer.concat(pending, size);
        pending = [];
        size = 0;
        subscriber.next(out);
      };
      const sub = source.subscribe({
        next(buf) {
          pending.push(buf);
          size += buf.length;
          if (flushTask === null) flushTask = scheduler.schedule(flush);
        },
        error(err: unknown) {
          flushTask?.unsubscribe();
          flush();
          subscriber.error(err);
        },
        complete() {
          flushTask?.unsubscribe();
          flush();
          subscriber.complete();
        },
      });
      return () => {
        sub.unsubscribe();
        flushTask?.unsubscribe();
        pending = [];
      };
    });
}
