/**
 * The error replies by which a Redis Cluster node sends a request elsewhere (the Redis Cluster
 * specification's redirection section): `-MOVED slot host:port`, `-ASK slot host:port`, `-TRYAGAIN ...` and
 * `-CLUSTERDOWN ...`. Any other reply, and a MOVED or ASK that cannot be read, is not a
 * redirect: it goes to the client as it is.
 */
export type RedirectKind = 'moved' | 'ask' | 'tryagain' | 'clusterdown';

export interface Redirect {
  kind: RedirectKind;
  /** the slot named by MOVED and ASK; -1 for TRYAGAIN and CLUSTERDOWN */
  slot: number;
  /** where MOVED and ASK point: '' as host means "the node that answered" (Redis's unknown endpoint) */
  host: string;
  port: number;
}

const MOVED = Buffer.from('-MOVED ');
const ASK = Buffer.from('-ASK ');
const TRYAGAIN = Buffer.from('-TRYAGAIN');
const CLUSTERDOWN = Buffer.from('-CLUSTERDOWN');

const startsWith = (frame: Buffer, prefix: Buffer): boolean => frame.length >= prefix.length && frame.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;

/** The redirect an error reply carries, or null. Cheap for replies that are not errors. */
export function parseRedirect(frame: Buffer): Redirect | null {
  if (frame[0] !== 0x2d /* - */) return null;
  switch (frame[1]) {
    case 0x4d /* M */:
      return startsWith(frame, MOVED) ? target('moved', frame, MOVED.length) : null;
    case 0x41 /* A */:
      return startsWith(frame, ASK) ? target('ask', frame, ASK.length) : null;
    case 0x54 /* T */:
      return startsWith(frame, TRYAGAIN) ? { kind: 'tryagain', slot: -1, host: '', port: 0 } : null;
    case 0x43 /* C */:
      return startsWith(frame, CLUSTERDOWN) ? { kind: 'clusterdown', slot: -1, host: '', port: 0 } : null;
    default:
      return null;
  }
}

/** "slot host:port" after the prefix; IPv6 hosts come without brackets, so the port is after the last ':' */
function target(kind: 'moved' | 'ask', frame: Buffer, from: number): Redirect | null {
  const text = frame.toString('latin1', from, frame.length - 2);
  const m = /^(\d{1,5}) (\S*):(\d{1,5})$/.exec(text);
  if (m === null) return null;
  const slot = Number(m[1]);
  const port = Number(m[3]);
  if (slot > 16383 || port === 0 || port > 65535) return null;
  return { kind, slot, host: m[2], port };
}
