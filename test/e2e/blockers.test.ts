/**
 * Migration blockers and refusals of VFIO devices, on a VM process over QMP (qemu-migration.md
 * §3.4): QEMU's reasons in `query-migrate` `blocked-reasons` and in the `migrate` error; the
 * multiple-devices rule re-evaluated by `device_del`; postcopy-ram and background-snapshot
 * refused by the devices' save_prepare; `enable-migration` off / auto / on; device dirty
 * tracking behind a vIOMMU; no usable dirty tracking in `auto`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import { vfioBlockerMessages } from '../../src/vfio/index.ts';
import {
  CAPS,
  E2e,
  deviceStates,
  digest,
  finished,
  query,
  runStatus,
  setCaps,
  smallGuest,
  waitFor,
} from './harness.ts';

const NIC = 'sim:nic,state-size=1M';
const guest = (devices: unknown[], over: Record<string, unknown> = {}) =>
  smallGuest({ memory: '64M', vcpus: 1, devices, ...over });

async function blockedReasons(vm: VmProcess): Promise<string[]> {
  return (await query(vm))['blocked-reasons'] ?? [];
}

/** `migrate` is refused with exactly `message`, and nothing started. */
async function refused(vm: VmProcess, message: string | RegExp): Promise<void> {
  await assert.rejects(vm.qmp.execute('migrate', { uri: 'tcp:127.0.0.1:1' }), (err: Error) => {
    const desc = err.message.replace(/^GenericError: /, '');
    if (typeof message === 'string') assert.equal(desc, message);
    else assert.match(desc, message);
    return true;
  });
  assert.equal((await query(vm)).status, undefined, 'no migration started');
  assert.equal(await runStatus(vm), 'running');
}

test('devices without P2P: one VM-wide blocker, lifted by device_del; a single device migrates', async (t) => {
  const e = new E2e(t);
  const nic0 = { id: 'nic0', model: `${NIC},flags=stop-copy+pre-copy` };
  const nic1 = { id: 'nic1', model: `${NIC},flags=stop-copy` };
  const src = await e.source(guest([nic0, nic1]));
  assert.deepEqual(await blockedReasons(src), [vfioBlockerMessages.multipleDevices]);
  await refused(src, vfioBlockerMessages.multipleDevices);

  const deleted: unknown[] = [];
  src.qmp.onEvent((ev) => {
    if (ev.event === 'DEVICE_DELETED') deleted.push(ev.data);
  });
  await assert.rejects(src.qmp.execute('device_del', { id: 'nic9' }), /Device 'nic9' not found/);
  await src.qmp.execute('device_del', { id: 'nic1' });
  assert.deepEqual(await blockedReasons(src), []);
  assert.deepEqual(await deviceStates(src), { nic0: 'RUNNING' });
  assert.deepEqual(deleted, [{ device: 'nic1', path: '/machine/peripheral/nic1' }]);

  const dst = await e.destination(guest([nic0]));
  await setCaps(src, CAPS);
  await setCaps(dst, CAPS);
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  assert.equal((await waitFor(src, finished, 'the migration')).status, 'completed');
  await waitFor(dst, finished, 'the incoming side');
  assert.equal((await digest(dst)).sha256, (await digest(src)).sha256);
});

test("postcopy-ram and background-snapshot: migrate refused by the devices' save_prepare", async (t) => {
  const e = new E2e(t);
  const src = await e.source(guest([{ id: 'nic0', model: NIC }]));
  assert.deepEqual(await blockedReasons(src), [], 'not blockers');
  await setCaps(src, { 'postcopy-ram': true });
  await refused(
    src,
    /save_prepare of '0000:00:05\.0\/vfio' .*nic0: VFIO migration is not supported with postcopy migration$/,
  );
  await setCaps(src, { 'postcopy-ram': false, 'background-snapshot': true });
  await refused(src, /nic0: VFIO migration is not supported with background snapshot$/);
  assert.deepEqual(await deviceStates(src), { nic0: 'RUNNING' });
});

test('enable-migration: off blocks; auto blocks a device without migration; on fails its realize', async (t) => {
  const e = new E2e(t);
  const off = await e.source(guest([{ id: 'nic0', model: NIC, 'enable-migration': 'off' }]), 'off');
  assert.deepEqual(await blockedReasons(off), [vfioBlockerMessages.disabled('nic0')]);
  await refused(off, vfioBlockerMessages.disabled('nic0'));

  const noMig = { id: 'nic0', model: `${NIC},migratable=off` };
  const auto = await e.source(guest([noMig]), 'auto');
  assert.deepEqual(await blockedReasons(auto), [vfioBlockerMessages.notSupported('nic0')]);

  await assert.rejects(
    e.source(guest([{ ...noMig, 'enable-migration': 'on' }]), 'on'),
    /nic0: VFIO device doesn't support migration/,
  );
});

test('dirty tracking: none usable blocks in auto (not with iommufd); device tracking behind a vIOMMU blocks', async (t) => {
  const e = new E2e(t);
  const noLog = { id: 'nic0', model: `${NIC},logging=off` };
  const type1 = await e.source(guest([noLog], { iommu: 'type1-perpetual' }), 'type1');
  assert.deepEqual(await blockedReasons(type1), [vfioBlockerMessages.noDirtyTracking('nic0')]);
  await refused(type1, vfioBlockerMessages.noDirtyTracking('nic0'));
  const iommufd = await e.source(guest([noLog], { iommu: 'iommufd' }), 'iommufd');
  assert.deepEqual(await blockedReasons(iommufd), []);

  const viommu = await e.source(
    guest([{ id: 'nic0', model: NIC }], { iommu: 'iommufd', viommu: true }),
    'viommu',
  );
  assert.deepEqual(await blockedReasons(viommu), [vfioBlockerMessages.viommu('nic0')]);
  await refused(viommu, vfioBlockerMessages.viommu('nic0'));
});
