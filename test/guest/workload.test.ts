import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  PagePicker,
  Prng,
  TokenBucket,
  checkWorkload,
  nextStamp,
  populateRam,
  vcpuPageRate,
  writeDataPage,
} from '../../src/guest/index.ts';
import { GuestMemory, MiB } from '../../src/memory/index.ts';

test('token bucket: accrues at the rate, caps at capacity, restarts empty after reset', () => {
  const b = new TokenBucket(1000, 10, 0); // 1 token per ms
  assert.equal(b.take(100, 0), 0);
  assert.equal(b.msUntil(1, 0), 1);
  assert.equal(b.take(100, 5.5), 5);
  assert.equal(b.msUntil(1, 5.5), 0.5);
  assert.equal(b.take(3, 100), 3, 'max bounds a take');
  assert.equal(b.take(100, 100), 7, 'capacity bounds the burst');
  b.reset(200);
  assert.equal(b.take(100, 200), 0);
  assert.equal(b.take(100, 199), 0, 'time going backwards adds nothing');
  assert.throws(() => new TokenBucket(0, 1, 0), /rate 0/);
  assert.throws(() => new TokenBucket(1, 0.5, 0), /capacity 0.5/);
});

test('token bucket: over any schedule, tokens taken never exceed rate x time + capacity', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.double({ min: 0, max: 50, noNaN: true }), fc.nat(500)), {
        maxLength: 100,
      }),
      (steps) => {
        const b = new TokenBucket(2000, 20, 0);
        let now = 0;
        let taken = 0;
        for (const [dt, want] of steps) {
          now += dt;
          taken += b.take(want, now);
        }
        assert.ok(taken <= 2 * now + 20 + 1e-9, `${taken} tokens in ${now} ms`);
      },
    ),
  );
});

test('page pickers: sequential slices wrap, hot and uniform stay in range', () => {
  const seq = new PagePicker({ kind: 'sequential' }, 10, 1, 3, new Prng(1)); // slice [3, 6)
  assert.deepEqual(
    Array.from({ length: 7 }, () => seq.next()),
    [3, 4, 5, 3, 4, 5, 3],
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1 << 20 }), fc.integer(), (total, seed) => {
      const uni = new PagePicker({ kind: 'uniform' }, total, 0, 1, new Prng(seed));
      for (let i = 0; i < 50; i++) {
        const p = uni.next();
        assert.ok(Number.isInteger(p) && p >= 0 && p < total, `${p} of ${total}`);
      }
    }),
  );
  const hot = new PagePicker({ kind: 'hot', sizeMiB: 1, offsetMiB: 2 }, 4096, 0, 2, new Prng(3));
  for (let i = 0; i < 1000; i++) {
    const p = hot.next();
    assert.ok(p >= 512 && p < 768, `${p}`);
  }
});

test('same seed, same stream; vCPU rates split the VM rate', () => {
  const a = new Prng(42);
  const b = new Prng(42);
  const c = new Prng(43);
  const sa = Array.from({ length: 8 }, () => a.nextU32());
  assert.deepEqual(
    Array.from({ length: 8 }, () => b.nextU32()),
    sa,
  );
  assert.notDeepEqual(
    Array.from({ length: 8 }, () => c.nextU32()),
    sa,
  );
  const w = checkWorkload({ dirtyRateMiBps: 100, pattern: { kind: 'uniform' } }, 1024, 4);
  assert.deepEqual(
    { zeroShare: w.zeroShare, seed: w.seed, pageBudget: w.pageBudget },
    { zeroShare: 0, seed: 1, pageBudget: Infinity },
  );
  assert.equal(vcpuPageRate(w, 4), 6400);
});

test('a data write always changes the page and never leaves it zero', () => {
  const words = new Int32Array(1024);
  const prng = new Prng(9);
  let stamp = 0;
  let prev = words.slice();
  for (let i = 0; i < 100; i++) {
    stamp = nextStamp(stamp);
    writeDataPage(words, 0, stamp, 1, prng);
    assert.ok(words.some((w, j) => w !== prev[j]));
    assert.ok(words.some((w) => w !== 0));
    prev = words.slice();
  }
  assert.equal(nextStamp(0xffffffff), 1);
});

test('populateRam: seeded content, about the asked share of zero pages, nothing logged', () => {
  const mem = GuestMemory.pc(16 * MiB);
  populateRam(mem, { seed: 5, zeroShare: 0.25 });
  const block = mem.blocks[0]!;
  let zero = 0;
  for (let p = 0; p < block.pages; p++) if (block.isZeroPage(p)) zero++;
  assert.ok(Math.abs(zero / block.pages - 0.25) < 0.03, `${zero} of ${block.pages} zero`);
  assert.equal(block.dirtyLog.pendingCount(), 0);
  const again = GuestMemory.pc(16 * MiB);
  populateRam(again, { seed: 5, zeroShare: 0.25 });
  assert.equal(again.digest().sha256, mem.digest().sha256);
  assert.throws(() => populateRam(mem, { zeroShare: -0.1 }), /zeroShare -0.1/);
});
