/**
 * Dirty tracking of device DMA in every mode, between two processes (qemu-migration.md §3.5):
 * devices keep writing guest RAM by DMA during a slow pre-copy, so pages already sent change
 * again; whatever finds them — device DMA logging (also deferred to stop-and-copy), the IOMMU
 * container (type1 perpetual or pinned, iommufd), nothing (all RAM perpetually dirty), or the
 * vIOMMU path while the guest remaps its DMA windows — the destination ends with the source's
 * exact RAM and device states.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VfioInfo } from './harness.ts';
import { E2e, digest, finished, sleep, smallGuest, waitFor } from './harness.ts';

type ContainerInfo = VfioInfo & {
  'dirty-tracking': { mode: string; 'pages-reported': number };
  container: { mappings: number; faults: number };
};

interface Case {
  iommu: string;
  viommu?: boolean;
  /** DMA logging on the devices. */
  logging: boolean;
  properties?: Record<string, string>;
  mode: string;
}

const CASES: Record<string, Case> = {
  'device DMA logging': { iommu: 'type1-perpetual', logging: true, mode: 'device' },
  'device logging, read only at stop-and-copy': {
    iommu: 'type1-perpetual',
    logging: true,
    properties: { 'x-pre-copy-dirty-page-tracking': 'off' },
    mode: 'device',
  },
  'type1, every mapped page': { iommu: 'type1-perpetual', logging: false, mode: 'container' },
  'type1, pinned pages': { iommu: 'type1-pinned', logging: false, mode: 'container' },
  iommufd: { iommu: 'iommufd', logging: false, mode: 'container' },
  'no tracker: all RAM perpetually dirty': { iommu: 'none', logging: false, mode: 'perpetual' },
  'vIOMMU with iommufd': { iommu: 'iommufd', viommu: true, logging: false, mode: 'container' },
  'vIOMMU with type1': {
    iommu: 'type1-perpetual',
    viommu: true,
    logging: false,
    mode: 'container',
  },
  'vIOMMU without a tracker': { iommu: 'none', viommu: true, logging: false, mode: 'perpetual' },
};

for (const [label, c] of Object.entries(CASES)) {
  test(`dirty tracking: ${label}: pages DMA'd during pre-copy arrive`, async (t) => {
    const e = new E2e(t);
    const model = `state-size=1M,chunk-size=16K,dirty-rate=256K,dma-rate=8M,logging=${c.logging ? 'on' : 'off'}`;
    const props = {
      // Without device logging QEMU only migrates when told to (or iommufd tracks).
      ...(c.logging || c.iommu === 'iommufd' ? {} : { 'enable-migration': 'on' }),
      // Device logging behind a vIOMMU is blocked: the container tracks.
      ...(c.viommu ? { 'x-device-dirty-page-tracking': 'off' } : {}),
      ...c.properties,
    };
    const config = smallGuest({
      memory: '64M',
      vcpus: 1,
      workload: { 'dirty-rate': 4, pattern: 'uniform', seed: 3 },
      iommu: c.iommu,
      ...(c.viommu ? { viommu: { windows: 6, 'window-size': '512K', 'remap-interval': 10 } } : {}),
      devices: [
        { id: 'nic0', model: `sim:nic,${model},seed=1`, ...props },
        { id: 'nic1', model: `sim:nic,${model},seed=2`, ...props },
      ],
    });
    const { src, dst } = await e.pair(config);
    // Slow enough that the devices write pages the first pass already sent.
    await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 48 << 20 });
    await src.qmp.execute('migrate', { uri: dst.ready.incoming });
    // Once the first pass is out (and the devices wrote over it), let it converge even if
    // every page is dirty at every sync.
    await waitFor(src, (i) => finished(i) || (i.ram?.transferred ?? 0) > 72 << 20, 'a first pass');
    await src.qmp.execute('migrate-set-parameters', { 'downtime-limit': 10_000 });
    const info = await waitFor(src, finished, 'the migration');
    assert.equal(info.status, 'completed', JSON.stringify(info));
    await waitFor(dst, finished, 'the incoming side');
    const [a, b] = await Promise.all([digest(src), digest(dst)]);
    assert.equal(b.ram.sha256, a.ram.sha256, 'guest RAM, with every page written by DMA');
    assert.deepEqual(b.devices, a.devices);
    const vfio = await src.qmp.execute<ContainerInfo>('x-query-vfio');
    assert.equal(vfio['dirty-tracking'].mode, c.mode);
    assert.ok(vfio['dirty-tracking']['pages-reported'] > 0, 'the tracker reported pages');
    if (c.viommu) {
      // The guest's IOMMU mappings came along: its driver and the devices carry on with them.
      await dst.qmp.execute('cont');
      await sleep(200);
      const there = await dst.qmp.execute<ContainerInfo>('x-query-vfio');
      assert.equal(there.container.mappings, 6);
      assert.equal(there.container.faults, 0, 'no device DMA hit an unmapped IOVA');
    }
  });
}
