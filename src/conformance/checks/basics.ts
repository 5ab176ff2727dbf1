/** Flags, the initial state and MIG_DATA_SIZE (vfio-uapi.md §1.3, §5.3, §8). */
import { flagsName, isLegalFlagSet, settableStates, stateName } from '../../uapi/index.ts';
import type { ConformanceCheck } from '../check.ts';
import { expect } from '../check.ts';
import { expectOk, expectState } from '../expect.ts';
import { reach } from '../reach.ts';

export const basicChecks: ConformanceCheck[] = [
  {
    id: 'flags.defined',
    title: 'MIGRATION reports one of the four defined flag sets (STOP_COPY is mandatory)',
    spec: 'vfio-uapi.md §1.3',
    async run(ctx) {
      const dev = await ctx.device();
      const flags = await expectOk(() => dev.migrationFlags(), 'GET MIGRATION');
      expect(isLegalFlagSet(flags), `flags ${flags} (${flagsName(flags)}) are not a defined set`);
      const again = await dev.migrationFlags();
      expect(again === flags, `flags changed between calls: ${flags} then ${again}`);
    },
  },
  {
    id: 'state.initial-running',
    title: 'a freshly opened device is in RUNNING',
    spec: 'vfio-uapi.md §2, §8',
    async run(ctx) {
      await expectState(await ctx.device(), 2, 'fresh device');
    },
  },
  {
    id: 'data-size.any-state',
    title: 'MIG_DATA_SIZE answers in every settable state with a byte count',
    spec: 'vfio-uapi.md §5.3',
    async run(ctx) {
      for (const state of settableStates(ctx.flags)) {
        const dev = await ctx.device();
        await reach(dev, state);
        const size = await expectOk(
          () => dev.stopCopySize(),
          `MIG_DATA_SIZE in ${stateName(state)}`,
        );
        expect(
          Number.isSafeInteger(size) && size >= 0,
          `MIG_DATA_SIZE in ${stateName(state)} is ${size}, not a byte count`,
        );
      }
    },
  },
];
