/** The validated, normalised configuration the proxy runs on. Produced by `loadConfig`. */

export type CacheType = 'redis' | 'redis_cluster';

/** One backend of a standalone (twemproxy-mode) cluster: `"host:port:weight alias"`. */
export interface ServerSpec {
  host: string;
  port: number;
  weight: number;
  /** the alias if given; used as the ketama name and in logs */
  alias?: string;
  /** the name hashed into the ketama ring: the alias, else "host:port" (twemproxy rule) */
  name: string;
  /** "host:port", the address to connect to */
  addr: string;
}

export interface BackupRequestConfig {
  enabled: boolean;
  /** unset means: follow recent master latency */
  triggerSlowMs?: number;
  multiplier: number;
  /** backups allowed, in percent of the read requests */
  budgetPercent: number;
  /** the most backups the budget holds at once (a stall of many clients at once needs many) */
  burst: number;
}

/** Protocol and resource limits (Redis-compatible defaults). */
export interface LimitsConfig {
  /** largest bulk string a client may send, bytes (Redis proto-max-bulk-len: 512 MB) */
  maxBulkBytes: number;
  /** longest `*`/`$` header or inline command line, bytes (Redis: 64 KiB) */
  maxHeaderBytes: number;
  /** most arguments in one request (Redis: 1024*1024*1024 is its hard cap; ours is configurable) */
  maxArgs: number;
  /** most bytes of one unfinished request held for a client (Redis's client-query-buffer-limit: 1 GiB) */
  maxQueryBytes: number;
  /** deepest nesting accepted in a backend reply */
  maxReplyDepth: number;
  /** a subscriber with more than this many bytes waiting to be written is disconnected (Redis: 32 MB) */
  pubsubOutputHardBytes: number;
  /** ... or with more than this many for longer than `pubsubOutputSoftSeconds` (Redis: 8 MB for 60 s) */
  pubsubOutputSoftBytes: number;
  pubsubOutputSoftSeconds: number;
  /** the same for the other clients; 0 = no limit (Redis's default for normal clients) */
  outputHardBytes: number;
  outputSoftBytes: number;
  outputSoftSeconds: number;
  /** flow control: most requests one client may have unanswered; past it, its later requests wait (and it is not read) */
  maxPendingRequests: number;
  /** flow control: most reply bytes one client may have unread (counting its unanswered requests at its recent reply size) */
  maxPendingBytes: number;
}

/** TLS on the listener: the proxy's certificate, and optionally client certificates it verifies. */
export interface TlsServerConfig {
  /** PEM, read from `cert_file` */
  cert: string;
  /** PEM, read from `key_file` */
  key: string;
  /** PEM, read from `ca_file`: the CAs client certificates are checked against */
  ca?: string;
  /** clients must present a certificate signed by `ca` */
  clientAuth: boolean;
}

/** TLS to the backends. */
export interface TlsClientConfig {
  /** PEM CAs the backends' certificates are checked against (default: the system's) */
  ca?: string;
  /** a client certificate and key (PEM), when the backends ask for one */
  cert?: string;
  key?: string;
  /** SNI and the name checked in the backend's certificate (default: the backend's host) */
  serverName?: string;
  /** check the backend's certificate (default true) */
  verify: boolean;
}

/** A named user (`AUTH user pass`), with what it may run. */
export interface UserConfig {
  name: string;
  password: string;
  /** only commands that read (the command table's readonly flag), plus connection, transaction and pub/sub commands */
  readOnly: boolean;
  /** commands this user may not run (`name` or `name|subcommand`, lower case), besides the cluster's deny list */
  denyCommands: string[];
}

export interface ClusterConfig {
  name: string;
  /** "ip:port" */
  listenAddr: string;
  listenHost: string;
  listenPort: number;
  cacheType: CacheType;
  servers: ServerSpec[];
  /** two characters, e.g. "{}"; standalone only; undefined when unset */
  hashTag?: string;
  thread: number;
  /** ms, per request from send to reply */
  readTimeout: number;
  /** ms, connect timeout and the longest a backend write may stay unflushed */
  writeTimeout: number;
  /** ms, periodic CLUSTER SLOTS refresh (cluster mode) */
  fetchInterval: number;
  readFromSlave: boolean;
  pingFailLimit: number;
  pingInterval: number;
  pingSuccInterval: number;
  /** what ejection does to an ejected server's keys: move them (twemproxy) or fail them fast */
  ejectMode: 'remap' | 'fail_fast';
  /** seconds of TCP keepalive on backend and client sockets; 0 = off */
  tcpKeepalive: number;
  /** seconds a client may stay idle (no request, nothing in flight) before it is closed; 0 = never */
  idleTimeout: number;
  backupRequest: BackupRequestConfig;
  /** SLOWLOG keeps requests at least this slow (arrival to reply), µs; -1 keeps none (Redis: 10000) */
  slowlogLogSlowerThan: number;
  /** SLOWLOG keeps this many entries, the newest (Redis: 128) */
  slowlogMaxLen: number;
  /** most client connections at once; more get `-ERR max number of clients reached` (Redis: 10000) */
  maxClients: number;
  /** connections for blocking commands per backend server (and worker); one more blocked client gets an error */
  maxBlockingConnections: number;
  /** commands (lower case, `name` or `name|subcommand`) answered with an error naming the policy */
  denyCommands: string[];
  /** FLUSHALL, FLUSHDB, SCRIPT FLUSH, FUNCTION LOAD/DELETE/FLUSH, CONFIG GET/SET/RESETSTAT run over every node (else an error naming this setting) */
  adminCommands: boolean;
  password?: string;
  /** named users; with users and no `password`, the default user is off (clients must AUTH as one of them) */
  users: UserConfig[];
  backendPassword?: string;
  /** the ACL user the proxy AUTHs to the backends as (`backend_auth = { username, password }`) */
  backendUsername?: string;
  /** TLS on the listener (`[clusters.tls]`) */
  tls?: TlsServerConfig;
  /** TLS to every backend (`[clusters.backend_tls]`) */
  backendTls?: TlsClientConfig;
  limits: LimitsConfig;
}

export interface Config {
  /** the file it was read from (for messages) */
  file: string;
  clusters: ClusterConfig[];
}
