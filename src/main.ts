/**
 * The program: runs the command line and exits with its status. Imported by bin/aster-proxy.js.
 * A worker process (forked by the primary when a cluster has `thread > 1`, see
 * streams/workers.ts) runs the same program and takes its settings from the primary instead.
 */
import { runCli, serveProxy } from './cli.js';
import { isWorkerProcess } from './sources/worker-process.js';
import { runWorker } from './streams/workers.js';

try {
  const code = isWorkerProcess()
    ? await runWorker(serveProxy)
    : await runCli(process.argv.slice(2), {
        stdout: process.stdout,
        stderr: process.stderr,
        env: process.env,
      });
  process.exitCode = code;
  // Output is flushed by now; if something the proxy left behind (a socket, a timer) keeps the
  // event loop alive after shutdown, do not hang: leave shortly after.
  setTimeout(() => process.exit(code), 2000).unref();
} catch (err) {
  process.stderr.write(`aster-proxy: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(70);
}
