/**
 * The program: runs the command line and exits with its status. Imported by bin/aster-proxy.js.
 */
import { runCli } from './cli.js';

try {
  const code = await runCli(process.argv.slice(2), {
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
