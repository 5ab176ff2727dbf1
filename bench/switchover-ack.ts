/**
 * What switchover-ack buys (qemu-migration.md §2.5), measured in one run on this machine: a
 * guest with one device holding a few hundred MiB of state, whose destination needs time to
 * set that state up (`load-rate`: chunks are set up on their first load, in write(2), as mlx5
 * loads each image with a firmware command), migrated between two `vfio-migrate run`
 * processes over loopback TCP, with and without the capability, alternately.
 *
 * Without the ack the source switches over as soon as the pending bytes fit the downtime
 * limit at the measured bandwidth, while the destination may still be setting up the initial
 * image; the stop-copy phase then waits for it. With the ack the source keeps the guest
 * running until the destination has loaded the initial image, so the downtime carries only
 * what changed since. QEMU's reference: about 1900 ms -> 420 ms for one mlx5 VF with 300 MB.
 *
 * Prints a table and one JSON line (medians of the repetitions).
 *
 *   npm run build && node dist/bench/switchover-ack.js [state MiB] [load MiB/s] [repetitions]
 *       [downtime-limit ms]          (default 300 MiB, 160 MiB/s, 3, QEMU's 300 ms)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median } from '../src/bench/stats.ts';
import { VmProcess } from '../src/cli/vm-process.ts';
import { migrationIsFinished } from '../src/migration/index.ts';
import type { MigrationInfo, VfioInfo } from '../src/cli/demo/qmp-types.ts';

const STATE_MIB = Number(process.argv[2] ?? 300);
const LOAD_MIBPS = Number(process.argv[3] ?? 160);
const REPETITIONS = Number(process.argv[4] ?? 3);
const DOWNTIME_LIMIT = Number(process.argv[5] ?? 300);
const MiB = 1 << 20;

const config = {
  memory: '256M',
  vcpus: 1,
  workload: { 'dirty-rate': 8, pattern: 'hot', 'hot-size': '32M', seed: 3 },
  populate: { seed: 5, 'zero-share': 0.3 },
  devices: [
    {
      id: 'vf0',
      model:
        `sim:nic,state-size=${STATE_MIB}M,chunk-size=64K,dirty-rate=2M,dma-rate=1M,` +
        `load-rate=${LOAD_MIBPS}M`,
    },
  ],
};

interface Result {
  downtimeMs: number;
  totalMs: number;
  precopyMiB: number;
  stopCopyMiB: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function once(dir: string, ack: boolean, n: number): Promise<Result> {
  const name = `${ack ? 'ack' : 'noack'}${n}`;
  const [dst, src] = await Promise.all([
    VmProcess.spawn({
      name: `${name}-dst`,
      dir,
      config,
      incoming: 'tcp:127.0.0.1:0',
      paused: true,
    }),
    VmProcess.spawn({ name: `${name}-src`, dir, config }),
  ]);
  try {
    const capabilities = [
      { capability: 'return-path', state: true },
      { capability: 'switchover-ack', state: ack },
    ];
    for (const vm of [src, dst]) await vm.qmp.execute('migrate-set-capabilities', { capabilities });
    // A dedicated link: no bandwidth cap.
    await src.qmp.execute('migrate-set-parameters', {
      'max-bandwidth': 0,
      'downtime-limit': DOWNTIME_LIMIT,
    });
    await sleep(200);
    await src.qmp.execute('migrate', { uri: dst.ready.incoming });
    let info: MigrationInfo;
    for (;;) {
      info = await src.qmp.execute<MigrationInfo>('query-migrate');
      if (migrationIsFinished(info.status ?? 'none')) break;
      await sleep(50);
    }
    if (info.status !== 'completed')
      throw new Error(`migration ${info.status}: ${info['error-desc']}`);
    const bytes = (await src.qmp.execute<VfioInfo>('x-query-vfio')).devices[0]!.bytes;
    return {
      downtimeMs: info.downtime ?? NaN,
      totalMs: info['total-time'] ?? NaN,
      precopyMiB: bytes.precopy / MiB,
      stopCopyMiB: bytes['stop-copy'] / MiB,
    };
  } finally {
    await Promise.allSettled([src.stop(), dst.stop()]);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'bench-ack-'));
try {
  const runs: Record<'ack' | 'noack', Result[]> = { ack: [], noack: [] };
  for (let i = 0; i < REPETITIONS; i++) {
    for (const ack of [false, true]) runs[ack ? 'ack' : 'noack'].push(await once(dir, ack, i));
  }
  const summary = (rs: Result[]) => ({
    downtimeMs: median(rs.map((r) => r.downtimeMs)),
    totalMs: median(rs.map((r) => r.totalMs)),
    precopyMiB: Number(median(rs.map((r) => r.precopyMiB)).toFixed(1)),
    stopCopyMiB: Number(median(rs.map((r) => r.stopCopyMiB)).toFixed(1)),
    downtimesMs: rs.map((r) => r.downtimeMs),
  });
  const without = summary(runs.noack);
  const withAck = summary(runs.ack);
  const row = (label: string, s: ReturnType<typeof summary>) =>
    `${label.padEnd(20)} ${String(s.downtimeMs).padStart(8)} ${String(s.totalMs).padStart(8)} ` +
    `${s.precopyMiB.toFixed(1).padStart(10)} ${s.stopCopyMiB.toFixed(1).padStart(10)}   ${s.downtimesMs.join(', ')}`;
  console.log(
    `one device, ${STATE_MIB} MiB of state, destination set-up ${LOAD_MIBPS} MiB/s, ` +
      `downtime-limit ${DOWNTIME_LIMIT} ms, unlimited bandwidth; medians of ${REPETITIONS}`,
  );
  console.log(
    `${''.padEnd(20)} ${'downtime'.padStart(8)} ${'total'.padStart(8)} ${'pre-copy'.padStart(10)} ${'stop-copy'.padStart(10)}   downtimes (ms)`,
  );
  console.log(
    `${''.padEnd(20)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'MiB'.padStart(10)} ${'MiB'.padStart(10)}`,
  );
  console.log(row('without switchover-ack', without));
  console.log(row('with switchover-ack', withAck));
  console.log(
    JSON.stringify({
      stateMiB: STATE_MIB,
      loadMiBps: LOAD_MIBPS,
      repetitions: REPETITIONS,
      downtimeLimitMs: DOWNTIME_LIMIT,
      without,
      with: withAck,
      downtimeRatio: Number((without.downtimeMs / withAck.downtimeMs).toFixed(2)),
    }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
