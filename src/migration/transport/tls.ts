/**
 * TLS on a migration channel (QEMU's io/channel-tls.c): a connected or accepted socket becomes
 * a TLS stream whose peer was checked (security/tls-session.ts), or it is refused and closed.
 * The main channel uses it on both sides; a multifd channel is one more call of the same
 * functions. The return path shares the main channel's socket, so it is covered as well.
 *
 * Node's TLS runs with rejectUnauthorized off: OpenSSL reports its verdict on the peer's chain
 * and the check decides, with QEMU's messages, once the handshake is done.
 *
 * The destination counts a channel as established only when the first bytes of the stream
 * arrived. In TLS 1.3 the client checks the server's certificate after sending its Finished,
 * so the server's handshake succeeds even when the client is about to refuse it; the client
 * then closes without sending anything, and that close is a refusal, not a broken migration.
 */
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { checkPeerCertificate } from '../../security/index.ts';
import type { TlsCredsX509 } from '../../security/index.ts';
import { MigrationConnection } from './connection.ts';

/** How long a handshake (and, on the destination, the first bytes) may take by default. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export class TlsChannelError extends Error {
  override readonly name = 'TlsChannelError';
}

export interface TlsClientParams {
  /** Credentials with endpoint `client`. */
  readonly creds: TlsCredsX509;
  /** The name the destination's certificate must carry (tls-hostname, or the URI's host). */
  readonly hostname: string | null;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface TlsServerParams {
  /** Credentials with endpoint `server`. */
  readonly creds: TlsCredsX509;
  /** tls-authz's decision on the peer's distinguished name; null without tls-authz. */
  readonly authorize: ((identity: string) => boolean) | null;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/** The socket under a channel: TLS needs one Duplex carrying both directions. */
function socketOf(conn: MigrationConnection): Duplex {
  const s = conn.socket;
  if (s === null) throw new TlsChannelError(`${conn.description}: TLS needs a socket channel`);
  return s;
}

/** OpenSSL's verify result code, or null when the chain verified. */
function verifyErrorOf(sock: TLSSocket): string | null {
  if (sock.authorized) return null;
  const e = sock.authorizationError as unknown;
  if (typeof e === 'string') return e;
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/** A handshake failure in QEMU's words, with OpenSSL's reason and not its source location. */
function handshakeFailed(err: unknown): TlsChannelError {
  const e = err as { reason?: unknown; message?: unknown };
  const reason =
    typeof e.reason === 'string' && e.reason !== ''
      ? e.reason
      : typeof e.message === 'string'
        ? e.message
        : String(err);
  return new TlsChannelError(`TLS handshake failed: ${reason}`);
}

function tlsConnection(
  conn: MigrationConnection,
  sock: TLSSocket,
  peer: string | null,
): MigrationConnection {
  // Errors reach whoever reads or writes (the reader and the sink see the stream fail); one
  // that comes while nobody is attached must not be an uncaught 'error' event.
  sock.on('error', () => undefined);
  const who = peer === null ? '' : `, peer ${peer}`;
  return new MigrationConnection({
    description: `${conn.description} (${sock.getProtocol() ?? 'TLS'}${who})`,
    readable: sock,
    writable: sock,
    returnPath: conn.returnPath,
  });
}

/**
 * Settles when `ready` resolves, or fails on the socket's error or close, the timeout or the
 * signal; on failure the socket is destroyed.
 */
function establish<T>(
  sock: TLSSocket,
  params: { signal?: AbortSignal; timeoutMs?: number },
  ready: (done: (value: T) => void, fail: (err: Error) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timeoutMs = params.timeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS;
    const cleanup = () => {
      clearTimeout(timer);
      params.signal?.removeEventListener('abort', onAbort);
      sock.off('error', onError);
      sock.off('close', onClose);
    };
    const fail = (err: Error) => {
      cleanup();
      sock.destroy();
      reject(err);
    };
    const done = (value: T) => {
      cleanup();
      resolve(value);
    };
    const onError = (err: Error) => fail(handshakeFailed(err));
    const onClose = () =>
      fail(new TlsChannelError('TLS handshake failed: the peer closed the connection'));
    const onAbort = () => fail(params.signal!.reason as Error);
    const timer = setTimeout(
      () => fail(new TlsChannelError(`TLS handshake failed: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    if (params.signal?.aborted) {
      onAbort();
      return;
    }
    params.signal?.addEventListener('abort', onAbort, { once: true });
    sock.on('error', onError);
    sock.on('close', onClose);
    if (sock.destroyed) {
      onClose(); // it went away before we listened
      return;
    }
    ready(done, fail);
  });
}

/** The source's side: a TLS client over `conn`, checking the destination's certificate. */
export async function tlsClientChannel(
  conn: MigrationConnection,
  params: TlsClientParams,
): Promise<MigrationConnection> {
  const raw = socketOf(conn);
  const { creds, hostname } = params;
  const sock = tlsConnect({
    socket: raw,
    secureContext: creds.secureContext,
    // SNI carries names only, never addresses (RFC 6066 §3).
    servername: hostname !== null && isIP(hostname) === 0 ? hostname : undefined,
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  });
  const peer = await establish<string | null>(sock, params, (done, fail) => {
    sock.once('secureConnect', () => {
      try {
        done(
          checkPeerCertificate({
            endpoint: 'client',
            verifyPeer: creds.verifyPeer,
            peer: sock.getPeerX509Certificate(),
            verifyError: verifyErrorOf(sock),
            hostname,
            authorize: null,
          }),
        );
      } catch (err) {
        fail(err as Error);
      }
    });
  });
  return tlsConnection(conn, sock, peer);
}

/** Resolves once the peer sent its first bytes (left in the stream); rejects on EOF. */
function firstBytes(sock: TLSSocket, done: () => void, fail: (err: Error) => void): void {
  const onReadable = () => {
    const chunk = sock.read() as Buffer | null;
    if (chunk === null) return; // the end, reported by 'end'
    sock.unshift(chunk);
    finish();
    done();
  };
  const onEnd = () => {
    finish();
    fail(
      new TlsChannelError(
        'the peer closed the channel right after the TLS handshake (it refused our certificate?)',
      ),
    );
  };
  const finish = () => {
    sock.off('readable', onReadable);
    sock.off('end', onEnd);
  };
  sock.on('readable', onReadable);
  sock.once('end', onEnd);
}

/**
 * The destination's side: a TLS server over `conn`, checking the source's certificate and its
 * identity; resolves once the source has sent its first bytes.
 */
export async function tlsServerChannel(
  conn: MigrationConnection,
  params: TlsServerParams,
): Promise<MigrationConnection> {
  const raw = socketOf(conn);
  const { creds } = params;
  // A server object per channel: it only holds the options and runs this one handshake.
  const server = createTlsServer({
    ...creds.serverOptions(),
    // Ask for the client's certificate; the check below enforces it (QEMU: GNUTLS_CERT_REQUEST).
    requestCert: creds.verifyPeer,
    rejectUnauthorized: false,
    handshakeTimeout: params.timeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
  });
  const sock = await new Promise<TLSSocket>((resolve, reject) => {
    const { signal } = params;
    const settle = () => signal?.removeEventListener('abort', onAbort);
    const onAbort = () => {
      raw.destroy();
      reject(signal!.reason as Error);
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    server.once('secureConnection', (s: TLSSocket) => {
      settle();
      resolve(s);
    });
    server.once('tlsClientError', (err) => {
      settle();
      raw.destroy();
      reject(handshakeFailed(err));
    });
    raw.on('error', () => undefined); // the TLS socket reports it
    server.emit('connection', raw);
  });
  const peer = await establish<string | null>(sock, params, (done, fail) => {
    let identity: string | null;
    try {
      identity = checkPeerCertificate({
        endpoint: 'server',
        verifyPeer: creds.verifyPeer,
        peer: sock.getPeerX509Certificate(),
        verifyError: verifyErrorOf(sock),
        hostname: null,
        authorize: params.authorize,
      });
    } catch (err) {
      fail(err as Error);
      return;
    }
    firstBytes(sock, () => done(identity), fail);
  });
  return tlsConnection(conn, sock, peer);
}
