/** What the demo migrates: its options, and the VM config both processes are built from. */
import { parseSize } from '../../device/sim/index.ts';
import type { HostIommuMode } from '../../memory/iommu/index.ts';

export interface DemoOptions {
  memory: string;
  vcpus: number;
  /** MiB/s of guest page writes. */
  dirtyRate: number;
  pattern: 'uniform' | 'hot' | 'sequential';
  hotSize: string;
  /** Device specs, `sim:MODEL[,key=value...]`. */
  device: string[];
  /** ms. */
  downtimeLimit: number;
  /** MiB/s, 0 = unlimited. */
  maxBandwidth: number;
  switchoverAck: boolean;
  /** The host IOMMU's dirty tracking (VM config `iommu`). */
  iommu: HostIommuMode;
  /** A guest IOMMU whose driver remaps DMA windows during the migration. */
  viommu: boolean;
  /** vfio-pci properties for every device, `name=value`. */
  deviceProperty: string[];
  /** ms the guest runs before the migration starts. */
  warmup: number;
  /** ms before the demo gives up and cancels. */
  timeout: number;
  /** Multifd with this many channels (RAM and device state beside the main channel), or off. */
  multifd: number | null;
  json: boolean;
}

export const DEFAULT_DEVICES = [
  'sim:nic,state-size=16M,dirty-rate=2M,dma-rate=4M',
  'sim:gpu,state-size=256M,dirty-rate=8M,dma-rate=8M',
];

/** The VM config of the demo guest; ids follow the device models (nic0, gpu0, ...). */
export function demoVmConfig(o: DemoOptions): Record<string, unknown> {
  const counts = new Map<string, number>();
  const devices = o.device.map((model) => {
    const kind = /^sim:([a-z]+)/.exec(model)?.[1] ?? 'dev';
    const n = counts.get(kind) ?? 0;
    counts.set(kind, n + 1);
    return {
      id: `${kind}${n}`,
      model,
      'migration-events': true,
      // Device logging behind a vIOMMU is a blocker: let the IOMMU track instead.
      ...(o.viommu ? { 'x-device-dirty-page-tracking': 'off' } : {}),
      ...Object.fromEntries(
        o.deviceProperty.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
      ),
    };
  });
  return {
    name: 'demo',
    memory: parseSize(o.memory),
    vcpus: o.vcpus,
    workload: {
      'dirty-rate': o.dirtyRate,
      pattern: o.pattern,
      ...(o.pattern === 'hot' ? { 'hot-size': o.hotSize } : {}),
      'zero-share': 0.1,
      seed: 7,
    },
    populate: { seed: 1, 'zero-share': 0.3 },
    iommu: o.iommu,
    viommu: o.viommu,
    devices,
  };
}
