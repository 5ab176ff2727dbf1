/**
 * The VM's QMP commands (qemu-migration.md §5.2): run control, migration control and
 * statistics, and extensions for verification and visibility: `x-query-state-digest`,
 * `x-query-vfio`, `x-query-multifd` and `x-query-downtime`. Argument checks that QEMU words
 * itself (capabilities, parameters) are left to the migration options so the messages come
 * from one place.
 */
import { z } from 'zod';
import { DEFAULT_MIGRATION_PARAMETERS, MigrationStatus } from '../../migration/index.ts';
import type { DowntimeTrace } from '../../migration/index.ts';
import { flagsName, stateName } from '../../uapi/index.ts';
import { qapiVfioMigrationState } from '../../vfio/index.ts';
import type { MultifdLoadFigures } from '../../vfio/index.ts';
import type { Vm } from '../../vm/index.ts';
import type { QmpServer } from '../server.ts';
import { registerObjectCommands } from './object-commands.ts';
import { registerDeviceCommands } from './device-commands.ts';
import { registerFaultCommands } from './fault-commands.ts';

const parameterArgs = z.object(
  Object.fromEntries(
    Object.keys(DEFAULT_MIGRATION_PARAMETERS).map((k) => [k, z.unknown().optional()]),
  ),
);

const migrationStatuses = Object.values(MigrationStatus) as [string, ...string[]];

export function registerVmCommands(qmp: QmpServer, vm: Vm): void {
  const { outgoing, incoming, options } = vm.migration;

  registerObjectCommands(qmp, vm.objects);
  qmp.register('query-status', { handler: () => vm.runControl.queryStatus() });
  qmp.register('stop', { handler: () => vm.stop() });
  qmp.register('cont', {
    handler: () => {
      if (incoming.status === MigrationStatus.ACTIVE || incoming.status === MigrationStatus.SETUP) {
        throw new Error('Migration is not finished; the guest starts after the load');
      }
      return vm.start();
    },
  });

  qmp.register('migrate', {
    args: z.object({
      uri: z.string(),
      detach: z.boolean().optional(),
      resume: z.boolean().optional(),
    }),
    handler: ({ uri, resume }) => {
      if (resume) throw new Error('migrate: resume is only for postcopy, which is not supported');
      outgoing.migrate(uri);
    },
  });
  qmp.register('migrate-incoming', {
    args: z.object({ uri: z.string(), 'exit-on-error': z.boolean().optional() }),
    handler: async (args) => {
      if (vm.incomingMode !== 'defer') {
        throw new Error("'-incoming' was not specified on the command line");
      }
      if (incoming.status !== MigrationStatus.NONE) {
        throw new Error('The incoming migration has already been started');
      }
      await incoming.start(args.uri, { exitOnError: args['exit-on-error'] });
    },
  });
  qmp.register('migrate_cancel', { handler: () => outgoing.cancel() });
  qmp.register('migrate-continue', {
    args: z.object({ state: z.enum(migrationStatuses) }),
    handler: ({ state }) => outgoing.continue(state as MigrationStatus),
  });
  qmp.register('query-migrate', { handler: () => vm.migration.query() });
  qmp.register('migrate-set-capabilities', {
    args: z.object({
      capabilities: z.array(z.object({ capability: z.string(), state: z.boolean() })),
    }),
    handler: ({ capabilities }) =>
      options.setCapabilities(capabilities as Parameters<typeof options.setCapabilities>[0]),
  });
  qmp.register('query-migrate-capabilities', { handler: () => options.queryCapabilities() });
  qmp.register('migrate-set-parameters', {
    args: parameterArgs,
    handler: (args) =>
      options.setParameters(
        Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)),
      ),
  });
  qmp.register('query-migrate-parameters', { handler: () => options.queryParameters() });

  registerDeviceCommands(qmp, vm);
  registerFaultCommands(qmp, vm);
  qmp.register('x-query-state-digest', { handler: () => vm.stateDigest() });
  // Extension: what each multifd channel carried in the last migration, each way.
  qmp.register('x-query-multifd', {
    handler: () => ({
      outgoing: vm.migration.outgoing.multifdChannelPackets.map((packets, id) => ({ id, packets })),
      incoming: vm.migration.incoming.multifdChannels.map((c) => ({
        id: c.id,
        packets: c.packets,
        'ram-packets': c.ramPackets,
        'device-state-packets': c.deviceStatePackets,
        syncs: c.syncs,
      })),
    }),
  });
  // Extension: QEMU's downtime checkpoints and each entry's switchover time, each way.
  qmp.register('x-query-downtime', {
    handler: () => ({
      outgoing: downtimeInfo(vm.migration.outgoing.downtimeTrace),
      incoming: downtimeInfo(vm.migration.incoming.downtimeTrace),
    }),
  });
  qmp.register('x-query-vfio', {
    handler: async () => ({
      devices: await Promise.all(
        vm.vfio.devices.map(async (d) => {
          const m = d.migration;
          const state = m ? m.state.current : await d.device.getState();
          return {
            id: d.name,
            idstr: d.idstr,
            'qom-path': d.qomPath,
            flags: m ? flagsName(m.flags) : null,
            'device-state': stateName(state),
            blocker: d.blocker,
            bytes: { precopy: m?.sent.precopy ?? 0, 'stop-copy': m?.sent.stopCopy ?? 0 },
            multifd: multifdInfo(m?.multifdFigures ?? null),
            'state-log': (m?.stateLog ?? []).map((e) => ({
              seq: e.seq,
              'run-state': e.runState,
              'migration-status': e.migrationStatus ?? null,
              'device-state': qapiVfioMigrationState(e.deviceState),
            })),
          };
        }),
      ),
      transferred: vm.vfio.stats.transferred,
      'dirty-tracking': {
        mode: vm.vfio.dirtyTracking.lastMode,
        'pages-reported': vm.vfio.dirtyTracking.dirtyPagesReported,
      },
      container: {
        iommu: vm.container.mode,
        viommu: vm.viommu !== null,
        mappings: vm.container.mappings.length,
        faults: vm.container.faults,
      },
    }),
  });
}

/** A downtime trace (checkpoints and per-entry spans), in x-query-downtime. */
function downtimeInfo(t: DowntimeTrace): Record<string, unknown> {
  return {
    checkpoints: t.checkpoints.map((c) => ({ checkpoint: c.checkpoint, at: c.at })),
    spans: t.spans.map((x) => ({
      kind: x.kind,
      idstr: x.idstr,
      'instance-id': x.instanceId,
      start: x.start,
      end: x.end,
    })),
  };
}

/** A device's incoming multifd transfer, in x-query-vfio (null without one). */
function multifdInfo(f: MultifdLoadFigures | null): Record<string, unknown> | null {
  if (f === null) return null;
  return {
    packets: f.packets,
    'peak-queued-bytes': f.peakQueuedBytes,
    'out-of-order': f.outOfOrder,
    'config-loaded': f.configLoaded,
    'config-load-ms': f.configLoadMs,
    'load-ready-at': f.loadReadyAt,
    'data-loaded-at': f.dataLoadedAt,
    'config-loaded-at': f.configLoadedAt,
  };
}
