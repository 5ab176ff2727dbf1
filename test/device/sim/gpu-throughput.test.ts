/**
 * The gpu model streams a 256 MiB state through 1 MiB reads straight from the live state: the
 * session holds no copy of the state (memory stays bounded) and the rate is reported.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSimDevice } from '../../../src/device/sim/index.ts';
import { MigState } from '../../../src/uapi/index.ts';

test('gpu: 256 MiB STOP_COPY through 1 MiB reads, bounded memory, reported rate', async (t) => {
  const dev = createSimDevice('sim:gpu,state-size=256M');
  const buf = new Uint8Array(1 << 20);
  const before = process.memoryUsage().arrayBuffers;
  const rates: number[] = [];
  for (let trial = 0; trial < 3; trial++) {
    const fd = (await dev.setState(MigState.STOP_COPY))!;
    let total = 0;
    const t0 = process.hrtime.bigint();
    for (let n = await fd.read(buf); n > 0; n = await fd.read(buf)) total += n;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    assert.equal(total, dev.model.fullStateBytes());
    assert.ok(total > 256 << 20);
    rates.push(total / seconds / 1e9);
    await dev.setState(MigState.STOP);
  }
  const grew = process.memoryUsage().arrayBuffers - before;
  assert.ok(grew < 16 << 20, `session memory grew by ${grew} bytes`);
  rates.sort((a, b) => a - b);
  t.diagnostic(
    `gpu STOP_COPY read rate: median ${rates[1]!.toFixed(2)} GB/s (min ${rates[0]!.toFixed(2)}, max ${rates[2]!.toFixed(2)})`,
  );
  // A loose floor so a loaded CI machine does not fail; the median is reported above.
  assert.ok(rates[1]! > 0.3, `read rate ${rates[1]} GB/s`);
  await dev.close();
});
