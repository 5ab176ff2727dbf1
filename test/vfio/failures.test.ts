/**
 * Failure paths (qemu-migration.md §3.2–§3.3, vfio-uapi.md §10 failure policy): a failed arc
 * recovered, a reset when recovery fails, errors of VM-state handlers reaching the VM stop's
 * caller with the device and transition named, the notifier putting devices back to RUNNING,
 * "data_fd out of sync" after an asynchronous reset, and failing reads and setups.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { MigState, VfioError, isVfioError, stateName } from '../../src/uapi/index.ts';
import { VfioSetStateError } from '../../src/vfio/index.ts';
import { capture, loadCtx, mig, overriding, saveCtx, simDevice, testVm } from './helpers.ts';

const states = (log: readonly { deviceState: number }[]) =>
  log.map((e) => stateName(e.deviceState));

test('a failed arc with a working recovery: the recovery state is recorded and the error says so', async () => {
  const dev = simDevice('nic', 7, 'nic0');
  const vm = await testVm({ devices: [{ device: dev, properties: 'migration-events=on' }] });
  const m = mig(vm, 'nic0');
  dev.faults.failArc({ reaching: MigState.PRE_COPY, errno: 'EIO' });
  await assert.rejects(
    capture((f) => m.saveSetup(f, saveCtx())),
    (err: unknown) => {
      assert.ok(err instanceof VfioSetStateError);
      assert.equal(err.outcome, 'recovered');
      assert.equal(err.code, 'EIO');
      assert.match(
        err.message,
        /^nic0: failed setting device state RUNNING -> PRE_COPY: EIO: .*; recovered to RUNNING$/,
      );
      return true;
    },
  );
  assert.equal(dev.state, MigState.RUNNING);
  assert.deepEqual(states(m.stateLog), ['RUNNING', 'RUNNING']);
  assert.deepEqual(
    vm.events.map((e) => e['device-state']),
    ['running'],
    'the recovery state is announced',
  );
});

test('recovery fails too: the device is reset and recorded RUNNING', async () => {
  const dev = simDevice('nic', 1, 'nic0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  assert.deepEqual(await vm.runControl.vmStop(RunState.FINISH_MIGRATE), []);
  assert.equal(dev.state, MigState.STOP);
  // STOP -> STOP_COPY drops the device to ERROR, from where STOP cannot be set either.
  dev.faults.failArc({ reaching: MigState.STOP_COPY, toError: true });
  await assert.rejects(
    capture((f) => m.saveComplete(f)),
    (err: unknown) => {
      assert.ok(err instanceof VfioSetStateError);
      assert.equal(err.outcome, 'reset');
      assert.match(
        err.message,
        /STOP -> STOP_COPY: EIO: .*; recovery to STOP failed too \(EINVAL: .*\): device reset, now RUNNING$/,
      );
      return true;
    },
  );
  assert.equal(dev.state, MigState.RUNNING);
  assert.deepEqual(states(m.stateLog), ['RUNNING', 'STOP', 'RUNNING']);
});

test('a VM-state handler failure reaches vmStop, naming the device and both transitions', async () => {
  const dev = simDevice('nic', 7, 'nic0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  dev.faults.failArc({ reaching: MigState.STOP_COPY });
  const failures = await vm.runControl.vmStop(RunState.FINISH_MIGRATE);
  assert.equal(failures.length, 1);
  assert.equal(failures[0]!.name, 'vfio nic0');
  assert.equal(failures[0]!.phase, 'handler');
  assert.match(
    String(failures[0]!.error),
    /vfio nic0: VM stop \(finish-migrate\): nic0: failed setting device state PRE_COPY_P2P -> STOP_COPY: EIO: .*recover state is ERROR: device reset, now RUNNING/,
  );
  assert.equal(dev.state, MigState.RUNNING);
  assert.equal(m.state.current, MigState.RUNNING);
});

test('the migration notifier puts devices back to RUNNING after a failed migration, paused or not', async () => {
  const a = simDevice('nic', 7, 'nic0');
  const b = simDevice('mtty', 3, 'tty0');
  const vm = await testVm({ devices: [{ device: a }, { device: b }] });
  for (const id of ['nic0', 'tty0']) await capture((f) => mig(vm, id).saveSetup(f, saveCtx()));
  assert.equal(a.state, MigState.PRE_COPY);
  // The migration failed in pre-copy (cleanup first, §3.3), while the guest was paused by hand.
  await vm.runControl.vmStop(RunState.PAUSED);
  assert.deepEqual([a.state, b.state], [MigState.STOP_COPY, MigState.STOP]);
  for (const id of ['nic0', 'tty0']) await mig(vm, id).saveCleanup();
  assert.equal(a.state, MigState.STOP, 'cleanup leaves STOP_COPY');
  assert.deepEqual(await vm.notifiers.notify('precopy-done'), []);
  assert.equal(a.state, MigState.STOP, 'only a failure moves the devices');
  assert.deepEqual(await vm.notifiers.notify('precopy-failed'), []);
  assert.deepEqual([a.state, b.state], [MigState.RUNNING, MigState.RUNNING]);
  assert.equal(mig(vm, 'nic0').state.dataFd, null);
});

test('a notifier that cannot reach RUNNING resets the device and reports a warning', async () => {
  const dev = simDevice('nic', 7, 'nic0');
  const vm = await testVm({ devices: [{ device: dev }] });
  await capture((f) => mig(vm, 'nic0').saveSetup(f, saveCtx()));
  dev.faults.failArc({ reaching: MigState.RUNNING, toError: true });
  assert.deepEqual(await vm.notifiers.notify('precopy-failed'), [], 'the notifier never fails');
  assert.equal(dev.state, MigState.RUNNING);
  assert.equal(vm.warnings.length, 1);
  assert.match(vm.warnings[0]!, /back to RUNNING .*PRE_COPY -> RUNNING: EIO.*device reset/);
});

test('an asynchronous reset shows up as "data_fd out of sync" (EBADF) at the next fd', async () => {
  const dev = simDevice('nic', 7, 'nic0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  const held = m.state.dataFd;
  await dev.reset(); // e.g. a PCI reset: the device is RUNNING and our fd is dead
  const failures = await vm.runControl.vmStop(RunState.FINISH_MIGRATE);
  assert.equal(failures[0]!.phase, 'prepare');
  const err = (failures[0]!.error as Error).cause;
  assert.ok(isVfioError(err, 'EBADF'), String(err));
  assert.equal(err.message, 'EBADF: nic0: data_fd out of sync');
  assert.equal(m.state.dataFd, held, 'the fd held is kept until cleanup');
  await m.saveCleanup();
  assert.equal(m.state.dataFd, null);
});

test('a read failing with anything but ENOMSG fails the iteration', async () => {
  const dev = simDevice('nic', 7, 'nic0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  await dev.reset(); // the session is disabled: ENODEV
  await assert.rejects(
    capture((f) => m.saveLiveIterate(f)),
    /^Error: nic0: reading the device data failed: ENODEV/,
  );
});

test('setup refuses a device in a state it cannot migrate from, and a 0-byte stop-copy size', async () => {
  const dst = await testVm({
    devices: [{ device: simDevice('nic', 7, 'nic0') }],
    initial: RunState.INMIGRATE,
  });
  const d = mig(dst, 'nic0');
  await d.loadSetup(loadCtx());
  await assert.rejects(
    capture((f) => d.saveSetup(f, saveCtx())),
    (err: unknown) =>
      isVfioError(err, 'EINVAL') && /Invalid device state RESUMING/.test(err.message),
  );

  const empty = overriding(simDevice('nic', 7, 'nic1'), { stopCopySize: () => Promise.resolve(0) });
  const vm = await testVm({ devices: [{ device: empty }] });
  await assert.rejects(
    capture((f) => mig(vm, 'nic1').saveSetup(f, saveCtx())),
    (err: unknown) =>
      isVfioError(err, 'ENOMEM') && /Failed to allocate migration data buffer/.test(err.message),
  );
});

test('a reset that fails is fatal and says so', async () => {
  const sim = simDevice('nic', 7, 'nic0');
  const dev = overriding(sim, {
    reset: () => Promise.reject(new VfioError('EIO', 'reset refused')),
  });
  const vm = await testVm({ devices: [{ device: dev }] });
  sim.faults.failArc({ reaching: MigState.RUNNING_P2P, toError: true });
  const failures = await vm.runControl.vmStop(RunState.PAUSED);
  assert.equal(failures[0]!.phase, 'prepare');
  assert.match(
    String(failures[0]!.error),
    /RUNNING -> RUNNING_P2P \(EIO: .*\), then failed resetting the device: EIO: reset refused/,
  );
});

test('save cleanup reports a failed STOP_COPY -> STOP and still closes the fd', async () => {
  const dev = simDevice('nic', 1, 'nic0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'nic0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  await vm.runControl.vmStop(RunState.FINISH_MIGRATE);
  await capture((f) => m.saveComplete(f));
  dev.faults.failArc({ reaching: MigState.STOP });
  await m.saveCleanup();
  assert.equal(m.state.dataFd, null);
  assert.equal(m.state.current, MigState.RUNNING, 'recover state ERROR: reset');
  assert.match(vm.warnings[0]!, /STOP_COPY -> STOP: EIO/);
});

test('a destination started without any data: each device refuses RESUMING -> STOP and is reset', async () => {
  const vm = await testVm({
    devices: [{ device: simDevice('nic', 3, 'nic0') }, { device: simDevice('gpu', 1, 'gpu0') }],
    initial: RunState.INMIGRATE,
  });
  for (const id of ['nic0', 'gpu0']) await mig(vm, id).loadSetup(loadCtx());
  const failures = await vm.runControl.vmStart();
  assert.deepEqual(
    failures.map((f) => [f.name, f.phase]),
    [
      ['vfio nic0', 'prepare'],
      ['vfio gpu0', 'handler'],
    ],
  );
  assert.match(String(failures[0]!.error), /VM start: nic0: .*RESUMING -> RUNNING_P2P: EINVAL/);
  assert.match(String(failures[1]!.error), /VM start: gpu0: .*RESUMING -> RUNNING: EINVAL/);
  assert.deepEqual(
    ['nic0', 'gpu0'].map((id) => stateName(mig(vm, id).state.current)),
    ['RUNNING', 'RUNNING'],
  );
});
