/**
 * Long fuzz runs: `node dist/test/fuzz/run.js [stream|multifd] [--seconds N] [--cases N]
 * [--seed S]` (stream by default). Prints a summary per mutator and every problem with the
 * case seed that reproduces it.
 */
import { parseArgs } from 'node:util';
import type { FuzzOptions, FuzzResult } from './fuzz-loop.ts';
import { fuzzMultifd } from './multifd-fuzz.ts';
import { fuzzStreamLoader } from './stream-fuzz.ts';

const TARGETS: Readonly<Record<string, (o: FuzzOptions) => Promise<FuzzResult>>> = {
  stream: fuzzStreamLoader,
  multifd: fuzzMultifd,
};

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '300' },
    cases: { type: 'string', default: String(Number.MAX_SAFE_INTEGER) },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
  },
});
const name = positionals[0] ?? 'stream';
const fuzz = TARGETS[name];
if (fuzz === undefined) {
  process.stderr.write(`unknown fuzz target '${name}' (${Object.keys(TARGETS).join(', ')})\n`);
  process.exit(2);
}
const seconds = Number(values.seconds);
const seed = Number(values.seed);
const r = await fuzz({ cases: Number(values.cases), seconds, seed });
process.stdout.write(
  `${name}: ${r.cases} cases in ${r.seconds.toFixed(1)} s (seed ${seed}): ${r.failed} refused, ` +
    `${r.completed} loaded, largest Buffer ${r.largestAllocation} bytes, ` +
    `peak RSS growth ${r.peakRssGrowth >> 20} MiB\n`,
);
for (const [m, s] of Object.entries(r.byMutator))
  process.stdout.write(`  ${m.padEnd(36)} ${s.cases} cases, ${s.failed} refused\n`);
for (const p of r.problems) process.stdout.write(`PROBLEM ${p}\n`);
process.exitCode = r.problems.length > 0 ? 1 : 0;
