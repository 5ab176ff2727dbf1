/**
 * Everything one VM needs to migrate, wired the way QEMU's migration_object_init does it:
 * shared options and events, the outgoing MigrationState, the incoming side, and the core's
 * own savevm entries — the load-only "timer", "ram" (it precedes every device in every loop)
 * and "globalstate". Devices (VFIO) register after this, through the same registry,
 * notifiers, blockers, dirty-log listeners and `outgoing.addInfoProvider`.
 */
import type { VmRunControl } from '../guest/run-control.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import type { UserObjects } from '../security/index.ts';
import type { MigrationBlockers } from './blockers.ts';
import type { MigrationClock } from './clock.ts';
import { MigrationEvents } from './events.ts';
import { GlobalState, registerGlobalState } from './global-state.ts';
import { MigrationIncomingState } from './incoming.ts';
import type { MigrationIncomingDeps } from './incoming.ts';
import { queryMigrate } from './info.ts';
import type { MigrationInfo } from './info.ts';
import { MigrationState } from './migration.ts';
import type { MigrationStateDeps } from './migration.ts';
import type { MigrationNotifiers } from './notifiers.ts';
import { MigrationOptions } from './options/index.ts';
import type { MigrationOptionsInit } from './options/index.ts';
import { registerRam } from './ram/ram.ts';
import type { RamHandler } from './ram/ram.ts';
import type { SaveVMRegistry } from './savevm/registry.ts';
import { registerTimer } from './timer.ts';

export interface VmMigrationDeps {
  /** Empty: the core's entries come first. */
  readonly registry: SaveVMRegistry;
  readonly memory: GuestMemory;
  readonly runControl: VmRunControl;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly machineType: string;
  /** Capabilities, parameters and `-global migration.X` properties to start with. */
  readonly options?: MigrationOptionsInit;
  /** false is QEMU's -S (the incoming guest stays paused). */
  readonly autostart?: boolean;
  readonly clock?: MigrationClock;
  /**
   * Extra knobs of each side (channel factories, timeouts, exit-on-error, the fault layer's
   * seams).
   */
  readonly outgoing?: Pick<
    MigrationStateDeps,
    'connect' | 'returnPathTimeoutMs' | 'deviceStatePackets'
  >;
  readonly incoming?: Pick<
    MigrationIncomingDeps,
    'listen' | 'exitOnError' | 'exit' | 'reportRefused' | 'loadObserver' | 'channelIdentified'
  >;
  /** The VM's UUID (QEMU's -uuid), carried by every multifd handshake; default all zeros. */
  readonly uuid?: Uint8Array;
  /** The VM's user-created objects, where tls-creds and tls-authz are found. */
  readonly objects?: UserObjects;
}

export interface VmMigration {
  readonly options: MigrationOptions;
  readonly events: MigrationEvents;
  readonly outgoing: MigrationState;
  readonly incoming: MigrationIncomingState;
  readonly ram: RamHandler;
  readonly globalState: GlobalState;
  /** `query-migrate`. */
  query(): MigrationInfo;
}

export function createVmMigration(deps: VmMigrationDeps): VmMigration {
  const options = new MigrationOptions(deps.options);
  const events = new MigrationEvents(options);
  const { registry, memory, runControl, machineType } = deps;
  const globalState = new GlobalState(runControl, {
    optional: !options.properties['store-global-state'],
  });
  const outgoing = new MigrationState({
    ...deps.outgoing,
    registry,
    memory,
    runControl,
    notifiers: deps.notifiers,
    blockers: deps.blockers,
    options,
    events,
    machineType,
    globalState,
    clock: deps.clock,
    objects: deps.objects,
    uuid: deps.uuid,
  });
  // QEMU's order: "timer" takes section id 0. A QEMU destination finds the entry of a PART
  // or END section by its id, and entries it never bound all answer to 0; an iterative entry
  // with id 0 (RAM, if it came first) would be taken for the first of them.
  registerTimer(registry);
  const ram = registerRam(registry, memory, outgoing);
  registerGlobalState(registry, globalState);
  const incoming = new MigrationIncomingState({
    ...deps.incoming,
    registry,
    runControl,
    options,
    events,
    machineType,
    globalState,
    autostart: deps.autostart,
    objects: deps.objects,
    uuid: deps.uuid,
    multifdRam: ram.load,
  });
  return {
    options,
    events,
    outgoing,
    incoming,
    ram,
    globalState,
    query: () => queryMigrate(incoming, outgoing),
  };
}
