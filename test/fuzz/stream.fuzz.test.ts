/**
 * A time-boxed fuzz run of the destination's stream loader: a few thousand structure-aware
 * mutations of a valid capture. A longer run: `node
 * dist/test/fuzz/run.js --seconds 600`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fuzzStreamLoader } from './stream-fuzz.ts';

test('stream loader: mutated streams end in a clean error or a benign load, never worse', async () => {
  const result = await fuzzStreamLoader({ cases: 2500, seconds: 40, seed: 20261126 });
  assert.deepEqual(result.problems, [], result.problems.slice(0, 5).join('\n'));
  assert.ok(result.cases >= 500, `only ${result.cases} cases ran`);
  assert.ok(result.failed > result.cases / 3, 'most mutations must be refused');
  assert.ok(result.peakRssGrowth < 256 << 20, `RSS grew by ${result.peakRssGrowth >> 20} MiB`);
  process.stdout.write(
    `# fuzz: ${result.cases} cases in ${result.seconds.toFixed(1)} s, ${result.failed} refused, ` +
      `${result.completed} loaded, RSS +${result.peakRssGrowth >> 20} MiB\n`,
  );
});
