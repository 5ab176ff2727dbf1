/**
 * The host IOMMU container (mappings, translated device DMA, the dirty tracking of each mode,
 * unmap with a dirty bitmap) and the vIOMMU (notifiers, replay, saved state) with its guest
 * driver rotating DMA windows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createSimDevice, isPinnable, DMA_RING_SIZE } from '../../src/device/sim/index.ts';
import { GuestMemory } from '../../src/memory/index.ts';
import {
  GuestIommu,
  IommuContainer,
  ViommuDriver,
  countPageBits,
  pageBitmapBytes,
  testPageBit,
} from '../../src/memory/iommu/index.ts';
import type { HostIommuMode, IommuTlbEntry } from '../../src/memory/iommu/index.ts';
import { MigState, isVfioError } from '../../src/uapi/index.ts';

const PAGE = 4096;
const KiB = 1024;

/** 1 MiB of RAM "ram" at GPA 0, mapped in a container at IOVA 1 MiB (a 64 KiB hole in it). */
function setup(mode: HostIommuMode): { memory: GuestMemory; c: IommuContainer } {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 1 << 20 }]);
  const c = new IommuContainer(memory, mode);
  c.map(1 << 20, 256 * KiB, 0);
  c.map((1 << 20) + 320 * KiB, 704 * KiB, 320 * KiB);
  return { memory, c };
}

/** Reads and clears the whole mapped IOVA span; returns the dirty page indexes from IOVA 1 MiB. */
function query(c: IommuContainer): number[] {
  const pages = (1 << 20) / PAGE;
  const bitmap = new Uint8Array(pageBitmapBytes(pages));
  c.queryDirtyBitmap(1 << 20, 1 << 20, bitmap);
  const out: number[] = [];
  for (let k = 0; k < pages; k++) if (testPageBit(bitmap, k)) out.push(k);
  return out;
}

test('mappings: translated DMA lands in guest RAM; an unmapped IOVA faults', () => {
  const { memory, c } = setup('none');
  const view = c.dmaView;
  assert.deepEqual(
    view.regions.map((r) => [r.iova, r.length]),
    [
      [1 << 20, 256 * KiB],
      [(1 << 20) + 320 * KiB, 704 * KiB],
    ],
  );
  view.write((1 << 20) + 8, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...memory.read(8, 3)], [1, 2, 3]);
  assert.equal(c.translate((1 << 20) + 400 * KiB), 400 * KiB);
  assert.equal(c.translate((1 << 20) + 300 * KiB), undefined);
  assert.throws(
    () => view.write((1 << 20) + 256 * KiB - 2, new Uint8Array(4)),
    /IOMMU fault: DMA write at IOVA 0x140000 is not mapped/,
  );
  assert.deepEqual([...memory.read(256 * KiB - 2, 2)], [0, 0], 'nothing of a faulting write lands');
  assert.equal(c.faults, 1);
  assert.throws(() => c.map(1 << 20, PAGE, 0), /EEXIST/);
  assert.throws(
    () => c.map(0, PAGE, 2 << 20),
    (e) => isVfioError(e, 'EFAULT'),
  );
  assert.throws(
    () => c.map(5, PAGE, 0),
    (e) => isVfioError(e, 'EINVAL'),
  );
  assert.throws(
    () => c.unmap(1 << 20, PAGE),
    (e) => isVfioError(e, 'EINVAL'),
    'no split',
  );
  assert.deepEqual(c.unmap(1 << 20, 320 * KiB), [{ iova: 1 << 20, length: 256 * KiB, gpa: 0 }]);
  assert.throws(() => view.write(1 << 20, new Uint8Array(1)), /IOMMU fault/);
});

test('none: no dirty tracking to start', () => {
  const { c } = setup('none');
  assert.equal(c.dirtyPagesSupported, false);
  assert.throws(
    () => c.setDirtyTracking(true),
    (e) => isVfioError(e, 'ENOTTY'),
  );
});

test('type1-perpetual: every mapped page, at every query', () => {
  const { c } = setup('type1-perpetual');
  assert.equal(c.iommuDirtyTracking, false, 'type1 is not counted as IOMMU dirty tracking');
  assert.throws(
    () => query(c),
    (e) => isVfioError(e, 'EINVAL'),
    'not started',
  );
  c.setDirtyTracking(true);
  const mapped = [...Array(64).keys(), ...Array.from({ length: 176 }, (_, i) => 80 + i)];
  assert.deepEqual(query(c), mapped);
  assert.deepEqual(query(c), mapped, 'perpetually');
});

test('iommufd: exactly the pages written since the last query', () => {
  const { c } = setup('iommufd');
  assert.equal(c.iommuDirtyTracking, true);
  c.dmaView.write((1 << 20) + 5 * PAGE - 1, new Uint8Array(2)); // pages 4 and 5
  c.setDirtyTracking(true);
  assert.deepEqual(query(c), [], 'writes before the start are not tracked');
  c.dmaView.write((1 << 20) + 5 * PAGE - 1, new Uint8Array(2));
  c.dmaView.write((1 << 20) + 400 * KiB, new Uint8Array(PAGE));
  assert.deepEqual(query(c), [4, 5, 100]);
  assert.deepEqual(query(c), [], 'read and cleared');
});

test('type1-pinned: pages pinned since the last query, and those still pinned', async () => {
  const { memory, c } = setup('type1-pinned');
  const dev = createSimDevice('sim:nic,state-size=64K,dma-rate=0', { id: 'nic0' });
  assert.equal(isPinnable(c.dmaView), true);
  dev.attachMemory(c.dmaView);
  const ring = DMA_RING_SIZE / PAGE;
  assert.equal(c.pinnedPages, ring, 'the descriptor ring stays pinned');
  c.setDirtyTracking(true);
  const ringPages = [...Array(ring).keys()];
  assert.deepEqual(query(c), ringPages, 'pinned at the start: dirty');
  const written = new Set<number>();
  memory.addDmaWriteObserver((gpa, len) => {
    for (let p = Math.floor(gpa / PAGE); p * PAGE < gpa + len; p++) written.add(p);
  });
  const nic = createSimDevice('sim:nic,state-size=64K,dma-rate=4M,seed=5', { id: 'nic1' });
  nic.attachMemory(c.dmaView);
  nic.advance(20);
  assert.ok(written.size > 4, 'the nic wrote by DMA');
  // Both windows map IOVA 1 MiB + x to GPA x: IOVA page k is guest page k.
  const want = new Set([...ringPages, ...written]);
  assert.deepEqual(
    query(c),
    [...want].sort((a, b) => a - b),
  );
  assert.deepEqual(query(c), ringPages, 'afterwards only the pinned ring');
  await nic.close();
  await dev.close();
  assert.equal(c.pinnedPages, 0, 'closed devices unpin their rings');
});

test('unmap with a dirty bitmap reads the range first; pins in it go too', () => {
  const { c } = setup('iommufd');
  c.setDirtyTracking(true);
  c.dmaView.write((1 << 20) + 3 * PAGE, new Uint8Array(10));
  const bitmap = new Uint8Array(pageBitmapBytes(64));
  c.unmap(1 << 20, 256 * KiB, bitmap);
  assert.equal(countPageBits(bitmap, 64), 1);
  assert.equal(testPageBit(bitmap, 3), true);
  const p = setup('type1-pinned').c;
  p.pin((1 << 20) + PAGE, PAGE);
  p.unmap(1 << 20, 256 * KiB);
  assert.equal(p.pinnedPages, 0);
});

test('vIOMMU: MAP and UNMAP events, the translation still valid while UNMAP is told', () => {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 1 << 20 }]);
  const v = new GuestIommu(memory);
  const events: string[] = [];
  v.addNotifier({
    map: (e) => events.push(`map ${e.iova.toString(16)}->${e.gpa.toString(16)}`),
    unmap: (e) => events.push(`unmap ${e.iova.toString(16)} (${String(v.translate(e.iova))})`),
  });
  v.map(0x10000, 2 * PAGE, 0x3000);
  v.map(0x20000, PAGE, 0x8000);
  assert.throws(() => v.map(0x11000, PAGE, 0), /already mapped/);
  assert.throws(() => v.map(0x30000, PAGE, 1 << 20), /not guest RAM/);
  const replayed: IommuTlbEntry[] = [];
  v.replay((e) => replayed.push(e));
  assert.deepEqual(replayed, v.mappings);
  v.unmap(0x10000, 0x1000);
  assert.deepEqual(events, ['map 10000->3000', 'map 20000->8000', `unmap 10000 (${0x3000})`]);
  assert.equal(v.translate(0x10000), undefined);
});

test('vIOMMU state: saved, loaded with notifications, refused when damaged', () => {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 1 << 20 }]);
  const a = new GuestIommu(memory);
  a.map(0x10000, PAGE, 0x3000);
  a.map(0x40000, 4 * PAGE, 0x10000);
  const bytes = a.save();
  const b = new GuestIommu(memory);
  b.map(0x90000, PAGE, 0);
  const seen: string[] = [];
  b.addNotifier({ map: (e) => seen.push(`+${e.iova}`), unmap: (e) => seen.push(`-${e.iova}`) });
  b.load(bytes);
  assert.deepEqual(b.mappings, a.mappings);
  assert.deepEqual(seen, [`-${0x90000}`, `+${0x10000}`, `+${0x40000}`]);
  assert.throws(() => b.load(bytes.subarray(0, 20)), /2 mappings do not fit 20 bytes/);
  const bad = bytes.slice();
  bad[0] = 9;
  assert.throws(() => b.load(bad), /version 9, expected 1/);
  const huge = bytes.slice(0, 8);
  new DataView(huge.buffer).setUint32(4, 0xffffffff, true);
  assert.throws(() => b.load(huge), /at most 65536/);
  assert.deepEqual(b.mappings, a.mappings, 'a refused state changes nothing');
  // Well formed, but its second mapping is not guest RAM: the mappings before come back.
  const c = new GuestIommu(memory);
  c.map(0x10000, PAGE, 0x3000);
  c.map(0x40000, PAGE, 0x5000);
  const notRam = c.save();
  new DataView(notRam.buffer).setBigUint64(8 + 24 + 16, BigInt(2 << 20), true);
  assert.throws(() => b.load(notRam), /vIOMMU state: .*not guest RAM/);
  assert.deepEqual(b.mappings, a.mappings, 'a state refused while mapping changes nothing');
});

test('guest driver: windows rotate through the IOVA cycle; a migrated guest carries on', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.nat(60),
      fc.nat(60),
      (windows, before, after) => {
        const memory = GuestMemory.flat([{ idstr: 'ram', size: 2 << 20 }]);
        const src = new GuestIommu(memory);
        const opts = { windows, windowSize: 16 * KiB, isRunning: () => true, seed: before + 1 };
        const d = new ViommuDriver(src, opts);
        d.populate();
        for (let i = 0; i < before; i++) d.remapOne();
        assert.equal(src.mappings.length, windows);
        const dst = new GuestIommu(memory);
        dst.load(src.save());
        const d2 = new ViommuDriver(dst, opts);
        d2.adopt();
        // Both sides retire the same windows in the same order from here on.
        for (let i = 0; i < after; i++) {
          d.remapOne();
          d2.remapOne();
          assert.deepEqual(
            dst.mappings.map((m) => m.iova),
            src.mappings.map((m) => m.iova),
          );
        }
        assert.equal(dst.mappings.length, windows);
      },
    ),
    { numRuns: 60, seed: 3 },
  );
});

test('a device behind a vIOMMU only writes mapped windows', () => {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 4 << 20 }]);
  const v = new GuestIommu(memory);
  const c = new IommuContainer(memory, 'iommufd');
  v.addNotifier({
    map: (e) => c.map(e.iova, e.length, e.gpa),
    unmap: (e) => c.unmap(e.iova, e.length),
  });
  const d = new ViommuDriver(v, { windows: 4, windowSize: 64 * KiB, isRunning: () => true });
  d.populate();
  const nic = createSimDevice('sim:nic,state-size=64K,dma-rate=8M', {
    id: 'nic0',
    memory: c.dmaView,
  });
  for (let i = 0; i < 50; i++) {
    nic.advance(2);
    d.remapOne();
  }
  assert.ok(nic.dmaBytesWritten > 0);
  assert.equal(c.faults, 0);
  assert.equal(nic.state, MigState.RUNNING);
});
