/**
 * Dirty tracking through the IOMMU container (qemu-migration.md §3.5) and its blockers
 * (§3.4): the container's tracking when a device cannot log; exactly the written pages with
 * iommufd; every mapped page with type1; pinned pages with a pinning type1; the vIOMMU path
 * (sync over the replayed mappings, an unmap during pre-copy reporting its range); and the
 * realize rules for no usable tracking, the type1 bitmap limit and device tracking behind a
 * vIOMMU.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SimDevice } from '../../src/device/sim/index.ts';
import { GuestMemory } from '../../src/memory/index.ts';
import { GuestIommu, IommuContainer, ViommuDriver } from '../../src/memory/iommu/index.ts';
import type { HostIommuMode } from '../../src/memory/iommu/index.ts';
import { VfioRealizeError, vfioBlockerMessages } from '../../src/vfio/index.ts';
import { capture, mig, saveCtx, simDevice, testVm } from './helpers.ts';

const PAGE = 4096;

/** 2 MiB of RAM, pages written by device DMA recorded by guest page number. */
function guest(): { memory: GuestMemory; written: Set<number> } {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 2 << 20 }]);
  const written = new Set<number>();
  memory.addDmaWriteObserver((gpa, length) => {
    for (let p = Math.floor(gpa / PAGE); p * PAGE < gpa + length; p++) written.add(p);
  });
  return { memory, written };
}

function dirtyPages(memory: GuestMemory): Set<number> {
  const bm = memory.block('ram')!.bitmap;
  const out = new Set<number>();
  for (let p = bm.nextDirty(0); p >= 0; p = bm.nextDirty(p + 1)) out.add(p);
  return out;
}

/** A container with RAM mapped at IOVA = GPA (what the VFIO listener maps too). */
function ramContainer(memory: GuestMemory, mode: HostIommuMode, limit?: number): IommuContainer {
  const c = new IommuContainer(
    memory,
    mode,
    limit === undefined ? {} : { maxDirtyBitmapSize: limit },
  );
  c.map(0, memory.ramSize, 0);
  return c;
}

/** A device of `model` DMA-ing through `container` (logging off unless `logging`). */
function dev(id: string, container: IommuContainer, logging = false, extra = ''): SimDevice {
  const d = simDevice('nic', 7, id, `,dma-rate=4M,logging=${logging ? 'on' : 'off'}${extra}`);
  d.attachMemory(container.dmaView);
  return d;
}

async function startTracking(vm: Awaited<ReturnType<typeof testVm>>, ids: string[]) {
  await vm.memory.dirtyLogListeners.start();
  for (const id of ids) await capture((f) => mig(vm, id).saveSetup(f, saveCtx()));
  vm.memory.block('ram')!.bitmap.clear();
}

const sorted = (s: Set<number>): number[] => [...s].sort((a, b) => a - b);

for (const [mode, expect] of [
  ['iommufd', 'exactly the written pages'],
  ['type1-pinned', 'the written pages and the pinned rings'],
  ['type1-perpetual', 'every mapped page'],
] as const) {
  test(`${mode}: a device without DMA logging is tracked by the container: ${expect}`, async () => {
    const { memory, written } = guest();
    const container = ramContainer(memory, mode);
    const a = dev('nic0', container);
    const b = dev('nic1', container);
    const vm = await testVm({
      memory,
      container,
      devices: [
        { device: a, properties: 'enable-migration=on' },
        { device: b, properties: 'enable-migration=on' },
      ],
    });
    assert.deepEqual(vm.blockers.reasons(), []);
    await startTracking(vm, ['nic0', 'nic1']);
    assert.equal(vm.set.dirtyTracking.mode, 'container');
    written.clear();
    a.advance(10);
    b.advance(10);
    assert.ok(written.size > 10);
    await memory.syncAllDirtyLogs(false);
    const ring = new Set([0, 1, 2, 3]); // both rings sit at the start of RAM
    const want =
      mode === 'iommufd'
        ? written
        : mode === 'type1-pinned'
          ? new Set([...written, ...ring])
          : new Set([...Array((2 << 20) / PAGE).keys()]);
    assert.deepEqual(sorted(dirtyPages(memory)), sorted(want));
    memory.block('ram')!.bitmap.clear();
    await memory.syncAllDirtyLogs(false);
    const again = mode === 'iommufd' ? new Set<number>() : mode === 'type1-pinned' ? ring : want;
    assert.deepEqual(sorted(dirtyPages(memory)), sorted(again), 'the next sync');
    await memory.dirtyLogListeners.stop();
    assert.equal(container.dirtyTrackingStarted, false);
  });
}

test('device DMA logging is used when every device has it, even with IOMMU tracking', async () => {
  const { memory } = guest();
  const container = ramContainer(memory, 'iommufd');
  const vm = await testVm({
    memory,
    container,
    devices: [{ device: dev('nic0', container, true) }, { device: dev('nic1', container, true) }],
  });
  await vm.memory.dirtyLogListeners.start();
  assert.equal(vm.set.dirtyTracking.mode, 'device');
  assert.equal(container.dirtyTrackingStarted, false);
  await vm.memory.dirtyLogListeners.stop();
});

test('no device nor IOMMU tracking: a blocker in auto, a warning in on; iommufd suffices', async () => {
  for (const mode of ['none', 'type1-perpetual', 'type1-pinned'] as const) {
    const { memory } = guest();
    const container = ramContainer(memory, mode);
    const vm = await testVm({ memory, container, devices: [{ device: dev('nic0', container) }] });
    assert.deepEqual(vm.blockers.reasons(), [vfioBlockerMessages.noDirtyTracking('nic0')], mode);
  }
  const { memory } = guest();
  const container = ramContainer(memory, 'iommufd');
  const vm = await testVm({ memory, container, devices: [{ device: dev('nic0', container) }] });
  assert.deepEqual(vm.blockers.reasons(), []);
  assert.deepEqual(vm.warnings, []);
});

test('on: a type1 bitmap that cannot cover guest RAM fails the realize', async () => {
  const { memory } = guest();
  // 64 bytes of bitmap cover 512 pages = 2 MiB: just enough; 32 bytes are not.
  for (const [limit, fails] of [
    [64, false],
    [32, true],
  ] as const) {
    const container = ramContainer(memory, 'type1-perpetual', limit);
    const attempt = testVm({
      memory,
      container,
      devices: [{ device: dev('nic0', container), properties: 'enable-migration=on' }],
    });
    if (fails) {
      await assert.rejects(attempt, (e) => {
        assert.ok(e instanceof VfioRealizeError);
        assert.equal(e.message, vfioBlockerMessages.dirtyTrackingLimit('nic0'));
        return true;
      });
    } else {
      const vm = await attempt;
      assert.deepEqual(vm.warnings, [vfioBlockerMessages.noDirtyTracking('nic0')]);
    }
  }
});

test('a vIOMMU blocks device dirty tracking (auto: blocker, on: realize error), not the container', async () => {
  const { memory } = guest();
  const viommu = new GuestIommu(memory);
  const container = new IommuContainer(memory, 'iommufd');
  const vm = await testVm({
    memory,
    container,
    viommu,
    devices: [
      { device: dev('nic0', container, true) },
      { device: dev('nic1', container, true), properties: 'x-device-dirty-page-tracking=off' },
    ],
  });
  assert.deepEqual(vm.blockers.reasons(), [vfioBlockerMessages.viommu('nic0')]);
  await assert.rejects(
    testVm({
      memory,
      container: new IommuContainer(memory, 'iommufd'),
      viommu: new GuestIommu(memory),
      devices: [{ device: dev('nic2', container, true), properties: 'enable-migration=on' }],
    }),
    new RegExp(vfioBlockerMessages.viommu('nic2')),
  );
});

for (const mode of ['iommufd', 'type1-perpetual', 'none'] as const satisfies HostIommuMode[]) {
  test(`vIOMMU (${mode}): syncs visit the mapped windows; an unmap in pre-copy reports its range`, async () => {
    const { memory, written } = guest();
    const viommu = new GuestIommu(memory);
    const driver = new ViommuDriver(viommu, {
      windows: 4,
      windowSize: 64 << 10,
      isRunning: () => true,
      seed: 5,
    });
    driver.populate();
    const container = new IommuContainer(memory, mode);
    const a = dev('nic0', container, false, ',dma-rate=8M');
    const vm = await testVm({
      memory,
      container,
      viommu,
      devices: [{ device: a, properties: 'enable-migration=on,x-device-dirty-page-tracking=off' }],
    });
    assert.deepEqual(container.mappings, viommu.mappings, 'the container follows the vIOMMU');
    await startTracking(vm, ['nic0']);
    assert.equal(vm.set.dirtyTracking.mode, mode === 'none' ? 'perpetual' : 'container');

    // DMA through windows that are unmapped before the next sync.
    written.clear();
    const gone = new Set<number>();
    const pagesOf = (m: { gpa: number; length: number }): number[] =>
      Array.from({ length: m.length / PAGE }, (_, k) => m.gpa / PAGE + k);
    for (let i = 0; i < 12; i++) {
      a.advance(3);
      const before = [...viommu.mappings];
      driver.remapOne();
      for (const m of before)
        if (!viommu.mappings.includes(m)) pagesOf(m).forEach((p) => gone.add(p));
    }
    assert.equal(container.faults, 0);
    assert.ok(
      [...written].some((p) => gone.has(p)),
      'some DMA went through retired windows',
    );
    await memory.syncAllDirtyLogs(false);
    const dirty = dirtyPages(memory);
    for (const p of written) assert.ok(dirty.has(p), `page ${p} written by DMA is dirty`);
    const mappedNow = new Set(viommu.mappings.flatMap(pagesOf));
    if (mode === 'iommufd') assert.deepEqual(sorted(dirty), sorted(written));
    else assert.deepEqual(sorted(dirty), sorted(new Set([...gone, ...mappedNow])));
    await memory.dirtyLogListeners.stop();
  });
}
