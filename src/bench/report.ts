/** The benchmarks' results as text for a terminal (`--json` prints the objects instead). */
import type { DowntimeResult } from './downtime.ts';
import type { DowntimePhases, MultifdDowntimeReport } from './multifd-downtime.ts';
import type { RamBenchResult } from './ram.ts';
import type { Summary } from './stats.ts';

const MiB = 1 << 20;

export function formatBytes(n: number | null): string {
  if (n === null) return 'unknown';
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  return n >= 10 * MiB ? `${(n / MiB).toFixed(0)} MiB` : `${(n / MiB).toFixed(2)} MiB`;
}

function row(name: string, s: Summary, bytes: number, extra = ''): string {
  const rate = (secs: number) => (bytes / MiB / secs).toFixed(0);
  return (
    `  ${name.padEnd(5)} ${s.median.toFixed(3)} s  ${rate(s.median).padStart(5)} MiB/s` +
    `   (min ${s.min.toFixed(3)} s, max ${s.max.toFixed(3)} s)${extra}`
  );
}

export function formatRamReport(r: RamBenchResult): string {
  const m = r.machine;
  const lines = [
    `RAM migration of a paused guest, ${formatBytes(r.sizeBytes)} ${r.pattern}` +
      `${r.prealloc ? ', destination RAM preallocated' : ''}, ${channelsText(r.channels)}, ` +
      `${r.repetitions} repetitions (medians); Node ${m.node}, ${m.cpus} CPUs (${m.cpuModel})`,
    row('ours', r.samples.ours, r.sizeBytes, `   downtime ${r.oursDowntimeMs} ms`),
    row(
      'raw',
      r.samples.raw,
      r.sizeBytes,
      `   (loopback socket copy, Node to Node, ${r.rawSockets} socket` +
        `${r.rawSockets > 1 ? 's in parallel' : ''})`,
    ),
    r.samples.qemu === null
      ? '  qemu  not measured (qemu-system-x86_64 not found, or --no-qemu)'
      : row('qemu', r.samples.qemu, r.sizeBytes, `   (${m.qemu})`),
    `  ours / raw throughput ${r.oursVsRaw.toFixed(2)}` +
      (r.oursVsQemu === null ? '' : `   ours / qemu time ${r.oursVsQemu.toFixed(2)}`),
    `  peak RSS: destination ${formatBytes(r.destPeakRssBytes)}, ` +
      `source ${formatBytes(r.srcPeakRssBytes)} (guest RAM ${formatBytes(r.sizeBytes)})` +
      (r.qemuDestPeakRssBytes === null
        ? ''
        : `; QEMU destination ${formatBytes(r.qemuDestPeakRssBytes)}`),
  ];
  return lines.join('\n') + '\n';
}

function channelsText(channels: number): string {
  return channels > 1 ? `multifd with ${channels} channels` : 'one channel (no multifd)';
}

export function formatDowntimeReport(results: readonly DowntimeResult[]): string {
  const lines = [
    'Downtime of converging live migrations (medians); ideal = stop bytes / bandwidth',
  ];
  for (const r of results) {
    const verdict =
      (r.withinLimit ? 'within the limit' : 'OVER THE LIMIT') +
      (r.nearIdeal ? ', <= 1.5 x ideal + 30 ms' : ', FAR FROM IDEAL');
    lines.push(
      `  ${r.scenario}: ${r.description}`,
      `    downtime ${r.downtimeMs} ms (limit ${r.downtimeLimitMs} ms), ideal ` +
        `${r.idealDowntimeMs.toFixed(1)} ms: ${formatBytes(r.stopBytes)} while stopped at ` +
        `${(r.bandwidthBytesPerSecond / MiB).toFixed(0)} MiB/s; total ${r.totalTimeMs} ms; ${verdict}`,
    );
  }
  return lines.join('\n') + '\n';
}

const PHASE_COLUMNS: readonly [string, keyof DowntimePhases][] = [
  ['downtime', 'downtimeMs'],
  ['stop', 'stopMs'],
  ['iterables', 'iterablesMs'],
  ['ram', 'ramMs'],
  ['reads', 'deviceReadMs'],
  ['config', 'configSaveMs'],
  ['dst tail', 'destinationTailMs'],
  ['dev write', 'deviceWriteMs'],
  ['cfg load', 'configLoadMs'],
  ['start', 'startMs'],
];

export function formatMultifdDowntimeReport(r: MultifdDowntimeReport): string {
  const first = r.results[0];
  const head = ['devices', 'state over', ...PHASE_COLUMNS.map(([name]) => name)];
  const rows = r.results.map((x) => [
    String(x.devices),
    x.path === 'multifd' ? 'multifd' : 'main',
    ...PHASE_COLUMNS.map(([, key]) => x.phases[key].toFixed(0)),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    '  ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const lines = [
    'Downtime with device state over multifd vs over the main channel (medians, ms); ' +
      (first === undefined
        ? ''
        : `${formatBytes(first.stateBytesPerDevice)} of stop-copy state per device, ` +
          `${first.channels} multifd channels, ${r.cpus} CPUs`),
    line(head),
    ...rows.map(line),
    '  speed-up (main / multifd downtime): ' +
      Object.entries(r.speedup)
        .map(([devices, s]) => `${devices} device${devices === '1' ? '' : 's'} ${s.toFixed(2)}x`)
        .join(', '),
    '  stop: vCPUs and devices stopped; iterables: END sections and precopy-thread jobs on the ' +
      "source; ram: RAM's END section; reads: the longest device save; config: FULL sections; dst tail: from the " +
      "source's last byte to the destination's load done; dev write / cfg load: the longest " +
      'device load and config load there; start: devices and vCPUs started, SHUT back',
  ];
  return lines.join('\n') + '\n';
}
