/**
 * The command line: flags (yargs), `--check`, `--version`, `--help`, and running the proxy until
 * SIGINT/SIGTERM. `runCli` never exits the process itself; it resolves to the exit status.
 *
 * Exit status: 0 ok, 1 bad config (or `--check` found problems, or the proxy failed to start),
 * 2 bad command line.
 */
import { isIP } from 'node:net';
import { constants as osConstants, networkInterfaces } from 'node:os';
import yargs from 'yargs';
import { ConfigError, nearest, type LoadResult } from './config/load.js';
import { loadConfig } from './sources/config-file.js';
import { readVersion } from './sources/package-info.js';

export { readVersion };
import type { Config } from './config/types.js';
import { createLogger, LOG_LEVELS, type LogLevel, type Logger } from './sinks/log.js';
import { startProxy as realStartProxy, type ProxyOptions, type RunningProxy } from './streams/proxy.js';
import { runPrimary, workerCount } from './streams/workers.js';

export const EXIT_OK = 0;
export const EXIT_CONFIG = 1;
export const EXIT_USAGE = 2;

export const DEFAULT_CONFIG = 'default.toml';
export const DEFAULT_METRICS_PORT = 2110;
/** how long a SIGTERM/SIGINT shutdown waits for clients' in-flight requests */
export const SHUTDOWN_DEADLINE_MS = 10_000;

export interface Output {
  write(chunk: string): unknown;
}

export interface CliIO {
  stdout: Output;
  stderr: Output;
  env: NodeJS.ProcessEnv;
  /** runs the proxy; default: `serveProxy` with the real `startProxy` and process signals */
  serve?: (req: ServeRequest) => Promise<number>;
}

/** What the CLI hands to the part that runs the proxy. */
export interface ServeRequest {
  config: Config;
  warnings: string[];
  /** the announced address: --ip, else the default (see defaultIp) */
  ip: string;
  /** --ip was given: every cluster announces it; else a cluster whose listen_addr names one address announces that one */
  ipGiven: boolean;
  metricsPort: number;
  reload: boolean;
  logLevel: LogLevel;
  version: string;
}

export interface ServeDeps {
  logger: Logger;
  startProxy: (config: Config, opts: ProxyOptions) => Promise<RunningProxy>;
  /** calls `handler` on each stop signal (SIGINT, SIGTERM); returns a function that unsubscribes */
  onStopSignal: (handler: (signal: NodeJS.Signals) => void) => () => void;
  /** ends the process at once (a second stop signal while shutting down) */
  exitNow: (code: number) => void;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

function isHostOrIp(s: string): boolean {
  return isIP(s) !== 0 || HOSTNAME.test(s);
}

/**
 * The address announced in CLUSTER SLOTS/NODES when `--ip` is not given: the first non-loopback
 * IPv4 address, else env HOST (if it is a host name or address), else 127.0.0.1.
 */
export function defaultIp(
  env: NodeJS.ProcessEnv,
  interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): string {
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? []) {
      // Node 18.0-18.3 reported the family as a number
      const v4 = a.family === 'IPv4' || (a.family as unknown) === 4;
      if (v4 && !a.internal) return a.address;
    }
  }
  const host = env['HOST']?.trim();
  if (host && isHostOrIp(host)) return host;
  return '127.0.0.1';
}

class UsageError extends Error {}

function single(flag: string, v: unknown): unknown {
  if (Array.isArray(v)) throw new UsageError(`--${flag} was given more than once`);
  return v;
}

const EPILOGUE = `Exit status:
  0  ok: --check found nothing to report, or the proxy stopped on SIGINT/SIGTERM
  1  the config is invalid, --check found problems or warnings, or the proxy failed to start
  2  bad command line (unknown flag, bad flag value)
  70 internal error (a bug: please report it)
  A second SIGINT/SIGTERM during shutdown exits at once with 128 + the signal number.

Environment:
  ASTER_DEFAULT_THREAD  the "thread" of clusters that do not set it (default: one per CPU)
  HOST                  announced address when --ip is not given, listen_addr is a wildcard and no non-loopback IPv4 exists

Logs are JSON lines on stderr. The config format is documented in default.toml.`;

function buildParser(version: string) {
  return yargs()
    .scriptName('aster-proxy')
    .locale('en')
    // (a description as the second argument of usage() would declare a default command, and
    // then stray words on the command line would no longer be errors)
    .usage(
      '$0 [options] [FILE]\n\n' +
        'A Redis proxy: twemproxy-compatible sharding over standalone\n' +
        'Redis servers, or one address in front of a Redis Cluster.',
    )
    .parserConfiguration({ 'parse-numbers': false, 'duplicate-arguments-array': true })
    .option('config', {
      alias: 'c',
      type: 'string',
      requiresArg: true,
      defaultDescription: DEFAULT_CONFIG,
      describe: 'the TOML config file (or FILE, as the one argument)',
      coerce: (v: unknown) => {
        const s = single('config', v);
        if (typeof s !== 'string' || s.trim() === '') throw new UsageError('--config needs a file name');
        return s;
      },
    })
    .option('ip', {
      alias: 'i',
      type: 'string',
      requiresArg: true,
      describe: 'address announced in CLUSTER SLOTS/NODES replies',
      defaultDescription: "the cluster's listen_addr when it names one address, else the first non-loopback IPv4, else $HOST, else 127.0.0.1",
      coerce: (v: unknown) => {
        const s = single('ip', v);
        if (typeof s !== 'string' || !isHostOrIp(s.trim())) {
          throw new UsageError(`--ip: expected an IP address or host name, got ${JSON.stringify(s)}`);
        }
        return s.trim();
      },
    })
    .option('metrics', {
      alias: 'm',
      requiresArg: true,
      default: DEFAULT_METRICS_PORT,
      describe: 'Prometheus port (HTTP, path /metrics); 0 turns metrics off',
      coerce: (v: unknown) => {
        const s = String(single('metrics', v)).trim();
        const n = Number(s);
        if (!/^\d{1,5}$/.test(s) || n > 65535) {
          throw new UsageError(`--metrics: expected a port number from 0 to 65535, got ${JSON.stringify(String(v))}`);
        }
        return n;
      },
    })
    .option('reload', {
      alias: 'r',
      type: 'boolean',
      default: false,
      describe: 'watch the config file and apply changes live',
    })
    .option('check', {
      type: 'boolean',
      default: false,
      describe: 'validate the config, print all problems, exit',
    })
    .option('log-level', {
      alias: 'l',
      type: 'string',
      requiresArg: true,
      choices: LOG_LEVELS as unknown as string[],
      default: 'info',
      describe: 'log level',
      coerce: (v: unknown) => single('log-level', v),
    })
    .version('version', 'print the version and exit', version)
    .alias('version', 'V')
    .help('help', 'show this help and exit')
    .alias('help', 'h')
    .example('$0', `run with ./${DEFAULT_CONFIG}`)
    .example('$0 -c /etc/aster/proxy.toml -r', 'run, and apply config file changes live')
    .example('$0 /etc/aster/proxy.toml', 'the same file as the one argument')
    .example('$0 --check -c proxy.toml', 'validate a config (for CI or before a deploy) and exit')
    .example('$0 -c proxy.toml -i 10.0.0.5 -m 0', 'announce 10.0.0.5 in CLUSTER replies; no metrics endpoint')
    .example('$0 -l debug', 'run with debug logs')
    .epilogue(EPILOGUE)
    // options are checked here; the one positional argument (FILE) in parseArgs
    .strictOptions()
    .exitProcess(false)
    .wrap(null)
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
}

const FLAG_NAMES = ['config', 'ip', 'metrics', 'reload', 'check', 'log-level', 'version', 'help'];
const SHORT_FLAGS: Record<string, string> = { c: 'config', i: 'ip', m: 'metrics', l: 'log-level' };

/** yargs's message for an unknown flag, with a "did you mean" hint. */
function explainUsage(message: string): string {
  const missing = /^Not enough arguments following: (.+)$/.exec(message);
  if (missing) {
    const flag = missing[1]!;
    const long = SHORT_FLAGS[flag] ?? flag;
    return `--${long} needs a value`;
  }
  const m = /^Unknown arguments?: (.*)$/.exec(message);
  if (!m) return message;
  const hints = m[1]!
    .split(', ')
    .map((arg) => {
      const near = nearest(arg.replace(/^-+/, ''), FLAG_NAMES);
      return near ? `${arg} (did you mean --${near}?)` : arg;
    });
  return `unknown ${hints.length > 1 ? 'arguments' : 'argument'}: ${hints.join(', ')}`;
}

interface ParsedArgs {
  config: string;
  ip?: string;
  metrics: number;
  reload: boolean;
  check: boolean;
  logLevel: LogLevel;
}

type Parse =
  | { kind: 'args'; args: ParsedArgs }
  | { kind: 'output'; text: string }
  | { kind: 'error'; message: string };

function parseArgs(argv: string[], version: string): Promise<Parse> {
  return new Promise((resolve) => {
    try {
      buildParser(version).parse(argv, {}, (err, args, output) => {
        if (err) {
          resolve({ kind: 'error', message: err.message });
        } else if (output) {
          resolve({ kind: 'output', text: output });
        } else {
          // FILE, aster v1's habit (`aster-proxy proxy.toml`), or --config: one of them
          const rest = args._.map(String);
          const flag = args['config'] as string | undefined;
          if (rest.length > 1) return resolve({ kind: 'error', message: `unexpected argument: ${rest.slice(1).join(', ')} (the config file is the only argument)` });
          if (rest.length === 1 && flag !== undefined) return resolve({ kind: 'error', message: `the config file was given twice: ${JSON.stringify(rest[0])} and --config ${JSON.stringify(flag)}` });
          if (rest.length === 1 && rest[0].trim() === '') return resolve({ kind: 'error', message: 'the config file name is empty' });
          resolve({
            kind: 'args',
            args: {
              config: rest[0] ?? flag ?? DEFAULT_CONFIG,
              ...(args['ip'] !== undefined ? { ip: args['ip'] as string } : {}),
              metrics: args['metrics'] as number,
              reload: args['reload'] as boolean,
              check: args['check'] as boolean,
              logLevel: args['log-level'] as LogLevel,
            },
          });
        }
      });
    } catch (err) {
      resolve({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  });
}

function printProblems(out: Output, errors: string[], warnings: string[]): void {
  for (const e of errors) out.write(`error: ${e}\n`);
  for (const w of warnings) out.write(`warning: ${w}\n`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `--check`: report everything; clean means no errors and no warnings. */
function check(file: string, io: CliIO): number {
  let result: LoadResult;
  try {
    result = loadConfig(file, io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    printProblems(io.stderr, err.problems, err.warnings);
    io.stderr.write(`${file}: invalid: ${plural(err.problems.length, 'error')}, ${plural(err.warnings.length, 'warning')}\n`);
    return EXIT_CONFIG;
  }
  if (result.warnings.length > 0) {
    printProblems(io.stderr, [], result.warnings);
    io.stderr.write(`${file}: ${plural(result.warnings.length, 'warning')} (--check treats warnings as errors)\n`);
    return EXIT_CONFIG;
  }
  const clusters = result.config.clusters.map((c) => `${c.name} (${c.cacheType} on ${c.listenAddr})`);
  io.stdout.write(`${file}: ok: ${plural(clusters.length, 'cluster')}: ${clusters.join(', ')}\n`);
  return EXIT_OK;
}

function processStopSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}

function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (osConstants.signals[signal] ?? 0);
}

function defaultServe(req: ServeRequest): Promise<number> {
  // a cluster with thread > 1: a primary and worker processes (streams/workers.ts); else this process serves
  if (workerCount(req.config) > 1) {
    return runPrimary(req, { logger: createLogger(req.logLevel), drainDeadlineMs: SHUTDOWN_DEADLINE_MS, exitNow: (code) => process.exit(code), env: process.env });
  }
  return serveProxy(req, {
    logger: createLogger(req.logLevel),
    startProxy: realStartProxy,
    onStopSignal: processStopSignals,
    exitNow: (code) => process.exit(code),
  });
}

/**
 * Runs the proxy until the first stop signal, then closes it. Resolves to the exit status:
 * 0 after a clean close, 1 if it failed to start or to close. A second stop signal calls
 * `exitNow(128 + signal number)`.
 */
export async function serveProxy(req: ServeRequest, deps: ServeDeps): Promise<number> {
  const { logger } = deps;
  const { config } = req;
  for (const w of req.warnings) logger.warn(w);

  let stopping: NodeJS.Signals | undefined;
  let onStop!: () => void;
  const stopped = new Promise<void>((resolve) => (onStop = resolve));
  const unsubscribe = deps.onStopSignal((signal) => {
    if (stopping !== undefined) {
      logger.warn({ signal }, 'second signal: exiting now');
      deps.exitNow(signalExitCode(signal));
      return;
    }
    stopping = signal;
    logger.info({ signal }, 'shutting down');
    onStop();
  });

  try {
    logger.info(
      {
        version: req.version,
        config: config.file,
        clusters: config.clusters.map((c) => c.name),
        ip: req.ip,
        metricsPort: req.metricsPort,
        reload: req.reload,
      },
      'starting',
    );
    let proxy: RunningProxy;
    try {
      proxy = await deps.startProxy(config, {
        ip: req.ip,
        ipGiven: req.ipGiven,
        metricsPort: req.metricsPort,
        reload: req.reload,
        // what --reload watches and SIGHUP rereads: the file the config came from
        configFile: config.file,
        logger,
      });
    } catch (err) {
      logger.fatal({ err }, 'failed to start');
      return EXIT_CONFIG;
    }
    for (const l of proxy.listeners) {
      const address = isIP(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
      logger.info({ cluster: l.cluster, address }, 'listening');
    }
    await stopped;
    try {
      // stop accepting, answer every request already read, close; a second signal exits at once
      await proxy.shutdown(SHUTDOWN_DEADLINE_MS);
    } catch (err) {
      logger.error({ err }, 'error while closing');
      return EXIT_CONFIG;
    }
    logger.info('stopped');
    return EXIT_OK;
  } finally {
    unsubscribe();
  }
}

/**
 * Runs the command line `argv` (without the node and script paths) and resolves to the exit
 * status. Help, version, `--check` and errors are written to `io`; the proxy logs to stderr.
 */
export async function runCli(argv: string[], io: Partial<CliIO> = {}): Promise<number> {
  const full: CliIO = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    ...(io.serve ? { serve: io.serve } : {}),
  };
  const version = readVersion();
  const parsed = await parseArgs(argv, version);
  if (parsed.kind === 'error') {
    full.stderr.write(`aster-proxy: ${explainUsage(parsed.message)}\nRun "aster-proxy --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (parsed.kind === 'output') {
    full.stdout.write(parsed.text.endsWith('\n') ? parsed.text : `${parsed.text}\n`);
    return EXIT_OK;
  }
  const args = parsed.args;
  if (args.check) return check(args.config, full);

  let loaded: LoadResult;
  try {
    loaded = loadConfig(args.config, full.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    printProblems(full.stderr, err.problems, err.warnings);
    full.stderr.write(`aster-proxy: not starting: ${args.config} is invalid (${plural(err.problems.length, 'error')})\n`);
    return EXIT_CONFIG;
  }
  const serve = full.serve ?? defaultServe;
  return serve({
    config: loaded.config,
    warnings: loaded.warnings,
    ip: args.ip ?? defaultIp(full.env),
    ipGiven: args.ip !== undefined,
    metricsPort: args.metrics,
    reload: args.reload,
    logLevel: args.logLevel,
    version,
  });
}
