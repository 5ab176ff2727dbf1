/**
 * The destination's tag parser against bad input (qemu-migration.md §1.5): unknown tags,
 * missing END_OF_STATE, truncated sections, oversized lengths, unwanted DEV_INIT_DATA_SENT and
 * DEV_CONFIG_LOAD_READY — each a clear error naming the device and the stream offset — and
 * random garbage that must always end in an error or a clean load, never a hang.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RunState } from '../../src/guest/index.ts';
import { isStreamError } from '../../src/migration/stream/index.ts';
import { isVfioError } from '../../src/uapi/index.ts';
import type { VFIOMigration } from '../../src/vfio/index.ts';
import { VFIO_PCI_CONFIG_MAX } from '../../src/vfio/index.ts';
import {
  FLAG_HEX,
  capture,
  load,
  loadCtx,
  mig,
  readerOf,
  saveCtx,
  simDevice,
  testVm,
} from './helpers.ts';
import type { TestLoadContext } from './helpers.ts';

const { EOS, CONFIG, SETUP, DATA, INIT_DATA_SENT: INIT, LOAD_READY } = FLAG_HEX;

const u64 = (n: bigint | number) => BigInt(n).toString(16).padStart(16, '0');
const u32 = (n: number) => n.toString(16).padStart(8, '0');

async function resuming(
  flags = 7,
  caps: string[] = [],
): Promise<{ m: VFIOMigration; ctx: TestLoadContext }> {
  const vm = await testVm({
    devices: [{ device: simDevice('nic', flags, 'nic0') }],
    initial: RunState.INMIGRATE,
  });
  const m = mig(vm, 'nic0');
  const ctx = loadCtx(caps, 0);
  await m.loadSetup(ctx);
  return { m, ctx };
}

async function rejects(m: VFIOMigration, payloadHex: string, re: RegExp): Promise<void> {
  await assert.rejects(load(m, Buffer.from(payloadHex, 'hex')), (err: unknown) => {
    assert.match(String(err), re);
    return true;
  });
}

test('unknown tags are refused with the device, the offset and the tag', async () => {
  const { m } = await resuming();
  await rejects(
    m,
    u64(0xffffffffef100009n),
    /VFIO device nic0 record at offset 0: unknown tag 0xffffffffef100009/,
  );
  const { m: m2 } = await resuming();
  await rejects(
    m2,
    DATA + u64(0) + '0123456789abcdef',
    /record at offset 16: unknown tag 0x123456789abcdef/,
  );
});

test('DEV_SETUP_STATE must be followed by END_OF_STATE', async () => {
  const { m } = await resuming();
  await rejects(
    m,
    SETUP + DATA,
    /record at offset 8: SETUP STATE: EOS not found, got DEV_DATA_STATE/,
  );
});

test('truncated sections: in a tag, in a size, in the data', async () => {
  for (const [hex, what] of [
    ['ffffffff', 'VFIO tag'],
    [DATA + '0000', 'DEV_DATA_STATE size'],
    [DATA + u64(100) + '00'.repeat(10), 'DEV_DATA_STATE data'],
    [SETUP, 'END_OF_STATE after DEV_SETUP_STATE'],
  ] as const) {
    const { m } = await resuming();
    await assert.rejects(load(m, Buffer.from(hex, 'hex')), (err: unknown) => {
      assert.ok(isStreamError(err), String(err));
      assert.equal(
        err.message,
        `VFIO device nic0: unexpected end of stream at offset ${hex.length / 2} while reading ${what}`,
      );
      return true;
    });
  }
});

test('a data size beyond 2^53 is refused before anything is read', async () => {
  const { m } = await resuming();
  await rejects(
    m,
    DATA + u64(1n << 60n),
    /DEV_DATA_STATE size at offset 8: 1152921504606846976 is beyond 2\^53/,
  );
});

test('device data the device refuses fails the load with the device errno', async () => {
  const { m } = await resuming();
  await assert.rejects(
    load(m, Buffer.from(DATA + u64(32) + 'ab'.repeat(32) + EOS, 'hex')),
    (err: unknown) => isVfioError(err),
  );
});

test('config: END_OF_STATE required, bounded length, a blob for this device, no subsections', async () => {
  const src = await testVm({ devices: [{ device: simDevice('nic', 7, 'nic0') }] });
  const good = await capture((f) => mig(src, 'nic0').saveState(f));
  const blobHex = good.subarray(8, good.length - 8).toString('hex');

  let { m } = await resuming();
  await load(m, good);
  ({ m } = await resuming());
  await rejects(
    m,
    CONFIG + blobHex + DATA,
    /Failed loading device config space, end flag incorrect DEV_DATA_STATE/,
  );
  ({ m } = await resuming());
  await rejects(
    m,
    CONFIG + u32(VFIO_PCI_CONFIG_MAX + 1),
    /length 1048577 exceeds the limit of 1048576/,
  );
  ({ m } = await resuming());
  await rejects(
    m,
    CONFIG + u32(4) + 'deadbeef' + EOS,
    /nic0: Failed to load device config space: EINVAL/,
  );
  ({ m } = await resuming());
  await rejects(
    m,
    CONFIG + blobHex + '05' + '04' + Buffer.from('VFIOPCIDevice/ramfb'.slice(0, 4)).toString('hex'),
    /subsection of VFIOPCIDevice .*does not belong to VFIOPCIDevice/,
  );
  ({ m } = await resuming());
  const sub = Buffer.from('VFIOPCIDevice/ramfb');
  await rejects(
    m,
    CONFIG +
      blobHex +
      '05' +
      sub.length.toString(16).padStart(2, '0') +
      sub.toString('hex') +
      u32(1),
    /unknown subsection 'VFIOPCIDevice\/ramfb' version 1/,
  );
});

test('DEV_INIT_DATA_SENT needs PRE_COPY and switchover-ack, and an approval pending', async () => {
  let { m } = await resuming(7, []);
  await rejects(m, INIT, /Received INIT_DATA_SENT but switchover ack is not used/);
  ({ m } = await resuming(3, ['switchover-ack']));
  await rejects(m, INIT, /Received INIT_DATA_SENT but switchover ack is not used/);
  ({ m } = await resuming(7, ['switchover-ack']));
  await rejects(m, INIT, /nic0: approving the switchover failed: no switchover ack pending/);
});

test('DEV_CONFIG_LOAD_READY outside multifd mode, and data before load setup, are refused', async () => {
  const { m } = await resuming();
  await rejects(m, LOAD_READY, /got DEV_CONFIG_LOAD_READY outside multifd transfer/);
  const vm = await testVm({
    devices: [{ device: simDevice('nic', 7, 'nic0') }],
    initial: RunState.INMIGRATE,
  });
  await rejects(
    mig(vm, 'nic0'),
    DATA + u64(1) + '00',
    /nic0: device data arrived but the device is not resuming \(state RUNNING/,
  );
});

test('random garbage after a valid prefix ends in an error or a clean load, never a hang', async () => {
  const src = await testVm({ devices: [{ device: simDevice('nic', 7, 'nic0') }] });
  await capture((f) => mig(src, 'nic0').saveSetup(f, saveCtx()));
  const part = await capture((f) => mig(src, 'nic0').saveLiveIterate(f));
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: part.length }),
      fc.uint8Array({ maxLength: 64 }),
      async (cut, garbage) => {
        const { m } = await resuming();
        const payload = Buffer.concat([part.subarray(0, cut), garbage]);
        try {
          // Bytes after END_OF_STATE belong to the next section: not consumed, no error.
          await m.loadState(readerOf(payload));
        } catch (err) {
          assert.ok(err instanceof Error, String(err));
          assert.ok(/nic0/.test(err.message) || isVfioError(err), err.message);
        }
      },
    ),
    { numRuns: 60, seed: 42 },
  );
});
