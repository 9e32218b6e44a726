import { interval } from 'rxjs';
import type { Logger } from 'pino';
import { immediateScheduler } from '../sources/scheduler.js';
import type { ClusterConfig } from '../config/types.js';
import { errorFrame } from '../protocol/encode.js';
import type { Listener } from '../sources/socket.js';
import { FrontError } from '../util/request-stats.js';
import { runSession, type Session, type SessionStats, type Upstream } from './session.js';

/** The client side of one cluster: its listener's connections, each a session on `up`. */
export interface Front {
  /** connections refused at `maxclients` */
  readonly rejected: number;
  /** INFO's Clients and Stats sections */
  infoSections(): Array<[string, Array<[string, string | number]>]>;
  /** no new connections; every session answers what it read, then closes; resolves when all are closed or at the deadline */
  drain(deadlineMs: number): Promise<void>;
  /** closes the listener and every session at once */
  close(): Promise<void>;
}

/**
 * Accepts the listener's connections and runs a session for each, up to `maxclients` (read
 * from the current config, so a reload changes it for the next connection).
 */
export function serveClients(listener: Listener, up: Upstream, stats: SessionStats, cfg: () => ClusterConfig, log: Logger): Front {
  let rejected = 0;
  let nextId = 1;
  let onNoSessions: (() => void) | undefined; // a drain waiting for the last session to end
  const sessions = new Set<Session>();
  const accepting = listener.connections$.subscribe((socket) => {
    if (stats.connectedClients >= cfg().maxClients) {
      // as Redis: tell the client why, then close; the client that is over counts as an error
      socket.on('error', () => undefined);
      // destroyed once written: nobody reads this socket, so it would never see the peer's FIN
      socket.end(MAX_CLIENTS, () => socket.destroy());
      rejected++;
      stats.requests.errors[FrontError.maxclients]++;
      return;
    }
    try {
      const keepAlive = cfg().tcpKeepalive;
      if (keepAlive > 0) socket.setKeepAlive(true, keepAlive * 1000);
      socket.setNoDelay(true);
      const session = runSession(socket, up, nextId++);
      sessions.add(session);
      session.subscription.add(() => {
        sessions.delete(session);
        if (sessions.size === 0) onNoSessions?.();
      });
    } catch (err) {
      // one connection that could not be set up is dropped; the listener goes on
      log.error({ err }, 'could not start a client session');
      socket.destroy();
    }
  });

  // idle_timeout: once a second, clients idle longer than it are closed (as Redis's `timeout`;
  // one that waits for replies is not idle). One ticker for the listener, nothing per request.
  let idleClosed = 0;
  const sweeping = interval(1000).subscribe(() => {
    const limitMs = cfg().idleTimeout * 1000;
    if (limitMs <= 0) return;
    const now = immediateScheduler.now();
    for (const session of [...sessions]) {
      if (session.idleMs(now) > limitMs) {
        idleClosed++;
        session.subscription.unsubscribe();
      }
    }
  });

  // INFO's instantaneous_ops_per_sec: commands per second since the previous sample, a sample
  // being taken by an INFO at least a second after the one before (no timer for it)
  let opsAt = Date.now();
  let opsCount = 0;
  let opsRate = 0;
  const opsPerSec = (): number => {
    const now = Date.now();
    if (now - opsAt >= 1000) {
      opsRate = Math.round(((stats.totalCommands - opsCount) * 1000) / (now - opsAt));
      opsAt = now;
      opsCount = stats.totalCommands;
    }
    return opsRate;
  };

  // (read when INFO asks, from the sessions: nothing counted per request)
  const maxOutput = (): number => {
    let max = 0;
    for (const session of sessions) max = Math.max(max, session.outputBytes());
    return max;
  };
  const blockedClients = (): number => {
    let n = 0;
    for (const session of sessions) if (session.blocked()) n++;
    return n;
  };

  return {
    get rejected() {
      return rejected;
    },
    infoSections: () => [
      [
        'Clients',
        [
          ['connected_clients', stats.connectedClients],
          ['client_recent_max_output_buffer', maxOutput()],
          ['blocked_clients', blockedClients()],
        ],
      ],
      [
        'Stats',
        [
          ['total_connections_received', stats.totalConnections],
          ['total_commands_processed', stats.totalCommands],
          ['instantaneous_ops_per_sec', opsPerSec()],
          ['rejected_connections', rejected],
          ['idle_timeout_closed', idleClosed],
          ['total_error_replies', stats.requests.failed],
          ['protocol_errors', stats.protocolErrors],
        ],
      ],
    ],
    async drain(deadlineMs: number) {
      accepting.unsubscribe();
      sweeping.unsubscribe();
      // stop listening now; `close` destroys what is still open at the deadline
      void listener.close().catch(() => undefined);
      for (const session of [...sessions]) session.end();
      if (sessions.size === 0) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        onNoSessions = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
    async close() {
      accepting.unsubscribe();
      sweeping.unsubscribe();
      // server.close() resolves only once every connection has ended: end them first
      const closing = listener.close().catch(() => undefined);
      for (const session of [...sessions]) session.subscription.unsubscribe();
      await closing;
    },
  };
}

const MAX_CLIENTS = errorFrame('ERR max number of clients reached');
