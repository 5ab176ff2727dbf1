/**
 * Migration blockers (`migrate_add_blocker`): reasons a VM cannot be migrated right now,
 * reported by `migrate` errors and `query-migrate` `blocked-reasons` (qemu-migration.md §3.4).
 */
export interface MigrationBlocker {
  /** The message QEMU would give, e.g. "VFIO device doesn't support migration". */
  readonly reason: string;
}

export class MigrationBlockers {
  readonly #blockers: MigrationBlocker[] = [];

  /** Adds a blocker; returns the function that removes it. */
  add(reason: string): () => void {
    const blocker: MigrationBlocker = { reason };
    this.#blockers.push(blocker);
    return () => {
      const i = this.#blockers.indexOf(blocker);
      if (i >= 0) this.#blockers.splice(i, 1);
    };
  }

  /** The reasons, in the order they were added. */
  reasons(): string[] {
    return this.#blockers.map((b) => b.reason);
  }

  get blocked(): boolean {
    return this.#blockers.length > 0;
  }
}
