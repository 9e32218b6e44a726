/**
 * Commands the proxy answers itself, because their state belongs to the client connection
 * (HELLO, SELECT, CLIENT SETNAME...) or to the proxy (PING, INFO, COMMAND). Forwarding them
 * on a shared backend connection would leak one client's state into another's.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { encode, type Proto, type Resp } from '../protocol/encode.js';
import { allCommands, commandCount, commandDocsReply, commandInfoReply, keyIndexes, lookupCommand } from './index.js';

export interface ClientState {
  id: number;
  name: string | null;
  proto: Proto;
  libName: string | null;
  libVer: string | null;
  /** set by QUIT: close after this reply */
  quit: boolean;
  /** false until the client authenticates, when the cluster has a password */
  authed: boolean;
}

export interface ProxyFacts {
  version: string;
  mode: 'standalone' | 'cluster';
  clusterName: string;
  port: number;
  startedAt: number;
  /** the password clients must AUTH with (the `default` user's), if any */
  password?: string;
  /** INFO sections the stream layer fills in (clients, stats, backends) */
  infoSections(): Array<[string, Array<[string, string | number]>]>;
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
    const wanted = new Set(args.slice(1).map((a) => lower(a)));
    const all = wanted.size === 0 || wanted.has('all') || wanted.has('everything') || wanted.has('default');
    const uptime = Math.floor((Date.now() - facts.startedAt) / 1000);
    const sections: Array<[string, Array<[string, string | number]>]> = [
      [
        'Server',
        [
          ['redis_version', REDIS_COMPAT_VERSION],
          ['proxy', 'aster-proxy'],
          ['proxy_version', facts.version],
          ['redis_mode', facts.mode],
          ['os', `${process.platform} ${process.arch}`],
          ['process_id', process.pid],
          ['tcp_port', facts.port],
          ['uptime_in_seconds', uptime],
          ['uptime_in_days', Math.floor(uptime / 86400)],
          ['executable', 'aster-proxy'],
          ['cluster_name', facts.clusterName],
        ],
      ],
      ...facts.infoSections(),
    ];
    const lines: string[] = [];
    for (const [title, fields] of sections) {
      if (!all && !wanted.has(title.toLowerCase())) continue;
      if (lines.length > 0) lines.push('');
      lines.push('# ' + title);
      for (const [k, v] of fields) lines.push(`${k}:${v}`);
    }
    return { verbatim: lines.join('\r\n') + '\r\n' };
  },
};

const DEFAULT_USER = Buffer.from('default');

/**
 * Checks credentials for the `default` user, the only user for now. Without a configured
 * password any password is accepted, as Redis's `nopass` default user does. The comparison
 * takes the same time whatever the password's first difference.
 */
function authenticate(client: ClientState, facts: ProxyFacts, user: Buffer, pass: Buffer): Resp | null {
  const good = user.equals(DEFAULT_USER) && (facts.password === undefined || sameSecret(pass, facts.password));
  if (!good) return err('WRONGPASS invalid username-password pair or user is disabled.');
  client.authed = true;
  return null;
}

function sameSecret(given: Buffer, expected: string): boolean {
  const want = Buffer.from(expected, 'utf8');
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(want).digest();
  return timingSafeEqual(a, b);
}

/** commands a client may send before it authenticates */
export function allowedBeforeAuth(name: string): boolean {
  return name === 'auth' || name === 'hello' || name === 'quit';
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
