/**
 * The VFIO layer inside a real migration: two VMs in this process wired to the migration core
 * (createVmMigration), sim devices running and doing DMA on wall time, over loopback TCP. The
 * destination's devices end with the source's digests at the stop, guest RAM (written by DMA
 * during pre-copy) arrives intact, query-migrate shows the VFIO bytes, and a device failing
 * at the stop fails the migration with the source guest and devices running again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSimDevice } from '../../src/device/sim/index.ts';
import type { SimDevice } from '../../src/device/sim/index.ts';
import { RunState, VmRunControl, populateRam } from '../../src/guest/index.ts';
import { GuestMemory } from '../../src/memory/index.ts';
import {
  MigrationBlockers,
  MigrationNotifiers,
  SaveVMRegistry,
  createVmMigration,
} from '../../src/migration/index.ts';
import type { MigrationCapabilityStatus, VmMigration } from '../../src/migration/index.ts';
import { MigState, stateName } from '../../src/uapi/index.ts';
import { attachVfioDevices } from '../../src/vfio/index.ts';
import type { VfioDeviceSet } from '../../src/vfio/index.ts';

const SPECS = [
  ['nic0', 'sim:nic,state-size=2M,dirty-rate=1M,dma-rate=1M'],
  ['gpu0', 'sim:gpu,state-size=4M,dirty-rate=2M,dma-rate=1M'],
  ['tty0', 'sim:mtty,activity=500'],
] as const;

interface Side {
  memory: GuestMemory;
  runControl: VmRunControl;
  migration: VmMigration;
  devices: SimDevice[];
  vfio: VfioDeviceSet;
  close(): Promise<void>;
}

async function side(
  role: 'source' | 'destination',
  caps: MigrationCapabilityStatus[],
): Promise<Side> {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 8 << 20 }]);
  if (role === 'source') populateRam(memory, { seed: 3 });
  const runControl = new VmRunControl({
    initial: role === 'source' ? RunState.PRELAUNCH : RunState.INMIGRATE,
  });
  const deps = {
    registry: new SaveVMRegistry(),
    memory,
    runControl,
    notifiers: new MigrationNotifiers(),
    blockers: new MigrationBlockers(),
  };
  const migration = createVmMigration({
    ...deps,
    machineType: 'none',
    options: { capabilities: caps },
  });
  const devices = SPECS.map(([id, spec], i) =>
    createSimDevice(`${spec},seed=${role === 'source' ? i + 1 : i + 11}`, {
      id,
      memory,
      ...(role === 'source' ? { autoRunMs: 5 } : {}),
    }),
  );
  const vfio = await attachVfioDevices({
    ...deps,
    devices: devices.map((device) => ({ device })),
    migrationStatus: () =>
      role === 'source' ? migration.outgoing.status : migration.incoming.status,
  });
  migration.outgoing.addInfoProvider(vfio.infoProvider());
  if (role === 'source') assert.deepEqual(await runControl.vmStart(), []);
  return {
    memory,
    runControl,
    migration,
    devices,
    vfio,
    async close() {
      for (const d of devices) d.stopAutoRun();
      migration.outgoing.cancel();
      await migration.outgoing.whenFinished();
      await migration.incoming.close();
    },
  };
}

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function listen(dst: Side): Promise<string> {
  await dst.migration.incoming.start('tcp:127.0.0.1:0');
  const uri = dst.migration.incoming.uri;
  assert.ok(uri?.transport === 'tcp');
  return `tcp:127.0.0.1:${uri.port}`;
}

const CAPS: Record<string, MigrationCapabilityStatus[]> = {
  'no capabilities': [],
  'switchover-ack': [
    { capability: 'return-path', state: true },
    { capability: 'switchover-ack', state: true },
  ],
};

for (const [label, caps] of Object.entries(CAPS)) {
  test(
    `live migration with three VFIO devices over TCP (${label})`,
    { timeout: 60_000 },
    async () => {
      const src = await side('source', caps);
      const dst = await side('destination', caps);
      try {
        // The source devices' digests once they stopped (lowest priority: the last handler).
        let digests: string[] = [];
        src.runControl.addVmChangeStateHandler({
          name: 'digest',
          priority: -100,
          handler: async (running) => {
            if (!running) digests = await Promise.all(src.devices.map((d) => d.stateDigest()));
          },
        });
        src.migration.outgoing.migrate(await listen(dst));
        assert.equal(
          await src.migration.outgoing.whenFinished(),
          'completed',
          String(src.migration.outgoing.error),
        );
        await waitFor(
          () => dst.runControl.runState === RunState.RUNNING,
          'the destination guest to run',
        );

        assert.deepEqual(await Promise.all(dst.devices.map((d) => d.stateDigest())), digests);
        assert.equal(
          dst.memory.digest().sha256,
          src.memory.digest().sha256,
          'RAM incl. DMA writes',
        );
        assert.ok(
          src.devices.slice(0, 2).every((d) => d.dmaBytesWritten > 0),
          'nic and gpu did DMA (mtty does none)',
        );
        assert.deepEqual(
          dst.devices.map((d) => stateName(d.state)),
          ['RUNNING', 'RUNNING', 'RUNNING'],
        );
        assert.deepEqual(
          src.devices.map((d) => stateName(d.state)),
          ['STOP', 'STOP', 'STOP'],
        );

        const info = src.migration.query();
        assert.equal(info.vfio?.transferred, src.vfio.stats.transferred);
        assert.ok(src.vfio.stats.transferred > 6 << 20, 'at least every device state once');
        assert.deepEqual(
          src.vfio
            .find('nic0')!
            .migration!.stateLog.map(
              (e) => `${e.runState} ${e.migrationStatus} ${stateName(e.deviceState)}`,
            ),
          [
            'prelaunch none RUNNING',
            // The guest starts after the devices were realized.
            'running none RUNNING_P2P',
            'running none RUNNING',
            'running setup PRE_COPY',
            'finish-migrate active PRE_COPY_P2P',
            'finish-migrate active STOP_COPY',
            'postmigrate completed STOP',
          ],
        );
      } finally {
        await src.close();
        await dst.close();
      }
    },
  );
}

test(
  'a device failing at the stop fails the migration; the source guest and devices run again',
  { timeout: 60_000 },
  async () => {
    const src = await side('source', []);
    const dst = await side('destination', []);
    try {
      src.devices[1]!.faults.failArc({ reaching: MigState.STOP_COPY, errno: 'EIO' });
      src.migration.outgoing.migrate(await listen(dst));
      assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
      assert.match(
        String(src.migration.outgoing.error),
        /vfio gpu0: VM stop \(finish-migrate\): gpu0: failed setting device state PRE_COPY_P2P -> STOP_COPY: EIO/,
      );
      await waitFor(() => src.runControl.isRunning(), 'the source guest to run again');
      assert.deepEqual(
        src.devices.map((d) => stateName(d.state)),
        ['RUNNING', 'RUNNING', 'RUNNING'],
      );
      assert.ok(
        src.vfio.migrations().every((m) => m.state.dataFd === null),
        'data fds closed',
      );
    } finally {
      await src.close();
      await dst.close();
    }
  },
);
