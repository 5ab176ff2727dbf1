/**
 * `vfio-migrate bench downtime`: live migrations that converge — a running guest dirtying its
 * RAM, devices with pre-copy — between two `vfio-migrate run` processes over loopback, with
 * unlimited bandwidth and a return path (so the downtime runs until the destination has
 * loaded everything, QEMU's measure). Each scenario reports
 *
 *   downtime   what the source measured, from stopping the guest to the destination's SHUT
 *   limit      the downtime-limit parameter it had to respect
 *   ideal      the bytes sent while the guest was stopped (RAM's downtime-bytes and each
 *              device's stop-copy bytes) at the bandwidth measured before the stop (bytes
 *              sent while running / the time it took): the least any implementation could do
 *
 * and whether downtime ≤ limit and downtime ≤ 1.5 × ideal + 30 ms held. Medians of several
 * repetitions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VfioInfo } from '../cli/demo/qmp-types.ts';
import { startOurPair } from './ours.ts';
import { timeMigration } from './pair.ts';
import { median } from './stats.ts';

export interface DowntimeScenario {
  readonly name: string;
  readonly description: string;
  /** The VM config of both processes (`vfio-migrate run --config`). */
  readonly config: Record<string, unknown>;
  /** downtime-limit, in ms. */
  readonly downtimeLimitMs: number;
}

const GUEST_WORKLOAD = { 'dirty-rate': 64, pattern: 'hot', 'hot-size': '128M', seed: 7 };

export const DOWNTIME_SCENARIOS: readonly DowntimeScenario[] = [
  {
    name: 'ram-and-devices',
    description: '1 GiB guest dirtying 64 MiB/s, a NIC (8 MiB) and a GPU (64 MiB) in pre-copy',
    config: {
      memory: '1G',
      vcpus: 2,
      workload: GUEST_WORKLOAD,
      populate: { seed: 3, 'zero-share': 0.25 },
      devices: [
        { id: 'nic0', model: 'sim:nic,state-size=8M,dirty-rate=1M,dma-rate=1M' },
        { id: 'gpu0', model: 'sim:gpu,state-size=64M,dirty-rate=4M,dma-rate=2M' },
      ],
    },
    downtimeLimitMs: 300,
  },
  {
    name: 'zero-heavy',
    description: '1 GiB guest, 90% of its pages zero and zeroing pages as it runs, a NIC',
    config: {
      memory: '1G',
      vcpus: 2,
      workload: { ...GUEST_WORKLOAD, 'zero-share': 0.9 },
      populate: { seed: 3, 'zero-share': 0.9 },
      devices: [{ id: 'nic0', model: 'sim:nic,state-size=8M,dirty-rate=1M,dma-rate=1M' }],
    },
    downtimeLimitMs: 300,
  },
  {
    name: 'large-device-state',
    description: '256 MiB guest and a GPU with 512 MiB of state dirtying 8 MiB/s',
    config: {
      memory: '256M',
      vcpus: 1,
      workload: { ...GUEST_WORKLOAD, 'dirty-rate': 16, 'hot-size': '32M' },
      populate: { seed: 3, 'zero-share': 0.25 },
      devices: [{ id: 'gpu0', model: 'sim:gpu,state-size=512M,dirty-rate=8M,dma-rate=2M' }],
    },
    downtimeLimitMs: 300,
  },
];

export interface DowntimeRun {
  readonly downtimeMs: number;
  /** Bytes sent while the guest was stopped. */
  readonly stopBytes: number;
  /** Bytes per second while the guest ran. */
  readonly bandwidth: number;
  readonly idealMs: number;
  readonly totalMs: number;
}

export interface DowntimeResult {
  readonly scenario: string;
  readonly description: string;
  readonly downtimeLimitMs: number;
  /** Medians over the repetitions. */
  readonly downtimeMs: number;
  readonly idealDowntimeMs: number;
  readonly stopBytes: number;
  readonly bandwidthBytesPerSecond: number;
  readonly totalTimeMs: number;
  /** Every repetition ended within the limit. */
  readonly withinLimit: boolean;
  /** Every repetition had downtime ≤ 1.5 × ideal + 30 ms. */
  readonly nearIdeal: boolean;
  readonly runs: readonly DowntimeRun[];
}

export interface DowntimeBenchOptions {
  readonly scenarios: readonly DowntimeScenario[];
  readonly repetitions: number;
  readonly timeoutMs: number;
  readonly progress?: (line: string) => void;
}

/** How much above the ideal a downtime may be: QEMU's own overheads (stop, SHUT) included. */
export function nearIdeal(downtimeMs: number, idealMs: number): boolean {
  return downtimeMs <= 1.5 * idealMs + 30;
}

interface RamInfo {
  transferred: number;
  'downtime-bytes': number;
}

export async function runDowntimeBench(opts: DowntimeBenchOptions): Promise<DowntimeResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-bench-'));
  try {
    const results: DowntimeResult[] = [];
    let n = 0;
    for (const scenario of opts.scenarios) {
      const runs: DowntimeRun[] = [];
      for (let i = 0; i < opts.repetitions; i++) {
        const pair = await startOurPair(dir, scenario.config, {
          name: `dt${++n}`,
          sourcePaused: false,
        });
        try {
          const m = await timeMigration(pair, opts.timeoutMs, {
            parameters: { 'downtime-limit': scenario.downtimeLimitMs },
            capabilities: ['return-path'],
          });
          const vfio = await pair.source.qmp.execute<VfioInfo>('x-query-vfio');
          const run = downtimeRun(m.info, vfio);
          runs.push(run);
          opts.progress?.(
            `${scenario.name} #${i + 1}: downtime ${run.downtimeMs} ms (limit ` +
              `${scenario.downtimeLimitMs}, ideal ${run.idealMs.toFixed(1)}), ` +
              `${(run.stopBytes / (1 << 20)).toFixed(1)} MiB while stopped`,
          );
        } finally {
          await pair.stop();
        }
      }
      results.push(resultOf(scenario, runs));
    }
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The figures of one migration, from the source's query-migrate and x-query-vfio. */
export function downtimeRun(info: Record<string, unknown>, vfio: VfioInfo): DowntimeRun {
  const ram = info.ram as RamInfo;
  const downtimeMs = Number(info.downtime);
  const totalMs = Number(info['total-time']);
  const setupMs = Number(info['setup-time'] ?? 0);
  const deviceStopBytes = vfio.devices.reduce((sum, d) => sum + d.bytes['stop-copy'], 0);
  const stopBytes = ram['downtime-bytes'] + deviceStopBytes;
  const runningMs = totalMs - downtimeMs - setupMs;
  const bandwidth = runningMs > 0 ? ((ram.transferred - stopBytes) * 1000) / runningMs : 0;
  const idealMs = bandwidth > 0 ? (stopBytes * 1000) / bandwidth : 0;
  return { downtimeMs, stopBytes, bandwidth, idealMs, totalMs };
}

function resultOf(s: DowntimeScenario, runs: readonly DowntimeRun[]): DowntimeResult {
  const med = (f: (r: DowntimeRun) => number) => median(runs.map(f));
  return {
    scenario: s.name,
    description: s.description,
    downtimeLimitMs: s.downtimeLimitMs,
    downtimeMs: med((r) => r.downtimeMs),
    idealDowntimeMs: med((r) => r.idealMs),
    stopBytes: med((r) => r.stopBytes),
    bandwidthBytesPerSecond: med((r) => r.bandwidth),
    totalTimeMs: med((r) => r.totalMs),
    withinLimit: runs.every((r) => r.downtimeMs <= s.downtimeLimitMs),
    nearIdeal: runs.every((r) => nearIdeal(r.downtimeMs, r.idealMs)),
    runs,
  };
}
