/**
 * QMP events of the migration (qemu-migration.md §5.3): MIGRATION on every status change of
 * either side and MIGRATION_PASS on every non-periodic RAM dirty-bitmap sync — both only
 * with the `events` capability. This layer knows nothing of QMP: listeners receive QAPI-shaped
 * events and the composition root forwards them.
 */
import type { MigrationOptions } from './options/index.ts';
import type { MigrationStatus } from './status.ts';

export type MigrationEvent =
  | { readonly event: 'MIGRATION'; readonly data: { readonly status: MigrationStatus } }
  | { readonly event: 'MIGRATION_PASS'; readonly data: { readonly pass: number } };

export type MigrationEventListener = (event: MigrationEvent) => void;

export class MigrationEvents {
  readonly #options: MigrationOptions;
  readonly #listeners: MigrationEventListener[] = [];

  constructor(options: MigrationOptions) {
    this.#options = options;
  }

  /** Subscribes; returns the unsubscribe function. */
  on(listener: MigrationEventListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** `migrate_generate_event`: a status change. */
  status(status: MigrationStatus): void {
    this.#emit({ event: 'MIGRATION', data: { status } });
  }

  /** `qapi_event_send_migration_pass`. */
  pass(pass: number): void {
    this.#emit({ event: 'MIGRATION_PASS', data: { pass } });
  }

  #emit(event: MigrationEvent): void {
    if (!this.#options.capability('events')) return;
    for (const listener of [...this.#listeners]) {
      // A listener's failure must not break the migration that reports to it.
      try {
        listener(event);
      } catch (err) {
        process.emitWarning(`migration event listener failed: ${String(err)}`);
      }
    }
  }
}
