/**
 * Listening sockets for QMP.
 *
 * A UNIX socket is private from the first moment anyone can reach it: it is bound inside a
 * fresh 0700 directory next to the target, chmod'ed to 0600, then renamed onto the target path
 * (atomic on one filesystem), so no client ever sees it with wider permissions and no
 * process-wide umask is touched. An existing path is replaced only if it is a socket nobody
 * listens on; anything else is refused. On close the path is removed if it is still ours.
 *
 * A TCP socket binds exactly the host it is given (the CLI defaults to loopback).
 */
import { chmod, lstat, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import type { AddressInfo, ListenOptions, Server } from 'node:net';
import { dirname, join } from 'node:path';
import { UNIX_PATH_MAX, formatQmpAddress } from './address.ts';
import type { QmpAddress } from './address.ts';

export interface QmpListener {
  /** Where clients connect, e.g. `unix:/run/vm.qmp` or `tcp:127.0.0.1:41234`. */
  readonly address: string;
  /** Stops listening (open connections are the caller's) and removes the socket file. */
  close(): Promise<void>;
}

const PROBE_TIMEOUT_MS = 1000;

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Whether a server answers on this socket path (a timeout counts as yes, to be safe). */
function someoneListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    const done = (answer: boolean): void => {
      probe.destroy();
      resolve(answer);
    };
    probe.setTimeout(PROBE_TIMEOUT_MS, () => done(true));
    probe.once('connect', () => done(true));
    probe.once('error', () => done(false));
  });
}

async function checkUnixTarget(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new Error(`refusing to replace ${path}: it exists and is not a socket`);
  if (await someoneListens(path)) {
    throw new Error(`${path}: another server is already listening on this socket`);
  }
  // A stale socket: the rename below replaces it atomically.
}

async function listenUnix(server: Server, path: string): Promise<QmpListener> {
  await checkUnixTarget(path);
  const dir = await mkdtemp(join(dirname(path), '.qmp-'));
  const staging = join(dir, 's');
  try {
    if (Buffer.byteLength(staging) > UNIX_PATH_MAX) {
      throw new Error(
        `cannot create ${path}: the staging path ${staging} is longer than ${UNIX_PATH_MAX} bytes`,
      );
    }
    await listen(server, { path: staging });
    await chmod(staging, 0o600);
    await rename(staging, path);
  } catch (err) {
    await closeServer(server);
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const { dev, ino } = await lstat(path);
  return {
    address: formatQmpAddress({ kind: 'unix', path }),
    async close() {
      await closeServer(server);
      try {
        const now = await lstat(path);
        if (now.isSocket() && now.dev === dev && now.ino === ino) await unlink(path);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    },
  };
}

async function listenTcp(server: Server, host: string, port: number): Promise<QmpListener> {
  await listen(server, { host, port, exclusive: true });
  const bound = server.address() as AddressInfo;
  return {
    address: formatQmpAddress({ kind: 'tcp', host: bound.address, port: bound.port }),
    close: () => closeServer(server),
  };
}

export function listenQmp(server: Server, address: QmpAddress): Promise<QmpListener> {
  return address.kind === 'unix'
    ? listenUnix(server, address.path)
    : listenTcp(server, address.host, address.port);
}
