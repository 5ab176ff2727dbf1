/**
 * A stream that loads but whose device state is refused when the guest would start (a VFIO
 * device failing RESUMING -> STOP): the incoming migration fails and the destination's vCPUs
 * never run, so no guest executes on a state its devices rejected.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import type { MigrationOptionsInit } from '../../src/migration/index.ts';
import { createVmHalf, listenLoopback, waitUntil } from './vm-half.ts';

const CAPS: MigrationOptionsInit = {
  capabilities: [{ capability: 'return-path', state: true }],
};

test(
  'a device refusing its state at start fails the load; the vCPUs never run',
  { timeout: 60_000 },
  async (t) => {
    const src = await createVmHalf({ role: 'source', ramMiB: 8, options: CAPS });
    t.after(() => src.destroy());
    const dst = await createVmHalf({
      role: 'destination',
      ramMiB: 8,
      populateSeed: false,
      options: CAPS,
      vcpus: { count: 1, workload: { dirtyRateMiBps: 'max', pattern: { kind: 'uniform' } } },
    });
    t.after(() => dst.destroy());
    dst.runControl.addVmChangeStateHandler({
      name: 'refusing-device',
      priority: 0,
      handler: (running) => {
        if (running) throw new Error('RESUMING -> STOP: EINVAL (the written state is incomplete)');
      },
    });

    src.migration.outgoing.migrate(await listenLoopback(dst));
    await waitUntil(
      () => dst.migration.incoming.status === 'failed',
      20_000,
      'the incoming failure',
    );
    assert.match(dst.migration.incoming.error?.message ?? '', /refusing-device.*EINVAL/);
    assert.equal(dst.runControl.runState, RunState.PAUSED);
    assert.equal(dst.vcpus!.stats().pagesWritten, 0, 'no vCPU ever ran');
    await waitUntil(() => src.migration.outgoing.status === 'failed', 20_000, 'the source failure');
    assert.equal(src.runControl.runState, RunState.RUNNING, 'the source guest runs on');
  },
);
