import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VmConfigError, parseVmConfig } from '../../src/vm/config.ts';

test('defaults are filled in and sizes parsed', () => {
  const c = parseVmConfig({ memory: '1G', devices: [{ id: 'nic0', model: 'sim:nic' }] });
  assert.equal(c.memory, 1 << 30);
  assert.equal(c.machine, 'pc');
  assert.equal(c.vcpus, 1);
  assert.equal(c.workload['dirty-rate'], 0);
  assert.equal(c.devices[0]!['enable-migration'], 'auto');
  assert.equal(c.devices[0]!['x-pre-copy-dirty-page-tracking'], true);
});

test('a QEMU-like "-machine none -m 16M" guest', () => {
  const c = parseVmConfig({
    machine: 'none',
    'ram-blocks': [{ idstr: 'ram', size: '16M' }],
    populate: false,
  });
  assert.deepEqual(c['ram-blocks'], [{ idstr: 'ram', size: 16 << 20 }]);
  assert.equal(c.populate, false);
});

test('every problem is reported with its JSON path', () => {
  assert.throws(
    () =>
      parseVmConfig(
        {
          memory: '1Q',
          vcpus: 500,
          workload: { pattern: 'hot', colour: 1 },
          devices: [
            { id: 'a', model: 'sim:nic,turbo=1' },
            { id: 'a', model: 'sim:mtty', 'enable-migration': 'maybe' },
          ],
        },
        'vm.json',
      ),
    (err: unknown) => {
      assert.ok(err instanceof VmConfigError);
      const m = err.message;
      assert.match(m, /^vm\.json is not a valid VM configuration/);
      assert.match(m, /memory: memory: /);
      assert.match(m, /vcpus: /);
      assert.match(m, /workload: .*colour/);
      assert.match(m, /devices\.0\.model: .*turbo/);
      assert.match(m, /devices\.1\.enable-migration/);
      return true;
    },
  );
});

test('memory and ram-blocks are exclusive; hot needs hot-size; ids are unique', () => {
  assert.throws(() => parseVmConfig({}), /exactly one of "memory" and "ram-blocks"/);
  assert.throws(
    () => parseVmConfig({ memory: '1G', 'ram-blocks': [{ idstr: 'x', size: 4096 }] }),
    /exactly one/,
  );
  assert.throws(() => parseVmConfig({ memory: '1G', workload: { pattern: 'hot' } }), /hot-size/);
  assert.throws(
    () =>
      parseVmConfig({
        memory: '1G',
        devices: [
          { id: 'x', model: 'sim:mtty' },
          { id: 'x', model: 'sim:mtty' },
        ],
      }),
    /devices\.1\.id: duplicate id "x"/,
  );
});
