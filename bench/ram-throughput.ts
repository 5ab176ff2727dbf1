/**
 * RAM migration throughput against a raw socket, measured in one run on the same machine:
 *
 *   (a) an idle guest with N MiB of random RAM migrated by our source (this process) to our
 *       destination (bench/ram-destination.ts in a child process) over loopback TCP, with
 *       unlimited bandwidth and a return path: from `migrate` until the destination's SHUT
 *       completed it; the destination's RAM digest must equal ours. Twice: into fresh
 *       destination RAM (the kernel faults every page in on first touch, as for a QEMU
 *       destination) and into RAM touched beforehand (QEMU's -mem-prealloc), which leaves
 *       only the migration's own work;
 *   (b) the same number of bytes copied through a loopback socket from this process to a
 *       child process that only counts them.
 *
 * Prints MiB/s of each (median of several repetitions, after a warm-up) and ours / raw.
 *
 *   npx tsx bench/ram-throughput.ts [MiB] [repetitions]     (default 256 MiB, 5)
 *   node dist/bench/ram-throughput.js [MiB] [repetitions]
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { VmRunControl } from '../src/guest/index.ts';
import { GuestMemory, MiB } from '../src/memory/index.ts';
import {
  MigrationBlockers,
  MigrationNotifiers,
  SaveVMRegistry,
  createVmMigration,
} from '../src/migration/index.ts';

const SIZE_MIB = Number(process.argv[2] ?? 256);
const REPETITIONS = Number(process.argv[3] ?? 5);
const RAW_CHUNK = 1 << 20;

/** Starts bench/ram-destination with the same loader as this file (tsx or dist/). */
function startChild(args: string[]): { child: ChildProcess; lines: AsyncIterator<string> } {
  const ts = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(`./ram-destination${ts ? '.ts' : '.js'}`, import.meta.url));
  const child = spawn(process.execPath, [...(ts ? ['--import', 'tsx'] : []), entry, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return { child, lines };
}

async function nextJson(lines: AsyncIterator<string>): Promise<Record<string, unknown>> {
  const r = await lines.next();
  if (r.done === true) throw new Error('the destination process ended early');
  return JSON.parse(r.value) as Record<string, unknown>;
}

/** The source VM: one block "ram" of random bytes, running, no vCPUs (an idle guest). */
async function sourceVm(): Promise<{
  memory: GuestMemory;
  vm: ReturnType<typeof createVmMigration>;
}> {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: SIZE_MIB * MiB }]);
  for (const seg of memory.block('ram')!.segments) randomFillSync(new Uint8Array(seg));
  const runControl = new VmRunControl();
  const vm = createVmMigration({
    registry: new SaveVMRegistry(),
    memory,
    runControl,
    notifiers: new MigrationNotifiers(),
    blockers: new MigrationBlockers(),
    machineType: 'none',
    options: {
      capabilities: [{ capability: 'return-path', state: true }],
      parameters: { 'max-bandwidth': 0 },
    },
  });
  await runControl.vmStart();
  return { memory, vm };
}

/** (a): MiB/s of one migration, and its downtime. */
async function migrateOnce(prefault: boolean): Promise<{ mibps: number; downtime: number }> {
  const { memory, vm } = await sourceVm();
  const { child, lines } = startChild([
    'migrate',
    String(SIZE_MIB),
    ...(prefault ? ['prefault'] : []),
  ]);
  const { port } = await nextJson(lines);
  const t0 = performance.now();
  vm.outgoing.migrate(`tcp:127.0.0.1:${String(port)}`);
  const status = await vm.outgoing.whenFinished();
  const seconds = (performance.now() - t0) / 1000;
  const result = await nextJson(lines);
  await once(child, 'exit');
  if (status !== 'completed' || result.status !== 'completed') {
    throw new Error(`migration ${status}: ${vm.outgoing.error?.message ?? String(result.error)}`);
  }
  if (result.sha256 !== memory.digest().sha256) throw new Error('destination RAM differs');
  return { mibps: SIZE_MIB / seconds, downtime: vm.query().downtime ?? 0 };
}

/** (b): MiB/s of a plain socket copy of the same size to another process. */
async function rawOnce(): Promise<number> {
  const bytes = SIZE_MIB * MiB;
  const { child, lines } = startChild(['raw', String(bytes)]);
  const { port } = await nextJson(lines);
  const chunk = Buffer.alloc(RAW_CHUNK);
  randomFillSync(chunk);
  const sock = connect({ host: '127.0.0.1', port: Number(port) });
  await once(sock, 'connect');
  const t0 = performance.now();
  const acked = once(sock, 'data');
  for (let sent = 0; sent < bytes; sent += RAW_CHUNK) {
    if (!sock.write(chunk)) await once(sock, 'drain');
  }
  await acked;
  const seconds = (performance.now() - t0) / 1000;
  sock.destroy();
  await once(child, 'exit');
  return SIZE_MIB / seconds;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const fmt = (x: number): string => x.toFixed(0).padStart(6);

console.log(
  `RAM migration vs raw loopback socket: ${SIZE_MIB} MiB, ${REPETITIONS} repetitions, ` +
    `Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`,
);
await migrateOnce(true); // warm-up of both processes' code paths
await rawOnce();
const fresh: number[] = [];
const prefaulted: number[] = [];
const raw: number[] = [];
const downtimes: number[] = [];
for (let i = 0; i < REPETITIONS; i++) {
  const a = await migrateOnce(false);
  const b = await migrateOnce(true);
  const r = await rawOnce();
  fresh.push(a.mibps);
  prefaulted.push(b.mibps);
  raw.push(r);
  downtimes.push(a.downtime, b.downtime);
  console.log(
    `  #${i + 1}: ours ${fmt(a.mibps)} MiB/s (fresh RAM), ${fmt(b.mibps)} MiB/s (prefaulted)` +
      `   raw ${fmt(r)} MiB/s   downtime ${a.downtime}/${b.downtime} ms`,
  );
}
const line = (name: string, xs: number[]): string =>
  `${name} ${fmt(median(xs))} MiB/s (min ${fmt(Math.min(...xs))}, max ${fmt(Math.max(...xs))})`;
console.log(`median: ${line('ours, fresh RAM     ', fresh)}`);
console.log(`median: ${line('ours, prefaulted RAM', prefaulted)}`);
console.log(`median: ${line('raw socket copy     ', raw)}`);
const r = median(raw);
console.log(
  `ours / raw = ${(median(fresh) / r).toFixed(2)} (fresh RAM), ` +
    `${(median(prefaulted) / r).toFixed(2)} (prefaulted)   median downtime ${median(downtimes)} ms`,
);
