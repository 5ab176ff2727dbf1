/**
 * `vfio-migrate bench ram`: one run measures, side by side on this machine,
 *
 *   (a) ours   a paused guest whose RAM holds SIZE bytes of an image, migrated between two
 *              `vfio-migrate run` processes over loopback TCP with unlimited bandwidth; the
 *              destination's RAM digest must equal the image's
 *   (b) raw    the same number of bytes through a loopback socket between two Node processes
 *   (c) qemu   QEMU doing (a) on the same image, when qemu-system-x86_64 is installed
 *
 * With N > 1 channels, (a) and (c) use multifd with N channels beside the main channel (the
 * `multifd` capability and `multifd-channels` on both sides, destinations deferred until set),
 * and (b) splits the bytes over N sockets sent in parallel.
 *
 * The three alternate within each repetition (their order rotating), so machine noise falls
 * on all of them alike, after a warm-up round that is not counted. Medians are reported.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StateDigest } from '../vm/index.ts';
import { writeRamImage } from './image.ts';
import type { RamPattern } from './image.ts';
import { startOurPair } from './ours.ts';
import { timeMigration } from './pair.ts';
import type { MigrationPair, TimedMigration } from './pair.ts';
import { findQemu, startQemuPair } from './qemu.ts';
import { rawCopySeconds } from './raw-copy.ts';
import { median, summarize } from './stats.ts';
import type { Summary } from './stats.ts';

export interface RamBenchOptions {
  /** Guest RAM in bytes, a multiple of 1 MiB. */
  readonly sizeBytes: number;
  /** 1: the main channel alone; N > 1: multifd with N channels (and the main one). */
  readonly channels: number;
  readonly repetitions: number;
  /** Uncounted rounds first. */
  readonly warmup: number;
  readonly pattern: RamPattern;
  /**
   * Both destinations back all their RAM before the migration (mem-prealloc, QEMU's
   * -mem-prealloc): what is left is the migration's own work, without first-touch faults.
   */
  readonly prealloc: boolean;
  /** Compare with QEMU when it is installed. */
  readonly qemu: boolean;
  /** Longest a single migration or copy may take, in ms. */
  readonly timeoutMs: number;
  /** One line per measurement, as it happens. */
  readonly progress?: (line: string) => void;
}

export interface RamBenchResult {
  readonly sizeBytes: number;
  readonly pattern: RamPattern;
  readonly prealloc: boolean;
  readonly channels: number;
  /** Connections the raw copy used in parallel (1, or `channels` with multifd). */
  readonly rawSockets: number;
  readonly repetitions: number;
  /** Medians, in seconds. */
  readonly oursSeconds: number;
  readonly rawSeconds: number;
  readonly qemuSeconds: number | null;
  /** Our throughput divided by the raw copy's. */
  readonly oursVsRaw: number;
  /** Our time divided by QEMU's. */
  readonly oursVsQemu: number | null;
  /** Highest peak RSS (VmHWM) of our destination over the repetitions. */
  readonly destPeakRssBytes: number | null;
  /** Highest peak RSS of our source. */
  readonly srcPeakRssBytes: number | null;
  readonly qemuDestPeakRssBytes: number | null;
  /** Median MiB/s of each. */
  readonly oursMiBps: number;
  readonly rawMiBps: number;
  readonly qemuMiBps: number | null;
  /** Median downtime our source reported (ms). */
  readonly oursDowntimeMs: number;
  readonly samples: {
    readonly ours: Summary;
    readonly raw: Summary;
    readonly qemu: Summary | null;
  };
  readonly machine: MachineInfo;
}

export interface MachineInfo {
  readonly node: string;
  readonly cpus: number;
  readonly cpuModel: string;
  /** The QEMU compared with, or null. */
  readonly qemu: string | null;
}

/** `multifd-channels`' range (QEMU's migrate_params_check). */
export const MAX_CHANNELS = 255;

export function checkChannels(channels: number): void {
  if (!Number.isInteger(channels) || channels < 1 || channels > MAX_CHANNELS) {
    throw new RangeError(`--channels ${channels}: an integer from 1 to ${MAX_CHANNELS} is needed`);
  }
}

/** Multifd is used from two channels on; one channel is the plain main-channel migration. */
export function multifdChannelsOf(channels: number): number | undefined {
  return channels > 1 ? channels : undefined;
}

type Method = 'ours' | 'raw' | 'qemu';

interface Sample {
  seconds: number;
  downtimeMs?: number;
  destPeakRssBytes?: number | null;
  srcPeakRssBytes?: number | null;
}

export async function runRamBench(opts: RamBenchOptions): Promise<RamBenchResult> {
  checkChannels(opts.channels);
  const qemu = opts.qemu ? findQemu() : null;
  const dir = mkdtempSync(join(tmpdir(), 'vfio-bench-'));
  try {
    const image = join(dir, 'ram.img');
    const sha256 = writeRamImage(image, opts.sizeBytes, opts.pattern);
    const config = {
      name: 'bench',
      machine: 'none',
      'ram-blocks': [{ idstr: 'ram', size: opts.sizeBytes }],
      vcpus: 0,
      populate: false,
      loader: [{ file: image, addr: 0 }],
    };
    let run = 0;
    const multifdChannels = multifdChannelsOf(opts.channels);
    const defer = multifdChannels !== undefined;
    const measure = async (method: Method): Promise<Sample> => {
      run++;
      if (method === 'raw')
        return { seconds: await rawCopySeconds(opts.sizeBytes, opts.timeoutMs, opts.channels) };
      const pair =
        method === 'ours'
          ? await startOurPair(dir, config, {
              name: `ours${run}`,
              sourcePaused: true,
              destinationConfig: { 'mem-prealloc': opts.prealloc },
              deferIncoming: defer,
            })
          : await startQemuPair(
              qemu!,
              dir,
              `qemu${run}`,
              opts.sizeBytes,
              image,
              opts.prealloc,
              defer,
            );
      try {
        const m = await timeMigration(pair, opts.timeoutMs, { multifdChannels });
        if (method === 'ours') await checkDigest(pair, sha256);
        return sampleOf(m);
      } finally {
        await pair.stop();
      }
    };
    const methods: Method[] = qemu === null ? ['ours', 'raw'] : ['ours', 'raw', 'qemu'];
    const samples = new Map<Method, Sample[]>(methods.map((m) => [m, []]));
    const rounds = opts.warmup + opts.repetitions;
    for (let round = 0; round < rounds; round++) {
      const counted = round >= opts.warmup;
      for (let k = 0; k < methods.length; k++) {
        const method = methods[(round + k) % methods.length]!;
        const s = await measure(method);
        if (counted) samples.get(method)!.push(s);
        const tag = counted ? `#${round - opts.warmup + 1}` : 'warm-up';
        opts.progress?.(
          `${tag.padEnd(8)} ${method.padEnd(5)} ${s.seconds.toFixed(3)} s  ` +
            `${mibps(opts.sizeBytes, s.seconds).toFixed(0)} MiB/s`,
        );
      }
    }
    return resultOf(opts, samples, qemu);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function sampleOf(m: TimedMigration): Sample {
  const downtime = m.info.downtime;
  return {
    seconds: m.seconds,
    downtimeMs: typeof downtime === 'number' ? downtime : undefined,
    destPeakRssBytes: m.destPeakRssBytes,
    srcPeakRssBytes: m.srcPeakRssBytes,
  };
}

/** The destination's RAM must be the image, byte for byte. */
async function checkDigest(pair: MigrationPair, sha256: string): Promise<void> {
  const digest = await pair.destination.qmp.execute<StateDigest>(
    'x-query-state-digest',
    undefined,
    { timeoutMs: 120_000 },
  );
  const got = digest.ram.blocks[0]?.sha256;
  if (got !== sha256) {
    throw new Error(`the destination's RAM differs from the image (sha256 ${got} != ${sha256})`);
  }
}

function mibps(bytes: number, seconds: number): number {
  return bytes / (1 << 20) / seconds;
}

function maxOf(xs: readonly (number | null | undefined)[]): number | null {
  const known = xs.filter((x): x is number => typeof x === 'number');
  return known.length === 0 ? null : Math.max(...known);
}

function resultOf(
  opts: RamBenchOptions,
  samples: ReadonlyMap<Method, readonly Sample[]>,
  qemu: string | null,
): RamBenchResult {
  const seconds = (m: Method) => (samples.get(m) ?? []).map((s) => s.seconds);
  const ours = summarize(seconds('ours'));
  const raw = summarize(seconds('raw'));
  const q = qemu === null ? null : summarize(seconds('qemu'));
  const oursRuns = samples.get('ours') ?? [];
  const downtimes = oursRuns.map((s) => s.downtimeMs ?? 0);
  return {
    sizeBytes: opts.sizeBytes,
    pattern: opts.pattern,
    prealloc: opts.prealloc,
    channels: opts.channels,
    rawSockets: opts.channels,
    repetitions: opts.repetitions,
    oursSeconds: ours.median,
    rawSeconds: raw.median,
    qemuSeconds: q?.median ?? null,
    oursVsRaw: raw.median / ours.median,
    oursVsQemu: q === null ? null : ours.median / q.median,
    destPeakRssBytes: maxOf(oursRuns.map((s) => s.destPeakRssBytes)),
    srcPeakRssBytes: maxOf(oursRuns.map((s) => s.srcPeakRssBytes)),
    qemuDestPeakRssBytes: maxOf((samples.get('qemu') ?? []).map((s) => s.destPeakRssBytes)),
    oursMiBps: mibps(opts.sizeBytes, ours.median),
    rawMiBps: mibps(opts.sizeBytes, raw.median),
    qemuMiBps: q === null ? null : mibps(opts.sizeBytes, q.median),
    oursDowntimeMs: median(downtimes),
    samples: { ours, raw, qemu: q },
    machine: {
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      qemu,
    },
  };
}
