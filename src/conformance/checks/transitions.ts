/** SET MIG_DEVICE_STATE: paths, no-ops, refusals, the blocked arc, serialisation (§4, §5.2). */
import { ALL_STATES, MigState, setOutcome, settableStates, stateName } from '../../uapi/index.ts';
import type { ConformanceCheck } from '../check.ts';
import { CheckFailure, expect, needsPreCopy } from '../check.ts';
import { expectErrno, expectOk, expectState, within } from '../expect.ts';
import { reach } from '../reach.ts';
import { drain, saveState, writeChunked } from '../stream.ts';

const BLOCKED_ARC_TIMEOUT_MS = 2000;

export const transitionChecks: ConformanceCheck[] = [
  {
    id: 'set.paths',
    title: 'SET from every settable state to each of the 8 states does what the kernel table says',
    spec: 'vfio-uapi.md §4.1–§4.4',
    async run(ctx) {
      // Leaving RESUMING validates what was written, so those paths need a real state.
      const saved = await saveState(await ctx.device(), ctx.flags);
      const dev = await ctx.device();
      for (const from of settableStates(ctx.flags)) {
        for (const to of ALL_STATES) {
          await expectOk(() => dev.reset(), 'VFIO_DEVICE_RESET');
          const { fd: opened } = await reach(dev, from);
          if (from === MigState.RESUMING && opened)
            await writeChunked(opened, saved, () => ctx.random());
          const want = setOutcome(from, to, ctx.flags);
          const what = `SET ${stateName(to)} from ${stateName(from)}`;
          if ('errno' in want) {
            await expectErrno(() => dev.setState(to), want.errno, what);
            await expectState(dev, from, `${what} failed`);
            continue;
          }
          const fd = await expectOk(() => dev.setState(to), what);
          await expectState(dev, to, what);
          expect(
            (fd !== null) === want.dataFd,
            `${what} (path ${want.path.join(' -> ')}): data fd ${fd ? 'returned' : 'not returned'},` +
              ` expected ${want.dataFd ? 'one' : 'none'}`,
          );
          if (fd && from !== to) {
            const kind = to === MigState.RESUMING ? 'resuming' : 'saving';
            expect(fd.kind === kind, `${what}: a ${fd.kind} fd, expected a ${kind} fd`);
          }
        }
      }
    },
  },
  {
    id: 'set.noop',
    title: 'SET to the current state succeeds, returns no fd and leaves the session untouched',
    spec: 'vfio-uapi.md §4.4',
    async run(ctx) {
      for (const state of settableStates(ctx.flags)) {
        const dev = await ctx.device();
        const { fd } = await reach(dev, state);
        const again = await expectOk(() => dev.setState(state), `SET ${stateName(state)} again`);
        expect(again === null, `SET ${stateName(state)} in ${stateName(state)} returned a data fd`);
        await expectState(dev, state, 'after a no-op SET');
        if (fd?.kind === 'saving' && state === MigState.STOP_COPY) {
          const res = await drain(fd, 1 << 30);
          expect(res.end === 'eof', 'the STOP_COPY session no longer reaches its end');
        } else if (fd?.kind === 'saving') {
          await expectOk(() => fd.precopyInfo(), 'PRECOPY_INFO on the session after a no-op SET');
        }
      }
    },
  },
  {
    id: 'set.invalid',
    title: 'SET of ERROR, an unsupported optional state or a value >= 8 fails with EINVAL',
    spec: 'vfio-uapi.md §4.3, §5.2',
    async run(ctx) {
      const dev = await ctx.device();
      const refused = [MigState.ERROR, 8, 9, 0xffff, 0x7fffffff, -1];
      for (const s of ALL_STATES) if (!settableStates(ctx.flags).includes(s)) refused.push(s);
      for (const target of new Set(refused)) {
        await expectErrno(() => dev.setState(target), 'EINVAL', `SET ${stateName(target)}`);
        await expectState(dev, MigState.RUNNING, `after refused SET ${stateName(target)}`);
      }
    },
  },
  {
    id: 'set.blocked-arc',
    title: 'STOP_COPY -> PRE_COPY* fails with EINVAL promptly (no spin) and keeps STOP_COPY',
    spec: 'vfio-uapi.md §4.3',
    skip: needsPreCopy,
    async run(ctx) {
      for (const target of settableStates(ctx.flags).filter(
        (s) => s === MigState.PRE_COPY || s === MigState.PRE_COPY_P2P,
      )) {
        const dev = await ctx.device();
        await reach(dev, MigState.STOP_COPY);
        await within(
          BLOCKED_ARC_TIMEOUT_MS,
          `SET ${stateName(target)} from STOP_COPY`,
          expectErrno(
            () => dev.setState(target),
            'EINVAL',
            `SET ${stateName(target)} from STOP_COPY`,
          ),
        );
        await expectState(dev, MigState.STOP_COPY, 'after the blocked arc');
      }
    },
  },
  {
    id: 'set.serialized',
    title: 'concurrent SETs are serialised: each sees the state the previous one left',
    spec: 'vfio-uapi.md §2 (SET is synchronous), §4.4',
    async run(ctx) {
      const dev = await ctx.device();
      const order = [MigState.STOP, MigState.RUNNING, MigState.STOP, MigState.RESUMING];
      const results = await Promise.allSettled(order.map((s) => dev.setState(s)));
      results.forEach((r, i) => {
        if (r.status === 'rejected') {
          throw new CheckFailure(
            `concurrent SET ${stateName(order[i]!)} failed: ${String(r.reason)}`,
          );
        }
      });
      await expectState(dev, MigState.RESUMING, 'after four concurrent SETs');
      const last = results[3];
      expect(last?.status === 'fulfilled' && last.value !== null, 'the last SET returned no fd');
    },
  },
];
