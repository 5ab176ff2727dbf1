/** The data fds: one live session, how sessions end, stream-file rules (§2, §3, §6, §8). */
import {
  MigState,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  settableStates,
  stateName,
} from '../../uapi/index.ts';
import type { DataFd } from '../../device/device.ts';
import type { ConformanceCheck } from '../check.ts';
import { expect, needsPreCopy } from '../check.ts';
import { expectErrno, expectOk, expectState, setOk, setWithFd } from '../expect.ts';
import { reach } from '../reach.ts';
import { drain, streamBudget } from '../stream.ts';

/** Every operation on an ended session fails with ENODEV. */
async function expectEnded(fd: DataFd, why: string): Promise<void> {
  const buf = new Uint8Array(16);
  if (fd.kind === 'saving') {
    await expectErrno(() => fd.read(buf), 'ENODEV', `read after ${why}`);
    // the device-state check comes first: outside PRE_COPY* the answer is EINVAL (§6.2)
    await expectErrno(() => fd.precopyInfo(), ['ENODEV', 'EINVAL'], `PRECOPY_INFO after ${why}`);
  } else {
    await expectErrno(() => fd.write(buf), 'ENODEV', `write after ${why}`);
  }
}

/** The arcs that end a session, each with how to open that session from RUNNING. */
function closingArcs(flags: number): { open: MigState; close: MigState }[] {
  const arcs: { open: MigState; close: MigState }[] = [
    { open: MigState.STOP_COPY, close: MigState.STOP },
    { open: MigState.RESUMING, close: MigState.RUNNING },
  ];
  if (flags & VFIO_MIGRATION_PRE_COPY)
    arcs.push({ open: MigState.PRE_COPY, close: MigState.RUNNING });
  if (flags & VFIO_MIGRATION_PRE_COPY && flags & VFIO_MIGRATION_P2P) {
    arcs.push({ open: MigState.PRE_COPY_P2P, close: MigState.RUNNING_P2P });
  }
  return arcs;
}

export const sessionChecks: ConformanceCheck[] = [
  {
    id: 'session.ends-on-exit',
    title: 'leaving the saving group or RESUMING ends the session: its fd then fails with ENODEV',
    spec: 'vfio-uapi.md §3, §6',
    async run(ctx) {
      for (const { open, close } of closingArcs(ctx.flags)) {
        const dev = await ctx.device();
        const fd = await setWithFd(dev, open);
        if (open === MigState.RESUMING) {
          // RESUMING is only left through RESUMING -> STOP, which validates data; reset is the
          // abort (§3), so the session must end on reset too.
          await expectOk(() => dev.reset(), 'VFIO_DEVICE_RESET');
          await expectEnded(fd, 'reset in RESUMING');
          continue;
        }
        await setOk(dev, close);
        await expectEnded(fd, `${stateName(open)} -> ${stateName(close)}`);
      }
    },
  },
  {
    id: 'session.saving-group-keeps-fd',
    title: 'the PRE_COPY fd continues into STOP_COPY: no new fd, unread data then the end',
    spec: 'vfio-uapi.md §2, §3, §6.1',
    skip: needsPreCopy,
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.PRE_COPY);
      const second = await setOk(dev, MigState.STOP_COPY);
      expect(second === null, 'PRE_COPY -> STOP_COPY returned a second data fd');
      const res = await drain(fd, await streamBudget(dev));
      expect(res.end === 'eof', 'the continued session did not end with 0 in STOP_COPY');
      expect(res.total > 0, 'the session delivered no bytes at all');
    },
  },
  {
    id: 'session.stream-file',
    title: 'data fds are streams (pread/pwrite: ESPIPE) with one direction (EBADF, ENOTTY)',
    spec: 'vfio-uapi.md §6, §6.2, §11',
    async run(ctx) {
      const dev = await ctx.device();
      const saving = await setWithFd(dev, MigState.STOP_COPY);
      const buf = new Uint8Array(8);
      await expectErrno(() => saving.pread(buf, 0), 'ESPIPE', 'pread on the saving fd');
      await expectErrno(() => saving.pwrite(buf, 0), 'ESPIPE', 'pwrite on the saving fd');
      await expectErrno(() => saving.write(buf), 'EBADF', 'write on the saving fd');
      await setOk(dev, MigState.STOP);
      const resuming = await setWithFd(dev, MigState.RESUMING);
      await expectErrno(() => resuming.pread(buf, 0), 'ESPIPE', 'pread on the resuming fd');
      await expectErrno(() => resuming.pwrite(buf, 0), 'ESPIPE', 'pwrite on the resuming fd');
      await expectErrno(() => resuming.read(buf), 'EBADF', 'read on the resuming fd');
      await expectErrno(() => resuming.precopyInfo(), 'ENOTTY', 'PRECOPY_INFO on the resuming fd');
    },
  },
  {
    id: 'session.close-keeps-state',
    title: 'closing a data fd does not change the device state; the closed fd is EBADF',
    spec: 'vfio-uapi.md §6',
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.STOP_COPY);
      fd.close();
      await expectState(dev, MigState.STOP_COPY, 'after closing the saving fd');
      await expectErrno(() => fd.read(new Uint8Array(8)), 'EBADF', 'read on a closed fd');
    },
  },
  {
    id: 'reset.from-every-state',
    title: 'VFIO_DEVICE_RESET from every state lands in RUNNING and ends every session',
    spec: 'vfio-uapi.md §8',
    async run(ctx) {
      for (const state of settableStates(ctx.flags)) {
        const dev = await ctx.device();
        const { fd } = await reach(dev, state);
        await expectOk(() => dev.reset(), `reset in ${stateName(state)}`);
        await expectState(dev, MigState.RUNNING, `after reset in ${stateName(state)}`);
        if (fd) await expectEnded(fd, `reset in ${stateName(state)}`);
        // and the device is usable again
        const again = await setOk(dev, MigState.STOP_COPY);
        expect(again !== null, `after reset in ${stateName(state)}: STOP_COPY opened no session`);
      }
    },
  },
  {
    id: 'close.ends-sessions',
    title: 'closing the device ends its sessions',
    spec: 'vfio-uapi.md §8',
    async run(ctx) {
      const dev = await ctx.device();
      const fd = await setWithFd(dev, MigState.STOP_COPY);
      await expectOk(() => dev.close(), 'close of the device');
      await expectEnded(fd, 'close of the device');
    },
  },
];
