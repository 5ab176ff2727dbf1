/**
 * Multifd between two processes (qemu-migration.md §4): guest RAM and the state of several
 * devices over 1, 2 and 4 channels next to the main channel, with channels slowed on purpose
 * on either side so that packets of a device arrive out of order and RAM rounds race; every
 * migration ends with the destination's digests equal to the source's at switchover.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import {
  E2e,
  deviceStates,
  digest,
  finished,
  query,
  runStatus,
  setCaps,
  smallGuest,
  waitFor,
} from './harness.ts';

export const MULTIFD_CAPS = { events: true, 'return-path': true, multifd: true };

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

interface MultifdInfo {
  outgoing: { id: number; packets: number }[];
  incoming: {
    id: number;
    packets: number;
    'ram-packets': number;
    'device-state-packets': number;
    syncs: number;
  }[];
}

interface DeviceMultifd {
  packets: number;
  'peak-queued-bytes': number;
  'out-of-order': number;
  'config-loaded': boolean;
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
  const [dst, src] = await Promise.all([
    e.spawn({ name: 'dst', config: dstConfig, incoming: 'defer', paused: true }),
    e.source(config),
  ]);
  for (const vm of [src, dst]) {
    await setCaps(vm, MULTIFD_CAPS);
    await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': channels });
  }
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
  await dst.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
  const address = (await query(dst))['socket-address']?.[0];
  assert.ok(address?.type === 'inet');
  return { src, dst, uri: `tcp:127.0.0.1:${address.port}` };
}

/** Slows every chunk of a channel by `ms`, from its first byte. */
async function slow(vm: VmProcess, side: 'outgoing' | 'incoming', channel: number, ms: number) {
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

async function devicesMultifd(vm: VmProcess): Promise<Record<string, DeviceMultifd>> {
  const info = await vm.qmp.execute<{ devices: { id: string; multifd: DeviceMultifd }[] }>(
    'x-query-vfio',
  );
  return Object.fromEntries(info.devices.map((d) => [d.id, d.multifd]));
}

const RUNNING = { nic0: 'RUNNING', gpu0: 'RUNNING', tty0: 'RUNNING' };

for (const channels of [1, 2, 4]) {
  test(`${channels} multifd channel${channels > 1 ? 's' : ''}, some slowed on purpose: RAM and three devices arrive whole`, async (t) => {
    const e = new E2e(t);
    // Two channels: an ARM guest, whose device configs load after the iterables.
    const config = multifdGuest(channels === 2 ? { target: 'aarch64' } : {});
    const { src, dst, uri } = await multifdPair(e, config, channels);
    await slow(src, 'outgoing', 0, 3);
    if (channels > 1) await slow(dst, 'incoming', channels - 1, 2);
    await src.qmp.execute('migrate', { uri });
    const info = await waitFor(src, finished, 'the end of the migration');
    assert.equal(info.status, 'completed', JSON.stringify(info));
    assert.equal((await waitFor(dst, finished, 'the incoming side')).status, 'completed');
    const [a, b] = await Promise.all([digest(src), digest(dst)]);
    assert.equal(b.ram.sha256, a.ram.sha256, 'guest RAM');
    assert.deepEqual(b.devices, a.devices, 'every device state');

    // RAM and device state went on every channel; the main channel carried little of it.
    const m = await dst.qmp.execute<MultifdInfo>('x-query-multifd');
    assert.equal(m.incoming.length, channels);
    for (const c of m.incoming) {
      assert.ok(c['ram-packets'] > 0, `channel ${c.id} carried RAM`);
      assert.ok(c.syncs >= 2, `channel ${c.id} synced at setup and at the end of a round`);
    }
    assert.ok(m.incoming.some((c) => c['device-state-packets'] > 0));
    const sent = (await src.qmp.execute<MultifdInfo>('x-query-multifd')).outgoing;
    assert.deepEqual(
      sent.map((c) => c.packets),
      m.incoming.map((c) => c.packets + 1),
      'every packet the source wrote (and its handshake) arrived',
    );
    assert.ok((info.ram?.['multifd-bytes'] ?? 0) > (info.ram?.['normal-bytes'] ?? 0));
    const devices = await devicesMultifd(dst);
    assert.ok(devices.gpu0!.packets >= 17, 'over 16 MiB in 1 MiB packets, then the config');
    for (const [id, d] of Object.entries(devices)) {
      assert.ok(d.packets > 0 && d['config-loaded'], `${id} came over multifd`);
    }
    if (channels === 4) {
      assert.ok(devices.gpu0!['out-of-order'] > 0, 'a slow channel reordered the gpu’s packets');
    }
    await dst.qmp.execute('cont');
    assert.equal(await runStatus(dst), 'running');
    assert.deepEqual(await deviceStates(dst), RUNNING);
  });
}
