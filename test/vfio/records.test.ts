/**
 * Golden bytes of the VFIO sub-stream (qemu-migration.md §1.3–§1.4): the 16-byte START
 * payload, a DEV_DATA_STATE record, END_OF_STATE, the config FULL payload and
 * DEV_INIT_DATA_SENT, each produced by the hooks themselves.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { MigState } from '../../src/uapi/index.ts';
import { putDataRecord } from '../../src/vfio/index.ts';
import {
  FLAG_HEX,
  capture,
  hex,
  load,
  loadCtx,
  mig,
  saveCtx,
  simDevice,
  testVm,
} from './helpers.ts';

const { SETUP, EOS, DATA, CONFIG, INIT_DATA_SENT } = FLAG_HEX;

test('START payload: DEV_SETUP_STATE then END_OF_STATE, 16 bytes, with or without PRE_COPY', async () => {
  for (const flags of [1, 3, 5, 7]) {
    const vm = await testVm({ devices: [{ device: simDevice('nic', flags, 'nic0') }] });
    const m = mig(vm, 'nic0');
    const start = await capture((f) => m.saveSetup(f, saveCtx()));
    assert.equal(hex(start), SETUP + EOS, `flags ${flags}`);
    assert.equal(m.state.current, flags & 4 ? MigState.PRE_COPY : MigState.RUNNING);
    await m.saveCleanup();
  }
});

test('a DEV_DATA_STATE record: tag, u64 big-endian size, the bytes', async () => {
  const rec = await capture((f) => {
    putDataRecord(f, new Uint8Array([0xde, 0xad, 0xbe]));
    return Promise.resolve();
  });
  assert.equal(hex(rec), DATA + '0000000000000003' + 'deadbe');
});

test('an iteration: one DEV_DATA_STATE record of what one read gave, then END_OF_STATE', async () => {
  const dev = simDevice('mtty', 7, 'tty0');
  const vm = await testVm({ devices: [{ device: dev }] });
  const m = mig(vm, 'tty0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  const part = await capture((f) => m.saveLiveIterate(f));
  // mtty's pre-copy stream is its 24-byte header (vfio-uapi.md §9.1).
  assert.equal(part.length, 8 + 8 + 24 + 8);
  assert.equal(hex(part.subarray(0, 16)), DATA + '0000000000000018');
  assert.equal(part.readUInt32LE(16 + 8), 1, 'mtty header: major version 1');
  assert.equal(hex(part.subarray(40)), EOS);
  assert.equal(vm.set.stats.transferred, 24, 'the counter counts payload bytes only');
  // Drained: ENOMSG is 0 bytes, so only the terminator.
  assert.equal(hex(await capture((f) => m.saveLiveIterate(f))), EOS);
  await m.saveCleanup();
});

test('save complete: data records then END_OF_STATE; a lone END_OF_STATE loads as a no-op', async () => {
  const src = await testVm({ devices: [{ device: simDevice('mtty', 1, 'tty0') }] });
  const m = mig(src, 'tty0');
  await capture((f) => m.saveSetup(f, saveCtx()));
  assert.deepEqual(await src.runControl.vmStop(RunState.FINISH_MIGRATE), []);
  const end = await capture((f) => m.saveComplete(f));
  assert.equal(hex(end.subarray(0, 16)), DATA + '0000000000000060', '24 + 2 x 36 bytes');
  assert.equal(end.length, 16 + 96 + 8);
  assert.equal(hex(end.subarray(end.length - 8)), EOS);

  const dst = await testVm({
    devices: [{ device: simDevice('mtty', 1, 'tty0') }],
    initial: RunState.INMIGRATE,
  });
  const d = mig(dst, 'tty0');
  await d.loadSetup(loadCtx());
  await load(d, Buffer.from(EOS, 'hex'));
  assert.equal(d.state.current, MigState.RESUMING);
});

test('config FULL payload: DEV_CONFIG_STATE, u32 length, the VFIOPCIDevice blob, END_OF_STATE', async () => {
  const dev = simDevice('nic', 7, 'nic0');
  dev.configWrite(4, new Uint8Array([0x06, 0x04]));
  const vm = await testVm({ devices: [{ device: dev }] });
  const blob = Buffer.from(await dev.saveConfig());
  const full = await capture((f) => mig(vm, 'nic0').saveState(f));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(blob.length);
  assert.equal(hex(full), CONFIG + hex(len) + hex(blob) + EOS);
  assert.equal(full.length, 8 + 4 + blob.length + 8);
});

test('DEV_INIT_DATA_SENT replaces END_OF_STATE once, when switchover-ack is on and init is 0', async () => {
  const run = async (caps: string[]) => {
    const vm = await testVm({ devices: [{ device: simDevice('mtty', 7, 'tty0') }] });
    const m = mig(vm, 'tty0');
    await capture((f) => m.saveSetup(f, saveCtx(caps)));
    const first = await capture((f) => m.saveLiveIterate(f));
    const second = await capture((f) => m.saveLiveIterate(f));
    await m.saveCleanup();
    return [hex(first.subarray(first.length - 8)), hex(second)];
  };
  assert.deepEqual(await run(['switchover-ack', 'return-path']), [INIT_DATA_SENT, EOS]);
  assert.deepEqual(await run([]), [EOS, EOS]);
});

test('the destination approves the switchover on DEV_INIT_DATA_SENT; no END_OF_STATE follows', async () => {
  const dst = await testVm({
    devices: [{ device: simDevice('mtty', 7, 'tty0') }],
    initial: RunState.INMIGRATE,
  });
  const d = mig(dst, 'tty0');
  const ctx = loadCtx(['switchover-ack', 'return-path']);
  await d.loadSetup(ctx);
  assert.equal(d.switchoverAckNeeded(), true);
  await load(d, Buffer.from(INIT_DATA_SENT, 'hex'));
  assert.equal(ctx.approvals, 1);
});
