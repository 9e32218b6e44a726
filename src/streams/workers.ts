/**
 * Workers: with `thread > 1` the proxy runs as one primary process and several worker
 * processes (node:cluster), each with its own event loop, sharing the listen ports.
 *
 *   primary ── fork ──► worker 0 … worker N-1          (N = the largest `thread` of the config)
 *      │  ◄── hello ────  (asks for its settings)
 *      │  ─── start ───►  serveProxy(the clusters with thread > its index)
 *      │  ◄── ready ────  (listening)
 *      │  ─── scrape ──►  registry snapshot ──► summed with the others on /metrics
 *      │  ─── SIGTERM/SIGINT/SIGHUP (forwarded) ──►
 *
 * Which worker serves which cluster: worker i serves cluster c when i < c.thread, so worker 0
 * serves every cluster and a cluster with `thread = k` is served by workers 0 … k-1, which share
 * its listener (node:cluster's round-robin: the primary accepts, hands each connection to the next
 * worker). Each worker has its own backend connections. When every cluster has `thread = 1`
 * nothing of this runs: the proxy is one process (see `workerCount`).
 *
 * A worker that exits is replaced after a backoff (100 ms, doubling while replacements keep
 * dying within 10 s of their start, at most 10 s). A worker that fails before it ever became
 * ready during the first start fails the whole start (exit status 1), like a single process
 * that cannot listen.
 *
 * The primary serves `/metrics` (each worker's registry, summed: see sinks/metrics.ts),
 * `/healthz` and `/ready` (every cluster has a ready worker) on the metrics port; workers do
 * not bind it.
 *
 * Signals to the primary: the first SIGTERM/SIGINT is passed on to every worker (each drains
 * its clients, see serveProxy) and the primary exits once they have, 0 if every worker stopped
 * cleanly; a second one kills the workers and exits at once. SIGHUP is passed on to every ready worker
 * (each reloads the config file); the primary re-reads the file too, so that a worker started
 * later gets the reloaded config. A worker acts on a stop signal once, whether it came from the
 * primary or straight to it (Ctrl-C and systemd signal the whole process group).
 */
import { constants as osConstants } from 'node:os';
import { filter, firstValueFrom, from, map, mergeMap, of, catchError, timeout, timer, Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { ServeDeps, ServeRequest } from '../cli.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/types.js';
import { createLogger } from '../sinks/log.js';
import {
  buildPrimaryRegistry,
  buildRegistry,
  RetiredCounters,
  serveEndpoints,
  snapshotOf,
  sumRegistries,
  type MetricSnapshot,
  type MetricsServer,
  type MetricsView,
} from '../sinks/metrics.js';
import { loadConfig } from '../sources/config-file.js';
import { forkWorker, fromPrimary$, fromSignals, leavePrimary, toPrimary, type ExitStatus, type WorkerProcess } from '../sources/worker-process.js';
import { startProxy } from './proxy.js';

/** The environment variable that tells a worker its index (also sent in the start message). */
export const WORKER_INDEX_ENV = 'ASTER_WORKER_INDEX';

/** first replacement delay; doubles while replacements keep dying young */
const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 10_000;
/** a worker that ran this long before exiting resets the backoff */
const STABLE_MS = 10_000;
/** a worker that does not answer a scrape within this is shown with its previous figures */
const SCRAPE_TIMEOUT_MS = 3_000;
/** how long a worker waits for its start message */
const START_MESSAGE_TIMEOUT_MS = 30_000;
/** on stop, the primary waits the workers' drain deadline plus this, then kills them */
const STOP_MARGIN_MS = 5_000;
// the exit statuses of cli.ts
const EXIT_OK = 0;
const EXIT_FAILED = 1;

/** How many worker processes a config runs: the largest `thread`. 1 means no workers at all. */
export function workerCount(config: Config): number {
  return config.clusters.reduce((n, c) => Math.max(n, c.thread), 1);
}

/** The part of `config` that worker `index` serves: the clusters with `thread > index`. */
export function clustersForWorker(config: Config, index: number): Config {
  return { ...config, clusters: config.clusters.filter((c) => index < c.thread) };
}

/** The delay before replacing a worker, after `quickExits` replacements in a row died young. */
export function restartDelay(quickExits: number): number {
  return Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.min(quickExits, 20));
}

// ---------------------------------------------------------------------------------------------
// Messages between the primary and a worker

type ToWorker = { aster: 'start'; index: number; req: ServeRequest } | { aster: 'scrape'; id: number };
type ToPrimary =
  | { aster: 'hello' }
  | { aster: 'ready'; listeners: Array<{ cluster: string; host: string; port: number }> }
  | { aster: 'metrics'; id: number; metrics?: MetricSnapshot[]; error?: string };

type MetricsReply = Extract<ToPrimary, { aster: 'metrics' }>;

function isMessage<T extends { aster: string }>(m: unknown, kind: T['aster']): m is T {
  return typeof m === 'object' && m !== null && (m as { aster?: unknown }).aster === kind;
}

// ---------------------------------------------------------------------------------------------
// Primary

export interface PrimaryDeps {
  logger: Logger;
  /** how long each worker's graceful stop may take (the primary then waits a little more, and kills) */
  drainDeadlineMs: number;
  /** ends the process at once (a second stop signal) */
  exitNow: (code: number) => void;
  /** the environment the config file is re-read with (ASTER_DEFAULT_THREAD) */
  env: NodeJS.ProcessEnv;
}

interface Slot {
  index: number;
  worker?: WorkerProcess;
  /** listening (its start message answered) */
  ready: boolean;
  startedAt: number;
  /** replacements in a row that exited within STABLE_MS */
  quickExits: number;
  /** its registry at the last scrape it answered */
  last?: MetricSnapshot[];
  /** the pending replacement */
  restart?: Subscription;
}

type StartOutcome = 'ready' | 'failed' | 'stopping';

/**
 * Runs the proxy as a primary and `workerCount(req.config)` workers until the first stop
 * signal; resolves to the exit status (0 when every worker stopped cleanly, 1 otherwise or when
 * the start failed).
 */
export async function runPrimary(req: ServeRequest, deps: PrimaryDeps): Promise<number> {
  const { logger } = deps;
  const count = workerCount(req.config);
  for (const w of req.warnings) logger.warn(w);
  logger.info(
    {
      version: req.version,
      config: req.config.file,
      clusters: req.config.clusters.map((c) => c.name),
      workers: count,
      ip: req.ip,
      metricsPort: req.metricsPort,
      reload: req.reload,
    },
    'starting',
  );

  let phase: 'starting' | 'running' | 'stopping' = 'starting';
  /** the config a worker started now gets (SIGHUP and --reload update it) */
  let config = req.config;
  let restarts = 0;
  let scrapeId = 0;
  let unclean = false;
  let stopSignal: NodeJS.Signals | undefined;
  const retired = new RetiredCounters();
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, ready: false, startedAt: 0, quickExits: 0 }));
  const subscriptions = new Subscription();
  const live = (): Slot[] => slots.filter((s) => s.worker !== undefined);

  let settleStart!: (outcome: StartOutcome) => void;
  const started = new Promise<StartOutcome>((resolve) => (settleStart = resolve));
  let settleStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (settleStopped = resolve));

  /** ready when every cluster has a ready worker among those that serve it */
  const ready = (): boolean => phase !== 'stopping' && req.config.clusters.every((c) => slots.some((s) => s.index < c.thread && s.ready));

  /** the config file as it is now, or undefined (and a warning) when it is invalid */
  const reread = (): Config | undefined => {
    try {
      const next = loadConfig(req.config.file, deps.env).config;
      if (workerCount(next) !== count) {
        logger.warn({ workers: count, wanted: workerCount(next) }, 'a change of "thread" takes effect when the proxy restarts');
      }
      return next;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      logger.warn({ problems: err.problems }, 'the config file is invalid: workers started from now on get the last valid config');
      return undefined;
    }
  };

  const askMetrics = (worker: WorkerProcess): Promise<MetricSnapshot[] | undefined> => {
    const id = ++scrapeId;
    const reply = firstValueFrom(
      worker.messages$.pipe(
        filter((m): m is MetricsReply => isMessage<MetricsReply>(m, 'metrics') && m.id === id),
        map((m) => {
          if (m.error !== undefined) logger.warn({ workerPid: worker.pid, error: m.error }, 'a worker could not collect its metrics');
          return m.metrics;
        }),
        timeout({ first: SCRAPE_TIMEOUT_MS, with: () => of(undefined) }),
      ),
      { defaultValue: undefined },
    );
    worker.send({ aster: 'scrape', id } satisfies ToWorker);
    return reply;
  };

  /** the primary's registry, the exited workers' counters and every live worker's registry, summed */
  const scrape = async (own: ReturnType<typeof buildPrimaryRegistry>): Promise<{ contentType: string; body: string }> => {
    const asked = slots.filter((s) => s.ready).map((slot) => ({ slot, worker: slot.worker!, reply: askMetrics(slot.worker!) }));
    const parts = [await snapshotOf(own)];
    const replies = await Promise.all(asked.map((a) => a.reply));
    parts.push(retired.snapshot());
    asked.forEach(({ slot, worker }, i) => {
      // a worker that exited meanwhile is already counted in `retired`
      if (slot.worker !== worker) return;
      const fresh = replies[i];
      if (fresh !== undefined) slot.last = fresh;
      else logger.warn({ worker: slot.index, workerPid: worker.pid }, 'a worker did not answer the scrape: its previous figures are shown');
      if (slot.last !== undefined) parts.push(slot.last);
    });
    return sumRegistries(parts);
  };

  const fork = (slot: Slot): void => {
    const worker = forkWorker({ [WORKER_INDEX_ENV]: String(slot.index) });
    slot.worker = worker;
    slot.ready = false;
    slot.startedAt = Date.now();
    slot.last = undefined;
    logger.debug({ worker: slot.index, workerPid: worker.pid }, 'worker started');
    subscriptions.add(
      worker.messages$.subscribe((message) => {
        if (slot.worker !== worker) return;
        if (isMessage<ToPrimary>(message, 'hello')) {
          worker.send({ aster: 'start', index: slot.index, req: { ...req, config: clustersForWorker(config, slot.index), warnings: [] } } satisfies ToWorker);
        } else if (isMessage<ToPrimary>(message, 'ready')) {
          slot.ready = true;
          logger.info({ worker: slot.index, workerPid: worker.pid }, 'worker ready');
          if (phase === 'starting' && slots.every((s) => s.ready)) settleStart('ready');
        }
      }),
    );
    void worker.exited.then((status) => onExit(slot, worker, status));
  };

  const onExit = (slot: Slot, worker: WorkerProcess, status: ExitStatus): void => {
    if (slot.worker !== worker) return;
    const wasReady = slot.ready;
    slot.worker = undefined;
    slot.ready = false;
    if (slot.last !== undefined) retired.add(slot.last);
    slot.last = undefined;
    const fields = { worker: slot.index, workerPid: worker.pid, code: status.code, signal: status.signal };
    if (phase === 'stopping') {
      // A worker catches stop signals for as long as it serves; one ended by the stop signal was
      // not serving any more: done and tearing down when the primary's copy of a Ctrl-C that
      // reached it first arrived, or not started yet.
      if (status.code === 0 || (status.signal !== null && status.signal === stopSignal)) {
        logger.info(fields, 'worker stopped');
      } else {
        unclean = true;
        logger.error(fields, 'worker did not stop cleanly');
      }
      if (live().length === 0) settleStopped();
      return;
    }
    if (phase === 'starting' && !wasReady) {
      logger.fatal(fields, 'a worker failed to start');
      settleStart('failed');
      return;
    }
    slot.quickExits = Date.now() - slot.startedAt < STABLE_MS ? slot.quickExits + 1 : 0;
    const delayMs = restartDelay(slot.quickExits);
    logger.warn({ ...fields, restartInMs: delayMs }, 'worker exited: replacing it');
    slot.restart = timer(delayMs).subscribe(() => {
      slot.restart = undefined;
      if (phase === 'stopping') return;
      // with --reload the workers follow the file: a new one starts from it as it is now
      if (req.reload) config = reread() ?? config;
      restarts++;
      fork(slot);
    });
  };

  const stopWorkers = (signal: NodeJS.Signals): void => {
    phase = 'stopping';
    stopSignal = signal;
    for (const slot of slots) {
      slot.restart?.unsubscribe();
      slot.restart = undefined;
      slot.worker?.kill(signal);
    }
    if (live().length === 0) {
      settleStopped();
      return;
    }
    subscriptions.add(
      timer(deps.drainDeadlineMs + STOP_MARGIN_MS).subscribe(() => {
        const left = live();
        logger.error({ workers: left.map((s) => s.index) }, 'workers still running after the shutdown deadline: killing them');
        for (const s of left) s.worker?.kill('SIGKILL');
      }),
    );
  };

  subscriptions.add(
    fromSignals(['SIGINT', 'SIGTERM', 'SIGHUP']).subscribe((signal) => {
      if (signal === 'SIGHUP') {
        if (phase === 'stopping') return;
        logger.info('SIGHUP: reloading the config in every worker');
        config = reread() ?? config;
        // not to a worker still starting: it has no SIGHUP handler yet and would die of it
        for (const s of slots) if (s.ready) s.worker?.kill('SIGHUP');
        return;
      }
      if (phase === 'stopping') {
        logger.warn({ signal }, 'second signal: exiting now');
        for (const s of live()) s.worker?.kill('SIGKILL');
        deps.exitNow(128 + (osConstants.signals[signal] ?? 0));
        return;
      }
      logger.info({ signal }, 'shutting down');
      const wasStarting = phase === 'starting';
      stopWorkers(signal);
      if (wasStarting) settleStart('stopping');
    }),
  );

  let metrics: MetricsServer | undefined;
  try {
    if (req.metricsPort > 0) {
      const own = buildPrimaryRegistry({ version: req.version, workers: () => live().length, restarts: () => restarts });
      try {
        metrics = await serveEndpoints('0.0.0.0', req.metricsPort, { metrics: () => scrape(own), ready });
      } catch (err) {
        logger.fatal({ err }, 'failed to start');
        return EXIT_FAILED;
      }
      logger.info({ port: metrics.port }, 'metrics on /metrics');
    }
    for (const slot of slots) fork(slot);
    const outcome = await started;
    if (outcome === 'failed') {
      stopWorkers('SIGTERM');
      await stopped;
      return EXIT_FAILED;
    }
    if (outcome === 'ready' && phase === 'starting') {
      phase = 'running';
      logger.info({ workers: count }, 'all workers ready');
    }
    await stopped;
    logger.info(unclean ? 'stopped (some workers did not stop cleanly)' : 'stopped');
    return unclean ? EXIT_FAILED : EXIT_OK;
  } finally {
    subscriptions.unsubscribe();
    for (const slot of slots) slot.restart?.unsubscribe();
    await metrics?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Worker

/**
 * Runs this process as a worker: asks the primary for its settings, then serves with `serve`
 * (cli.ts's serveProxy), answering the primary's scrapes instead of binding the metrics port.
 * Resolves to the exit status.
 */
export async function runWorker(serve: (req: ServeRequest, deps: ServeDeps) => Promise<number>): Promise<number> {
  // Stop signals are caught from the first moment to the last: one that comes before the proxy
  // listens stops it as soon as it does, and one that comes after this worker has stopped (the
  // primary's copy of a Ctrl-C the worker got first) must not end it by a signal. (A signal
  // listener does not keep the process alive.)
  let stopRequested: NodeJS.Signals | undefined;
  let onStop: ((signal: NodeJS.Signals) => void) | undefined;
  fromSignals(['SIGINT', 'SIGTERM']).subscribe((signal) => {
    if (stopRequested !== undefined) return; // the primary and the terminal (or systemd) may both send one
    stopRequested = signal;
    onStop?.(signal);
  });
  try {
    const start = firstValueFrom(fromPrimary$.pipe(filter((m) => isMessage<ToWorker>(m, 'start')), timeout(START_MESSAGE_TIMEOUT_MS)));
    toPrimary({ aster: 'hello' } satisfies ToPrimary);
    let index: number;
    let req: ServeRequest;
    try {
      ({ index, req } = (await start) as Extract<ToWorker, { aster: 'start' }>);
    } catch (err) {
      process.stderr.write(`aster-proxy worker ${process.pid}: no start message from the primary (${err instanceof Error ? err.message : String(err)})\n`);
      return EXIT_FAILED;
    }
    const logger = createLogger(req.logLevel).child({ worker: index });
    return await serve(req, {
      logger,
      startProxy: async (config, opts) => {
        const proxy = await startProxy(config, {
          ...opts,
          selectClusters: (c) => clustersForWorker(c, index),
          exposeMetrics: (view) => answerScrapes(view, index, req.metricsPort),
        });
        toPrimary({ aster: 'ready', listeners: proxy.listeners } satisfies ToPrimary);
        return proxy;
      },
      onStopSignal: (handler) => {
        onStop = handler;
        if (stopRequested !== undefined) handler(stopRequested);
        return () => {
          onStop = undefined;
        };
      },
      exitNow: (code) => process.exit(code),
    });
  } finally {
    leavePrimary();
  }
}

/** In a worker: the metrics registry, snapshot sent to the primary on each of its scrapes. */
function answerScrapes(view: MetricsView, index: number, port: number): Promise<MetricsServer> {
  const registry = buildRegistry({ ...view, worker: index });
  const answering = fromPrimary$
    .pipe(
      filter((m): m is Extract<ToWorker, { aster: 'scrape' }> => isMessage(m, 'scrape')),
      mergeMap(({ id }) =>
        from(snapshotOf(registry)).pipe(
          map((metrics): ToPrimary => ({ aster: 'metrics', id, metrics })),
          catchError((err: unknown) => of<ToPrimary>({ aster: 'metrics', id, error: err instanceof Error ? err.message : String(err) })),
        ),
      ),
    )
    .subscribe((reply) => toPrimary(reply));
  return Promise.resolve({
    port,
    close: () => {
      answering.unsubscribe();
      return Promise.resolve();
    },
  });
}
