/**
 * A device's migration state as the VMM tracks it, and the one way to change it:
 * `vfio_migration_set_state(new, recover)` (qemu-migration.md §3.2, vfio-uapi.md §10).
 *
 * - Already in `new`: nothing happens (no ioctl, no event).
 * - SET fails: try SET `recover`; if that fails too, or `recover` is ERROR, VFIO_DEVICE_RESET
 *   and assume RUNNING. The original failure is thrown either way, saying what was done.
 * - Success: record `new`; adopt a returned data fd. A second fd while one is held means the
 *   device was reset behind our back: it is closed and EBADF "data_fd out of sync" thrown.
 *
 * Every state recorded (including the recovery state and the post-reset RUNNING) is logged
 * with the VM run state and migration status (§3.1) and, with `migration-events=on`, sent as a
 * VFIO_MIGRATION event (§5.3). The state is never read back from the device: like QEMU we
 * trust our own record, which is why an asynchronous reset shows up as "out of sync".
 */
import type { DataFd, VfioMigrationDevice } from '../device/device.ts';
import { MigState, VfioError, isVfioError, stateName } from '../uapi/index.ts';
import type { ErrnoName } from '../uapi/index.ts';
import { errorMessage } from './error-message.ts';
import { qapiVfioMigrationState } from './events.ts';
import type { StateLogEntry, VfioEnvironment } from './events.ts';

/** What a failed `set` left behind. */
export type SetStateOutcome = 'recovered' | 'reset';

export class VfioSetStateError extends Error {
  override readonly name = 'VfioSetStateError';
  readonly device: string;
  readonly from: MigState;
  readonly to: MigState;
  readonly outcome: SetStateOutcome;
  /** The errno of the failed SET, when the device gave one. */
  readonly code: ErrnoName | undefined;

  constructor(
    device: string,
    from: MigState,
    to: MigState,
    outcome: SetStateOutcome,
    cause: unknown,
    aftermath: string,
  ) {
    super(
      `${device}: failed setting device state ${stateName(from)} -> ${stateName(to)}: ` +
        `${errorMessage(cause)}; ${aftermath}`,
      { cause },
    );
    this.device = device;
    this.from = from;
    this.to = to;
    this.outcome = outcome;
    this.code = isVfioError(cause) ? cause.code : undefined;
  }
}

export interface VfioDeviceStateOptions {
  readonly device: VfioMigrationDevice;
  /** For messages: the device id. */
  readonly name: string;
  readonly qomPath: string;
  /** `migration-events`. */
  readonly events: boolean;
  readonly env: VfioEnvironment;
}

export class VfioDeviceState {
  /** Every state recorded, oldest first (starts with RUNNING at init). */
  readonly log: StateLogEntry[] = [];
  readonly #device: VfioMigrationDevice;
  readonly #name: string;
  readonly #qomPath: string;
  readonly #events: boolean;
  readonly #env: VfioEnvironment;
  #state: MigState = MigState.RUNNING;
  #dataFd: DataFd | null = null;

  constructor(opts: VfioDeviceStateOptions) {
    this.#device = opts.device;
    this.#name = opts.name;
    this.#qomPath = opts.qomPath;
    this.#events = opts.events;
    this.#env = opts.env;
    // QEMU assumes RUNNING at init without asking the device and without an event.
    this.#log(MigState.RUNNING);
  }

  get current(): MigState {
    return this.#state;
  }

  /** The saving or resuming data fd held, if any. */
  get dataFd(): DataFd | null {
    return this.#dataFd;
  }

  /** `vfio_migration_set_state`. Throws VfioSetStateError, or VfioError EBADF on out of sync. */
  async set(target: MigState, recover: MigState): Promise<void> {
    if (target === this.#state) return;
    const from = this.#state;
    let fd: DataFd | null;
    try {
      fd = await this.#device.setState(target);
    } catch (err) {
      return this.#recover(from, target, recover, err);
    }
    this.#record(target);
    if (fd !== null) this.#adopt(fd);
  }

  /** `vfio_migration_set_state_or_reset`: recovery state ERROR, i.e. reset on failure. */
  setOrReset(target: MigState): Promise<void> {
    return this.set(target, MigState.ERROR);
  }

  /** `vfio_migration_cleanup`: close the data fd (the device state does not change). */
  closeDataFd(): void {
    this.#dataFd?.close();
    this.#dataFd = null;
  }

  async #recover(from: MigState, to: MigState, recover: MigState, cause: unknown): Promise<never> {
    let why = 'recover state is ERROR';
    if (recover !== MigState.ERROR) {
      let recovered = false;
      try {
        // A recovery that opened a session is not one we read or write: close it.
        (await this.#device.setState(recover))?.close();
        recovered = true;
      } catch (err) {
        why = `recovery to ${stateName(recover)} failed too (${errorMessage(err)})`;
      }
      if (recovered) {
        this.#record(recover);
        const aftermath = `recovered to ${stateName(recover)}`;
        throw new VfioSetStateError(this.#name, from, to, 'recovered', cause, aftermath);
      }
    }
    try {
      await this.#device.reset();
    } catch (err) {
      // QEMU aborts here (hw_error): the device is in an unknown state.
      throw new Error(
        `${this.#name}: failed setting device state ${stateName(from)} -> ${stateName(to)} ` +
          `(${errorMessage(cause)}), then failed resetting the device: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    this.#record(MigState.RUNNING);
    throw new VfioSetStateError(
      this.#name,
      from,
      to,
      'reset',
      cause,
      `${why}: device reset, now RUNNING`,
    );
  }

  #adopt(fd: DataFd): void {
    if (this.#dataFd !== null) {
      // The device was reset asynchronously and ended the session we still hold.
      fd.close();
      throw new VfioError('EBADF', `${this.#name}: data_fd out of sync`);
    }
    this.#dataFd = fd;
  }

  /** `vfio_migration_set_device_state`: record, log, and send the event. */
  #record(state: MigState): void {
    this.#state = state;
    this.#log(state);
    if (this.#events) {
      this.#env.listeners.event?.({
        'device-id': this.#name,
        'qom-path': this.#qomPath,
        'device-state': qapiVfioMigrationState(state),
      });
    }
  }

  #log(state: MigState): void {
    const entry: StateLogEntry = {
      seq: this.#env.nextSeq(),
      runState: this.#env.runState(),
      migrationStatus: this.#env.migrationStatus(),
      deviceState: state,
    };
    this.log.push(entry);
    this.#env.listeners.stateChange?.(this.#name, entry);
  }
}
