/**
 * The device interface: what a VFIO device fd offers for migration (vfio-uapi.md §5–§8),
 * shaped as async calls so a backend may live in another process. Every refusal is a
 * VfioError carrying the errno the kernel would return.
 */
import type { IovaRange, MigState, MigrationFlags, PrecopyInfo } from '../uapi/index.ts';

/** A migration data fd (vfio-uapi.md §6): an anonymous stream file, saving or resuming. */
export interface DataFd {
  readonly kind: 'saving' | 'resuming';
  /**
   * read(2) into `buf`: the number of bytes copied. A saving fd in STOP_COPY returns 0 at the
   * end of the state, forever. In PRE_COPY* a temporary end throws ENOMSG. A session that
   * ended throws ENODEV; a resuming fd throws EBADF (opened write-only).
   */
  read(buf: Uint8Array): Promise<number>;
  /** write(2) of `buf` to a resuming fd: bytes accepted. A saving fd throws EBADF. */
  write(buf: Uint8Array): Promise<number>;
  /** pread(2)/pwrite(2): always ESPIPE, the files are streams. */
  pread(buf: Uint8Array, offset: number): Promise<number>;
  pwrite(buf: Uint8Array, offset: number): Promise<number>;
  /**
   * `VFIO_MIG_GET_PRECOPY_INFO` on this fd (§6.2). `argsz` defaults to 24, `flags` is the
   * caller's input (echoed by v1 drivers). A resuming fd throws ENOTTY.
   */
  precopyInfo(argsz?: number, flags?: number): Promise<PrecopyInfo>;
  /** close(2). Never changes the device state; later calls throw EBADF. */
  close(): void;
}

/** Device DMA dirty logging, features 6/7/8 (vfio-uapi.md §7). */
export interface DmaLogging {
  /** `PROBE | DMA_LOGGING_START`: false when the device has no logging ops (ENOTTY). */
  probe(): Promise<boolean>;
  /** DMA_LOGGING_START. Resolves the page size the driver chose (written back by the kernel). */
  start(ranges: readonly IovaRange[], pageSize: bigint): Promise<bigint>;
  /** DMA_LOGGING_STOP. Succeeds when logging was not started. */
  stop(): Promise<void>;
  /**
   * DMA_LOGGING_REPORT: read-and-clear of [iova, iova+length); ORs bits into `bitmap`, which
   * must hold `reportBitmapBytes(length, pageSize)` bytes (EFAULT otherwise).
   */
  report(iova: bigint, length: bigint, pageSize: bigint, bitmap: Uint8Array): Promise<void>;
}

export interface VfioMigrationDevice {
  /** Stable name for logs and reports, e.g. "nic0". */
  readonly id: string;
  /** GET `MIGRATION`: the flags. Throws ENOTTY when the device is not migratable. */
  migrationFlags(): Promise<MigrationFlags>;
  /** GET `MIG_DEVICE_STATE`. */
  getState(): Promise<MigState>;
  /**
   * SET `MIG_DEVICE_STATE` (§5.2, §4.4): walks the path one arc at a time. Resolves the new
   * data fd when the final arc opens a session, else null. On failure the device is left in the
   * state reached after the last arc that succeeded (use getState).
   */
  setState(target: number): Promise<DataFd | null>;
  /** GET `MIG_DATA_SIZE`: estimated bytes STOP_COPY would produce. Callable in any state. */
  stopCopySize(): Promise<number>;
  readonly dmaLogging: DmaLogging;
  /** `VFIO_DEVICE_RESET`: state forced to RUNNING, every data fd disabled (ENODEV). */
  reset(): Promise<void>;
  /**
   * The config space the VMM emulates for the device (for vfio-pci: PCI config and MSI-X).
   * Saved in the non-iterable phase; a blob that does not fit the device throws EINVAL.
   */
  saveConfig(): Promise<Uint8Array>;
  loadConfig(blob: Uint8Array): Promise<void>;
  /** Optional introspection for simulated devices: SHA-256 of the internal state. */
  stateDigest?(): Promise<string>;
  /** Close the device fd: data fds disabled, logging stopped. */
  close(): Promise<void>;
}

/**
 * Where a device's DMA lands: guest memory seen through the IOMMU. Addresses are IOVAs
 * (guest-physical without a vIOMMU).
 */
export interface DmaMemory {
  /** The IOVA windows a device may target, e.g. guest RAM below and above 4 GiB. */
  readonly regions: readonly { iova: number; length: number }[];
  write(iova: number, data: Uint8Array): void;
  read(iova: number, length: number): Uint8Array;
}
