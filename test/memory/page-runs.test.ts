import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { DirtyBitmap, GuestMemory, RamBlock, TARGET_PAGE_SIZE } from '../../src/memory/index.ts';

const PAGE = TARGET_PAGE_SIZE;

test('takeRun clears exactly the consecutive dirty pages from start, up to max', () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: 300 })
        .chain((pages) =>
          fc.tuple(
            fc.constant(pages),
            fc.uniqueArray(fc.nat(pages - 1), { maxLength: pages }),
            fc.nat(pages - 1),
            fc.integer({ min: 1, max: 80 }),
          ),
        ),
      ([pages, dirty, start, max]) => {
        const bm = new DirtyBitmap(pages);
        for (const p of dirty) bm.setDirty(p);
        const set = new Set(dirty);
        let expected = 0;
        while (expected < max && set.has(start + expected)) expected++;
        assert.equal(bm.takeRun(start, max), expected);
        for (let p = 0; p < pages; p++) {
          const cleared = p >= start && p < start + expected;
          assert.equal(bm.isDirty(p), set.has(p) && !cleared, `page ${p}`);
        }
        assert.equal(bm.dirtyCount, dirty.length - expected);
      },
    ),
    { numRuns: 400 },
  );
});

test('page runs stop at segment ends; copyPagesTo and isZeroRange work on a run', () => {
  const block = new RamBlock('ram', 8 * PAGE, { segmentSize: 4 * PAGE });
  assert.equal(block.pagesToSegmentEnd(0), 4);
  assert.equal(block.pagesToSegmentEnd(3), 1);
  assert.equal(block.pagesToSegmentEnd(5), 3);
  assert.throws(() => block.pagesToSegmentEnd(8), /page 8 outside/);
  assert.ok(block.isZeroRange(4, 4));
  const data = randomFillSync(Buffer.alloc(3 * PAGE));
  block.write(5 * PAGE, data);
  assert.equal(block.isZeroRange(4, 1), true);
  assert.equal(block.isZeroRange(4, 2), false);
  const out = Buffer.alloc(3 * PAGE + 8);
  block.copyPagesTo(5, 3, out, 8);
  assert.deepEqual(out.subarray(8), data);
  assert.throws(() => block.copyPagesTo(2, 3, out, 0), /leave its segment/);
  assert.throws(() => block.isZeroRange(6, 3), /leave its segment/);
  assert.throws(() => block.copyPagesTo(5, 3, out, 9), /no room for 3 pages/);
});

test('a block is pristine until something writes it, and an attached one never is', () => {
  const writes: [string, (b: RamBlock) => void][] = [
    ['write', (b) => b.write(PAGE, Buffer.of(1))],
    ['fill', (b) => b.fill(0, PAGE, 0)],
    ['writePage', (b) => b.writePage(1, Buffer.alloc(PAGE))],
    ['segmentBytes', (b) => b.segmentBytes(0)],
    ['segmentWords', (b) => b.segmentWords(0)],
    ['pageView', (b) => b.pageView(0)],
    ['a vCPU write', (b) => b.dirtyLog.mark(1)],
    ['a migration bitmap', (b) => b.bitmap],
  ];
  for (const [what, write] of writes) {
    const b = new RamBlock('ram', 4 * PAGE);
    assert.equal(b.pristine, true);
    // Reading does not count.
    b.copyPageTo(0, Buffer.alloc(PAGE));
    assert.equal(b.isZeroPage(0), true);
    b.digest();
    assert.equal(b.pristine, true);
    write(b);
    assert.equal(b.pristine, false, what);
  }
  const b = new RamBlock('ram', 4 * PAGE);
  assert.equal(RamBlock.attach(b.shared()).pristine, false);
  // A DMA write goes through the block.
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 4 * PAGE }]);
  memory.write(PAGE, Buffer.of(1));
  assert.equal(memory.block('ram')!.pristine, false);
});

test('prealloc backs every page and changes no byte', () => {
  const memory = GuestMemory.flat(
    [
      { idstr: 'a', size: 8 * PAGE },
      { idstr: 'b', size: 4 * PAGE },
    ],
    { segmentSize: 4 * PAGE },
  );
  const data = randomFillSync(Buffer.alloc(5 * PAGE));
  memory.write(2 * PAGE, data);
  const before = memory.digest().sha256;
  memory.prealloc();
  assert.equal(memory.digest().sha256, before);
  assert.deepEqual(Buffer.from(memory.read(2 * PAGE, 5 * PAGE)), data);
  // Nothing was written: a fresh block stays pristine.
  const fresh = new RamBlock('ram', 4 * PAGE);
  fresh.prealloc();
  assert.equal(fresh.pristine, true);
});
