import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DirtyBitmap, bitRange, popcount32 } from '../../src/memory/index.ts';

const bitmapAndPages = fc
  .integer({ min: 1, max: 5000 })
  .chain((pages) =>
    fc.tuple(
      fc.constant(pages),
      fc.uniqueArray(fc.integer({ min: 0, max: pages - 1 }), { maxLength: 300 }),
    ),
  );

test('nextDirty walks exactly the dirty pages in ascending order', () => {
  fc.assert(
    fc.property(bitmapAndPages, ([pages, dirty]) => {
      const bm = new DirtyBitmap(pages);
      for (const p of dirty) assert.equal(bm.setDirty(p), 1);
      const seen: number[] = [];
      for (let p = bm.nextDirty(0); p >= 0; p = bm.nextDirty(p + 1)) seen.push(p);
      assert.deepEqual(
        seen,
        [...dirty].sort((a, b) => a - b),
      );
      assert.equal(bm.dirtyCount, dirty.length);
    }),
    { numRuns: 300 },
  );
});

test('nextDirty(from) is the smallest dirty page >= from, or -1', () => {
  fc.assert(
    fc.property(
      bitmapAndPages.chain(([pages, dirty]) =>
        fc.tuple(fc.constant(pages), fc.constant(dirty), fc.integer({ min: 0, max: pages + 40 })),
      ),
      ([pages, dirty, from]) => {
        const bm = new DirtyBitmap(pages);
        for (const p of dirty) bm.setDirty(p);
        const expected = dirty.filter((p) => p >= from).sort((a, b) => a - b)[0] ?? -1;
        assert.equal(bm.nextDirty(from), expected);
      },
    ),
    { numRuns: 500 },
  );
});

test('setDirty ranges and testAndClear agree with a set model, counts included', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), start: fc.nat(700), count: fc.nat(90) }),
    fc.record({ kind: fc.constant('clear' as const), page: fc.nat(799) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 800 }), fc.array(op, { maxLength: 60 }), (pages, ops) => {
      const bm = new DirtyBitmap(pages);
      const model = new Set<number>();
      for (const o of ops) {
        if (o.kind === 'set') {
          const count = Math.min(o.count, Math.max(0, pages - o.start));
          if (o.start > pages) continue;
          let fresh = 0;
          for (let p = o.start; p < o.start + count; p++) {
            if (!model.has(p)) fresh++;
            model.add(p);
          }
          assert.equal(bm.setDirty(o.start, count), fresh);
        } else if (o.page < pages) {
          assert.equal(bm.testAndClear(o.page), model.delete(o.page));
          assert.equal(bm.isDirty(o.page), false);
        }
        assert.equal(bm.dirtyCount, model.size);
      }
      for (let p = 0; p < pages; p++) assert.equal(bm.isDirty(p), model.has(p), `page ${p}`);
    }),
    { numRuns: 300 },
  );
});

test('orWord drops bits past the last page and counts only fresh bits', () => {
  const bm = new DirtyBitmap(40); // word 1 holds pages 32..39
  assert.equal(bm.orWord(1, -1), 8);
  assert.equal(bm.dirtyCount, 8);
  assert.equal(bm.nextDirty(0), 32);
  assert.equal(bm.nextDirty(40), -1);
  assert.equal(bm.orWord(1, 0b1_0000_0001), 0);
  assert.equal(bm.orWord(0, 0b101), 2);
  assert.equal(bm.dirtyCount, 10);
  assert.throws(() => bm.orWord(2, 1), /word 2 outside \[0, 1\]/);
});

test('bit helpers', () => {
  assert.equal(popcount32(0), 0);
  assert.equal(popcount32(-1), 32);
  assert.equal(popcount32(0x80000001 | 0), 2);
  assert.equal(bitRange(0, 32), -1);
  assert.equal(bitRange(4, 8), 0xf0);
  assert.equal(bitRange(31, 32), 1 << 31);
});

test('out-of-range pages are refused with the range in the message', () => {
  const bm = new DirtyBitmap(100);
  assert.throws(() => bm.setDirty(95, 10), /pages \[95, 105\) exceed the 100 pages/);
  assert.throws(() => bm.testAndClear(100), RangeError);
  assert.throws(() => bm.testAndClear(-1), RangeError);
  assert.throws(() => bm.isDirty(1.5), RangeError);
  assert.throws(() => bm.nextDirty(-3), RangeError);
  assert.equal(bm.nextDirty(100), -1);
  assert.throws(() => new DirtyBitmap(0), /page count 0/);
});
