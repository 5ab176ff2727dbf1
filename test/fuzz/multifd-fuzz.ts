/** The multifd fuzz target in the shared loop, for the test and the long-run script. */
import { fuzzLoop } from './fuzz-loop.ts';
import type { FuzzOptions, FuzzResult } from './fuzz-loop.ts';
import { MUTATORS } from './mutators.ts';
import {
  MULTIFD_ALLOCATION_CAP,
  mutateChannels,
  receiveMultifd,
  saveMultifdSeed,
} from './multifd-target.ts';

/**
 * Where a refusal must point: the channel (its number, or the handshake's), or the device
 * whose state it is.
 */
const WHERE = /multifd channel \d+|0000:00:0\d\.0|nic0/;

export async function fuzzMultifd(o: FuzzOptions): Promise<FuzzResult> {
  const seed = await saveMultifdSeed();
  return fuzzLoop(
    {
      mutators: Object.keys(MUTATORS),
      allocationCap: MULTIFD_ALLOCATION_CAP,
      async runCase(name, rng, timeoutMs) {
        const inputs = mutateChannels(seed, name, rng);
        const out = await receiveMultifd(seed, inputs, rng, timeoutMs);
        const problems =
          out.status === 'failed' && !WHERE.test(out.error ?? '')
            ? [`the error does not say where: "${out.error}"`]
            : [];
        const bytes = inputs.reduce((n, b) => n + b.length, 0);
        return { status: out.status, error: out.error, bytes, problems };
      },
    },
    o,
  );
}
