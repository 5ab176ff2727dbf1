/**
 * TCP and UNIX-socket channels. Sockets get TCP_NODELAY (commands and return-path messages
 * are small and latency-bound) and large high-water marks (the bulk is RAM pages).
 * A listener binds exactly the address asked for and reports the port it got for port 0.
 */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import type { NetConnectOpts, Server, Socket } from 'node:net';
import { AcceptQueue } from './accept-queue.ts';
import { MigrationConnection } from './connection.ts';
import { formatMigrationUri } from './uri.ts';
import type { MigrationUri } from './uri.ts';

export type SocketUri = Extract<MigrationUri, { transport: 'tcp' | 'unix' }>;

export interface SocketOptions {
  /** Socket readable/writable high-water mark (default 1 MiB). */
  highWaterMark?: number;
  signal?: AbortSignal;
}

export const DEFAULT_SOCKET_HIGH_WATER_MARK = 1 << 20;
/** Connections accepted but not yet taken by accept(); more are refused. */
export const ACCEPT_QUEUE_MAX = 256;

function describe(sock: Socket, uri: SocketUri, dir: '->' | '<-'): string {
  if (uri.transport === 'unix') return `unix ${uri.path}`;
  const local = `${sock.localAddress}:${sock.localPort}`;
  const remote = `${sock.remoteAddress}:${sock.remotePort}`;
  return `tcp ${local} ${dir} ${remote}`;
}

function connectionOf(sock: Socket, uri: SocketUri, dir: '->' | '<-'): MigrationConnection {
  sock.setNoDelay(true);
  return new MigrationConnection({
    description: describe(sock, uri, dir),
    readable: sock,
    writable: sock,
    returnPath: true,
  });
}

export class SocketListener {
  /** The bound address; for tcp with port 0, the port actually chosen. */
  readonly uri: SocketUri;
  private readonly server: Server;
  private readonly queue = new AcceptQueue(ACCEPT_QUEUE_MAX);

  constructor(server: Server, uri: SocketUri) {
    this.server = server;
    this.uri = uri;
    server.on('connection', (sock: Socket) => this.queue.deliver(connectionOf(sock, uri, '<-')));
    server.on('error', (err) => this.queue.fail(err));
    server.on('close', () => this.queue.fail(new Error(`${this.toString()}: listener closed`)));
  }

  toString(): string {
    return formatMigrationUri(this.uri);
  }

  /** The next incoming connection. */
  accept(signal?: AbortSignal): Promise<MigrationConnection> {
    return this.queue.accept(signal);
  }

  /** Stops listening; connections already accepted stay open. */
  close(): Promise<void> {
    this.queue.drop();
    this.queue.fail(new Error(`${this.toString()}: listener closed`));
    // Listening stops at once. Node's close callback would also wait until every connection
    // already accepted has ended, and those belong to whoever accepted them.
    if (this.server.listening) this.server.close();
    return Promise.resolve();
  }
}

export async function listenSocket(
  uri: SocketUri,
  options: SocketOptions = {},
): Promise<SocketListener> {
  const server = createServer({
    highWaterMark: options.highWaterMark ?? DEFAULT_SOCKET_HIGH_WATER_MARK,
    noDelay: true,
  });
  if (uri.transport === 'unix') removeStaleSocket(uri.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      reject(
        new Error(`cannot listen on ${formatMigrationUri(uri)}: ${err.message}`, { cause: err }),
      );
    };
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (uri.transport === 'unix') server.listen({ path: uri.path }, done);
    else if (uri.host === '') server.listen({ port: uri.port }, done);
    else server.listen({ host: uri.host, port: uri.port }, done);
  });
  let bound: SocketUri = uri;
  const addr = server.address();
  if (uri.transport === 'tcp' && addr !== null && typeof addr === 'object') {
    bound = { transport: 'tcp', host: uri.host, port: addr.port };
  }
  return new SocketListener(server, bound);
}

/** QEMU unlinks a leftover socket file before binding; anything else is left alone. */
function removeStaleSocket(path: string): void {
  if (existsSync(path) && lstatSync(path).isSocket()) unlinkSync(path);
}

export async function connectSocket(
  uri: SocketUri,
  options: SocketOptions = {},
): Promise<MigrationConnection> {
  if (uri.transport === 'tcp' && (uri.host === '' || uri.port === 0)) {
    throw new Error(`cannot connect to ${formatMigrationUri(uri)}: a host and a port are needed`);
  }
  const highWaterMark = options.highWaterMark ?? DEFAULT_SOCKET_HIGH_WATER_MARK;
  // Node honours highWaterMark on connect (it sizes both socket buffers); the typings omit it.
  const target: NetConnectOpts =
    uri.transport === 'unix' ? { path: uri.path } : { host: uri.host, port: uri.port };
  const sock = netConnect(Object.assign(target, { highWaterMark }));
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => sock.destroy(options.signal?.reason as Error);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => {
      options.signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    sock.once('error', (err) => {
      options.signal?.removeEventListener('abort', onAbort);
      reject(
        new Error(`cannot connect to ${formatMigrationUri(uri)}: ${err.message}`, { cause: err }),
      );
    });
  });
  return connectionOf(sock, uri, '->');
}
