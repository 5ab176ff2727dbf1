/** Live migrations between two processes: converging, non-converging, and the state triplets. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VfioInfo } from './harness.ts';
import {
  E2e,
  deviceStates,
  digest,
  finished,
  query,
  runStatus,
  smallGuest,
  waitFor,
} from './harness.ts';

test('a converging live migration with dirtying vCPUs and DMA-ing devices loses nothing', async (t) => {
  const e = new E2e(t);
  const config = smallGuest();
  const { src, dst } = await e.pair(config);
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
  const events: string[] = [];
  src.qmp.onEvent((ev) => {
    if (ev.event === 'MIGRATION') events.push((ev.data as { status: string }).status);
  });
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  const info = await waitFor(src, finished, 'the end of the migration');
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.ok((info.downtime ?? -1) >= 0 && (info['total-time'] ?? 0) > 0);
  assert.ok((info.vfio?.transferred ?? 0) > 16 << 20, 'the gpu state moved');
  assert.ok((info.ram?.['dirty-sync-count'] ?? 0) >= 2);
  assert.deepEqual(events, ['setup', 'active', 'device', 'completed']);
  await waitFor(dst, finished, 'the incoming side');
  assert.equal(await runStatus(src), 'postmigrate');
  assert.equal(await runStatus(dst), 'paused', '-S keeps the destination paused');

  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(b.ram.sha256, a.ram.sha256, 'guest RAM, including pages written by device DMA');
  assert.deepEqual(b.devices, a.devices, 'every device state');
  await dst.qmp.execute('cont');
  assert.equal(await runStatus(dst), 'running');
  assert.deepEqual(await deviceStates(dst), { nic0: 'RUNNING', gpu0: 'RUNNING' });
});

/** Each device's state log on one side, as "run state/migration status/device state". */
async function triplets(vm: Awaited<ReturnType<E2e['source']>>): Promise<string[]> {
  const info = await vm.qmp.execute<VfioInfo>('x-query-vfio');
  return info.devices[0]!['state-log'].map(
    (x) => `${x['run-state']}/${x['migration-status'] ?? '-'}/${x['device-state']}`,
  );
}

const TRIPLETS = {
  // A device with PRE_COPY and P2P (qemu-migration.md §3.1).
  full: {
    model: 'sim:nic,state-size=1M,flags=stop-copy+p2p+pre-copy',
    source: [
      'prelaunch/-/running',
      'running/-/running-p2p', // the prepare pass of the first start
      'running/-/running',
      'running/setup/pre-copy',
      'finish-migrate/active/pre-copy-p2p',
      'finish-migrate/active/stop-copy',
      'postmigrate/completed/stop', // save_cleanup
    ],
    destination: [
      'inmigrate/-/running',
      'inmigrate/active/resuming',
      'running/completed/running-p2p', // cont: RESUMING -> STOP -> RUNNING_P2P
      'running/completed/running',
    ],
  },
  // A device with neither PRE_COPY nor P2P.
  bare: {
    model: 'sim:mtty,flags=stop-copy',
    source: [
      'prelaunch/-/running',
      'finish-migrate/active/stop',
      'finish-migrate/device/stop-copy', // save_complete
      'postmigrate/completed/stop',
    ],
    destination: ['inmigrate/-/running', 'inmigrate/active/resuming', 'running/completed/running'],
  },
};

for (const [id, want] of Object.entries(TRIPLETS)) {
  test(`(run state, migration status, device state) on both sides: ${id} device (§3.1)`, async (t) => {
    const e = new E2e(t);
    const config = smallGuest({ devices: [{ id, model: want.model }] });
    const { src, dst } = await e.pair(config);
    await src.qmp.execute('migrate', { uri: dst.ready.incoming });
    assert.equal((await waitFor(src, finished, 'the end')).status, 'completed');
    await waitFor(dst, finished, 'the incoming side');
    await dst.qmp.execute('cont');
    assert.deepEqual(await triplets(src), want.source);
    assert.deepEqual(await triplets(dst), want.destination);
  });
}

test('a non-converging migration keeps iterating, then switches over once downtime-limit is raised', async (t) => {
  const e = new E2e(t);
  const config = smallGuest({ workload: { 'dirty-rate': 256, pattern: 'uniform', seed: 9 } });
  const { src, dst } = await e.pair(config);
  // 48 MiB/s cannot keep up with 256 MiB/s of page writes and a 1 ms downtime budget.
  await src.qmp.execute('migrate-set-parameters', {
    'max-bandwidth': 48 << 20,
    'downtime-limit': 1,
  });
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  const stuck = await waitFor(
    src,
    (i) => (i.ram?.['iteration-count'] ?? 0) >= 4,
    'four iterations',
  );
  assert.equal(stuck.status, 'active');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await query(src)).status, 'active', 'still iterating');
  await src.qmp.execute('migrate-set-parameters', { 'downtime-limit': 60_000 });
  const done = await waitFor(src, finished, 'the switchover');
  assert.equal(done.status, 'completed');
  await waitFor(dst, finished, 'the incoming side');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(b.sha256, a.sha256);
});
