/** Reading a saving session and VFIO_MIG_GET_PRECOPY_INFO (vfio-uapi.md §6.1, §6.2). */
import { MigState, isVfioError } from '../../uapi/index.ts';
import type { ConformanceCheck } from '../check.ts';
import { CheckFailure, expect, needsPreCopy } from '../check.ts';
import { expectErrno, expectOk, setOk, setWithFd } from '../expect.ts';
import { drain, streamBudget } from '../stream.ts';

export const savingChecks: ConformanceCheck[] = [
  {
    id: 'stop-copy.eof',
    title: 'in STOP_COPY reads deliver the state, then 0 forever; never ENOMSG',
    spec: 'vfio-uapi.md §6.1',
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.STOP_COPY);
      const res = await drain(fd, await streamBudget(dev));
      expect(res.end === 'eof', 'STOP_COPY read returned ENOMSG');
      expect(res.total > 0, 'STOP_COPY delivered no state at all');
      for (let i = 0; i < 3; i++) {
        const n = await expectOk(() => fd.read(new Uint8Array(4096)), 'read after the end');
        expect(n === 0, `read after the end returned ${n} bytes`);
      }
    },
  },
  {
    id: 'pre-copy.enomsg',
    title: 'in PRE_COPY a read at the temporary end fails with ENOMSG (not 0)',
    spec: 'vfio-uapi.md §6.1',
    skip: needsPreCopy,
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.PRE_COPY);
      const res = await drain(fd, await streamBudget(dev));
      expect(res.end === 'enomsg', 'PRE_COPY read returned 0 (end of stream) at a temporary end');
      const info = await expectOk(() => fd.precopyInfo(), 'PRECOPY_INFO at the temporary end');
      // Activity may have produced new data since; only a quiet device must report 0/0.
      if (info.initialBytes === 0 && info.dirtyBytes === 0) {
        await expectErrno(() => fd.read(new Uint8Array(4096)), 'ENOMSG', 'read with 0/0 pending');
      }
    },
  },
  {
    id: 'precopy-info.refusals',
    title: 'PRECOPY_INFO: argsz < 24 and states outside PRE_COPY* are EINVAL; v1 echoes flags',
    spec: 'vfio-uapi.md §6.2',
    skip: needsPreCopy,
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.PRE_COPY);
      await expectErrno(() => fd.precopyInfo(16), 'EINVAL', 'PRECOPY_INFO with argsz 16');
      const info = await expectOk(() => fd.precopyInfo(24, 0x5a), 'PRECOPY_INFO with flags 0x5a');
      expect(info.flags === 0x5a, `PRECOPY_INFO v1 returned flags ${info.flags}, expected 0x5a`);
      expect(info.argsz === 24, `PRECOPY_INFO returned argsz ${info.argsz}`);
      await setOk(dev, MigState.STOP_COPY);
      await expectErrno(() => fd.precopyInfo(), 'EINVAL', 'PRECOPY_INFO in STOP_COPY');
    },
  },
  {
    id: 'precopy-info.initial-bytes',
    title: 'initial_bytes starts non-zero, never rises, and reaches 0 as the initial data is read',
    spec: 'vfio-uapi.md §6.2',
    skip: needsPreCopy,
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.PRE_COPY);
      let prev = (await expectOk(() => fd.precopyInfo(), 'PRECOPY_INFO')).initialBytes;
      expect(prev > 0, 'initial_bytes is 0 right after entering PRE_COPY');
      const limit = await streamBudget(dev);
      let total = 0;
      const buf = new Uint8Array(4096);
      while (prev > 0) {
        let n: number;
        try {
          n = await fd.read(buf);
        } catch (err) {
          if (isVfioError(err, 'ENOMSG')) {
            throw new CheckFailure(`ENOMSG while initial_bytes is still ${prev}`);
          }
          throw err;
        }
        expect(n > 0, `read returned ${n} while initial_bytes is ${prev}`);
        total += n;
        expect(total <= limit, `initial_bytes did not reach 0 within ${limit} bytes read`);
        const info = await fd.precopyInfo();
        expect(
          info.initialBytes <= prev,
          `initial_bytes rose from ${prev} to ${info.initialBytes}`,
        );
        expect(
          info.initialBytes >= prev - n,
          `initial_bytes fell by more than the ${n} bytes read (${prev} -> ${info.initialBytes})`,
        );
        prev = info.initialBytes;
      }
    },
  },
];
