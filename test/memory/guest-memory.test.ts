import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  GiB,
  GuestMemory,
  MiB,
  RamBlock,
  TARGET_PAGE_SIZE,
  pcLayout,
} from '../../src/memory/index.ts';

const PAGE = TARGET_PAGE_SIZE;

test('pc layout: all below 4 GiB up to 3.5 GiB, then 3 GiB below and the rest at 4 GiB', () => {
  assert.deepEqual(pcLayout(GiB).mappings, [
    { name: 'ram-below-4g', gpa: 0, block: 'pc.ram', offset: 0, length: GiB },
  ]);
  const justBelow = 0xe000_0000 - PAGE;
  assert.equal(pcLayout(justBelow).mappings.length, 1);
  assert.deepEqual(
    pcLayout(0xe000_0000).mappings.map((m) => [m.gpa, m.offset, m.length]),
    [
      [0, 0, 3 * GiB],
      [4 * GiB, 3 * GiB, 0.5 * GiB],
    ],
  );
  const mem = GuestMemory.pc(6 * GiB);
  assert.deepEqual(mem.regions, [
    { iova: 0, length: 3 * GiB },
    { iova: 4 * GiB, length: 3 * GiB },
  ]);
  assert.equal(mem.ramSize, 6 * GiB);
  assert.equal(mem.translate(3 * GiB), undefined, 'the PCI hole is not RAM');
  assert.deepEqual(mem.translate(4 * GiB + PAGE), { block: mem.blocks[0], offset: 3 * GiB + PAGE });
  assert.equal(mem.translate(7 * GiB), undefined);
});

test('DMA writes land at the right block and offset and never touch the vCPU dirty log', () => {
  const mem = GuestMemory.flat([
    { idstr: 'ram0', size: 4 * MiB },
    { idstr: 'ram1', size: 2 * MiB }, // right after ram0: GPA 4 MiB
    { idstr: 'ram2', size: MiB, gpa: 64 * MiB },
  ]);
  const seen: [number, number][] = [];
  const stop = mem.addDmaWriteObserver((iova, length) => seen.push([iova, length]));
  const data = Uint8Array.from({ length: 3 * PAGE }, (_, i) => (i % 255) + 1);
  // Crosses from ram0 into ram1.
  mem.write(4 * MiB - PAGE, data);
  const [ram0, ram1, ram2] = mem.blocks as [RamBlock, RamBlock, RamBlock];
  assert.deepEqual(ram0.read(4 * MiB - PAGE, PAGE), data.subarray(0, PAGE));
  assert.deepEqual(ram1.read(0, 2 * PAGE), data.subarray(PAGE));
  mem.write(64 * MiB + 10, data.subarray(0, 5));
  assert.deepEqual(ram2.read(10, 5), data.subarray(0, 5));
  assert.deepEqual(mem.read(4 * MiB - PAGE, 3 * PAGE), data);
  for (const b of mem.blocks) assert.equal(b.dirtyLog.pendingCount(), 0, b.idstr);
  assert.equal(mem.syncDirtyBitmap(), 0);
  assert.deepEqual(seen, [
    [4 * MiB - PAGE, 3 * PAGE],
    [64 * MiB + 10, 5],
  ]);
  stop();
  mem.write(0, data.subarray(0, 1));
  assert.equal(seen.length, 2, 'a removed observer is not called');
});

test('a DMA access that leaves RAM is refused whole, naming the address', () => {
  const mem = GuestMemory.flat([
    { idstr: 'ram0', size: MiB },
    { idstr: 'ram1', size: MiB, gpa: 4 * MiB },
  ]);
  const data = new Uint8Array(2 * PAGE).fill(7);
  assert.throws(
    () => mem.write(MiB - PAGE, data),
    /DMA write of 8192 bytes at IOVA 0xff000: 0x100000 is not guest RAM/,
  );
  assert.equal(mem.blocks[0]!.isZeroPage(MiB / PAGE - 1), true, 'nothing was written');
  assert.throws(() => mem.read(2 * MiB, 1), /DMA read of 1 bytes at IOVA 0x200000/);
  assert.throws(() => mem.read(-1, 1), /not a pair of naturals/);
});

test('layouts that do not fit are refused', () => {
  const ram = new RamBlock('ram', MiB);
  assert.throws(
    () => new GuestMemory([ram], [{ gpa: 0, block: 'rom', offset: 0, length: PAGE }]),
    /mapping 0 \(rom\) names unknown block rom/,
  );
  assert.throws(
    () => new GuestMemory([ram], [{ gpa: 100, block: 'ram', offset: 0, length: PAGE }]),
    /ram.gpa 100 is not a page-aligned natural/,
  );
  assert.throws(
    () => new GuestMemory([ram], [{ gpa: 0, block: 'ram', offset: PAGE, length: MiB }]),
    /ram maps \[0x1000, \+0x100000\) of ram \(0x100000 bytes\)/,
  );
  assert.throws(
    () =>
      new GuestMemory(
        [ram],
        [
          { name: 'a', gpa: 0, block: 'ram', offset: 0, length: 2 * PAGE },
          { name: 'b', gpa: PAGE, block: 'ram', offset: 0, length: PAGE },
        ],
      ),
    /b at 0x1000 overlaps a ending at 0x2000/,
  );
  assert.throws(
    () => new GuestMemory([ram, new RamBlock('ram', PAGE)], []),
    /two RAM blocks named ram/,
  );
});

test('digest: per block and overall, and it changes with one byte', () => {
  const mem = GuestMemory.flat([
    { idstr: 'a', size: 64 * PAGE },
    { idstr: 'b', size: 16 * PAGE },
  ]);
  const before = mem.digest();
  assert.deepEqual(
    before.blocks.map((b) => [b.idstr, b.usedLength]),
    [
      ['a', 64 * PAGE],
      ['b', 16 * PAGE],
    ],
  );
  assert.equal(before.blocks[0]!.sha256, mem.blocks[0]!.digest());
  mem.write(64 * PAGE + 5, new Uint8Array([1]));
  const after = mem.digest();
  assert.equal(after.blocks[0]!.sha256, before.blocks[0]!.sha256);
  assert.notEqual(after.blocks[1]!.sha256, before.blocks[1]!.sha256);
  assert.notEqual(after.sha256, before.sha256);
});
