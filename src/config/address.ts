import { isIP } from 'node:net';

/**
 * What a cluster-mode cluster announces in CLUSTER SLOTS/NODES/SHARDS, where cluster-aware
 * clients connect: the address asked for (--ip); else its listen address when that names one
 * (127.0.0.1, 10.0.0.5, ::1: nothing else would answer there); else, for a wildcard (0.0.0.0,
 * ::) or a host name, the default `ip`.
 */
export function announcedIp(listenHost: string, ip: string, ipGiven: boolean): string {
  if (ipGiven) return ip;
  const v = isIP(listenHost);
  if (v === 4 && listenHost !== '0.0.0.0') return listenHost;
  if (v === 6 && !/^[:0]+$/.test(listenHost)) return listenHost;
  return ip;
}
