import type { Observable } from 'rxjs';
import type { Logger } from 'pino';
import { errorFrame, type Proto } from '../protocol/encode.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import type { ReplyTarget } from './backend.js';
import { BackendConnection } from './backend.js';
import type { PoolServer, PoolSettings } from './backend-pool.js';
import { immediateScheduler } from './scheduler.js';
import { turnFlush } from '../sinks/turn-flush.js';
import type { BackendStats } from '../util/request-stats.js';

/** the answer when a server's blocking connections are all in use */
export function tooManyBlocked(max: number, server: string): Buffer {
  return errorFrame(`ERR too many blocked clients on backend ${server} (max_blocking_connections = ${max})`);
}

/**
 * Sent just before WAIT on its connection: a write that is replicated (and touches no key), so
 * that the connection's replication offset is the master's now, past every write the client
 * made over the shared connections (all answered before WAIT is sent), and WAIT counts the
 * replicas that have them. A fresh connection that wrote nothing would count every replica.
 */
export const WAIT_MARK = encodeCommand(['PUBLISH', '__aster-proxy:wait', '']);
const CANCELLED = errorFrame('ERR blocking command cancelled: the client closed its connection');
const IGNORE: ReplyTarget = { deliver: () => undefined };

/** idle blocking connections kept per server and per RESP version for the next blocking command */
const KEEP_IDLE = 4;

/** Who is waiting on blocking commands: a client session. Its cancels run when it leaves. */
export type BlockingOwner = Set<() => void>;

/**
 * Connections for blocking commands (BLPOP, XREAD BLOCK, WAIT...), one command at a time each:
 * a blocked command would hold up every request behind it on a shared connection.
 *
 * A command takes an idle connection of its server, or opens one while fewer than `maxPerServer`
 * are in use; it has no read timeout (its own timeout governs; 0 waits for ever). When its
 * reply comes the connection goes back to the idle list. When its client leaves first, the
 * connection is closed, never reused: Redis then unblocks it, and an element pushed later stays
 * in the list instead of being popped for nobody.
 */
export class BlockingPool {
  private readonly idle = new Map<string, BackendConnection[]>();
  private readonly busy = new Map<string, number>();
  /** connections with a command in flight (closed at shutdown: their clients get an error) */
  private readonly working = new Set<BackendConnection>();

  constructor(
    private settings: PoolSettings,
    private readonly ticks$: Observable<unknown>,
    private readonly logger: Logger,
    private maxPerServer: number,
  ) {}

  /** servers' blocking connections in use now, by address */
  inUse(addr: string): number {
    return this.busy.get(addr) ?? 0;
  }

  /**
   * Sends one blocking command to `server`; its reply goes to `target.deliver(seq, ...)`. False
   * (nothing sent) when `maxPerServer` connections of that server are in use already.
   */
  send(server: PoolServer, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner, stats: BackendStats | null, before?: Buffer): boolean {
    const key = `${server.addr}|${proto}`;
    const used = this.busy.get(server.addr) ?? 0;
    if (used >= this.maxPerServer) return false;
    const conn = this.idle.get(key)?.pop() ?? this.open(server, proto);
    conn.stats = stats;
    this.busy.set(server.addr, used + 1);
    this.working.add(conn);
    let done = false;
    const finish = (): void => {
      done = true;
      owner.delete(cancel);
      this.working.delete(conn);
      this.busy.set(server.addr, (this.busy.get(server.addr) ?? 1) - 1);
    };
    const cancel = (): void => {
      if (done) return;
      finish();
      conn.close();
      target.deliver(seq, CANCELLED);
    };
    owner.add(cancel);
    // a command that must go just before on the same connection (ASKING; a write before WAIT), its answer dropped
    if (before !== undefined) conn.send(before, IGNORE, -1);
    conn.send(
      raw,
      {
        deliver: (s, frame) => {
          if (done) return;
          finish();
          this.putBack(key, conn);
          target.deliver(s, frame);
        },
      },
      seq,
    );
    return true;
  }

  /** new settings (a reload): idle connections made with the old ones close; the bound follows */
  configure(settings: PoolSettings, maxPerServer: number): void {
    this.settings = settings;
    this.maxPerServer = maxPerServer;
    this.closeIdle();
  }

  close(): void {
    this.closeIdle();
    for (const c of [...this.working]) c.close();
  }

  private putBack(key: string, conn: BackendConnection): void {
    const list = this.idle.get(key) ?? [];
    if (conn.state !== 'up' || list.length >= KEEP_IDLE) {
      conn.close();
      return;
    }
    list.push(conn);
    this.idle.set(key, list);
  }

  private closeIdle(): void {
    for (const list of this.idle.values()) for (const c of list) c.close();
    this.idle.clear();
  }

  private open(server: PoolServer, proto: Proto): BackendConnection {
    const st = this.settings;
    return new BackendConnection({
      host: server.host,
      port: server.port,
      label: server.alias ?? server.addr,
      readTimeoutMs: 0,
      connectTimeoutMs: st.connectTimeoutMs,
      writeTimeoutMs: st.writeTimeoutMs ?? 0,
      keepAliveSec: st.keepAliveSec,
      proto,
      password: st.password,
      username: st.username,
      readOnly: st.readOnly,
      oneShot: true,
      tls: st.tls,
      limits: st.limits,
      ticks$: this.ticks$,
      scheduler: immediateScheduler,
      flush: turnFlush,
      logger: this.logger,
    });
  }
}
