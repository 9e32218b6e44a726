/**
 * Worker processes (node:cluster) and process signals, as the rest of the program sees them.
 *
 * The primary forks workers that run the same program; a worker's listen sockets are shared
 * through the primary (node:cluster's round-robin: the primary accepts, a worker serves). The
 * two talk over the IPC channel with structured-clone serialization (so `Infinity`, a
 * histogram's last bucket bound, survives). Side effects live here; src/streams/workers.ts
 * composes them.
 */
import cluster from 'node:cluster';
import { Observable, Subject } from 'rxjs';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A forked worker, seen from the primary. */
export interface WorkerProcess {
  readonly pid: number;
  /** the worker's IPC messages; completes when the worker exits */
  readonly messages$: Observable<unknown>;
  /** resolves once the process has exited */
  readonly exited: Promise<ExitStatus>;
  /** sends over IPC; false (and the message dropped) when the channel is closed */
  send(message: unknown): boolean;
  /** signals the process by PID; does nothing once it has exited */
  kill(signal: NodeJS.Signals): void;
}

let primarySetUp = false;

/**
 * Forks a worker running this program (the same script, no arguments: a worker gets its
 * settings from the primary over IPC) with `env` added to the environment.
 */
export function forkWorker(env: Record<string, string>): WorkerProcess {
  if (!primarySetUp) {
    cluster.setupPrimary({ args: [], serialization: 'advanced' });
    primarySetUp = true;
  }
  const worker = cluster.fork(env);
  const child = worker.process;
  const messages = new Subject<unknown>();
  let done = false;
  worker.on('message', (message: unknown) => messages.next(message));
  // a send to a worker that just died reports EPIPE here: the exit handler deals with the death
  worker.on('error', () => undefined);
  const exited = new Promise<ExitStatus>((resolve) => {
    worker.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      done = true;
      messages.complete();
      resolve({ code, signal });
    });
  });
  return {
    pid: child.pid ?? -1,
    messages$: messages.asObservable(),
    exited,
    send(message: unknown): boolean {
      if (done || !worker.isConnected()) return false;
      worker.send(message as object, undefined, () => undefined);
      return true;
    },
    kill(signal: NodeJS.Signals): void {
      if (done) return;
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
  };
}

/** true in a process forked by `forkWorker` */
export function isWorkerProcess(): boolean {
  return cluster.isWorker;
}

/** In a worker: the primary's IPC messages (node:cluster's own messages are not among them). */
export const fromPrimary$: Observable<unknown> = new Observable<unknown>((subscriber) => {
  const onMessage = (message: unknown): void => subscriber.next(message);
  const onDisconnect = (): void => subscriber.complete();
  process.on('message', onMessage);
  process.on('disconnect', onDisconnect);
  return () => {
    process.off('message', onMessage);
    process.off('disconnect', onDisconnect);
  };
});

/** In a worker: sends to the primary; false (and the message dropped) once the channel is closed. */
export function toPrimary(message: unknown): boolean {
  if (process.send === undefined || !process.connected) return false;
  process.send(message as object, undefined, {}, () => undefined);
  return true;
}

/**
 * In a worker: closes the IPC channel on purpose, so the process can end once its work is done
 * (node:cluster ends a worker whose channel closes unexpectedly, when the primary dies).
 */
export function leavePrimary(): void {
  if (cluster.worker?.isConnected()) cluster.worker.disconnect();
}

/** Each delivery of one of `signals` to this process. Subscribing replaces the default action. */
export function fromSignals(signals: readonly NodeJS.Signals[]): Observable<NodeJS.Signals> {
  return new Observable<NodeJS.Signals>((subscriber) => {
    const handler = (signal: NodeJS.Signals): void => subscriber.next(signal);
    for (const s of signals) process.on(s, handler);
    return () => {
      for (const s of signals) process.off(s, handler);
    };
  });
}
