/**
 * Long fuzz run of the stream loader: `node dist/test/fuzz/run.js [--seconds N] [--seed S]`.
 * Prints a summary per mutator and every problem with the seed that reproduces it.
 */
import { parseArgs } from 'node:util';
import { fuzzStreamLoader } from './stream-fuzz.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '300' },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
  },
});
const seconds = Number(values.seconds);
const seed = Number(values.seed);
const r = await fuzzStreamLoader({ cases: Number.MAX_SAFE_INTEGER, seconds, seed });
process.stdout.write(
  `${r.cases} cases in ${r.seconds.toFixed(1)} s (seed ${seed}): ${r.failed} refused, ${r.completed} loaded, ` +
    `peak RSS growth ${r.peakRssGrowth >> 20} MiB\n`,
);
for (const [name, m] of Object.entries(r.byMutator))
  process.stdout.write(`  ${name.padEnd(36)} ${m.cases} cases, ${m.failed} refused\n`);
for (const p of r.problems) process.stdout.write(`PROBLEM ${p}\n`);
process.exitCode = r.problems.length > 0 ? 1 : 0;
