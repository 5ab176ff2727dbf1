/**
 * What the multifd end-to-end tests share (qemu-migration.md §4): the capabilities, a guest
 * whose devices all send their state over multifd, a pair of processes with the destination
 * waiting (`-incoming defer`) so that multifd is set before it listens, as QEMU requires, and
 * the per-device multifd figures of x-query-vfio.
 */
import { listenIncoming } from '../../src/cli/incoming.ts';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import { CAPS, setCaps, smallGuest } from './harness.ts';
import type { E2e } from './harness.ts';

export const MULTIFD_CAPS = { ...CAPS, multifd: true };

/** A guest with a nic, a gpu whose 16 MiB go in stop-copy, and an mtty. */
export function multifdGuest(over: Record<string, unknown> = {}): Record<string, unknown> {
  return smallGuest({
    devices: [
      { id: 'nic0', model: 'sim:nic,state-size=2M,chunk-size=16K,dma-rate=2M' },
      { id: 'gpu0', model: 'sim:gpu,state-size=16M,dirty-rate=8M,flags=stop-copy+p2p' },
      { id: 'tty0', model: 'sim:mtty,flags=stop-copy+p2p' },
    ],
    ...over,
  });
}

export const MULTIFD_RUNNING = { nic0: 'RUNNING', gpu0: 'RUNNING', tty0: 'RUNNING' };

/** Multifd on with `channels` channels (and `extra` capabilities) on one process. */
export async function setMultifd(
  vm: VmProcess,
  channels: number,
  extra: Record<string, boolean> = {},
): Promise<void> {
  await setCaps(vm, { ...MULTIFD_CAPS, ...extra });
  await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': channels });
}

/** A paused destination waiting with multifd on; its listening URI. */
export async function multifdDestination(
  e: E2e,
  config: Record<string, unknown>,
  channels: number,
  name = 'dst',
): Promise<{ dst: VmProcess; uri: string }> {
  const dst = await e.spawn({ name, config, incoming: 'defer', paused: true });
  await setMultifd(dst, channels);
  return { dst, uri: await listenIncoming(dst.qmp) };
}

/**
 * A destination waiting (`-incoming defer`) with multifd set before it listens, as QEMU
 * requires, and a source; both with `channels` channels.
 */
export async function multifdPair(
  e: E2e,
  config: Record<string, unknown>,
  channels: number,
  dstConfig: Record<string, unknown> = config,
): Promise<{ src: VmProcess; dst: VmProcess; uri: string }> {
  const [{ dst, uri }, src] = await Promise.all([
    multifdDestination(e, dstConfig, channels),
    e.source(config),
  ]);
  await setMultifd(src, channels);
  // These tests are about what the channels carry, not the downtime. A device whose state is
  // all stop-copy converges only once bandwidth x downtime-limit covers it; on a loaded machine
  // the bandwidth measured after RAM converged (SYNC packets, little else) can stay below what
  // 300 ms needs for tens of MiB, and the migration would iterate until the test's timeout.
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0, 'downtime-limit': 5000 });
  return { src, dst, uri };
}

/** Slows every chunk of a channel by `ms`, from its first byte. */
export async function slowChannel(
  vm: VmProcess,
  side: 'outgoing' | 'incoming',
  channel: number,
  ms: number,
): Promise<void> {
  await vm.qmp.execute('x-inject-fault', {
    type: 'channel',
    side,
    channel,
    action: 'delay',
    direction: side === 'outgoing' ? 'out' : 'in',
    ms,
    bytes: 0,
  });
}

/** A device's incoming multifd transfer, as x-query-vfio shows it. */
export interface DeviceMultifd {
  packets: number;
  'peak-queued-bytes': number;
  'out-of-order': number;
  'config-loaded': boolean;
}

export async function devicesMultifd(vm: VmProcess): Promise<Record<string, DeviceMultifd>> {
  const info = await vm.qmp.execute<{ devices: { id: string; multifd: DeviceMultifd }[] }>(
    'x-query-vfio',
  );
  return Object.fromEntries(info.devices.map((d) => [d.id, d.multifd]));
}
