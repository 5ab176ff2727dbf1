/** The emulated PCI config space: write masks, versioned blob, refusals, digest. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MSIX_TABLE_OFFSET } from '../../../src/device/sim/index.ts';
import { makeDevice, MODELS, rejectsWith } from './helpers.ts';

test('config header carries the model ids; read-only bytes ignore guest writes', () => {
  for (const model of MODELS) {
    const dev = makeDevice(model, 7);
    const ids = dev.config.ids;
    const dv = new DataView(dev.configRead(0, 256).buffer);
    assert.equal(dv.getUint16(0, true), ids.vendorId);
    assert.equal(dv.getUint16(2, true), ids.deviceId);
    assert.equal(dv.getUint8(0x34), 0x40, 'capability pointer to MSI-X');
    assert.equal(dv.getUint8(0x40), 0x11, 'MSI-X capability id');
    assert.equal(dv.getUint16(0x42, true) & 0x7ff, ids.msixEntries - 1);
    dev.configWrite(0, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    assert.deepEqual(
      dev.configRead(0, 2),
      new Uint8Array([ids.vendorId & 0xff, ids.vendorId >> 8]),
    );
    dev.configWrite(4, new Uint8Array([0x06, 0x00])); // command: memory + bus master
    assert.deepEqual(dev.configRead(4, 2), new Uint8Array([0x06, 0x00]));
    dev.configWrite(0x43, new Uint8Array([0xff])); // MSI-X enable + function mask only
    assert.equal(dev.configRead(0x43, 1)[0], 0xc0);
    assert.throws(() => dev.configWrite(dev.config.size - 1, new Uint8Array(2)), /EINVAL/);
  }
});

test('saveConfig/loadConfig round trip and change the digest', async () => {
  const src = makeDevice('nic', 7);
  const dst = makeDevice('nic', 7);
  assert.equal(await src.stateDigest(), await dst.stateDigest());
  src.configWrite(
    MSIX_TABLE_OFFSET + 3 * 16,
    new Uint8Array([0x00, 0x10, 0xe0, 0xfe, 0, 0, 0, 0, 0x41]),
  );
  assert.notEqual(await src.stateDigest(), await dst.stateDigest(), 'config is part of the digest');
  await dst.loadConfig(await src.saveConfig());
  assert.equal(await src.stateDigest(), await dst.stateDigest());
  await dst.reset();
  assert.notEqual(
    await src.stateDigest(),
    await dst.stateDigest(),
    'reset restores power-on config',
  );
});

test('loadConfig refuses a blob of the wrong size, ids, version or read-only contents', async () => {
  const dev = makeDevice('nic', 7);
  const good = await dev.saveConfig();
  const mutate = (f: (b: Uint8Array) => void): Uint8Array => {
    const b = good.slice();
    f(b);
    return b;
  };
  await rejectsWith(dev.loadConfig(good.subarray(1)), 'EINVAL', 'short');
  await rejectsWith(dev.loadConfig(new Uint8Array(good.length + 1)), 'EINVAL', 'long');
  await rejectsWith(dev.loadConfig(mutate((b) => (b[0] = 0))), 'EINVAL', 'magic');
  await rejectsWith(dev.loadConfig(mutate((b) => (b[4] = 9))), 'EINVAL', 'version');
  await rejectsWith(dev.loadConfig(mutate((b) => (b[8]! ^= 1))), 'EINVAL', 'vendor id');
  await rejectsWith(dev.loadConfig(mutate((b) => (b[16 + 0x0b]! ^= 1))), 'EINVAL', 'class code');
  await rejectsWith(makeDevice('gpu', 7).loadConfig(good), 'EINVAL', 'another model');
  await rejectsWith(makeDevice('mtty', 7).loadConfig(good), 'EINVAL', 'another model');
  await dev.loadConfig(good);
});
