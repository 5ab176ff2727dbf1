/**
 * The VFIO byte counter behind `query-migrate`'s `vfio: {transferred}` (qemu-migration.md §5.1):
 * device data bytes sent. On the main channel only record payloads count (not the delimiters);
 * multifd packets count whole, with their 12-byte header. One counter per VM, shared by its
 * devices, reset when a migration starts.
 */
export class VfioMigrationStats {
  #transferred = 0;

  get transferred(): number {
    return this.#transferred;
  }

  /** `vfio_mig_add_bytes_transferred`. */
  add(bytes: number): void {
    this.#transferred += bytes;
  }

  /** `vfio_reset_bytes_transferred`, at `migrate_init`. */
  reset(): void {
    this.#transferred = 0;
  }
}
