/**
 * Hook-level round trip: the source hooks run in QEMU's order with device activity between
 * iterations, the VM stops through VmRunControl (so the VM-state handler moves the device to
 * STOP_COPY or STOP), and every payload is loaded by the destination hooks; after the
 * destination VM starts, its device digest equals the source's taken at the stop — for every
 * sim model and every legal flag set.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import {
  LEGAL_FLAG_SETS,
  MigState,
  VFIO_MIGRATION_PRE_COPY,
  flagsName,
} from '../../src/uapi/index.ts';
import { MODELS, mig, migrate, simDevice, testVm } from './helpers.ts';

for (const model of MODELS) {
  for (const flags of LEGAL_FLAG_SETS) {
    test(`${model} ${flagsName(flags)}: the destination digest equals the source's at the stop`, async () => {
      const a = simDevice(model, flags, 'dev0', ',seed=11');
      const b = simDevice(model, flags, 'dev0', ',seed=12');
      // The guest programmed an MSI-X vector: the config travels in the FULL section.
      a.configWrite(256 + 16, new Uint8Array([0x44, 0xe0, 0, 0xfe, 0x31]));
      a.advance(20);
      const src = await testVm({ devices: [{ device: a }] });
      const dst = await testVm({ devices: [{ device: b }], initial: RunState.INMIGRATE });

      const r = await migrate(src, dst, {
        activity: () => a.advance(5),
        chunk: 4093,
        // Below the whole state, so that pre-copy has to run (mtty: 96 bytes, 24 of header).
        threshold: model === 'mtty' ? 80 : 128 << 10,
      });

      assert.equal(await b.stateDigest(), r.digests.get('dev0'));
      assert.equal(a.state, MigState.STOP);
      assert.equal(b.state, MigState.RUNNING);
      const parts = r.sections.filter((s) => s.kind === 'PART').length;
      if (flags & VFIO_MIGRATION_PRE_COPY) assert.ok(parts > 0, 'pre-copy iterations ran');
      else assert.equal(parts, 0, 'no iterations without PRE_COPY');
      assert.deepEqual(
        r.sections.map((s) => s.kind).filter((k) => k !== 'PART'),
        ['START', 'END', 'FULL'],
      );
    });
  }
}

test('a nic that never converges: the stop-copy phase carries what pre-copy left dirty', async () => {
  const a = simDevice('nic', 7, 'nic0', ',seed=3,dirty-rate=64M,dma-rate=0');
  const b = simDevice('nic', 7, 'nic0', ',seed=4');
  const src = await testVm({ devices: [{ device: a }] });
  const dst = await testVm({ devices: [{ device: b }], initial: RunState.INMIGRATE });
  const r = await migrate(src, dst, {
    activity: () => a.advance(3),
    threshold: 4096,
    maxIterations: 20,
  });
  assert.equal(r.iterations, 20, 'dirty chunks kept the estimate above the threshold');
  assert.equal(r.sections.filter((s) => s.kind === 'PART').length, 20);
  assert.equal(await b.stateDigest(), r.digests.get('nic0'));
});

test('a guest paused before the migration: setup leaves STOP, complete reads from STOP_COPY', async () => {
  const a = simDevice('gpu', 7, 'gpu0', ',seed=5');
  const b = simDevice('gpu', 7, 'gpu0', ',seed=6');
  a.advance(10);
  const src = await testVm({ devices: [{ device: a }] });
  assert.deepEqual(await src.runControl.vmStop(RunState.PAUSED), []);
  assert.equal(a.state, MigState.STOP, 'a running device stops with the guest');
  assert.equal(mig(src, 'gpu0').isActiveIterate(), false);
  const dst = await testVm({ devices: [{ device: b }], initial: RunState.INMIGRATE });
  const r = await migrate(src, dst, { threshold: 2 << 20 });
  assert.equal(r.iterations, 0);
  assert.equal(r.sections.filter((s) => s.kind === 'PART').length, 0, 'nothing to iterate in STOP');
  assert.equal(await b.stateDigest(), r.digests.get('gpu0'));
});
