import net from 'node:net';
import { Observable } from 'rxjs';

/**
 * The bytes a socket receives, as an Observable: one emission per `data` chunk; completes
 * when the peer closes, errors on a socket error. Unsubscribing removes the listeners and
 * leaves the socket to its owner.
 */
export function fromSocket(socket: net.Socket): Observable<Buffer> {
  return new Observable<Buffer>((subscriber) => {
    const onData = (chunk: Buffer): void => subscriber.next(chunk);
    const onEnd = (): void => subscriber.complete();
    const onError = (err: Error): void => subscriber.error(err);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    return () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
    };
  });
}

export interface Listener {
  host: string;
  port: number;
  /** every accepted client socket */
  connections$: Observable<net.Socket>;
  /** stops accepting; existing connections are left to their sessions */
  close(): Promise<void>;
}

/** Binds a TCP listener; resolves once it listens (port 0 binds a free port). */
export function listenTcp(host: string, port: number): Promise<Listener> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: a client that sends FIN after its requests still gets every reply; the
    // session ends the socket once the last one is written
    const server = net.createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true });
    const connections$ = new Observable<net.Socket>((subscriber) => {
      const onConn = (sock: net.Socket): void => subscriber.next(sock);
      server.on('connection', onConn);
      return () => server.off('connection', onConn);
    });
    server.once('error', reject);
    server.listen({ host, port, backlog: 1024 }, () => {
      server.off('error', reject);
      server.on('error', () => undefined); // accept errors (EMFILE...) must not crash the process
      const addr = server.address() as net.AddressInfo;
      resolve({
        host,
        port: addr.port,
        connections$,
        close: () => new Promise<void>((res) => server.close(() => res())),
      });
    });
  });
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** TCP keepalive in seconds; 0 = off */
  keepAliveSec: number;
}

/** Opens a client TCP connection with TCP_NODELAY (and keepalive when asked). */
export function connectTcp(opts: ConnectOptions): net.Socket {
  const socket = net.connect({ host: opts.host, port: opts.port, noDelay: true });
  if (opts.keepAliveSec > 0) socket.setKeepAlive(true, opts.keepAliveSec * 1000);
  return socket;
}
