/**
 * What the VFIO layer tells the rest of the VM about: the `VFIO_MIGRATION` QMP event
 * (qemu-migration.md §5.3), the per-device log of state changes with the VM run state and
 * migration status of the moment (the triplets of §3.1), and reports that fail nothing
 * (QEMU's error_report/warn_report). Delivery goes through listeners; this layer knows no QMP.
 */
import type { RunState } from '../guest/index.ts';
import { MigState } from '../uapi/index.ts';

/** QAPI `QapiVfioMigrationState` (qapi/vfio.json). ERROR is never recorded, so has no name. */
export type QapiVfioMigrationState =
  'stop' | 'running' | 'stop-copy' | 'resuming' | 'running-p2p' | 'pre-copy' | 'pre-copy-p2p';

const QAPI_NAMES: Readonly<Partial<Record<MigState, QapiVfioMigrationState>>> = {
  [MigState.STOP]: 'stop',
  [MigState.RUNNING]: 'running',
  [MigState.STOP_COPY]: 'stop-copy',
  [MigState.RESUMING]: 'resuming',
  [MigState.RUNNING_P2P]: 'running-p2p',
  [MigState.PRE_COPY]: 'pre-copy',
  [MigState.PRE_COPY_P2P]: 'pre-copy-p2p',
};

export function qapiVfioMigrationState(state: MigState): QapiVfioMigrationState {
  const name = QAPI_NAMES[state];
  if (name === undefined) throw new Error(`device state ${state} has no QAPI name`);
  return name;
}

/** The data of a `VFIO_MIGRATION` event. */
export interface VfioMigrationEvent {
  readonly 'device-id': string;
  readonly 'qom-path': string;
  readonly 'device-state': QapiVfioMigrationState;
}

/** One recorded device state, with what the VM and the migration were doing at that moment. */
export interface StateLogEntry {
  /** Order across every device of the VM, to compare devices (the P2P rule of §3.2). */
  readonly seq: number;
  readonly runState: RunState;
  /** The migration status (`query-migrate`), when the VM knows one. */
  readonly migrationStatus: string | undefined;
  readonly deviceState: MigState;
}

export interface VfioListeners {
  /** A `VFIO_MIGRATION` event, for devices with `migration-events=on`. */
  event?(data: VfioMigrationEvent): void;
  /** Every device state recorded (also the initial RUNNING). */
  stateChange?(device: string, entry: StateLogEntry): void;
  /** A problem reported but not returned, as QEMU's error_report/warn_report. */
  warning?(message: string): void;
}

/** What each device's migration needs from the VM around it. */
export interface VfioEnvironment {
  runState(): RunState;
  migrationStatus(): string | undefined;
  /** The VM's target is ARM (x-migration-load-config-after-iter=auto, §4.5). */
  readonly targetArm?: boolean;
  /** The next number of the VM-wide state log order. */
  nextSeq(): number;
  readonly listeners: VfioListeners;
}
