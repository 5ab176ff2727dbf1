/**
 * What precise dirty tracking of device DMA saves (qemu-migration.md §3.5), measured in one
 * run on this machine: the same guest — vCPUs dirtying a hot set, two devices writing guest
 * RAM by DMA at random places — migrated between two `vfio-migrate run` processes with each
 * way of finding the pages devices wrote: device DMA logging, iommufd (the IOMMU's dirty
 * bits), type1 with pinning devices, type1 reporting every mapped page, no tracker at all,
 * and no tracker behind a vIOMMU (only the mapped DMA windows are perpetually dirty).
 *
 * Same bandwidth and downtime limit for all. A migration that has not converged after
 * `patience` seconds gets a downtime limit it can meet, so every mode completes and its
 * cost shows: RAM pages sent more than once, total bytes, time and downtime.
 *
 *   npm run build && node dist/bench/dirty-tracking.js [RAM MiB] [patience s]
 *   (default 512 MiB, 6 s)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmProcess } from '../src/cli/vm-process.ts';
import { migrationIsFinished } from '../src/migration/index.ts';
import type { MigrationInfo } from '../src/cli/demo/qmp-types.ts';

const RAM_MIB = Number(process.argv[2] ?? 512);
const PATIENCE_S = Number(process.argv[3] ?? 6);
const MiB = 1 << 20;
const BANDWIDTH = 256 * MiB;
const DOWNTIME_LIMIT = 300;

interface Mode {
  label: string;
  iommu: string;
  logging: boolean;
  viommu?: boolean;
}

const MODES: Mode[] = [
  { label: 'device DMA logging', iommu: 'type1-perpetual', logging: true },
  { label: 'iommufd', iommu: 'iommufd', logging: false },
  { label: 'type1, pinned pages', iommu: 'type1-pinned', logging: false },
  { label: 'type1, all mapped', iommu: 'type1-perpetual', logging: false },
  { label: 'no tracker', iommu: 'none', logging: false },
  { label: 'no tracker, vIOMMU', iommu: 'none', logging: false, viommu: true },
];

function config(m: Mode): Record<string, unknown> {
  const device = (id: string, seed: number) => ({
    id,
    model:
      `sim:nic,state-size=8M,chunk-size=64K,dirty-rate=1M,dma-rate=8M,seed=${seed},` +
      `logging=${m.logging ? 'on' : 'off'}`,
    ...(m.logging ? {} : { 'enable-migration': 'on' }),
    ...(m.viommu ? { 'x-device-dirty-page-tracking': 'off' } : {}),
  });
  return {
    memory: `${RAM_MIB}M`,
    vcpus: 1,
    workload: { 'dirty-rate': 16, pattern: 'hot', 'hot-size': '64M', seed: 3 },
    populate: { seed: 5, 'zero-share': 0.2 },
    iommu: m.iommu,
    ...(m.viommu ? { viommu: { windows: 16, 'window-size': '1M', 'remap-interval': 20 } } : {}),
    devices: [device('nic0', 1), device('nic1', 2)],
  };
}

interface Result {
  converged: boolean;
  totalMs: number;
  downtimeMs: number;
  totalMiB: number;
  ramPagesSent: number;
  ramPagesResent: number;
  resentMiB: number;
  downtimeMiB: number;
  trackerMode: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const done = (i: MigrationInfo) => migrationIsFinished(i.status ?? 'none');

async function migrate(dir: string, m: Mode, n: number): Promise<Result> {
  const cfg = config(m);
  const [dst, src] = await Promise.all([
    VmProcess.spawn({
      name: `dst${n}`,
      dir,
      config: cfg,
      incoming: 'tcp:127.0.0.1:0',
      paused: true,
    }),
    VmProcess.spawn({ name: `src${n}`, dir, config: cfg }),
  ]);
  try {
    const capabilities = [{ capability: 'return-path', state: true }];
    for (const vm of [src, dst]) await vm.qmp.execute('migrate-set-capabilities', { capabilities });
    await src.qmp.execute('migrate-set-parameters', {
      'max-bandwidth': BANDWIDTH,
      'downtime-limit': DOWNTIME_LIMIT,
    });
    await sleep(300);
    await src.qmp.execute('migrate', { uri: dst.ready.incoming });
    const deadline = Date.now() + PATIENCE_S * 1000;
    let info = await src.qmp.execute<MigrationInfo>('query-migrate');
    while (!done(info) && Date.now() < deadline) {
      await sleep(50);
      info = await src.qmp.execute<MigrationInfo>('query-migrate');
    }
    const converged = done(info);
    if (!converged) {
      // Enough to move all of RAM while stopped.
      await src.qmp.execute('migrate-set-parameters', { 'downtime-limit': 60_000 });
      while (!done(info)) {
        await sleep(50);
        info = await src.qmp.execute<MigrationInfo>('query-migrate');
      }
    }
    if (info.status !== 'completed')
      throw new Error(`${m.label}: ${info.status} ${info['error-desc']}`);
    const [a, b] = await Promise.all([
      src.qmp.execute<{ sha256: string }>('x-query-state-digest'),
      dst.qmp.execute<{ sha256: string }>('x-query-state-digest'),
    ]);
    if (a.sha256 !== b.sha256) throw new Error(`${m.label}: the destination's state differs`);
    const vfio = await src.qmp.execute<{ 'dirty-tracking': { mode: string } }>('x-query-vfio');
    const ram = info.ram!;
    const pages = RAM_MIB * (MiB / 4096);
    const sent = ram.normal + ram.duplicate;
    return {
      converged,
      totalMs: info['total-time'] ?? NaN,
      downtimeMs: info.downtime ?? NaN,
      totalMiB: ram.transferred / MiB,
      ramPagesSent: sent,
      ramPagesResent: sent - pages,
      resentMiB: ((sent - pages) * 4096) / MiB,
      downtimeMiB: ram['downtime-bytes'] / MiB,
      trackerMode: vfio['dirty-tracking'].mode,
    };
  } finally {
    await Promise.allSettled([src.stop(), dst.stop()]);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'bench-dirty-'));
try {
  const results: (Result & { label: string })[] = [];
  for (const [i, m] of MODES.entries())
    results.push({ label: m.label, ...(await migrate(dir, m, i)) });
  console.log(
    `${RAM_MIB} MiB guest (vCPU 16 MiB/s over 64 MiB), two devices each DMA-ing 8 MiB/s at ` +
      `random; ${BANDWIDTH / MiB} MiB/s, downtime-limit ${DOWNTIME_LIMIT} ms, raised after ${PATIENCE_S} s`,
  );
  const head = [
    '',
    'converged',
    'total s',
    'sent MiB',
    'pages re-sent',
    're-sent MiB',
    'downtime ms',
    'downtime MiB',
  ];
  console.log([head[0]!.padEnd(22), ...head.slice(1).map((h) => h.padStart(14))].join(''));
  for (const r of results) {
    const cells = [
      r.converged ? 'yes' : 'no',
      (r.totalMs / 1000).toFixed(1),
      r.totalMiB.toFixed(0),
      String(r.ramPagesResent),
      r.resentMiB.toFixed(0),
      String(r.downtimeMs),
      r.downtimeMiB.toFixed(0),
    ];
    console.log([r.label.padEnd(22), ...cells.map((c) => c.padStart(14))].join(''));
  }
  const device = results[0]!;
  const perpetual = results.find((r) => r.label === 'no tracker')!;
  console.log(
    JSON.stringify({
      ramMiB: RAM_MIB,
      results,
      resentRatioPerpetualVsDevice: Number(
        (perpetual.resentMiB / Math.max(device.resentMiB, 1)).toFixed(1),
      ),
    }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
