/**
 * `VFIOMigration`: one device's part in a migration, QEMU's hw/vfio/migration.c for our device
 * interface. It owns the device's recorded state (device-state.ts), the pre-copy estimates
 * (pending.ts) and the data buffer, and implements the SaveVMHandlers hooks exactly as
 * qemu-migration.md §1.4–§1.6 [V10] describes them:
 *
 *   source       savePrepare, saveSetup (START), saveLiveIterate (PART), statePendingEstimate,
 *                statePendingExact, saveComplete (END), saveState (FULL), saveCleanup
 *   destination  loadSetup, loadState (every section), loadCleanup, switchoverAckNeeded
 *   multifd      saveCompletePrecopyThread, loadStateBuffer, switchoverStart (§4; the transfer is
 *                migration-multifd.ts, the mode multifd.ts)
 *
 * `vfioSaveVMHandlers` is the handler table registered under `"<PCI path>/vfio"`.
 */
import type { DataFd, VfioMigrationDevice } from '../device/device.ts';
import { RunState } from '../guest/index.ts';
import type {
  LoadContext,
  PendingSizes,
  PrecopyThreadJob,
  SaveContext,
  SaveVMHandlers,
} from '../migration/savevm/handlers.ts';
import {
  VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY,
  VFIO_MIG_FLAG_DEV_CONFIG_STATE,
  VFIO_MIG_FLAG_DEV_DATA_STATE,
  VFIO_MIG_FLAG_DEV_INIT_DATA_SENT,
  VFIO_MIG_FLAG_DEV_SETUP_STATE,
  VFIO_MIG_FLAG_END_OF_STATE,
  badInput,
} from '../migration/stream/index.ts';
import type { QEMUFileReader, QEMUFileWriter } from '../migration/stream/index.ts';
import {
  MigState,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VfioError,
  isPreCopyState,
  isVfioError,
  stateName,
} from '../uapi/index.ts';
import type { MigrationFlags } from '../uapi/index.ts';
import { getVfioPciConfig, putVfioPciConfig } from './config-state.ts';
import { errorMessage } from './error-message.ts';
import { VfioDeviceState, VfioSetStateError } from './device-state.ts';
import type { StateLogEntry, VfioEnvironment } from './events.ts';
import { VfioMultifdLoad, saveMultifdState } from './migration-multifd.ts';
import type { MultifdLoadFigures } from './migration-multifd.ts';
import { loadConfigAfterIter, resolveMultifdTransfer } from './multifd.ts';
import { PrecopyEstimates, VFIO_MIG_STOP_COPY_SIZE } from './pending.ts';
import type { VfioPciProperties } from './properties.ts';
import { getToFd, putDataRecord, putFlag, readDataSize, readTag, tagName } from './records.ts';
import type { VfioMigrationStats } from './stats.ts';

/** `VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE`: the most one `read()` of the data fd asks for. */
export const VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE = 1 << 20;
/** Chunk in which a DEV_DATA_STATE payload goes from the channel to the resuming fd. */
export const VFIO_LOAD_CHUNK_SIZE = 256 << 10;

export interface VFIOMigrationOptions {
  readonly device: VfioMigrationDevice;
  /** The device id, in messages and events. */
  readonly name: string;
  readonly qomPath: string;
  /** What GET MIGRATION reported (STOP_COPY is known to be set). */
  readonly flags: MigrationFlags;
  /** PROBE DMA_LOGGING_START succeeded (`dirty_pages_supported`). */
  readonly dirtyPagesSupported: boolean;
  readonly properties: VfioPciProperties;
  readonly env: VfioEnvironment;
  readonly stats: VfioMigrationStats;
}

export class VFIOMigration {
  readonly device: VfioMigrationDevice;
  readonly name: string;
  readonly flags: MigrationFlags;
  readonly dirtyPagesSupported: boolean;
  readonly properties: VfioPciProperties;
  readonly state: VfioDeviceState;
  readonly estimates = new PrecopyEstimates();
  /**
   * Device data bytes this migration read from the device, split by the phase they were read
   * in (the per-device view of `vfio.transferred`; reset at setup).
   */
  readonly sent = { precopy: 0, stopCopy: 0 };
  /** DMA logging was started on this device (`vbasedev->dirty_tracking`). */
  dirtyTracking = false;
  readonly #env: VfioEnvironment;
  readonly #stats: VfioMigrationStats;
  /** `data_buffer`: allocated at save setup, one read's worth. */
  #dataBuffer: Uint8Array | null = null;
  #loadBuffer: Uint8Array | null = null;
  #loadCtx: LoadContext | null = null;
  /** `initial_data_sent`: DEV_INIT_DATA_SENT went out this migration. */
  #initialDataSent = false;
  /** `migrate_switchover_ack()`, captured at save setup (capabilities are fixed by then). */
  #switchoverAck = false;
  /** Device state goes over multifd channels this migration (multifd.ts). */
  #multifd = false;
  /** The destination's packets and load thread, in multifd mode (`migration->multifd`). */
  #multifdLoad: VfioMultifdLoad | null = null;
  /** The last incoming multifd transfer's figures (kept after cleanup, for queries). */
  multifdFigures: MultifdLoadFigures | null = null;

  constructor(opts: VFIOMigrationOptions) {
    this.device = opts.device;
    this.name = opts.name;
    this.flags = opts.flags;
    this.dirtyPagesSupported = opts.dirtyPagesSupported;
    this.properties = opts.properties;
    this.#env = opts.env;
    this.#stats = opts.stats;
    this.state = new VfioDeviceState({
      device: opts.device,
      name: opts.name,
      qomPath: opts.qomPath,
      events: opts.properties['migration-events'],
      env: opts.env,
    });
  }

  get p2pSupported(): boolean {
    return (this.flags & VFIO_MIGRATION_P2P) !== 0;
  }

  /** `vfio_precopy_supported`. */
  get precopySupported(): boolean {
    return (this.flags & VFIO_MIGRATION_PRE_COPY) !== 0;
  }

  /** The recorded device states with their run state and migration status (§3.1). */
  get stateLog(): readonly StateLogEntry[] {
    return this.state.log;
  }

  // ---- source ------------------------------------------------------------------------------

  /** `vfio_save_prepare` (§3.4 item 5): refuse postcopy and background snapshots. */
  savePrepare(ctx: SaveContext): void {
    // A `savevm` snapshot uses neither, whatever the capabilities say.
    if (this.#env.runState() === RunState.SAVE_VM) return;
    if (ctx.capability('postcopy-ram')) {
      throw new VfioError(
        'EOPNOTSUPP',
        `${this.name}: VFIO migration is not supported with postcopy migration`,
      );
    }
    if (ctx.capability('background-snapshot')) {
      throw new VfioError(
        'EOPNOTSUPP',
        `${this.name}: VFIO migration is not supported with background snapshot`,
      );
    }
  }

  /** `vfio_save_setup` (§1.4): the START payload is always SETUP + END_OF_STATE, 16 bytes. */
  async saveSetup(f: QEMUFileWriter, ctx: SaveContext): Promise<void> {
    this.#multifd = resolveMultifdTransfer(
      this.properties['x-migration-multifd-transfer'],
      ctx,
      this.name,
    );
    this.#switchoverAck = ctx.capability('switchover-ack');
    this.sent.precopy = 0;
    this.sent.stopCopy = 0;
    putFlag(f, VFIO_MIG_FLAG_DEV_SETUP_STATE);

    const size = Math.min(
      VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE,
      await this.#stopCopySize(VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE),
    );
    if (size <= 0) {
      // QEMU's g_try_malloc0(0) returns NULL: a device reporting 0 bytes fails setup.
      throw new VfioError(
        'ENOMEM',
        `${this.name}: Failed to allocate migration data buffer (stop-copy size is 0)`,
      );
    }
    this.#dataBuffer = new Uint8Array(size);

    if (this.precopySupported) {
      switch (this.state.current) {
        case MigState.RUNNING:
          await this.state.set(MigState.PRE_COPY, MigState.RUNNING);
          await this.estimates.query(this.state.dataFd);
          break;
        case MigState.STOP:
          // The guest is paused: saveComplete goes straight to STOP_COPY.
          break;
        default:
          throw new VfioError(
            'EINVAL',
            `${this.name}: Invalid device state ${stateName(this.state.current)}`,
          );
      }
    }
    putFlag(f, VFIO_MIG_FLAG_END_OF_STATE);
  }

  /** `vfio_is_active_iterate`: only a device in PRE_COPY* has anything to iterate. */
  isActiveIterate(): boolean {
    return isPreCopyState(this.state.current);
  }

  /**
   * `vfio_save_iterate` (§1.4): one block (≤ 1 MiB; the rate limit is not consulted, QEMU
   * accepts overshooting by one buffer), then the estimates, then the terminator. Returns
   * "done" when both estimates are 0 (only snapshot loops look at it).
   */
  async saveLiveIterate(f: QEMUFileWriter): Promise<boolean> {
    const n = await this.#saveBlock(f);
    this.estimates.consume(n);
    if (this.#switchoverAck && this.estimates.initSize === 0 && !this.#initialDataSent) {
      putFlag(f, VFIO_MIG_FLAG_DEV_INIT_DATA_SENT);
      this.#initialDataSent = true;
    } else {
      putFlag(f, VFIO_MIG_FLAG_END_OF_STATE);
    }
    return this.estimates.total === 0;
  }

  /** `vfio_state_pending_estimate` (§1.6): cached figures, no ioctl. */
  statePendingEstimate(pending: PendingSizes): void {
    if (!isPreCopyState(this.state.current)) return;
    pending.mustPrecopy += this.estimates.total;
  }

  /** `vfio_state_pending_exact` (§1.6): MIG_DATA_SIZE, plus fresh PRECOPY_INFO in pre-copy. */
  async statePendingExact(pending: PendingSizes): Promise<void> {
    pending.mustPrecopy += await this.#stopCopySize(VFIO_MIG_STOP_COPY_SIZE);
    if (isPreCopyState(this.state.current)) {
      await this.estimates.query(this.state.dataFd);
      pending.mustPrecopy += this.estimates.total;
    }
  }

  /** `vfio_save_complete_precopy` (§1.4), VM stopped: STOP_COPY, read to the end, EOS. */
  async saveComplete(f: QEMUFileWriter): Promise<void> {
    if (this.#multifd) {
      // The data goes through saveCompletePrecopyThread; the main channel gets a dummy EOS.
      putFlag(f, VFIO_MIG_FLAG_END_OF_STATE);
      return;
    }
    await this.#enterStopCopy();
    while ((await this.#saveBlock(f)) > 0) {
      // STOP_COPY ends with a read of 0; ENOMSG cannot happen there.
    }
    putFlag(f, VFIO_MIG_FLAG_END_OF_STATE);
  }

  /**
   * `save_complete_precopy_thread` (§4.4), alongside the END sections: in multifd mode the
   * STOP_COPY data and then the config as device-state packets; nothing otherwise.
   */
  saveCompletePrecopyThread(job: PrecopyThreadJob): Promise<void> {
    if (!this.#multifd) return Promise.resolve();
    const buffer = this.#dataBuffer;
    if (buffer === null) {
      return Promise.reject(new Error(`${this.name}: no data buffer (did save setup run?)`));
    }
    return saveMultifdState(job, {
      name: this.name,
      dataBufferSize: buffer.length,
      enterStopCopy: () => this.#enterStopCopy(),
      saveConfig: (f) => this.#putConfig(f),
      sent: (bytes, data) => {
        this.#stats.add(bytes);
        this.sent.stopCopy += data;
      },
    });
  }

  /** `vfio_save_state` (§1.4, §4.6): the config, in the non-iterable phase. */
  async saveState(f: QEMUFileWriter): Promise<void> {
    if (this.#multifd) {
      // The config went in the last packet; the destination may be told when to load it.
      putFlag(
        f,
        this.#configAfterIter() ? VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY : VFIO_MIG_FLAG_END_OF_STATE,
      );
      return;
    }
    await this.#putConfig(f);
  }

  /** `vfio_save_device_config_state`: DEV_CONFIG_STATE, the config, END_OF_STATE. */
  async #putConfig(f: QEMUFileWriter): Promise<void> {
    // Fetched first so a failure leaves no half-written record.
    const blob = await this.device.saveConfig();
    putFlag(f, VFIO_MIG_FLAG_DEV_CONFIG_STATE);
    putVfioPciConfig(f, blob, this.name);
    putFlag(f, VFIO_MIG_FLAG_END_OF_STATE);
  }

  /** `vfio_load_config_after_iter` for this migration. */
  #configAfterIter(): boolean {
    return loadConfigAfterIter(
      this.properties['x-migration-load-config-after-iter'],
      this.#multifd,
      this.#env.targetArm === true,
    );
  }

  /**
   * `vfio_save_cleanup` (§1.4): STOP_COPY -> STOP here, outside the downtime window; then drop
   * the buffer and estimates and close the fd. Failures are reported, not returned (the
   * migration has ended), except a failed reset, after which nothing is known of the device.
   */
  async saveCleanup(): Promise<void> {
    try {
      if (this.state.current === MigState.STOP_COPY) {
        await this.#orReport(this.state.setOrReset(MigState.STOP));
      }
    } finally {
      this.#dataBuffer = null;
      this.estimates.clear();
      this.#initialDataSent = false;
      this.#multifd = false;
      this.state.closeDataFd();
    }
  }

  // ---- destination -------------------------------------------------------------------------

  /** `vfio_load_setup` (§1.5): RESUMING, recovering to the current state on failure. */
  async loadSetup(ctx: LoadContext): Promise<void> {
    this.#multifd = resolveMultifdTransfer(
      this.properties['x-migration-multifd-transfer'],
      ctx,
      this.name,
    );
    this.#loadCtx = ctx;
    if (this.#multifd) {
      this.#multifdLoad = new VfioMultifdLoad(
        {
          name: this.name,
          resumingFd: () => this.#resumingFd(),
          loadConfig: (f) => this.#loadConfig(f),
        },
        this.properties['x-migration-max-queued-buffers-size'],
        this.#configAfterIter(),
      );
      this.multifdFigures = this.#multifdLoad.figures;
    }
    await this.state.set(MigState.RESUMING, this.state.current);
  }

  /** `vfio_load_state` (§1.5): the tag parser of one section's payload. */
  async loadState(f: QEMUFileReader): Promise<void> {
    const what = `VFIO device ${this.name} record`;
    for (;;) {
      const at = f.offset;
      const tag = await readTag(f, this.name, 'VFIO tag');
      switch (tag) {
        case VFIO_MIG_FLAG_END_OF_STATE:
          return;
        case VFIO_MIG_FLAG_DEV_SETUP_STATE: {
          const eosAt = f.offset;
          const next = await readTag(f, this.name, 'END_OF_STATE after DEV_SETUP_STATE');
          if (next !== VFIO_MIG_FLAG_END_OF_STATE) {
            throw badInput(eosAt, what, `SETUP STATE: EOS not found, got ${tagName(next)}`);
          }
          return;
        }
        case VFIO_MIG_FLAG_DEV_DATA_STATE: {
          const size = await readDataSize(f, this.name);
          if (size > 0) {
            const fd = this.#resumingFd();
            this.#loadBuffer ??= new Uint8Array(VFIO_LOAD_CHUNK_SIZE);
            await getToFd(f, fd, size, this.#loadBuffer, this.name);
          }
          break;
        }
        case VFIO_MIG_FLAG_DEV_CONFIG_STATE:
          if (this.#multifd) {
            throw badInput(at, what, 'DEV_CONFIG_STATE in the main channel but doing multifd');
          }
          return this.#loadConfig(f);
        case VFIO_MIG_FLAG_DEV_INIT_DATA_SENT:
          return this.#approveSwitchover(at, what);
        case VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY:
          // Only in multifd mode with the config loaded after the iterables (§4.5).
          if (this.#multifdLoad === null) {
            throw badInput(at, what, 'got DEV_CONFIG_LOAD_READY outside multifd transfer');
          }
          try {
            this.#multifdLoad.configLoadReady();
          } catch (err) {
            throw badInput(at, what, errorMessage(err));
          }
          return;
        default:
          throw badInput(at, what, `unknown tag ${tagName(tag)}`);
      }
    }
  }

  /**
   * `vfio_load_cleanup`: the load thread's end is awaited (the core aborted it if the load
   * failed), what it still queues is dropped, the resuming fd is closed (the state is left to
   * the VM start).
   */
  async loadCleanup(): Promise<void> {
    const load = this.#multifdLoad;
    this.#multifdLoad = null;
    await load?.stop();
    this.state.closeDataFd();
    this.#loadBuffer = null;
    this.#loadCtx = null;
    this.#multifd = false;
  }

  /** `vfio_switchover_ack_needed`: PRE_COPY devices hold the switchover until initial data. */
  switchoverAckNeeded(): boolean {
    return this.precopySupported;
  }

  /**
   * `vfio_multifd_load_state_buffer` (§4.5): one packet, kept by idx (without a copy, given
   * back through `release` once written); only in multifd mode.
   */
  loadStateBuffer(buf: Uint8Array, release: () => void = () => undefined): Promise<void> {
    const load = this.#multifdLoad;
    try {
      if (load === null) {
        throw new Error(`${this.name}: got device state packet but not doing multifd transfer`);
      }
      const bytes = Buffer.isBuffer(buf)
        ? buf
        : Buffer.from(buf.buffer, buf.byteOffset, buf.length);
      load.insert(bytes, release);
      return Promise.resolve();
    } catch (err) {
      release();
      return Promise.reject(asError(err));
    }
  }

  /**
   * `vfio_switchover_start` (§4.5): the source's downtime began; in multifd mode the load
   * thread starts writing the packets into the device. Nothing otherwise.
   */
  switchoverStart(): Promise<void> {
    const load = this.#multifdLoad;
    const ctx = this.#loadCtx;
    if (load === null || ctx === null) return Promise.resolve();
    ctx.startLoadThread(`of ${this.name}`, (signal) => load.start(signal));
    return Promise.resolve();
  }

  // ---- internals ---------------------------------------------------------------------------

  /**
   * `vfio_save_block`: one read into the data buffer. ENOMSG (pre-copy drained for now) and
   * 0 write nothing; n > 0 writes a DEV_DATA_STATE record and counts n payload bytes.
   */
  async #saveBlock(f: QEMUFileWriter): Promise<number> {
    const fd = this.state.dataFd;
    const buf = this.#dataBuffer;
    if (fd === null || buf === null) {
      throw new Error(`${this.name}: no data fd to read (device state ${this.#stateName()})`);
    }
    let n: number;
    try {
      n = await fd.read(buf);
    } catch (err) {
      if (isVfioError(err, 'ENOMSG')) return 0;
      throw new Error(`${this.name}: reading the device data failed: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    if (n === 0) return 0;
    putDataRecord(f, n === buf.length ? buf : buf.subarray(0, n));
    this.#stats.add(n);
    if (this.state.current === MigState.STOP_COPY) this.sent.stopCopy += n;
    else this.sent.precopy += n;
    if (f.needsDrain) await f.ready();
    return n;
  }

  /**
   * STOP_COPY and its saving fd. Normally the device is there already (VM-state handler); from
   * STOP this opens the saving fd.
   */
  async #enterStopCopy(): Promise<DataFd> {
    await this.state.set(MigState.STOP_COPY, MigState.STOP);
    const fd = this.state.dataFd;
    if (fd === null) throw new Error(`${this.name}: no data fd in STOP_COPY`);
    return fd;
  }

  /** MIG_DATA_SIZE, or `fallback` when the device cannot tell. */
  async #stopCopySize(fallback: number): Promise<number> {
    try {
      return await this.device.stopCopySize();
    } catch {
      return fallback;
    }
  }

  #resumingFd(): DataFd {
    const fd = this.state.dataFd;
    if (fd === null || this.state.current !== MigState.RESUMING) {
      throw new Error(
        `${this.name}: device data arrived but the device is not resuming ` +
          `(state ${this.#stateName()}; did load setup run?)`,
      );
    }
    return fd;
  }

  /** `vfio_load_device_config_state`: the config blob, then END_OF_STATE is required. */
  async #loadConfig(f: QEMUFileReader): Promise<void> {
    const blob = await getVfioPciConfig(f, this.name);
    try {
      await this.device.loadConfig(blob);
    } catch (err) {
      throw new Error(`${this.name}: Failed to load device config space: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    const at = f.offset;
    const end = await readTag(f, this.name, 'END_OF_STATE after the config');
    if (end !== VFIO_MIG_FLAG_END_OF_STATE) {
      throw badInput(
        at,
        `VFIO device ${this.name} record`,
        `Failed loading device config space, end flag incorrect ${tagName(end)}`,
      );
    }
  }

  /** DEV_INIT_DATA_SENT (§1.5, §2.5): the source sent its initial bytes; no EOS follows. */
  async #approveSwitchover(at: number, what: string): Promise<void> {
    const ctx = this.#loadCtx;
    if (!this.precopySupported || ctx === null || !ctx.capability('switchover-ack')) {
      throw badInput(at, what, 'Received INIT_DATA_SENT but switchover ack is not used');
    }
    try {
      await ctx.approveSwitchover();
    } catch (err) {
      throw new Error(`${this.name}: approving the switchover failed: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  /** Awaits `p`; a set-state failure becomes a warning, anything else is thrown. */
  async #orReport(p: Promise<void>): Promise<void> {
    try {
      await p;
    } catch (err) {
      if (!(err instanceof VfioSetStateError) && !isVfioError(err)) throw err;
      this.#env.listeners.warning?.(err.message);
    }
  }

  #stateName(): string {
    return stateName(this.state.current);
  }
}

/** `savevm_vfio_handlers`: the hooks bound to one device's migration. */
export function vfioSaveVMHandlers(m: VFIOMigration): SaveVMHandlers {
  return {
    savePrepare: (ctx) => m.savePrepare(ctx),
    saveSetup: (f, ctx) => m.saveSetup(f, ctx),
    saveCleanup: () => m.saveCleanup(),
    isActiveIterate: () => m.isActiveIterate(),
    saveLiveIterate: (f) => m.saveLiveIterate(f),
    statePendingEstimate: (p) => m.statePendingEstimate(p),
    statePendingExact: (p) => m.statePendingExact(p),
    saveComplete: (f) => m.saveComplete(f),
    saveCompletePrecopyThread: (job) => m.saveCompletePrecopyThread(job),
    saveState: (f) => m.saveState(f),
    loadSetup: (ctx) => m.loadSetup(ctx),
    loadState: (f) => m.loadState(f),
    loadStateBuffer: (buf, release) => m.loadStateBuffer(buf, release),
    loadCleanup: () => m.loadCleanup(),
    switchoverAckNeeded: () => m.switchoverAckNeeded(),
    switchoverStart: () => m.switchoverStart(),
  };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
