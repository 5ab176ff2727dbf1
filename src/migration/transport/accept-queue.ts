/**
 * Connections handed from whoever produces them (a server's 'connection' event, a finished
 * TLS handshake) to `accept()` callers: taken in arrival order, at most `max` waiting, more
 * closed. Once failed (the listener closed or broke) every accept, now and later, rejects.
 */
import type { MigrationConnection } from './connection.ts';

interface Waiter {
  resolve: (c: MigrationConnection) => void;
  reject: (e: Error) => void;
}

export class AcceptQueue {
  readonly #max: number;
  readonly #ready: MigrationConnection[] = [];
  #waiters: Waiter[] = [];
  #failure: Error | null = null;

  constructor(max: number) {
    this.#max = max;
  }

  /** The next connection; `signal` withdraws this accept. */
  accept(signal?: AbortSignal): Promise<MigrationConnection> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#failure) return Promise.reject(this.#failure);
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        reject(signal!.reason as Error);
      };
      // The signal may outlive many accepts: each one stops listening once settled.
      const settled = () => signal?.removeEventListener('abort', onAbort);
      const w: Waiter = {
        resolve: (c) => {
          settled();
          resolve(c);
        },
        reject: (e) => {
          settled();
          reject(e);
        },
      };
      this.#waiters.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Gives `conn` to a waiting accept, or keeps it; closes it when full or failed. */
  deliver(conn: MigrationConnection): void {
    const w = this.#waiters.shift();
    if (w) w.resolve(conn);
    else if (this.#ready.length < this.#max && this.#failure === null) this.#ready.push(conn);
    else conn.destroy();
  }

  /** Closes the connections nobody took yet. */
  drop(): void {
    for (const c of this.#ready.splice(0)) c.destroy();
  }

  /** Every accept from now on rejects with the first `err`. */
  fail(err: Error): void {
    this.#failure ??= err;
    for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
  }
}
