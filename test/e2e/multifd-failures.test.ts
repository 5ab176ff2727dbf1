/**
 * Multifd migrations that fail, between separate processes (qemu-migration.md §4.5): a
 * device-state packet sent twice or with a version the destination does not know fails the
 * destination's load with QEMU's message. Every failure leaves the destination without a
 * running guest, the source failed with its guest running and every device RUNNING, and a
 * new migration to a fresh destination completes with equal digests. The queued-bytes cap
 * (`x-migration-max-queued-buffers-size`) keeps a destination whose load thread is held back
 * within its memory: it fails with QEMU's message instead of queuing a device's whole state.
 * And the fault matrix's multifd rows (channels cut or reset by either side, the destination
 * killed with its channels open) keep their promises; the quick ones run with faults.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { faultMatrix } from '../../src/cli/faults/index.ts';
import { runRowsKeepingPromises } from './fault-rows.ts';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import type { MigrationInfo, VfioInfo } from './harness.ts';
import { E2e, deviceStates, digest, finished, runStatus, smallGuest, waitFor } from './harness.ts';
import {
  MULTIFD_RUNNING,
  devicesMultifd,
  multifdDestination,
  multifdGuest,
  multifdPair,
} from './multifd-harness.ts';

const CHANNELS = 2;

async function idstrOf(vm: VmProcess, id: string): Promise<string> {
  const info = await vm.qmp.execute<VfioInfo & { devices: { idstr: string }[] }>('x-query-vfio');
  const d = info.devices.find((x) => x.id === id);
  assert.ok(d !== undefined, `no device ${id}`);
  return d.idstr;
}

/**
 * The migration failed on both sides: the destination with an error-desc matching `error` and
 * no guest ever run, the source with its guest running and devices RUNNING.
 */
async function assertFailedCleanly(
  src: VmProcess,
  dst: VmProcess,
  error: RegExp,
): Promise<{ source: MigrationInfo; destination: MigrationInfo }> {
  const destination = await waitFor(dst, finished, 'the destination failing');
  assert.equal(destination.status, 'failed');
  assert.match(destination['error-desc'] ?? '', error);
  const source = await waitFor(src, finished, 'the source failing');
  assert.equal(source.status, 'failed', JSON.stringify(source));
  assert.ok((source['error-desc'] ?? '') !== '', 'the source says why');
  assert.equal(await runStatus(src), 'running');
  assert.deepEqual(await deviceStates(src), MULTIFD_RUNNING);
  // The destination's guest never ran: still waiting for a migration, its RAM unchanged.
  assert.equal(await runStatus(dst), 'inmigrate');
  const before = (await digest(dst)).ram.sha256;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await digest(dst)).ram.sha256, before, 'the destination RAM stands still');
  return { source, destination };
}

/** A new migration of the same source to a fresh destination completes, digests equal. */
async function assertRetrySucceeds(
  e: E2e,
  src: VmProcess,
  config: Record<string, unknown>,
  channels = CHANNELS,
): Promise<void> {
  await src.qmp.execute('x-clear-faults');
  const { dst, uri } = await multifdDestination(e, config, channels, 'retry');
  await src.qmp.execute('migrate', { uri });
  const info = await waitFor(src, finished, 'the retry');
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal((await waitFor(dst, finished, 'the retry on the destination')).status, 'completed');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(b.ram.sha256, a.ram.sha256, 'guest RAM');
  assert.deepEqual(b.devices, a.devices, 'every device state');
}

for (const [action, error] of [
  ['duplicate', /gpu0: state buffer 2 already filled/],
  ['bad-version', /gpu0: packet has unknown version 1/],
] as const) {
  test(`a device-state packet sent ${action === 'duplicate' ? 'twice' : 'with a bad version'}: the load fails with QEMU's message, the source keeps the guest, a retry succeeds`, async (t) => {
    const e = new E2e(t);
    const config = multifdGuest();
    const { src, dst, uri } = await multifdPair(e, config, CHANNELS);
    const section = await idstrOf(src, 'gpu0');
    await src.qmp.execute('x-inject-fault', { type: 'packet', action, section, nth: 3 });
    await src.qmp.execute('migrate', { uri });
    const { source, destination } = await assertFailedCleanly(src, dst, error);
    t.diagnostic(`destination: ${destination['error-desc']}; source: ${source['error-desc']}`);
    await assertRetrySucceeds(e, src, config);
  });
}

const MiB = 1 << 20;

/** A process's peak resident set (VmHWM), in bytes. */
function peakRss(vm: VmProcess): number {
  const status = readFileSync(`/proc/${vm.child.pid}/status`, 'utf8');
  const kib = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  assert.ok(kib !== null, 'VmHWM in /proc/PID/status');
  return Number(kib[1]) * 1024;
}

test("the queued-bytes cap: a destination whose load thread is held fails with QEMU's message, its memory bounded; the source keeps the guest", async (t) => {
  const e = new E2e(t);
  const STATE = 64 * MiB;
  const CAP = 2 * MiB;
  const RAM = 16 * MiB;
  // A gpu with 64 MiB of state, all of it in stop-copy; a small guest, so RAM weighs little.
  const gpu = { id: 'gpu0', model: 'sim:gpu,state-size=64M,dirty-rate=0,flags=stop-copy+p2p' };
  const config = smallGuest({
    memory: '16M',
    workload: { 'dirty-rate': 4, pattern: 'hot', 'hot-size': '4M', seed: 3 },
    devices: [gpu],
  });
  const dstConfig = {
    ...config,
    devices: [{ ...gpu, 'x-migration-max-queued-buffers-size': String(CAP) }],
  };
  const { src, dst, uri } = await multifdPair(e, config, CHANNELS, dstConfig);
  // The load thread starts 10 s late: the packets would queue whole without the cap.
  await dst.qmp.execute('x-inject-fault', { type: 'load-thread', ms: 10_000 });
  const baseline = peakRss(dst);
  const started = Date.now();
  await src.qmp.execute('migrate', { uri });
  const destination = await waitFor(dst, finished, 'the destination failing');
  assert.ok(Date.now() - started < 8000, 'the cap failed the load, not the end of the hold');
  assert.equal(destination.status, 'failed');
  assert.match(
    destination['error-desc'] ?? '',
    /gpu0: queuing state buffer \d+ would exceed the size max of 2097152/,
  );
  const source = await waitFor(src, finished, 'the source failing');
  assert.equal(source.status, 'failed');
  assert.equal(await runStatus(src), 'running');
  assert.deepEqual(await deviceStates(src), { gpu0: 'RUNNING' });
  // The destination is up, answers, never ran the guest, and queued at most the cap.
  assert.equal(await runStatus(dst), 'inmigrate');
  const gpuIn = (await devicesMultifd(dst)).gpu0!;
  assert.ok(gpuIn['peak-queued-bytes'] <= CAP, `${gpuIn['peak-queued-bytes']} bytes queued`);
  assert.equal(gpuIn['config-loaded'], false);
  // Peak memory: what the guest RAM, the cap and the process's own buffers and workers take,
  // well below the device's whole state.
  const grew = peakRss(dst) - baseline;
  t.diagnostic(
    `destination peak RSS ${(baseline / MiB).toFixed(1)} MiB before, ` +
      `+${(grew / MiB).toFixed(1)} MiB during the failed migration (state ${STATE / MiB} MiB, cap ${CAP / MiB} MiB)`,
  );
  assert.ok(grew < RAM + CAP + 28 * MiB, `peak RSS grew by ${(grew / MiB).toFixed(1)} MiB`);
  assert.ok(grew < STATE, 'less than the device state would take');
});

test(
  'the multifd rows of the fault matrix: each side ends as promised, a multifd retry succeeds',
  { timeout: 120_000 },
  async (t) => {
    const rows = faultMatrix().filter((r) => r.multifd !== undefined && r.quick !== true);
    assert.ok(rows.length >= 6, `${rows.length} rows`);
    const results = await runRowsKeepingPromises(t, rows);
    for (const r of results) assert.match(r.retry, /^completed, digests equal/, r.row.fault);
  },
);
