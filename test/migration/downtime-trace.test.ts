import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DowntimeTrace } from '../../src/migration/downtime-trace.ts';

test('DowntimeTrace: checkpoints in order, spans timed also when they fail, reset forgets', async () => {
  let now = 100;
  const t = new DowntimeTrace(() => now);
  t.checkpoint('src-downtime-start');
  now = 104;
  t.checkpoint('src-vm-stopped');
  const got = await t.span('precopy-thread', '0000:00:02.0/vfio', 0, () => {
    now = 130;
    return Promise.resolve(7);
  });
  assert.equal(got, 7);
  await assert.rejects(
    t.span('iterable', 'ram', 0, () => {
      now = 135;
      return Promise.reject(new Error('boom'));
    }),
    /boom/,
  );
  assert.deepEqual(t.checkpoints, [
    { checkpoint: 'src-downtime-start', at: 100 },
    { checkpoint: 'src-vm-stopped', at: 104 },
  ]);
  assert.deepEqual(t.spans, [
    { kind: 'precopy-thread', idstr: '0000:00:02.0/vfio', instanceId: 0, start: 104, end: 130 },
    { kind: 'iterable', idstr: 'ram', instanceId: 0, start: 130, end: 135 },
  ]);
  t.reset();
  assert.deepEqual([t.checkpoints.length, t.spans.length], [0, 0]);
});
