/**
 * A listener that hands out only channels whose TLS handshake and peer check succeeded. Each
 * accepted socket is upgraded on its own, so a peer that connects and stays silent, or one
 * that is refused, never holds up the real source; refusals are reported and listening goes
 * on, as QEMU's destination reports a failed handshake and keeps waiting (migration/tls.c).
 * Handshakes in progress and channels not yet taken are both bounded.
 */
import { setMaxListeners } from 'node:events';
import { AcceptQueue } from './accept-queue.ts';
import type { MigrationConnection } from './connection.ts';
import type { MigrationListener } from './index.ts';
import { formatMigrationUri } from './uri.ts';
import type { MigrationUri } from './uri.ts';

/** Handshakes running at once; more connections are refused until one ends. */
export const TLS_PENDING_MAX = 16;
/** Verified channels waiting for accept(); more are closed. */
export const TLS_READY_MAX = 16;

/** Turns an accepted channel into a verified one, or rejects (see tls.ts). */
export type ChannelUpgrade = (
  conn: MigrationConnection,
  signal: AbortSignal,
) => Promise<MigrationConnection>;

/** Told about every refused channel: why, and which connection it was. */
export type ChannelRefused = (err: Error, description: string) => void;

export class TlsListener implements MigrationListener {
  readonly #inner: MigrationListener;
  readonly #upgrade: ChannelUpgrade;
  readonly #refused: ChannelRefused;
  readonly #abort = new AbortController();
  readonly #pending = new Set<MigrationConnection>();
  readonly #ready = new AcceptQueue(TLS_READY_MAX);

  constructor(inner: MigrationListener, upgrade: ChannelUpgrade, refused: ChannelRefused) {
    this.#inner = inner;
    this.#upgrade = upgrade;
    this.#refused = refused;
    // Every running handshake listens to the signal.
    setMaxListeners(TLS_PENDING_MAX + 4, this.#abort.signal);
    void this.#acceptLoop();
  }

  get uri(): MigrationUri {
    return this.#inner.uri;
  }

  accept(signal?: AbortSignal): Promise<MigrationConnection> {
    return this.#ready.accept(signal);
  }

  /** Stops listening; handshakes in progress and channels not taken are dropped. */
  async close(): Promise<void> {
    this.#abort.abort(new Error(`${this.#describe()}: listener closed`));
    for (const c of this.#pending) c.destroy();
    this.#ready.drop();
    await this.#inner.close();
    this.#ready.fail(new Error(`${this.#describe()}: listener closed`));
  }

  #describe(): string {
    return formatMigrationUri(this.#inner.uri);
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let raw: MigrationConnection;
      try {
        raw = await this.#acceptOne();
      } catch (err) {
        this.#ready.fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (this.#pending.size >= TLS_PENDING_MAX) {
        raw.destroy();
        this.#refused(
          new Error(`${TLS_PENDING_MAX} TLS handshakes already running`),
          raw.description,
        );
        continue;
      }
      this.#pending.add(raw);
      this.#upgrade(raw, this.#abort.signal).then(
        (conn) => {
          this.#pending.delete(raw);
          this.#ready.deliver(conn);
        },
        (err: unknown) => {
          this.#pending.delete(raw);
          raw.destroy();
          if (this.#abort.signal.aborted) return;
          this.#refused(err instanceof Error ? err : new Error(String(err)), raw.description);
        },
      );
    }
  }

  /** One inner accept, with a signal of its own: the inner listener may keep its listener. */
  async #acceptOne(): Promise<MigrationConnection> {
    const one = new AbortController();
    const onAbort = () => one.abort(this.#abort.signal.reason);
    this.#abort.signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.#inner.accept(one.signal);
    } finally {
      this.#abort.signal.removeEventListener('abort', onAbort);
    }
  }
}
