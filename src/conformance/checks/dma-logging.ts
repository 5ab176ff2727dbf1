/** DMA dirty logging, features 6/7/8 (vfio-uapi.md §7). Only for devices that support it. */
import { LOG_MAX_RANGES, isPowerOfTwo, reportBitmapBytes } from '../../uapi/index.ts';
import type { IovaRange } from '../../uapi/index.ts';
import type { ConformanceCheck } from '../check.ts';
import { expect } from '../check.ts';
import { expectErrno, expectOk } from '../expect.ts';

const P = 4096n;
const GiB = 1n << 30n;
const range = (iova: bigint, length: bigint): IovaRange => ({ iova, length });
const needsLogging = (_flags: number, logging: boolean): string | undefined =>
  logging ? undefined : 'the device has no DMA logging (PROBE answered ENOTTY)';

export const dmaLoggingChecks: ConformanceCheck[] = [
  {
    id: 'dma-logging.start-refusals',
    title:
      'START refuses 0 ranges (EINVAL), too many (E2BIG), misaligned, overlapping, overflowing',
    spec: 'vfio-uapi.md §7',
    skip: needsLogging,
    async run(ctx) {
      const log = (await ctx.device()).dmaLogging;
      await expectErrno(() => log.start([], P), 'EINVAL', 'START with 0 ranges');
      const many = Array.from({ length: LOG_MAX_RANGES + 1 }, (_, i) =>
        range(BigInt(i) * 2n * P, P),
      );
      await expectErrno(() => log.start(many, P), 'E2BIG', `START with ${many.length} ranges`);
      await expectErrno(() => log.start([range(P / 2n, P)], P), 'EINVAL', 'START, misaligned iova');
      await expectErrno(() => log.start([range(0n, P + 1n)], P), 'EINVAL', 'START, odd length');
      await expectErrno(
        () => log.start([range(0n, 4n * P), range(2n * P, 4n * P)], P),
        'EINVAL',
        'START, overlapping ranges',
      );
      await expectErrno(
        () => log.start([range((1n << 64n) - P, P)], P),
        'EOVERFLOW',
        'START, iova + length past 2^64',
      );
    },
  },
  {
    id: 'dma-logging.start-stop',
    title:
      'START accepts adjacent ranges and 256 ranges, writes back a power-of-two page size; ' +
      'a second START is refused; STOP always succeeds',
    spec: 'vfio-uapi.md §7',
    skip: needsLogging,
    async run(ctx) {
      const log = (await ctx.device()).dmaLogging;
      await expectOk(() => log.stop(), 'STOP while not started');
      const page = await expectOk(
        () => log.start([range(0n, GiB), range(GiB, GiB)], P),
        'START with adjacent ranges',
      );
      expect(isPowerOfTwo(page), `START wrote back page size ${page}, not a power of two`);
      await expectErrno(() => log.start([range(0n, P)], P), 'EINVAL', 'a second START');
      await expectOk(() => log.stop(), 'STOP');
      const many = Array.from({ length: LOG_MAX_RANGES }, (_, i) => range(BigInt(i) * 4n * P, P));
      await expectOk(() => log.start(many, P), `START with ${LOG_MAX_RANGES} ranges`);
      await expectOk(() => log.stop(), 'STOP');
    },
  },
  {
    id: 'dma-logging.report',
    title: 'REPORT checks page size, overflow, bitmap size and started logging; it only sets bits',
    spec: 'vfio-uapi.md §7',
    skip: needsLogging,
    async run(ctx) {
      const log = (await ctx.device()).dmaLogging;
      const len = 256n * P;
      const bitmap = () => new Uint8Array(reportBitmapBytes(len, P));
      await expectErrno(() => log.report(0n, len, P, bitmap()), 'EINVAL', 'REPORT, not started');
      const page = await expectOk(() => log.start([range(0n, GiB)], P), 'START');
      await expectErrno(
        () => log.report(0n, len, 2048n, bitmap()),
        'EINVAL',
        'REPORT, 2 KiB pages',
      );
      await expectErrno(
        () => log.report(0n, len, 3n * P, bitmap()),
        'EINVAL',
        'REPORT, 12 KiB pages',
      );
      await expectErrno(
        () => log.report((1n << 64n) - P, 2n * P, P, bitmap()),
        'EOVERFLOW',
        'REPORT, iova + length past 2^64',
      );
      await expectErrno(
        () => log.report(0n, len, P, new Uint8Array(reportBitmapBytes(len, P) - 8)),
        'EFAULT',
        'REPORT into a bitmap one word short',
      );
      // OR semantics: bits the caller set stay set (the caller pre-zeroes, the device never clears)
      const pre = bitmap().fill(0xff);
      await expectOk(() => log.report(0n, len, P, pre), `REPORT (logging at ${page}-byte pages)`);
      expect(
        pre.every((b) => b === 0xff),
        'REPORT cleared bits the caller had set',
      );
      await expectOk(() => log.stop(), 'STOP');
      await expectErrno(() => log.report(0n, len, P, bitmap()), 'EINVAL', 'REPORT after STOP');
    },
  },
];
