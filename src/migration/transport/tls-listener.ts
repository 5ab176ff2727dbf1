/**
 * A listener that hands out only channels whose TLS handshake and peer check succeeded. Each
 * accepted socket is upgraded on its own, so a peer that connects and stays silent, or one
 * that is refused, never holds up the real source; refusals are reported and listening goes
 * on, as QEMU's destination reports a failed handshake and keeps waiting (migration/tls.c).
 * Handshakes in progress and channels not yet taken are both bounded.
 */
import { setMaxListeners } from 'node:events';
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

interface Waiter {
  resolve: (c: MigrationConnection) => void;
  reject: (e: Error) => void;
}

export class TlsListener implements MigrationListener {
  readonly #inner: MigrationListener;
  readonly #upgrade: ChannelUpgrade;
  readonly #refused: ChannelRefused;
  readonly #abort = new AbortController();
  readonly #pending = new Set<MigrationConnection>();
  readonly #ready: MigrationConnection[] = [];
  #waiters: Waiter[] = [];
  #failure: Error | null = null;

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
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      this.#waiters.push(w);
      signal?.addEventListener(
        'abort',
        () => {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          reject(signal.reason as Error);
        },
        { once: true },
      );
    });
  }

  /** Stops listening; handshakes in progress and channels not taken are dropped. */
  async close(): Promise<void> {
    this.#abort.abort(new Error(`${this.#describe()}: listener closed`));
    for (const c of this.#pending) c.destroy();
    for (const c of this.#ready.splice(0)) c.destroy();
    await this.#inner.close();
    this.#fail(new Error(`${this.#describe()}: listener closed`));
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
        this.#fail(err instanceof Error ? err : new Error(String(err)));
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
          this.#deliver(conn);
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

  #deliver(conn: MigrationConnection): void {
    const w = this.#waiters.shift();
    if (w) w.resolve(conn);
    else if (this.#ready.length < TLS_READY_MAX && this.#failure === null) this.#ready.push(conn);
    else conn.destroy();
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }
}
