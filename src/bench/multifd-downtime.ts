/**
 * `vfio-migrate bench multifd`: the downtime of a guest whose devices carry large state sent
 * during stop-copy, with that state over the multifd channels (QEMU 10's
 * `x-migration-multifd-transfer`, qemu-migration.md §4) against over the main channel
 * (`x-migration-multifd-transfer=off`), for 1, 2 and 4 devices. RAM goes over multifd in both,
 * so that only the device-state path differs. QEMU's own figure: 4 devices, about 2100 ms on
 * the main channel, 1100 ms over multifd.
 *
 * Each migration also says where its downtime went, from both sides' `x-query-downtime`
 * (QEMU's downtime checkpoints and each entry's switchover time, on one wall clock since both
 * processes run on this host):
 *
 *   stop        src-downtime-start → src-vm-stopped: vCPUs parked, devices to STOP
 *   iterables   src-vm-stopped → src-iterable-saved: END sections (RAM's last pass, each
 *               device's data on the main channel) and the precopy-thread jobs joined
 *   ram         RAM's END section within it
 *   reads       the longest device's save: its precopy-thread job (multifd) or its END section
 *               (main channel) — reading STOP_COPY data and handing it to a channel
 *   config      src-iterable-saved → src-non-iterable-saved: FULL sections (device configs on
 *               the main channel, globalstate)
 *   dst tail    src-non-iterable-saved → dst-precopy-loadvm-completed: what the destination
 *               still had to receive and write once the source had sent everything
 *   dev write   the longest device's load: its load thread (multifd) or its END section
 *   cfg load    the longest device config load
 *   start       dst-precopy-loadvm-completed → src-downtime-stop: devices and vCPUs started,
 *               SHUT back to the source
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DowntimeCheckpoint, DowntimeSpan } from '../migration/index.ts';
import type { QmpClient } from '../qmp/index.ts';
import { startOurPair } from './ours.ts';
import { timeMigration } from './pair.ts';
import { median } from './stats.ts';

export const MULTIFD_DEVICE_COUNTS = [1, 2, 4] as const;
export const DEVICE_STATE_PATHS = ['main', 'multifd'] as const;
export type DeviceStatePath = (typeof DEVICE_STATE_PATHS)[number];

export interface MultifdDowntimeOptions {
  /** Device counts to run, e.g. [1, 2, 4]. */
  readonly devices: readonly number[];
  /** Each device's state, all of it sent during stop-copy. */
  readonly stateBytes: number;
  /** multifd-channels on both sides. */
  readonly channels: number;
  readonly repetitions: number;
  readonly timeoutMs: number;
  readonly progress?: (line: string) => void;
}

/** Where one migration's downtime went, in ms. */
export interface DowntimePhases {
  readonly downtimeMs: number;
  readonly stopMs: number;
  readonly iterablesMs: number;
  readonly ramMs: number;
  readonly deviceReadMs: number;
  readonly configSaveMs: number;
  readonly destinationTailMs: number;
  readonly deviceWriteMs: number;
  readonly configLoadMs: number;
  readonly startMs: number;
}

export interface MultifdDowntimeResult {
  readonly devices: number;
  readonly path: DeviceStatePath;
  readonly stateBytesPerDevice: number;
  readonly channels: number;
  /** Medians of each phase over the repetitions. */
  readonly phases: DowntimePhases;
  readonly totalTimeMs: number;
  readonly runs: readonly DowntimePhases[];
}

export interface MultifdDowntimeReport {
  readonly results: readonly MultifdDowntimeResult[];
  /** Main-channel downtime / multifd downtime, per device count. */
  readonly speedup: Readonly<Record<string, number>>;
  readonly cpus: number;
}

const DOWNTIME_LIMIT_MS = 60_000;

/**
 * A small running guest with `devices` GPUs whose whole state goes in stop-copy; a downtime
 * limit high enough that the switchover happens at once, so RAM's first pass falls in the
 * downtime too: the guest's RAM is kept small (32 MiB, half of it zero) and its END section
 * is shown on its own.
 */
export function multifdDowntimeConfig(
  devices: number,
  stateBytes: number,
  path: DeviceStatePath,
): Record<string, unknown> {
  return {
    name: 'bench-multifd',
    memory: '32M',
    vcpus: 1,
    workload: { 'dirty-rate': 4, pattern: 'hot', 'hot-size': '8M', seed: 7 },
    populate: { seed: 3, 'zero-share': 0.5 },
    devices: Array.from({ length: devices }, (_, i) => ({
      id: `gpu${i}`,
      model: `sim:gpu,state-size=${stateBytes >> 20}M,flags=stop-copy+p2p,seed=${i + 1}`,
      'x-migration-multifd-transfer': path === 'multifd' ? 'on' : 'off',
    })),
  };
}

/** One side of `x-query-downtime`, in the core's own names. */
export interface DowntimeInfo {
  checkpoints: { checkpoint: DowntimeCheckpoint; at: number }[];
  spans: Span[];
}

type Span = Pick<DowntimeSpan, 'kind' | 'idstr' | 'start' | 'end'>;

/** The parts of the destination's x-query-vfio read here. */
export interface VfioWithMultifd {
  devices: { id: string; idstr: string; multifd?: { 'config-load-ms'?: number } | null }[];
}

async function downtimeOf(qmp: QmpClient): Promise<{ out: DowntimeInfo; in: DowntimeInfo }> {
  const r = await qmp.execute<{ outgoing: DowntimeInfo; incoming: DowntimeInfo }>(
    'x-query-downtime',
  );
  return { out: r.outgoing, in: r.incoming };
}

/** The phases of one migration from the source's and the destination's records. */
export function phasesOf(
  downtimeMs: number,
  src: DowntimeInfo,
  dst: DowntimeInfo,
  dstVfio: VfioWithMultifd,
): DowntimePhases {
  const at = (d: DowntimeInfo, name: DowntimeCheckpoint) => {
    const c = d.checkpoints.find((x) => x.checkpoint === name);
    if (c === undefined) throw new Error(`no ${name} checkpoint was recorded`);
    return c.at;
  };
  const idstrs = new Set(dstVfio.devices.map((d) => d.idstr));
  // Load threads are named after the device ("of gpu0").
  const names = new Set(dstVfio.devices.map((d) => `of ${d.id}`));
  const longest = (spans: Span[], keep: (s: Span) => boolean) =>
    Math.max(0, ...spans.filter(keep).map((s) => s.end - s.start));
  const isDevice = (s: Span) => idstrs.has(s.idstr);
  const readMs = Math.max(
    longest(src.spans, (s) => s.kind === 'precopy-thread' && isDevice(s)),
    longest(src.spans, (s) => s.kind === 'iterable' && isDevice(s)),
  );
  const writeMs = Math.max(
    longest(dst.spans, (s) => s.kind === 'load-thread' && names.has(s.idstr)),
    longest(dst.spans, (s) => s.kind === 'iterable' && isDevice(s)),
  );
  const configLoadMs = Math.max(
    longest(dst.spans, (s) => s.kind === 'non-iterable' && isDevice(s)),
    ...dstVfio.devices.map((d) => d.multifd?.['config-load-ms'] ?? 0),
  );
  return {
    downtimeMs,
    stopMs: at(src, 'src-vm-stopped') - at(src, 'src-downtime-start'),
    iterablesMs: at(src, 'src-iterable-saved') - at(src, 'src-vm-stopped'),
    ramMs: longest(src.spans, (s) => s.kind === 'iterable' && s.idstr === 'ram'),
    deviceReadMs: readMs,
    configSaveMs: at(src, 'src-non-iterable-saved') - at(src, 'src-iterable-saved'),
    destinationTailMs: at(dst, 'dst-precopy-loadvm-completed') - at(src, 'src-non-iterable-saved'),
    deviceWriteMs: writeMs,
    configLoadMs,
    startMs: at(src, 'src-downtime-stop') - at(dst, 'dst-precopy-loadvm-completed'),
  };
}

export async function runMultifdDowntimeBench(
  opts: MultifdDowntimeOptions,
): Promise<MultifdDowntimeReport> {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-bench-'));
  try {
    const results: MultifdDowntimeResult[] = [];
    let n = 0;
    for (const devices of opts.devices) {
      const runs = new Map<DeviceStatePath, { phases: DowntimePhases; totalMs: number }[]>(
        DEVICE_STATE_PATHS.map((p) => [p, []]),
      );
      for (let i = 0; i < opts.repetitions; i++) {
        // Alternate which path goes first, so that machine noise falls on both alike.
        const order = i % 2 === 0 ? DEVICE_STATE_PATHS : [...DEVICE_STATE_PATHS].reverse();
        for (const path of order) {
          const run = await migrateOnce(dir, `mfd${++n}`, devices, path, opts);
          runs.get(path)!.push(run);
          opts.progress?.(
            `${devices} device${devices > 1 ? 's' : ''} over ${path.padEnd(7)} #${i + 1}: ` +
              `downtime ${run.phases.downtimeMs.toFixed(0)} ms`,
          );
        }
      }
      for (const path of DEVICE_STATE_PATHS) {
        const r = runs.get(path)!;
        results.push({
          devices,
          path,
          stateBytesPerDevice: opts.stateBytes,
          channels: opts.channels,
          phases: medianPhases(r.map((x) => x.phases)),
          totalTimeMs: median(r.map((x) => x.totalMs)),
          runs: r.map((x) => x.phases),
        });
      }
    }
    const speedup: Record<string, number> = {};
    for (const devices of opts.devices) {
      const of = (p: DeviceStatePath) =>
        results.find((r) => r.devices === devices && r.path === p)!.phases.downtimeMs;
      speedup[String(devices)] = of('main') / of('multifd');
    }
    return { results, speedup, cpus: cpus().length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function migrateOnce(
  dir: string,
  name: string,
  devices: number,
  path: DeviceStatePath,
  opts: MultifdDowntimeOptions,
): Promise<{ phases: DowntimePhases; totalMs: number }> {
  const config = multifdDowntimeConfig(devices, opts.stateBytes, path);
  const pair = await startOurPair(dir, config, { name, sourcePaused: false, deferIncoming: true });
  try {
    const m = await timeMigration(pair, opts.timeoutMs, {
      parameters: { 'downtime-limit': DOWNTIME_LIMIT_MS },
      capabilities: ['return-path'],
      multifdChannels: opts.channels,
    });
    const [src, dst, vfio] = await Promise.all([
      downtimeOf(pair.source.qmp),
      downtimeOf(pair.destination.qmp),
      pair.destination.qmp.execute<VfioWithMultifd>('x-query-vfio'),
    ]);
    return {
      phases: phasesOf(Number(m.info.downtime), src.out, dst.in, vfio),
      totalMs: Number(m.info['total-time']),
    };
  } finally {
    await pair.stop();
  }
}

function medianPhases(runs: readonly DowntimePhases[]): DowntimePhases {
  const m = (k: keyof DowntimePhases) => median(runs.map((r) => r[k]));
  return {
    downtimeMs: m('downtimeMs'),
    stopMs: m('stopMs'),
    iterablesMs: m('iterablesMs'),
    ramMs: m('ramMs'),
    deviceReadMs: m('deviceReadMs'),
    configSaveMs: m('configSaveMs'),
    destinationTailMs: m('destinationTailMs'),
    deviceWriteMs: m('deviceWriteMs'),
    configLoadMs: m('configLoadMs'),
    startMs: m('startMs'),
  };
}
