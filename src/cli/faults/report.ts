/** The fault matrix as a table (and as JSON): one row per fault × phase, then the verdict. */
import pc from 'picocolors';
import type { RowResult } from './runner.ts';

const HEADERS = ['#', 'fault', 'phase', 'outcome', 'recovery', 'retry', ''] as const;

function cells(r: RowResult, i: number): string[] {
  return [
    String(i + 1),
    r.row.fault,
    r.row.phase,
    r.outcome,
    r.recovery,
    r.retry,
    r.ok ? 'ok' : 'BROKEN',
  ];
}

/** The table, a line per problem under a broken row, and the count. */
export function formatFaultTable(results: readonly RowResult[], color = false): string {
  const rows = results.map(cells);
  const widths = HEADERS.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: readonly string[]) =>
    r
      .map((x, c) => x.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  const out = [line(HEADERS), line(widths.map((w) => '-'.repeat(w)))];
  results.forEach((r, i) => {
    const text = line(rows[i]!);
    out.push(color ? (r.ok ? text : pc.red(text)) : text);
    for (const p of r.problems) out.push(`     ${color ? pc.red(p) : p}`);
  });
  const broken = results.filter((r) => !r.ok).length;
  const secs = (results.reduce((t, r) => t + r.ms, 0) / 1000).toFixed(0);
  out.push(
    '',
    `${results.length} rows, ${results.length - broken} recovered as promised` +
      (broken > 0 ? `, ${broken} BROKEN` : '') +
      ` (${secs} s)`,
  );
  return out.join('\n');
}

/** What `--json` prints. */
export function faultReportJson(results: readonly RowResult[]): Record<string, unknown> {
  return {
    rows: results.map((r) => ({
      fault: r.row.fault,
      phase: r.row.phase,
      promise: r.row.expect,
      ok: r.ok,
      outcome: r.outcome,
      recovery: r.recovery,
      retry: r.retry,
      'source-error': r.errors.source,
      'destination-error': r.errors.destination,
      problems: r.problems,
      ms: r.ms,
    })),
    total: results.length,
    broken: results.filter((r) => !r.ok).length,
  };
}
