/** vfio-pci migration properties and the PCI id paths behind the savevm idstr. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PciSlotAllocator,
  UINT64_MAX,
  VFIO_PCI_DEFAULT_PROPERTIES,
  formatPciAddress,
  parsePciAddress,
  parseVfioPciProperties,
  pciDepth,
  vfioSavevmIdstr,
} from '../../src/vfio/index.ts';

test("QEMU's defaults", () => {
  assert.deepEqual(parseVfioPciProperties(), {
    'enable-migration': 'auto',
    'migration-events': false,
    'x-pre-copy-dirty-page-tracking': true,
    'x-device-dirty-page-tracking': true,
    'x-migration-multifd-transfer': 'auto',
    'x-migration-load-config-after-iter': 'auto',
    'x-migration-max-queued-buffers-size': 18446744073709551615n,
  });
  assert.equal(VFIO_PCI_DEFAULT_PROPERTIES['x-migration-max-queued-buffers-size'], UINT64_MAX);
});

test('command-line text: bool spellings, OnOffAuto, u64', () => {
  const p = parseVfioPciProperties(
    'enable-migration=on,migration-events=yes,x-pre-copy-dirty-page-tracking=off,' +
      'x-migration-multifd-transfer=off,x-migration-max-queued-buffers-size=1048576',
  );
  assert.equal(p['enable-migration'], 'on');
  assert.equal(p['migration-events'], true);
  assert.equal(p['x-pre-copy-dirty-page-tracking'], false);
  assert.equal(p['x-migration-multifd-transfer'], 'off');
  assert.equal(p['x-migration-max-queued-buffers-size'], 1048576n);
});

test('an object such as a VM configuration device entry: other keys are ignored', () => {
  const p = parseVfioPciProperties({
    id: 'nic0',
    model: 'sim:nic',
    'enable-migration': 'off',
    'migration-events': true,
    'x-device-dirty-page-tracking': false,
    'x-migration-max-queued-buffers-size': 4096,
  });
  assert.equal(p['enable-migration'], 'off');
  assert.equal(p['migration-events'], true);
  assert.equal(p['x-device-dirty-page-tracking'], false);
  assert.equal(p['x-migration-max-queued-buffers-size'], 4096n);
});

test('bad values and names are refused with the property named', () => {
  assert.throws(
    () => parseVfioPciProperties('enable-migration=maybe'),
    /vfio-pci property 'enable-migration': "maybe" is not one of on, off, auto/,
  );
  assert.throws(
    () => parseVfioPciProperties('migration-events=2'),
    /'migration-events': "2" is not on or off/,
  );
  assert.throws(
    () => parseVfioPciProperties('x-migration-max-queued-buffers-size=-1'),
    /is not an unsigned 64-bit integer/,
  );
  assert.throws(
    () => parseVfioPciProperties('x-migration-max-queued-buffers-size=18446744073709551616'),
    /is not an unsigned 64-bit integer/,
  );
  assert.throws(
    () => parseVfioPciProperties('turbo=on'),
    /vfio-pci has no migration property 'turbo'/,
  );
  assert.throws(
    () => parseVfioPciProperties('enable-migration'),
    /"enable-migration" is not name=value/,
  );
  assert.throws(
    () => parseVfioPciProperties('migration-events=on,migration-events=off'),
    /'migration-events' given twice/,
  );
});

test('PCI paths: root bus and behind bridges, canonical lowercase, depth', () => {
  const root = parsePciAddress('0000:00:05.0');
  assert.deepEqual(root, { domain: 0, bus: 0, levels: [{ slot: 5, fn: 0 }] });
  assert.equal(pciDepth(root), 1);
  const deep = parsePciAddress('0000:00:1C.0:00.3');
  assert.equal(formatPciAddress(deep), '0000:00:1c.0:00.3');
  assert.equal(pciDepth(deep), 2);
  assert.equal(vfioSavevmIdstr('0000:00:05.0'), '0000:00:05.0/vfio');
  assert.equal(vfioSavevmIdstr(undefined), 'vfio');
  for (const bad of ['00:05.0', '0000:00:05.8', '0000:00:20.0', '0000:00:05.0:', 'nic0']) {
    assert.throws(() => parsePciAddress(bad), /PCI device path|above 0x1f/, bad);
  }
});

test('slot allocation: 05.0 upwards, skipping claimed slots, reusing released ones', () => {
  const a = new PciSlotAllocator();
  assert.equal(a.claim('0000:00:06.0'), '0000:00:06.0');
  assert.equal(a.allocate(), '0000:00:05.0');
  assert.equal(a.allocate(), '0000:00:07.0');
  assert.throws(() => a.claim('0000:00:07.0'), /0000:00:07.0 is used by two devices/);
  a.release('0000:00:05.0');
  assert.equal(a.allocate(), '0000:00:05.0');
  for (let i = 8; i <= 0x1f; i++) a.allocate();
  assert.throws(() => a.allocate(), /no free slot/);
});
