/**
 * Data fd rules (vfio-uapi.md §6, §8, §11): ENODEV after the session ends, ESPIPE for
 * positional I/O, EBADF for the wrong direction or a closed fd, ENOTTY for PRECOPY_INFO on a
 * resuming fd, ENOMSG at a temporary end, 0 forever at the end of STOP_COPY, PRECOPY_INFO
 * checks and counters, reset from every state, close.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isVfioError,
  LEGAL_FLAG_SETS,
  MigState,
  reachableStates,
  stateName,
  VFIO_MIGRATION_PRE_COPY,
} from '../../../src/uapi/index.ts';
import { createSimDevice } from '../../../src/device/sim/index.ts';
import { drain, driveTo, everyConfig, makeDevice, MODELS, rejectsWith } from './helpers.ts';

const PRE_COPY_FLAG_SETS = LEGAL_FLAG_SETS.filter((f) => f & VFIO_MIGRATION_PRE_COPY);

for (const { model, flags, label } of everyConfig()) {
  test(`${label}: saving fd errno rules and STOP_COPY end`, async () => {
    const dev = makeDevice(model, flags);
    const fd = (await dev.setState(MigState.STOP_COPY))!;
    const buf = new Uint8Array(4096);
    await rejectsWith(fd.pread(buf, 0), 'ESPIPE', 'pread');
    await rejectsWith(fd.pwrite(buf, 0), 'ESPIPE', 'pwrite');
    await rejectsWith(fd.write(buf), 'EBADF', 'write on a saving fd');
    await rejectsWith(fd.precopyInfo(), 'EINVAL', 'PRECOPY_INFO in STOP_COPY');
    const total = (await drain(fd, 1000)).reduce((a, p) => a + p.length, 0);
    assert.equal(total, dev.model.fullStateBytes(), 'STOP_COPY from STOP streams the full state');
    for (let i = 0; i < 3; i++)
      assert.equal(await fd.read(buf), 0, 'end of STOP_COPY is 0 forever');
    assert.equal(await dev.stopCopySize(), 0, 'nothing left to produce');
    await dev.setState(MigState.STOP);
    await rejectsWith(fd.read(buf), 'ENODEV', 'read after STOP_COPY -> STOP');
    await rejectsWith(fd.pread(buf, 0), 'ESPIPE', 'pread on a disabled fd');
    fd.close();
    await rejectsWith(fd.read(buf), 'EBADF', 'read after close');
    await rejectsWith(fd.pread(buf, 0), 'EBADF', 'pread after close');
    assert.equal(await dev.getState(), MigState.STOP, 'closing an fd does not change the state');
  });

  test(`${label}: resuming fd errno rules`, async () => {
    const dev = makeDevice(model, flags);
    await dev.setState(MigState.STOP);
    const fd = (await dev.setState(MigState.RESUMING))!;
    assert.equal(fd.kind, 'resuming');
    await rejectsWith(fd.read(new Uint8Array(8)), 'EBADF', 'read on a resuming fd');
    await rejectsWith(fd.precopyInfo(), 'ENOTTY', 'PRECOPY_INFO on a resuming fd');
    await rejectsWith(fd.pwrite(new Uint8Array(8), 0), 'ESPIPE', 'pwrite');
    await rejectsWith(
      dev.setState(MigState.STOP),
      'EINVAL',
      'RESUMING -> STOP with nothing written',
    );
    assert.equal(await dev.getState(), MigState.RESUMING, 'a refused load stays in RESUMING');
    await dev.reset();
    assert.equal(await dev.getState(), MigState.RUNNING);
    await rejectsWith(fd.write(new Uint8Array(8)), 'ENODEV', 'write after reset');
  });

  test(`${label}: reset from every state lands in RUNNING with every fd disabled`, async () => {
    for (const from of reachableStates(flags)) {
      const dev = makeDevice(model, flags);
      const powerOn = await dev.stateDigest();
      dev.advance(50);
      const fd = await driveTo(dev, from);
      await dev.dmaLogging.start([{ iova: 0n, length: 1n << 20n }], 4096n).catch(() => undefined);
      await dev.reset();
      assert.equal(await dev.getState(), MigState.RUNNING, `reset from ${stateName(from)}`);
      assert.equal(await dev.stateDigest(), powerOn, 'internal state back to power-on contents');
      if (fd?.kind === 'saving')
        await rejectsWith(fd.read(new Uint8Array(8)), 'ENODEV', 'after reset');
      if (fd?.kind === 'resuming')
        await rejectsWith(fd.write(new Uint8Array(8)), 'ENODEV', 'after reset');
      if (dev.model.dmaLogging === 'tracking') {
        await rejectsWith(
          dev.dmaLogging.report(0n, 4096n, 4096n, new Uint8Array(8)),
          'EINVAL',
          'logging stopped',
        );
      }
    }
  });
}

for (const model of MODELS) {
  for (const flags of PRE_COPY_FLAG_SETS) {
    test(`${model} ${flags}: PRE_COPY reads, ENOMSG, PRECOPY_INFO counters`, async () => {
      const dev = makeDevice(model, flags);
      const fd = (await dev.setState(MigState.PRE_COPY))!;
      await rejectsWith(fd.precopyInfo(23), 'EINVAL', 'argsz < 24');
      const first = await fd.precopyInfo(24, 0xabc);
      assert.equal(first.flags, 0xabc, 'v1 echoes the caller flags');
      assert.equal(first.argsz, 24);
      assert.ok(first.initialBytes > 0, 'initial bytes start non-zero');
      assert.equal(first.dirtyBytes, 0, 'dirty bytes start at 0');
      let lastInitial = first.initialBytes;
      let sawDirty = false;
      const buf = new Uint8Array(5000);
      for (let i = 0; i < 300; i++) {
        dev.advance(2);
        const info = await fd.precopyInfo();
        assert.ok(info.initialBytes <= lastInitial, 'initial_bytes never rises');
        lastInitial = info.initialBytes;
        if (info.dirtyBytes > 0) sawDirty = true;
        try {
          const n = await fd.read(buf);
          assert.ok(n > 0);
          assert.ok(info.initialBytes + info.dirtyBytes > 0, 'data was announced');
          const after = await fd.precopyInfo();
          assert.equal(
            after.initialBytes + after.dirtyBytes,
            info.initialBytes + info.dirtyBytes - n,
            'counters fall by what was read',
          );
        } catch (err) {
          assert.ok(isVfioError(err, 'ENOMSG'), String(err));
          assert.equal(
            info.initialBytes + info.dirtyBytes,
            0,
            'ENOMSG only when both counters are 0',
          );
        }
      }
      assert.equal(lastInitial, 0, 'the initial data was read');
      if (model !== 'mtty') assert.ok(sawDirty, 'activity makes dirty bytes');
      // Idle device: nothing to send, so PRE_COPY reads end temporarily with ENOMSG.
      await drain(fd);
      await rejectsWith(fd.read(buf), 'ENOMSG', 'temporary end');
      assert.deepEqual(
        { ...(await fd.precopyInfo()), argsz: 24, flags: 0 },
        { argsz: 24, flags: 0, initialBytes: 0, dirtyBytes: 0 },
      );
      // STOP_COPY continues the same fd and ends with 0, never ENOMSG.
      await dev.setState(MigState.STOP_COPY);
      await rejectsWith(fd.precopyInfo(), 'EINVAL', 'PRECOPY_INFO after STOP_COPY');
      const rest = await drain(fd);
      assert.ok(rest.length > 0, 'STOP_COPY produced the final state');
      assert.equal(await fd.read(buf), 0);
      assert.equal(await fd.read(buf), 0);
    });

    test(`${model} ${flags}: stale fd of an ended PRE_COPY session`, async () => {
      const dev = makeDevice(model, flags);
      const old = (await dev.setState(MigState.PRE_COPY))!;
      await dev.setState(MigState.RUNNING);
      await rejectsWith(old.read(new Uint8Array(8)), 'ENODEV', 'read after PRE_COPY -> RUNNING');
      await rejectsWith(old.precopyInfo(), 'EINVAL', 'PRECOPY_INFO while RUNNING');
      const fresh = (await dev.setState(MigState.PRE_COPY))!;
      assert.notEqual(fresh, old);
      await rejectsWith(old.precopyInfo(), 'ENODEV', 'PRECOPY_INFO on the ended session');
      assert.ok((await fresh.precopyInfo()).initialBytes > 0);
    });
  }
}

test('MIG_DATA_SIZE: estimate in any state, falls while reading; full reports the whole state', async () => {
  for (const model of MODELS) {
    const dev = makeDevice(model, 7);
    const full = dev.model.fullStateBytes();
    assert.equal(await dev.stopCopySize(), full, `${model}: without a session, the whole state`);
    const fd = (await dev.setState(MigState.PRE_COPY))!;
    const before = await dev.stopCopySize();
    const n = await fd.read(new Uint8Array(1000));
    assert.equal(
      await dev.stopCopySize(),
      before - n,
      `${model}: the estimate falls by what was read`,
    );
    await dev.setState(MigState.STOP_COPY);
    const left = await dev.stopCopySize();
    const rest = (await drain(fd)).reduce((a, p) => a + p.length, 0);
    assert.equal(rest, left, `${model}: in STOP_COPY the estimate is exact`);

    const mlx = makeDevice(model, 7, ',data-size=full');
    await mlx.setState(MigState.PRE_COPY);
    assert.equal(await mlx.stopCopySize(), full, `${model}: data-size=full`);
  }
});

test('migratable=off: every migration feature is ENOTTY; config and logging still work', async () => {
  const dev = createSimDevice('sim:nic,state-size=64K,migratable=off');
  await rejectsWith(dev.migrationFlags(), 'ENOTTY');
  await rejectsWith(dev.getState(), 'ENOTTY');
  await rejectsWith(dev.setState(MigState.STOP), 'ENOTTY');
  await rejectsWith(dev.stopCopySize(), 'ENOTTY');
  assert.equal(await dev.dmaLogging.probe(), true);
  assert.ok((await dev.saveConfig()).length > 256);
});

test('close: fds disabled, logging stopped, the device refuses further calls', async () => {
  const dev = makeDevice('nic', 7);
  await dev.dmaLogging.start([{ iova: 0n, length: 1n << 20n }], 4096n);
  const fd = (await dev.setState(MigState.PRE_COPY))!;
  dev.startAutoRun(5);
  await dev.close();
  await rejectsWith(fd.read(new Uint8Array(8)), 'ENODEV');
  assert.equal(dev.dirtyLog.started, false);
  await rejectsWith(dev.getState(), 'EBADF');
  await dev.close();
});

test('auto-run: activity follows wall time while running, stops on close', async () => {
  const dev = createSimDevice('sim:nic,state-size=64K,chunk-size=4K,dirty-rate=64M', {
    autoRunMs: 5,
  });
  const d0 = await dev.stateDigest();
  await new Promise((r) => setTimeout(r, 40));
  assert.ok(dev.activeMs > 0);
  assert.notEqual(await dev.stateDigest(), d0);
  await dev.close();
  const ms = dev.activeMs;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(dev.activeMs, ms);
});
