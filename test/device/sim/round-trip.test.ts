/**
 * Live save and restore between two instances: PRE_COPY with activity between reads, then
 * STOP_COPY; the stream is written into a fresh device in random chunk sizes, RESUMING -> STOP
 * succeeds, and the destination digest equals the source digest taken once it stopped.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MigState } from '../../../src/uapi/index.ts';
import { everyConfig, liveSave, makeDevice, writeChunked } from './helpers.ts';

for (const { model, flags, label } of everyConfig()) {
  test(`${label}: live round trip in random chunkings restores the exact state`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 70_000 }),
        fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })), {
          maxLength: 8,
        }),
        async (seed, rounds, readSize, writeSizes, configWrites) => {
          const src = makeDevice(model, flags, `,seed=${seed}`);
          const dst = makeDevice(model, flags, `,seed=${seed + 1}`);
          // The guest programs MSI-X vectors; the VMM carries the config space separately.
          for (const [entry, value] of configWrites) {
            src.configWrite(256 + (entry % 16) * 16, new Uint8Array([value, 0xe0, 0, 0xfe, value]));
          }
          src.advance(30);
          const { stream, digest } = await liveSave(src, { rounds, readSize });
          const fd = (await dst.setState(MigState.RESUMING))!;
          await writeChunked(fd, stream, writeSizes);
          await dst.setState(MigState.STOP);
          await dst.loadConfig(await src.saveConfig());
          assert.equal(await dst.stateDigest(), digest);
          // The destination resumes like the source would.
          await dst.setState(MigState.RUNNING);
          assert.equal(await dst.getState(), MigState.RUNNING);
        },
      ),
      { numRuns: model === 'gpu' ? 8 : 20, seed: 7 },
    );
  });
}

test('a nic stream carries every change made during pre-copy', async () => {
  const src = makeDevice('nic', 7, ',seed=3,dirty-rate=8M');
  const dst = makeDevice('nic', 7, ',seed=4');
  const { stream, digest } = await liveSave(src, { rounds: 60, readSize: 4096, stepMs: 5 });
  assert.ok(stream.length > src.model.fullStateBytes(), 'dirty chunks were sent again');
  const fd = (await dst.setState(MigState.RESUMING))!;
  await fd.write(stream);
  await dst.setState(MigState.STOP);
  await dst.loadConfig(await src.saveConfig());
  assert.equal(await dst.stateDigest(), digest);
});
