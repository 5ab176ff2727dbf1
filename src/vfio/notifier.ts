/**
 * The migration notifier of a VFIO device (qemu-migration.md §3.3): when a migration fails or
 * is cancelled, the device goes back to RUNNING — unconditionally, even for a paused guest —
 * and is reset if that fails. It runs after `saveCleanup`, so the data fd is already closed.
 * QEMU ignores the outcome; we report it as a warning.
 */
import type { MigrationNotifiers } from '../migration/notifiers.ts';
import { MigState } from '../uapi/index.ts';
import { errorMessage } from './error-message.ts';
import type { VfioListeners } from './events.ts';
import type { VFIOMigration } from './migration.ts';

export function addVfioMigrationNotifier(
  notifiers: MigrationNotifiers,
  m: VFIOMigration,
  listeners: VfioListeners,
): () => void {
  return notifiers.add(async (event) => {
    if (event !== 'precopy-failed') return;
    try {
      await m.state.setOrReset(MigState.RUNNING);
    } catch (err) {
      listeners.warning?.(
        `vfio ${m.name}: back to RUNNING after a failed migration: ${errorMessage(err)}`,
      );
    }
  });
}
