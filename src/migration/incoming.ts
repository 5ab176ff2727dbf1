/**
 * The incoming side of a VM's migration (QEMU's MigrationIncomingState, migration.c;
 * qemu-migration.md §2.6, §3.1). `-incoming URI` or `migrate-incoming` on a VM whose run
 * state is `inmigrate`:
 *
 *   none → setup        listening on tcp/unix, or opening the file; with tls-creds, a channel
 *                       whose handshake or peer check fails is reported and dropped, and the
 *                       destination goes on waiting in setup (migration/tls.c)
 *   setup → active      the source connected; `qemu_loadvm_state` runs
 *   active → completed  loaded: the guest starts if the source's run state was live (or no
 *                       globalstate came) and autostart is on; else it takes the sent state
 *                       (paused with -S); load_cleanup; SHUT 0 on the return path
 *   active → failed     nothing is started; load_cleanup; SHUT 1; the error is kept for
 *                       query-migrate and the process stays up
 */
import type { VmRunControl } from '../guest/run-control.ts';
import { RunState, runStateIsLive } from '../guest/runstate.ts';
import type { UserObjects } from '../security/index.ts';
import type { MigrationEvents } from './events.ts';
import type { GlobalState } from './global-state.ts';
import type { MigrationInfo, MigrationInfoSource, SocketAddressInfo } from './info.ts';
import { describeHandlerFailures } from './migration.ts';
import type { MigrationOptions } from './options/index.ts';
import { localConfiguration } from './savevm/configuration.ts';
import { LoadVMState } from './savevm/load.ts';
import type { SaveVMRegistry } from './savevm/registry.ts';
import { MigrationStatus, migrationIsFinished } from './status.ts';
import { putRpShut } from './stream/index.ts';
import {
  migrationTlsServer,
  listen as transportListen,
  toMigrationUri,
} from './transport/index.ts';
import type { MigrationConnection, MigrationListener, MigrationUri } from './transport/index.ts';

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
}

export interface IncomingStartOptions {
  /** Overrides the default for this migration (`migrate-incoming`'s exit-on-error). */
  exitOnError?: boolean;
}

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
  readonly #abort = new AbortController();
  #finished: Promise<MigrationStatus> = Promise.resolve(S.NONE);

  constructor(deps: MigrationIncomingDeps) {
    this.#deps = deps;
    this.#exitOnError = deps.exitOnError ?? false;
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
    try {
      // One main channel; the listener closes once it arrived.
      conn = await listener.accept(this.#abort.signal);
    } catch (err) {
      await listener.close();
      this.#error = err instanceof Error ? err : new Error(String(err));
      this.#setStatus(S.SETUP, S.FAILED);
      return this.#status;
    }
    await listener.close();
    this.#conn = conn;
    await this.#process(conn);
    return this.#status;
  }

  /** `process_incoming_migration_co` + `process_incoming_migration_bh`. */
  async #process(conn: MigrationConnection): Promise<void> {
    const { registry, options, machineType, runControl } = this.#deps;
    this.#setStatus(S.SETUP, S.ACTIVE);
    const load = new LoadVMState({
      registry,
      file: conn.openReader(),
      local: localConfiguration(machineType, options),
      sendSectionFooter: options.properties['send-section-footer'],
      capability: (name) => options.capability(name),
      openReturnPath: conn.returnPath
        ? () => conn.openWriter({ chunkSize: RETURN_PATH_CHUNK })
        : null,
    });
    try {
      await load.load();
    } catch (err) {
      await this.#fail(err, load);
      return;
    }
    this.#warnings.push(...load.warnings);
    const received = this.#deps.globalState?.received() ?? null;
    if (received === null || runStateIsLive(received)) {
      if (this.#deps.autostart ?? true) {
        const failures = await runControl.vmStart({ strict: true });
        if (failures.length > 0) {
          // The devices refused their state: the vCPUs never ran; stop again and let the
          // source keep the guest.
          await runControl.vmStop(RunState.PAUSED);
          await this.#fail(
            new Error(`starting the VM failed: ${describeHandlerFailures(failures)}`),
            load,
          );
          return;
        }
      } else {
        runControl.runstateSet(RunState.PAUSED);
      }
    } else {
      runControl.runstateSet(received);
    }
    this.#setStatus(S.ACTIVE, S.COMPLETED);
    await this.#destroy(load, false);
  }

  async #fail(err: unknown, load: LoadVMState): Promise<void> {
    this.#error = err instanceof Error ? err : new Error(String(err));
    this.#warnings.push(...load.warnings);
    this.#setStatus(this.#status, S.FAILED);
    await this.#destroy(load, true);
    if (this.#exitOnError) (this.#deps.exit ?? ((code) => process.exit(code)))(1);
  }

  /** `migration_incoming_state_destroy`: load_cleanup, SHUT, the channel closed. */
  async #destroy(load: LoadVMState, failed: boolean): Promise<void> {
    for (const err of await load.cleanup()) this.#warnings.push(err.message);
    const rp = load.returnPath;
    if (rp !== null) {
      try {
        putRpShut(rp, failed);
        await rp.flush();
      } catch (err) {
        this.#warnings.push(`sending SHUT: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failed && rp === null) {
      // Nothing to deliver: drop the channel, the source sees it fail.
      this.#conn?.destroy();
      return;
    }
    // A graceful close lets SHUT reach the source before the socket goes away.
    await this.#conn?.close(CLOSE_TIMEOUT_MS);
  }

  #setStatus(from: MigrationStatus, to: MigrationStatus): void {
    if (this.#status !== from || migrationIsFinished(this.#status)) return;
    this.#status = to;
    this.#deps.events.status(to);
  }
}
