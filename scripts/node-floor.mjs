#!/usr/bin/env node
// node-floor.mjs - the floor of any proxy written on Node's net module, for the benchmark
// (scripts/bench.sh, target "node-floor"): a server that decodes each request with the
// proxy's own RESP decoder and answers it itself (GET: $-1, PING: +PONG, anything else: +OK),
// one write per socket chunk, with no backend behind it. What it costs per request or per
// connection is what Node's sockets and event loop cost before a proxy does any work.
//
// Usage: node scripts/node-floor.mjs PORT [HOST]   (needs the build: npm run build)
import net from 'node:net';
import { RequestDecoder } from '../dist/src/protocol/request-decoder.js';

const port = Number(process.argv[2]);
const host = process.argv[3] ?? '127.0.0.1';
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node scripts/node-floor.mjs PORT [HOST]\n');
  process.exit(2);
}
const OK = Buffer.from('+OK\r\n');
const NIL = Buffer.from('$-1\r\n');
const PONG = Buffer.from('+PONG\r\n');

const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
  const decoder = new RequestDecoder();
  const out = [];
  const answer = (req) => {
    const c = req.args[0];
    out.push(c.length === 3 && (c[0] | 0x20) === 0x67 /* g */ ? NIL : c.length === 4 && (c[0] | 0x20) === 0x70 /* p */ ? PONG : OK);
  };
  socket.on('data', (chunk) => {
    try {
      decoder.push(chunk, answer);
    } catch {
      socket.destroy();
      return;
    }
    if (out.length > 0) socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
    out.length = 0;
  });
  socket.on('end', () => socket.end());
  socket.on('error', () => undefined);
});
server.listen(port, host);
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
