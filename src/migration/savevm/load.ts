/**
 * The load side of migration/savevm.c, `qemu_loadvm_state` (qemu-migration.md §1.1, §2.5,
 * §2.6): header and configuration, every entry's load_setup, switchover-ack counting, then
 * the section loop —
 *
 *   START/FULL  bind the section id to the local entry (idstr + instance id), check the
 *               version, let the entry parse its payload, check the footer
 *   PART/END    the entry bound by the START
 *   COMMAND     OPEN_RETURN_PATH, PING → PONG, SWITCHOVER_START; everything else is refused
 *   EOF         the end; the load threads entries started (multifd device state, §4.5) are
 *               waited for, then the vmdesc that follows is read and discarded
 *
 * The first load thread to fail, or an `abort` from outside (a multifd channel broke), fails
 * the load at once: the other threads are told to stop and the main channel is let go of.
 *
 * Every error names the section (idstr, instance, section id) and the stream offset. Loading
 * changes guest state but never starts anything: what happens after is the caller's.
 */
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_SWITCHOVER_START,
  QEMU_VM_COMMAND,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_VMDESCRIPTION,
  StreamError,
  VMDESC_MAX,
  badInput,
  configurationMismatch,
  isStreamError,
  messageU32,
  putRpPong,
  putRpSwitchoverAck,
  readCommand,
  readConfiguration,
  readFileHeader,
  readSectionFooter,
  readSectionHeader,
  readSectionType,
} from '../stream/index.ts';
import type {
  LocalConfiguration,
  QEMUFileReader,
  QEMUFileWriter,
  SectionHeader,
  SectionType,
} from '../stream/index.ts';
import type { MigrationCapability } from '../options/index.ts';
import type { DowntimeTrace } from '../downtime-trace.ts';
import type { LoadContext, LoadThread } from './handlers.ts';
import type { SaveStateEntry, SaveVMRegistry } from './registry.ts';
import { cleanupEntries, hookError } from './save.ts';

/**
 * Watches a load as it goes: tracing, and the fault layer (faults/plan.ts) that learns the
 * destination's phase from it and can make a section's load fail. A `section` that throws
 * fails the load inside that section, with its name and offset, as a failing entry would.
 */
export interface LoadObserver {
  /** Before the entry parses the payload of a START, PART, END or FULL section. */
  section?(idstr: string, instanceId: number, type: SectionType): void | Promise<void>;
  /** The EOF marker was read: every section is in. */
  eof?(): void;
  /**
   * Before a load thread runs: what it returns is awaited first (the fault layer may hold
   * the thread back); `signal` aborts when the load fails meanwhile.
   */
  loadThread?(name: string, signal: AbortSignal): void | Promise<void>;
}

export interface LoadVMOptions {
  readonly registry: SaveVMRegistry;
  readonly file: QEMUFileReader;
  /** What the configuration section must match, or null with `send-configuration` off. */
  readonly local: LocalConfiguration | null;
  readonly sendSectionFooter: boolean;
  capability(name: MigrationCapability): boolean;
  /** Opens the return path on the same channel; null when the channel has none (file:). */
  readonly openReturnPath: (() => QEMUFileWriter) | null;
  readonly observer?: LoadObserver;
  /** `multifd_device_state_supported()` on this side. */
  readonly multifdDeviceState?: boolean;
  /** The migration property `send-switchover-start`. */
  readonly sendSwitchoverStart?: boolean;
  /** `multifd_recv_sync_main`, with multifd channels. */
  readonly multifdRecvSync?: () => Promise<void>;
  /** Records each END / FULL section's load and each load thread (`vmstate_downtime_load`). */
  readonly trace?: DowntimeTrace;
}

/**
 * `qemu_loadvm_load_state_buffer`: one device-state packet from a multifd channel, for the
 * entry `idstr` / `instanceId` (qemu-migration.md §4.3), with QEMU's messages.
 */
export async function loadStateBuffer(
  registry: SaveVMRegistry,
  idstr: string,
  instanceId: number,
  data: Uint8Array,
  release: () => void = () => undefined,
): Promise<void> {
  const e = registry.find(idstr, instanceId);
  if (e === undefined) {
    release();
    throw new Error(`Unknown idstr ${idstr} or instance id ${instanceId} for load state buffer`);
  }
  if (e.handlers.loadStateBuffer === undefined) {
    release();
    throw new Error(`idstr ${idstr} / instance ${instanceId} has no load state buffer operation`);
  }
  await e.handlers.loadStateBuffer(data, release);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sectionName(e: SaveStateEntry, sectionId: number): string {
  return `section '${e.idstr}' instance ${e.instanceId} (section id ${sectionId})`;
}

/** The error seen from the section it happened in: context plus the offset. */
function inSection(err: unknown, what: string, offset: number): StreamError {
  if (isStreamError(err)) return err.withContext(what);
  const reason = message(err);
  return new StreamError(`${what} at offset ${offset}: ${reason}`, offset, what, { cause: err });
}

export class LoadVMState {
  readonly #f: QEMUFileReader;
  readonly #registry: SaveVMRegistry;
  readonly #local: LocalConfiguration | null;
  readonly #footers: boolean;
  readonly #capability: (name: MigrationCapability) => boolean;
  readonly #openReturnPath: (() => QEMUFileWriter) | null;
  readonly #observer: LoadObserver | undefined;
  readonly #trace: DowntimeTrace | undefined;
  readonly #entries: readonly SaveStateEntry[];
  /** `se->load_section_id`: the incoming section ids bound by START/FULL. */
  readonly #bound = new Map<number, SaveStateEntry>();
  readonly #ctx: LoadContext;
  #rp: QEMUFileWriter | null = null;
  /** `switchover_ack_pending_num`. */
  #ackPending = 0;
  /** The load-thread pool (`load_threads`). */
  readonly #threads: Promise<void>[] = [];
  readonly #threadAbort = new AbortController();
  /** Why the load was aborted from a thread or from outside, if it was. */
  #failure: Error | null = null;
  /** Things QEMU only reports (a missing vmdesc). */
  readonly warnings: string[] = [];

  constructor(opts: LoadVMOptions) {
    this.#f = opts.file;
    this.#registry = opts.registry;
    this.#local = opts.local;
    this.#footers = opts.sendSectionFooter;
    this.#capability = (name) => opts.capability(name);
    this.#openReturnPath = opts.openReturnPath;
    this.#observer = opts.observer;
    this.#trace = opts.trace;
    this.#entries = opts.registry.entries();
    const sync = opts.multifdRecvSync ?? (() => Promise.resolve());
    this.#ctx = {
      capability: (name) => opts.capability(name as MigrationCapability),
      multifdDeviceState: () => opts.multifdDeviceState === true,
      sendSwitchoverStart: () => opts.sendSwitchoverStart === true,
      approveSwitchover: () => this.#approveSwitchover(),
      startLoadThread: (name, job) => this.#startLoadThread(name, job),
      multifdRecvSync: sync,
    };
  }

  /** The return path, once the source opened it. */
  get returnPath(): QEMUFileWriter | null {
    return this.#rp;
  }

  /** Approvals still awaited before SWITCHOVER_ACK is sent. */
  get switchoverAckPending(): number {
    return this.#ackPending;
  }

  /**
   * `qemu_loadvm_state`: resolves once EOF was read, every load thread finished and the
   * vmdesc was read.
   */
  async load(): Promise<void> {
    try {
      await this.#header();
      await this.#setup();
      if (this.#capability('switchover-ack')) {
        for (const e of this.#entries) {
          if (e.handlers.switchoverAckNeeded?.() === true) this.#ackPending++;
        }
      }
      await this.#main();
      await this.#waitLoadThreads();
      await this.#skipVmdesc();
    } catch (err) {
      // What broke first is what the load failed of (a closed reader only follows from it).
      throw this.#failure ?? err;
    } finally {
      if (this.#failure === null) this.#threadAbort.abort(new Error('operation cancelled'));
    }
  }

  /**
   * Fails the load now (a multifd channel broke, a load thread failed): the load threads are
   * told to stop (`load_threads_abort`) and the main channel is no longer read.
   */
  abort(err: Error): void {
    if (this.#failure !== null) return;
    this.#failure = err;
    this.#threadAbort.abort(err);
    this.#f.close();
  }

  #startLoadThread(name: string, job: LoadThread): void {
    const signal = this.#threadAbort.signal;
    const run = async () => {
      await this.#observer?.loadThread?.(name, signal);
      return job(signal);
    };
    const traced =
      this.#trace === undefined ? run() : this.#trace.span('load-thread', name, 0, run);
    const running = traced.catch((err: unknown) => {
      const e = new Error(`load thread ${name} failed: ${message(err)}`, { cause: err });
      this.abort(e);
      throw e;
    });
    // Awaited after EOF; until then a failure acts through abort().
    running.catch(() => undefined);
    this.#threads.push(running);
  }

  /** `qemu_loadvm_thread_pool_wait`: every load thread, after the main channel's EOF. */
  async #waitLoadThreads(): Promise<void> {
    const results = await Promise.allSettled(this.#threads);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** `qemu_loadvm_state_cleanup`: every entry's load_cleanup; the failures, none skipped. */
  cleanup(): Promise<Error[]> {
    return cleanupEntries(this.#entries, 'loadCleanup');
  }

  async #header(): Promise<void> {
    await readFileHeader(this.#f);
    if (this.#local === null) return;
    const at = this.#f.offset;
    const cfg = await readConfiguration(this.#f);
    const mismatch = configurationMismatch(cfg, this.#local);
    if (mismatch !== null) throw badInput(at, 'configuration section', mismatch);
  }

  async #setup(): Promise<void> {
    for (const e of this.#entries) {
      if (e.handlers.loadSetup === undefined || e.handlers.isActive?.() === false) continue;
      try {
        await e.handlers.loadSetup(this.#ctx);
      } catch (err) {
        throw hookError('load_setup', e, err);
      }
    }
  }

  /** `qemu_loadvm_state_main`. */
  async #main(): Promise<void> {
    for (;;) {
      const at = this.#f.offset;
      const type = await readSectionType(this.#f);
      switch (type) {
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL:
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END:
          await this.#section(await readSectionHeader(this.#f, type), at);
          break;
        case QEMU_VM_COMMAND:
          await this.#command(at);
          break;
        case QEMU_VM_EOF:
          this.#observer?.eof?.();
          return;
      }
    }
  }

  async #section(h: SectionHeader, at: number): Promise<void> {
    let e: SaveStateEntry | undefined;
    let versionId: number;
    if (h.type === QEMU_VM_SECTION_START || h.type === QEMU_VM_SECTION_FULL) {
      e = this.#registry.find(h.idstr, h.instanceId);
      if (e === undefined) {
        throw badInput(
          at,
          'section header',
          `Unknown savevm section or instance '${h.idstr}' ${h.instanceId}. Make sure that ` +
            'your current VM setup matches your saved VM setup, including any hotplugged devices',
        );
      }
      if (h.versionId > e.versionId) {
        throw badInput(
          at,
          sectionName(e, h.sectionId),
          `savevm: unsupported version ${h.versionId} for '${h.idstr}' v${e.versionId}`,
        );
      }
      this.#bound.set(h.sectionId, e);
      versionId = h.versionId;
    } else {
      e = this.#bound.get(h.sectionId);
      if (e === undefined) {
        throw badInput(at, 'section header', `Unknown savevm section ${h.sectionId}`);
      }
      versionId = e.versionId;
    }
    const what = sectionName(e, h.sectionId);
    try {
      if (e.handlers.loadState === undefined) throw new Error('the entry loads no state');
      await this.#observer?.section?.(e.idstr, e.instanceId, h.type);
      const body = async () => {
        await e.handlers.loadState!(this.#f, versionId);
        if (this.#footers) await readSectionFooter(this.#f, h.sectionId, e.idstr);
      };
      // The switchover's sections are the downtime's; START and PART ones load while it runs.
      const kind =
        h.type === QEMU_VM_SECTION_END
          ? 'iterable'
          : h.type === QEMU_VM_SECTION_FULL
            ? 'non-iterable'
            : null;
      if (kind === null || this.#trace === undefined) await body();
      else await this.#trace.span(kind, e.idstr, e.instanceId, body);
    } catch (err) {
      throw inSection(err, what, this.#f.offset);
    }
  }

  /** `loadvm_process_command`. */
  async #command(at: number): Promise<void> {
    const cmd = await readCommand(this.#f);
    switch (cmd.type) {
      case MIG_CMD_OPEN_RETURN_PATH:
        // Opening it twice is only reported by QEMU, not fatal.
        if (this.#rp !== null) return;
        if (this.#openReturnPath === null) {
          throw badInput(at, 'command OPEN_RETURN_PATH', 'this channel has no return path');
        }
        this.#rp = this.#openReturnPath();
        // switchover-ack on but nobody needs it: approve at once (§2.5).
        if (this.#capability('switchover-ack') && this.#ackPending === 0) {
          await this.#sendSwitchoverAck();
        }
        return;
      case MIG_CMD_PING: {
        const value = messageU32(cmd);
        if (this.#rp === null) {
          throw badInput(
            at,
            'command PING',
            `CMD_PING (0x${value.toString(16)}) received with no return path`,
          );
        }
        putRpPong(this.#rp, value);
        await this.#rp.flush();
        return;
      }
      case MIG_CMD_SWITCHOVER_START:
        for (const e of this.#entries) {
          if (e.handlers.switchoverStart === undefined) continue;
          try {
            await e.handlers.switchoverStart();
          } catch (err) {
            throw inSection(hookError('switchover_start', e, err), 'command SWITCHOVER_START', at);
          }
        }
        return;
      default:
        throw badInput(
          at,
          `command ${cmd.name}`,
          'not supported (postcopy, COLO and packaged device state are not implemented)',
        );
    }
  }

  /** `qemu_loadvm_approve_switchover`. */
  async #approveSwitchover(): Promise<void> {
    if (this.#ackPending === 0) {
      throw new Error('switchover approved, but no approval was pending (spurious approval)');
    }
    this.#ackPending--;
    if (this.#ackPending === 0) await this.#sendSwitchoverAck();
  }

  async #sendSwitchoverAck(): Promise<void> {
    if (this.#rp === null) throw new Error('cannot send SWITCHOVER_ACK: no return path is open');
    putRpSwitchoverAck(this.#rp);
    await this.#rp.flush();
  }

  /**
   * The description after EOF is for analysis tools: skipped without allocating. Its absence
   * or a broken one is only reported, as QEMU does; the state itself loaded fine.
   */
  async #skipVmdesc(): Promise<void> {
    try {
      if (await this.#f.atEnd()) {
        this.warnings.push('Expected vmdescription section, but the stream ended');
        return;
      }
      const marker = await this.#f.peekU8('vmdesc marker');
      if (marker !== QEMU_VM_VMDESCRIPTION) {
        this.warnings.push(`Expected vmdescription section, but got ${marker}`);
        return;
      }
      await this.#f.skip(1);
      const len = await this.#f.getBe32('vmdesc length');
      if (len > VMDESC_MAX) {
        // Not a description a source writes: do not wait for bytes that will not come.
        this.warnings.push(`vmdesc: length ${len} exceeds ${VMDESC_MAX}; not read`);
        return;
      }
      await this.#f.skip(len, 'vmdesc JSON');
    } catch (err) {
      this.warnings.push(`vmdesc: ${message(err)}`);
    }
  }
}
