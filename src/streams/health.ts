import { Subject, type Observable, type SchedulerLike, type Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig, ServerSpec } from '../config/types.js';
import { healthCheck, type HealthEvent, type PingOutcome } from '../operators/health-check.js';
import type { ShardMap } from '../routing/shard-map.js';
import { Pinger } from '../sources/pinger.js';
import { immediateScheduler } from '../sources/scheduler.js';

/** Probes one server; `close` releases what it holds (its connection). */
export interface Prober {
  ping(): Observable<PingOutcome>;
  close(): void;
}

export interface HealthDeps {
  /** the cluster's key placement now (a reload replaces it): ejections and returns are applied to it */
  shards: () => ShardMap;
  logger: Logger;
  /** a server came back into service (its data connections may reconnect at once) */
  onRestore?: (server: ServerSpec) => void;
  /** default: a Pinger (PING over a connection of its own) */
  prober?: (server: ServerSpec, cfg: ClusterConfig) => Prober;
  /** default: timers on the event loop */
  scheduler?: SchedulerLike;
}

export interface BackendHealth {
  /** the alias, else host:port */
  backend: string;
  live: boolean;
  /** times health checks took it out of service, and brought it back */
  ejections: number;
  returns: number;
}

export interface ClusterHealth {
  /** a `-LOADING`, `-BUSY` or `-OOM` reply from the server at `addr`: counts as a failed check */
  report(addr: string, kind: string): void;
  /** follows a new config of the cluster (after its ShardMap was replaced) */
  follow(cfg: ClusterConfig): void;
  status(): BackendHealth[];
  close(): void;
}

interface Watch {
  server: ServerSpec;
  /** what the running check was started with; a change restarts it */
  settings: string;
  failures$: Subject<string>;
  prober: Prober;
  subscription: Subscription;
}

const label = (s: ServerSpec): string => s.alias ?? s.addr;

const checkSettings = (s: ServerSpec, c: ClusterConfig): string =>
  JSON.stringify([s.host, s.port, label(s), c.pingFailLimit, c.pingSuccInterval, c.pingInterval, c.readTimeout, c.tcpKeepalive, c.backendPassword ?? null, c.backendUsername ?? null]);

const pinger = (s: ServerSpec, c: ClusterConfig): Prober =>
  new Pinger({ host: s.host, port: s.port, password: c.backendPassword, ...(c.backendUsername !== undefined ? { username: c.backendUsername } : {}), keepAliveSec: c.tcpKeepalive, ...(c.backendTls !== undefined ? { tls: c.backendTls } : {}) });

/**
 * Health checks of a standalone cluster: one `healthCheck` stream per server, fed by PINGs (a
 * probe times out after read_timeout) and by the server's `-LOADING`/`-BUSY`/`-OOM` replies,
 * whose ejections and returns are applied to the cluster's ShardMap, logged and counted.
 * `ping_fail_limit = 0` runs none. A reload keeps the checks of servers whose settings did not
 * change (and their state), starts checks for new servers and stops those of removed ones.
 */
export function startHealth(initial: ClusterConfig, deps: HealthDeps): ClusterHealth {
  const log = deps.logger;
  const scheduler = deps.scheduler ?? immediateScheduler;
  const makeProber = deps.prober ?? pinger;
  let cfg = initial;
  const watches = new Map<string, Watch>();
  const counts = new Map<string, { ejections: number; returns: number }>();
  const countsOf = (addr: string): { ejections: number; returns: number } => {
    let c = counts.get(addr);
    if (c === undefined) counts.set(addr, (c = { ejections: 0, returns: 0 }));
    return c;
  };

  const apply = (server: ServerSpec, event: HealthEvent): void => {
    const shards = deps.shards();
    const i = shards.indexOf(server.addr);
    if (event.type === 'eject') {
      if (!shards.eject(i)) return;
      countsOf(server.addr).ejections++;
      const where = shards.mode === 'remap' ? 'its keys go to the other servers' : 'its keys get an error';
      log.warn(
        { backend: label(server), addr: server.addr, reason: event.reason, failures: event.failures, eject_mode: shards.mode },
        `backend ejected by health checks after ${event.failures} failures in a row; ${where} until it answers PING`,
      );
    } else {
      if (!shards.restore(i)) return;
      countsOf(server.addr).returns++;
      log.info({ backend: label(server), addr: server.addr, reason: 'PING answered', failures: event.failures }, 'backend back in service: it answered PING');
      deps.onRestore?.(server);
    }
  };

  const start = (server: ServerSpec): Watch => {
    const shards = deps.shards();
    const failures$ = new Subject<string>();
    const prober = makeProber(server, cfg);
    const subscription = failures$
      .pipe(
        healthCheck(
          {
            failLimit: cfg.pingFailLimit,
            healthyIntervalMs: cfg.pingSuccInterval,
            ejectedIntervalMs: cfg.pingInterval,
            timeoutMs: cfg.readTimeout,
            startEjected: !shards.isLive(shards.indexOf(server.addr)),
            scheduler,
          },
          () => prober.ping(),
        ),
      )
      .subscribe({
        next: (event) => apply(server, event),
        error: (err: unknown) => log.error({ err, backend: label(server) }, 'health checks of this backend stopped'),
      });
    return { server, settings: checkSettings(server, cfg), failures$, prober, subscription };
  };

  const stop = (w: Watch): void => {
    w.subscription.unsubscribe();
    w.prober.close();
    watches.delete(w.server.addr);
  };

  const follow = (next: ClusterConfig): void => {
    cfg = next;
    const wanted = new Map(next.servers.map((s) => [s.addr, s]));
    for (const addr of counts.keys()) if (!wanted.has(addr)) counts.delete(addr);
    for (const w of [...watches.values()]) {
      const s = wanted.get(w.server.addr);
      if (next.pingFailLimit <= 0 || s === undefined || checkSettings(s, next) !== w.settings) stop(w);
    }
    if (next.pingFailLimit <= 0) {
      // nothing would ever bring an ejected server back: checks off means every server serves
      const shards = deps.shards();
      next.servers.forEach((s, i) => {
        if (shards.restore(i)) log.info({ backend: label(s), addr: s.addr, reason: 'ping_fail_limit = 0' }, 'health checks are off: backend back in service');
      });
      return;
    }
    for (const s of next.servers) if (!watches.has(s.addr)) watches.set(s.addr, start(s));
  };

  follow(initial);
  return {
    report(addr, kind) {
      watches.get(addr)?.failures$.next(`-${kind} reply`);
    },
    follow,
    status: () => {
      const shards = deps.shards();
      return cfg.servers.map((s, i) => ({ backend: label(s), live: shards.isLive(i), ...(counts.get(s.addr) ?? { ejections: 0, returns: 0 }) }));
    },
    close() {
      for (const w of [...watches.values()]) stop(w);
    },
  };
}
