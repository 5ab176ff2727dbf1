/** `vfio-migrate faults`: the fault matrix between real processes, as a table. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import pc from 'picocolors';
import { faultMatrix, faultReportJson, formatFaultTable, runFaultMatrix } from '../faults/index.ts';
import type { RowResult } from '../faults/index.ts';
import { cliParser, integer } from '../parse.ts';

interface Options {
  quick?: boolean;
  json?: boolean;
  only?: string;
  stallTimeout: number;
}

function progress(r: RowResult): void {
  const mark = r.ok ? pc.green('ok    ') : pc.red('BROKEN');
  process.stderr.write(`${mark} ${r.row.fault} @ ${r.row.phase} (${r.ms} ms)\n`);
}

export function registerFaults(program: Command): void {
  program
    .command('faults')
    .description(
      'run the fault matrix: each fault (a main or multifd channel cut, reset or stalled, a ' +
        'process killed, a device failing, a section failing to load, a multifd device-state ' +
        'packet refused, a cancel) at each phase of a migration ' +
        'between real processes, checking that the source keeps its guest, the destination ' +
        'never runs it, and a new migration succeeds; exits non-zero if a row breaks that',
    )
    .option('--quick', 'only the quick subset the tests run')
    .option('--only <text>', 'only rows whose fault or phase contains this text')
    .option('--json', 'print one JSON object with every row')
    .option('--stall-timeout <ms>', 'x-stall-timeout on both sides', cliParser(integer(1)), 1000)
    .action(async (opts: Options) => {
      let rows = faultMatrix();
      if (opts.quick) rows = rows.filter((r) => r.quick);
      if (opts.only !== undefined) {
        const text = opts.only;
        rows = rows.filter((r) => r.fault.includes(text) || r.phase.includes(text));
      }
      if (rows.length === 0) throw new Error('no row matches');
      const dir = mkdtempSync(join(tmpdir(), 'vfio-faults-'));
      try {
        const results = await runFaultMatrix(rows, {
          dir,
          stallTimeoutMs: opts.stallTimeout,
          onRow: opts.json ? undefined : progress,
        });
        const out = opts.json
          ? JSON.stringify(faultReportJson(results), null, 2)
          : `\n${formatFaultTable(results, pc.isColorSupported)}`;
        process.stdout.write(`${out}\n`);
        if (results.some((r) => !r.ok)) process.exitCode = 1;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
}
