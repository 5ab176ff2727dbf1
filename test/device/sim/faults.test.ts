/**
 * Fault injection: failing arcs (by position or destination, once or for several SETs),
 * dropping to ERROR, corrupting/truncating the saved stream, stalled reads, and the unfixed
 * kernel's hang on STOP_COPY -> PRE_COPY* with a deferred reset.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MigState } from '../../../src/uapi/index.ts';
import { StateMutex } from '../../../src/device/sim/mutex.ts';
import { concat, drain, liveSave, makeDevice, rejectsWith } from './helpers.ts';

test('fail the k-th arc of the next SET with a chosen errno; the SET after it succeeds', async () => {
  const dev = makeDevice('nic', 7);
  dev.faults.failArc({ arc: 2, errno: 'EOPNOTSUPP' });
  // RUNNING -> RUNNING_P2P -> STOP -> STOP_COPY: arc 2 (to STOP) fails.
  await rejectsWith(dev.setState(MigState.STOP_COPY), 'EOPNOTSUPP');
  assert.equal(await dev.getState(), MigState.RUNNING_P2P);
  assert.ok(await dev.setState(MigState.STOP_COPY));
});

test('a positional fault can cover several SETs', async () => {
  const dev = makeDevice('mtty', 3);
  dev.faults.failArc({ arc: 1, times: 2 });
  await rejectsWith(dev.setState(MigState.STOP), 'EIO');
  await rejectsWith(dev.setState(MigState.STOP), 'EIO');
  await dev.setState(MigState.STOP);
  assert.equal(await dev.getState(), MigState.STOP);
});

test('fail the arc that reaches a state, optionally into ERROR; reset is the only way out', async () => {
  const dev = makeDevice('gpu', 7);
  dev.faults.failArc({ reaching: MigState.STOP_COPY, errno: 'EIO', toError: true });
  const pre = (await dev.setState(MigState.PRE_COPY))!;
  await dev.setState(MigState.PRE_COPY_P2P);
  await rejectsWith(dev.setState(MigState.STOP_COPY), 'EIO');
  assert.equal(await dev.getState(), MigState.ERROR);
  await rejectsWith(pre.read(new Uint8Array(8)), 'ENODEV', 'the session died with the device');
  await rejectsWith(dev.setState(MigState.RUNNING), 'EINVAL', 'SET out of ERROR');
  assert.equal(await dev.setState(MigState.ERROR), null, 'ERROR -> ERROR is a no-op');
  await dev.reset();
  assert.equal(await dev.getState(), MigState.RUNNING);
  assert.ok(await dev.setState(MigState.PRE_COPY), 'usable again after reset');
});

test('dropToError: the next arc, in whatever SET, fails into ERROR', async () => {
  const dev = makeDevice('nic', 1);
  await dev.setState(MigState.STOP);
  dev.faults.dropToError('EIO');
  await rejectsWith(dev.setState(MigState.RESUMING), 'EIO');
  assert.equal(await dev.getState(), MigState.ERROR);
  await dev.reset();
  await dev.setState(MigState.STOP);
  assert.equal(await dev.getState(), MigState.STOP, 'the fault fired once');
});

test('corrupt and truncate the saved stream as it is read', async () => {
  const src = makeDevice('nic', 7, ',seed=4');
  const clean = (await liveSave(src)).stream;

  const corrupted = makeDevice('nic', 7, ',seed=4');
  corrupted.faults.corruptStream(1000, 0x5a);
  const bad = (await liveSave(corrupted)).stream;
  assert.equal(bad.length, clean.length);
  assert.equal(bad[1000], clean[1000]! ^ 0x5a);
  assert.deepEqual(bad.subarray(0, 1000), clean.subarray(0, 1000));
  assert.deepEqual(bad.subarray(1001), clean.subarray(1001));
  const dst = makeDevice('nic', 7, ',seed=5');
  const fd = (await dst.setState(MigState.RESUMING))!;
  await rejectsWith(fd.write(bad), 'EINVAL', 'crc catches the corruption');

  const cut = makeDevice('nic', 7, ',seed=4');
  cut.faults.truncateStream(5000);
  const pre = (await cut.setState(MigState.PRE_COPY))!;
  const parts = await drain(pre, 1234);
  assert.equal(concat(parts).length, 5000);
  await rejectsWith(pre.read(new Uint8Array(10)), 'ENOMSG', 'truncated PRE_COPY: temporary end');
  await cut.setState(MigState.STOP_COPY);
  assert.equal(await pre.read(new Uint8Array(10)), 0, 'truncated STOP_COPY: end of stream');
  cut.faults.clear();
});

test('stalled reads: delayed by N ms, or held until cleared', async () => {
  const dev = makeDevice('mtty', 7);
  const fd = (await dev.setState(MigState.STOP_COPY))!;
  dev.faults.stallReads(30);
  const t0 = performance.now();
  assert.equal(await fd.read(new Uint8Array(10)), 10);
  assert.ok(performance.now() - t0 >= 25, 'the read was delayed');

  dev.faults.stallReads('forever');
  let done = false;
  const held = fd.read(new Uint8Array(10)).then((n) => {
    done = true;
    return n;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(done, false, 'held until cleared');
  dev.faults.clearStall();
  assert.equal(await held, 10);
});

test('legacy hang: STOP_COPY -> PRE_COPY never completes and holds the state mutex', async () => {
  const dev = makeDevice('nic', 7);
  await dev.setState(MigState.STOP_COPY);
  // The fixed kernel answers EINVAL.
  await rejectsWith(dev.setState(MigState.PRE_COPY), 'EINVAL', 'blocked arc');
  dev.faults.legacyHang();
  const timeout = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
    Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);
  const hung = dev.setState(MigState.PRE_COPY_P2P);
  assert.equal(await timeout(hung, 30), 'timeout', 'the SET never completes');
  const queued = dev.setState(MigState.STOP);
  assert.equal(await timeout(queued, 30), 'timeout', 'a later SET waits for the mutex');
  assert.equal(await dev.getState(), MigState.STOP_COPY, 'GET still answers');
  // A reset while the mutex is held is deferred to the (never coming) unlock.
  await dev.reset();
  assert.equal(await dev.getState(), MigState.STOP_COPY);
  // A legal SET with the mode on, on another device, is unaffected.
  const other = makeDevice('nic', 7);
  other.faults.legacyHang();
  await other.setState(MigState.STOP_COPY);
  await other.setState(MigState.STOP);
  assert.equal(await other.getState(), MigState.STOP);
});

test('state mutex: a reset arriving while a SET holds the mutex runs when it unlocks', async () => {
  const mutex = new StateMutex();
  const unlock = await mutex.lock();
  const ran: string[] = [];
  mutex.runNowOrOnUnlock(() => ran.push('reset'));
  assert.equal(ran.length, 0, 'deferred');
  const next = mutex.lock().then((u) => {
    ran.push('next SET');
    u();
  });
  unlock();
  await next;
  assert.deepEqual(ran, ['reset', 'next SET'], 'applied at unlock, before the next holder');
  mutex.runNowOrOnUnlock(() => ran.push('immediate'));
  assert.equal(ran.at(-1), 'immediate');
});
