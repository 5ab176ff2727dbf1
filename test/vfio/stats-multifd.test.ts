/**
 * The VFIO byte counter of `query-migrate` (qemu-migration.md §5.1: main-channel payload bytes
 * only, reset when a migration starts) and the choice of multifd transfer (§4.1): AUTO follows
 * what the migration supports, ON fails setup when it cannot be honoured.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { FLAG_HEX, capture, loadCtx, mig, migrate, saveCtx, simDevice, testVm } from './helpers.ts';

/** Sum of the DEV_DATA_STATE sizes in a VFIO payload. */
function dataBytes(payload: Buffer): number {
  let total = 0;
  for (let at = 0; at + 8 <= payload.length;) {
    const tag = payload.readBigUInt64BE(at);
    at += 8;
    if (tag === 0xffffffffef100004n) {
      const n = Number(payload.readBigUInt64BE(at));
      total += n;
      at += 8 + n;
    } else if (tag === 0xffffffffef100002n) {
      at += 4 + payload.readUInt32BE(at);
    }
  }
  return total;
}

test('vfio.transferred counts the device data bytes of every record, and resets at setup', async () => {
  const a = simDevice('nic', 7, 'nic0', ',seed=1');
  const b = simDevice('gpu', 7, 'gpu0', ',seed=2');
  const src = await testVm({ devices: [{ device: a }, { device: b }] });
  const dst = await testVm({
    devices: [{ device: simDevice('nic', 7, 'nic0') }, { device: simDevice('gpu', 7, 'gpu0') }],
    initial: RunState.INMIGRATE,
  });
  src.set.stats.add(12345); // left over from an earlier migration
  assert.deepEqual(await src.notifiers.notify('precopy-setup'), []);
  assert.equal(src.set.stats.transferred, 0);
  const r = await migrate(src, dst, {
    activity: () => {
      a.advance(3);
      b.advance(3);
    },
  });
  const expected = r.sections.reduce((n, s) => n + dataBytes(s.payload), 0);
  assert.ok(expected > (1 << 20) + (256 << 10), 'at least both states went over');
  assert.equal(src.set.stats.transferred, expected);
});

test('x-migration-multifd-transfer: auto follows multifd, on fails setup without it, with QEMU’s message', async () => {
  const auto = await testVm({ devices: [{ device: simDevice('nic', 7, 'nic0') }] });
  const m = mig(auto, 'nic0');
  // Without the multifd capability: the main channel, and no precopy-thread work.
  const start = await capture((f) => m.saveSetup(f, saveCtx()));
  assert.equal(start.length, 16);
  await m.saveCompletePrecopyThread({
    idstr: '0000:00:05.0/vfio',
    instanceId: 0,
    signal: new AbortController().signal,
    queueDeviceState: () => Promise.reject(new Error('nothing may be queued')),
  });
  await auto.runControl.vmStop(RunState.FINISH_MIGRATE);
  const end = await capture((f) => m.saveComplete(f));
  assert.ok(end.length > 256 << 10, 'the device data went on the main channel');
  await m.saveCleanup();
  // With it: the END section is a dummy END_OF_STATE.
  await capture((f) => m.saveSetup(f, saveCtx(['multifd'])));
  assert.equal((await capture((f) => m.saveComplete(f))).toString('hex'), FLAG_HEX.EOS);
  await m.saveCleanup();

  const on = await testVm({
    devices: [
      { device: simDevice('nic', 7, 'nic0'), properties: 'x-migration-multifd-transfer=on' },
    ],
  });
  await assert.rejects(
    capture((f) => mig(on, 'nic0').saveSetup(f, saveCtx())),
    /^Error: nic0: Multifd device transfer requested but unsupported in the current config$/,
  );
  const dst = await testVm({
    devices: [
      { device: simDevice('nic', 7, 'nic0'), properties: 'x-migration-multifd-transfer=on' },
    ],
    initial: RunState.INMIGRATE,
  });
  await assert.rejects(mig(dst, 'nic0').loadSetup(loadCtx()), /Multifd device transfer requested/);
  await assert.rejects(
    mig(dst, 'nic0').loadStateBuffer(new Uint8Array(12)),
    /^Error: nic0: got device state packet but not doing multifd transfer$/,
  );
});
