/**
 * Pending-size accounting (qemu-migration.md §1.6 [V10]): the consume rule, and the figures
 * the estimate and exact hooks report for known devices, including the 100 GiB answer when
 * MIG_DATA_SIZE fails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RunState } from '../../src/guest/index.ts';
import { VfioError } from '../../src/uapi/index.ts';
import type { VFIOMigration } from '../../src/vfio/index.ts';
import { PrecopyEstimates, VFIO_MIG_STOP_COPY_SIZE } from '../../src/vfio/index.ts';
import { capture, mig, overriding, saveCtx, simDevice, testVm } from './helpers.ts';

const estimate = (m: VFIOMigration): number => {
  const p = { mustPrecopy: 0, canPostcopy: 0 };
  m.statePendingEstimate(p);
  assert.equal(p.canPostcopy, 0, 'VFIO never adds to can_postcopy');
  return p.mustPrecopy;
};
const exact = async (m: VFIOMigration): Promise<number> => {
  const p = { mustPrecopy: 1000, canPostcopy: 7 };
  await m.statePendingExact(p);
  assert.equal(p.canPostcopy, 7);
  return p.mustPrecopy - 1000;
};

test('consume: initial bytes first, then dirty; 0 bytes clears both', () => {
  const e = new PrecopyEstimates();
  e.initSize = 100;
  e.dirtySize = 50;
  e.consume(30);
  assert.deepEqual([e.initSize, e.dirtySize], [70, 50]);
  e.consume(90);
  assert.deepEqual([e.initSize, e.dirtySize], [0, 30]);
  e.consume(1000);
  assert.deepEqual([e.initSize, e.dirtySize], [0, 0]);
  e.initSize = 5;
  e.dirtySize = 9;
  e.consume(0);
  assert.deepEqual([e.initSize, e.dirtySize], [0, 0]);
  fc.assert(
    fc.property(fc.nat(1e9), fc.nat(1e9), fc.nat(2e9), (init, dirty, n) => {
      e.initSize = init;
      e.dirtySize = dirty;
      e.consume(n);
      if (n === 0) return e.total === 0;
      const fromInit = Math.min(init, n);
      return e.initSize === init - fromInit && e.dirtySize === Math.max(0, dirty - (n - fromInit));
    }),
  );
});

test('mtty (2 ports): 24 initial bytes in pre-copy, 96 bytes of state in all', async () => {
  const dev = simDevice('mtty', 7, 'tty0', ',activity=0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'tty0');
  assert.equal(estimate(m), 0, 'RUNNING: nothing to pre-copy');
  assert.equal(await exact(m), 96, 'RUNNING: the stop-copy size only');

  await capture((f) => m.saveSetup(f, saveCtx()));
  assert.deepEqual([m.estimates.initSize, m.estimates.dirtySize], [24, 0]);
  assert.equal(estimate(m), 24);
  assert.equal(await exact(m), (await dev.stopCopySize()) + 24);
  assert.equal(await dev.stopCopySize(), 96, 'unread header plus the ports');

  assert.equal(await capture((f) => m.saveLiveIterate(f)).then((b) => b.length), 48);
  assert.equal(estimate(m), 0);
  assert.equal(await exact(m), 72, 'only the ports are left for the stop-copy phase');

  await vm.runControl.vmStop(RunState.FINISH_MIGRATE);
  assert.equal(estimate(m), 0, 'STOP_COPY is no pre-copy state');
  assert.equal(await exact(m), 72);
  await m.saveCleanup();
  assert.equal(m.estimates.total, 0);
});

test('a nic under load: after each iteration the estimate is the previous one less the bytes read', async () => {
  const dev = simDevice('nic', 5, 'nic0', ',dirty-rate=8M');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  for (let i = 0; i < 12; i++) {
    dev.advance(4);
    if (i % 3 === 0) await exact(m); // refreshes the cached figures from PRECOPY_INFO
    const [init, dirty] = [m.estimates.initSize, m.estimates.dirtySize];
    const part = await capture((f) => m.saveLiveIterate(f));
    const n = part.length > 8 ? Number(part.readBigUInt64BE(8)) : 0;
    const fromInit = Math.min(init, n);
    const want = n === 0 ? [0, 0] : [init - fromInit, Math.max(0, dirty - (n - fromInit))];
    assert.deepEqual([m.estimates.initSize, m.estimates.dirtySize], want, `iteration ${i}`);
    assert.equal(estimate(m), want[0]! + want[1]!);
  }
});

test('MIG_DATA_SIZE failing: exact reports 100 GiB so the downtime limit is never believed met', async () => {
  const dev = overriding(simDevice('nic', 5, 'nic0', ',state-size=2M'), {
    stopCopySize: () => Promise.reject(new VfioError('EIO', 'firmware busy')),
  });
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  assert.equal(await exact(m), VFIO_MIG_STOP_COPY_SIZE);
  assert.equal(VFIO_MIG_STOP_COPY_SIZE, 107_374_182_400);
  // At setup the same failure falls back to a 1 MiB buffer.
  await capture((f) => m.saveSetup(f, saveCtx()));
  const part = await capture((f) => m.saveLiveIterate(f));
  assert.equal(Number(part.readBigUInt64BE(8)), 1 << 20, 'one full 1 MiB read');
  assert.equal(await exact(m), VFIO_MIG_STOP_COPY_SIZE + m.estimates.total);
});

test('the data buffer is min(1 MiB, stop-copy size): a small device reads in small blocks', async () => {
  const vm = await testVm({
    devices: [{ device: simDevice('nic', 5, 'nic0', ',state-size=64K') }],
  });
  const m = mig(vm, 'nic0');
  const size = await m.device.stopCopySize();
  assert.ok(size < 1 << 20);
  await capture((f) => m.saveSetup(f, saveCtx()));
  const part = await capture((f) => m.saveLiveIterate(f));
  assert.equal(Number(part.readBigUInt64BE(8)), size, 'a read never exceeds the buffer');
});
