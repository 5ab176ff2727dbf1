/**
 * The VFIO layer's own sections, inspected: sim devices migrate through the real save hooks
 * (test/vfio/helpers.ts drives them in QEMU's order), their payloads are framed into a whole
 * stream, and inspect's per-device figures must agree with the VFIO layer's own byte counter
 * and with the switchover approvals the destination gave.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { renderText } from '../../src/inspect/index.ts';
import type { InspectedSection } from '../../src/inspect/index.ts';
import {
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from '../../src/uapi/index.ts';
import { migrate, simDevice, testVm } from '../vfio/helpers.ts';
import type { MigrateResult } from '../vfio/helpers.ts';
import { StreamBuilder, inspectBytes } from './streams.ts';

const ALL = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;

/** The sections of a hook-level migration as one main-channel stream; ids in START order. */
async function frame(sections: MigrateResult['sections']): Promise<Buffer> {
  const b = new StreamBuilder().header();
  const ids = new Map<string, number>();
  for (const s of sections) {
    if (!ids.has(s.idstr)) ids.set(s.idstr, ids.size + 3);
    const id = ids.get(s.idstr)!;
    const put = (w: { putBuffer(d: Uint8Array): void }) => w.putBuffer(s.payload);
    if (s.kind === 'START') b.start(id, s.idstr, put);
    else if (s.kind === 'FULL') b.full(id, s.idstr, put);
    else if (s.kind === 'PART') b.part(id, put);
    else b.end(id, put);
  }
  return b.eof().bytes();
}

test('a pre-copy gpu and a stop-copy-only nic: inspect agrees with the VFIO byte counter', async () => {
  const gpu = simDevice('gpu', ALL, 'gpu0', ',seed=21');
  const nic = simDevice('nic', VFIO_MIGRATION_STOP_COPY, 'nic0', ',seed=22');
  gpu.advance(10);
  const src = await testVm({ devices: [{ device: gpu }, { device: nic }] });
  const dst = await testVm({
    devices: [
      { device: simDevice('gpu', ALL, 'gpu0', ',seed=23') },
      { device: simDevice('nic', VFIO_MIGRATION_STOP_COPY, 'nic0', ',seed=24') },
    ],
    initial: RunState.INMIGRATE,
  });
  const m = await migrate(src, dst, {
    caps: ['switchover-ack', 'return-path'],
    activity: () => gpu.advance(3),
    threshold: 128 << 10,
    maxIterations: 12,
  });

  const r = await inspectBytes(await frame(m.sections));
  assert.equal(r.error, null);
  const sections = r.items.filter((i): i is InspectedSection => i.item === 'section');
  assert.deepEqual(
    sections.map((s) => [s.type, s.idstr]),
    m.sections.map((s) => [s.kind, s.idstr]),
  );
  assert.equal(r.totals.vfio.length, 2);
  const [g, n] = r.totals.vfio;
  assert.equal(
    g!.dataBytes + n!.dataBytes,
    src.set.stats.transferred,
    'device data bytes equal the counter behind query-migrate vfio.transferred',
  );
  assert.equal(g!.initDataSent + n!.initDataSent, m.approvals, 'one DEV_INIT_DATA_SENT per ack');
  assert.equal(g!.initDataSent, 1);
  assert.ok(g!.configSent && n!.configSent, 'both configs travel in FULL sections');
  assert.ok(m.iterations > 0, 'pre-copy iterations ran');
  assert.equal(g!.sections, 3 + m.iterations);
  if (process.env.INSPECT_DUMP) process.stdout.write(renderText(r));
  assert.equal(n!.sections, 3, 'a device without PRE_COPY has no PART sections');
  assert.ok(n!.dataRecords > 0);
  // START is always SETUP + END_OF_STATE (§1.4), whatever the device.
  for (const s of sections.filter((x) => x.type === 'START')) {
    assert.deepEqual(s.payload, {
      format: 'vfio',
      setup: true,
      dataRecords: 0,
      dataBytes: 0,
      configBytes: null,
      end: 'END_OF_STATE',
    });
  }
  assert.match(
    renderText(r),
    new RegExp(`\\n {2}${g!.idstr.replace(/[.]/g, '\\.')} \\(instance 0\\) +${g!.sections} `),
  );
});
