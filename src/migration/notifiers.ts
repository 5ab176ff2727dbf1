/**
 * Migration state notifiers (`migration_add_notifier`): components that must act when a
 * migration starts, completes or fails — VFIO puts devices back to RUNNING on failure
 * (qemu-migration.md §3.3).
 */
export type MigrationEventType =
  /** `MIG_EVENT_PRECOPY_SETUP`: the source entered setup. */
  | 'precopy-setup'
  /** `MIG_EVENT_PRECOPY_DONE`: the source completed. */
  | 'precopy-done'
  /** `MIG_EVENT_PRECOPY_FAILED`: the source failed or was cancelled (from cleanup). */
  | 'precopy-failed';

export type MigrationNotifier = (event: MigrationEventType) => Promise<void> | void;

export class MigrationNotifiers {
  readonly #notifiers: MigrationNotifier[] = [];

  add(notifier: MigrationNotifier): () => void {
    this.#notifiers.push(notifier);
    return () => {
      const i = this.#notifiers.indexOf(notifier);
      if (i >= 0) this.#notifiers.splice(i, 1);
    };
  }

  /** Calls every notifier in registration order; failures are collected, none is skipped. */
  async notify(event: MigrationEventType): Promise<Error[]> {
    const errors: Error[] = [];
    for (const n of [...this.#notifiers]) {
      try {
        await n(event);
      } catch (err) {
        errors.push(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return errors;
  }
}
