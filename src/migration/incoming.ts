/**
 * The incoming side of a VM's migration (QEMU's MigrationIncomingState, migration.c;
 * qemu-migration.md §2.6, §3.1). `-incoming URI` or `migrate-incoming` on a VM whose run
 * state is `inmigrate`:
 *
 *   none → setup        listening on tcp/unix, or opening the file; with tls-creds, a channel
 *                       whose handshake or peer check fails is reported and dropped, and the
 *                       destination goes on waiting in setup (migration/tls.c)
 *   setup → active      the source connected — with multifd, the main channel and every
 *                       multifd channel, told apart by their first bytes; `qemu_loadvm_state`
 *                       runs while the multifd channels land RAM and device-state packets
 *   active → completed  loaded: the guest starts if the source's run state was live (or no
 *                       globalstate came) and autostart is on — SHUT 0 goes out after its
 *                       devices accepted their state, before any vCPU runs; else it takes the
 *                       sent state (paused with -S) and SHUT 0 follows; load_cleanup
 *   active → failed     nothing is started; load_cleanup; SHUT 1; the error is kept for
 *                       query-migrate and the process stays up
 *
 * With `x-stall-timeout`, a source that sends nothing while the load waits for bytes, or that
 * reads nothing of the return path, fails the load (stall-watchdog.ts).
 */
import type { VmRunControl } from '../guest/run-control.ts';
import { RunState, runStateIsLive } from '../guest/runstate.ts';
import type { UserObjects } from '../security/index.ts';
import { DowntimeTrace } from './downtime-trace.ts';
import type { MigrationEvents } from './events.ts';
import type { GlobalState } from './global-state.ts';
import type { MigrationInfo, MigrationInfoSource, SocketAddressInfo } from './info.ts';
import { asError, checkChannelsAndTransport, describeHandlerFailures } from './migration.ts';
import { TARGET_PAGE_SIZE } from '../memory/page.ts';
import { acceptChannels } from './multifd/accept.ts';
import { MultifdRecvState } from './multifd/recv.ts';
import type { MultifdRamSink, RecvChannelStats } from './multifd/recv.ts';
import { multifdDeviceStateSupported } from './options/index.ts';
import type { MigrationOptions } from './options/index.ts';
import { localConfiguration } from './savevm/configuration.ts';
import { LoadVMState, loadStateBuffer } from './savevm/load.ts';
import type { LoadObserver } from './savevm/load.ts';
import type { SaveVMRegistry } from './savevm/registry.ts';
import { drainProgress, stallWatchdog } from './stall-watchdog.ts';
import { watchChannelEnd } from './transport/peer-close.ts';
import type { ChannelEnd } from './transport/peer-close.ts';
import { MigrationStatus, migrationIsFinished } from './status.ts';
import { putRpShut } from './stream/index.ts';
import type { QEMUFileReader } from './stream/index.ts';
import {
  migrationTlsServer,
  listen as transportListen,
  toMigrationUri,
} from './transport/index.ts';
import type {
  MigrationChannelId,
  MigrationConnection,
  MigrationListener,
  MigrationUri,
} from './transport/index.ts';

const S = MigrationStatus;

/** Return-path messages are tiny (§1.1): a small staging buffer is plenty. */
const RETURN_PATH_CHUNK = 4096;
/** How long the end of a migration waits for the source to close its side (ms). */
const CLOSE_TIMEOUT_MS = 5000;

export interface MigrationIncomingDeps {
  readonly registry: SaveVMRegistry;
  readonly runControl: VmRunControl;
  readonly options: MigrationOptions;
  readonly events: MigrationEvents;
  /** Must equal the source's (configuration section). */
  readonly machineType: string;
  /** Where the source's run state arrives (absent: the guest always starts, as without it). */
  readonly globalState?: GlobalState;
  /** false is QEMU's -S: the guest stays paused after the load. Default true. */
  readonly autostart?: boolean;
  /**
   * QEMU's `exit-on-error`. QEMU defaults it to true and exits when an incoming migration
   * fails; here it defaults to false, because this project promises that the process stays
   * up on a failure (DESIGN.md "Errors and data safety"): the error is reported by
   * query-migrate and a MIGRATION event instead.
   */
  readonly exitOnError?: boolean;
  /** How the process exits with exit-on-error (default `process.exit`). */
  readonly exit?: (code: number) => void;
  readonly listen?: (uri: MigrationUri) => Promise<MigrationListener>;
  /** Where tls-creds and tls-authz are looked up (QEMU's /objects). */
  readonly objects?: UserObjects;
  /**
   * Told about each channel refused before the stream started (a failed TLS handshake or peer
   * check); the migration keeps waiting for its source. Default: stderr, as QEMU reports it.
   */
  readonly reportRefused?: (message: string) => void;
  /** Sees the load section by section (the fault layer, faults/plan.ts); none by default. */
  readonly loadObserver?: LoadObserver;
  /** Told what each accepted connection turned out to be (the fault layer); none by default. */
  readonly channelIdentified?: (conn: MigrationConnection, channel: MigrationChannelId) => void;
  /** Where RAM packets of multifd channels land (the RAM entry's loader). */
  readonly multifdRam?: MultifdRamSink;
  /** This VM's UUID (QEMU's -uuid), which every multifd handshake must carry; default zeros. */
  readonly uuid?: Uint8Array;
}

export interface IncomingStartOptions {
  /** Overrides the default for this migration (`migrate-incoming`'s exit-on-error). */
  exitOnError?: boolean;
}

const CHANNEL_END: Readonly<Record<ChannelEnd, string>> = {
  end: 'closed by the source',
  reset: 'reset by the source',
  lost: 'lost',
};

function socketAddressOf(uri: MigrationUri): SocketAddressInfo[] | undefined {
  if (uri.transport === 'tcp') return [{ type: 'inet', host: uri.host, port: String(uri.port) }];
  if (uri.transport === 'unix') return [{ type: 'unix', path: uri.path }];
  return undefined;
}

export class MigrationIncomingState implements MigrationInfoSource {
  readonly #deps: MigrationIncomingDeps;
  #status: MigrationStatus = S.NONE;
  #error: Error | null = null;
  readonly #warnings: string[] = [];
  #started = false;
  #exitOnError: boolean;
  #listener: MigrationListener | null = null;
  #conn: MigrationConnection | null = null;
  /** The multifd channels of the migration in progress, with the capability. */
  #multifd: MultifdRecvState | null = null;
  #multifdStats: readonly RecvChannelStats[] = [];
  /** Where the last incoming migration's switchover went (`x-query-downtime`). */
  readonly downtimeTrace = new DowntimeTrace();
  #load: LoadVMState | null = null;
  /** Aborts waiting for the channels (a multifd channel failed meanwhile). */
  #acceptAbort = new AbortController();
  /** SHUT 0 went out before the guest started. */
  #shutSent = false;
  readonly #abort = new AbortController();
  #finished: Promise<MigrationStatus> = Promise.resolve(S.NONE);

  constructor(deps: MigrationIncomingDeps) {
    this.#deps = deps;
    this.#exitOnError = deps.exitOnError ?? false;
    // `migrate_caps_check`: the channels a listener expects are fixed once it listens.
    deps.options.addCapabilityGuard((next) =>
      next.multifd && this.#status === S.SETUP && this.#listener !== null
        ? 'Multifd must be set before incoming starts'
        : null,
    );
  }

  get status(): MigrationStatus {
    return this.#status;
  }

  get error(): Error | null {
    return this.#error;
  }

  /** What QEMU only reports (a missing vmdesc, cleanup failures). */
  get warnings(): readonly string[] {
    return this.#warnings;
  }

  /** What each multifd channel of the current (or last) incoming migration received. */
  get multifdChannels(): readonly RecvChannelStats[] {
    return this.#multifd?.stats ?? this.#multifdStats;
  }

  /** The address listened on (tcp port 0 resolved), once started. */
  get uri(): MigrationUri | null {
    return this.#listener?.uri ?? null;
  }

  /** Resolves with the final status once the incoming migration ended and was cleaned up. */
  whenFinished(): Promise<MigrationStatus> {
    return this.#finished;
  }

  /**
   * `-incoming URI` / `migrate-incoming`: resolves once listening (or the file is open); the
   * load runs in the background. Throws with QEMU's messages.
   */
  async start(uri: string | MigrationUri, opts: IncomingStartOptions = {}): Promise<void> {
    if (this.#started) throw new Error('The incoming migration has already been started');
    if (this.#deps.runControl.runState !== RunState.INMIGRATE) {
      throw new Error("'-incoming' was not specified on the command line");
    }
    const target = toMigrationUri(uri);
    checkChannelsAndTransport(target, this.#deps.options);
    const tls = migrationTlsServer(
      this.#deps.objects,
      this.#deps.options.parameters,
      target,
      (err, where) => this.#channelRefused(err, where),
    );
    this.#started = true;
    try {
      const listener = await (this.#deps.listen ?? ((u) => transportListen(u)))(target);
      this.#listener = tls === null ? listener : tls(listener);
    } catch (err) {
      // Nothing started: another migrate-incoming may try again.
      this.#started = false;
      throw err;
    }
    this.#exitOnError = opts.exitOnError ?? this.#exitOnError;
    this.#setStatus(S.NONE, S.SETUP);
    this.#finished = this.#run(this.#listener);
  }

  /** QEMU's `error_report` of a refused channel; kept as a warning too. */
  #channelRefused(err: Error, where: string): void {
    const message = `incoming channel ${where} refused: ${err.message}`;
    this.#warnings.push(message);
    (this.#deps.reportRefused ?? ((m) => process.stderr.write(`${m}\n`)))(message);
  }

  /** Stops listening and drops the channel: a migration in progress fails. */
  async close(): Promise<void> {
    this.#abort.abort(new Error('incoming migration closed'));
    this.#conn?.destroy(new Error('incoming migration closed'));
    this.#multifd?.destroy(new Error('incoming migration closed'));
    await this.#listener?.close();
    await this.#finished;
  }

  /** `fill_destination_migration_info`. */
  fillInfo(info: MigrationInfo): void {
    if (this.#status === S.NONE) return;
    const address = this.#listener === null ? undefined : socketAddressOf(this.#listener.uri);
    if (address !== undefined) info['socket-address'] = address;
    info.status = this.#status;
    if (this.#error !== null) info['error-desc'] = this.#error.message;
  }

  async #run(listener: MigrationListener): Promise<MigrationStatus> {
    let conn: MigrationConnection;
    let file: QEMUFileReader;
    try {
      // The listener closes once every channel arrived.
      ({ conn, file } = await this.#accept(listener));
    } catch (err) {
      await listener.close();
      this.#multifd?.destroy(asError(err));
      this.#error = asError(err);
      this.#setStatus(S.SETUP, S.FAILED);
      return this.#status;
    }
    await listener.close();
    this.#conn = conn;
    await this.#process(conn, file);
    return this.#status;
  }

  /** The main channel, and with multifd every multifd channel too. */
  async #accept(
    listener: MigrationListener,
  ): Promise<{ conn: MigrationConnection; file: QEMUFileReader }> {
    const identified = this.#deps.channelIdentified ?? (() => undefined);
    const { options } = this.#deps;
    if (!options.capability('multifd')) {
      const conn = await listener.accept(this.#abort.signal);
      identified(conn, 'main');
      return { conn, file: conn.openReader() };
    }
    const ram = this.#deps.multifdRam;
    if (ram === undefined) throw new Error('multifd: this VM has no RAM loader for its channels');
    const recv = new MultifdRecvState({
      channels: options.parameters['multifd-channels'],
      uuid: this.#deps.uuid ?? Buffer.alloc(16),
      pageSize: TARGET_PAGE_SIZE,
      ram,
      deviceState: (idstr, instanceId, data, release) =>
        loadStateBuffer(this.#deps.registry, idstr, instanceId, data, release),
      onError: (err) => this.#multifdFailed(err),
    });
    this.#multifd = recv;
    this.#acceptAbort = new AbortController();
    const signal = AbortSignal.any([this.#abort.signal, this.#acceptAbort.signal]);
    return acceptChannels(listener, signal, recv, identified);
  }

  /** A multifd channel broke: the load (or the wait for the channels) fails with its error. */
  #multifdFailed(err: Error): void {
    if (this.#load !== null) this.#load.abort(err);
    else this.#acceptAbort.abort(err);
  }

  /** `process_incoming_migration_co` + `process_incoming_migration_bh`. */
  async #process(conn: MigrationConnection, file: QEMUFileReader): Promise<void> {
    const { registry, options, machineType, runControl } = this.#deps;
    this.#setStatus(S.SETUP, S.ACTIVE);
    const multifd = this.#multifd;
    this.downtimeTrace.reset();
    const load = new LoadVMState({
      registry,
      file,
      local: localConfiguration(machineType, options),
      sendSectionFooter: options.properties['send-section-footer'],
      capability: (name) => options.capability(name),
      openReturnPath: conn.returnPath
        ? () => conn.openWriter({ chunkSize: RETURN_PATH_CHUNK })
        : null,
      observer: this.#deps.loadObserver,
      multifdDeviceState: multifdDeviceStateSupported(options),
      sendSwitchoverStart: options.properties['send-switchover-start'],
      multifdRecvSync: multifd === null ? undefined : () => multifd.syncMain(),
      trace: this.downtimeTrace,
    });
    this.#load = load;
    const channelEnd = watchChannelEnd(conn);
    let loading = true;
    const watchdog = stallWatchdog(options.parameters['x-stall-timeout'], (err) =>
      conn.destroy(err),
    );
    // Bytes on the multifd channels are progress too: the main channel is quiet meanwhile.
    watchdog?.watch('nothing received from the source', () =>
      loading && file.available() === 0 ? file.offset + (multifd?.bytesReceived ?? 0) : null,
    );
    if (conn.writable !== null) {
      watchdog?.watch('the source reads nothing of the return path', drainProgress(conn.writable));
    }
    try {
      await load.load();
      this.downtimeTrace.checkpoint('dst-precopy-loadvm-completed');
      loading = false;
      // The source closes its multifd channels once the migration is over: no longer a loss.
      multifd?.finish();
      const received = this.#deps.globalState?.received() ?? null;
      if (received === null || runStateIsLive(received)) {
        if (this.#deps.autostart ?? true) {
          await this.#startGuest(load, channelEnd);
          this.downtimeTrace.checkpoint('dst-precopy-bh-vm-started');
        } else runControl.runstateSet(RunState.PAUSED);
      } else {
        runControl.runstateSet(received);
      }
    } catch (err) {
      watchdog?.stop();
      // Nothing more is read: the channel drains freely while it closes (SHUT, then the end).
      file.close();
      await this.#fail(err, load);
      return;
    }
    watchdog?.stop();
    this.#warnings.push(...load.warnings);
    this.#setStatus(S.ACTIVE, S.COMPLETED);
    await this.#destroy(load, false);
  }

  /**
   * `vm_start` after the load; throws if the guest must not run. The devices take their state
   * first; then, with a return path, SHUT 0 goes out as the very last step before the vCPUs
   * run, and only while the source is still there. A destination whose SHUT cannot reach the
   * source thus never runs the guest the source restarts (QEMU starts the guest, then sends
   * SHUT). If anything refuses, the vCPUs never ran: the VM is stopped again and the source
   * keeps the guest.
   */
  async #startGuest(load: LoadVMState, channelEnd: () => ChannelEnd | null): Promise<void> {
    const rc = this.#deps.runControl;
    const rp = load.returnPath;
    let refusal: Error;
    try {
      const failures = await rc.vmStart({
        strict: true,
        beforeResume: async () => {
          if (rp === null) return;
          const end = channelEnd();
          if (end !== null) {
            throw new Error(
              `the channel was ${CHANNEL_END[end]} before the destination confirmed the ` +
                'migration (SHUT)',
            );
          }
          putRpShut(rp, false);
          await rp.flush();
          this.#shutSent = true;
        },
      });
      if (failures.length === 0) return;
      refusal = new Error(`starting the VM failed: ${describeHandlerFailures(failures)}`);
    } catch (err) {
      refusal = asError(err);
    }
    await rc.vmStop(RunState.PAUSED);
    throw refusal;
  }

  async #fail(err: unknown, load: LoadVMState): Promise<void> {
    this.#error = asError(err);
    this.#warnings.push(...load.warnings);
    this.#setStatus(this.#status, S.FAILED);
    await this.#destroy(load, true);
    if (this.#exitOnError) (this.#deps.exit ?? ((code) => process.exit(code)))(1);
  }

  /** `migration_incoming_state_destroy`: load_cleanup, SHUT, the channels closed. */
  async #destroy(load: LoadVMState, failed: boolean): Promise<void> {
    this.#load = null;
    if (failed) this.#multifd?.destroy(this.#error ?? new Error('incoming migration failed'));
    for (const err of await load.cleanup()) this.#warnings.push(err.message);
    const rp = load.returnPath;
    if (rp !== null && !this.#shutSent) {
      try {
        putRpShut(rp, failed);
        await rp.flush();
      } catch (err) {
        this.#warnings.push(`sending SHUT: ${asError(err).message}`);
      }
    }
    const multifd = this.#multifd;
    this.#multifdStats = multifd?.stats ?? [];
    this.#multifd = null;
    if (failed && rp === null) {
      // Nothing to deliver: drop the channel, the source sees it fail.
      this.#conn?.destroy();
      await multifd?.close(false);
      return;
    }
    // A graceful close lets SHUT reach the source before the socket goes away.
    await Promise.all([this.#conn?.close(CLOSE_TIMEOUT_MS), multifd?.close(!failed)]);
  }

  #setStatus(from: MigrationStatus, to: MigrationStatus): void {
    if (this.#status !== from || migrationIsFinished(this.#status)) return;
    this.#status = to;
    this.#deps.events.status(to);
  }
}
