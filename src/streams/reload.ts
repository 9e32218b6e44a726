/**
 * Hot reload, composed as a stream:
 *
 *   watchConfigFile (--reload) ─┐
 *                               ├─► debounceReloads ─► load ─► validate ─► diff ─► apply ─► outcome ─► counters, log
 *   fromSignal(SIGHUP) ─────────┘
 *
 * A new config is read and validated as a whole; only a valid one is applied, and its
 * differences only: clusters added (a new listener), removed (the listener closes, the clients
 * are answered and closed), reconfigured in place (servers, weights, timeouts, passwords,
 * limits: no client connection is dropped). An invalid one changes nothing: the running config
 * keeps serving and the error, naming the file, the cluster and the key, is logged and counted.
 */
import { catchError, defer, EMPTY, merge, of, type Observable, type SchedulerLike } from 'rxjs';
import type { Logger } from 'pino';
import type { LoadResult } from '../config/load.js';
import { diffConfig, isEmptyDiff, type ConfigDiff } from '../config/diff.js';
import type { ClusterConfig, Config } from '../config/types.js';
import { debounceReloads } from '../operators/debounce-reloads.js';
import { loadConfig } from '../sources/config-file.js';
import { fromSignal, watchConfigFile, type ReloadTrigger } from '../sources/config-watch.js';
import type { RunningCluster } from './running-cluster.js';

/** how long file events must stay quiet before a reload (an editor's save is a burst of them) */
export const RELOAD_QUIET_MS = 200;
/** a removed cluster's clients get this long beyond its read_timeout to receive their replies */
const RETIRE_SLACK_MS = 1000;

/** What the reload stream needs from the proxy: its clusters, and starting and stopping them. */
export interface ClusterHost {
  /** the clusters running now */
  clusters(): readonly RunningCluster[];
  /** the config the proxy means to run from now on (readiness compares the running clusters with it) */
  want(config: Config): void;
  /** starts a cluster (binds its listener) and adds it to the running ones */
  start(cluster: ClusterConfig): Promise<void>;
  /**
   * Takes a cluster out of the running ones at once (its listener closes), then answers its
   * clients' requests already read, closes them (within `deadlineMs`), and closes its backends.
   */
  retire(name: string, deadlineMs: number): Promise<void>;
}

export type ReloadOutcome =
  | { result: 'ok'; trigger: ReloadTrigger; diff: ConfigDiff }
  | { result: 'failed'; trigger: ReloadTrigger; error: string };

export interface ReloadDeps {
  file: string;
  host: ClusterHost;
  logger: Logger;
  /** reads and validates the file (default: loadConfig) */
  load?: (file: string) => LoadResult;
  /** the part of the file this process serves (a worker serves only its clusters); default all */
  select?: (config: Config) => Config;
  quietMs?: number;
  scheduler?: SchedulerLike;
}

/** The reloads asked for by `triggers$`, one at a time, each ending in an outcome (never an error). */
export function reloads(triggers$: Observable<ReloadTrigger>, deps: ReloadDeps): Observable<ReloadOutcome> {
  return triggers$.pipe(
    debounceReloads({
      quietMs: deps.quietMs ?? RELOAD_QUIET_MS,
      ...(deps.scheduler ? { scheduler: deps.scheduler } : {}),
      reload: (trigger) => reloadOnce(trigger, deps),
    }),
  );
}

function reloadOnce(trigger: ReloadTrigger, deps: ReloadDeps): Observable<ReloadOutcome> {
  const { file, host, logger } = deps;
  const load = deps.load ?? loadConfig;
  return defer(async (): Promise<ReloadOutcome> => {
    logger.info({ file, trigger: describeTrigger(trigger) }, 'reloading the config');
    const { config: loaded, warnings } = load(file);
    const next = deps.select ? deps.select(loaded) : loaded;
    for (const w of warnings) logger.warn(w);
    const current: Config = { file, clusters: host.clusters().map((c) => c.config()) };
    const diff = diffConfig(current, next);
    host.want(next);
    await apply(diff, deps);
    return { result: 'ok', trigger, diff };
  }).pipe(
    // per reload, so that one failure does not end the stream
    catchError((err: unknown) => of<ReloadOutcome>({ result: 'failed', trigger, error: err instanceof Error ? err.message : String(err) })),
  );
}

/** Applies a diff to the running proxy; throws (after applying the rest) if a cluster could not be started or changed. */
async function apply(diff: ConfigDiff, { file, host, logger }: ReloadDeps): Promise<void> {
  const failures: string[] = [];
  const why = (err: unknown): string => (err instanceof Error ? err.message : String(err));
  for (const change of diff.reconfigured) {
    // (the workers are forked at start: their number is not something a reload can change)
    if (change.keys.includes('thread')) {
      logger.warn({ cluster: change.next.name, thread: change.old.thread, wanted: change.next.thread }, 'thread changed: the number of workers changes only when the proxy is restarted');
    }
    try {
      host.clusters().find((c) => c.name === change.next.name)?.reconfigure(change.next);
    } catch (err) {
      failures.push(`${file}: cluster "${change.next.name}": could not apply ${change.keys.join(', ')}: ${why(err)}`);
    }
  }
  // removals first: a listener closes at once, so a cluster replacing it can bind its address
  const retiring = diff.removed.map((c) =>
    host.retire(c.name, c.readTimeout + RETIRE_SLACK_MS).catch((err: unknown) => logger.error({ err, cluster: c.name }, 'error while closing a removed cluster')),
  );
  for (const c of diff.added) {
    try {
      await host.start(c);
    } catch (err) {
      failures.push(`${file}: cluster "${c.name}": could not start: ${why(err)}`);
    }
  }
  await Promise.all(retiring);
  if (failures.length > 0) throw new Error(failures.join('\n'));
}

function describeTrigger(t: ReloadTrigger): string {
  return t.kind === 'signal' ? t.signal : `file ${t.event} ${t.path}`;
}

/** Reload counters, read at scrape time. */
export interface ReloadStatus {
  ok: number;
  failed: number;
  /** the message of the last failed reload */
  lastError?: string;
  /** the file watcher is in place (with --reload) */
  watching: boolean;
}

export interface ReloadHandle {
  status(): ReloadStatus;
  /** stops watching and listening for SIGHUP */
  stop(): void;
}

export interface ReloadOptions {
  file: string;
  /** watch the file (--reload); SIGHUP reloads either way */
  watch: boolean;
  host: ClusterHost;
  logger: Logger;
  /** see ReloadDeps.select */
  select?: (config: Config) => Config;
  quietMs?: number;
}

/** Starts reloading `file` on SIGHUP, and on every change of it with `watch`. */
export function startReloading(opts: ReloadOptions): ReloadHandle {
  const { file, logger } = opts;
  const status: ReloadStatus = { ok: 0, failed: 0, watching: false };
  const watched$: Observable<ReloadTrigger> = opts.watch
    ? watchConfigFile(file, {
        onReady: () => {
          status.watching = true;
          logger.info({ file }, 'watching the config file: changes are applied live');
        },
      }).pipe(
        catchError((err: unknown) => {
          status.watching = false;
          logger.error({ err, file }, 'cannot watch the config file any more; SIGHUP still reloads it');
          return EMPTY;
        }),
      )
    : EMPTY;
  const triggers$ = merge(watched$, fromSignal('SIGHUP'));
  const subscription = reloads(triggers$, {
    file,
    host: opts.host,
    logger,
    ...(opts.select ? { select: opts.select } : {}),
    ...(opts.quietMs !== undefined ? { quietMs: opts.quietMs } : {}),
  }).subscribe({
    next: (outcome) => {
      if (outcome.result === 'ok') {
        status.ok++;
        logger.info({ file, result: 'ok', ...summary(outcome.diff) }, isEmptyDiff(outcome.diff) ? 'config reloaded: nothing changed' : 'config reloaded');
      } else {
        status.failed++;
        status.lastError = outcome.error;
        logger.error({ file, result: 'failed', error: outcome.error }, 'config reload failed; the previous config keeps serving');
      }
    },
    error: (err: unknown) => logger.error({ err, file }, 'the reload stream failed: config changes are no longer applied'),
  });
  return { status: () => ({ ...status }), stop: () => subscription.unsubscribe() };
}

/** A diff for the log: names and keys, never values (passwords). */
function summary(d: ConfigDiff) {
  return {
    added: d.added.map((c) => c.name),
    removed: d.removed.map((c) => c.name),
    reconfigured: d.reconfigured.map((c) => ({ cluster: c.next.name, keys: c.keys })),
    unchanged: d.unchanged.map((c) => c.name),
  };
}
