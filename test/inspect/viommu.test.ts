/** A VM with a guest IOMMU saves a `viommu` section that inspect decodes. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspectFile, renderText } from '../../src/inspect/index.ts';
import { Vm, parseVmConfig } from '../../src/vm/index.ts';

test('inspect decodes the viommu section of a VM with a guest IOMMU', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-inspect-viommu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseVmConfig({
    'ram-blocks': [{ idstr: 'ram', size: '8M' }],
    vcpus: 0,
    viommu: true,
    iommu: 'iommufd',
    // device DMA logging is blocked behind a vIOMMU: the container tracks instead
    devices: [{ id: 'nic0', model: 'sim:nic,state-size=64K,chunk-size=16K,logging=off' }],
  });
  const vm = await Vm.create(config, { deviceTickMs: 0 });
  t.after(() => vm.destroy());
  const file = join(dir, 'vm.mig');
  vm.migration.outgoing.migrate(`file:${file}`);
  assert.equal(await vm.migration.outgoing.whenFinished(), 'completed');

  const report = await inspectFile(file);
  assert.equal(report.error, null, report.error?.message);
  const viommu = report.items.find((i) => i.item === 'section' && i.idstr === 'viommu');
  assert.ok(viommu && viommu.item === 'section');
  assert.equal(viommu.type, 'FULL');
  assert.equal(viommu.payload?.format, 'viommu');
  assert.ok(viommu.payload.format === 'viommu' && (viommu.payload.mappings ?? 0) > 0);
  assert.match(renderText(report), /viommu .* \d+ bytes?, \d+ mappings/);
});
