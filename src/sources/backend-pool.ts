import type { Observable } from 'rxjs';
import type { Logger } from 'pino';
import type { ServerSpec, TlsClientConfig } from '../config/types.js';
import type { Proto } from '../protocol/encode.js';
import type { ReplyLimits } from '../protocol/reply-decoder.js';
import { BackendConnection, type BackendErrorKind } from './backend.js';
import { immediateScheduler } from './scheduler.js';
import { turnFlush } from '../sinks/turn-flush.js';

/** What the pool needs of a server: where it is and how it is named */
export type PoolServer = Pick<ServerSpec, 'host' | 'port' | 'addr' | 'alias'>;

/** How the connections of one cluster are made; a change (reload) replaces them. */
export interface PoolSettings {
  readTimeoutMs: number;
  connectTimeoutMs: number;
  /** write_timeout (0: none) */
  writeTimeoutMs?: number;
  keepAliveSec: number;
  password?: string;
  /** the ACL user of `password` */
  username?: string;
  /** every connection sends READONLY first (reads from cluster replicas) */
  readOnly?: boolean;
  /** TLS to the backends */
  tls?: TlsClientConfig;
  limits: ReplyLimits;
}

const sameSettings = (a: PoolSettings, b: PoolSettings): boolean =>
  a.readTimeoutMs === b.readTimeoutMs &&
  a.connectTimeoutMs === b.connectTimeoutMs &&
  a.writeTimeoutMs === b.writeTimeoutMs &&
  a.keepAliveSec === b.keepAliveSec &&
  a.password === b.password &&
  a.username === b.username &&
  a.readOnly === b.readOnly &&
  JSON.stringify(a.tls) === JSON.stringify(b.tls) &&
  a.limits.maxBulkBytes === b.limits.maxBulkBytes &&
  a.limits.maxDepth === b.limits.maxDepth;

/**
 * The shared backend connections of one cluster in one worker: one per server address and
 * RESP version in use. RESP2 connections open at once; RESP3 ones when the first RESP3 client
 * needs them. `sync` follows a new server list or new settings: connections that are no longer
 * wanted finish their in-flight requests and close, so a reload drops no reply.
 */
export class BackendPool {
  private conns = new Map<string, { spec: PoolServer; byProto: [BackendConnection | null, BackendConnection | null] }>();

  constructor(
    private settings: PoolSettings,
    private readonly ticks$: Observable<unknown>,
    private readonly logger: Logger,
    /** each `-LOADING`, `-BUSY` or `-OOM` reply of a backend (health checks count them) */
    private readonly onBackendError?: (addr: string, kind: BackendErrorKind) => void,
  ) {}

  /** the connection to `server` for RESP `proto`, opened on first use */
  get(server: PoolServer, proto: Proto): BackendConnection {
    let entry = this.conns.get(server.addr);
    if (entry === undefined) {
      entry = { spec: server, byProto: [null, null] };
      this.conns.set(server.addr, entry);
    }
    return entry.byProto[proto - 2] ?? (entry.byProto[proto - 2] = this.open(server, proto));
  }

  /** state of the RESP2 connection to this address ('idle' before any) */
  state(addr: string): string {
    return this.conns.get(addr)?.byProto[0]?.state ?? 'idle';
  }

  inFlight(addr: string): number {
    return this.conns.get(addr)?.byProto[0]?.inFlight ?? 0;
  }

  /** Connections to `addr` waiting out a reconnect backoff try again now (the server answers again). */
  retryNow(addr: string): void {
    for (const c of this.conns.get(addr)?.byProto ?? []) c?.retryNow();
  }

  /** Opens connections to `servers`, drains the ones to addresses no longer listed or made with old settings. */
  sync(servers: readonly PoolServer[], settings: PoolSettings = this.settings): void {
    const changed = !sameSettings(settings, this.settings);
    this.settings = settings;
    const wanted = new Set(servers.map((s) => s.addr));
    for (const [addr, entry] of this.conns) {
      const relabelled = servers.some((s) => s.addr === addr && (s.alias ?? s.addr) !== (entry.spec.alias ?? entry.spec.addr));
      if (!wanted.has(addr) || changed || relabelled) {
        for (const c of entry.byProto) c?.drain();
        this.conns.delete(addr);
      }
    }
    for (const s of servers) this.get(s, 2);
  }

  /**
   * A connection of its own for one client (a transaction): made with the pool's settings, never
   * reconnected, not kept by the pool. Whoever asked for it closes it.
   */
  dedicated(server: PoolServer, proto: Proto): BackendConnection {
    return this.open(server, proto, true);
  }

  close(): void {
    for (const entry of this.conns.values()) for (const c of entry.byProto) c?.close();
    this.conns.clear();
  }

  private open(server: PoolServer, proto: Proto, oneShot = false): BackendConnection {
    const st = this.settings;
    return new BackendConnection({
      host: server.host,
      port: server.port,
      label: server.alias ?? server.addr,
      readTimeoutMs: st.readTimeoutMs,
      connectTimeoutMs: st.connectTimeoutMs,
      writeTimeoutMs: st.writeTimeoutMs ?? 0,
      keepAliveSec: st.keepAliveSec,
      proto,
      password: st.password,
      username: st.username,
      readOnly: st.readOnly,
      oneShot,
      tls: st.tls,
      limits: st.limits,
      ticks$: this.ticks$,
      scheduler: immediateScheduler,
      flush: turnFlush,
      logger: this.logger,
      onBackendError: this.onBackendError === undefined ? undefined : (kind) => this.onBackendError?.(server.addr, kind),
    });
  }
}
