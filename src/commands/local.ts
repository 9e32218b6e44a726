/**
 * Commands the proxy answers itself, because their state belongs to the client connection
 * (HELLO, SELECT, CLIENT SETNAME...) or to the proxy (PING, INFO, COMMAND). Forwarding them
 * on a shared backend connection would leak one client's state into another's.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { encode, type Proto, type Resp } from '../protocol/encode.js';
import type { ReplyTarget } from '../sources/backend.js';
import { answerCluster, answerClusterFlag, type ClusterSelf } from './cluster-self.js';
import { allCommands, commandCount, commandDocsReply, commandInfoReply, keyIndexes, lookupCommand } from './index.js';

/** A named user: its password and what it may run. */
export interface ProxyUser {
  name: string;
  password: string;
  readOnly: boolean;
  denied: ReadonlySet<string>;
}

/** The users of a cluster's config, by name. */
export function proxyUsers(users: ReadonlyArray<{ name: string; password: string; readOnly: boolean; denyCommands: readonly string[] }>): Map<string, ProxyUser> {
  return new Map(users.map((u) => [u.name, { name: u.name, password: u.password, readOnly: u.readOnly, denied: new Set(u.denyCommands) }]));
}

export interface ClientState {
  id: number;
  name: string | null;
  proto: Proto;
  libName: string | null;
  libVer: string | null;
  /** set by QUIT: close after this reply */
  quit: boolean;
  /** false until the client authenticates, when the cluster has a password or users */
  authed: boolean;
  /** the user it authenticated as (undefined: the default user, who may run everything the cluster allows) */
  user?: ProxyUser;
  /** the client's "ip:port" (SLOWLOG entries) */
  addr: string;
}

export interface ProxyFacts {
  version: string;
  mode: 'standalone' | 'cluster';
  clusterName: string;
  port: number;
  startedAt: number;
  /** the password clients must AUTH with (the `default` user's), if any */
  password?: string;
  /** named users, by name; with users and no `password` the default user is off */
  users: Map<string, ProxyUser>;
  /** INFO sections the stream layer fills in (clients, stats, backends) */
  infoSections(): Array<[string, Array<[string, string | number]>]>;
  /** the cluster's slow log (SLOWLOG) */
  slowlog: SlowlogView;
  /** cluster mode: how the proxy shows itself to cluster-aware clients, as one node owning every slot */
  cluster?: {
    /** the address it announces (`--ip`) */
    ip: string;
    /** its node id: 40 hex digits, stable for a cluster name, address and port */
    myId: string;
    /** every slot has an owner behind the proxy */
    ok(): boolean;
  };
}

/** One SLOWLOG entry, as Redis shapes it. */
export interface SlowlogEntry {
  id: number;
  /** unix time, seconds */
  time: number;
  durationUs: number;
  /** the request's arguments, already cut and redacted */
  args: Buffer[];
  /** client "ip:port" */
  addr: string;
  /** client name ('' when unset) */
  name: string;
}

export interface SlowlogView {
  /** up to `n` entries, newest first; `n` < 0: all */
  entries(n: number): SlowlogEntry[];
  readonly length: number;
  reset(): void;
}

export const REDIS_COMPAT_VERSION = '7.0.15';

const ok: Resp = { simple: 'OK' };
const err = (msg: string): Resp => ({ error: msg });

type Handler = (args: readonly Buffer[], client: ClientState, facts: ProxyFacts) => Resp;

const lower = (b: Buffer | undefined): string => (b === undefined ? '' : b.toString('latin1').toLowerCase());

const handlers: Record<string, Handler> = {
  ping(args) {
    if (args.length === 2) return args[1];
    return { simple: 'PONG' };
  },

  echo(args) {
    return args[1];
  },

  quit(_args, client) {
    client.quit = true;
    return ok;
  },

  select(args) {
    const db = args[1].toString('latin1');
    if (!/^-?\d+$/.test(db)) return err('ERR value is not an integer or out of range');
    if (Number(db) !== 0) return err('ERR SELECT is not allowed in aster-proxy: only database 0 exists behind a proxy');
    return ok;
  },

  hello(args, client, facts) {
    let proto = client.proto;
    let i = 1;
    if (args.length > 1) {
      const v = args[1].toString('latin1');
      if (!/^\d+$/.test(v)) return err('ERR Protocol version is not an integer or out of range');
      const n = Number(v);
      if (n !== 2 && n !== 3) return err('NOPROTO unsupported protocol version');
      proto = n;
      i = 2;
    }
    let name: string | null | undefined;
    for (; i < args.length; i++) {
      const opt = lower(args[i]);
      if (opt === 'auth' && i + 2 < args.length) {
        const e = authenticate(client, facts, args[i + 1], args[i + 2]);
        if (e) return e;
        i += 2;
      } else if (opt === 'setname' && i + 1 < args.length) {
        const n = args[i + 1].toString('utf8');
        if (!validName(n)) return err('ERR Client names cannot contain spaces, newlines or special characters.');
        name = n;
        i += 1;
      } else {
        return err(`ERR Syntax error in HELLO option '${args[i].toString('utf8')}'`);
      }
    }
    client.proto = proto;
    if (name !== undefined) client.name = name === '' ? null : name;
    return {
      map: [
        ['server', 'redis'],
        ['version', REDIS_COMPAT_VERSION],
        ['proto', proto],
        ['id', client.id],
        ['mode', facts.mode],
        ['role', 'master'],
        ['modules', []],
        ['proxy', 'aster-proxy ' + facts.version],
      ],
    };
  },

  auth(args, client, facts) {
    if (args.length === 2 && facts.password === undefined) {
      return err('ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?');
    }
    const user = args.length === 3 ? args[1] : DEFAULT_USER;
    return authenticate(client, facts, user, args[args.length - 1]) ?? ok;
  },

  client(args, client) {
    const sub = lower(args[1]);
    switch (sub) {
      case 'setname': {
        if (args.length !== 3) return err("ERR wrong number of arguments for 'client|setname' command");
        const n = args[2].toString('utf8');
        if (!validName(n)) return err('ERR Client names cannot contain spaces, newlines or special characters.');
        client.name = n === '' ? null : n;
        return ok;
      }
      case 'getname':
        return client.name;
      case 'id':
        return client.id;
      case 'setinfo': {
        if (args.length !== 4) return err("ERR wrong number of arguments for 'client|setinfo' command");
        const attr = lower(args[2]);
        const val = args[3].toString('utf8');
        if (!validName(val)) return err(`ERR ${attr} cannot contain spaces, newlines or special characters.`);
        if (attr === 'lib-name') client.libName = val;
        else if (attr === 'lib-ver') client.libVer = val;
        else return err(`ERR Unrecognized option '${args[2].toString('utf8')}'`);
        return ok;
      }
      case 'info':
        return { verbatim: clientLine(client) + '\n' };
      default:
        return err(`ERR CLIENT ${sub.toUpperCase()} is not supported by aster-proxy`);
    }
  },

  command(args) {
    const sub = lower(args[1]);
    switch (sub) {
      case '':
        return commandInfoReply();
      case 'count':
        return commandCount();
      case 'info':
        return commandInfoReply(args.slice(2));
      case 'docs':
        return commandDocsReply(args.slice(2));
      case 'list':
        return allCommands().map((s) => s.name);
      case 'getkeys': {
        const rest = args.slice(2);
        const spec = lookupCommand(rest);
        if (!spec) return err('ERR Invalid command specified');
        const idx = keyIndexes(spec, rest);
        if (idx.length === 0) return err('ERR The command has no key arguments');
        return idx.map((k) => rest[k]);
      }
      default:
        return err(`ERR unknown subcommand '${args[1].toString('utf8')}'. Try COMMAND HELP.`);
    }
  },

  info(args, _client, facts) {
    return infoValue(args, facts, null);
  },

  cluster(args, _client, facts) {
    return answerCluster(args, clusterSelf(facts));
  },

  readonly(_args, _client, facts) {
    return answerClusterFlag(clusterSelf(facts));
  },

  readwrite(_args, _client, facts) {
    return answerClusterFlag(clusterSelf(facts));
  },

  asking(_args, _client, facts) {
    return answerClusterFlag(clusterSelf(facts));
  },

  slowlog(args, _client, facts) {
    const sub = lower(args[1]);
    if (sub === 'get' && args.length <= 3) {
      let n = 10;
      if (args.length === 3) {
        const v = args[2].toString('latin1');
        if (!/^-?\d{1,18}$/.test(v)) return err('ERR value is not an integer or out of range');
        n = Number(v);
        if (n < -1) return err('ERR count should be greater than or equal to -1');
      }
      return facts.slowlog.entries(n).map((e): Resp => [e.id, e.time, e.durationUs, e.args, e.addr, e.name]);
    }
    if (sub === 'len' && args.length === 2) return facts.slowlog.length;
    if (sub === 'reset' && args.length === 2) {
      facts.slowlog.reset();
      return ok;
    }
    if (sub === 'help' && args.length === 2) return SLOWLOG_HELP.map((line) => ({ simple: line }));
    return err(`ERR unknown subcommand or wrong number of arguments for '${args[1].toString('utf8', 0, 128)}'. Try SLOWLOG HELP.`);
  },
};

const clusterSelf = (facts: ProxyFacts): ClusterSelf | undefined =>
  facts.cluster === undefined ? undefined : { ip: facts.cluster.ip, port: facts.port, myId: facts.cluster.myId, ok: facts.cluster.ok() };

const DEFAULT_USER = Buffer.from('default');

/**
 * Checks credentials: the `default` user with `password` (without a password and without users
 * any password is accepted, as Redis's `nopass` default user; with users and no password the
 * default user is off), or a named user. The comparison takes the same time whatever the
 * password's first difference; an unknown user costs as much as a known one.
 */
function authenticate(client: ClientState, facts: ProxyFacts, user: Buffer, pass: Buffer): Resp | null {
  const name = user.toString('utf8');
  let good: boolean;
  let named: ProxyUser | undefined;
  if (user.equals(DEFAULT_USER)) {
    good = facts.password === undefined ? facts.users.size === 0 : sameSecret(pass, facts.password);
  } else {
    named = facts.users.get(name);
    const ok = sameSecret(pass, named?.password ?? UNKNOWN_USER_SECRET);
    good = named !== undefined && ok;
  }
  if (!good) return err('WRONGPASS invalid username-password pair or user is disabled.');
  client.authed = true;
  client.user = named;
  return null;
}

const UNKNOWN_USER_SECRET = '\u0000no such user\u0000';

function sameSecret(given: Buffer, expected: string): boolean {
  const want = Buffer.from(expected, 'utf8');
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(want).digest();
  return timingSafeEqual(a, b);
}

/** commands a client may send before it authenticates */
export function allowedBeforeAuth(name: string): boolean {
  return name === 'auth' || name === 'hello' || name === 'quit' || name === 'reset';
}

function validName(n: string): boolean {
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function clientLine(c: ClientState): string {
  return `id=${c.id} name=${c.name ?? ''} resp=${c.proto} lib-name=${c.libName ?? ''} lib-ver=${c.libVer ?? ''}`;
}

/** true if the proxy answers this (top-level, lower-case) command itself */
export function isLocal(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(handlers, name);
}

/** The proxy's own reply to a local command, encoded for the client's protocol. */
export function answerLocal(name: string, args: readonly Buffer[], client: ClientState, facts: ProxyFacts): Buffer {
  const before = client.proto;
  const value = handlers[name](args, client, facts);
  // HELLO answers in the protocol it switches to
  return encode(value, name === 'hello' ? client.proto : before);
}

// ---------------------------------------------------------------------------------------------
// INFO

type InfoSection = [string, Array<[string, string | number]>];

/** Redis's section order; sections it does not know (Proxy) come last */
const SECTION_ORDER = ['server', 'clients', 'memory', 'persistence', 'stats', 'replication', 'cpu', 'modules', 'errorstats', 'cluster', 'keyspace'];
const sectionRank = (title: string): number => {
  const i = SECTION_ORDER.indexOf(title.toLowerCase());
  return i < 0 ? SECTION_ORDER.length : i;
};

/** The sections INFO with these arguments shows (lower case); null for all of them. */
function wantedSections(args: readonly Buffer[]): Set<string> | null {
  const wanted = new Set(args.slice(1).map((a) => lower(a)));
  return wanted.size === 0 || wanted.has('all') || wanted.has('everything') || wanted.has('default') ? null : wanted;
}

/** true when INFO with these arguments shows the Keyspace section, which the backends' keyspaces make up */
export function infoWantsKeyspace(args: readonly Buffer[]): boolean {
  const wanted = wantedSections(args);
  return wanted === null || wanted.has('keyspace');
}

/** The keys of every backend, summed per database (from each backend's `INFO keyspace`). */
export interface KeyspaceTotals {
  dbs: Map<number, { keys: number; expires: number; ttlTimesExpires: number }>;
  /** backends asked, and how many of them failed to answer */
  asked: number;
  failed: number;
}

/** The INFO reply, with the Keyspace section from `keyspace` (null: not asked, or no backends). */
export function answerInfo(args: readonly Buffer[], proto: Proto, facts: ProxyFacts, keyspace: KeyspaceTotals | null): Buffer {
  return encode(infoValue(args, facts, keyspace), proto);
}

function infoValue(args: readonly Buffer[], facts: ProxyFacts, keyspace: KeyspaceTotals | null): Resp {
  const wanted = wantedSections(args);
  const uptime = Math.floor((Date.now() - facts.startedAt) / 1000);
  const mem = process.memoryUsage();
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const cpu = process.cpuUsage();
  const sections: InfoSection[] = [
    [
      'Server',
      [
        ['redis_version', REDIS_COMPAT_VERSION],
        ['proxy', 'aster-proxy'],
        ['proxy_version', facts.version],
        ['redis_mode', facts.mode],
        ['os', `${process.platform} ${process.arch}`],
        ['arch_bits', process.arch.endsWith('64') ? 64 : 32],
        ['process_id', process.pid],
        ['tcp_port', facts.port],
        ['uptime_in_seconds', uptime],
        ['uptime_in_days', Math.floor(uptime / 86400)],
        ['executable', 'aster-proxy'],
        ['cluster_name', facts.clusterName],
      ],
    ],
    // the proxy's own process (the backends' memory is theirs to report)
    [
      'Memory',
      [
        ['used_memory', mem.heapUsed + mem.external],
        ['used_memory_human', humanBytes(mem.heapUsed + mem.external)],
        ['used_memory_rss', mem.rss],
        ['used_memory_rss_human', humanBytes(mem.rss)],
        ['used_memory_peak', peakRss],
        ['used_memory_peak_human', humanBytes(peakRss)],
        ['maxmemory', 0],
        ['maxmemory_human', '0B'],
      ],
    ],
    [
      'CPU',
      [
        ['used_cpu_sys', (cpu.system / 1e6).toFixed(6)],
        ['used_cpu_user', (cpu.user / 1e6).toFixed(6)],
        ['used_cpu_sys_children', '0.000000'],
        ['used_cpu_user_children', '0.000000'],
      ],
    ],
    ['Replication', [['role', 'master'], ['connected_slaves', 0]]],
    ['Cluster', [['cluster_enabled', facts.cluster === undefined ? 0 : 1]]],
    ...facts.infoSections(),
  ];
  if (keyspace !== null) {
    const lines: Array<[string, string]> = [...keyspace.dbs.entries()]
      .sort((a, b) => a[0] - b[0])
      .filter(([, d]) => d.keys > 0)
      .map(([db, d]) => [`db${db}`, `keys=${d.keys},expires=${d.expires},avg_ttl=${d.expires > 0 ? Math.round(d.ttlTimesExpires / d.expires) : 0}`]);
    sections.push(['Keyspace', lines]);
    const proxy = sections.find(([title]) => title === 'Proxy');
    proxy?.[1].push(['keyspace_backends', keyspace.asked], ['keyspace_backends_failed', keyspace.failed]);
  } else {
    sections.push(['Keyspace', []]);
  }
  sections.sort((a, b) => sectionRank(a[0]) - sectionRank(b[0]));
  const lines: string[] = [];
  for (const [title, fields] of sections) {
    if (wanted !== null && !wanted.has(title.toLowerCase())) continue;
    if (lines.length > 0) lines.push('');
    lines.push('# ' + title);
    for (const [k, v] of fields) lines.push(`${k}:${v}`);
  }
  return { verbatim: lines.join('\r\n') + '\r\n' };
}

/** bytes as Redis's INFO writes them: 512B, 1.50K, 3.20M, 1.00G */
export function humanBytes(n: number): string {
  const units = ['K', 'M', 'G', 'T', 'P'];
  if (n < 1024) return `${n}B`;
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(2)}${units[i]}`;
}

/**
 * Gathers each backend's reply to `INFO keyspace` and sums keys and expires per database
 * (avg_ttl becomes the mean weighted by each backend's expires). A backend that fails to
 * answer counts in `failed`; the others are still summed. `done` runs once, when all answered.
 */
export class KeyspaceSum implements ReplyTarget {
  private readonly totals: KeyspaceTotals;
  private left: number;

  constructor(
    backends: number,
    private readonly done: (totals: KeyspaceTotals) => void,
  ) {
    this.totals = { dbs: new Map(), asked: backends, failed: 0 };
    this.left = backends;
  }

  deliver(_i: number, frame: Buffer): void {
    const text = bulkText(frame);
    if (text === null) this.totals.failed++;
    else {
      for (const line of text.split('\r\n')) {
        const m = /^db(\d+):keys=(\d+),expires=(\d+),avg_ttl=(\d+)/.exec(line);
        if (m === null) continue;
        const db = Number(m[1]);
        const d = this.totals.dbs.get(db) ?? { keys: 0, expires: 0, ttlTimesExpires: 0 };
        d.keys += Number(m[2]);
        d.expires += Number(m[3]);
        d.ttlTimesExpires += Number(m[4]) * Number(m[3]);
        this.totals.dbs.set(db, d);
      }
    }
    if (--this.left === 0) this.done(this.totals);
  }
}

/** the text of a RESP2 bulk string or RESP3 verbatim string frame; null for anything else */
function bulkText(frame: Buffer): string | null {
  if (frame[0] !== 0x24 /* $ */ && frame[0] !== 0x3d /* = */) return null;
  const eol = frame.indexOf('\r\n');
  if (eol < 0 || frame[1] === 0x2d /* $-1 */) return null;
  const body = frame.toString('utf8', eol + 2, frame.length - 2);
  return frame[0] === 0x3d ? body.slice(4) : body;
}

const SLOWLOG_HELP = [
  'SLOWLOG <subcommand> [<arg> ...]. Subcommands are:',
  'GET [<count>]',
  '    The newest <count> entries of the slow log (default 10; -1 for all). Each entry is:',
  '    id, unix time, duration in microseconds (arrival at the proxy to reply), arguments,',
  '    client ip:port, client name.',
  'LEN',
  '    The number of entries in the slow log.',
  'RESET',
  '    Empties the slow log.',
  'HELP',
  '    This text.',
];
