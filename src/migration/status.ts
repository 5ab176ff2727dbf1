/**
 * `MigrationStatus` (QAPI, spelled as on the wire) and the predicates migration.c builds on it
 * (qemu-migration.md §2.7). Both sides use it: the source walks
 * none → setup → active → [pre-switchover] → device → completed (or failed, or
 * cancelling → cancelled); the destination none → setup → active → completed | failed.
 */
export const MigrationStatus = {
  NONE: 'none',
  SETUP: 'setup',
  CANCELLING: 'cancelling',
  CANCELLED: 'cancelled',
  ACTIVE: 'active',
  POSTCOPY_ACTIVE: 'postcopy-active',
  POSTCOPY_PAUSED: 'postcopy-paused',
  POSTCOPY_RECOVER_SETUP: 'postcopy-recover-setup',
  POSTCOPY_RECOVER: 'postcopy-recover',
  COMPLETED: 'completed',
  FAILED: 'failed',
  COLO: 'colo',
  PRE_SWITCHOVER: 'pre-switchover',
  DEVICE: 'device',
  WAIT_UNPLUG: 'wait-unplug',
} as const;

export type MigrationStatus = (typeof MigrationStatus)[keyof typeof MigrationStatus];

export const MIGRATION_STATUSES: readonly MigrationStatus[] = Object.values(MigrationStatus);

export function isMigrationStatus(s: unknown): s is MigrationStatus {
  return typeof s === 'string' && (MIGRATION_STATUSES as readonly string[]).includes(s);
}

const S = MigrationStatus;

const RUNNING: ReadonlySet<MigrationStatus> = new Set([
  S.SETUP,
  S.ACTIVE,
  S.POSTCOPY_ACTIVE,
  S.POSTCOPY_PAUSED,
  S.POSTCOPY_RECOVER,
  S.PRE_SWITCHOVER,
  S.DEVICE,
  S.WAIT_UNPLUG,
  S.CANCELLING,
]);

/** `migration_is_running`: a migration holds the VM (new ones and option changes are refused). */
export function migrationIsRunning(status: MigrationStatus): boolean {
  return RUNNING.has(status);
}

/** `migration_has_failed`: the ends that restart the guest and fire 'precopy-failed'. */
export function migrationHasFailed(status: MigrationStatus): boolean {
  return status === S.FAILED || status === S.CANCELLED;
}

/** The end states: nothing more happens to this migration. */
export function migrationIsFinished(status: MigrationStatus): boolean {
  return status === S.COMPLETED || status === S.FAILED || status === S.CANCELLED;
}
