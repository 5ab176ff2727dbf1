/**
 * The fault matrix between real processes: the quick subset (a fault of each kind, at the
 * phases where recovery is hardest) must keep every promise, and `vfio-migrate faults` runs
 * a row and reports it as JSON. The whole matrix is `vfio-migrate faults` (1 to 1.5 minutes).
 * And a paused guest migrated again after a failure keeps the DMA its running devices did.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  Expect,
  FaultProcesses,
  faultMatrix,
  migrationEnd,
  setCapabilities,
  stateDigest,
} from '../../src/cli/faults/index.ts';
import { runCli } from '../helpers/repo.ts';
import { runRowsKeepingPromises } from './fault-rows.ts';

test('the quick fault matrix: every row recovers as promised', { timeout: 240_000 }, async (t) => {
  const rows = faultMatrix().filter((r) => r.quick);
  const kinds = new Set(rows.map((r) => r.expect));
  assert.ok(rows.length >= 10, `${rows.length} quick rows`);
  assert.ok(kinds.has(Expect.SOURCE_KEEPS) && kinds.has(Expect.IN_DOUBT));
  const results = await runRowsKeepingPromises(t, rows);
  // What a few rows must show, beyond their own checks.
  const row = (fault: string) => results.find((r) => r.row.fault === fault)!;
  assert.match(row('destination holds its SHUT').errors.destination ?? '', /x-stall-timeout/);
  assert.equal(row('SHUT lost on the way back').outcome, 'source failed, destination completed');
  assert.match(row('device resuming stream invalid').retry, /^completed, digests equal/);
});

test(
  'vfio-migrate faults --only ... --json: one row, its verdict, exit code 0',
  { timeout: 120_000 },
  async () => {
    const r = await runCli(['faults', '--only', 'destination stops reading', '--json'], 100_000);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      total: number;
      broken: number;
      rows: { phase: string; ok: boolean; outcome: string; 'destination-error': string }[];
    };
    assert.equal(report.total, 2);
    assert.equal(report.broken, 0);
    assert.deepEqual(
      report.rows.map((x) => [x.phase, x.ok, x.outcome]),
      [
        ['pre-copy', true, 'source failed, destination failed'],
        ['stop-and-copy', true, 'source failed, destination failed'],
      ],
    );
    assert.match(report.rows[0]!['destination-error'], /x-stall-timeout/);
  },
);

test(
  'a paused guest migrated again after a failed migration keeps its device DMA',
  { timeout: 120_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vfio-faults-'));
    const procs = new FaultProcesses(dir);
    t.after(async () => {
      await procs.stopAll();
      rmSync(dir, { recursive: true, force: true });
    });
    const [src, dst, retry] = await Promise.all([
      procs.source(),
      procs.destination(false),
      procs.destination(true),
    ]);
    for (const vm of [src, dst, retry]) await setCapabilities(vm, { 'return-path': true });
    await src.qmp.execute('stop');
    await src.qmp.execute('x-inject-fault', { type: 'channel', action: 'cut', phase: 'pre-copy' });
    await src.qmp.execute('migrate', { uri: dst.ready.incoming });
    assert.equal((await migrationEnd(src, 30_000)).status, 'failed');
    await src.qmp.execute('migrate', { uri: retry.ready.incoming });
    assert.equal((await migrationEnd(src, 30_000)).status, 'completed');
    await migrationEnd(retry, 30_000);
    assert.equal((await stateDigest(retry)).ram.sha256, (await stateDigest(src)).ram.sha256);
  },
);
