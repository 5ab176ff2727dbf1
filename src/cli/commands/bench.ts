/** `vfio-migrate bench`: migration performance measured against Node's own socket and QEMU. */
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import { parseSize } from '../../device/sim/index.ts';
import {
  DOWNTIME_SCENARIOS,
  RAM_PATTERNS,
  MULTIFD_DEVICE_COUNTS,
  checkChannels,
  formatDowntimeReport,
  formatMultifdDowntimeReport,
  formatRamReport,
  runDowntimeBench,
  runMultifdDowntimeBench,
  runRamBench,
} from '../../bench/index.ts';
import type { RamPattern } from '../../bench/index.ts';
import { cliParser, integer } from '../parse.ts';

interface DowntimeOptions {
  repetitions: number;
  scenario?: string[];
  timeout: number;
  json?: boolean;
}

interface MultifdOptions {
  devices?: number[];
  stateSize: number;
  channels: number;
  repetitions: number;
  timeout: number;
  json?: boolean;
}

interface RamOptions {
  size: number;
  channels: number;
  repetitions: number;
  warmup: number;
  pattern: RamPattern;
  prealloc?: boolean;
  qemu: boolean;
  timeout: number;
  json?: boolean;
}

/** Guest RAM: a whole number of MiB, 1 MiB to 64 GiB. */
function ramSize(text: string): number {
  const n = parseSize(text);
  if (n < 1 << 20 || n > 64 * (1 << 30) || n % (1 << 20) !== 0) {
    throw new Error(`"${text}" is not a whole number of MiB between 1M and 64G`);
  }
  return n;
}

function channels(text: string): number {
  const n = integer(1)(text);
  checkChannels(n);
  return n;
}

/** A device's state: a whole number of MiB, 1 MiB to 1 GiB. */
function stateSize(text: string): number {
  const n = parseSize(text);
  if (n < 1 << 20 || n > 1 << 30 || n % (1 << 20) !== 0) {
    throw new Error(`"${text}" is not a whole number of MiB between 1M and 1G`);
  }
  return n;
}

/** A repeatable --devices: 1 to 16 devices per guest. */
function collectDevices(value: string, previous: number[] | undefined): number[] {
  const n = cliParser(integer(1))(value);
  if (n > 16) throw new InvalidArgumentError(`"${value}" devices: at most 16`);
  return [...(previous ?? []), n];
}

function pattern(text: string): RamPattern {
  const p = RAM_PATTERNS.find((x) => x === text);
  if (p === undefined) throw new Error(`"${text}" is not one of ${RAM_PATTERNS.join(', ')}`);
  return p;
}

export function registerBench(program: Command): void {
  const bench = program
    .command('bench')
    .description(
      'measure migration performance on this machine: RAM throughput against a raw loopback ' +
        'socket copy and QEMU, and downtime against its limit and its ideal',
    );
  bench
    .command('ram')
    .description(
      'migrate a paused guest holding SIZE of RAM between two processes over loopback TCP, ' +
        'next to a raw socket copy of the same bytes between two Node processes and, when ' +
        'qemu-system-x86_64 is installed, QEMU migrating the same RAM image; medians of ' +
        'several repetitions',
    )
    .option('--size <size>', 'guest RAM (K, M, G suffixes)', cliParser(ramSize), 1 << 30)
    .option(
      '--channels <n>',
      '1: the main channel alone, without multifd; N > 1 (up to 255): the multifd ' +
        'capability with N multifd-channels on both sides (ours and QEMU), and the raw copy ' +
        'over N sockets in parallel',
      cliParser(channels),
      1,
    )
    .option('--repetitions <n>', 'measured rounds', cliParser(integer(1)), 5)
    .option('--warmup <n>', 'uncounted rounds first', cliParser(integer(0)), 1)
    .option(
      '--pattern <kind>',
      `RAM content: ${RAM_PATTERNS.join(' | ')}`,
      cliParser(pattern),
      'random',
    )
    .option(
      '--prealloc',
      'both destinations back all their RAM first (mem-prealloc, QEMU -mem-prealloc): the ' +
        "migration's own cost, without first-touch page faults",
    )
    .option('--no-qemu', 'do not compare with QEMU even when it is installed')
    .option('--timeout <ms>', 'longest one migration may take', cliParser(integer(1)), 300_000)
    .option('--json', 'print one JSON object')
    .action(async (opts: RamOptions) => {
      const result = await runRamBench({
        sizeBytes: opts.size,
        channels: opts.channels,
        repetitions: opts.repetitions,
        warmup: opts.warmup,
        pattern: opts.pattern,
        prealloc: opts.prealloc === true,
        qemu: opts.qemu,
        timeoutMs: opts.timeout,
        progress: opts.json === true ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(
        opts.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatRamReport(result),
      );
    });
  bench
    .command('downtime')
    .description(
      'live-migrate converging guests (RAM dirtied by vCPUs, devices with pre-copy; a ' +
        'zero-heavy guest; a device with large state) between two processes and compare the ' +
        'downtime with its limit and its ideal (bytes sent while stopped / bandwidth before)',
    )
    .option('--repetitions <n>', 'migrations per scenario', cliParser(integer(1)), 3)
    .option(
      '--scenario <name>',
      `run only these, repeatable: ${DOWNTIME_SCENARIOS.map((s) => s.name).join(', ')}`,
      collectScenario,
    )
    .option('--timeout <ms>', 'longest one migration may take', cliParser(integer(1)), 300_000)
    .option('--json', 'print one JSON object')
    .action(async (opts: DowntimeOptions) => {
      const chosen = opts.scenario ?? DOWNTIME_SCENARIOS.map((s) => s.name);
      const results = await runDowntimeBench({
        scenarios: DOWNTIME_SCENARIOS.filter((s) => chosen.includes(s.name)),
        repetitions: opts.repetitions,
        timeoutMs: opts.timeout,
        progress: opts.json === true ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(
        opts.json === true
          ? `${JSON.stringify({ scenarios: results }, null, 2)}\n`
          : formatDowntimeReport(results),
      );
    });
  registerMultifd(bench);
}

function registerMultifd(bench: Command): void {
  bench
    .command('multifd')
    .description(
      'the downtime of a running guest whose GPUs send all their state during stop-copy, ' +
        'with that state over the multifd channels (x-migration-multifd-transfer=on) and over ' +
        'the main channel (off), for 1, 2 and 4 devices, RAM over multifd in both; where the ' +
        'downtime goes (x-query-downtime on both sides), medians',
    )
    .option(
      '--devices <n>',
      `devices per guest, repeatable (default ${MULTIFD_DEVICE_COUNTS.join(', ')})`,
      collectDevices,
    )
    .option('--state-size <size>', "each device's stop-copy state", cliParser(stateSize), 192 << 20)
    .option('--channels <n>', 'multifd-channels on both sides', cliParser(channels), 4)
    .option('--repetitions <n>', 'migrations per device count and path', cliParser(integer(1)), 3)
    .option('--timeout <ms>', 'longest one migration may take', cliParser(integer(1)), 300_000)
    .option('--json', 'print one JSON object')
    .action(async (opts: MultifdOptions) => {
      const report = await runMultifdDowntimeBench({
        devices: opts.devices ?? MULTIFD_DEVICE_COUNTS,
        stateBytes: opts.stateSize,
        channels: opts.channels,
        repetitions: opts.repetitions,
        timeoutMs: opts.timeout,
        progress: opts.json === true ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(
        opts.json === true
          ? `${JSON.stringify(report, null, 2)}\n`
          : formatMultifdDowntimeReport(report),
      );
    });
}

function collectScenario(value: string, previous: string[] | undefined): string[] {
  if (!DOWNTIME_SCENARIOS.some((s) => s.name === value)) {
    throw new InvalidArgumentError(
      `"${value}" is not one of ${DOWNTIME_SCENARIOS.map((s) => s.name).join(', ')}`,
    );
  }
  return [...(previous ?? []), value];
}
