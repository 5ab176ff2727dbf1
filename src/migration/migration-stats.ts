/**
 * QEMU's `mig_stats` (migration/migration-stats.h): the counters one outgoing migration
 * accumulates, reset by `migrate_init`. RAM adds its pages and dirty syncs here; the source
 * loop adds rates; `query-migrate` reads them (qemu-migration.md §5.1).
 */
export class MigrationStats {
  /** Zero pages sent as ZERO records ("duplicate"). */
  zeroPages = 0;
  /** Pages sent whole ("normal"). */
  normalPages = 0;
  /** RAM bytes (records, EOS) written while the guest ran. */
  precopyBytes = 0;
  /** RAM bytes written while the guest was stopped. */
  downtimeBytes = 0;
  postcopyBytes = 0;
  multifdBytes = 0;
  /** Dirty-bitmap syncs (`migration_bitmap_sync`). */
  dirtySyncCount = 0;
  /** Non-periodic syncs: the MIGRATION_PASS number (QEMU ≥ 9.2). */
  iterationCount = 0;
  /** Pages dirtied per second, over the last period of at least one second. */
  dirtyPagesRate = 0;
  /** Dirty RAM bytes right after the last sync (feeds expected-downtime). */
  dirtyBytesLastSync = 0;
  dirtySyncMissedZeroCopy = 0;
  postcopyRequests = 0;

  /** `memset(&mig_stats, 0, ...)` in `migrate_init`: every counter back to its initial value. */
  reset(): void {
    Object.assign(this, new MigrationStats());
  }

  /** Pages RAM has put on the wire (`ram_get_total_transferred_pages`). */
  get transferredPages(): number {
    return this.zeroPages + this.normalPages;
  }
}
