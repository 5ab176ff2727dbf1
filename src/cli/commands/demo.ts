/** `vfio-migrate demo`: the project's main job, a verified live migration between two processes. */
import type { Command } from 'commander';
import { parseSize, parseSimSpec } from '../../device/sim/index.ts';
import { DEFAULT_DEVICES, runDemo } from '../demo/index.ts';
import type { DemoOptions } from '../demo/index.ts';
import { cliParser } from '../parse.ts';

function nonNegative(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`"${text}" is not a number >= 0`);
  return n;
}

/** A repeatable --device: each spec checked as it is given. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), cliParser((t) => (parseSimSpec(t), t))(value)];
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'live-migrate a running guest (vCPUs dirtying RAM, a NIC and a GPU doing DMA) from a ' +
        'source to a destination process over loopback TCP, with live progress, QEMU-style ' +
        'statistics and a digest check that nothing was lost; exits 0 only when verified',
    )
    .option(
      '--memory <size>',
      'guest RAM',
      cliParser((t) => (parseSize(t), t)),
      '1G',
    )
    .option('--vcpus <n>', 'vCPU threads', cliParser(nonNegative), 2)
    .option(
      '--dirty-rate <MiB/s>',
      'guest page writes per second, all vCPUs',
      cliParser(nonNegative),
      96,
    )
    .option('--pattern <kind>', 'uniform | hot | sequential', cliParser(pattern), 'hot')
    .option(
      '--hot-size <size>',
      'hot set size for --pattern hot',
      cliParser((t) => (parseSize(t), t)),
      '256M',
    )
    .option(
      '--device <spec>',
      `a device, repeatable (default: ${DEFAULT_DEVICES.join(' ')})`,
      collect,
    )
    .option(
      '--downtime-limit <ms>',
      'migration parameter downtime-limit',
      cliParser(nonNegative),
      300,
    )
    .option(
      '--max-bandwidth <MiB/s>',
      'migration parameter max-bandwidth, 0 = unlimited',
      cliParser(nonNegative),
      0,
    )
    .option('--switchover-ack', 'enable the switchover-ack capability on both sides')
    .option(
      '--warmup <ms>',
      'how long the guest runs before the migration',
      cliParser(nonNegative),
      1000,
    )
    .option(
      '--timeout <ms>',
      'cancel the migration if it has not finished by then',
      cliParser(nonNegative),
      60_000,
    )
    .option(
      '--json',
      'print one JSON object: status, verified, totalTimeMs, downtimeMs, devices, ...',
    )
    .action(
      async (
        opts: Omit<DemoOptions, 'device' | 'switchoverAck' | 'json'> & {
          device?: string[];
          switchoverAck?: boolean;
          json?: boolean;
        },
      ) => {
        const result = await runDemo({
          ...opts,
          device: opts.device ?? DEFAULT_DEVICES,
          switchoverAck: opts.switchoverAck ?? false,
          json: opts.json ?? false,
        });
        if (!result.verified) process.exitCode = 1;
      },
    );
}

function pattern(text: string): DemoOptions['pattern'] {
  if (text === 'uniform' || text === 'hot' || text === 'sequential') return text;
  throw new Error(`"${text}" is not one of uniform, hot, sequential`);
}
