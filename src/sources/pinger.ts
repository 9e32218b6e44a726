import type net from 'node:net';
import { Observable } from 'rxjs';
import type { PingOutcome } from '../operators/health-check.js';
import { connectTcp } from './socket.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import type { TlsClientConfig } from '../config/types.js';

export interface PingerOptions {
  host: string;
  port: number;
  /** sent with AUTH first on each new connection */
  password?: string;
  keepAliveSec: number;
  /** TLS to the server */
  tls?: TlsClientConfig;
  /** the ACL user of that AUTH */
  username?: string;
}

const PING = Buffer.from('*1\r\n$4\r\nPING\r\n');
/** no reply to AUTH or PING is anywhere near this long */
const MAX_LINE = 4096;

function authCommand(password: string, username?: string): Buffer {
  return encodeCommand(username === undefined ? ['AUTH', password] : ['AUTH', username, password]);
}

interface Probe {
  /** the replies still due, in order */
  expect: Array<'AUTH' | 'PING'>;
  settle(outcome: PingOutcome): void;
}

/**
 * Health probes for one server: `ping()` sends PING over a connection of the pinger's own (not
 * the shared data connection, whose queue a slow reply would hold up) and emits whether `+PONG`
 * came back. The connection stays open between probes; a new one is opened (and AUTHed when
 * there is a password) after any failure. One probe at a time. Unsubscribing before the answer
 * (the health check's timeout) closes the connection, so a late reply can never answer the
 * next probe.
 */
export class Pinger {
  private socket: net.Socket | null = null;
  private buf = '';
  private probe: Probe | null = null;

  constructor(private readonly opts: PingerOptions) {}

  ping(): Observable<PingOutcome> {
    return new Observable<PingOutcome>((subscriber) => {
      if (this.probe !== null) this.lost(this.socket, 'an earlier probe was still waiting');
      let settled = false;
      const probe: Probe = {
        expect: [],
        settle: (outcome) => {
          settled = true;
          if (this.probe === probe) this.probe = null;
          subscriber.next(outcome);
          subscriber.complete();
        },
      };
      this.probe = probe;
      let socket = this.socket;
      if (socket === null) {
        socket = this.connect();
        if (this.opts.password !== undefined) {
          probe.expect.push('AUTH');
          socket.write(authCommand(this.opts.password, this.opts.username));
        }
      }
      probe.expect.push('PING');
      socket.write(PING);
      return () => {
        if (!settled) {
          if (this.probe === probe) this.probe = null;
          this.lost(this.socket, 'probe abandoned');
        }
      };
    });
  }

  close(): void {
    this.lost(this.socket, 'pinger closed');
  }

  private connect(): net.Socket {
    const socket = connectTcp({ host: this.opts.host, port: this.opts.port, keepAliveSec: this.opts.keepAliveSec, ...(this.opts.tls !== undefined ? { tls: this.opts.tls } : {}) });
    this.socket = socket;
    this.buf = '';
    // the listeners stay on a socket given up on, so its late events are dropped, never thrown
    socket.on('data', (chunk: Buffer) => this.read(socket, chunk));
    socket.on('error', (err: Error) => this.lost(socket, err.message));
    socket.on('close', () => this.lost(socket, 'connection closed by the server'));
    return socket;
  }

  private read(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    this.buf += chunk.toString('latin1');
    for (let nl = this.buf.indexOf('\r\n'); nl >= 0 && socket === this.socket; nl = this.buf.indexOf('\r\n')) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      this.answer(socket, line);
    }
    if (socket === this.socket && this.buf.length > MAX_LINE) this.lost(socket, 'reply line too long');
  }

  private answer(socket: net.Socket, line: string): void {
    const probe = this.probe;
    const what = probe?.expect.shift();
    if (probe === null || what === undefined || (line[0] !== '+' && line[0] !== '-')) {
      this.lost(socket, `unexpected reply ${JSON.stringify(line.slice(0, 100))}`);
      return;
    }
    if (what === 'AUTH') {
      if (line[0] === '-') {
        // the PING after a refused AUTH would only say NOAUTH: report the cause, start afresh next time
        this.probe = null;
        this.lost(socket, '');
        probe.settle({ ok: false, detail: `AUTH refused: ${line.slice(1)}` });
      }
      return;
    }
    probe.settle(line === '+PONG' ? { ok: true } : { ok: false, detail: line.slice(line[0] === '-' ? 1 : 0) });
  }

  /** Gives up on `socket` (when it is the current one); a probe waiting on it fails with `reason`. */
  private lost(socket: net.Socket | null, reason: string): void {
    if (socket === null || socket !== this.socket) return;
    this.socket = null;
    this.buf = '';
    socket.destroy();
    const probe = this.probe;
    this.probe = null;
    probe?.settle({ ok: false, detail: reason });
  }
}
