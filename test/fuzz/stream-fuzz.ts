/** The stream-loader fuzz loop, shared by the test and the long-run script. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom } from '../../src/conformance/random.ts';
import { inspectFile } from '../../src/inspect/index.ts';
import { MUTATORS, capture } from './mutators.ts';
import { loadStream, saveValidStream } from './stream-target.ts';

export interface FuzzOptions {
  cases: number;
  seconds: number;
  seed: number;
  /** Per case. */
  timeoutMs?: number;
}

export interface FuzzResult {
  cases: number;
  seconds: number;
  completed: number;
  failed: number;
  /** One line per case that broke a promise: a hang, an unclear error, a started guest, a crash. */
  problems: string[];
  peakRssGrowth: number;
  byMutator: Record<string, { cases: number; failed: number }>;
}

export async function fuzzStreamLoader(o: FuzzOptions): Promise<FuzzResult> {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-fuzz-'));
  const crashes: string[] = [];
  const onCrash = (err: unknown) =>
    crashes.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  try {
    const seedPath = join(dir, 'seed.mig');
    await saveValidStream(seedPath);
    const report = await inspectFile(seedPath);
    if (report.error) throw new Error(`the seed stream does not decode: ${report.error.message}`);
    const c = capture(readFileSync(seedPath), report);
    const names = Object.keys(MUTATORS);
    const rng = seededRandom(o.seed);
    const baseline = process.memoryUsage().rss;
    const result: FuzzResult = {
      cases: 0,
      seconds: 0,
      completed: 0,
      failed: 0,
      problems: [],
      peakRssGrowth: 0,
      byMutator: Object.fromEntries(names.map((n) => [n, { cases: 0, failed: 0 }])),
    };
    const start = performance.now();
    while (result.cases < o.cases && performance.now() - start < o.seconds * 1000) {
      const name = names[Math.floor(rng() * names.length)]!;
      const caseSeed = Math.floor(rng() * 2 ** 32);
      const bytes = MUTATORS[name]!(c, seededRandom(caseSeed));
      const out = await loadStream(dir, bytes, o.timeoutMs ?? 10_000);
      const tag = `case ${result.cases} (${name}, seed ${caseSeed}, ${bytes.length} bytes)`;
      result.cases++;
      result.byMutator[name]!.cases++;
      if (out.status === 'completed') {
        result.completed++;
      } else if (out.status === 'failed') {
        result.failed++;
        result.byMutator[name]!.failed++;
        if (!out.error || out.error.length < 12)
          result.problems.push(`${tag}: unclear error "${out.error}"`);
        if (out.runState === 'running')
          result.problems.push(`${tag}: guest running after a failed load`);
      } else {
        result.problems.push(`${tag}: ended ${out.status}`);
      }
      if (crashes.length > 0)
        result.problems.push(`${tag}: uncaught ${crashes.splice(0).join(' | ')}`);
      if (result.cases % 50 === 0) {
        result.peakRssGrowth = Math.max(result.peakRssGrowth, process.memoryUsage().rss - baseline);
      }
    }
    result.seconds = (performance.now() - start) / 1000;
    return result;
  } finally {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    rmSync(dir, { recursive: true, force: true });
  }
}
