/**
 * The P2P rule of qemu-migration.md §3.2: with several P2P devices, every device reaches a
 * *_P2P state before any device reaches STOP, STOP_COPY or RUNNING — when the source stops,
 * when the destination starts, and when a source restarts after a failed migration.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { MigState, stateName } from '../../src/uapi/index.ts';
import type { ModelName, TestVm } from './helpers.ts';
import type { SimDevice } from '../../src/device/sim/index.ts';
import { capture, mig, migrate, saveCtx, simDevice, testVm } from './helpers.ts';

const P2P_STATES: readonly number[] = [MigState.RUNNING_P2P, MigState.PRE_COPY_P2P];
const FINAL_STATES: readonly number[] = [MigState.STOP, MigState.STOP_COPY, MigState.RUNNING];

/** Asserts the P2P rule over the two states per device recorded from `from` on. */
function assertAllP2pFirst(vm: TestVm, from: number, ids: readonly string[]): void {
  const seq = vm.order.slice(from, from + ids.length * 2);
  const label = seq.map((e) => `${e.device}:${stateName(e.state)}`).join(' ');
  const firstFinal = seq.findIndex((e) => FINAL_STATES.includes(e.state));
  assert.ok(firstFinal > 0, `a final state was reached: ${label}`);
  for (const id of ids) {
    const p2p = seq.findIndex((e) => e.device === id && P2P_STATES.includes(e.state));
    assert.ok(p2p >= 0 && p2p < firstFinal, `${id} was P2P-quiesced before any stop: ${label}`);
  }
  assert.equal(seq.length, ids.length * 2, `two states per device: ${label}`);
  assert.deepEqual(new Set(seq.map((e) => e.device)), new Set(ids), `all devices: ${label}`);
}

const SETS: { label: string; devices: [ModelName, number][] }[] = [
  {
    label: 'two devices',
    devices: [
      ['nic', 7],
      ['gpu', 3],
    ],
  },
  {
    label: 'three devices',
    devices: [
      ['nic', 7],
      ['mtty', 7],
      ['gpu', 3],
    ],
  },
];

for (const { label, devices } of SETS) {
  const ids = devices.map(([model], i) => `${model}${i}`);
  const make = (seed: number) =>
    devices.map(([model, flags], i) => ({
      device: simDevice(model, flags, ids[i]!, `,seed=${seed + i}`),
    }));

  test(`${label}: every device is *_P2P before any stops, and before any runs again`, async () => {
    const vm = await testVm({ devices: make(1) });
    for (const id of ids) await capture((f) => mig(vm, id).saveSetup(f, saveCtx()));
    let mark = vm.order.length;
    assert.deepEqual(await vm.runControl.vmStop(RunState.FINISH_MIGRATE), []);
    assertAllP2pFirst(vm, mark, ids);
    assert.deepEqual(
      ids.map((id) => stateName(mig(vm, id).state.current)),
      devices.map(([, flags]) => (flags & 4 ? 'STOP_COPY' : 'STOP')),
    );
    // The migration failed: cleanup, then the VM runs again.
    for (const id of ids) await mig(vm, id).saveCleanup();
    mark = vm.order.length;
    assert.deepEqual(await vm.runControl.vmStart(), []);
    assertAllP2pFirst(vm, mark, ids);
  });

  test(`${label}: migrated, the destination has every device RUNNING_P2P before any RUNNING`, async () => {
    const src = await testVm({ devices: make(1) });
    const dst = await testVm({ devices: make(9), initial: RunState.INMIGRATE });
    await migrate(src, dst, {
      activity: () => src.set.devices.forEach((d) => (d.device as SimDevice).advance(2)),
    });
    const lastResuming = dst.order.findLastIndex((e) => e.state === MigState.RESUMING);
    assertAllP2pFirst(dst, lastResuming + 1, ids);
    const stop = src.order.findIndex((e) => P2P_STATES.includes(e.state));
    assertAllP2pFirst(src, stop, ids);
  });
}

test('handler priority follows the PCI depth: a device behind a bridge starts after, stops before', async () => {
  const vm = await testVm({
    devices: [
      { device: simDevice('nic', 3, 'deep'), addr: '0000:00:1c.0:00.0' },
      { device: simDevice('nic', 3, 'root'), addr: '0000:00:05.0' },
    ],
  });
  let mark = vm.order.length;
  await vm.runControl.vmStop(RunState.PAUSED);
  assert.deepEqual(
    vm.order.slice(mark).map((e) => `${e.device}:${stateName(e.state)}`),
    ['deep:RUNNING_P2P', 'root:RUNNING_P2P', 'deep:STOP', 'root:STOP'],
  );
  mark = vm.order.length;
  await vm.runControl.vmStart();
  assert.deepEqual(
    vm.order.slice(mark).map((e) => `${e.device}:${stateName(e.state)}`),
    ['root:RUNNING_P2P', 'deep:RUNNING_P2P', 'root:RUNNING', 'deep:RUNNING'],
  );
});
