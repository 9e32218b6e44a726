import type { ClusterConfig } from '../config/types.js';
import { proxyUsers, type ProxyFacts } from '../commands/local.js';
import type { Listener } from '../sources/socket.js';
import { AuthFailures } from './auth-failures.js';
import type { Upstream } from './session.js';

/** What clients are held to, from a cluster's config: the same in both modes. */
export type ClientPolicy = Pick<Upstream, 'denied' | 'adminCommands' | 'authFailures' | 'limits'>;

export function clientPolicy(cfg: ClusterConfig): ClientPolicy {
  return { denied: new Set(cfg.denyCommands), adminCommands: cfg.adminCommands, authFailures: new AuthFailures(), limits: cfg.limits };
}

/**
 * A reload's new client-side settings, applied in place: passwords and users, TLS certificates
 * for the next handshakes, limits, the deny list and admin commands. (Failed-AUTH counts stay.)
 */
export function followClientPolicy(up: ClientPolicy, facts: ProxyFacts, listener: Listener, next: ClusterConfig): void {
  facts.password = next.password;
  facts.users = proxyUsers(next.users);
  listener.setTls(next.tls);
  up.limits = next.limits;
  up.denied = new Set(next.denyCommands);
  up.adminCommands = next.adminCommands;
}
