/**
 * Dirty tracking of guest RAM written by device DMA (qemu-migration.md §3.5, basic version):
 * pages a device DMAs into during pre-copy are dirty in the RAM migration bitmaps after a
 * sync; a device without DMA logging makes every page perpetually dirty; the pre-copy opt-out
 * defers syncing until devices stop; a failing start stops every device again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DmaLogging } from '../../src/device/device.ts';
import type { SimDevice } from '../../src/device/sim/index.ts';
import { RunState } from '../../src/guest/index.ts';
import { DirtyBitmap, GuestMemory } from '../../src/memory/index.ts';
import { VfioError } from '../../src/uapi/index.ts';
import { dmaLoggingRanges, orReportBitmap, pciHole64Start } from '../../src/vfio/index.ts';
import { capture, mig, overriding, saveCtx, simDevice, testVm } from './helpers.ts';

const GiB = 2 ** 30;

/** Guest RAM below and above 4 GiB, and the pages device DMA wrote, per block. */
function guest(): { memory: GuestMemory; written: Map<string, Set<number>> } {
  const memory = GuestMemory.flat([
    { idstr: 'low', size: 256 << 10 },
    { idstr: 'high', size: 128 << 10, gpa: 4 * GiB },
  ]);
  const written = new Map<string, Set<number>>([
    ['low', new Set()],
    ['high', new Set()],
  ]);
  memory.addDmaWriteObserver((iova, length) => {
    for (let a = iova - (iova % 4096); a < iova + length; a += 4096) {
      const t = memory.translate(a)!;
      written.get(t.block.idstr)!.add(t.offset / 4096);
    }
  });
  return { memory, written };
}

function dirtyPages(memory: GuestMemory, idstr: string): Set<number> {
  const bm = memory.block(idstr)!.bitmap;
  const out = new Set<number>();
  for (let p = bm.nextDirty(0); p >= 0; p = bm.nextDirty(p + 1)) out.add(p);
  return out;
}

function withMemory(dev: SimDevice, memory: GuestMemory): SimDevice {
  dev.attachMemory(memory);
  return dev;
}

test('the logging ranges, as QEMU builds them: 32-bit, 64-bit and the 64-bit PCI hole', () => {
  const ram = (iova: number, length: number) => ({ iova, length });
  const bar = (iova: number, length: number) => ({ iova, length, vfioPci: true });
  assert.deepEqual(
    dmaLoggingRanges([
      ram(0, 0xa0000),
      ram(0x100000, 3 * GiB - 0x100000),
      bar(0xfe00_0000, 0x10_0000), // a 32-bit BAR stays in the 32-bit range
      ram(4 * GiB, 2 * GiB),
      bar(1024 * GiB, 1 << 20),
      bar(1024 * GiB + (1 << 20), 1 << 20),
    ]),
    [
      { iova: 0n, length: 0xfe10_0000n },
      { iova: BigInt(4 * GiB), length: BigInt(2 * GiB) },
      { iova: BigInt(1024 * GiB), length: 2n << 20n },
    ],
  );
  assert.deepEqual(dmaLoggingRanges([ram(4 * GiB, 4096)]), [
    { iova: BigInt(4 * GiB), length: 4096n },
  ]);
  // A section crossing 4 GiB belongs to the 64-bit range.
  assert.deepEqual(dmaLoggingRanges([ram(4 * GiB - 4096, 8192)]), [
    { iova: BigInt(4 * GiB - 4096), length: 8192n },
  ]);
});

test('pages written by device DMA during pre-copy are dirty in the RAM bitmaps after a sync', async () => {
  const { memory, written } = guest();
  const a = withMemory(simDevice('nic', 7, 'nic0', ',dma-rate=4M,seed=3'), memory);
  const b = withMemory(simDevice('gpu', 7, 'gpu0', ',dma-rate=2M,seed=4'), memory);
  const vm = await testVm({ devices: [{ device: a }, { device: b }], memory });
  await memory.dirtyLogListeners.start();
  assert.equal(vm.set.dirtyTracking.mode, 'device');
  const hole = BigInt(pciHole64Start(memory));
  assert.equal(hole, BigInt(5 * GiB), 'above RAM, 1 GiB aligned');
  assert.deepEqual(a.dirtyLog.trackedRanges, [
    { iova: 0n, length: 256n << 10n },
    { iova: BigInt(4 * GiB), length: 128n << 10n },
    { iova: hole, length: 2n << 20n }, // the two devices' BARs
  ]);
  for (const id of ['nic0', 'gpu0']) await capture((f) => mig(vm, id).saveSetup(f, saveCtx()));

  a.advance(10);
  b.advance(10);
  assert.equal(memory.dirtyCount, 0, 'DMA bypasses the vCPU log');
  const fresh = await memory.syncAllDirtyLogs(false);
  for (const idstr of ['low', 'high']) {
    assert.ok(written.get(idstr)!.size > 0, `DMA reached ${idstr}`);
    assert.deepEqual(
      dirtyPages(memory, idstr),
      written.get(idstr),
      `${idstr}: exactly the pages written`,
    );
  }
  assert.equal(fresh, written.get('low')!.size + written.get('high')!.size);

  // Reports read and clear: without new DMA the next sync finds nothing.
  for (const blk of memory.blocks) blk.bitmap.clear();
  assert.equal(await memory.syncAllDirtyLogs(false), 0);

  await memory.dirtyLogListeners.stop();
  assert.equal(vm.set.dirtyTracking.mode, 'off');
  assert.equal(a.dirtyLog.started, false);
  assert.equal(b.dirtyLog.started, false);
});

test('a device without DMA logging: all guest RAM is dirty at every sync (enable-migration=on)', async () => {
  const { memory } = guest();
  const a = withMemory(simDevice('nic', 7, 'nic0', ',logging=off'), memory);
  const b = withMemory(simDevice('nic', 7, 'nic1'), memory);
  const vm = await testVm({
    devices: [{ device: a, properties: 'enable-migration=on' }, { device: b }],
    memory,
  });
  assert.deepEqual(vm.blockers.reasons(), []);
  assert.match(
    vm.warnings[0]!,
    /nic0: VFIO device doesn't support device and IOMMU dirty tracking/,
  );
  await memory.dirtyLogListeners.start();
  assert.equal(vm.set.dirtyTracking.mode, 'perpetual');
  assert.equal(b.dirtyLog.started, false, 'no device logging when one device cannot');
  await memory.syncAllDirtyLogs(false);
  assert.equal(memory.dirtyCount, memory.totalPages);
  for (const blk of memory.blocks) blk.bitmap.clear();
  await memory.syncAllDirtyLogs(false);
  assert.equal(memory.dirtyCount, memory.totalPages, 'perpetually');
  await memory.dirtyLogListeners.stop();
});

test('x-device-dirty-page-tracking=off also falls back to perpetually dirty', async () => {
  const { memory } = guest();
  const vm = await testVm({
    devices: [
      {
        device: withMemory(simDevice('nic', 7, 'nic0'), memory),
        properties: 'enable-migration=on,x-device-dirty-page-tracking=off',
      },
    ],
    memory,
  });
  await memory.dirtyLogListeners.start();
  assert.equal(vm.set.dirtyTracking.mode, 'perpetual');
  await memory.dirtyLogListeners.stop();
});

test('x-pre-copy-dirty-page-tracking=off: no sync while the device runs, the stopped sync has it all', async () => {
  const { memory, written } = guest();
  const a = withMemory(simDevice('nic', 7, 'nic0', ',dma-rate=4M'), memory);
  const vm = await testVm({
    devices: [{ device: a, properties: 'x-pre-copy-dirty-page-tracking=off' }],
    memory,
  });
  await memory.dirtyLogListeners.start();
  await capture((f) => mig(vm, 'nic0').saveSetup(f, saveCtx()));
  a.advance(10);
  assert.equal(await memory.syncAllDirtyLogs(false), 0, 'skipped in PRE_COPY');
  await vm.runControl.vmStop(RunState.FINISH_MIGRATE);
  await memory.syncAllDirtyLogs(true);
  assert.deepEqual(dirtyPages(memory, 'low'), written.get('low'));
  assert.deepEqual(dirtyPages(memory, 'high'), written.get('high'));
  await memory.dirtyLogListeners.stop();
});

test('a device failing to start logging stops the others and fails the start, naming it', async () => {
  const { memory } = guest();
  const a = withMemory(simDevice('nic', 7, 'nic0'), memory);
  const sim1 = withMemory(simDevice('nic', 7, 'nic1'), memory);
  const failing: DmaLogging = {
    probe: () => sim1.dmaLogging.probe(),
    start: () => Promise.reject(new VfioError('E2BIG', 'too many ranges')),
    stop: () => sim1.dmaLogging.stop(),
    report: (iova, length, pageSize, bitmap) =>
      sim1.dmaLogging.report(iova, length, pageSize, bitmap),
  };
  const vm = await testVm({
    devices: [{ device: a }, { device: overriding(sim1, { dmaLogging: failing }) }],
    memory,
  });
  await assert.rejects(
    memory.dirtyLogListeners.start(),
    /vfio failed to start: nic1: Failed to start DMA logging: E2BIG: too many ranges/,
  );
  assert.equal(a.dirtyLog.started, false, 'nic0 was stopped again');
  assert.equal(mig(vm, 'nic0').dirtyTracking, false);
  assert.equal(vm.set.dirtyTracking.mode, 'off');
});

test('orReportBitmap: little-endian report bits land on the right pages, aligned or not', () => {
  const report = new Uint8Array(16);
  for (const k of [0, 1, 31, 32, 40, 63]) report[k >>> 3]! |= 1 << (k & 7);
  for (const first of [0, 3, 32]) {
    const bm = new DirtyBitmap(200);
    orReportBitmap(report, 41, bm, first); // page 63 is beyond the 41 pages: ignored
    const got: number[] = [];
    for (let p = bm.nextDirty(0); p >= 0; p = bm.nextDirty(p + 1)) got.push(p);
    assert.deepEqual(
      got,
      [0, 1, 31, 32, 40].map((k) => k + first),
      `first page ${first}`,
    );
  }
});
