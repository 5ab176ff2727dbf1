/**
 * Switchover-ack between two processes (qemu-migration.md §2.5): the capability needs
 * return-path; with it the source keeps the guest running until the destination acknowledged
 * the initial device data — even when the downtime limit would allow an early switchover —
 * so the destination's set-up of that data happens in pre-copy, not in the downtime. Without
 * it the source switches over at once and the stop-copy phase carries (and the destination
 * sets up) most of the state. A destination none of whose devices needs an ack acks at once;
 * a spurious DEV_INIT_DATA_SENT fails the load.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import {
  MemorySink,
  QEMUFileWriter,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  VFIO_MIG_FLAG_DEV_INIT_DATA_SENT,
  VFIO_MIG_FLAG_DEV_SETUP_STATE,
  VFIO_MIG_FLAG_END_OF_STATE,
  putCommandOpenReturnPath,
  putConfiguration,
  putFileHeader,
  putSectionFooter,
  putSectionHeader,
} from '../../src/migration/stream/index.ts';
import { putFlag } from '../../src/vfio/index.ts';
import type { VfioInfo } from './harness.ts';
import { CAPS, E2e, digest, finished, setCaps, smallGuest, waitFor } from './harness.ts';

const MiB = 1 << 20;
const ACK = { ...CAPS, 'switchover-ack': true };

/** One gpu whose destination needs 0.5 s to set up its 32 MiB state. */
const guest = () =>
  smallGuest({
    devices: [
      {
        id: 'gpu0',
        model: 'sim:gpu,state-size=32M,chunk-size=64K,dirty-rate=1M,dma-rate=1M,load-rate=64M',
      },
    ],
  });

async function run(e: E2e, ack: boolean) {
  const config = guest();
  const { src, dst } = await e.pair(config, ack ? ACK : CAPS);
  // A limit so generous that only the ack can hold the switchover back.
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0, 'downtime-limit': 60_000 });
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  const info = await waitFor(src, finished, 'the end of the migration');
  assert.equal(info.status, 'completed', JSON.stringify(info));
  await waitFor(dst, finished, 'the incoming side');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(b.sha256, a.sha256, 'RAM and device state arrived');
  const gpu = (await src.qmp.execute<VfioInfo>('x-query-vfio')).devices[0]!;
  return { downtime: info.downtime ?? -1, bytes: gpu.bytes };
}

test('switchover-ack on: the initial device data is sent and set up before the switchover', async (t) => {
  const { bytes, downtime } = await run(new E2e(t), true);
  assert.ok(
    bytes.precopy >= 32 * MiB,
    `the whole initial image went in pre-copy: ${bytes.precopy}`,
  );
  assert.ok(bytes['stop-copy'] < 8 * MiB, `only changes were left: ${bytes['stop-copy']}`);
  assert.ok(downtime >= 0 && downtime < 1000, `downtime ${downtime} ms`);
});

test('switchover-ack off: the source switches over early and the downtime pays for the set-up', async (t) => {
  const { bytes, downtime } = await run(new E2e(t), false);
  assert.ok(
    bytes['stop-copy'] > 8 * MiB,
    `most of the state moved while stopped: ${bytes['stop-copy']}`,
  );
  // Chunks first sent while stopped are set up then: over 8 MiB at 64 MiB/s, 125 ms at least.
  assert.ok(downtime > 120, `downtime ${downtime} ms`);
});

test("switchover-ack needs return-path (QEMU's message); a destination with nothing to ack acks at once", async (t) => {
  const e = new E2e(t);
  // Without PRE_COPY the device has no initial data, so nothing waits for an ack.
  const config = smallGuest({
    devices: [{ id: 'nic0', model: 'sim:nic,state-size=1M,flags=stop-copy+p2p' }],
  });
  const [dst, src] = await Promise.all([e.destination(config), e.source(config)]);
  await assert.rejects(
    src.qmp.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'switchover-ack', state: true }],
    }),
    /Capability 'switchover-ack' requires capability 'return-path'/,
  );
  await setCaps(src, ACK);
  await setCaps(dst, ACK);
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  assert.equal((await waitFor(src, finished, 'the end')).status, 'completed');
  await waitFor(dst, finished, 'the incoming side');
  assert.equal((await digest(dst)).sha256, (await digest(src)).sha256);
});

test('a spurious DEV_INIT_DATA_SENT fails the load on the destination', async (t) => {
  const e = new E2e(t);
  const config = smallGuest({
    devices: [{ id: 'nic0', model: 'sim:nic,state-size=1M,flags=stop-copy+p2p+pre-copy' }],
  });
  const dst = await e.destination(config);
  await setCaps(dst, ACK);
  // A hand-made source: the device's setup, then its initial data "sent" twice.
  const sink = new MemorySink();
  const w = new QEMUFileWriter(sink, { chunkSize: 4096 });
  putFileHeader(w);
  putConfiguration(w, { machineType: 'pc' });
  putCommandOpenReturnPath(w);
  const idstr = '0000:00:05.0/vfio';
  putSectionHeader(w, {
    type: QEMU_VM_SECTION_START,
    sectionId: 9,
    idstr,
    instanceId: 0,
    versionId: 1,
  });
  putFlag(w, VFIO_MIG_FLAG_DEV_SETUP_STATE);
  putFlag(w, VFIO_MIG_FLAG_END_OF_STATE);
  putSectionFooter(w, 9);
  for (let i = 0; i < 2; i++) {
    putSectionHeader(w, { type: QEMU_VM_SECTION_PART, sectionId: 9 });
    putFlag(w, VFIO_MIG_FLAG_DEV_INIT_DATA_SENT);
    putSectionFooter(w, 9);
  }
  await w.flush();
  const [host, port] = dst.ready.incoming!.replace(/^tcp:/, '').split(':');
  const socket = connect({ host, port: Number(port) });
  t.after(() => socket.destroy());
  const acks: Buffer[] = [];
  socket.on('data', (b: Buffer) => acks.push(b));
  socket.on('error', () => undefined);
  socket.write(sink.bytes());
  const info = await waitFor(dst, finished, 'the failed load');
  assert.equal(info.status, 'failed');
  assert.match(info['error-desc'] ?? '', /spurious approval/);
  // The first DEV_INIT_DATA_SENT was the one approval pending: SWITCHOVER_ACK (type 7, len 0).
  assert.ok(Buffer.concat(acks).includes(Buffer.from([0, 7, 0, 0])), 'the ack went out once');
});
