/**
 * Pending-size accounting of one device (qemu-migration.md §1.6 [V10]): the cached pre-copy
 * estimates from VFIO_MIG_GET_PRECOPY_INFO, consumed as data is read so the cheap estimate hook
 * needs no ioctl.
 */
import type { DataFd } from '../device/device.ts';

/**
 * `VFIO_MIG_STOP_COPY_SIZE`: reported when MIG_DATA_SIZE fails, big enough that the downtime
 * limit is never believed met.
 */
export const VFIO_MIG_STOP_COPY_SIZE = 100 * 1024 * 1024 * 1024;

export class PrecopyEstimates {
  /** `precopy_init_size`: initial bytes not read yet. */
  initSize = 0;
  /** `precopy_dirty_size`: bytes changed since they were read. */
  dirtySize = 0;

  get total(): number {
    return this.initSize + this.dirtySize;
  }

  /** `vfio_query_precopy_size`: a failed query leaves both at 0. */
  async query(fd: DataFd | null): Promise<void> {
    this.clear();
    if (fd === null) return;
    try {
      const info = await fd.precopyInfo();
      this.initSize = info.initialBytes;
      this.dirtySize = info.dirtyBytes;
    } catch {
      // QEMU ignores the ioctl's failure: no estimate is an estimate of 0.
    }
  }

  /**
   * `vfio_update_estimated_pending_data` after a block of `n` bytes: 0 means the device has
   * nothing right now (both 0); otherwise initial bytes are consumed first, then dirty ones.
   */
  consume(n: number): void {
    if (n === 0) {
      this.clear();
      return;
    }
    const fromInit = Math.min(this.initSize, n);
    this.initSize -= fromInit;
    this.dirtySize -= Math.min(this.dirtySize, n - fromInit);
  }

  clear(): void {
    this.initSize = 0;
    this.dirtySize = 0;
  }
}
