import { interval, share, Subscription, type Observable } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig } from '../config/types.js';
import { Ketama } from '../routing/ketama.js';
import { BackendConnection } from '../sources/backend.js';
import { immediateScheduler } from '../sources/scheduler.js';
import { listenTcp, type Listener } from '../sources/socket.js';
import type { Proto } from '../protocol/encode.js';
import type { ReplyTarget } from '../sources/backend.js';
import type { ProxyFacts } from '../commands/local.js';
import { runSession, type SessionStats, type Upstream } from './session.js';

export interface RunningCluster {
  name: string;
  listener: Listener;
  stats: SessionStats;
  /** state of each backend's shared RESP2 connection */
  backends(): Array<{ label: string; state: string }>;
  close(): Promise<void>;
}

/**
 * A standalone (twemproxy-mode) cluster: one listener, keys sharded over the servers with
 * ketama, one shared pipelined connection per backend (and per RESP version in use).
 */
export async function startStandalone(cfg: ClusterConfig, version: string, logger: Logger): Promise<RunningCluster> {
  const log = logger.child({ cluster: cfg.name });
  const ring = new Ketama(cfg.servers.map((s) => ({ name: s.name, weight: s.weight })));
  const hashTag = cfg.hashTag;
  const tickMs = Math.max(5, Math.min(100, Math.floor(cfg.readTimeout / 10)));
  const ticks$: Observable<number> = interval(tickMs, immediateScheduler).pipe(share());
  const conns: Array<[BackendConnection | null, BackendConnection | null]> = cfg.servers.map(() => [null, null]);

  const connect = (i: number, proto: Proto): BackendConnection => {
    const s = cfg.servers[i];
    const conn = new BackendConnection({
      host: s.host,
      port: s.port,
      label: s.alias ?? s.addr,
      readTimeoutMs: cfg.readTimeout,
      connectTimeoutMs: cfg.writeTimeout,
      keepAliveSec: cfg.tcpKeepalive,
      proto,
      password: cfg.backendPassword,
      limits: { maxBulkBytes: cfg.limits.maxBulkBytes, maxDepth: cfg.limits.maxReplyDepth },
      ticks$,
      scheduler: immediateScheduler,
      flushScheduler: immediateScheduler,
      logger: log,
    });
    conns[i][proto - 2] = conn;
    return conn;
  };
  // RESP2 connections open at start; RESP3 ones when the first RESP3 client needs them
  for (let i = 0; i < cfg.servers.length; i++) connect(i, 2);

  const stats: SessionStats = { connectedClients: 0, totalConnections: 0, totalCommands: 0, protocolErrors: 0, internalErrors: 0 };
  const listener = await listenTcp(cfg.listenHost, cfg.listenPort);
  const facts: ProxyFacts = {
    version,
    mode: 'standalone',
    clusterName: cfg.name,
    port: listener.port,
    startedAt: Date.now(),
    password: cfg.password,
    infoSections: () => [
      ['Clients', [['connected_clients', stats.connectedClients]]],
      [
        'Stats',
        [
          ['total_connections_received', stats.totalConnections],
          ['total_commands_processed', stats.totalCommands],
          ['protocol_errors', stats.protocolErrors],
        ],
      ],
      [
        'Proxy',
        [
          ['cluster', cfg.name],
          ['cache_type', cfg.cacheType],
          ['hash_tag', hashTag ?? ''],
          ['backends', cfg.servers.length],
          ...cfg.servers.map((s, i): [string, string] => [
            `backend${i}`,
            `name=${s.name},addr=${s.addr},weight=${s.weight},state=${conns[i][0]?.state ?? 'idle'},inflight=${conns[i][0]?.inFlight ?? 0}`,
          ]),
        ],
      ],
    ],
  };
  const up: Upstream = {
    facts,
    limits: cfg.limits,
    logger: log,
    stats,
    backendFor: (key: Buffer) => ring.serverFor(key, hashTag),
    send(backend: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number) {
      (conns[backend][proto - 2] ?? connect(backend, proto)).send(raw, target, seq);
    },
  };

  let nextId = 1;
  const sessions = new Set<Subscription>();
  const accepting = listener.connections$.subscribe((socket) => {
    try {
      if (cfg.tcpKeepalive > 0) socket.setKeepAlive(true, cfg.tcpKeepalive * 1000);
      socket.setNoDelay(true);
      const session = runSession(socket, up, nextId++);
      sessions.add(session);
      session.add(() => sessions.delete(session));
    } catch (err) {
      // one connection that could not be set up is dropped; the listener goes on
      log.error({ err }, 'could not start a client session');
      socket.destroy();
    }
  });

  return {
    name: cfg.name,
    listener,
    stats,
    backends: () => cfg.servers.map((s, i) => ({ label: s.alias ?? s.addr, state: conns[i][0]?.state ?? 'idle' })),
    async close() {
      accepting.unsubscribe();
      await listener.close().catch(() => undefined);
      for (const s of [...sessions]) s.unsubscribe();
      for (const pair of conns) for (const c of pair) c?.close();
    },
  };
}
