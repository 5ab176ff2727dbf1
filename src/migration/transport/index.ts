/**
 * Transports: `listen(uri)` for the destination, `connect(uri)` for the source, over the
 * URIs QEMU accepts (see uri.ts), and TLS over socket channels (tls.ts, tls-migration.ts).
 * Unlike QEMU, `tcp::PORT` listens on loopback only: listening on every address is asked for
 * with an explicit `tcp:0.0.0.0:PORT` or `tcp:[::]:PORT`.
 */
import type { MigrationConnection } from './connection.ts';
import { openFileForRead, openFileForWrite } from './file.ts';
import { connectSocket, listenSocket } from './socket.ts';
import type { SocketOptions } from './socket.ts';
import { formatMigrationUri, toMigrationUri } from './uri.ts';
import type { MigrationUri } from './uri.ts';

export { MigrationConnection } from './connection.ts';
export type { MigrationChannelId } from './connection.ts';
export { SocketListener, DEFAULT_SOCKET_HIGH_WATER_MARK } from './socket.ts';
export type { SocketOptions } from './socket.ts';
export * from './uri.ts';
export * from './tls.ts';
export * from './tls-listener.ts';
export * from './tls-migration.ts';

/** Where `tcp::PORT` listens: loopback, unless an address is given (tcp:0.0.0.0:PORT). */
export const DEFAULT_LISTEN_HOST = '127.0.0.1';

/** What the destination waits on: incoming connections, or the one file to read. */
export interface MigrationListener {
  /** The bound URI (with the chosen port for tcp port 0). */
  readonly uri: MigrationUri;
  accept(signal?: AbortSignal): Promise<MigrationConnection>;
  close(): Promise<void>;
}

export async function listen(
  uri: string | MigrationUri,
  options: SocketOptions = {},
): Promise<MigrationListener> {
  let u = toMigrationUri(uri);
  if (u.transport === 'tcp' && u.host === '') u = { ...u, host: DEFAULT_LISTEN_HOST };
  if (u.transport !== 'file') return listenSocket(u, options);
  let taken = false;
  return {
    uri: u,
    async accept(): Promise<MigrationConnection> {
      if (taken) throw new Error(`${formatMigrationUri(u)} has a single channel`);
      taken = true;
      return openFileForRead(u);
    },
    close: () => Promise.resolve(),
  };
}

export function connect(
  uri: string | MigrationUri,
  options: SocketOptions = {},
): Promise<MigrationConnection> {
  const u = toMigrationUri(uri);
  return u.transport === 'file' ? openFileForWrite(u) : connectSocket(u, options);
}
