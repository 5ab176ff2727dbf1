/** `vfio-migrate demo`: the project's main job, a verified live migration between two processes. */
import type { Command } from 'commander';
import { parseSize, parseSimSpec } from '../../device/sim/index.ts';
import { HOST_IOMMU_MODES } from '../../memory/iommu/index.ts';
import type { HostIommuMode } from '../../memory/iommu/index.ts';
import { parseVfioPciProperties } from '../../vfio/index.ts';
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
      64,
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
      '--iommu <mode>',
      `host IOMMU dirty tracking: ${HOST_IOMMU_MODES.join(' | ')}`,
      cliParser(iommuMode),
      'type1-perpetual',
    )
    .option('--viommu', 'a guest IOMMU remapping DMA windows (devices DMA through it)')
    .option(
      '--device-property <name=value>',
      'a vfio-pci property for every device, repeatable (e.g. enable-migration=on)',
      collectProperty,
    )
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
      '--multifd [channels]',
      'migrate with the multifd capability: RAM and device state (x-migration-multifd-transfer ' +
        'auto) over this many channels beside the main one (1-255, default 2); the summary ' +
        'shows what each channel carried',
      cliParser(multifdChannels),
    )
    .option(
      '--json',
      'print one JSON object: status, verified, totalTimeMs, downtimeMs, devices, ...',
    )
    .action(
      async (
        opts: Omit<
          DemoOptions,
          'device' | 'switchoverAck' | 'json' | 'viommu' | 'deviceProperty' | 'multifd'
        > & {
          multifd?: number | true;
          device?: string[];
          switchoverAck?: boolean;
          json?: boolean;
          viommu?: boolean;
          deviceProperty?: string[];
        },
      ) => {
        const result = await runDemo({
          ...opts,
          device: opts.device ?? DEFAULT_DEVICES,
          switchoverAck: opts.switchoverAck ?? false,
          viommu: opts.viommu ?? false,
          deviceProperty: opts.deviceProperty ?? [],
          multifd: opts.multifd === true ? DEFAULT_MULTIFD_CHANNELS : (opts.multifd ?? null),
          json: opts.json ?? false,
        });
        if (!result.verified) process.exitCode = 1;
      },
    );
}

/** multifd-channels' default (QEMU's). */
const DEFAULT_MULTIFD_CHANNELS = 2;

function multifdChannels(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 255) {
    throw new Error(`"${text}" is not a channel count from 1 to 255`);
  }
  return n;
}

function iommuMode(text: string): HostIommuMode {
  const mode = HOST_IOMMU_MODES.find((m) => m === text);
  if (mode === undefined) throw new Error(`"${text}" is not one of ${HOST_IOMMU_MODES.join(', ')}`);
  return mode;
}

/** A repeatable --device-property, checked against vfio-pci's properties as it is given. */
function collectProperty(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), cliParser((t) => (parseVfioPciProperties(t), t))(value)];
}

function pattern(text: string): DemoOptions['pattern'] {
  if (text === 'uniform' || text === 'hot' || text === 'sequential') return text;
  throw new Error(`"${text}" is not one of uniform, hot, sequential`);
}
