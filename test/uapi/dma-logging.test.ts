import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  LOG_MAX_RANGES,
  isVfioError,
  reportBitmapBytes,
  setReportBits,
  testReportBit,
  validateLoggingReport,
  validateLoggingStart,
} from '../../src/uapi/index.ts';
import type { ErrnoName, IovaRange } from '../../src/uapi/index.ts';

const P = 4096n;
const r = (iova: bigint, length: bigint): IovaRange => ({ iova, length });
const errno = (code: ErrnoName) => (e: unknown) => isVfioError(e, code);

test('START: range count 0 is EINVAL, 257 is E2BIG, 256 is fine', () => {
  assert.throws(() => validateLoggingStart([], P), errno('EINVAL'));
  const many = (n: number) => Array.from({ length: n }, (_, i) => r(BigInt(i) * 2n * P, P));
  assert.equal(LOG_MAX_RANGES, 256);
  validateLoggingStart(many(256), P);
  assert.throws(() => validateLoggingStart(many(257), P), errno('E2BIG'));
});

test('START: alignment, overflow and overlap in the kernel order', () => {
  assert.throws(() => validateLoggingStart([r(1n, P)], P), errno('EINVAL'));
  assert.throws(() => validateLoggingStart([r(0n, P + 1n)], P), errno('EINVAL'));
  const top = (1n << 64n) - P;
  validateLoggingStart([r(top - P, P)], P);
  // iova + length must fit in a u64, so the last page of the space cannot be logged
  assert.throws(() => validateLoggingStart([r(top, P)], P), errno('EOVERFLOW'));
  assert.throws(() => validateLoggingStart([r(0n, 2n * P), r(P, P)], P), errno('EINVAL'));
  validateLoggingStart([r(0n, P), r(P, P)], P); // adjacent is fine
  // the misaligned range is found before the later overlap
  assert.throws(
    () => validateLoggingStart([r(0n, 4n * P), r(3n, P), r(0n, P)], P),
    (e) => isVfioError(e, 'EINVAL') && /not aligned/.test(e.detail),
  );
});

test('REPORT: page size and overflow checks', () => {
  assert.throws(() => validateLoggingReport(0n, P, 2048n), errno('EINVAL'));
  assert.throws(() => validateLoggingReport(0n, P, 12288n), errno('EINVAL'));
  assert.throws(() => validateLoggingReport((1n << 64n) - P, 2n * P, P), errno('EOVERFLOW'));
  validateLoggingReport(0n, 1n << 40n, 1n << 21n);
});

test('report bitmap: bit k of LE u64 word k/64; granules set every overlapping bit', () => {
  assert.equal(reportBitmapBytes(64n * P, P), 8);
  assert.equal(reportBitmapBytes(65n * P, P), 16);
  assert.equal(reportBitmapBytes(1n, P), 8);
  const bm = new Uint8Array(16);
  setReportBits(bm, 0x10000n, 128n * P, P, 0x10000n + 70n * P, 1n);
  const words = new BigUint64Array(bm.buffer);
  assert.equal(words[1], 1n << 6n);
  // a 2 MiB granule starting before the window sets bits 0..(window end)
  const small = new Uint8Array(8);
  setReportBits(small, 0x200000n, 8n * P, P, 0n, 0x400000n);
  assert.equal(small[0], 0xff);
});

test('property: setReportBits sets exactly the pages overlapping the granule', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 200 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 0, max: 400 * 4096 }),
      fc.integer({ min: 1, max: 64 * 4096 }),
      (firstPage, pages, start, size) => {
        const iova = BigInt(firstPage) * P;
        const len = BigInt(pages) * P;
        const bm = new Uint8Array(reportBitmapBytes(len, P));
        setReportBits(bm, iova, len, P, BigInt(start), BigInt(size));
        for (let k = 0; k < pages; k++) {
          const lo = Number(iova) + k * 4096;
          const overlaps = lo < start + size && start < lo + 4096;
          assert.equal(testReportBit(bm, k), overlaps);
        }
      },
    ),
    { numRuns: 300 },
  );
});
