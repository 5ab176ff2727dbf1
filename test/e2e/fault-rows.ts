/**
 * Runs rows of the fault matrix between real processes and asserts that every row kept its
 * promise, with the table in the test's diagnostics (and in the failure message).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { formatFaultTable, runFaultMatrix } from '../../src/cli/faults/index.ts';
import type { FaultRow, RowResult } from '../../src/cli/faults/index.ts';

export async function runRowsKeepingPromises(
  t: TestContext,
  rows: readonly FaultRow[],
): Promise<RowResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-faults-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const results = await runFaultMatrix(rows, { dir });
  const table = formatFaultTable(results);
  t.diagnostic(`\n${table}`);
  assert.deepEqual(
    results
      .filter((r) => !r.ok)
      .map((r) => `${r.row.fault} @ ${r.row.phase}: ${r.problems.join('; ')}`),
    [],
    table,
  );
  return results;
}
