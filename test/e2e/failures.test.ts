/** A failed or cancelled migration leaves the source guest running with its devices RUNNING. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CAPS,
  E2e,
  deviceStates,
  digest,
  finished,
  runStatus,
  setCaps,
  sleep,
  smallGuest,
  waitFor,
} from './harness.ts';

const RUNNING = { nic0: 'RUNNING', gpu0: 'RUNNING' };
/** Slow enough to be caught in pre-copy. */
const SLOW = { 'max-bandwidth': 16 << 20 };

/** A source and a destination, and a bandwidth-limited migration caught in pre-copy. */
async function migrationInPreCopy(e: E2e) {
  const config = smallGuest();
  const { src, dst } = await e.pair(config);
  await src.qmp.execute('migrate-set-parameters', SLOW);
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  await waitFor(
    src,
    (i) => i.status === 'active' && (i.ram?.transferred ?? 0) > 1 << 20,
    'pre-copy',
  );
  return { config, src, dst };
}

test('migrate_cancel during pre-copy: cancelled, guest running, devices RUNNING, a retry succeeds', async (t) => {
  const e = new E2e(t);
  const { config, src, dst } = await migrationInPreCopy(e);
  assert.deepEqual(await deviceStates(src), { nic0: 'PRE_COPY', gpu0: 'PRE_COPY' });
  await src.qmp.execute('migrate_cancel');
  const info = await waitFor(src, finished, 'the cancellation');
  assert.equal(info.status, 'cancelled');
  assert.equal(await runStatus(src), 'running');
  assert.deepEqual(await deviceStates(src), RUNNING);
  const dstInfo = await waitFor(dst, finished, 'the destination noticing');
  assert.equal(dstInfo.status, 'failed');
  assert.notEqual(await runStatus(dst), 'running', 'a partial stream never starts a guest');

  const dst2 = await e.destination(config, 'dst2');
  await setCaps(dst2, CAPS);
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
  await src.qmp.execute('migrate', { uri: dst2.ready.incoming });
  assert.equal((await waitFor(src, finished, 'the retry')).status, 'completed');
  await waitFor(dst2, finished, 'the retry on the destination');
  assert.equal((await digest(dst2)).sha256, (await digest(src)).sha256);
});

test('the destination killed mid-migration: failed, source guest running, devices RUNNING', async (t) => {
  const { src, dst } = await migrationInPreCopy(new E2e(t));
  dst.kill();
  const info = await waitFor(src, finished, 'the failure', 30_000);
  assert.equal(info.status, 'failed');
  assert.ok(info['error-desc'] && info['error-desc'].length > 0, 'the error is reported');
  assert.equal(await runStatus(src), 'running');
  assert.deepEqual(await deviceStates(src), RUNNING);
  // and the guest really runs: its RAM keeps changing
  const before = (await digest(src)).ram.sha256;
  await sleep(300);
  assert.notEqual((await digest(src)).ram.sha256, before);
});
