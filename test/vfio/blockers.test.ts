/**
 * Realize and blockers (qemu-migration.md §1.2, §3.4): the savevm entry and its idstr, the
 * enable-migration property, devices without migration or dirty tracking, the VM-wide
 * multiple-devices blocker and its re-evaluation on unplug, the postcopy refusal, and what
 * `query-migrate` may show.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { isVfioError } from '../../src/uapi/index.ts';
import { VfioRealizeError, vfioBlockerMessages } from '../../src/vfio/index.ts';
import { mig, saveCtx, simDevice, testVm } from './helpers.ts';

const MULTI =
  'Multiple VFIO devices migration is supported only if all of them support P2P migration';

test('a migratable device registers "<PCI path>/vfio", instance 0, version 1; paths are assigned in order', async () => {
  const vm = await testVm({
    devices: [
      { device: simDevice('nic', 7, 'nic0') },
      { device: simDevice('gpu', 7, 'gpu0'), addr: '0000:00:06.0' },
      { device: simDevice('mtty', 7, 'tty0') },
    ],
  });
  assert.deepEqual(
    vm.registry.entries().map((e) => [e.idstr, e.instanceId, e.versionId]),
    [
      ['0000:00:05.0/vfio', 0, 1],
      ['0000:00:06.0/vfio', 0, 1],
      ['0000:00:07.0/vfio', 0, 1],
    ],
  );
  assert.deepEqual(vm.blockers.reasons(), []);
  assert.equal(vm.set.migrationActive, true);
  assert.deepEqual(vm.set.queryMigrateInfo(), { transferred: 0 });
});

test('enable-migration=off: a blocker, no savevm entry', async () => {
  const vm = await testVm({
    devices: [{ device: simDevice('nic', 7, 'nic0'), properties: 'enable-migration=off' }],
  });
  assert.deepEqual(vm.blockers.reasons(), ['nic0: Migration is disabled for VFIO device']);
  assert.equal(vm.registry.entries().length, 0);
  assert.equal(vm.set.migrationActive, false);
  assert.equal(vm.set.queryMigrateInfo(), undefined);
});

test('a device without migration support: blocker in auto, realize error in on (and nothing left behind)', async () => {
  const vm = await testVm({
    devices: [{ device: simDevice('nic', 7, 'nic0', ',migratable=off') }],
  });
  assert.deepEqual(vm.blockers.reasons(), ["nic0: VFIO device doesn't support migration"]);
  assert.equal(vm.set.find('nic0')!.migration, null);

  await assert.rejects(
    testVm({
      devices: [
        { device: simDevice('nic', 7, 'nic1') },
        {
          device: simDevice('nic', 7, 'nic0', ',migratable=off'),
          properties: 'enable-migration=on',
        },
      ],
    }),
    (err: unknown) =>
      err instanceof VfioRealizeError &&
      err.message === "nic0: VFIO device doesn't support migration",
  );
});

test('no usable dirty tracking: a blocker in auto (migration still set up), a warning in on', async () => {
  const vm = await testVm({ devices: [{ device: simDevice('nic', 7, 'nic0', ',logging=off') }] });
  assert.deepEqual(vm.blockers.reasons(), [vfioBlockerMessages.noDirtyTracking('nic0')]);
  assert.ok(vm.set.find('nic0')!.migration, 'QEMU keeps the migration with this blocker');
  assert.equal(vm.registry.entries().length, 1);

  const on = await testVm({
    devices: [
      { device: simDevice('nic', 7, 'nic0', ',logging=off'), properties: 'enable-migration=on' },
    ],
  });
  assert.deepEqual(on.blockers.reasons(), []);
  assert.deepEqual(on.warnings, [vfioBlockerMessages.noDirtyTracking('nic0')]);
});

test('several devices not all with P2P: one VM-wide blocker, lifted when the odd device leaves', async () => {
  const vm = await testVm({
    devices: [
      { device: simDevice('nic', 7, 'nic0') },
      { device: simDevice('gpu', 5, 'gpu0') },
      { device: simDevice('mtty', 3, 'tty0') },
    ],
  });
  assert.deepEqual(vm.blockers.reasons(), [MULTI]);
  vm.set.remove(vm.set.find('tty0')!);
  assert.deepEqual(vm.blockers.reasons(), [MULTI], 'gpu0 still lacks P2P');
  vm.set.remove(vm.set.find('gpu0')!);
  assert.deepEqual(vm.blockers.reasons(), []);
  assert.equal(vm.registry.entries().length, 1, 'the removed devices unregistered');
  const mark = vm.order.length;
  await vm.runControl.vmStop(RunState.PAUSED);
  assert.deepEqual(
    new Set(vm.order.slice(mark).map((e) => e.device)),
    new Set(['nic0']),
    'the removed devices have no VM-state handler left',
  );
});

test('a single device without P2P is fine; all with P2P is fine', async () => {
  const one = await testVm({ devices: [{ device: simDevice('nic', 1, 'nic0') }] });
  assert.deepEqual(one.blockers.reasons(), []);
  const all = await testVm({
    devices: [{ device: simDevice('nic', 3, 'nic0') }, { device: simDevice('gpu', 7, 'gpu0') }],
  });
  assert.deepEqual(all.blockers.reasons(), []);
});

test('enable-migration=on on the device that breaks the P2P rule fails its realize instead', async () => {
  await assert.rejects(
    testVm({
      devices: [
        { device: simDevice('nic', 7, 'nic0') },
        { device: simDevice('gpu', 1, 'gpu0'), properties: 'enable-migration=on' },
      ],
    }),
    (err: unknown) => err instanceof VfioRealizeError && err.message === MULTI,
  );
});

test('save prepare refuses postcopy-ram and background-snapshot with EOPNOTSUPP, not savevm', async () => {
  const vm = await testVm({ devices: [{ device: simDevice('nic', 7, 'nic0') }] });
  const m = mig(vm, 'nic0');
  for (const cap of ['postcopy-ram', 'background-snapshot']) {
    assert.throws(
      () => m.savePrepare(saveCtx([cap])),
      (err: unknown) =>
        isVfioError(err, 'EOPNOTSUPP') &&
        err.message.startsWith('EOPNOTSUPP: nic0: VFIO migration is not supported with'),
    );
  }
  m.savePrepare(saveCtx([]));
  await vm.runControl.vmStop(RunState.PAUSED);
  vm.runControl.runstateSet(RunState.RUNNING);
  vm.runControl.runstateSet(RunState.SAVE_VM);
  m.savePrepare(saveCtx(['postcopy-ram', 'background-snapshot']));
});

test('detach removes every entry, handler, blocker and listener', async () => {
  const vm = await testVm({
    devices: [
      { device: simDevice('nic', 7, 'nic0') },
      { device: simDevice('gpu', 5, 'gpu0'), properties: 'enable-migration=off' },
      { device: simDevice('mtty', 1, 'tty0') },
    ],
  });
  assert.equal(vm.blockers.reasons().length, 2);
  vm.set.detach();
  assert.deepEqual(vm.blockers.reasons(), []);
  assert.equal(vm.registry.entries().length, 0);
  assert.deepEqual(await vm.runControl.vmStop(RunState.PAUSED), []);
  assert.deepEqual(
    vm.order.filter((e) => e.state !== 2),
    [],
    'no handler ran',
  );
});
