/**
 * A time-boxed fuzz run of the destination's multifd channels: the handshake, RAM packets,
 * SYNC packets and VFIO device-state packets of a valid capture, one channel mutated per case,
 * into the real receiving side. A longer run: `node dist/test/fuzz/run.js multifd --seconds 600`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../../src/conformance/random.ts';
import { fuzzMultifd } from './multifd-fuzz.ts';
import { receiveMultifd, saveMultifdSeed } from './multifd-target.ts';

const SEED = 20261127;

test('multifd: the capture as sent, split anywhere, loads every time', async () => {
  const seed = await saveMultifdSeed();
  for (let i = 0; i < 20; i++) {
    const out = await receiveMultifd(
      seed,
      seed.channels.map((c) => c.bytes),
      seededRandom(i),
      5000,
    );
    assert.deepEqual(out, { status: 'completed', error: null }, `split seed ${i}`);
  }
});

test('multifd: mutated channels end in a clean error naming the channel or device, or a benign load', async () => {
  const r = await fuzzMultifd({ cases: 1500, seconds: 30, seed: SEED, timeoutMs: 5000 });
  const why = `seed ${SEED}:\n${r.problems.slice(0, 5).join('\n')}`;
  assert.deepEqual(r.problems, [], why);
  assert.ok(r.cases >= 500, `only ${r.cases} cases ran`);
  assert.ok(r.failed > r.cases / 3, 'most mutations must be refused');
  assert.ok(r.completed > 0, 'some mutations are benign (reordered packets, a packet number)');
  assert.ok(r.peakRssGrowth < 256 << 20, `RSS grew by ${r.peakRssGrowth >> 20} MiB`);
  process.stdout.write(
    `# multifd fuzz: ${r.cases} cases in ${r.seconds.toFixed(1)} s, ${r.failed} refused, ` +
      `${r.completed} loaded, largest Buffer ${r.largestAllocation} bytes, ` +
      `RSS +${r.peakRssGrowth >> 20} MiB\n`,
  );
});
