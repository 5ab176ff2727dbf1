/** Resuming sessions: a saved state loads exactly; damaged streams are refused (§6.3). */
import { MigState, isVfioError, stateName } from '../../uapi/index.ts';
import type { VfioMigrationDevice } from '../../device/device.ts';
import type { CheckContext, ConformanceCheck } from '../check.ts';
import { CheckFailure, expect } from '../check.ts';
import { expectErrno, expectOk, expectState, setOk, setWithFd } from '../expect.ts';
import { concat, saveState, writeChunked } from '../stream.ts';

/**
 * Writes `data` into a fresh device and asks for RESUMING -> STOP. Returns the errno that
 * refused the stream, or null when the device accepted it.
 */
async function load(
  ctx: CheckContext,
  data: Uint8Array,
): Promise<{ dev: VfioMigrationDevice; refused: string | null }> {
  const dev = await ctx.device();
  const fd = await setWithFd(dev, MigState.RESUMING);
  try {
    await writeChunked(fd, data, () => ctx.random());
  } catch (err) {
    if (!isVfioError(err)) throw err;
    return { dev, refused: `write: ${err.code}` };
  }
  try {
    await dev.setState(MigState.STOP);
  } catch (err) {
    if (!isVfioError(err)) throw err;
    return { dev, refused: `RESUMING -> STOP: ${err.code}` };
  }
  return { dev, refused: null };
}

/** A refused load leaves the device in RESUMING (or ERROR), never in STOP. */
async function expectRefused(ctx: CheckContext, data: Uint8Array, what: string): Promise<void> {
  const { dev, refused } = await load(ctx, data);
  if (refused === null) throw new CheckFailure(`${what} was accepted: RESUMING -> STOP succeeded`);
  const state = await dev.getState();
  expect(
    state === MigState.RESUMING || state === MigState.ERROR,
    `${what} was refused (${refused}) but the device is in ${stateName(state)}`,
  );
}

export const resumingChecks: ConformanceCheck[] = [
  {
    id: 'resume.round-trip',
    title: 'a saved state written in random chunks into a fresh device loads and runs',
    spec: 'vfio-uapi.md §2, §6.3',
    async run(ctx) {
      const src = await ctx.device();
      const data = await saveState(src, ctx.flags);
      const { dev, refused } = await load(ctx, data);
      if (refused !== null) throw new CheckFailure(`the saved state was refused (${refused})`);
      await expectState(dev, MigState.STOP, 'after RESUMING -> STOP');
      await setOk(dev, MigState.RUNNING);
      if (src.stateDigest && dev.stateDigest) {
        const [a, b] = [await src.stateDigest(), await dev.stateDigest()];
        expect(a === b, `state digest differs after the round trip: ${a} vs ${b}`);
      }
    },
  },
  {
    id: 'resume.truncated',
    title: 'a truncated stream is refused (on write or at RESUMING -> STOP), never loaded',
    spec: 'vfio-uapi.md §3, §6.3',
    async run(ctx) {
      const data = await saveState(await ctx.device(), ctx.flags);
      for (const cut of [0, 1, data.length >> 1, data.length - 1]) {
        await expectRefused(ctx, data.subarray(0, cut), `the stream cut at ${cut}/${data.length}`);
      }
    },
  },
  {
    id: 'resume.corrupted-header',
    title: 'a stream whose first bytes are damaged is refused',
    spec: 'vfio-uapi.md §6.3',
    async run(ctx) {
      const data = await saveState(await ctx.device(), ctx.flags);
      for (const at of [0, 3, 7]) {
        const bad = data.slice();
        bad[at] = bad[at]! ^ 0xa5;
        await expectRefused(ctx, bad, `the stream with byte ${at} flipped`);
      }
    },
  },
  {
    id: 'resume.overlong',
    title: 'bytes beyond the end of a complete state are refused',
    spec: 'vfio-uapi.md §6.3',
    async run(ctx) {
      const data = await saveState(await ctx.device(), ctx.flags);
      await expectRefused(ctx, concat([data, data]), 'the state written twice');
    },
  },
  {
    id: 'resume.empty',
    title: 'RESUMING -> STOP with nothing written fails with EINVAL',
    spec: 'vfio-uapi.md §3, §9.1',
    async run(ctx) {
      const dev = await ctx.device();
      await setWithFd(dev, MigState.RESUMING);
      await expectErrno(() => dev.setState(MigState.STOP), 'EINVAL', 'RESUMING -> STOP, no data');
      const state = await expectOk(() => dev.getState(), 'GET');
      expect(
        state === MigState.RESUMING || state === MigState.ERROR,
        `after the refused RESUMING -> STOP the device is in ${stateName(state)}`,
      );
    },
  },
];
