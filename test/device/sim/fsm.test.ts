/**
 * The driver loop against the uAPI tables: for every model, flag set, reachable state and
 * target, SET ends where the kernel's walk ends, returns a data fd exactly when the walk's
 * last arc opens a session, fails with EINVAL before any arc where the kernel does, and
 * passes through exactly the states of the walk (observed by failing each arc in turn).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ALL_STATES,
  isSavingState,
  isVfioError,
  MigState,
  parseStateName,
  reachableStates,
  setOutcome,
  stateName,
} from '../../../src/uapi/index.ts';
import { driveTo, everyConfig, makeDevice, rejectsWith, validStream } from './helpers.ts';

for (const { model, flags, label } of everyConfig()) {
  test(`${label}: SET from every reachable state to every target follows the kernel walk`, async () => {
    for (const from of reachableStates(flags)) {
      for (const to of [...ALL_STATES, 8, 99, -1]) {
        const want =
          to >= 0 && to < 8
            ? setOutcome(from, to as MigState, flags)
            : { errno: 'EINVAL' as const };
        const what = `${stateName(from)} -> ${stateName(to)}`;
        const dev = makeDevice(model, flags);
        const oldFd = await driveTo(dev, from);
        if ('errno' in want) {
          await rejectsWith(dev.setState(to), want.errno, what);
          assert.equal(await dev.getState(), from, `${what}: state unchanged`);
          continue;
        }
        const fd = await dev.setState(to);
        assert.equal(await dev.getState(), to, what);
        assert.equal(fd !== null, want.dataFd, `${what}: data fd`);
        if (fd) assert.equal(fd.kind, to === MigState.RESUMING ? 'resuming' : 'saving', what);
        // The old session survives only a path that stays inside the saving group.
        if (oldFd) {
          const alive =
            want.path.length === 1 || want.path.every((s) => isSavingState(parseStateName(s)));
          const probe =
            oldFd.kind === 'saving'
              ? oldFd.read(new Uint8Array(8))
              : oldFd.write(new Uint8Array(0));
          if (alive) {
            await probe.catch((err: unknown) => assert.ok(isVfioError(err, 'ENOMSG'), String(err)));
          } else {
            await rejectsWith(probe, 'ENODEV', `${what}: old fd`);
          }
        }
        await dev.close();
      }
    }
  });

  test(`${label}: a failure at arc k leaves the state reached after arc k-1`, async () => {
    for (const from of reachableStates(flags)) {
      if (from === MigState.ERROR) continue;
      for (const to of ALL_STATES) {
        const want = setOutcome(from, to, flags);
        if ('errno' in want) continue;
        for (let k = 1; k < want.path.length; k++) {
          const dev = makeDevice(model, flags);
          await driveTo(dev, from);
          dev.faults.failArc({ arc: k, errno: 'EIO' });
          await rejectsWith(
            dev.setState(to),
            'EIO',
            `${stateName(from)} -> ${stateName(to)} arc ${k}`,
          );
          assert.equal(stateName(await dev.getState()), want.path[k - 1], `after failing arc ${k}`);
          // The fault was for that SET only: the same request now succeeds.
          await dev.setState(to);
          assert.equal(await dev.getState(), to);
          await dev.close();
        }
      }
    }
  });
}

test('random SET sequences never reach ERROR and always agree with the kernel walk', async () => {
  const configs = [...everyConfig()];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...configs),
      fc.array(fc.integer({ min: -1, max: 9 }), { minLength: 1, maxLength: 25 }),
      async ({ model, flags }, targets) => {
        const dev = makeDevice(model, flags);
        for (const to of targets) {
          const from = dev.state;
          const want =
            to >= 0 && to < 8
              ? setOutcome(from, to as MigState, flags)
              : { errno: 'EINVAL' as const };
          if ('errno' in want) {
            await rejectsWith(dev.setState(to), want.errno);
            assert.equal(dev.state, from);
          } else {
            const fd = await dev.setState(to);
            assert.equal(fd !== null, want.dataFd);
            if (fd?.kind === 'resuming') await fd.write(await validStream(dev));
            assert.equal(stateName(dev.state), want.path.at(-1));
          }
          dev.advance(3);
          assert.notEqual(dev.state, MigState.ERROR);
        }
        await dev.close();
      },
    ),
    { numRuns: 150, seed: 42 },
  );
});

test('SET to the current state is a no-op: no fd, STOP_COPY keeps its session, ERROR stays', async () => {
  for (const { model, flags } of everyConfig()) {
    const dev = makeDevice(model, flags);
    const fd = (await dev.setState(MigState.STOP_COPY))!;
    assert.equal(await dev.setState(MigState.STOP_COPY), null);
    assert.ok((await fd.read(new Uint8Array(16))) > 0, 'session untouched');
    await driveTo(makeDevice(model, flags), MigState.ERROR);
    const broken = makeDevice(model, flags);
    await driveTo(broken, MigState.ERROR);
    assert.equal(await broken.setState(MigState.ERROR), null);
    await rejectsWith(broken.setState(MigState.RUNNING), 'EINVAL', 'leaving ERROR by SET');
    await broken.reset();
    assert.equal(await broken.getState(), MigState.RUNNING);
    await dev.close();
  }
});

test('concurrent SETs are serialized by the state mutex', async () => {
  const dev = makeDevice('nic', 7);
  const order: string[] = [];
  const a = dev.setState(MigState.STOP).then(() => order.push(`a:${stateName(dev.state)}`));
  const b = dev.setState(MigState.STOP_COPY).then(() => order.push(`b:${stateName(dev.state)}`));
  const c = dev.setState(MigState.STOP).then(() => order.push(`c:${stateName(dev.state)}`));
  await Promise.all([a, b, c]);
  assert.deepEqual(order, ['a:STOP', 'b:STOP_COPY', 'c:STOP']);
  assert.equal(parseStateName('STOP'), dev.state);
});
