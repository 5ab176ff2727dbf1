/**
 * The save side of migration/savevm.c: what one outgoing migration writes on its main
 * channel, driving every registered entry's hooks in QEMU's order (qemu-migration.md §1.1,
 * §2.1–§2.4, §2.6).
 *
 *   header       QEVM, version, configuration; OPEN_RETURN_PATH + PING(1) with a return path
 *   setup        a START section per active entry with save_setup
 *   iterate      a PART section per active, iterate-active entry, until the budget is spent
 *   complete     SWITCHOVER_START (the caller decides), END sections (and the precopy-thread
 *                jobs), FULL sections, EOF, vmdesc
 *   cleanup      every entry's save_cleanup (saveStateCleanup)
 *
 * A hook fails by throwing; the error is rethrown naming the hook and the entry.
 */
import {
  CONFIGURATION_VMSD,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  putCommandOpenReturnPath,
  putCommandPing,
  putCommandSwitchoverStart,
  putConfiguration,
  putEof,
  putFileHeader,
  putSectionFooter,
  putSectionHeader,
  putVmdesc,
  vmdescOf,
  vmdescOldStyleDevice,
  vmdescVmsdDevice,
} from '../stream/index.ts';
import type {
  MigrationConfiguration,
  QEMUFileWriter,
  SectionHeader,
  VmdescDevice,
  VmdescVmsd,
} from '../stream/index.ts';
import type { DowntimeSpanKind, DowntimeTrace } from '../downtime-trace.ts';
import type { PendingSizes, PrecopyThreadJob, RateLimit, SaveContext } from './handlers.ts';
import type { SaveStateEntry, SaveVMRegistry } from './registry.ts';

/** The value of the PING sent right after OPEN_RETURN_PATH. */
export const RETURN_PATH_PING = 1;

export interface SaveVMOptions {
  readonly registry: SaveVMRegistry;
  readonly file: QEMUFileWriter;
  readonly ctx: SaveContext;
  /** The configuration section, or null with `send-configuration` off. */
  readonly configuration: MigrationConfiguration | null;
  readonly sendSectionFooter: boolean;
  /** Target page size, for the vmdesc. */
  readonly pageSize: number;
  /**
   * `multifd_queue_device_state`, when multifd device state is in use (§4.1): then every
   * entry's `saveCompletePrecopyThread` runs alongside the END sections.
   */
  readonly queueDeviceState?: (
    idstr: string,
    instanceId: number,
    packet: Uint8Array,
  ) => Promise<void>;
  /** Records the downtime checkpoints and each entry's time in the switchover. */
  readonly trace?: DowntimeTrace;
}

/** "save_setup of 'ram' instance 0 (section 2) failed: ..." */
export function hookError(hook: string, e: SaveStateEntry, err: unknown): Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new Error(
    `${hook} of '${e.idstr}' instance ${e.instanceId} (section ${e.sectionId}) failed: ${reason}`,
    { cause: err },
  );
}

/** Every entry's save_cleanup or load_cleanup hook; the failures, none skipped. */
export async function cleanupEntries(
  entries: readonly SaveStateEntry[],
  hook: 'saveCleanup' | 'loadCleanup',
): Promise<Error[]> {
  const errors: Error[] = [];
  for (const e of entries) {
    if (e.handlers[hook] === undefined) continue;
    try {
      await e.handlers[hook]();
    } catch (err) {
      errors.push(hookError(hook === 'saveCleanup' ? 'save_cleanup' : 'load_cleanup', e, err));
    }
  }
  return errors;
}

/**
 * `qemu_savevm_state_cleanup`: every entry's save_cleanup, also when the migration failed
 * before its setup ran; the failures, none skipped.
 */
export function saveStateCleanup(registry: SaveVMRegistry): Promise<Error[]> {
  return cleanupEntries(registry.entries(), 'saveCleanup');
}

function isActive(e: SaveStateEntry): boolean {
  return e.handlers.isActive?.() ?? true;
}

export class SaveVMState {
  readonly #f: QEMUFileWriter;
  readonly #ctx: SaveContext;
  readonly #configuration: MigrationConfiguration | null;
  readonly #footers: boolean;
  readonly #pageSize: number;
  readonly #queueDeviceState: SaveVMOptions['queueDeviceState'];
  readonly #trace: DowntimeTrace | undefined;
  /** In save order; the set of entries is fixed for the whole migration. */
  readonly #entries: readonly SaveStateEntry[];

  constructor(opts: SaveVMOptions) {
    this.#f = opts.file;
    this.#ctx = opts.ctx;
    this.#configuration = opts.configuration;
    this.#footers = opts.sendSectionFooter;
    this.#pageSize = opts.pageSize;
    this.#queueDeviceState = opts.queueDeviceState;
    this.#trace = opts.trace;
    this.#entries = opts.registry.entries();
  }

  /** `vmstate_downtime_save`: `body` timed for the entry, when traced. */
  #timed<T>(kind: DowntimeSpanKind, e: SaveStateEntry, body: () => Promise<T>): Promise<T> {
    return this.#trace === undefined ? body() : this.#trace.span(kind, e.idstr, e.instanceId, body);
  }

  /** `qemu_savevm_state_header` (+ the return-path commands of `migration_thread`), flushed. */
  async header(returnPath: boolean): Promise<void> {
    putFileHeader(this.#f);
    if (this.#configuration !== null) putConfiguration(this.#f, this.#configuration);
    if (returnPath) {
      putCommandOpenReturnPath(this.#f);
      putCommandPing(this.#f, RETURN_PATH_PING);
    }
    await this.#f.flush();
  }

  /** `qemu_savevm_state_setup`: START sections, flushed. */
  async setup(): Promise<void> {
    for (const e of this.#entries) {
      const h = e.handlers;
      if (h.saveSetup === undefined || !isActive(e)) continue;
      await this.#section(QEMU_VM_SECTION_START, e, 'save_setup', () =>
        h.saveSetup!(this.#f, this.#ctx),
      );
    }
    await this.#f.flush();
  }

  /**
   * `qemu_savevm_state_iterate`: one PART section per entry that has something to iterate,
   * stopping early once `rateLimit` is spent; the bytes are sent. True when every entry said
   * it is done (the live loop ignores it, as QEMU's does).
   */
  async iterate(rateLimit: RateLimit): Promise<boolean> {
    let allFinished = true;
    for (const e of this.#entries) {
      const h = e.handlers;
      if (h.saveLiveIterate === undefined || !isActive(e)) continue;
      if (h.isActiveIterate?.() === false) continue;
      if (rateLimit.exceeded()) return false;
      let done = false;
      await this.#section(QEMU_VM_SECTION_PART, e, 'save_live_iterate', async () => {
        done = await h.saveLiveIterate!(this.#f, rateLimit);
      });
      if (!done) allFinished = false;
    }
    // On the wire now (a small PART may be what the destination waits for), but without
    // draining the channel between passes.
    this.#f.send();
    if (this.#f.needsDrain) await this.#f.ready();
    return allFinished;
  }

  /** `qemu_savevm_state_pending_estimate`. */
  pendingEstimate(): PendingSizes {
    const pending: PendingSizes = { mustPrecopy: 0, canPostcopy: 0 };
    for (const e of this.#entries) {
      if (e.handlers.statePendingEstimate === undefined || !isActive(e)) continue;
      try {
        e.handlers.statePendingEstimate(pending);
      } catch (err) {
        throw hookError('state_pending_estimate', e, err);
      }
    }
    return pending;
  }

  /** `qemu_savevm_state_pending_exact`: may sync dirty logs and query devices. */
  async pendingExact(): Promise<PendingSizes> {
    const pending: PendingSizes = { mustPrecopy: 0, canPostcopy: 0 };
    for (const e of this.#entries) {
      if (e.handlers.statePendingExact === undefined || !isActive(e)) continue;
      try {
        await e.handlers.statePendingExact(pending);
      } catch (err) {
        throw hookError('state_pending_exact', e, err);
      }
    }
    return pending;
  }

  /** `qemu_savevm_maybe_send_switchover_start` (the caller checks the property), flushed. */
  async sendSwitchoverStart(): Promise<void> {
    putCommandSwitchoverStart(this.#f);
    await this.#f.flush();
  }

  /** `qemu_savevm_state_complete_precopy`: END, FULL, EOF, vmdesc; flushed. */
  async completePrecopy(): Promise<void> {
    await this.#completeIterable();
    await this.#completeNonIterable();
    await this.#f.flush();
  }

  /** END sections, with the precopy-thread jobs running alongside when multifd is used. */
  async #completeIterable(): Promise<void> {
    const jobs = this.#spawnPrecopyThreads();
    try {
      for (const e of this.#entries) {
        const h = e.handlers;
        if (h.saveComplete === undefined || !isActive(e)) continue;
        await this.#timed('iterable', e, () =>
          this.#section(QEMU_VM_SECTION_END, e, 'save_complete', () => h.saveComplete!(this.#f)),
        );
      }
    } catch (err) {
      jobs.abort.abort(err);
      await Promise.allSettled(jobs.running);
      throw err;
    }
    const results = await Promise.allSettled(jobs.running);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    this.#trace?.checkpoint('src-iterable-saved');
  }

  #spawnPrecopyThreads(): { abort: AbortController; running: Promise<void>[] } {
    const abort = new AbortController();
    const running: Promise<void>[] = [];
    const queue = this.#queueDeviceState;
    if (queue === undefined) return { abort, running };
    for (const e of this.#entries) {
      if (e.handlers.saveCompletePrecopyThread === undefined) continue;
      const job: PrecopyThreadJob = {
        idstr: e.idstr,
        instanceId: e.instanceId,
        signal: abort.signal,
        queueDeviceState: (packet) => queue(e.idstr, e.instanceId, packet),
      };
      const h = e.handlers;
      running.push(
        this.#timed('precopy-thread', e, () => h.saveCompletePrecopyThread!(job)).catch(
          (err: unknown) => {
            // The first failing job stops the others, as multifd_abort_device_state_save_threads.
            abort.abort(err);
            throw hookError('save_complete_precopy_thread', e, err);
          },
        ),
      );
    }
    return { abort, running };
  }

  /** FULL sections of every vmstate/save_state entry, EOF, then the vmdesc. */
  async #completeNonIterable(): Promise<void> {
    const devices: VmdescDevice[] = [];
    for (const e of this.#entries) {
      const h = e.handlers;
      if (h.saveState === undefined || h.saveStateNeeded?.() === false) continue;
      let payload = 0;
      await this.#timed('non-iterable', e, () =>
        this.#section(QEMU_VM_SECTION_FULL, e, 'save_state', async () => {
          const at = this.#f.bytesWritten;
          await h.saveState!(this.#f);
          payload = this.#f.bytesWritten - at;
        }),
      );
      devices.push(
        e.vmsd === undefined
          ? vmdescOldStyleDevice(e.idstr, e.instanceId, payload)
          : vmdescVmsdDevice(e.idstr, e.instanceId, e.vmsd),
      );
    }
    this.#trace?.checkpoint('src-non-iterable-saved');
    putEof(this.#f);
    putVmdesc(this.#f, vmdescOf(this.#pageSize, devices, this.#configurationVmsd()));
  }

  /** How QEMU ≥ 8.2 describes the configuration section in the vmdesc. */
  #configurationVmsd(): VmdescVmsd | undefined {
    const cfg = this.#configuration;
    if (cfg === null) return undefined;
    return {
      vmsd_name: CONFIGURATION_VMSD,
      version: 1,
      fields: [
        { name: 'len', type: 'uint32', size: 4 },
        { name: 'name', type: 'buffer', size: Buffer.byteLength(cfg.machineType, 'latin1') },
      ],
    };
  }

  /** Header, the hook's payload, footer; a failing hook is named. */
  async #section(
    type: SectionHeader['type'],
    e: SaveStateEntry,
    hook: string,
    body: () => Promise<unknown>,
  ): Promise<void> {
    const header: SectionHeader =
      type === QEMU_VM_SECTION_START || type === QEMU_VM_SECTION_FULL
        ? {
            type,
            sectionId: e.sectionId,
            idstr: e.idstr,
            instanceId: e.instanceId,
            versionId: e.versionId,
          }
        : { type, sectionId: e.sectionId };
    putSectionHeader(this.#f, header);
    try {
      await body();
    } catch (err) {
      throw hookError(hook, e, err);
    }
    if (this.#footers) putSectionFooter(this.#f, e.sectionId);
  }
}
