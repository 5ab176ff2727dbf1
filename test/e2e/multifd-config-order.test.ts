/**
 * When a device's config is loaded on the destination, with its state over multifd
 * (qemu-migration.md §4.5): with the config loaded after the iterables (an ARM guest, or
 * `x-migration-load-config-after-iter=on`) the load thread writes the device data, then waits
 * for DEV_CONFIG_LOAD_READY, which comes in the device's FULL section after every iterable's
 * END section was loaded; without it the config loads as soon as the data is in. The times
 * are x-query-downtime's clock (one process, so one clock): its END spans against the device's
 * load-ready / data-loaded / config-loaded times in x-query-vfio.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import { E2e, digest, finished, waitFor } from './harness.ts';
import { multifdGuest, multifdPair } from './multifd-harness.ts';

interface Span {
  kind: string;
  idstr: string;
  start: number;
  end: number;
}

interface ConfigTimes {
  'config-loaded': boolean;
  'load-ready-at': number | null;
  'data-loaded-at': number | null;
  'config-loaded-at': number | null;
}

/** A multifd migration (the main channel slowed on the destination), completed and equal. */
async function migrate(e: E2e, config: Record<string, unknown>) {
  const { src, dst, uri } = await multifdPair(e, config, 2);
  // The iterables' END sections come late on the main channel; the packets do not wait.
  await dst.qmp.execute('x-inject-fault', {
    type: 'channel',
    side: 'incoming',
    action: 'delay',
    direction: 'in',
    ms: 5,
    bytes: 0,
  });
  await src.qmp.execute('migrate', { uri });
  assert.equal((await waitFor(src, finished, 'the migration')).status, 'completed');
  assert.equal((await waitFor(dst, finished, 'the incoming side')).status, 'completed');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.deepEqual(b.devices, a.devices, 'every device state');
  return { src, dst };
}

/** The last END section loaded on the destination, and each device's config times. */
async function loadOrder(dst: VmProcess) {
  const downtime = await dst.qmp.execute<{ incoming: { spans: Span[] } }>('x-query-downtime');
  const ends = downtime.incoming.spans.filter((s) => s.kind === 'iterable');
  assert.ok(
    ends.some((s) => s.idstr === 'ram'),
    'RAM’s END section was loaded',
  );
  const lastEnd = Math.max(...ends.map((s) => s.end));
  const vfio = await dst.qmp.execute<{ devices: { id: string; multifd: ConfigTimes }[] }>(
    'x-query-vfio',
  );
  return { lastEnd, devices: Object.fromEntries(vfio.devices.map((d) => [d.id, d.multifd])) };
}

function assertAfterIterables(id: string, d: ConfigTimes, lastEnd: number): void {
  assert.ok(d['config-loaded'], `${id}: config loaded`);
  const ready = d['load-ready-at'];
  const config = d['config-loaded-at'];
  assert.ok(ready !== null && config !== null, `${id}: DEV_CONFIG_LOAD_READY came`);
  assert.ok(
    ready >= lastEnd,
    `${id}: DEV_CONFIG_LOAD_READY ${ready} after the last END ${lastEnd}`,
  );
  assert.ok(config > lastEnd, `${id}: config loaded at ${config}, the last END at ${lastEnd}`);
  assert.ok(config >= ready && config >= d['data-loaded-at']!, `${id}: config after its data`);
}

test('an ARM guest over multifd: every device config loads after all iterables were loaded', async (t) => {
  const e = new E2e(t);
  const { dst } = await migrate(e, multifdGuest({ target: 'aarch64' }));
  const { lastEnd, devices } = await loadOrder(dst);
  for (const [id, d] of Object.entries(devices)) assertAfterIterables(id, d, lastEnd);
});

test('x-migration-load-config-after-iter on for some devices: they wait for the iterables, the others load with their data', async (t) => {
  const e = new E2e(t);
  const guest = multifdGuest();
  const devices = (guest.devices as Record<string, unknown>[]).map((d) =>
    d.id === 'gpu0' ? d : { ...d, 'x-migration-load-config-after-iter': 'on' },
  );
  const { dst } = await migrate(e, { ...guest, devices });
  const { lastEnd, devices: order } = await loadOrder(dst);
  t.diagnostic(
    Object.entries(order)
      .map(
        ([id, d]) =>
          `${id}: config ${(d['config-loaded-at']! - lastEnd).toFixed(1)} ms after the last END`,
      )
      .join(', '),
  );
  assertAfterIterables('nic0', order.nic0!, lastEnd);
  assertAfterIterables('tty0', order.tty0!, lastEnd);
  // x86, auto: no DEV_CONFIG_LOAD_READY; the config came right behind the data.
  const gpu = order.gpu0!;
  assert.ok(gpu['config-loaded']);
  assert.equal(gpu['load-ready-at'], null);
  assert.ok(gpu['config-loaded-at']! >= gpu['data-loaded-at']!);
});
