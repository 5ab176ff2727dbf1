/**
 * The switchover decision (qemu-migration.md §2.2–§2.3): a guest dirtying RAM faster than
 * max-bandwidth never fits `threshold = bandwidth × downtime-limit`, so the source keeps
 * iterating; raising downtime-limit or max-bandwidth while it runs lets it complete.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MiB } from '../../src/memory/index.ts';
import { createVmHalf, listenLoopback, waitUntil } from './vm-half.ts';

for (const raise of [
  { name: 'downtime-limit', change: { 'downtime-limit': 30_000 } },
  { name: 'max-bandwidth', change: { 'max-bandwidth': 0 } },
]) {
  test(
    `a non-converging guest keeps iterating; raising ${raise.name} completes it`,
    { timeout: 60_000 },
    async (t) => {
      const src = await createVmHalf({
        role: 'source',
        ramMiB: 8,
        vcpus: { count: 1, workload: { dirtyRateMiBps: 64, pattern: { kind: 'uniform' } } },
        options: {
          capabilities: [{ capability: 'return-path', state: true }],
          parameters: { 'max-bandwidth': 16 * MiB },
        },
      });
      t.after(() => src.destroy());
      const dst = await createVmHalf({ role: 'destination', ramMiB: 8, populateSeed: false });
      t.after(() => dst.destroy());
      const out = src.migration.outgoing;
      out.migrate(await listenLoopback(dst));

      // Over a second of passes; every sync finds more dirty RAM than the threshold (~5 MB).
      await waitUntil(
        () =>
          out.stats.dirtySyncCount >= 4 &&
          out.stats.dirtyPagesRate > 0 &&
          src.migration.query()['expected-downtime'] !== 300,
        20_000,
        'passes',
      );
      const info = src.migration.query();
      assert.equal(info.status, 'active');
      assert.ok(out.stats.dirtyBytesLastSync > 5 * MiB, `dirty ${out.stats.dirtyBytesLastSync}`);
      assert.ok(info['expected-downtime']! > 300, `expected-downtime ${info['expected-downtime']}`);
      assert.ok(info.ram!['dirty-pages-rate'] > 0);
      // The rate limit holds: about 16 MiB/s (measured per 100 ms window).
      assert.ok(info.ram!.mbps < 16 * 8.4 * 1.5, `mbps ${info.ram!.mbps}`);

      src.migration.options.setParameters(raise.change);
      assert.equal(await out.whenFinished(), 'completed');
      assert.equal(await dst.migration.incoming.whenFinished(), 'completed');
      assert.equal(dst.memory.digest().sha256, src.memory.digest().sha256);
      const done = src.migration.query();
      assert.ok(done.ram!['downtime-bytes'] > 0);
      assert.equal(typeof done.downtime, 'number');
    },
  );
}
