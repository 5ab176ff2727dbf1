/**
 * Test helper: one side of a migration in this process — guest RAM (one block "ram", like
 * QEMU's `-machine none -m N`), run control with optional vCPU workers, a savevm registry with
 * the core's entries, notifiers, blockers and the VM's migration objects.
 */
import { RunState, Vcpus, VmRunControl, populateRam } from '../../src/guest/index.ts';
import type { WorkloadConfig } from '../../src/guest/index.ts';
import { GuestMemory, MiB } from '../../src/memory/index.ts';
import {
  MigrationBlockers,
  MigrationNotifiers,
  SaveVMRegistry,
  createVmMigration,
} from '../../src/migration/index.ts';
import type {
  MigrationEvent,
  MigrationEventType,
  MigrationOptionsInit,
  VmMigration,
  VmMigrationDeps,
} from '../../src/migration/index.ts';

export interface VmHalfOptions {
  /** Size of the block "ram" (default 16 MiB). */
  ramMiB?: number;
  /** Seed for the initial content; false leaves RAM zero (default seed 1). */
  populateSeed?: number | false;
  /** vCPU workers dirtying RAM once the guest runs (default none). */
  vcpus?: { count: number; workload: WorkloadConfig };
  /** 'source' starts running; 'destination' waits in inmigrate. */
  role: 'source' | 'destination';
  machineType?: string;
  options?: MigrationOptionsInit;
  autostart?: boolean;
  outgoing?: VmMigrationDeps['outgoing'];
  incoming?: VmMigrationDeps['incoming'];
  /** Registers more entries after the core's own (e.g. a toy device). */
  register?: (registry: SaveVMRegistry) => void;
}

export interface VmHalf {
  readonly memory: GuestMemory;
  readonly registry: SaveVMRegistry;
  readonly runControl: VmRunControl;
  readonly vcpus: Vcpus | null;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly migration: VmMigration;
  /** Every event and notifier call, in order. */
  readonly events: MigrationEvent[];
  readonly notified: MigrationEventType[];
  destroy(): Promise<void>;
}

export async function createVmHalf(opts: VmHalfOptions): Promise<VmHalf> {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: (opts.ramMiB ?? 16) * MiB }]);
  if (opts.populateSeed !== false) populateRam(memory, { seed: opts.populateSeed ?? 1 });
  const vcpus =
    opts.vcpus === undefined
      ? null
      : await Vcpus.create(memory, { count: opts.vcpus.count, workload: opts.vcpus.workload });
  const runControl = new VmRunControl({
    vcpus: vcpus ?? undefined,
    initial: opts.role === 'source' ? RunState.PRELAUNCH : RunState.INMIGRATE,
  });
  const registry = new SaveVMRegistry();
  const notifiers = new MigrationNotifiers();
  const blockers = new MigrationBlockers();
  const migration = createVmMigration({
    registry,
    memory,
    runControl,
    notifiers,
    blockers,
    machineType: opts.machineType ?? 'none',
    options: opts.options,
    autostart: opts.autostart,
    outgoing: opts.outgoing,
    incoming: opts.incoming,
  });
  opts.register?.(registry);
  const events: MigrationEvent[] = [];
  migration.events.on((e) => events.push(e));
  const notified: MigrationEventType[] = [];
  notifiers.add((e) => {
    notified.push(e);
  });
  if (opts.role === 'source') await runControl.vmStart();
  return {
    memory,
    registry,
    runControl,
    vcpus,
    notifiers,
    blockers,
    migration,
    events,
    notified,
    async destroy(): Promise<void> {
      migration.outgoing.cancel();
      await migration.outgoing.whenFinished();
      await migration.incoming.close();
      await vcpus?.destroy();
    },
  };
}

/** Starts `dst` listening on an ephemeral loopback port; returns the URI to migrate to. */
export async function listenLoopback(dst: VmHalf): Promise<string> {
  await dst.migration.incoming.start('tcp:127.0.0.1:0');
  const uri = dst.migration.incoming.uri;
  if (uri?.transport !== 'tcp') throw new Error('not listening on tcp');
  return `tcp:127.0.0.1:${uri.port}`;
}

/** Resolves when `cond` holds, polling every 5 ms; rejects after `ms`. */
export async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
