/**
 * The text of `CLUSTER NODES`, one node a line (Redis 7):
 *
 *   <id> <ip:port@cport[,hostname[,aux=value]*]> <flags> <master-id|-> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
 *
 * where a slot entry is `5461-10922`, `42`, `[42->-<id>]` (migrating to) or `[42-<-<id>]`
 * (importing from). A line that cannot be read throws, naming the line: a half-read topology
 * must not replace a good slot map.
 */
import { SLOTS } from './crc16.js';

export interface ClusterNodeInfo {
  id: string;
  /** '' when the node has no address yet (noaddr, ':0@0'; also a node that never met another) */
  host: string;
  port: number;
  /** `${host}:${port}`, with an IPv6 host unbracketed as Redis prints it in MOVED */
  addr: string;
  /** flags has 'master' */
  master: boolean;
  /** the master's id for a replica; null when the field is '-' */
  replicaOf: string | null;
  myself: boolean;
  /** 'fail': the cluster agreed the node is down */
  failing: boolean;
  /** 'fail?': this node alone suspects it */
  suspect: boolean;
  handshake: boolean;
  noaddr: boolean;
  configEpoch: number;
  /** link-state is 'connected' */
  connected: boolean;
  /** stable slot ranges owned, inclusive at both ends */
  slots: Array<[number, number]>;
  migrating: Array<{ slot: number; to: string }>;
  importing: Array<{ slot: number; from: string }>;
}

const MAX_QUOTED = 120;

/** Every node listed in `text`; blank lines are skipped, lines may end in '\n' or '\r\n'. */
export function parseClusterNodes(text: string): ClusterNodeInfo[] {
  const nodes: ClusterNodeInfo[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') continue;
    nodes.push(parseLine(line));
  }
  return nodes;
}

class BadLine extends Error {}

function parseLine(line: string): ClusterNodeInfo {
  try {
    return readFields(line.trim().split(/ +/));
  } catch (err) {
    if (!(err instanceof BadLine)) throw err;
    const quoted = line.length > MAX_QUOTED ? `${line.slice(0, MAX_QUOTED)}...` : line;
    throw new Error(`CLUSTER NODES: ${err.message} in line ${JSON.stringify(quoted)}`, { cause: err });
  }
}

function readFields(fields: string[]): ClusterNodeInfo {
  if (fields.length < 8) throw new BadLine(`expected at least 8 fields, got ${fields.length}`);
  const [id, address, flagList, masterId, pingSent, pongRecv, epoch, linkState] = fields as [string, string, string, string, string, string, string, string];
  const { host, port } = readAddress(address);
  const flags = new Set(flagList.split(','));
  unsigned(pingSent, 'ping-sent');
  unsigned(pongRecv, 'pong-recv');
  const node: ClusterNodeInfo = {
    id,
    host,
    port,
    addr: `${host}:${port}`,
    master: flags.has('master'),
    replicaOf: masterId === '-' ? null : masterId,
    myself: flags.has('myself'),
    failing: flags.has('fail'),
    suspect: flags.has('fail?'),
    handshake: flags.has('handshake'),
    noaddr: flags.has('noaddr'),
    configEpoch: unsigned(epoch, 'config-epoch'),
    connected: linkState === 'connected',
    slots: [],
    migrating: [],
    importing: [],
  };
  for (let i = 8; i < fields.length; i++) readSlotEntry(fields[i]!, node);
  return node;
}

/** `ip:port@cport[,hostname...]`; the port is after the last ':' because IPv6 hosts come unbracketed */
function readAddress(field: string): { host: string; port: number } {
  const comma = field.indexOf(',');
  const endpoint = comma >= 0 ? field.slice(0, comma) : field;
  const at = endpoint.indexOf('@');
  const hostPort = at >= 0 ? endpoint.slice(0, at) : endpoint; // Redis before 4.0 had no '@cport'
  if (at >= 0) port(endpoint.slice(at + 1), 'cluster bus port');
  const colon = hostPort.lastIndexOf(':');
  if (colon < 0) throw new BadLine(`address ${JSON.stringify(field)} has no port`);
  return { host: hostPort.slice(0, colon), port: port(hostPort.slice(colon + 1), 'port') };
}

const MIGRATING = /^\[(\d+)->-(\S+)\]$/;
const IMPORTING = /^\[(\d+)-<-(\S+)\]$/;
const RANGE = /^(\d+)(?:-(\d+))?$/;

function readSlotEntry(entry: string, node: ClusterNodeInfo): void {
  let m: RegExpExecArray | null;
  if ((m = MIGRATING.exec(entry)) !== null) {
    node.migrating.push({ slot: slot(m[1]!), to: m[2]! });
  } else if ((m = IMPORTING.exec(entry)) !== null) {
    node.importing.push({ slot: slot(m[1]!), from: m[2]! });
  } else if ((m = RANGE.exec(entry)) !== null) {
    const start = slot(m[1]!);
    const end = m[2] === undefined ? start : slot(m[2]);
    if (start > end) throw new BadLine(`slot range ${entry} ends before it starts`);
    node.slots.push([start, end]);
  } else {
    throw new BadLine(`bad slot entry ${JSON.stringify(entry)}`);
  }
}

function unsigned(text: string, what: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new BadLine(`bad ${what} ${JSON.stringify(text)}`);
  return n;
}

function port(text: string, what: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n <= 65535)) throw new BadLine(`bad ${what} ${JSON.stringify(text)}`);
  return n;
}

function slot(text: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n < SLOTS)) throw new BadLine(`slot ${text} is outside 0..${SLOTS - 1}`);
  return n;
}
