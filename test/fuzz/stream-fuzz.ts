/** The stream-loader fuzz target, shared by the test and the long-run script. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectFile } from '../../src/inspect/index.ts';
import { fuzzLoop } from './fuzz-loop.ts';
import type { FuzzOptions, FuzzResult } from './fuzz-loop.ts';
import { MUTATORS } from './mutators.ts';
import { loadStream, saveValidStream, streamCapture } from './stream-target.ts';

export type { FuzzOptions, FuzzResult } from './fuzz-loop.ts';

export async function fuzzStreamLoader(o: FuzzOptions): Promise<FuzzResult> {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-fuzz-'));
  try {
    const seedPath = join(dir, 'seed.mig');
    await saveValidStream(seedPath);
    const report = await inspectFile(seedPath);
    if (report.error) throw new Error(`the seed stream does not decode: ${report.error.message}`);
    const c = streamCapture(readFileSync(seedPath), report);
    return await fuzzLoop(
      {
        mutators: Object.keys(MUTATORS),
        async runCase(name, rng, timeoutMs) {
          const bytes = MUTATORS[name]!(c, rng);
          const out = await loadStream(dir, bytes, timeoutMs);
          const problems =
            out.status === 'failed' && out.runState === 'running'
              ? ['guest running after a failed load']
              : [];
          return { status: out.status, error: out.error, bytes: bytes.length, problems };
        },
      },
      o,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
