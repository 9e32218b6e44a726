import net, { isIP } from 'node:net';
import tls from 'node:tls';
import { Observable } from 'rxjs';
import type { TlsClientConfig, TlsServerConfig } from '../config/types.js';

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
  /** every accepted client socket (with TLS: once its handshake is done) */
  connections$: Observable<net.Socket>;
  /** TLS for the connections accepted from now on (a reload): new certificates, or TLS turned on or off (undefined); open connections stay as they are */
  setTls(tlsConfig: TlsServerConfig | undefined): void;
  /** stops accepting; existing connections are left to their sessions */
  close(): Promise<void>;
}

const serverTlsOptions = (t: TlsServerConfig): tls.SecureContextOptions => ({ cert: t.cert, key: t.key, ...(t.ca !== undefined ? { ca: t.ca } : {}) });

/** a TLS client has this long to finish its handshake, ms */
const HANDSHAKE_MS = 10_000;

/** Binds a TCP listener (TLS with `tlsConfig`); resolves once it listens (port 0 binds a free port). */
export function listenTcp(host: string, port: number, tlsConfig?: TlsServerConfig): Promise<Listener> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: a client that sends FIN after its requests still gets every reply; the
    // session ends the socket once the last one is written
    const server = net.createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true });
    // TLS: each connection is wrapped here (not by tls.Server), so that the ones still in their
    // handshake are known: a close ends them instead of waiting for them
    let settings = tlsConfig;
    let context = settings === undefined ? undefined : tls.createSecureContext(serverTlsOptions(settings));
    const handshaking = new Set<net.Socket>();
    const connections$ = new Observable<net.Socket>((subscriber) => {
      const onConn = (raw: net.Socket): void => {
        if (context === undefined || settings === undefined) {
          subscriber.next(raw);
          return;
        }
        const clientAuth = settings.clientAuth;
        const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, requestCert: clientAuth, rejectUnauthorized: clientAuth });
        handshaking.add(raw);
        const timer = setTimeout(() => raw.destroy(), HANDSHAKE_MS);
        const done = (): void => {
          clearTimeout(timer);
          handshaking.delete(raw);
        };
        raw.once('close', done);
        // a failed handshake (no or a bad client certificate, plain text to a TLS port) ends only that connection
        const onError = (): void => {
          done();
          raw.destroy();
        };
        secure.once('error', onError);
        secure.once('secure', () => {
          done();
          secure.off('error', onError);
          // (OpenSSL verified the certificate against `ca` during the handshake; a socket made
          // outside tls.Server does not fill `authorized`: what is left to check is that there is one)
          if (clientAuth && Object.keys(secure.getPeerCertificate()).length === 0) {
            secure.destroy();
            return;
          }
          subscriber.next(secure);
        });
      };
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
        setTls: (t) => {
          // (a context is made before anything changes: bad PEM throws here, the old settings stay)
          const next = t === undefined ? undefined : tls.createSecureContext(serverTlsOptions(t));
          settings = t;
          context = next;
        },
        close: () =>
          new Promise<void>((res) => {
            server.close(() => res());
            for (const raw of handshaking) raw.destroy();
          }),
      });
    });
  });
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** TCP keepalive in seconds; 0 = off */
  keepAliveSec: number;
  /** TLS to the server */
  tls?: TlsClientConfig;
}

/** Opens a client TCP connection (TLS with `opts.tls`) with TCP_NODELAY (and keepalive when asked). */
export function connectTcp(opts: ConnectOptions): net.Socket {
  const t = opts.tls;
  const socket =
    t === undefined
      ? net.connect({ host: opts.host, port: opts.port, noDelay: true })
      : tls.connect({
          host: opts.host,
          port: opts.port,
          // SNI must be a host name: none for an IP address
          ...((t.serverName ?? opts.host) !== '' && isIP(t.serverName ?? opts.host) === 0 ? { servername: t.serverName ?? opts.host } : {}),
          ...(t.ca !== undefined ? { ca: t.ca } : {}),
          ...(t.cert !== undefined ? { cert: t.cert } : {}),
          ...(t.key !== undefined ? { key: t.key } : {}),
          rejectUnauthorized: t.verify,
          // the name checked in the certificate: server_name when set, else the host
          ...(t.serverName !== undefined ? { checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(t.serverName as string, cert) } : {}),
        });
  if (t !== undefined) socket.setNoDelay(true);
  if (opts.keepAliveSec > 0) socket.setKeepAlive(true, opts.keepAliveSec * 1000);
  return socket;
}

/** Calls `fn` once the connection can carry requests: connected, and with TLS the handshake done. */
export function onReady(socket: net.Socket, fn: () => void): void {
  socket.once(socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect', fn);
}
