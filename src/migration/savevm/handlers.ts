/**
 * `SaveVMHandlers`: the one plugin interface through which RAM, VFIO devices and any other
 * state take part in a migration (qemu-migration.md §2.6). The core calls the hooks in QEMU's
 * order; an entry implements the ones it needs. Every hook may be async (a device may be
 * another process). A hook fails by throwing; the core fails the migration with that error,
 * naming the entry.
 */
import type { QEMUFileReader, QEMUFileWriter } from '../stream/index.ts';

/** What an entry still has to send (§1.6, §2.3); hooks add to it. */
export interface PendingSizes {
  /** Bytes that must move before the switchover (or during it). */
  mustPrecopy: number;
  /** Bytes that could move after it, in postcopy (VFIO never adds here). */
  canPostcopy: number;
}

/** The 100 ms window's byte budget (`migration_rate_exceeded`), for iterate hooks. */
export interface RateLimit {
  exceeded(): boolean;
}

/** What both sides' hooks may ask of the migration. */
export interface MigrationContext {
  /** Capability on? (`migrate_switchover_ack()`, `migrate_multifd()`, ...). */
  capability(name: string): boolean;
  /**
   * `multifd_device_state_supported`: device state may travel on the multifd channels
   * (multifd on, no mapped-ram, no compression; qemu-migration.md §4.1).
   */
  multifdDeviceState(): boolean;
  /** The migration property `send-switchover-start` (`migrate_send_switchover_start`). */
  sendSwitchoverStart(): boolean;
}

/** What a save hook may ask of the migration in progress. */
export interface SaveContext extends MigrationContext {
  /** The guest is running (switchover-ack only holds the switchover while it runs). */
  guestRunning(): boolean;
}

/** A job of the load-thread pool: resolves when done; `signal` aborts when the load fails. */
export type LoadThread = (signal: AbortSignal) => Promise<void>;

/** What a load hook may ask of the incoming migration. */
export interface LoadContext extends MigrationContext {
  /**
   * `qemu_loadvm_approve_switchover`: an entry's initial data has arrived (VFIO's
   * DEV_INIT_DATA_SENT). Throws when no approval was pending (a spurious approval).
   */
  approveSwitchover(): Promise<void>;
  /**
   * `qemu_loadvm_start_load_thread`: runs `job` alongside the load; the load waits for every
   * job after the main channel's EOF, and the first job to fail fails the load (§2.6, §4.5).
   */
  startLoadThread(name: string, job: LoadThread): void;
  /** `multifd_recv_sync_main`: every multifd channel reached its SYNC (RAM's MULTIFD_FLUSH). */
  multifdRecvSync(): Promise<void>;
}

/** A `save_complete_precopy_thread` job (multifd device state, §4.4). */
export interface PrecopyThreadJob {
  readonly idstr: string;
  readonly instanceId: number;
  /** Set when the core aborts the jobs after an error elsewhere. */
  readonly signal: AbortSignal;
  /**
   * `multifd_queue_device_state`: hand one device-state packet to a multifd channel. Resolves
   * once it was written; until then `packet` belongs to the channel (it is not copied).
   */
  queueDeviceState(packet: Uint8Array): Promise<void>;
}

export interface SaveVMHandlers {
  // --- source -----------------------------------------------------------------------------
  /** `save_prepare`, at `migrate` before any state is reset: throw to refuse the migration. */
  savePrepare?(ctx: SaveContext): void;
  /** `save_setup`, inside this entry's START section. */
  saveSetup?(f: QEMUFileWriter, ctx: SaveContext): Promise<void>;
  /** `save_cleanup`, when the migration ends either way; may run without a prior setup. */
  saveCleanup?(): Promise<void>;
  /** `is_active`: false leaves the entry out of every loop (default true). */
  isActive?(): boolean;
  /** `is_active_iterate`: false skips `saveLiveIterate` this pass (default true). */
  isActiveIterate?(): boolean;
  /**
   * `save_live_iterate`, inside a PART section. Returns true when the entry has nothing left
   * ("done"); the live loop ignores it, like QEMU's.
   */
  saveLiveIterate?(f: QEMUFileWriter, rateLimit: RateLimit): Promise<boolean>;
  /** `state_pending_estimate`: cheap, cached figures. */
  statePendingEstimate?(pending: PendingSizes): void;
  /** `state_pending_exact`: may sync dirty logs or query devices. */
  statePendingExact?(pending: PendingSizes): Promise<void>;
  /** `save_complete` (was `save_live_complete_precopy`), inside an END section, VM stopped. */
  saveComplete?(f: QEMUFileWriter): Promise<void>;
  /** `save_complete_precopy_thread`: runs in parallel with `saveComplete` (multifd). */
  saveCompletePrecopyThread?(job: PrecopyThreadJob): Promise<void>;
  /** `save_state`: a non-iterable entry's FULL section, after every END section. */
  saveState?(f: QEMUFileWriter): Promise<void>;
  /** `vmsd->needed`: false leaves the FULL section out this time (default true). */
  saveStateNeeded?(): boolean;

  // --- destination ------------------------------------------------------------------------
  /** `load_setup`, after the header, before any section. */
  loadSetup?(ctx: LoadContext): Promise<void>;
  /** `load_state`: parse this entry's payload of one START/PART/END/FULL section. */
  loadState?(f: QEMUFileReader, versionId: number): Promise<void>;
  /**
   * `load_state_buffer`: one device-state packet from a multifd channel. `buf` is lent: the
   * handler may keep it instead of copying it, and calls `release` once it no longer needs it
   * (QEMU's handler copies; giving the buffer back saves the destination a MiB per packet).
   */
  loadStateBuffer?(buf: Uint8Array, release?: () => void): Promise<void>;
  /** `load_cleanup`, when the incoming migration ends either way. */
  loadCleanup?(): Promise<void>;
  /** `switchover_ack_needed` (8.1–11.0): counted after `loadSetup` with the capability on. */
  switchoverAckNeeded?(): boolean;
  /** `switchover_start`: the main channel's SWITCHOVER_START command arrived (a load thread may start here). */
  switchoverStart?(): Promise<void>;
}
