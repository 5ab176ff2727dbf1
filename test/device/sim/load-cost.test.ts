/**
 * The destination-side cost of loading (`load-rate`): a resuming device sets up each chunk the
 * first time image data for it arrives, at load-rate bytes per second, inside write(2); data
 * for a chunk already set up (a re-sent dirty chunk) is only copied.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RecordModel } from '../../../src/device/sim/index.ts';
import { RecordLoader } from '../../../src/device/sim/records/loader.ts';
import { MigState } from '../../../src/uapi/index.ts';
import { concat, drain, liveSave, makeDevice } from './helpers.ts';

const MiB = 1 << 20;

test('the loader charges each chunk once, at load-rate, when its first image data arrives', async () => {
  const src = makeDevice('gpu', 7, ',state-size=1M,chunk-size=64K,dirty-rate=8M', 'gpu0');
  const { stream } = await liveSave(src, { rounds: 30, stepMs: 5, readSize: 16 << 10 });
  const model = src.model as RecordModel;
  assert.ok(stream.length > MiB + 64 * 1024, 'dirty chunks were sent again');
  const loader = new RecordLoader(model.state, model.identity, 64 * MiB);
  let ms = 0;
  for (let at = 0; at < stream.length; at += 10_000) {
    ms += loader.write(stream.subarray(at, Math.min(at + 10_000, stream.length)));
  }
  // 1 MiB set up at 64 MiB/s, whatever was sent twice.
  assert.ok(Math.abs(ms - 1000 / 64) < 1e-9, `${ms} ms`);
  assert.equal(loader.allocatedBytes, MiB);
  loader.finish();
});

test('without load-rate loading is free', async () => {
  const src = makeDevice('nic', 7, '', 'nic0');
  const stream = concat(await drain((await src.setState(MigState.STOP_COPY))!));
  const model = src.model as RecordModel;
  assert.equal(new RecordLoader(model.state, model.identity).write(stream), 0);
});

test('a resuming fd takes as long as the set-up of what it loads', async () => {
  const spec = ',state-size=4M,chunk-size=64K,load-rate=64M';
  const src = makeDevice('gpu', 7, spec, 'gpu0');
  const stream = concat(await drain((await src.setState(MigState.STOP_COPY))!));
  const dst = makeDevice('gpu', 7, spec, 'gpu0');
  const fd = (await dst.setState(MigState.RESUMING))!;
  const t0 = performance.now();
  for (let at = 0; at < stream.length; at += 256 << 10) {
    await fd.write(stream.subarray(at, Math.min(at + (256 << 10), stream.length)));
  }
  const elapsed = performance.now() - t0;
  // 4 MiB at 64 MiB/s: 62.5 ms of device work.
  assert.ok(elapsed >= 55 && elapsed < 2000, `${elapsed.toFixed(1)} ms`);
  await dst.setState(MigState.STOP);
  assert.equal(await dst.stateDigest(), await src.stateDigest());
});
