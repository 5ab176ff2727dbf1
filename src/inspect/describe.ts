/**
 * Short human descriptions of section payloads, sizes and counts. A description takes the
 * payloads of one or more sections of the same entry, so a grouped run of PART sections and a
 * single section are worded by the same code.
 */
import type {
  GlobalStatePayload,
  PayloadSummary,
  RamPayload,
  TimerPayload,
  ViommuPayload,
  VfioPayload,
} from './report.ts';

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB'] as const;

/** "512 B", "1.5 KiB", "16 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  let v = n;
  let unit: string = UNITS[0];
  for (const u of UNITS) {
    v /= 1024;
    unit = u;
    if (v < 1024) break;
  }
  return `${v < 10 ? trimZero(v.toFixed(1)) : Math.round(v)} ${unit}`;
}

/** "3 MiB (3145728 bytes)"; just "512 bytes" below 1 KiB. */
export function formatBytesExact(n: number): string {
  return n < 1024 ? plural(n, 'byte') : `${formatBytes(n)} (${n} bytes)`;
}

/** "1 page", "4 pages". */
export function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

function trimZero(s: string): string {
  return s.endsWith('.0') ? s.slice(0, -2) : s;
}

/** `payloads` all have the same format (they come from one entry). */
export function describePayloads(payloads: readonly (PayloadSummary | null)[]): string {
  const known = payloads.filter((p): p is PayloadSummary => p !== null);
  const first = known[0];
  if (first === undefined) return 'not decoded';
  switch (first.format) {
    case 'ram':
      return describeRam(known as RamPayload[]);
    case 'vfio':
      return describeVfio(known as VfioPayload[]);
    case 'globalstate':
      return (known as GlobalStatePayload[]).map((p) => `run state '${p.runState}'`).join('; ');
    case 'timer':
      return (known as TimerPayload[])
        .map(
          (p) =>
            `cpu_ticks_offset ${p.cpuTicksOffset}` +
            (p.cpuClockOffset === null ? '' : `, cpu_clock_offset ${p.cpuClockOffset}`),
        )
        .join('; ');
    case 'viommu':
      return (known as ViommuPayload[])
        .map((p) => `${plural(p.bytes, 'byte')}, ${p.mappings ?? 'malformed'} mappings`)
        .join('; ');
  }
}

function describeRam(ps: readonly RamPayload[]): string {
  const parts: string[] = [];
  for (const p of ps) {
    if (p.memSize !== null) {
      parts.push(`MEM_SIZE ${formatBytes(p.memSize)} in ${plural(p.blocks?.length ?? 0, 'block')}`);
    }
  }
  const pages = sum(ps, (p) => p.pages);
  const zeroPages = sum(ps, (p) => p.zeroPages);
  const flushes = sum(ps, (p) => p.multifdFlushes);
  if (pages > 0) parts.push(plural(pages, 'page'));
  if (zeroPages > 0) parts.push(plural(zeroPages, 'zero page'));
  if (flushes > 0) parts.push(plural(flushes, 'multifd flush', 'multifd flushes'));
  return parts.length === 0 ? 'EOS only' : parts.join(', ');
}

function describeVfio(ps: readonly VfioPayload[]): string {
  const parts: string[] = [];
  if (ps.some((p) => p.setup)) parts.push('SETUP');
  const records = sum(ps, (p) => p.dataRecords);
  if (records > 0) {
    parts.push(`${plural(records, 'data record')} (${formatBytes(sum(ps, (p) => p.dataBytes))})`);
  }
  for (const p of ps)
    if (p.configBytes !== null) parts.push(`config ${formatBytes(p.configBytes)}`);
  const initDataSent = ps.filter((p) => p.end === 'DEV_INIT_DATA_SENT').length;
  if (initDataSent > 0) parts.push(times('INIT_DATA_SENT', initDataSent));
  const loadReady = ps.filter((p) => p.end === 'DEV_CONFIG_LOAD_READY').length;
  if (loadReady > 0) parts.push(times('CONFIG_LOAD_READY', loadReady));
  if (parts.length === 0 && ps.every((p) => p.end === 'END_OF_STATE')) {
    return 'END_OF_STATE only';
  }
  return parts.join(', ');
}

function times(what: string, n: number): string {
  return n === 1 ? what : `${what} ×${n}`;
}

function sum<T>(xs: readonly T[], f: (x: T) => number): number {
  let n = 0;
  for (const x of xs) n += f(x);
  return n;
}
