/**
 * How a destination takes its channels when the multifd capability is on (QEMU's
 * `migration_ioc_process_incoming`; qemu-migration.md §4.3): connections may arrive in any
 * order, so the first four bytes of each tell it apart — "QEVM" starts the main channel, the
 * multifd magic a multifd channel, whose handshake then names it — and the migration starts
 * once the main channel and every multifd channel are there (`migration_has_all_channels`).
 * Each connection is looked at on its own, so a slow one holds up no other.
 */
import { QEMU_VM_FILE_MAGIC } from '../stream/constants.ts';
import type { QEMUFileReader } from '../stream/index.ts';
import { MULTIFD_MAGIC } from '../stream/multifd-constants.ts';
import type {
  MigrationChannelId,
  MigrationConnection,
  MigrationListener,
} from '../transport/index.ts';
import type { MultifdRecvState } from './recv.ts';

export interface MainChannel {
  readonly conn: MigrationConnection;
  /** The stream, its first bytes still unread. */
  readonly file: QEMUFileReader;
}

/**
 * Accepts connections until the main channel and every channel of `recv` arrived; multifd
 * channels are handed to `recv`. `identified` learns what each connection turned out to be.
 * Rejects with the first connection that is neither (QEMU's "unknown channel magic"), a
 * second main channel, a bad handshake, or the listener failing.
 */
export function acceptChannels(
  listener: MigrationListener,
  signal: AbortSignal,
  recv: MultifdRecvState,
  identified: (conn: MigrationConnection, channel: MigrationChannelId) => void,
): Promise<MainChannel> {
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  let main: MainChannel | null = null;
  return new Promise<MainChannel>((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown, value: MainChannel | null) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      stop.abort(new Error('every channel arrived'));
      if (value !== null) resolve(value);
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const classify = async (conn: MigrationConnection): Promise<void> => {
      const file = conn.openReader();
      let magic: number;
      try {
        magic = (await file.peekBytes(4, 'channel magic')).readUInt32BE(0);
      } catch (err) {
        // Say which connection ended (or broke) before it said what it is.
        throw new Error(
          `${conn.description}: ${err instanceof Error ? err.message : String(err)}`,
          {
            cause: err,
          },
        );
      }
      if (settled) {
        conn.destroy();
        return;
      }
      if (magic === QEMU_VM_FILE_MAGIC) {
        if (main !== null) throw new Error(`${conn.description}: a second main channel`);
        main = { conn, file };
        identified(conn, 'main');
      } else if (magic === MULTIFD_MAGIC) {
        identified(conn, await recv.addChannel(conn, file));
      } else {
        // QEMU's message, and which connection it came on.
        throw new Error(`${conn.description}: unknown channel magic: 0x${magic.toString(16)}`);
      }
      if (main !== null && recv.allCreated) settle(null, main);
    };
    void (async () => {
      for (;;) {
        let conn: MigrationConnection;
        try {
          conn = await listener.accept(stop.signal);
        } catch (err) {
          settle(err, null);
          return;
        }
        classify(conn).catch((err: unknown) => {
          conn.destroy();
          settle(err, null);
        });
      }
    })();
  });
}
