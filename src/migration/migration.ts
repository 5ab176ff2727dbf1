/**
 * The outgoing side of a VM's migration (QEMU's MigrationState, migration/migration.c;
 * qemu-migration.md §2.1–§2.5, §5.1).
 *
 * `migrate(uri)` checks and initialises synchronously, then the migration "thread" runs as an
 * async loop on the event loop, yielding between passes so QMP is never starved:
 *
 *   connect, rate limit = max-bandwidth, return path, the multifd channels (with the
 *         capability), 'precopy-setup' notifiers
 *   header, START sections; setup → active
 *   loop: estimate (then exact) pending; switch over when it fits the threshold and the
 *         switchover is acked (if asked); else one iterate pass; at each 100 ms window end
 *         measure the bandwidth, threshold = bandwidth × downtime-limit; sleep when the
 *         window's budget is spent
 *   switchover: downtime starts, VM stopped (finish-migrate), [pre-switchover, wait for
 *         migrate-continue], device, SWITCHOVER_START, END/FULL/EOF/vmdesc (with multifd
 *         device state, each device's precopy-thread job sends its state on the multifd
 *         channels meanwhile), wait for the destination's SHUT; downtime ends; completed →
 *         postmigrate
 *   on failure or cancel: the guest is restarted if it was running, every save_cleanup runs,
 *         then the 'precopy-failed' notifiers. Nothing of the guest is lost.
 *
 * With `x-stall-timeout` (stall-watchdog.ts), writes that do not drain for that long fail the
 * migration, and the SHUT must come within twice that once the whole stream went out.
 *
 * A migration that fails after the whole stream went out, with no SHUT and no sign that the
 * destination gave up (it closing or resetting the channel), ends *in doubt*: the destination
 * has everything and may be running the guest, so the guest here stays paused rather than run
 * twice. QEMU restarts it (and waits for a SHUT that does not come forever).
 */
import type { GuestMemory } from '../memory/guest-memory.ts';
import { TARGET_PAGE_SIZE } from '../memory/page.ts';
import type { VmRunControl } from '../guest/run-control.ts';
import { RunState, runStateIsLive } from '../guest/runstate.ts';
import type { VmChangeStateFailure } from '../guest/vm-change-state.ts';
import type { UserObjects } from '../security/index.ts';
import type { MigrationBlockers } from './blockers.ts';
import { realClock, yieldToEventLoop } from './clock.ts';
import type { MigrationClock } from './clock.ts';
import { DowntimeTrace } from './downtime-trace.ts';
import type { MigrationEvents } from './events.ts';
import type { GlobalState } from './global-state.ts';
import type { MigrationInfo, MigrationInfoProvider, MigrationInfoSource } from './info.ts';
import { MigrationStats } from './migration-stats.ts';
import { MultifdSendState } from './multifd/send.ts';
import type { MigrationNotifiers } from './notifiers.ts';
import { NOT_RUN_CAPABILITIES, multifdDeviceStateSupported } from './options/index.ts';
import type { MigrationCapability, MigrationOptions } from './options/index.ts';
import type { RamSaveEnvironment } from './ram/save.ts';
import { BUFFER_DELAY, RateLimiter } from './rate-limit.ts';
import { sourceConfiguration } from './savevm/configuration.ts';
import type { SaveContext } from './savevm/handlers.ts';
import type { SaveVMRegistry } from './savevm/registry.ts';
import { SaveVMState, hookError, saveStateCleanup } from './savevm/save.ts';
import type { SaveVMOptions } from './savevm/save.ts';
import { SourceReturnPath } from './source-return-path.ts';
import { drainProgress, stallWatchdog } from './stall-watchdog.ts';
import type { StallWatchdog } from './stall-watchdog.ts';
import { endedByPeer, watchChannelEnd } from './transport/peer-close.ts';
import type { ChannelEnd } from './transport/peer-close.ts';
import {
  MigrationStatus,
  migrationHasFailed,
  migrationIsFinished,
  migrationIsRunning,
} from './status.ts';
import type { QEMUFileWriter } from './stream/index.ts';
import {
  migrationTlsClient,
  connect as transportConnect,
  toMigrationUri,
} from './transport/index.ts';
import type { MigrationChannelId, MigrationConnection, MigrationUri } from './transport/index.ts';

const S = MigrationStatus;

export interface MigrationStateDeps {
  readonly registry: SaveVMRegistry;
  readonly memory: GuestMemory;
  readonly runControl: VmRunControl;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly options: MigrationOptions;
  readonly events: MigrationEvents;
  /** Written in the configuration section; the destination's must be the same. */
  readonly machineType: string;
  /** `global_state_store` at the switchover (absent: no globalstate entry). */
  readonly globalState?: GlobalState;
  readonly clock?: MigrationClock;
  /** Opens an outgoing channel (main or multifd); default the tcp/unix/file transports. */
  readonly connect?: (
    uri: MigrationUri,
    signal: AbortSignal,
    channel: MigrationChannelId,
  ) => Promise<MigrationConnection>;
  /** The VM's UUID (QEMU's -uuid), in every multifd handshake; default all zeros. */
  readonly uuid?: Uint8Array;
  /**
   * Sees each device-state packet before it is queued and returns what to queue instead (the
   * fault layer); none by default.
   */
  readonly deviceStatePackets?: (
    idstr: string,
    instanceId: number,
    packet: Uint8Array,
  ) => readonly Uint8Array[];
  /** How long the switchover waits for the destination's SHUT (ms); default 2 × x-stall-timeout. */
  readonly returnPathTimeoutMs?: number;
  /** Where tls-creds is looked up (QEMU's /objects). */
  readonly objects?: UserObjects;
}

/** Joins VM-state handler failures into one message naming each handler. */
export function describeHandlerFailures(failures: readonly VmChangeStateFailure[]): string {
  return failures.map((f) => `${f.name} (${f.phase}): ${asError(f.error).message}`).join('; ');
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * `migration_channels_and_transport_compatible`: multifd needs a transport that opens several
 * channels; a file: URI only does with mapped-ram, which is not implemented. Both sides check.
 */
export function checkChannelsAndTransport(uri: MigrationUri, options: MigrationOptions): void {
  if (uri.transport === 'file' && options.capability('multifd')) {
    throw new Error(
      'multifd on a file: URI needs the mapped-ram capability, which is not supported here',
    );
  }
}

export class MigrationState implements RamSaveEnvironment, MigrationInfoSource {
  readonly stats = new MigrationStats();
  /** Where the last migration's downtime went (`x-query-downtime`). */
  readonly downtimeTrace = new DowntimeTrace();
  readonly clock: MigrationClock;
  readonly options: MigrationOptions;
  readonly events: MigrationEvents;
  readonly #deps: MigrationStateDeps;
  readonly #rate: RateLimiter;
  readonly #infoProviders: MigrationInfoProvider[] = [];

  #status: MigrationStatus = S.NONE;
  #error: Error | null = null;
  readonly #warnings: string[] = [];
  #abort = new AbortController();
  #conn: MigrationConnection | null = null;
  #file: QEMUFileWriter | null = null;
  /** The multifd channels of this migration (`multifd_send_state`). */
  #multifd: MultifdSendState | null = null;
  #multifdPackets: readonly number[] = [];
  #rp: SourceReturnPath | null = null;
  #continueWaiter: (() => void) | null = null;
  #watchdog: StallWatchdog | null = null;
  /** The whole stream (EOF, vmdesc) was handed to the channel. */
  #eofSent = false;
  /** How the channel ended, as far as it did. */
  #channelEnd: () => ChannelEnd | null = () => null;
  #finished: Promise<MigrationStatus> = Promise.resolve(S.NONE);

  // Times in ms on `clock`, and the rates of the last window (§2.2, §5.1).
  #startTime = 0;
  #setupTime = 0;
  #totalTime = 0;
  #downtimeStart = 0;
  #downtime = 0;
  #expectedDowntime = 0;
  #mbps = 0;
  #pagesPerSecond = 0;
  #thresholdSize = 0;
  #iterationStartTime = 0;
  #iterationInitialBytes = 0;
  #iterationInitialPages = 0;
  /** `vm_old_state`: the run state before the switchover stopped the VM. */
  #vmOldState: RunState | null = null;

  constructor(deps: MigrationStateDeps) {
    this.#deps = deps;
    this.clock = deps.clock ?? realClock;
    this.options = deps.options;
    this.events = deps.events;
    this.#rate = new RateLimiter(() => this.#transferred());
    deps.options.addGuard(() =>
      migrationIsRunning(this.#status) ? "There's a migration process in progress" : null,
    );
    deps.options.onParametersChanged((p) => {
      // A running migration takes a new max-bandwidth at once (migrate_params_apply).
      if (this.#status === S.ACTIVE || this.#status === S.SETUP) this.#rate.set(p['max-bandwidth']);
    });
  }

  get status(): MigrationStatus {
    return this.#status;
  }

  /** Why the last migration failed (`error-desc`), or null. */
  get error(): Error | null {
    return this.#error;
  }

  /** True once the whole stream (EOF, vmdesc) was handed to the channel, until the next migrate. */
  get eofSent(): boolean {
    return this.#eofSent;
  }

  /** Problems the last migration only reported (cleanup and notifier failures). */
  get warnings(): readonly string[] {
    return this.#warnings;
  }

  /** Resolves with the final status once the current (or last) migration is cleaned up. */
  whenFinished(): Promise<MigrationStatus> {
    return this.#finished;
  }

  /** The multifd channels while a migration with the capability runs, else null. */
  get multifdSend(): MultifdSendState | null {
    return this.#multifd;
  }

  /** Packets each multifd channel wrote in the current (or last) migration, by channel id. */
  get multifdChannelPackets(): readonly number[] {
    return this.#multifd?.packetsPerChannel ?? this.#multifdPackets;
  }

  /** `runstate_is_running`. */
  guestRunning(): boolean {
    return this.#deps.runControl.isRunning();
  }

  /** Adds fields to query-migrate (VFIO's `vfio`); returns the function that removes it. */
  addInfoProvider(provider: MigrationInfoProvider): () => void {
    this.#infoProviders.push(provider);
    return () => {
      const i = this.#infoProviders.indexOf(provider);
      if (i >= 0) this.#infoProviders.splice(i, 1);
    };
  }

  // --- QMP commands ------------------------------------------------------------------------

  /**
   * `migrate`: refuses (throws, QEMU's message) or starts the migration and returns at once;
   * the outcome is in `status` / `whenFinished()`.
   */
  migrate(uri: string | MigrationUri): void {
    const target = toMigrationUri(uri);
    checkChannelsAndTransport(target, this.options);
    this.#prepare();
    this.#init();
    this.#finished = this.#thread(target);
  }

  /** `migrate_cancel`: succeeds even without a migration; shuts the channel down. */
  cancel(): void {
    this.#rp?.close();
    if (!migrationIsRunning(this.#status)) return;
    this.#setStatus(this.#status, S.CANCELLING);
    this.#wakeContinue();
    this.#abort.abort(new Error('migration cancelled'));
    this.#conn?.destroy(new Error('migration cancelled'));
    this.#multifd?.destroy(new Error('migration cancelled'));
  }

  /** `migrate-continue`: leaves `pre-switchover`. */
  continue(state: MigrationStatus): void {
    if (this.#status !== state) {
      throw new Error(`Migration not in expected state: ${this.#status}`);
    }
    this.#wakeContinue();
  }

  /** `fill_source_migration_info`. */
  fillInfo(info: MigrationInfo): void {
    const reasons = this.#deps.blockers.reasons();
    if (reasons.length > 0) info['blocked-reasons'] = reasons;
    switch (this.#status) {
      case S.NONE:
        // Never migrated out: the destination's status, if any, stays.
        return;
      case S.ACTIVE:
      case S.CANCELLING:
      case S.PRE_SWITCHOVER:
      case S.DEVICE:
      case S.COMPLETED:
        this.#populateTimeInfo(info);
        this.#populateRamInfo(info);
        for (const p of this.#infoProviders) p.populate(info);
        break;
      default:
        break;
    }
    info.status = this.#status;
    if (this.#error !== null) info['error-desc'] = this.#error.message;
  }

  // --- migrate: checks and initialisation --------------------------------------------------

  /** `migrate_prepare`. */
  #prepare(): void {
    if (migrationIsRunning(this.#status)) {
      throw new Error("There's a migration process in progress");
    }
    const rs = this.#deps.runControl.runState;
    if (rs === RunState.INMIGRATE) throw new Error('Guest is waiting for an incoming migration');
    if (rs === RunState.POSTMIGRATE) {
      throw new Error("Can't migrate the vm that was paused due to previous migration");
    }
    const reasons = this.#deps.blockers.reasons();
    if (reasons.length > 0) throw new Error(reasons.join('; '));
  }

  /** `migrate_init`: save_prepare hooks may refuse; then every counter starts over. */
  #init(): void {
    const ctx = this.#saveContext();
    for (const e of this.#deps.registry.entries()) {
      const h = e.handlers;
      if (h.savePrepare === undefined || h.isActive?.() === false) continue;
      try {
        h.savePrepare(ctx);
      } catch (err) {
        throw hookError('save_prepare', e, err);
      }
    }
    // Settable so that a device refuses them with its own words first (VFIO, §3.4 item 5);
    // this core runs neither.
    const notRun = NOT_RUN_CAPABILITIES.find((c) => this.options.capability(c));
    if (notRun !== undefined) {
      throw new Error(`Capability '${notRun}' is set, but this migration cannot run it`);
    }
    this.stats.reset();
    this.downtimeTrace.reset();
    for (const p of this.#infoProviders) p.reset?.();
    this.#error = null;
    this.#warnings.length = 0;
    this.#abort = new AbortController();
    this.#conn = null;
    this.#file = null;
    this.#multifd = null;
    this.#multifdPackets = [];
    this.#rp = null;
    this.#continueWaiter = null;
    this.#eofSent = false;
    this.#channelEnd = () => null;
    this.#setupTime = 0;
    this.#totalTime = 0;
    this.#downtime = 0;
    this.#expectedDowntime = 0;
    this.#mbps = 0;
    this.#pagesPerSecond = 0;
    this.#thresholdSize = 0;
    this.#vmOldState = null;
    this.#status = S.NONE;
    this.#setStatus(S.NONE, S.SETUP);
    this.#startTime = this.clock.now();
  }

  #saveContext(): SaveContext {
    return {
      capability: (name) => this.options.capability(name as MigrationCapability) === true,
      multifdDeviceState: () => multifdDeviceStateSupported(this.options),
      sendSwitchoverStart: () => this.options.properties['send-switchover-start'],
      guestRunning: () => this.guestRunning(),
    };
  }

  // --- the migration thread ----------------------------------------------------------------

  /** Never rejects: every failure ends in `failed` (or `cancelled`) and a cleanup. */
  async #thread(uri: MigrationUri): Promise<MigrationStatus> {
    try {
      await this.#connect(uri);
      if (this.#status === S.SETUP) await this.#migrationThread();
    } catch (err) {
      this.#fail(err);
    }
    await this.#iterationFinish();
    await this.#cleanup();
    return this.#status;
  }

  /** `migrate_fd_connect`. */
  async #connect(uri: MigrationUri): Promise<void> {
    const connect = this.#deps.connect ?? ((u, signal) => transportConnect(u, { signal }));
    // TLS credentials are resolved before connecting; the handshake precedes any state.
    const tls = migrationTlsClient(this.#deps.objects, this.options.parameters, uri);
    let conn = await connect(uri, this.#abort.signal, 'main');
    this.#conn = conn;
    if (tls !== null) this.#conn = conn = await tls(conn, this.#abort.signal);
    if (this.#status !== S.SETUP) return;
    this.#channelEnd = watchChannelEnd(conn);
    this.#file = conn.openWriter();
    const stall = this.options.parameters['x-stall-timeout'];
    this.#watchdog = stallWatchdog(stall, (err) => this.#channelFailed(err));
    if (conn.writable !== null) {
      this.#watchdog?.watch('the destination takes no data', drainProgress(conn.writable));
    }
    this.#rate.set(this.options.parameters['max-bandwidth']);
    this.#rate.reset();
    if (this.options.capability('return-path')) {
      if (!conn.returnPath) {
        throw new Error(`Unable to open return-path: ${conn.description} has no way back`);
      }
      const rp = new SourceReturnPath(conn.openReader());
      this.#rp = rp;
      rp.done.catch((err: unknown) => this.#channelFailed(err));
    }
    if (this.options.capability('multifd')) {
      const signal = this.#abort.signal;
      this.#multifd = await MultifdSendState.setup({
        channels: this.options.parameters['multifd-channels'],
        uuid: this.#deps.uuid ?? Buffer.alloc(16),
        pageSize: TARGET_PAGE_SIZE,
        // Each channel is upgraded to TLS on its own, as QEMU's multifd_tls_channel_connect.
        open: async (id) => {
          const c = await connect(uri, signal, id);
          return tls === null ? c : tls(c, signal);
        },
        onBytes: (n) => (this.stats.multifdBytes += n),
        onError: (err) => this.#channelFailed(err),
      });
      if (this.#status !== S.SETUP) return;
      this.#multifd.connections.forEach((c, id) => {
        if (c.writable === null) return;
        this.#watchdog?.watch(`multifd channel ${id} takes no data`, drainProgress(c.writable));
      });
    }
    const errors = await this.#deps.notifiers.notify('precopy-setup');
    if (errors.length > 0) {
      throw new Error(`migration notifier refused: ${errors.map((e) => e.message).join('; ')}`);
    }
    this.#expectedDowntime = this.options.parameters['downtime-limit'];
  }

  /** `migration_thread`. */
  async #migrationThread(): Promise<void> {
    const file = this.#file!;
    const save = new SaveVMState({
      registry: this.#deps.registry,
      file,
      ctx: this.#saveContext(),
      configuration: sourceConfiguration(this.#deps.machineType, this.options),
      sendSectionFooter: this.options.properties['send-section-footer'],
      pageSize: TARGET_PAGE_SIZE,
      queueDeviceState: this.#queueDeviceState(),
      trace: this.downtimeTrace,
    });
    this.#updateIterationInitialStatus();
    const setupStart = this.clock.now();
    await save.header(this.#rp !== null);
    await save.setup();
    this.#setStatus(S.SETUP, S.ACTIVE);
    this.#setupTime = this.clock.now() - setupStart;

    while (this.#status === S.ACTIVE) {
      if (!this.#rate.exceeded()) {
        if (await this.#iterationRun(save)) break;
      }
      if (this.#detectError()) break;
      await this.#rateLimit();
      await yieldToEventLoop();
    }
  }

  /**
   * `multifd_queue_device_state`, when device state may go over the multifd channels; each
   * packet passes the fault layer's filter first, if there is one.
   */
  #queueDeviceState(): SaveVMOptions['queueDeviceState'] {
    const channels = this.#multifd;
    if (channels === null || !multifdDeviceStateSupported(this.options)) return undefined;
    const filter = this.#deps.deviceStatePackets;
    if (filter === undefined) return (idstr, id, p) => channels.queueDeviceState(idstr, id, p);
    return async (idstr, id, packet) => {
      for (const p of filter(idstr, id, packet)) await channels.queueDeviceState(idstr, id, p);
    };
  }

  /** `migration_iteration_run`: true once the switchover ran (the loop ends). */
  async #iterationRun(save: SaveVMState): Promise<boolean> {
    const canSwitchover = this.#canSwitchover();
    let pending = save.pendingEstimate();
    let size = pending.mustPrecopy + pending.canPostcopy;
    if (size < this.#thresholdSize) {
      pending = await save.pendingExact();
      size = pending.mustPrecopy + pending.canPostcopy;
    }
    if ((size === 0 || size < this.#thresholdSize) && canSwitchover) {
      await this.#completion(save);
      return true;
    }
    await save.iterate(this.#rate);
    return false;
  }

  /** `migration_can_switchover` (§2.5). */
  #canSwitchover(): boolean {
    if (!this.options.capability('switchover-ack')) return true;
    if (!this.#deps.runControl.isRunning()) return true;
    return this.#rp?.switchoverAcked === true;
  }

  /** `migration_detect_error`: true when the loop must end. */
  #detectError(): boolean {
    if (this.#status === S.CANCELLING || this.#status === S.CANCELLED) return true;
    if (this.#error === null) return false;
    this.#setStatus(this.#status, S.FAILED);
    return true;
  }

  /** `migration_rate_limit`: counters at window end; sleep out a spent budget. */
  async #rateLimit(): Promise<void> {
    const now = this.clock.now();
    this.#updateCounters(now);
    if (this.#rate.exceeded()) {
      await this.clock.sleep(this.#iterationStartTime + BUFFER_DELAY - now, this.#abort.signal);
    }
  }

  /** `migration_update_counters` (§2.2). */
  #updateCounters(now: number): void {
    if (now < this.#iterationStartTime + BUFFER_DELAY) return;
    const params = this.options.parameters;
    const transferred = this.#transferred() - this.#iterationInitialBytes;
    const timeSpent = now - this.#iterationStartTime;
    const bandwidth = transferred / timeSpent; // bytes per ms
    const switchoverBw = params['avail-switchover-bandwidth'];
    const expectedBwPerMs = switchoverBw > 0 ? switchoverBw / 1000 : bandwidth;
    this.#thresholdSize = expectedBwPerMs * params['downtime-limit'];
    this.#mbps = (transferred * 8) / (timeSpent / 1000) / 1e6;
    const pages = this.stats.transferredPages - this.#iterationInitialPages;
    this.#pagesPerSecond = pages / (timeSpent / 1000);
    // Only once RAM has a dirty rate and this window moved something worth measuring.
    if (this.stats.dirtyPagesRate > 0 && transferred > 10000 && expectedBwPerMs > 0) {
      this.#expectedDowntime = this.stats.dirtyBytesLastSync / expectedBwPerMs;
    }
    this.#rate.reset();
    this.#updateIterationInitialStatus();
  }

  #updateIterationInitialStatus(): void {
    this.#iterationStartTime = this.clock.now();
    this.#iterationInitialBytes = this.#transferred();
    this.#iterationInitialPages = this.stats.transferredPages;
  }

  /** `migration_transferred_bytes`: main channel (RAM, devices, framing) + multifd. */
  #transferred(): number {
    return (this.#file?.bytesWritten ?? 0) + this.stats.multifdBytes;
  }

  // --- the switchover ----------------------------------------------------------------------

  /** `migration_completion` (§2.4); failures end in `failed`, a cancel in `cancelling`. */
  async #completion(save: SaveVMState): Promise<void> {
    try {
      await this.#stopVm();
      if (!(await this.#switchoverPrepare())) return;
      this.#rate.set(0);
      if (this.options.properties['send-switchover-start']) await save.sendSwitchoverStart();
      await save.completePrecopy();
      this.#eofSent = true;
      if (this.#rp !== null) await this.#waitForShut(this.#rp);
      if (this.#error !== null) throw this.#error;
      this.#completionEnd();
    } catch (err) {
      this.#fail(err);
    }
  }

  /** `migration_stop_vm`: downtime starts; VM-state handler failures fail the migration. */
  async #stopVm(): Promise<void> {
    this.downtimeTrace.checkpoint('src-downtime-start');
    this.#downtimeStart = this.clock.now();
    this.#vmOldState = this.#deps.runControl.runState;
    this.#deps.globalState?.store();
    const failures = await this.#deps.runControl.vmStopForceState(RunState.FINISH_MIGRATE);
    if (failures.length > 0) {
      throw new Error(`stopping the VM failed: ${describeHandlerFailures(failures)}`);
    }
    this.downtimeTrace.checkpoint('src-vm-stopped');
  }

  /** `migration_switchover_prepare`: [pre-switchover until migrate-continue], then device. */
  async #switchoverPrepare(): Promise<boolean> {
    if (this.#status !== S.ACTIVE) return false;
    if (this.options.capability('pause-before-switchover')) {
      this.#setStatus(S.ACTIVE, S.PRE_SWITCHOVER);
      await new Promise<void>((resolve) => (this.#continueWaiter = resolve));
      if (this.#error !== null) throw this.#error;
      return this.#setStatus(S.PRE_SWITCHOVER, S.DEVICE);
    }
    return this.#setStatus(S.ACTIVE, S.DEVICE);
  }

  #wakeContinue(): void {
    const wake = this.#continueWaiter;
    this.#continueWaiter = null;
    wake?.();
  }

  /**
   * `close_return_path_on_source` on success: the destination's SHUT, within the timeout. A
   * SHUT error, or the destination closing or resetting the channel, means it did not start
   * the guest (it sends SHUT before its vCPUs run, and only over a live channel); silence or
   * a channel lost here leaves it in doubt (`#inDoubt`).
   */
  async #waitForShut(rp: SourceReturnPath): Promise<void> {
    const ms = this.#deps.returnPathTimeoutMs ?? 2 * this.options.parameters['x-stall-timeout'];
    if (ms === 0) return rp.done;
    const stop = new AbortController();
    const timedOut = this.clock.sleep(ms, stop.signal).then(() => {
      if (stop.signal.aborted) return;
      throw new Error(`the destination did not end the migration (SHUT) within ${ms} ms`);
    });
    try {
      await Promise.race([rp.done, timedOut]);
    } finally {
      stop.abort();
    }
  }

  /** `migration_completion_end`: downtime (up to SHUT, as QEMU measures it), total, mbps. */
  #completionEnd(): void {
    const end = this.clock.now();
    this.downtimeTrace.checkpoint('src-downtime-stop');
    const bytes = this.#transferred();
    this.#downtime = end - this.#downtimeStart;
    this.#totalTime = end - this.#startTime;
    const transferTime = this.#totalTime - this.#setupTime;
    if (transferTime > 0) this.#mbps = (bytes * 8) / transferTime / 1000;
    this.#setStatus(this.#status, S.COMPLETED);
  }

  // --- the end, either way -------------------------------------------------------------------

  /** `migration_iteration_finish`: postmigrate, or the guest back as it was. */
  async #iterationFinish(): Promise<void> {
    const rc = this.#deps.runControl;
    if (this.#status === S.COMPLETED) {
      rc.runstateSet(RunState.POSTMIGRATE);
      return;
    }
    const old = this.#vmOldState;
    if (old === null) return;
    if (this.#inDoubt() && rc.runState === RunState.FINISH_MIGRATE) {
      rc.runstateSet(RunState.PAUSED);
      const why = this.#error?.message ?? 'cancelled';
      this.#error = new Error(
        `${why}; in doubt: the whole stream went out and no SHUT came back, so the ` +
          'destination may be running the guest, which stays paused here (cont resumes it)',
        { cause: this.#error },
      );
      return;
    }
    if (runStateIsLive(old)) {
      if (rc.runState === RunState.SHUTDOWN) return;
      const failures = await rc.vmStart();
      if (failures.length > 0) {
        this.#warnings.push(`restarting the VM: ${describeHandlerFailures(failures)}`);
      }
    } else if (rc.runState === RunState.FINISH_MIGRATE) {
      rc.runstateSet(old);
    }
  }

  /** Failed after the whole stream went out, with neither a SHUT nor the destination giving up. */
  #inDoubt(): boolean {
    const rp = this.#rp;
    if (this.#status === S.COMPLETED || !this.#eofSent || rp === null) return false;
    return rp.shut === null && !endedByPeer(this.#channelEnd());
  }

  /** `migrate_fd_cleanup`: save_cleanup, channel closed, cancelled, notifiers. */
  async #cleanup(): Promise<void> {
    this.#watchdog?.stop();
    this.#watchdog = null;
    for (const err of await saveStateCleanup(this.#deps.registry)) this.#warnings.push(err.message);
    this.#rp?.close();
    if (this.#multifd !== null) {
      this.#multifdPackets = this.#multifd.packetsPerChannel;
      await this.#multifd.shutdown(this.#status === S.COMPLETED);
      this.#multifd = null;
    }
    await this.#closeChannel();
    if (this.#status === S.CANCELLING) this.#setStatus(S.CANCELLING, S.CANCELLED);
    const event = migrationHasFailed(this.#status) ? 'precopy-failed' : 'precopy-done';
    for (const err of await this.#deps.notifiers.notify(event)) {
      this.#warnings.push(`${event} notifier: ${err.message}`);
    }
  }

  async #closeChannel(): Promise<void> {
    const conn = this.#conn;
    if (conn === null) return;
    if (this.#status !== S.COMPLETED) {
      conn.destroy();
      return;
    }
    try {
      await this.#file?.close();
      await conn.close();
    } catch (err) {
      this.#warnings.push(`closing ${conn.description}: ${asError(err).message}`);
      conn.destroy();
    }
  }

  /** `migrate_set_error` + FAILED, unless the migration is being cancelled. */
  #fail(err: unknown): void {
    if (this.#status === S.CANCELLING || migrationIsFinished(this.#status)) return;
    this.#error ??= asError(err);
    this.#setStatus(this.#status, S.FAILED);
  }

  /**
   * The return path failed or the channel stalled: record it and shut the channel (unblocks
   * writes and a wait in pre-switchover).
   */
  #channelFailed(err: unknown): void {
    if (!migrationIsRunning(this.#status) || this.#status === S.CANCELLING) return;
    this.#error ??= asError(err);
    this.#conn?.destroy(this.#error);
    this.#multifd?.destroy(this.#error);
    this.#wakeContinue();
  }

  /** `migrate_set_state`: moves only from `from`; emits MIGRATION. */
  #setStatus(from: MigrationStatus, to: MigrationStatus): boolean {
    if (this.#status !== from) return false;
    this.#status = to;
    this.events.status(to);
    return true;
  }

  // --- query-migrate -------------------------------------------------------------------------

  /** `populate_time_info`. */
  #populateTimeInfo(info: MigrationInfo): void {
    info['setup-time'] = Math.round(this.#setupTime);
    const completed = this.#status === S.COMPLETED;
    info['total-time'] = Math.round(
      completed ? this.#totalTime : this.clock.now() - this.#startTime,
    );
    if (completed) info.downtime = Math.round(this.#downtime);
    else info['expected-downtime'] = Math.round(this.#expectedDowntime);
  }

  /** `populate_ram_info`. */
  #populateRamInfo(info: MigrationInfo): void {
    const s = this.stats;
    const completed = this.#status === S.COMPLETED;
    info.ram = {
      transferred: this.#transferred(),
      remaining: completed ? 0 : this.#deps.memory.dirtyCount * TARGET_PAGE_SIZE,
      total: this.#deps.memory.ramSize,
      duplicate: s.zeroPages,
      normal: s.normalPages,
      'normal-bytes': s.normalPages * TARGET_PAGE_SIZE,
      'dirty-pages-rate': completed ? 0 : s.dirtyPagesRate,
      mbps: this.#mbps,
      'dirty-sync-count': s.dirtySyncCount,
      'postcopy-requests': s.postcopyRequests,
      'page-size': TARGET_PAGE_SIZE,
      'multifd-bytes': s.multifdBytes,
      'pages-per-second': Math.round(this.#pagesPerSecond),
      'precopy-bytes': s.precopyBytes,
      'downtime-bytes': s.downtimeBytes,
      'postcopy-bytes': s.postcopyBytes,
      'dirty-sync-missed-zero-copy': s.dirtySyncMissedZeroCopy,
      'iteration-count': s.iterationCount,
    };
  }
}
