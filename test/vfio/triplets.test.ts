/**
 * The (VM run state, migration status, device state) sequences of qemu-migration.md §3.1 on
 * both sides, for a device with PRE_COPY and P2P and for one with neither, and the
 * VFIO_MIGRATION events (§5.3) of a device with migration-events=on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { stateName } from '../../src/uapi/index.ts';
import type { VFIOMigration } from '../../src/vfio/index.ts';
import { mig, migrate, simDevice, testVm } from './helpers.ts';

function triplets(m: VFIOMigration): string[] {
  return m.stateLog.map((e) => `${e.runState} ${e.migrationStatus} ${stateName(e.deviceState)}`);
}

async function run(flags: number) {
  const a = simDevice('nic', flags, 'nic0', ',seed=1');
  const b = simDevice('nic', flags, 'nic0', ',seed=2');
  const src = await testVm({ devices: [{ device: a, properties: 'migration-events=on' }] });
  const dst = await testVm({
    devices: [{ device: b, properties: { 'migration-events': true } }],
    initial: RunState.INMIGRATE,
  });
  await migrate(src, dst, { activity: () => a.advance(2) });
  return { src, dst };
}

test('PRE_COPY + P2P device: source and destination triplets', async () => {
  const { src, dst } = await run(7);
  assert.deepEqual(triplets(mig(src, 'nic0')), [
    'running none RUNNING',
    'running setup PRE_COPY',
    'finish-migrate active PRE_COPY_P2P',
    'finish-migrate active STOP_COPY',
    'postmigrate completed STOP',
  ]);
  assert.deepEqual(triplets(mig(dst, 'nic0')), [
    'inmigrate none RUNNING',
    'inmigrate active RESUMING',
    'running active RUNNING_P2P',
    'running active RUNNING',
  ]);
  assert.deepEqual(
    src.events.map((e) => e['device-state']),
    ['pre-copy', 'pre-copy-p2p', 'stop-copy', 'stop'],
    'no event for the initial RUNNING',
  );
  assert.deepEqual(src.events[0], {
    'device-id': 'nic0',
    'qom-path': '/machine/peripheral/nic0',
    'device-state': 'pre-copy',
  });
  assert.deepEqual(
    dst.events.map((e) => e['device-state']),
    ['resuming', 'running-p2p', 'running'],
  );
});

test('device without PRE_COPY or P2P: STOP at the VM stop, STOP_COPY only in save complete', async () => {
  const { src, dst } = await run(1);
  assert.deepEqual(triplets(mig(src, 'nic0')), [
    'running none RUNNING',
    'finish-migrate active STOP',
    'finish-migrate device STOP_COPY',
    'postmigrate completed STOP',
  ]);
  assert.deepEqual(triplets(mig(dst, 'nic0')), [
    'inmigrate none RUNNING',
    'inmigrate active RESUMING',
    'running active RUNNING',
  ]);
});

test('without migration-events no VFIO_MIGRATION event is sent', async () => {
  const vm = await testVm({ devices: [{ device: simDevice('nic', 7, 'nic0') }] });
  await vm.runControl.vmStop(RunState.PAUSED);
  await vm.runControl.vmStart();
  assert.deepEqual(vm.events, []);
  assert.deepEqual(triplets(mig(vm, 'nic0')).slice(1), [
    'paused none RUNNING_P2P',
    'paused none STOP',
    'running none RUNNING_P2P',
    'running none RUNNING',
  ]);
});
